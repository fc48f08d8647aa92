"""core.guidance: actions, next step and DNS record for every domain status."""

from __future__ import annotations

import pytest

from core.guidance import SAMPLE_HOSTNAME, Guidance, GuidanceAction, guidance_for
from core.status import TRANSITIONS, DomainStatus

S = DomainStatus
A = GuidanceAction
CANONICAL = "abc1234.portal.algapsa.com"
DOMAIN = "portal.acme.com"

TERMINAL = {S.ACTIVE, S.DISABLED, S.DNS_FAILED, S.CERTIFICATE_FAILED}


@pytest.mark.parametrize(
    ("status", "actions", "tone"),
    [
        # The seed's Terminal Status UX Matrix (Retry Registration = refresh of a
        # failed domain; Submit new domain = request_new_domain).
        (S.ACTIVE, {A.REFRESH, A.REMOVE}, "success"),
        (S.DISABLED, {A.REQUEST_NEW_DOMAIN}, "neutral"),
        (S.DNS_FAILED, {A.REFRESH, A.REMOVE, A.REQUEST_NEW_DOMAIN}, "error"),
        (S.CERTIFICATE_FAILED, {A.REFRESH, A.REMOVE, A.REQUEST_NEW_DOMAIN}, "error"),
        # Extended to the statuses in between.
        (S.PENDING_DNS, {A.REFRESH, A.REMOVE, A.REQUEST_NEW_DOMAIN}, "info"),
        (S.VERIFYING_DNS, {A.REFRESH, A.REMOVE, A.REQUEST_NEW_DOMAIN}, "info"),
        (S.PENDING_CERTIFICATE, {A.REFRESH, A.REMOVE, A.REQUEST_NEW_DOMAIN}, "info"),
        (S.CERTIFICATE_ISSUING, {A.REFRESH, A.REMOVE, A.REQUEST_NEW_DOMAIN}, "info"),
        (S.DEPLOYING, {A.REFRESH, A.REMOVE, A.REQUEST_NEW_DOMAIN}, "info"),
    ],
)
def test_each_status_offers_the_actions_of_the_matrix(
    status: DomainStatus, actions: set[GuidanceAction], tone: str
) -> None:
    guidance = guidance_for(status, domain=DOMAIN, canonical_host=CANONICAL)
    assert set(guidance.actions) == actions
    assert len(guidance.actions) == len(set(guidance.actions))
    assert guidance.tone == tone
    assert guidance.status is status


def test_the_matrix_covers_every_status() -> None:
    for status in DomainStatus:
        guidance = guidance_for(status, domain=DOMAIN, canonical_host=CANONICAL)
        assert guidance.actions, status
        assert guidance.title
        assert guidance.next_step


@pytest.mark.parametrize("status", list(DomainStatus))
def test_next_step_names_the_hostnames_and_leaves_no_placeholder(status: DomainStatus) -> None:
    guidance = guidance_for(status, domain=DOMAIN, canonical_host=CANONICAL)
    assert "{" not in guidance.next_step
    assert "}" not in guidance.next_step
    assert DOMAIN in guidance.next_step or CANONICAL in guidance.next_step
    if status in {S.PENDING_DNS, S.DNS_FAILED, S.DISABLED, S.ACTIVE}:
        assert CANONICAL in guidance.next_step


@pytest.mark.parametrize("status", list(DomainStatus))
def test_only_statuses_that_move_on_their_own_are_polled(status: DomainStatus) -> None:
    guidance = guidance_for(status, domain=DOMAIN, canonical_host=CANONICAL)
    assert guidance.polling is (status not in TERMINAL)


def test_refresh_is_never_offered_where_the_service_refuses_it() -> None:
    # DomainService.refresh raises DomainDisabled for a disabled domain.
    guidance = guidance_for(S.DISABLED, domain=DOMAIN, canonical_host=CANONICAL)
    assert A.REFRESH not in guidance.actions
    assert f"submitting {DOMAIN} again re-enables it" in guidance.next_step


def test_a_failed_domain_can_retry_because_refresh_restarts_verification() -> None:
    for failed in (S.DNS_FAILED, S.CERTIFICATE_FAILED):
        assert S.PENDING_DNS in TRANSITIONS[failed]
        guidance = guidance_for(failed, domain=DOMAIN, canonical_host=CANONICAL)
        assert A.REFRESH in guidance.actions
        assert "Refresh to retry" in guidance.next_step


def test_dns_instructions_hold_a_fully_qualified_cname_record() -> None:
    guidance = guidance_for(S.PENDING_DNS, domain=DOMAIN, canonical_host=CANONICAL)
    assert guidance.dns.record == "portal.acme.com. 3600 IN CNAME abc1234.portal.algapsa.com."
    assert guidance.dns.name == DOMAIN
    assert guidance.dns.target == CANONICAL
    assert guidance.dns.record_type == "CNAME"
    assert guidance.dns.sample is False


def test_dns_record_uses_the_given_ttl() -> None:
    guidance = guidance_for(S.DNS_FAILED, domain=DOMAIN, canonical_host=CANONICAL, ttl=300)
    assert guidance.dns.record == "portal.acme.com. 300 IN CNAME abc1234.portal.algapsa.com."
    assert "300 seconds" in guidance.next_step


def test_punycode_hostnames_appear_in_ascii_form_in_the_record() -> None:
    guidance = guidance_for(
        S.PENDING_DNS, domain="portal.xn--bcher-kva.de", canonical_host=CANONICAL
    )
    assert guidance.dns.record.startswith("portal.xn--bcher-kva.de. 3600 IN CNAME ")


