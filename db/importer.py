"""Reading the TypeScript implementation's `portal_domains` rows (`portal-domains import`).

Sources: the old PostgreSQL table itself, or a CSV or JSON dump of it (the
columns of the seed design: tenant_id, domain, canonical_host, status,
status_message, last_checked_at, certificate_secret_name, ...; extra columns
are ignored). Every row is validated here, at the edge, before anything is
written: a bad row becomes a RowProblem naming the row and the reason, and
the good rows are still imported.

What is kept, so no certificate is re-issued: the hostname, the status and
the certificate secret name (cert-manager finds its existing Secret and its
certificate, and renews it on its own schedule rather than ordering a new
one). The canonical prefix comes from the stored canonical host, so the
tenant's CNAME target does not move either.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from core.canonical import PREFIX_MAX_LENGTH, PREFIX_MIN_LENGTH, TenantIdError, parse_tenant_id
from core.errors import ErrorKind, PortalDomainsError
from core.hostnames import HostnameError, normalize_base_domain, normalize_hostname
from core.status import DomainStatus

# A Kubernetes Secret name: a DNS-1123 subdomain.
_SECRET_NAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_PREFIX = re.compile(rf"^[0-9a-f]{{{PREFIX_MIN_LENGTH},{PREFIX_MAX_LENGTH}}}$")
LEGACY_TABLE = "portal_domains"
_COLUMNS = (
    "tenant_id",
    "domain",
    "canonical_host",
    "status",
    "status_message",
    "last_checked_at",
    "certificate_secret_name",
)


class ImportSourceError(PortalDomainsError):
    """The source cannot be read at all (missing file, bad format, unreachable database)."""

    code = "import_source_invalid"
    kind = ErrorKind.INVALID_INPUT


@dataclass(frozen=True, kw_only=True)
class LegacyRow:
    row: int  # 1-based position in the source, for messages
    tenant_id: UUID
    domain: str
    canonical_prefix: str
    canonical_host: str
    status: DomainStatus
    status_message: str | None
    last_checked_at: datetime | None
    certificate_secret_name: str


@dataclass(frozen=True, kw_only=True)
class RowProblem:
    row: int
    tenant_id: str
    reason: str


def parse_rows(
    records: Iterable[Mapping[str, Any]], *, base_domain: str
) -> list[LegacyRow | RowProblem]:
    """Validate every record; each gives a LegacyRow or a RowProblem, in source order."""
    base = normalize_base_domain(base_domain)
    return [_parse(index, record, base) for index, record in enumerate(records, start=1)]


def _parse(index: int, record: Mapping[str, Any], base: str) -> LegacyRow | RowProblem:
    raw_tenant = str(record.get("tenant_id") or "")

    def problem(reason: str) -> RowProblem:
        return RowProblem(row=index, tenant_id=raw_tenant[:64], reason=reason)

    missing = [c for c in ("tenant_id", "domain", "canonical_host", "status") if not record.get(c)]
    if missing:
        return problem(f"missing {', '.join(missing)}")
    try:
        tenant = parse_tenant_id(raw_tenant)
    except TenantIdError as err:
        return problem(str(err))
    try:
        domain = normalize_hostname(str(record["domain"]), base_domain=base)
    except HostnameError as err:
        return problem(f"domain: {err.code}: {err}")
    canonical = str(record["canonical_host"]).strip().lower().rstrip(".")
    prefix, _, rest = canonical.partition(".")
    if rest != base or not _PREFIX.match(prefix):
        return problem(f"canonical_host {canonical!r} is not <hex prefix>.{base}")
    if not tenant.hex.startswith(prefix):
        return problem(f"canonical_host {canonical!r} does not start with the tenant's id")
    try:
        status = DomainStatus(str(record["status"]).strip())
    except ValueError:
        return problem(
            f"status {record['status']!r} is not one of {[s.value for s in DomainStatus]}"
        )
    secret = str(record.get("certificate_secret_name") or "").strip()
    if not _SECRET_NAME.match(secret):
        return problem(f"certificate_secret_name {secret!r} is not a Kubernetes Secret name")
    checked = record.get("last_checked_at")
    try:
        last_checked = _timestamp(checked)
    except ValueError:
        return problem(f"last_checked_at {checked!r} is not an ISO 8601 time")
    message = record.get("status_message")
    return LegacyRow(
        row=index,
        tenant_id=tenant,
        domain=domain,
        canonical_prefix=prefix,
        canonical_host=canonical,
        status=status,
        status_message=str(message)[:2000] if message else None,
        last_checked_at=last_checked,
        certificate_secret_name=secret,
    )


def _timestamp(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("no time zone")
    return parsed


# --------------------------------------------------------------------------- sources


def read_source(source: str) -> list[dict[str, Any]]:
    """Records from `source`: a postgresql:// URL, or a .csv or .json file."""
    if source.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
        return list(_read_table(source))
    path = Path(source)
    if not path.is_file():
        raise ImportSourceError(
            f"{source}: no such file (expected a .csv, .json or postgresql URL)"
        )
    if path.suffix.lower() == ".csv":
        return _read_csv(path)
    if path.suffix.lower() == ".json":
        return _read_json(path)
    raise ImportSourceError(f"{source}: expected a .csv or .json file or a postgresql:// URL")


def _read_csv(path: Path) -> list[dict[str, Any]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "tenant_id" not in reader.fieldnames:
                raise ImportSourceError(f"{path}: the first line must name the columns")
            return [dict(row) for row in reader]
    except (UnicodeDecodeError, csv.Error) as err:
        raise ImportSourceError(f"{path}: not a UTF-8 CSV file: {err}") from None


def _read_json(path: Path) -> list[dict[str, Any]]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ImportSourceError(f"{path}: not JSON: {err}") from None
    rows = document.get("portal_domains") if isinstance(document, dict) else document
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ImportSourceError(
            f'{path}: expected a list of row objects (or {{"portal_domains": [...]}})'
        )
    return rows


def _read_table(url: str) -> Iterator[dict[str, Any]]:
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgres://")
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            table = sa.Table(LEGACY_TABLE, sa.MetaData(), autoload_with=connection)
            wanted = [table.c[c] for c in _COLUMNS if c in table.c]
            for row in connection.execute(sa.select(*wanted)).mappings():
                yield {k: (str(v) if isinstance(v, UUID) else v) for k, v in row.items()}
    except sa.exc.NoSuchTableError:
        raise ImportSourceError(f"the source database has no table {LEGACY_TABLE}") from None
    except sa.exc.OperationalError as err:
        raise ImportSourceError(f"cannot read the source database: {err.orig}") from None
    finally:
        engine.dispose()
