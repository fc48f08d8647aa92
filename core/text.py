"""Text from outside made safe to store, log and send back.

A lone surrogate (e.g. JSON "\\ud800") cannot be encoded as UTF-8 and a NUL
byte cannot be stored in a PostgreSQL text column; both once turned a refused
request into a 500 with no audit row. `safe_text` escapes exactly those
(`\\ud800`, `\\x00`) and leaves every other character as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


def safe_text(text: str) -> str:
    """`text` with lone surrogates and NUL written as backslash escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def safe_value(value: Any) -> Any:
    """safe_text applied to every string inside `value` (JSON-like data)."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, Mapping):
        return {safe_text(str(k)): safe_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [safe_value(v) for v in value]
    return value


# `scheme://user:secret@host`: what a URL with credentials looks like (a Git
# remote with a token, a postgres:// Pulumi backend with its password).
_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s'\"]+@")


def redact_urls(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by `***`."""
    return _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)
