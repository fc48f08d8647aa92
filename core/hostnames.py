"""Validation and normalisation of the vanity hostnames tenants ask for.

`normalize_hostname` turns what a tenant typed into the one ASCII form we store,
compare and hand to cert-manager and Istio, or raises `HostnameError` with a
stable reason code (see `REASON_CODES`) and a sentence a person can act on.

The rules, in the order they are applied:

1. Surrounding whitespace is dropped; the rest must not be empty or absurdly long.
2. IP literals (`1.2.3.4`, `[::1]`, anything whose last label is numeric, which
   browsers parse as IPv4) are refused: a certificate for a vanity host needs a name.
3. Wildcards and ASCII characters outside letters, digits, hyphen and dot
   (underscore, space, `/`, `@`, `:` ...) are refused, before and after mapping.
4. UTS #46 mapping (non-transitional, as browsers do): case folding, width
   folding (`ＡＢＣ。com` -> `abc.com`), NFC. Exactly one trailing dot is dropped.
5. Each label is checked against IDNA 2008 (the `idna` package) and converted to
   its A-label (`bücher` -> `xn--bcher-kva`). Existing `xn--` labels must be the
   canonical Punycode of a valid U-label. Other labels with `--` in positions
   3-4 are reserved (R-LDH) and refused, as Let's Encrypt does.
6. Mixed-script labels are refused (homoglyph defence, see below).
7. Lengths: labels at most 63 octets, the name at most 253, both in ASCII form.
8. Policy: reserved/special-use names, single labels, our own base domain (and
   the organisation's registrable domain it lives under), unknown TLDs,
   registrable domains and public suffixes (an apex cannot carry a CNAME).

Homoglyphs. IDNA 2008 already refuses symbols, most punctuation look-alikes and
compatibility characters. On top of it we apply a per-label script restriction
in the spirit of UTS #39 "highly restrictive": a label may use one script, or
Latin with Han and Hiragana/Katakana (Japanese), Han and Bopomofo (Chinese) or
Han and Hangul (Korean). Digits, the hyphen and combining marks do not count.
So `pаypal.com` with a Cyrillic `а` is refused (`mixed_script`), while an
all-Cyrillic `пример.рф` or an all-Greek label is accepted, including
whole-script look-alikes such as Cyrillic `асе.com` ("ace"): telling those apart
needs UTS #39 confusable skeletons, and the tenant must prove control of the
name through DNS before we issue anything for it. Script detection uses the
Unicode character names in `unicodedata`, which is exact for letters of the
scripts above and a close approximation for the rest.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from functools import cache

import idna

from core import public_suffix
from core.errors import ErrorKind, PortalDomainsError

MAX_HOSTNAME_LENGTH = 253
MAX_LABEL_LENGTH = 63
# Input longer than this is refused before any Unicode processing: no hostname
# survives it, and it bounds the work an API caller can make us do.
MAX_INPUT_LENGTH = 1024

REASON_CODES: dict[str, str] = {
    "empty": "nothing left after removing whitespace and one trailing dot",
    "too_long": f"longer than {MAX_HOSTNAME_LENGTH} characters in ASCII (punycode) form",
    "label_too_long": f"a label is longer than {MAX_LABEL_LENGTH} characters in ASCII form",
    "empty_label": "a label is empty (two dots in a row, or a leading dot)",
    "label_hyphen": "a label starts or ends with a hyphen",
    "invalid_characters": (
        "a character other than letters, digits, hyphen and dot (e.g. underscore, space, "
        "slash, colon), also when it results from Unicode mapping"
    ),
    "invalid_idna": (
        "not valid IDNA 2008: a disallowed Unicode character, a malformed or "
        "non-canonical xn-- label, or a reserved '??--' label"
    ),
    "mixed_script": "a label mixes writing systems, e.g. a Cyrillic letter in a Latin name",
    "ip_address": "an IPv4 or IPv6 address (or a name ending in a numeric label) instead of a name",
    "single_label": "a single label such as 'intranet'; a fully qualified name is needed",
    "wildcard": "contains '*': wildcards cannot be requested",
    "reserved": (
        "a special-use or private name: localhost, .local, .localhost, .test, .example, "
        ".invalid, .internal, .arpa, .onion, .alt, .lan, .corp, .home, .intranet, "
        ".private, .localdomain, example.com/.net/.org"
    ),
    "base_domain": "our own base domain, a name under it, or under the domain it belongs to",
    "unknown_tld": "the top-level domain is not in the public suffix list",
    "registrable_domain": (
        "a registrable domain (apex, e.g. acme.com or acme.co.uk) or a public suffix "
        "(e.g. co.uk); apex names cannot be a CNAME, use a subdomain such as portal.acme.com"
    ),
}

RESERVED_TLDS: frozenset[str] = frozenset(
    {
        "localhost",
        "local",
        "test",
        "example",
        "invalid",
        "internal",
        "arpa",  # includes home.arpa
        "onion",
        "alt",
        "lan",
        "corp",
        "home",
        "intranet",
        "private",
        "localdomain",
    }
)
RESERVED_DOMAINS: frozenset[str] = frozenset({"example.com", "example.net", "example.org"})

_LDH_ASCII = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.")
_NUMERIC_LABEL = re.compile(r"(?:[0-9]+|0x[0-9a-f]*)", re.IGNORECASE)

# UTS #39 "highly restrictive" combinations beyond a single script.
_ALLOWED_SCRIPT_SETS: tuple[frozenset[str], ...] = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
# Character-name prefixes that do not start with their script's name.
_NAME_PREFIX_SCRIPT: tuple[tuple[str, str], ...] = (
    ("CJK ", "HAN"),
    ("IDEOGRAPHIC ", "HAN"),
    ("KATAKANA-HIRAGANA ", "KATAKANA"),
    ("EXTENDED ARABIC-INDIC ", "ARABIC"),
    ("ARABIC-INDIC ", "ARABIC"),
    ("CANADIAN SYLLABICS ", "CANADIAN SYLLABICS"),
)
# Categories that take the script of their neighbours (UTS #24 Inherited/Common).
_SCRIPTLESS_CATEGORIES = frozenset({"Mn", "Mc", "Me", "Cf"})
# MIDDLE DOT is script-neutral: IDNA allows it only in Catalan 'l·l' (CONTEXTO).
_SCRIPTLESS_CHARS = frozenset({"\u00b7"})


class HostnameError(PortalDomainsError, ValueError):
    """A hostname was refused; `code` is one of REASON_CODES."""

    kind = ErrorKind.INVALID_INPUT

    def __init__(self, code: str, message: str) -> None:
        if code not in REASON_CODES:
            raise ValueError(f"unknown hostname reason code {code!r}")
        super().__init__(message)
        self.code = code

    def __repr__(self) -> str:
        return f"HostnameError({self.code!r}, {self.message!r})"


def normalize_hostname(raw: str, *, base_domain: str) -> str:
    """Return the normalised ASCII form of `raw`, or raise HostnameError."""
    base = normalize_base_domain(base_domain)
    text = raw.strip()
    if not text:
        raise HostnameError("empty", "The hostname is empty.")
    if len(text) > MAX_INPUT_LENGTH:
        raise HostnameError(
            "too_long", f"The hostname is longer than {MAX_HOSTNAME_LENGTH} characters."
        )
    shown = _shown(text)
    _check_invisible(text, shown)
    _check_ip_literal(text, shown)
    _check_ascii(text, shown)
    try:
        mapped = idna.uts46_remap(text, std3_rules=False)
    except idna.IDNAError as exc:
        raise HostnameError(
            "invalid_idna", f"{shown} is not a valid internationalised name: {exc}."
        ) from exc
    # Width folding can produce ':', '*', '_' ... from look-alike characters.
    _check_ip_literal(mapped, shown)
    _check_ascii(mapped, shown)

    if mapped.endswith("."):
        mapped = mapped[:-1]
    if not mapped:
        raise HostnameError("empty", "The hostname is empty.")
    labels = mapped.split(".")
    if any(not label for label in labels):
        raise HostnameError(
            "empty_label", f"{shown} has an empty label (two dots in a row or a leading dot)."
        )
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        raise HostnameError(
            "ip_address",
            f"{shown} is (or parses as) an IP address; request a hostname such as "
            "portal.example-company.com.",
        )

    host = ".".join(_to_ascii_label(label, shown) for label in labels)
    if len(host) > MAX_HOSTNAME_LENGTH:
        raise HostnameError(
            "too_long",
            f"{shown} is {len(host)} characters long in ASCII form; the limit is "
            f"{MAX_HOSTNAME_LENGTH}.",
        )
    _check_policy(host, base, shown)
    return host


# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt) beyond category
# Cf: combining grapheme joiner, Hangul fillers, Mongolian and other variation
# selectors, tag and reserved ignorables. `unicodedata` has no such property.
_IGNORABLE_RANGES = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x2065, 0x2065),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)


def _ignorable(char: str) -> bool:
    code = ord(char)
    return unicodedata.category(char) == "Cf" or any(
        low <= code <= high for low, high in _IGNORABLE_RANGES
    )


def _check_invisible(text: str, shown: str) -> None:
    """Reject every default-ignorable code point (zero-width space, joiners, soft hyphen,
    BOM, variation selectors, U+034F, tags, ...).

    IDNA (UTS 46) would silently delete them, so `portal\u200b.acme.com` would be
    accepted as a different-looking request than what the tenant saw: a spoofing
    aid, never a legitimate part of a hostname.
    """
    for char in text:
        if _ignorable(char):
            raise HostnameError(
                "invalid_characters",
                f"{shown} contains the invisible character U+{ord(char):04X} "
                f"({unicodedata.name(char, 'format character')}); type the name again.",
            )


def is_valid_hostname(raw: str, *, base_domain: str) -> bool:
    try:
        normalize_hostname(raw, base_domain=base_domain)
    except HostnameError:
        return False
    return True


@cache
def normalize_base_domain(base_domain: str) -> str:
    """The ASCII, lowercase, dotless form of our own base domain (a config value)."""
    text = base_domain.strip().lower().removesuffix(".")
    try:
        ascii_form = idna.encode(text, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"base domain {base_domain!r} is not a valid hostname: {exc}") from exc
    if "." not in ascii_form:
        raise ValueError(f"base domain {base_domain!r} must have at least two labels")
    return ascii_form


def _shown(text: str) -> str:
    """The input quoted for a message, cut short so a huge input stays readable."""
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _check_ip_literal(text: str, shown: str) -> None:
    # Dotted IPv4 without brackets is caught later by the numeric-last-label rule.
    if text.startswith("[") and text.endswith("]"):
        candidate = text[1:-1]
    elif ":" in text:
        candidate = text
    else:
        return
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return
    raise HostnameError(
        "ip_address",
        f"{shown} is an IP address; request a hostname such as portal.example-company.com.",
    )


def _check_ascii(text: str, shown: str) -> None:
    if "*" in text:
        raise HostnameError(
            "wildcard",
            f"{shown} contains '*'; wildcard names cannot be requested, ask for one exact "
            "hostname.",
        )
    for char in text:
        if char.isascii() and char not in _LDH_ASCII:
            raise HostnameError(
                "invalid_characters",
                f"{shown} contains {_describe(char)}; only letters, digits, hyphens and dots "
                "are allowed in hostnames.",
            )


def _describe(char: str) -> str:
    if char == "_":
        return "an underscore"
    if char == " ":
        return "a space"
    if char.isprintable():
        return f"the character {char!r}"
    return f"the control character U+{ord(char):04X}"


def _to_ascii_label(label: str, shown: str) -> str:
    if label.startswith("-") or label.endswith("-"):
        raise HostnameError(
            "label_hyphen", f"{shown}: the label {label!r} starts or ends with a hyphen."
        )
    if len(label) > MAX_LABEL_LENGTH:
        raise _label_too_long(label, shown)
    if label.isascii():
        if label.startswith("xn--"):
            unicode_label = _decode_a_label(label, shown)
            _check_scripts(unicode_label, shown)
        elif label[2:4] == "--":
            raise HostnameError(
                "invalid_idna",
                f"{shown}: the label {label!r} has '--' in the third and fourth position, "
                "which is reserved for encoded names (only 'xn--' is in use).",
            )
        return label
    try:
        idna.check_label(label)
    except idna.IDNAError as exc:
        raise HostnameError(
            "invalid_idna", f"{shown}: the label {label!r} is not valid IDNA 2008: {exc}."
        ) from exc
    _check_scripts(label, shown)
    a_label = "xn--" + label.encode("punycode").decode("ascii")
    if len(a_label) > MAX_LABEL_LENGTH:
        raise _label_too_long(a_label, shown)
    return a_label


def _label_too_long(label: str, shown: str) -> HostnameError:
    return HostnameError(
        "label_too_long",
        f"{shown}: a label is {len(label)} characters long in ASCII form; the limit is "
        f"{MAX_LABEL_LENGTH}.",
    )


def _decode_a_label(label: str, shown: str) -> str:
    try:
        unicode_label = idna.ulabel(label)
    except idna.IDNAError as exc:
        raise HostnameError(
            "invalid_idna",
            f"{shown}: the label {label!r} is not a valid encoded (xn--) label: {exc}.",
        ) from exc
    if unicode_label.isascii():
        raise HostnameError(
            "invalid_idna",
            f"{shown}: the label {label!r} is an xn-- label that encodes only ASCII.",
        )
    return unicode_label


def _script_of(char: str) -> str | None:
    """The script a character counts for, or None for digits, hyphen and marks."""
    if char.isascii():
        return "LATIN" if char.isalpha() else None
    if char in _SCRIPTLESS_CHARS or unicodedata.category(char) in _SCRIPTLESS_CATEGORIES:
        return None
    name = unicodedata.name(char, "")
    if not name:
        return "UNKNOWN"
    for prefix, script in _NAME_PREFIX_SCRIPT:
        if name.startswith(prefix):
            return script
    return name.split(" ", 1)[0]


def _check_scripts(label: str, shown: str) -> None:
    scripts = {s for s in map(_script_of, label) if s is not None}
    if len(scripts) <= 1 or any(scripts <= allowed for allowed in _ALLOWED_SCRIPT_SETS):
        return
    names = ", ".join(sorted(s.title() for s in scripts))
    raise HostnameError(
        "mixed_script",
        f"{shown}: the label {label!r} mixes scripts ({names}); mixed-script names are a "
        "common look-alike trick, so each label must use one writing system.",
    )


def _check_policy(host: str, base: str, shown: str) -> None:
    labels = host.split(".")
    if labels[-1] in RESERVED_TLDS or any(
        host == d or host.endswith("." + d) for d in RESERVED_DOMAINS
    ):
        raise HostnameError(
            "reserved",
            f"{shown} is a reserved or special-use name that is not reachable on the public "
            "internet.",
        )
    if len(labels) == 1:
        raise HostnameError(
            "single_label",
            f"{shown} is a single label; use a fully qualified name such as "
            "portal.example-company.com.",
        )
    organisation = public_suffix.registrable_domain(base) or base
    if _is_at_or_under(host, base) or _is_at_or_under(host, organisation):
        raise HostnameError(
            "base_domain",
            f"{shown} is part of our own domain {organisation}; request a hostname in a "
            "domain your organisation owns.",
        )
    if public_suffix.public_suffix(host) is None:
        raise HostnameError(
            "unknown_tld",
            f"{shown} ends in .{labels[-1]}, which is not a known top-level domain.",
        )
    if public_suffix.is_public_suffix(host):
        raise HostnameError(
            "registrable_domain",
            f"{shown} is a public suffix (like co.uk), not a name you can own; request a "
            "subdomain of your own domain, such as portal.example-company.co.uk.",
        )
    if public_suffix.registrable_domain(host) == host:
        raise HostnameError(
            "registrable_domain",
            f"{shown} is the apex of a registered domain, which cannot be a CNAME; request a "
            f"subdomain such as portal.{host}.",
        )


def _is_at_or_under(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)
