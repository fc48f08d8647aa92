"""db.importer: the old implementation's rows, validated at the edge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.status import DomainStatus
from db.importer import ImportSourceError, LegacyRow, RowProblem, parse_rows, read_source

BASE = "portal.algapsa.com"
TENANT = "3f2b6c1e-8d4a-4e2f-9b7c-1a2b3c4d5e6f"


def row(**changes: Any) -> dict[str, Any]:
    base = {
        "id": "8b9f7c0e-0000-4000-8000-000000000001",
        "tenant_id": TENANT,
        "domain": "Portal.Acme.com",
        "canonical_host": "3f2b6c1.portal.algapsa.com",
        "status": "active",
        "status_message": "Active",
        "last_checked_at": "2026-11-30T10:00:00Z",
        "certificate_secret_name": f"portal-domain-{TENANT}",
        "verification_method": "cname",
    }
    return {**base, **changes}


def test_a_good_row_keeps_hostname_status_prefix_and_secret_name() -> None:
    (parsed,) = parse_rows([row()], base_domain=BASE)
    assert isinstance(parsed, LegacyRow)
    assert parsed.domain == "portal.acme.com"
    assert parsed.status is DomainStatus.ACTIVE
    assert parsed.canonical_prefix == "3f2b6c1"
    # The old implementation named secrets after the tenant id: kept, so the
    # existing certificate is found and not re-issued.
    assert parsed.certificate_secret_name == f"portal-domain-{TENANT}"
    assert parsed.last_checked_at is not None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"tenant_id": "not-a-uuid"}, "tenant"),
        ({"domain": "localhost"}, "domain: "),
        ({"domain": "portal\u034f.acme.com"}, "domain: "),
        ({"canonical_host": "3f2b6c1.elsewhere.com"}, "is not <hex prefix>.portal.algapsa.com"),
        ({"canonical_host": "0000000.portal.algapsa.com"}, "does not start with the tenant's id"),
        ({"status": "exploded"}, "status 'exploded' is not one of"),
        ({"certificate_secret_name": "Bad_Name"}, "is not a Kubernetes Secret name"),
        ({"last_checked_at": "yesterday"}, "is not an ISO 8601 time"),
        ({"domain": None}, "missing domain"),
    ],
)
def test_a_bad_row_is_a_problem_naming_the_row_and_why(
    changes: dict[str, Any], reason: str
) -> None:
    good, bad = parse_rows([row(), row(**changes)], base_domain=BASE)
    assert isinstance(good, LegacyRow)
    assert isinstance(bad, RowProblem)
    assert bad.row == 2
    assert reason in bad.reason


def test_csv_and_json_dumps_are_read(tmp_path: Path) -> None:
    csv_file = tmp_path / "dump.csv"
    columns = list(row())
    csv_file.write_text(",".join(columns) + "\n" + ",".join(str(row()[c]) for c in columns) + "\n")
    json_file = tmp_path / "dump.json"
    json_file.write_text(json.dumps({"portal_domains": [row()]}))
    for source in (csv_file, json_file):
        (parsed,) = parse_rows(read_source(str(source)), base_domain=BASE)
        assert isinstance(parsed, LegacyRow), parsed
        assert parsed.domain == "portal.acme.com"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("dump.json", "{not json", "not JSON"),
        ("dump.json", '{"rows": 3}', "expected a list of row objects"),
        ("dump.csv", "", "the first line must name the columns"),
        ("dump.txt", "x", "expected a .csv or .json file"),
    ],
)
def test_an_unreadable_source_is_one_clear_error(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ImportSourceError, match=message):
        read_source(str(path))
    with pytest.raises(ImportSourceError, match="no such file"):
        read_source(str(tmp_path / "missing.csv"))


@pytest.mark.postgres
def test_the_old_postgresql_table_is_read_directly(postgres_admin_url: str) -> None:
    import sqlalchemy as sa

    from tests.support.services import create_database

    url = create_database(postgres_admin_url, "legacy_portal_domains")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "CREATE TABLE portal_domains (id uuid PRIMARY KEY, tenant_id uuid NOT NULL, "
                "domain text NOT NULL, canonical_host text NOT NULL, status text NOT NULL, "
                "status_message text, last_checked_at timestamptz, verification_method text, "
                "verification_details jsonb, certificate_secret_name text, "
                "last_synced_resource_version text, created_at timestamptz, updated_at timestamptz)"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO portal_domains (id, tenant_id, domain, canonical_host, status, "
                "last_checked_at, certificate_secret_name) VALUES (gen_random_uuid(), :t, "
                "'portal.acme.com', '3f2b6c1.portal.algapsa.com', 'active', now(), :s)"
            ),
            {"t": TENANT, "s": f"portal-domain-{TENANT}"},
        )
    engine.dispose()
    (parsed,) = parse_rows(read_source(url), base_domain=BASE)
    assert isinstance(parsed, LegacyRow), parsed
    assert parsed.tenant_id.hex.startswith("3f2b6c1e")
    assert parsed.status is DomainStatus.ACTIVE
    assert parsed.last_checked_at is not None
