"""core.hostnames: what a tenant may ask for, and the one form we store."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from core.hostnames import (
    MAX_INPUT_LENGTH,
    REASON_CODES,
    HostnameError,
    normalize_base_domain,
    normalize_hostname,
)

BASE = "portal.algapsa.com"
LDH_HOST = re.compile(r"[a-z0-9-]{1,63}(\.[a-z0-9-]{1,63})+")


def normalize(raw: str) -> str:
    return normalize_hostname(raw, base_domain=BASE)


ACCEPTED = [
    ("portal.acme.com", "portal.acme.com"),
    ("Portal.ACME.com", "portal.acme.com"),
    ("portal.acme.com.", "portal.acme.com"),
    ("  portal.acme.com \n", "portal.acme.com"),
    ("portal.acme.co.uk", "portal.acme.co.uk"),
    ("a.b.c.portal.acme.com", "a.b.c.portal.acme.com"),
    ("portal-1.acme.com", "portal-1.acme.com"),
    ("1portal.acme.com", "1portal.acme.com"),
    ("portal.acme.github.io", "portal.acme.github.io"),
    ("bücher.acme.de", "xn--bcher-kva.acme.de"),
    ("BÜCHER.acme.de", "xn--bcher-kva.acme.de"),
    ("xn--bcher-kva.acme.de", "xn--bcher-kva.acme.de"),
    ("XN--BCHER-KVA.acme.de", "xn--bcher-kva.acme.de"),
    ("straße.acme.de", "xn--strae-oqa.acme.de"),  # IDNA 2008: ß kept, not "ss"
    ("ＡＢＣ。acme。com", "abc.acme.com"),  # full-width letters and ideographic dots
    ("ｐｏｒｔａｌ.acme.com", "portal.acme.com"),
    ("портал.пример.рф", "xn--80awhdgm.xn--e1afmkfd.xn--p1ai"),
    ("portal.日本語.jp", "portal.xn--wgv71a119e.jp"),
    ("ポータル.会社.jp", "xn--5ckzcybvd.xn--6oq404h.jp"),  # Katakana
    ("col·legi.acme.cat", "xn--collegi-xma.acme.cat"),  # Catalan middle dot
    ("a" * 63 + ".acme.com", "a" * 63 + ".acme.com"),
    ("portal.algapsa.co.uk", "portal.algapsa.co.uk"),  # not our domain
]


@pytest.mark.parametrize(("raw", "expected"), ACCEPTED)
def test_accepted_hostnames_are_normalised(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


REJECTED = [
    # empty and lengths
    ("", "empty"),
    ("   ", "empty"),
    (".", "empty"),
    ("a" * 64 + ".acme.com", "label_too_long"),
    ("ü" * 60 + ".acme.com", "label_too_long"),  # short in Unicode, long in punycode
    (".".join(["a" * 63] * 4) + ".com", "too_long"),
    ("a." * 130 + "acme.com", "too_long"),
    ("x" * (MAX_INPUT_LENGTH + 1), "too_long"),
    ("acme.com..", "empty_label"),
    (".acme.com", "empty_label"),
    ("portal..acme.com", "empty_label"),
    # hyphens and characters
    ("-portal.acme.com", "label_hyphen"),
    ("portal-.acme.com", "label_hyphen"),
    ("portal.-acme.com", "label_hyphen"),
    ("my_portal.acme.com", "invalid_characters"),
    ("_acme-challenge.acme.com", "invalid_characters"),
    ("portal＿acme.acme.com", "invalid_characters"),  # full-width underscore maps to "_"
    ("portal acme.acme.com", "invalid_characters"),
    ("portal.acme.com/login", "invalid_characters"),
    ("https://portal.acme.com", "invalid_characters"),
    ("user@portal.acme.com", "invalid_characters"),
    ("portal.acme.com:443", "invalid_characters"),
    ("portal\x00.acme.com", "invalid_characters"),
    # IDNA
    ("😀.acme.com", "invalid_idna"),
    ("⒈.acme.com", "invalid_idna"),  # disallowed compatibility character
    ("xn--abc.acme.com", "invalid_idna"),  # decodes to control characters
    ("xn--.acme.com", "label_hyphen"),
    ("xn--a.acme.com", "invalid_idna"),  # not decodable Punycode
    ("xn---bcher-kva.acme.de", "invalid_idna"),  # non-canonical A-label
    ("xn--ls8h.acme.com", "invalid_idna"),  # encodes an emoji
    ("ab--cd.acme.com", "invalid_idna"),  # reserved R-LDH label
    ("a\u200db.acme.com", "invalid_characters"),  # ZERO WIDTH JOINER out of context
    ("\u0301a.acme.com", "invalid_idna"),  # leading combining mark
    # homoglyphs: Cyrillic а (U+0430) and Greek ο (U+03BF) inside Latin labels
    ("p\u0430ypal.acme.com", "mixed_script"),
    ("xn--pypal-4ve.acme.com", "mixed_script"),  # the same, already encoded
    ("g\u03bfogle.acme.com", "mixed_script"),
    # IP literals
    ("192.0.2.1", "ip_address"),
    ("192.0.2.1.", "ip_address"),
    ("[192.0.2.1]", "ip_address"),
    ("::1", "ip_address"),
    ("[2001:db8::1]", "ip_address"),
    ("2001:db8::1", "ip_address"),
    ("１９２.０.２.１", "ip_address"),  # full-width digits
    ("0x7f.1", "ip_address"),
    ("portal.acme.123", "ip_address"),  # browsers parse a numeric last label as IPv4
    # wildcards, single labels, reserved names
    ("*.acme.com", "wildcard"),
    ("portal*.acme.com", "wildcard"),
    ("＊.acme.com", "wildcard"),
    ("intranet", "reserved"),
    ("portal", "single_label"),
    ("com", "single_label"),
    ("localhost", "reserved"),
    ("portal.localhost", "reserved"),
    ("printer.local", "reserved"),
    ("portal.acme.test", "reserved"),
    ("portal.example", "reserved"),
    ("example.com", "reserved"),
    ("portal.example.net", "reserved"),
    ("www.example.org", "reserved"),
    ("portal.acme.invalid", "reserved"),
    ("portal.acme.internal", "reserved"),
    ("router.home.arpa", "reserved"),
    ("1.0.0.127.in-addr.arpa", "reserved"),
    ("duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion", "reserved"),
    ("nas.lan", "reserved"),
    ("mail.corp", "reserved"),
    ("nas.home", "reserved"),
    ("box.localdomain", "reserved"),
    # our own domain
    ("portal.algapsa.com", "base_domain"),
    ("PORTAL.ALGAPSA.COM.", "base_domain"),
    ("3f2b6c1.portal.algapsa.com", "base_domain"),
    ("algapsa.com", "base_domain"),
    ("evil.algapsa.com", "base_domain"),
    # apex / public suffix
    ("acme.com", "registrable_domain"),
    ("acme.co.uk", "registrable_domain"),
    ("co.uk", "registrable_domain"),
    ("github.io", "registrable_domain"),
    ("acme.github.io", "registrable_domain"),
    ("пример.рф", "registrable_domain"),
    ("portal.acme.notatld", "unknown_tld"),
    ("portal.acme.cmo", "unknown_tld"),
]


@pytest.mark.parametrize(("raw", "code"), REJECTED)
def test_rejected_hostnames_give_a_stable_reason_code(raw: str, code: str) -> None:
    with pytest.raises(HostnameError) as caught:
        normalize(raw)
    assert caught.value.code == code, caught.value.message
    assert caught.value.message.endswith(".")
    assert len(caught.value.message) < 400


def test_every_reason_code_is_documented_and_exercised() -> None:
    exercised = {code for _, code in REJECTED}
    assert exercised == set(REASON_CODES)


def test_hostname_error_refuses_undocumented_codes() -> None:
    with pytest.raises(ValueError, match="unknown hostname reason code"):
        HostnameError("nope", "message")


def test_a_different_base_domain_moves_the_base_domain_rule() -> None:
    assert normalize_hostname("portal.algapsa.com", base_domain="vanity.example-saas.net") == (
        "portal.algapsa.com"
    )
    with pytest.raises(HostnameError) as caught:
        normalize_hostname("x.vanity.example-saas.net", base_domain="Vanity.Example-SaaS.net.")
    assert caught.value.code == "base_domain"


def test_an_invalid_base_domain_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="base domain"):
        normalize_base_domain("not_a domain")
    with pytest.raises(ValueError, match="two labels"):
        normalize_base_domain("localhost")


def test_messages_quote_the_input_short_enough_to_read() -> None:
    with pytest.raises(HostnameError) as caught:
        normalize("a_" + "b" * 500 + ".acme.com")
    assert "..." in caught.value.message
    assert len(caught.value.message) < 250


# ------------------------------------------------------------------ properties

_SUFFIXES = ["com", "co.uk", "de", "xn--p1ai", "jp", "io", "org.au"]
_LABEL_CHARS = string.ascii_letters + string.digits + "-" + "äöüßéñçøåłжфыпряα日本語ポータ"
labels = st.text(alphabet=_LABEL_CHARS, min_size=1, max_size=20)
hostnames = st.builds(
    lambda parts, suffix, dot: ".".join([*parts, suffix]) + ("." if dot else ""),
    st.lists(labels, min_size=2, max_size=4),
    st.sampled_from(_SUFFIXES),
    st.booleans(),
)
# ASCII outside letters, digits, hyphen, dot; a few Unicode characters IDNA 2008
# refuses; and full-width forms that map onto forbidden ASCII.
FORBIDDEN = [chr(c) for c in range(0x00, 0x80) if not (chr(c).isalnum() or chr(c) in "-.")] + [
    "\u2488",
    "\U0001f600",
    "\u2028",
    "\u00a0",
    "\u200b",
    "\uff3f",
    "\uff0f",
    "\uff20",
]


@given(hostnames)
@example("Bücher.Acme.DE.")
@example("ＡＢＣ。acme。com")
def test_normalising_twice_gives_the_same_result(raw: str) -> None:
    try:
        once = normalize(raw)
    except HostnameError:
        assume(False)
        return
    assert normalize(once) == once


@given(hostnames)
def test_accepted_output_is_lowercase_ldh_ascii_within_limits(raw: str) -> None:
    try:
        host = normalize(raw)
    except HostnameError:
        assume(False)
        return
    assert host.isascii()
    assert LDH_HOST.fullmatch(host), host
    assert len(host) <= 253
    assert all(not label.startswith("-") and not label.endswith("-") for label in host.split("."))
    assert normalize_hostname(host, base_domain=BASE) == host


@given(hostnames, st.sampled_from(FORBIDDEN), st.integers(min_value=1))
def test_a_hostname_containing_a_forbidden_character_is_rejected(
    raw: str, char: str, position: int
) -> None:
    stripped = raw.rstrip(".")
    # Anywhere but the very ends, where surrounding whitespace is trimmed.
    index = 1 + position % (len(stripped) - 1)
    tampered = stripped[:index] + char + stripped[index:]
    with pytest.raises(HostnameError):
        normalize(tampered)


@given(st.text(max_size=300))
def test_arbitrary_text_is_either_accepted_as_ldh_or_rejected_with_a_known_code(
    raw: str,
) -> None:
    try:
        host = normalize(raw)
    except HostnameError as exc:
        code: str | None = exc.code
    else:
        code = None
        assert LDH_HOST.fullmatch(host)
    assert code is None or code in REASON_CODES


@pytest.mark.parametrize(
    "ignorable",
    # Default_Ignorable_Code_Point beyond category Cf: IDNA drops these silently, so
    # `port\u034fal.acme.com` would quietly become portal.acme.com.
    ["\u034f", "\ufe0f", "\u180b", "\U000e0100", "\u3164", "\u115f", "\U000e0041"],
)
def test_every_default_ignorable_code_point_is_refused(ignorable: str) -> None:
    with pytest.raises(HostnameError) as refused:
        normalize(f"port{ignorable}al.acme.com")
    assert refused.value.code == "invalid_characters"
    assert f"U+{ord(ignorable):04X}" in str(refused.value)