def test_without_a_domain_the_record_is_a_sample_and_only_a_request_is_offered() -> None:
    guidance = guidance_for(None, domain=None, canonical_host=CANONICAL)
    assert guidance.status is None
    assert guidance.actions == (A.REQUEST_NEW_DOMAIN,)
    assert guidance.dns.sample is True
    assert guidance.dns.name == SAMPLE_HOSTNAME
    assert guidance.dns.record == f"{SAMPLE_HOSTNAME}. 3600 IN CNAME {CANONICAL}."
    assert f"https://{CANONICAL}" in guidance.next_step


@pytest.mark.parametrize("status", [None, *DomainStatus])
def test_community_edition_offers_no_action_whatever_the_status(
    status: DomainStatus | None,
) -> None:
    guidance = guidance_for(
        status,
        domain=DOMAIN if status is not None else None,
        canonical_host=CANONICAL,
        custom_domains=False,
    )
    assert guidance.actions == ()
    assert guidance.status is None
    assert "Enterprise" in guidance.next_step
    assert f"https://{CANONICAL}" in guidance.next_step
    assert guidance.polling is False


def test_a_status_without_a_hostname_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="must have a hostname"):
        guidance_for(S.ACTIVE, domain=None, canonical_host=CANONICAL)


def test_a_non_positive_ttl_is_refused() -> None:
    with pytest.raises(ValueError, match="ttl"):
        guidance_for(S.ACTIVE, domain=DOMAIN, canonical_host=CANONICAL, ttl=0)


def test_guidance_is_immutable() -> None:
    guidance = guidance_for(S.ACTIVE, domain=DOMAIN, canonical_host=CANONICAL)
    with pytest.raises(AttributeError):
        guidance.actions = ()  # type: ignore[misc]


# ------------------------------------------------------------ DNS-01 delegation
CHALLENGE_TARGET = "abc1234.acme.portal.algapsa.com"


def delegated(status: DomainStatus | None, domain: str | None = "portal.acme.com") -> Guidance:
    return guidance_for(
        status,
        domain=domain,
        canonical_host="abc1234.portal.algapsa.com",
        challenge_target=CHALLENGE_TARGET,
    )


def test_with_delegation_both_records_are_shown_the_portal_cname_first() -> None:
    g = delegated(DomainStatus.PENDING_DNS)
    assert [r.record for r in g.records] == [
        "portal.acme.com. 3600 IN CNAME abc1234.portal.algapsa.com.",
        f"_acme-challenge.portal.acme.com. 3600 IN CNAME {CHALLENGE_TARGET}.",
    ]
    assert "_acme-challenge.portal.acme.com" in g.next_step
    assert CHALLENGE_TARGET in g.next_step


def test_without_delegation_there_is_one_record_and_no_challenge_cname() -> None:
    g = guidance_for(
        DomainStatus.PENDING_DNS, domain="portal.acme.com", canonical_host="abc1234.portal.x.com"
    )
    assert g.challenge_dns is None
    assert len(g.records) == 1
    assert "_acme-challenge" not in g.next_step


@pytest.mark.parametrize("status", list(DomainStatus))
def test_delegated_next_steps_leave_no_placeholder_and_never_send_tenants_to_http(
    status: DomainStatus,
) -> None:
    g = delegated(status)
    assert "{" not in g.next_step
    assert "}" not in g.next_step
    # Issuing goes through the _acme-challenge record: no advice about the HTTP path.
    assert "/.well-known/acme-challenge/" not in g.next_step
    assert not any("plain HTTP" in hint for hint in g.hints)


def test_a_failed_delegated_certificate_points_at_the_challenge_record() -> None:
    g = delegated(DomainStatus.CERTIFICATE_FAILED)
    assert f"_acme-challenge.portal.acme.com is a CNAME to {CHALLENGE_TARGET}" in g.next_step


def test_with_delegation_and_no_domain_the_sample_has_both_records() -> None:
    g = delegated(None, domain=None)
    assert g.challenge_dns is not None
    assert g.challenge_dns.sample
    assert g.challenge_dns.name == "_acme-challenge.portal.example.com"
    assert "two CNAME records" in g.next_step


def test_the_community_edition_shows_no_challenge_record() -> None:
    g = guidance_for(
        None,
        domain=None,
        canonical_host="abc1234.portal.algapsa.com",
        custom_domains=False,
        challenge_target=CHALLENGE_TARGET,
    )
    assert g.challenge_dns is None


# ------------------------------------------------------------ a lost CNAME while active


@pytest.mark.parametrize("challenge_target", [None, CHALLENGE_TARGET], ids=["http01", "dns01"])
def test_an_active_domain_whose_cname_was_lost_is_a_warning_not_a_green_banner(
    challenge_target: str | None,
) -> None:
    g = guidance_for(
        S.ACTIVE,
        domain=DOMAIN,
        canonical_host=CANONICAL,
        cname_lost=True,
        challenge_target=challenge_target,
    )
    assert g.tone == "warning"
    assert g.title == "CNAME record changed"
    assert f"{DOMAIN} no longer points to {CANONICAL}" in g.next_step
    assert "{" not in g.next_step
    assert set(g.actions) == {A.REFRESH, A.REMOVE}
    assert g.status is S.ACTIVE


def test_an_active_domain_whose_cname_is_in_place_stays_green() -> None:
    g = guidance_for(S.ACTIVE, domain=DOMAIN, canonical_host=CANONICAL, cname_lost=False)
    assert (g.tone, g.title) == ("success", "Active")


@pytest.mark.parametrize("status", [s for s in DomainStatus if s is not S.ACTIVE])
def test_a_lost_cname_changes_nothing_outside_active(status: DomainStatus) -> None:
    assert guidance_for(
        status, domain=DOMAIN, canonical_host=CANONICAL, cname_lost=True
    ) == guidance_for(status, domain=DOMAIN, canonical_host=CANONICAL)
