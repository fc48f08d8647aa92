"""Offline Public Suffix List look-ups: which part of a hostname is registrable.

The list is the snapshot shipped inside the pinned `publicsuffixlist` package
(both the ICANN and the private sections); it is never fetched from the network,
so validation is deterministic and works offline. Updating it means bumping the
pinned package.

The snapshot is parsed once, lazily, on first use (never at import time).
"""

from __future__ import annotations

from functools import cache

from publicsuffixlist import PublicSuffixList


@cache
def _list() -> PublicSuffixList:
    return PublicSuffixList()


def public_suffix(host: str) -> str | None:
    """The public suffix of an ASCII hostname (`co.uk` for `a.acme.co.uk`).

    None when the top-level label is not in the list at all (an unknown TLD).
    """
    suffix: str | None = _list().publicsuffix(host, accept_unknown=False)
    return suffix


def registrable_domain(host: str) -> str | None:
    """The registrable domain (`acme.co.uk` for `a.acme.co.uk`).

    None when `host` is itself a public suffix. Unknown TLDs are treated as
    public suffixes here, so `portal.acme.invalidtld` -> `acme.invalidtld`.
    """
    domain: str | None = _list().privatesuffix(host, accept_unknown=True)
    return domain


def is_public_suffix(host: str) -> bool:
    """True for `com`, `co.uk`, `github.io`: names under which anyone can register."""
    return bool(_list().is_public(host, accept_unknown=True))
