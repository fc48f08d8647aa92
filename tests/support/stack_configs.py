"""Stack configurations the tests share."""

from __future__ import annotations

from core.config import StackConfig, parse_stack_config

# DNS-01 by CNAME delegation into our own zone, RFC 2136 with a TSIG key.
DNS01_KEYS = {
    "issuerName": "letsencrypt-dns01",
    "allowedIssuers": "letsencrypt-dns01",
    "acmeSolver": "dns01",
    "acmeDns01Zone": "acme.portal.algapsa.com",
    "acmeRfc2136Nameserver": "10.96.0.53:53",
    "acmeRfc2136TsigKeyName": "portal-acme-update",
    "acmeRfc2136TsigSecret": "acme-dns-tsig",
}


def dns01_config(environment: str = "prod") -> StackConfig:
    return parse_stack_config(DNS01_KEYS, environment=environment)
