"""The audit trail cannot be rewritten, and every attempt leaves a row (issue 14, items 2 and 3).

Each test reproduces an attack on real SQLite and/or real PostgreSQL and checks
it no longer gets through: REPLACE / upsert of an existing audit row, TRUNCATE,
and, connected as the service's role, UPDATE, DELETE, TRUNCATE, disabling or
dropping the triggers. The last part checks that an audit row the database
refuses is replaced by a minimal one instead of vanishing.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from cli.exit_codes import ExitCode
from cli.main import main
from core.hostnames import HostnameError
from db import migrate, roles
from db import service as service_module
from db.service import DomainAction, DomainService
from db.session import make_engine, make_session_factory

BASE = "portal.algapsa.com"
ALICE = UUID("3f2b6c1e-8d4a-4e2f-9b7c-1a2b3c4d5e6f")
OPERATOR = "operator:test"
FIRST_ACTOR = "operator:first"


def _tenant_param(conn: sa.Connection, tenant: UUID = ALICE) -> str:
    return tenant.hex if conn.dialect.name == "sqlite" else str(tenant)


def _write_first_row(engine: sa.Engine) -> int:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO portal_domain_audit (occurred_at, actor, tenant_id, action, outcome)"
                " VALUES (CURRENT_TIMESTAMP, :actor, :tenant, 'request', 'ok')"
            ),
            {"actor": FIRST_ACTOR, "tenant": _tenant_param(conn)},
        )
        return int(conn.execute(sa.text("SELECT max(id) FROM portal_domain_audit")).scalar_one())


def _audit_rows(engine: sa.Engine) -> list[tuple[int, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id, actor, outcome FROM portal_domain_audit ORDER BY id")
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


# ------------------------------------------------- rewriting a row by inserting over it

_COLUMNS = "(id, occurred_at, actor, tenant_id, action, outcome)"
_VALUES = "VALUES (:id, CURRENT_TIMESTAMP, 'operator:mallory', :tenant, 'request', 'denied')"
OVERWRITES = {
    "sqlite": {
        "replace-into": f"REPLACE INTO portal_domain_audit {_COLUMNS} {_VALUES}",
        "insert-or-replace": f"INSERT OR REPLACE INTO portal_domain_audit {_COLUMNS} {_VALUES}",
        "upsert": f"INSERT INTO portal_domain_audit {_COLUMNS} {_VALUES}"
        " ON CONFLICT(id) DO UPDATE SET actor = excluded.actor, outcome = excluded.outcome",
    },
    "postgresql": {
        "upsert": f"INSERT INTO portal_domain_audit {_COLUMNS} {_VALUES}"
        " ON CONFLICT (id) DO UPDATE SET actor = excluded.actor, outcome = excluded.outcome",
    },
}


def test_inserting_over_an_existing_audit_row_is_refused_and_the_row_stays(
    engine: sa.Engine,
) -> None:
    # Every way this dialect has to insert over a row: SQLite's REPLACE INTO,
    # INSERT OR REPLACE and upsert; PostgreSQL's upsert.
    first = _write_first_row(engine)
    before = _audit_rows(engine)
    attacks = OVERWRITES[engine.dialect.name]
    assert attacks
    for attack, statement in attacks.items():
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(sa.text(statement), {"id": first, "tenant": _tenant_param(conn)})
        assert _audit_rows(engine) == before == [(first, FIRST_ACTOR, "ok")], attack


def test_new_audit_rows_still_get_ids(engine: sa.Engine) -> None:
    # The SQLite REPLACE guard looks up NEW.id before insert: automatic ids must still pass.
    first = _write_first_row(engine)
    second = _write_first_row(engine)
    assert second > first
    with engine.begin() as conn:  # and a fresh explicit id is an ordinary append
        conn.execute(
            sa.text(f"INSERT INTO portal_domain_audit {_COLUMNS} {_VALUES}"),
            {"id": second + 10, "tenant": _tenant_param(conn)},
        )
    assert [row[0] for row in _audit_rows(engine)] == [first, second, second + 10]


def test_sqlite_refuses_ids_below_one_which_would_block_every_later_insert(
    tmp_path: Path,
) -> None:
    # SQLite shows an id it is about to assign as -1 to a BEFORE INSERT trigger.
    url = f"sqlite:///{tmp_path / 'ids.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    with pytest.raises(DBAPIError, match="ids start at 1"), engine.begin() as conn:
        conn.execute(
            sa.text(f"INSERT INTO portal_domain_audit {_COLUMNS} {_VALUES}"),
            {"id": -1, "tenant": _tenant_param(conn)},
        )
    _write_first_row(engine)  # an automatic id still goes in
    assert len(_audit_rows(engine)) == 1
    engine.dispose()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE portal_domain_audit SET actor = 'operator:mallory'",
        "DELETE FROM portal_domain_audit",
    ],
    ids=["update", "delete"],
)
def test_updating_or_deleting_audit_rows_is_still_refused(
    engine: sa.Engine, statement: str
) -> None:
    first = _write_first_row(engine)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(sa.text(statement))
    assert _audit_rows(engine) == [(first, FIRST_ACTOR, "ok")]


@pytest.mark.postgres
def test_truncate_is_refused_even_for_the_owner(postgres_url: str) -> None:
    migrate.upgrade(postgres_url)
    engine = make_engine(postgres_url)  # the cluster's superuser, who owns everything
    try:
        first = _write_first_row(engine)
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE portal_domain_audit"))
        assert _audit_rows(engine) == [(first, FIRST_ACTOR, "ok")]
    finally:
        engine.dispose()


def test_downgrade_removes_the_guards_and_upgrade_restores_them(
    database_url: str, engine: sa.Engine
) -> None:
    migrate.downgrade(database_url, "7b2d4c9e1a30")
    assert _guard_triggers(engine) == set()
    migrate.upgrade(database_url)
    expected = {
        "sqlite": {"portal_domain_audit_no_replace", "portal_domain_audit_positive_id"},
        "postgresql": {"portal_domain_audit_no_truncate"},
    }
    assert _guard_triggers(engine) == expected[engine.dialect.name]


def _guard_triggers(engine: sa.Engine) -> set[str]:
    query = {
        "sqlite": "SELECT name FROM sqlite_master WHERE type = 'trigger'",
        "postgresql": "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal",
    }[engine.dialect.name]
    older = {
        "portal_domain_audit_append_only",
        "portal_domain_audit_no_update",
        "portal_domain_audit_no_delete",
    }
    with engine.connect() as conn:
        return set(conn.execute(sa.text(query)).scalars()) - older


# ------------------------------------------------------------------ PostgreSQL roles


@dataclass(frozen=True)
class RoleSetup:
    admin_url: str
    app_url: str
    names: roles.RoleNames


def _role_names() -> roles.RoleNames:
    # Roles are cluster-wide and the server is shared by the session: unique names.
    suffix = uuid.uuid4().hex[:8]
    return roles.RoleNames(owner=f"pd_owner_{suffix}", app=f"pd_app_{suffix}")


def _as_role(url: str, role: str) -> str:
    # The test cluster trusts local connections, so no password is needed.
    return make_url(url).set(username=role, password=None).render_as_string(hide_password=False)


@pytest.fixture
def role_setup(postgres_url: str) -> RoleSetup:
    names = _role_names()
    roles.upgrade_with_roles(postgres_url, "head", names)
    return RoleSetup(admin_url=postgres_url, app_url=_as_role(postgres_url, names.app), names=names)


@pytest.fixture
def app_engine(role_setup: RoleSetup) -> Iterator[sa.Engine]:
    engine = make_engine(role_setup.app_url)
    yield engine
    engine.dispose()


@pytest.fixture
def admin_engine(role_setup: RoleSetup) -> Iterator[sa.Engine]:
    engine = make_engine(role_setup.admin_url)
    yield engine
    engine.dispose()


APP_ROLE_ATTACKS = {
    "update": "UPDATE portal_domain_audit SET actor = 'operator:mallory'",
    "delete": "DELETE FROM portal_domain_audit",
    "truncate": "TRUNCATE portal_domain_audit",
    "upsert": OVERWRITES["postgresql"]["upsert"],
    "disable-all-triggers": "ALTER TABLE portal_domain_audit DISABLE TRIGGER ALL",
    "disable-the-trigger": "ALTER TABLE portal_domain_audit"
    " DISABLE TRIGGER portal_domain_audit_append_only",
    "drop-trigger": "DROP TRIGGER portal_domain_audit_append_only ON portal_domain_audit",
    "drop-truncate-trigger": "DROP TRIGGER portal_domain_audit_no_truncate ON portal_domain_audit",
    "replace-trigger-function": "CREATE OR REPLACE FUNCTION portal_domain_audit_append_only()"
    " RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
    "take-ownership": "ALTER TABLE portal_domain_audit OWNER TO CURRENT_USER",
    "become-owner": "SET ROLE {owner}",
    "drop-table": "DROP TABLE portal_domain_audit",
}


@pytest.mark.postgres
@pytest.mark.parametrize("attack", list(APP_ROLE_ATTACKS))
def test_the_app_role_cannot_rewrite_the_audit_or_switch_its_guards_off(
    role_setup: RoleSetup, admin_engine: sa.Engine, app_engine: sa.Engine, attack: str
) -> None:
    first = _write_first_row(app_engine)  # the app may append
    statement = APP_ROLE_ATTACKS[attack].format(owner=role_setup.names.owner)

    with pytest.raises(DBAPIError, match="permission denied|must be owner"):
        with app_engine.begin() as conn:
            conn.execute(sa.text(statement), {"id": first, "tenant": _tenant_param(conn)})

    assert _audit_rows(admin_engine) == [(first, FIRST_ACTOR, "ok")]
    with admin_engine.connect() as conn:
        triggers: dict[str, str] = dict(
            conn.execute(
                sa.text(
                    "SELECT tgname, tgenabled FROM pg_trigger"
                    " WHERE tgrelid = 'portal_domain_audit'::regclass AND NOT tgisinternal"
                )
            ).all()
        )
    assert triggers == {
        "portal_domain_audit_append_only": "O",
        "portal_domain_audit_no_truncate": "O",
    }


@pytest.mark.postgres
def test_the_service_runs_as_the_app_role_and_audits(role_setup: RoleSetup) -> None:
    migrate.require_current_schema(role_setup.app_url)  # it may read alembic_version
    engine = make_engine(role_setup.app_url)
    try:
        service = DomainService(make_session_factory(engine), base_domain=BASE)
        view = service.request(ALICE, "portal.acme.com", OPERATOR)
        with pytest.raises(HostnameError):
            service.request(ALICE, "not a hostname", OPERATOR)
        service.disable(ALICE, OPERATOR)
        audit = [(entry.action, entry.outcome) for entry in service.audit_log(ALICE)]
    finally:
        engine.dispose()
    assert view.domain == "portal.acme.com"
    assert audit == [
        (DomainAction.REQUEST.value, "ok"),
        (DomainAction.REQUEST.value, "rejected"),
        (DomainAction.DISABLE.value, "ok"),
    ]


@pytest.mark.postgres
def test_the_schema_belongs_to_the_owner_and_the_app_role_holds_only_its_grants(
    role_setup: RoleSetup, admin_engine: sa.Engine
) -> None:
    names = role_setup.names
    with admin_engine.connect() as conn:
        owners = set(
            conn.execute(
                sa.text(
                    "SELECT pg_get_userbyid(relowner) FROM pg_class"
                    " WHERE relname LIKE 'portal\\_domain%' OR relname = 'alembic_version'"
                    " UNION SELECT pg_get_userbyid(typowner) FROM pg_type"
                    " WHERE typname LIKE 'portal\\_domain%' AND typtype = 'e'"
                    " UNION SELECT pg_get_userbyid(proowner) FROM pg_proc"
                    " WHERE proname LIKE 'portal\\_domain%'"
                )
            ).scalars()
        )
        grants = {
            (table, privilege)
            for table, privilege in conn.execute(
                sa.text(
                    "SELECT table_name, privilege_type FROM information_schema.role_table_grants"
                    " WHERE grantee = :app"
                ),
                {"app": names.app},
            ).all()
        }
    assert owners == {names.owner}
    crud = {"SELECT", "INSERT", "UPDATE", "DELETE"}
    assert grants == {
        ("portal_domain_audit", "SELECT"),
        ("portal_domain_audit", "INSERT"),
        ("alembic_version", "SELECT"),
        *{("portal_domains", p) for p in crud},
        *{("portal_domain_outbox", p) for p in crud},
        *{("portal_domain_stack_runs", p) for p in crud},
    }


@pytest.mark.postgres
def test_creating_the_roles_twice_changes_nothing_and_keeps_the_rows(
    role_setup: RoleSetup, admin_engine: sa.Engine, app_engine: sa.Engine
) -> None:
    first = _write_first_row(app_engine)

    report = roles.upgrade_with_roles(role_setup.admin_url, "head", role_setup.names)

    assert report.created == ()
    assert _audit_rows(admin_engine) == [(first, FIRST_ACTOR, "ok")]
    assert migrate.schema_state(role_setup.admin_url).up_to_date
    with pytest.raises(DBAPIError, match="permission denied"), app_engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE portal_domain_audit"))
    _write_first_row(app_engine)


@pytest.mark.postgres
def test_a_schema_migrated_without_roles_is_handed_to_the_owner(postgres_url: str) -> None:
    migrate.upgrade(postgres_url)  # as the admin: it owns everything
    names = _role_names()

    report = roles.upgrade_with_roles(postgres_url, "head", names)

    assert report.created == (names.owner, names.app)
    engine = make_engine(_as_role(postgres_url, names.app))
    try:
        with pytest.raises(DBAPIError, match="must be owner"), engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE portal_domain_audit DISABLE TRIGGER ALL"))
        with engine.connect() as conn:
            owner = conn.execute(
                sa.text("SELECT tableowner FROM pg_tables WHERE tablename = 'portal_domain_audit'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert owner == names.owner


@pytest.mark.postgres
def test_a_database_owner_with_createrole_needs_no_superuser(postgres_admin_url: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    admin, database = f"pd_admin_{suffix}", f"pd_db_{suffix}"
    engine = sa.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f"CREATE ROLE {admin} LOGIN CREATEROLE"))
            conn.execute(sa.text(f"CREATE DATABASE {database} OWNER {admin}"))
    finally:
        engine.dispose()
    url = (
        make_url(postgres_admin_url)
        .set(username=admin, database=database)
        .render_as_string(hide_password=False)
    )
    names = _role_names()

    roles.upgrade_with_roles(url, "head", names)
    roles.upgrade_with_roles(url, "head", names)

    assert migrate.schema_state(url).up_to_date
    app = make_engine(_as_role(url, names.app))
    try:
        _write_first_row(app)
        with pytest.raises(DBAPIError, match="permission denied"), app.begin() as conn:
            conn.execute(sa.text("TRUNCATE portal_domain_audit"))
    finally:
        app.dispose()


@pytest.mark.postgres
def test_an_app_role_that_is_a_member_of_the_owner_is_refused(role_setup: RoleSetup) -> None:
    names = role_setup.names
    engine = make_engine(role_setup.admin_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"GRANT {names.owner} TO {names.app}"))
        with pytest.raises(roles.RoleSetupRefused, match="member of"):
            roles.upgrade_with_roles(role_setup.admin_url, "head", names)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_the_password_is_sent_as_the_verifier_postgres_itself_computes(
    postgres_url: str,
) -> None:
    names = _role_names()
    password = "correct horse battery staple"
    roles.upgrade_with_roles(postgres_url, "head", names, app_password=password)
    engine = make_engine(postgres_url)
    try:
        with engine.begin() as conn:
            ours = _stored_password(conn, names.app)
            # Let the server hash the same password, then compare with its salt.
            conn.execute(sa.text("SET LOCAL password_encryption = 'scram-sha-256'"))
            conn.execute(sa.text(f"ALTER ROLE {names.owner} PASSWORD '{password}'"))
            theirs = _stored_password(conn, names.owner)
            conn.execute(sa.text(f"ALTER ROLE {names.owner} PASSWORD NULL"))
    finally:
        engine.dispose()
    assert ours.startswith("SCRAM-SHA-256$4096:")
    assert password not in ours
    iterations, salt = theirs.split("$")[1].split(":")
    assert (
        roles.scram_verifier(password, salt=base64.b64decode(salt), iterations=int(iterations))
        == theirs
    )


def _stored_password(conn: sa.Connection, role: str) -> str:
    return str(
        conn.execute(
            sa.text("SELECT rolpassword FROM pg_authid WHERE rolname = :r"), {"r": role}
        ).scalar_one()
    )


@pytest.mark.parametrize(
    ("owner", "app"),
    [("Owner", "app"), ("owner; DROP TABLE x", "app"), ("same", "same"), ("", "app")],
)
def test_role_names_must_be_plain_and_distinct(owner: str, app: str) -> None:
    with pytest.raises(roles.InvalidRoleInput):
        roles.RoleNames(owner=owner, app=app)


def test_roles_are_refused_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "portal-domains.db"
    with pytest.raises(roles.RolesUnsupported, match="roles are a PostgreSQL feature"):
        roles.upgrade_with_roles(f"sqlite:///{path}", "head", roles.RoleNames())
    assert not path.exists()


# ------------------------------------------------------------------ the CLI


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PORTAL_DOMAINS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PORTAL_DOMAINS_BASE_DOMAIN", BASE)
    monkeypatch.setenv("PORTAL_DOMAINS_START_WORKFLOWS", "off")


@pytest.mark.postgres
@pytest.mark.usefixtures("cli_env")
def test_db_upgrade_creates_the_roles_and_never_prints_the_password(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    names = _role_names()
    password = "s3cret-app-password"
    monkeypatch.setenv("PORTAL_DOMAINS_DATABASE_URL", postgres_url)
    monkeypatch.setenv("PORTAL_DOMAINS_DB_APP_PASSWORD", password)
    argv = ["db", "upgrade", "--create-roles", "--owner-role", names.owner]
    argv += ["--app-role", names.app, "--json"]

    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert password not in out + err
    payload: dict[str, Any] = json.loads(out)
    assert payload["up_to_date"] is True
    assert payload["roles"] == {
        "owner": names.owner,
        "app": names.app,
        "created": [names.owner, names.app],
        "app_password_set": True,
    }

    assert main(argv) == 0  # again: nothing to create
    assert json.loads(capsys.readouterr().out)["roles"]["created"] == []


@pytest.mark.usefixtures("cli_env")
def test_db_upgrade_refuses_roles_on_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PORTAL_DOMAINS_DATABASE_URL", f"sqlite:///{tmp_path / 'pd.db'}")
    assert main(["db", "upgrade", "--create-roles"]) == ExitCode.INVALID_INPUT
    assert "roles are a PostgreSQL feature" in capsys.readouterr().err
    assert main(["db", "upgrade", "--app-role", "x"]) == ExitCode.INVALID_INPUT
    assert "need --create-roles" in capsys.readouterr().err


# --------------------------------------------- a refused audit row leaves a minimal one


@contextmanager
def _service_without_escaping(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DomainService]:
    """A service on a migrated PostgreSQL that writes audit text unescaped."""
    migrate.upgrade(postgres_url)
    # Simulate escaping that misses something: the NUL reaches a PostgreSQL text column.
    monkeypatch.setattr(service_module, "safe_text", lambda text: text)
    engine = make_engine(postgres_url)
    try:
        yield DomainService(make_session_factory(engine), base_domain=BASE)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_an_audit_row_postgres_refuses_is_replaced_by_a_minimal_one(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with _service_without_escaping(postgres_url, monkeypatch) as service:
        with caplog.at_level(logging.ERROR, logger="db.service"):
            with pytest.raises(HostnameError):
                service.request(ALICE, "portal\x00.acme.com", OPERATOR)
        entries = service.audit_log(ALICE)

    assert [(e.actor, e.action, e.outcome, e.domain, e.detail) for e in entries] == [
        (OPERATOR, "request", "rejected", None, {"audit_error": "DataError"})
    ]
    assert any(record.exc_info for record in caplog.records), "the failure is logged"


@pytest.mark.postgres
def test_when_even_the_minimal_row_is_refused_the_error_propagates(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _service_without_escaping(postgres_url, monkeypatch) as service:
        with pytest.raises(DBAPIError):  # the actor goes into the minimal row too
            service.request(ALICE, "not a hostname", "operator:\x00")
        entries = service.audit_log(ALICE)
    assert entries == []
