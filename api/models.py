"""Request and response bodies of the REST API (pydantic: the edge of the system)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from api.settings import Edition
from core.guidance import DnsInstructions, Guidance, GuidanceAction, Tone
from core.hostnames import MAX_INPUT_LENGTH
from core.records import (
    CAA_CHECK,
    CERTIFICATE_CHECK,
    CHALLENGE_CHECK,
    CNAME_CHECK,
    EXPECTED_CNAME,
    cname_lost,
)
from core.status import DomainStatus

_Part = TypeVar("_Part", bound=BaseModel)


class ErrorDetail(BaseModel):
    code: str = Field(
        description=(
            "Stable machine-readable code: missing_token, invalid_token, token_expired, "
            "forbidden, edition_not_supported, rate_limited, invalid_body, invalid_tenant_id, "
            "tenant_id_required, a hostname reason code (empty, registrable_domain, ...), "
            "domain_already_claimed, domain_not_found, domain_disabled, concurrent_update, "
            "hook_failed, payload_too_large, not_found, method_not_allowed, internal_error"
        ),
        examples=["registrable_domain"],
    )
    message: str = Field(description="What went wrong and what to do, for a person")
    field: str | None = Field(
        default=None, description="The request field at fault (domain, tenant_id, body)"
    )


class ErrorResponse(BaseModel):
    error: ErrorDetail


class DomainRequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: StrictStr = Field(
        description=(
            "The vanity hostname, e.g. portal.acme.com (a subdomain: an apex cannot be a "
            "CNAME). Unicode names are accepted and stored in their ASCII (punycode) form."
        ),
        examples=["portal.acme.com"],
        # Documented, not enforced here: the hostname validator refuses these
        # with its own reason codes (empty, too_long), which callers rely on.
        json_schema_extra={"minLength": 1, "maxLength": MAX_INPUT_LENGTH},
    )


class DnsRecord(BaseModel):
    type: Literal["CNAME"]
    name: str = Field(description="The vanity hostname (a sample when none was requested)")
    target: str = Field(description="The canonical host the CNAME must point to")
    ttl: int = Field(description="Suggested TTL in seconds")
    record: str = Field(
        description="The record in zone-file syntax",
        examples=["portal.acme.com. 3600 IN CNAME 3f2b6c1.portal.algapsa.com."],
    )
    sample: bool = Field(description="True when `name` is a placeholder (no domain yet)")

    @classmethod
    def of(cls, instructions: DnsInstructions) -> DnsRecord:
        return cls(
            type=instructions.record_type,
            name=instructions.name,
            target=instructions.target,
            ttl=instructions.ttl,
            record=instructions.record,
            sample=instructions.sample,
        )


class GuidanceBody(BaseModel):
    tone: Tone = Field(description="Banner style for the settings page")
    title: str
    actions: list[GuidanceAction] = Field(description="Actions to offer in this status")
    next_step: str = Field(description="What happens next or what to fix, in plain words")
    polling: bool = Field(description="The status moves on its own: poll until this is false")
    dns: DnsRecord
    challenge_dns: DnsRecord | None = Field(
        description=(
            "The second CNAME, `_acme-challenge.<domain>`, when the environment issues "
            "certificates by DNS-01 delegation; null with HTTP-01"
        )
    )
    records: list[DnsRecord] = Field(description="Every record to create: `dns` first")
    hints: list[str]

    @classmethod
    def of(cls, guidance: Guidance) -> GuidanceBody:
        return cls(
            tone=guidance.tone,
            title=guidance.title,
            actions=list(guidance.actions),
            next_step=guidance.next_step,
            polling=guidance.polling,
            dns=DnsRecord.of(guidance.dns),
            challenge_dns=DnsRecord.of(guidance.challenge_dns) if guidance.challenge_dns else None,
            records=[DnsRecord.of(r) for r in guidance.records],
            hints=list(guidance.hints),
        )


class CnameCheckBody(BaseModel):
    name: str = Field(description="The name looked up (the hostname or its _acme-challenge)")
    expected: str = Field(description="The target the CNAME must have")
    observed: str | None = Field(description="The target found; null when there was none")
    ttl: int | None = Field(description="The record's TTL in seconds as last seen")
    checked_at: datetime
    ok: bool
    error: str | None = Field(description="What was found instead of a CNAME, if anything")


class CaaCheckBody(BaseModel):
    ok: bool = Field(description="The CAA records (if any) let Let's Encrypt issue")
    message: str
    checked_at: datetime | None = None


class CertificateCheckBody(BaseModel):
    ok: bool
    reason: str | None = Field(description="Why the certificate was not issued (when not ok)")
    checked_at: datetime | None = None


def _part(model: type[_Part], value: object) -> _Part | None:
    """One check's part of verification_details, or None when absent or malformed."""
    if not isinstance(value, Mapping):
        return None
    try:
        return model.model_validate(value)
    except ValidationError:
        return None


