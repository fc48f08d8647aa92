"""Request and response bodies of the REST API (pydantic: the edge of the system)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from api.settings import Edition
from core.guidance import DnsInstructions, Guidance, GuidanceAction, Tone
from core.hostnames import MAX_INPUT_LENGTH
from core.status import DomainStatus


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
    guidance: GuidanceBody


class AuditEntryBody(BaseModel):
    occurred_at: datetime
    actor: str = Field(
        description="Who: `user:<subject>`, `reconciler`, or `platform operator` (operators' "
        "names are not shown to tenants)"
    )
    action: str = Field(description="request, replace, refresh, disable, record_status, ...")
    domain: str | None
    status_before: DomainStatus | None
    status_after: DomainStatus | None
    outcome: str = Field(description="ok, noop, rejected, denied, stale, not_found, ...")


class AuditResponse(BaseModel):
    tenant_id: UUID
    entries: list[AuditEntryBody] = Field(description="Newest first")
