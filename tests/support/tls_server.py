"""The loopback HTTPS server lives in loopback.tls_ingress (the demo uses it too)."""

from loopback.tls_ingress import LocalTlsServer, TestCertificateAuthority

__all__ = ["LocalTlsServer", "TestCertificateAuthority"]