class VerificationDetailsBody(BaseModel):
    """What the checks found, each check on its own (one failing never hides another)."""

    expected_cname: str | None = Field(description="The CNAME target the hostname must have")
    requested_at: datetime | None = Field(
        description="When the current hostname was requested (time to active counts from it)"
    )
    cname: CnameCheckBody | None = Field(description="The last check of the hostname's CNAME")
    challenge_cname: CnameCheckBody | None = Field(
        description="The last check of `_acme-challenge.<domain>` (DNS-01 delegation only)"
    )
    caa: CaaCheckBody | None = Field(description="The last CAA check")
    certificate: CertificateCheckBody | None = Field(
        description="The last certificate outcome; `reason` says why certificate_failed"
    )
    cname_lost: bool = Field(
        description="An active domain whose last re-check found the CNAME pointing elsewhere"
    )

    @classmethod
    def of(
        cls, status: DomainStatus, details: Mapping[str, Any], requested_at: datetime | None
    ) -> VerificationDetailsBody:
        expected = details.get(EXPECTED_CNAME)
        return cls(
            expected_cname=expected if isinstance(expected, str) else None,
            requested_at=requested_at,
            cname=_part(CnameCheckBody, details.get(CNAME_CHECK)),
            challenge_cname=_part(CnameCheckBody, details.get(CHALLENGE_CHECK)),
            caa=_part(CaaCheckBody, details.get(CAA_CHECK)),
            certificate=_part(CertificateCheckBody, details.get(CERTIFICATE_CHECK)),
            cname_lost=cname_lost(status, details),
        )


class DomainStatusResponse(BaseModel):
    tenant_id: UUID
    edition: Edition
    custom_domains: bool = Field(description="False in the community edition: read-only")
    domain: str | None = Field(description="The vanity hostname (ASCII form); null if none")
    canonical_host: str = Field(description="The tenant's canonical host, the CNAME target")
    canonical_host_assigned: bool = Field(
        description=(
            "False before the first request: the canonical host shown is the one the tenant "
            "will most likely get (a longer prefix is assigned if another tenant holds it)"
        )
    )
    status: DomainStatus | None = Field(description="null when no domain was requested")
    status_message: str | None
    removal: Literal["requested", "held", "removed"] | None = Field(
        default=None,
        description=(
            "For a disabled domain: `requested` (its objects are being removed), `held` (a "
            "safety limit holds the removal for an operator) or `removed` (gone from the "
            "stack, nm-kube-config and, in cluster mode, the cluster)"
        ),
    )
    last_checked_at: datetime | None
    updated_at: datetime | None
    verification_details: VerificationDetailsBody | None = Field(
        default=None, description="What the DNS, CAA and certificate checks found; null if none"
    )
    guidance: GuidanceBody


class AuditEntryBody(BaseModel):
    occurred_at: datetime
    actor: str = Field(
        description="Who: `user:<subject>`, `reconciler`, or `platform operator` (operators' "
        "names are not shown to tenants), or `user of another tenant` (a refused attempt)"
    )
    action: str = Field(
        description="request, replace, refresh, disable, record_status, ...; refusals also "
        "read, audit"
    )
    domain: str | None
    status_before: DomainStatus | None
    status_after: DomainStatus | None
    outcome: str = Field(description="ok, noop, rejected, denied, stale, not_found, ...")
    count: int = Field(
        default=1,
        description="How many identical refusals this entry stands for (repeats are collapsed)",
    )


class AuditResponse(BaseModel):
    tenant_id: UUID
    entries: list[AuditEntryBody] = Field(description="Newest first")
