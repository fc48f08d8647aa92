"""The loopback DNS server lives in loopback.dns_server (the demo uses it too)."""

from loopback.dns_server import LocalDnsServer

__all__ = ["LocalDnsServer"]
