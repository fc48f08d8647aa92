"""db.migrate and db/migrations: the schema goes up and down on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import DBAPIError, IntegrityError

from core.status import DomainStatus
from db import migrate
from db.models import AUDIT_OUTCOMES, HOLDING_STATUSES, Base
from db.session import make_engine

TABLES = {
    "portal_domains",
    "portal_domain_audit",
    "portal_domain_outbox",
    "portal_domain_stack_runs",
}
FIRST_REVISION = "5c1f0e7a9d21"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nested' / 'portal-domains.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


def _insert_domain(
    conn: sa.Connection,
    *,
    domain: str,
    prefix: str,
    status: str = "pending_dns",
    host: str | None = None,
) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO portal_domains (id, tenant_id, domain, canonical_prefix, canonical_host,"
            " status, certificate_secret_name) VALUES (:id, :tenant, :domain, :prefix, :host,"
            " :status, :secret)"
        ),
        {
            "id": _uuid_param(conn),
            "tenant": _uuid_param(conn),
            "domain": domain,
            "prefix": prefix,
            "host": host or f"{prefix}.portal.algapsa.com",
            "status": status,
            "secret": f"portal-domain-{prefix}-tls",
        },
    )


def _domains(engine: sa.Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT canonical_prefix, domain, status FROM portal_domains"
                " ORDER BY canonical_prefix"
            )
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def _uuid_param(conn: sa.Connection) -> str:
    value = uuid.uuid4()
    return value.hex if conn.dialect.name == "sqlite" else str(value)


def test_upgrade_creates_the_schema_and_downgrade_removes_it(
    database_url: str, engine: sa.Engine
) -> None:
    assert migrate.schema_state(database_url).current is None

    migrate.upgrade(database_url)
    state = migrate.schema_state(database_url)
    assert state.up_to_date
    assert state.current == migrate.head_revision()
    assert _tables(engine) == TABLES

    migrate.downgrade(database_url, "base")
    assert migrate.schema_state(database_url).current is None
    assert _tables(engine) == set()

    migrate.upgrade(database_url)  # and back up: downgrade left nothing behind
    assert _tables(engine) == TABLES


def test_migrations_run_from_any_working_directory(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    migrate.upgrade(database_url)
    assert migrate.schema_state(database_url).up_to_date
    assert list(elsewhere.iterdir()) == []


def test_the_migrated_schema_matches_the_models(database_url: str, engine: sa.Engine) -> None:
    migrate.upgrade(database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_require_current_schema_names_the_command_to_run(database_url: str) -> None:
    with pytest.raises(migrate.SchemaNotReady, match="portal-domains db upgrade"):
        migrate.require_current_schema(database_url)
    migrate.upgrade(database_url)
    migrate.require_current_schema(database_url)


def test_checking_a_missing_sqlite_database_does_not_create_it(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "portal-domains.db"
    with pytest.raises(migrate.SchemaNotReady):
        migrate.require_current_schema(f"sqlite:///{path}")
    assert not path.exists()


def test_held_hostnames_are_unique_regardless_of_case(database_url: str, engine: sa.Engine) -> None:
    migrate.upgrade(database_url)
    with engine.begin() as conn:
        _insert_domain(conn, domain="portal.acme.com", prefix="aaaaaaa", status="active")
    with pytest.raises(IntegrityError), engine.begin() as conn:
        _insert_domain(conn, domain="Portal.ACME.com", prefix="bbbbbbb", status="deploying")
    with engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT canonical_prefix FROM portal_domains WHERE domain = 'PORTAL.acme.COM'")
        ).scalar_one()
    assert found == "aaaaaaa"


@pytest.mark.parametrize("status", list(DomainStatus))
def test_only_rows_in_holding_statuses_are_exclusive(
    database_url: str, engine: sa.Engine, status: DomainStatus
) -> None:
    # The migration spells the statuses out; they must be db.models.HOLDING_STATUSES.
    migrate.upgrade(database_url)
    with engine.begin() as conn:
        _insert_domain(conn, domain="portal.acme.com", prefix="aaaaaaa", status="active")
        _insert_domain(conn, domain="portal.bob.com", prefix="bbbbbbb", status=status.value)
    if status in HOLDING_STATUSES:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            _insert_domain(conn, domain="Portal.Acme.com", prefix="ccccccc", status=status.value)
        return
    with engine.begin() as conn:
        _insert_domain(conn, domain="Portal.Acme.com", prefix="ccccccc", status=status.value)
        _insert_domain(conn, domain="PORTAL.ACME.COM", prefix="ddddddd", status=status.value)
    assert len(_domains(engine)) == 4


def test_the_index_refuses_a_second_holder_written_by_update(
    database_url: str, engine: sa.Engine
) -> None:
    migrate.upgrade(database_url)
    with engine.begin() as conn:
        _insert_domain(conn, domain="portal.acme.com", prefix="aaaaaaa", status="pending_dns")
        _insert_domain(conn, domain="portal.acme.com", prefix="bbbbbbb", status="verifying_dns")
        conn.execute(
            sa.text(
                "UPDATE portal_domains SET status = 'pending_certificate'"
                " WHERE canonical_prefix = 'aaaaaaa'"
            )
        )
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE portal_domains SET status = 'pending_certificate',"
                " domain = 'PORTAL.acme.com' WHERE canonical_prefix = 'bbbbbbb'"
            )
        )
    assert _domains(engine) == [
        ("aaaaaaa", "portal.acme.com", "pending_certificate"),
        ("bbbbbbb", "portal.acme.com", "verifying_dns"),
    ]


def test_canonical_hosts_stay_unique_regardless_of_case(
    database_url: str, engine: sa.Engine
) -> None:
    # On SQLite the held-hostname migration copies the table: COLLATE NOCASE must survive.
    migrate.upgrade(database_url)
    with engine.begin() as conn:
        _insert_domain(
            conn, domain="portal.acme.com", prefix="aaaaaaa", host="x.portal.algapsa.com"
        )
    with pytest.raises(IntegrityError), engine.begin() as conn:
        _insert_domain(conn, domain="portal.bob.com", prefix="bbbbbbb", host="X.Portal.algapsa.com")


def test_upgrading_to_held_hostnames_keeps_the_rows(database_url: str, engine: sa.Engine) -> None:
    migrate.upgrade(database_url, FIRST_REVISION)
    with engine.begin() as conn:
        _insert_domain(conn, domain="portal.acme.com", prefix="aaaaaaa", status="active")
        _insert_domain(conn, domain="portal.bob.com", prefix="bbbbbbb", status="disabled")
    before = _domains(engine)

    migrate.upgrade(database_url)

    assert migrate.schema_state(database_url).current == migrate.head_revision()
    assert _domains(engine) == before
    with engine.begin() as conn:  # the disabled row no longer blocks its hostname
        _insert_domain(conn, domain="portal.bob.com", prefix="ccccccc", status="active")


def test_downgrade_refuses_while_a_hostname_is_shared_and_changes_nothing(
    database_url: str, engine: sa.Engine
) -> None:
    migrate.upgrade(database_url)
    with engine.begin() as conn:
        _insert_domain(conn, domain="portal.acme.com", prefix="aaaaaaa", status="active")
        _insert_domain(conn, domain="PORTAL.acme.com", prefix="bbbbbbb", status="pending_dns")

    with pytest.raises(RuntimeError, match=r"1 hostname\(s\) are claimed by more than one"):
        migrate.downgrade(database_url, FIRST_REVISION)

    assert migrate.schema_state(database_url).current == migrate.head_revision()
    assert len(_domains(engine)) == 2
    with pytest.raises(IntegrityError), engine.begin() as conn:  # the new index is still there
        _insert_domain(conn, domain="portal.acme.com", prefix="ccccccc", status="deploying")

    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM portal_domains WHERE canonical_prefix = 'bbbbbbb'"))
    migrate.downgrade(database_url, FIRST_REVISION)
    assert migrate.schema_state(database_url).current == FIRST_REVISION
    assert _domains(engine) == [("aaaaaaa", "portal.acme.com", "active")]
    # The old rule is back: any second row with the hostname, in any case, is refused.
    with pytest.raises(IntegrityError), engine.begin() as conn:
        _insert_domain(conn, domain="Portal.Acme.com", prefix="ddddddd", status="disabled")


def test_unknown_status_values_are_refused(database_url: str, engine: sa.Engine) -> None:
    migrate.upgrade(database_url)
    with engine.begin() as conn:
        _insert_domain(conn, domain="portal.acme.com", prefix="aaaaaaa")
    with pytest.raises(DBAPIError), engine.begin() as conn:
        conn.execute(sa.text("UPDATE portal_domains SET status = 'exploded'"))


def test_the_audit_table_is_append_only(database_url: str, engine: sa.Engine) -> None:
    migrate.upgrade(database_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO portal_domain_audit (occurred_at, actor, tenant_id, action, outcome)"
                " VALUES (CURRENT_TIMESTAMP, 'operator:test', :tenant, 'request', 'ok')"
            ),
            {"tenant": _uuid_param(conn)},
        )
    for statement in (
        "UPDATE portal_domain_audit SET actor = 'someone else'",
        "DELETE FROM portal_domain_audit",
    ):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(sa.text(statement))
    with engine.connect() as conn:
        actor = conn.execute(sa.text("SELECT actor FROM portal_domain_audit")).scalar_one()
    assert actor == "operator:test"


def test_audit_outcomes_are_constrained(database_url: str, engine: sa.Engine) -> None:
    migrate.upgrade(database_url)
    assert "ok" in AUDIT_OUTCOMES
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO portal_domain_audit (occurred_at, actor, tenant_id, action, outcome)"
                " VALUES (CURRENT_TIMESTAMP, 'x', :tenant, 'request', 'maybe')"
            ),
            {"tenant": _uuid_param(conn)},
        )


@pytest.mark.postgres
def test_postgres_gets_citext_jsonb_and_native_enums(postgres_url: str) -> None:
    migrate.upgrade(postgres_url)
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            types: dict[str, str] = dict(
                conn.execute(
                    sa.text(
                        "SELECT column_name, udt_name FROM information_schema.columns"
                        " WHERE table_name = 'portal_domains'"
                    )
                ).all()
            )
            labels = conn.execute(
                sa.text(
                    "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid"
                    " WHERE t.typname = 'portal_domain_status' ORDER BY e.enumsortorder"
                )
            ).scalars()
            label_list = list(labels)
    finally:
        engine.dispose()
    assert types["domain"] == "citext"
    assert types["canonical_host"] == "citext"
    assert types["verification_details"] == "jsonb"
    assert types["status"] == "portal_domain_status"
    assert types["verification_method"] == "portal_domain_verification_method"
    assert types["last_checked_at"] == "timestamptz"
    assert label_list == [s.value for s in DomainStatus]


@pytest.mark.postgres
def test_postgres_downgrade_drops_the_enum_types_and_trigger_function(
    postgres_url: str,
) -> None:
    migrate.upgrade(postgres_url)
    migrate.downgrade(postgres_url, "base")
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            leftovers = conn.execute(
                sa.text(
                    "SELECT typname FROM pg_type WHERE typname LIKE 'portal_domain%'"
                    " UNION ALL SELECT proname FROM pg_proc WHERE proname LIKE 'portal_domain%'"
                )
            ).scalars()
            assert list(leftovers) == []
    finally:
        engine.dispose()
