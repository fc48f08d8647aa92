"""The loopback HTTPS server lives in reconciler.tls_responder (the demo uses it too)."""

from reconciler.tls_responder import LocalTlsServer, TestCertificateAuthority

__all__ = ["LocalTlsServer", "TestCertificateAuthority"]
