"""The loopback DNS server lives in reconciler.dns_responder (the demo uses it too)."""

from reconciler.dns_responder import LocalDnsServer

__all__ = ["LocalDnsServer"]
