"""PostgreSQL roles: an owner runs the migrations; the service's role cannot rewrite the audit.

The audit table's triggers stop UPDATE, DELETE and TRUNCATE, but the role that
owns a table may disable or drop its triggers. So the service must not run as
the owner. `upgrade_with_roles` (behind `portal-domains db upgrade
--create-roles`), connected as an administrator, in one transaction:

1. creates the two roles if missing: the owner `NOLOGIN` (it is taken on with
   `SET ROLE`), the application role `LOGIN`; sets the application role's
   password when one is given, sent as a SCRAM-SHA-256 verifier so the
   cleartext never reaches the server (nor its statement log);
2. lets the owner create objects (CREATE on the schema and on the database:
   the first migration installs the citext extension) and hands it the
   project's objects an earlier plain `db upgrade` left with another owner;
3. runs the migrations under `SET LOCAL ROLE <owner>`, so what they create
   belongs to the owner;
4. grants the application role exactly what the service needs: SELECT and
   INSERT on portal_domain_audit, SELECT, INSERT, UPDATE and DELETE on
   portal_domains and portal_domain_outbox, USAGE on their id sequences, SELECT
   on alembic_version (the service checks the schema revision). Whatever else it
   held on those tables is revoked first.

The application role owns nothing and is not a member of the owner, so it
cannot TRUNCATE the audit table, ALTER it (DISABLE TRIGGER) or DROP its
triggers, nor UPDATE or DELETE its rows. An existing application role that is a
superuser or a member of the owner is refused rather than changed.

Everything is idempotent: running it again re-creates nothing, re-applies the
grants, and (with a password given) resets the password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from alembic import command
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from core.errors import ErrorKind, PortalDomainsError
from db import migrate
from db.session import is_sqlite, make_engine

logger = logging.getLogger(__name__)

DEFAULT_OWNER_ROLE = "portal_domains_owner"
DEFAULT_APP_ROLE = "portal_domains_app"

# What the service may do, per table. Anything not listed is not granted.
APP_TABLE_PRIVILEGES: Mapping[str, tuple[str, ...]] = {
    "portal_domain_audit": ("SELECT", "INSERT"),
    "portal_domains": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "portal_domain_outbox": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "portal_domain_stack_runs": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "alembic_version": ("SELECT",),
}

# Objects of this project found in the schema and handed to the owner: the
# migrations name everything `portal_domain...`, Alembic adds alembic_version.
_OWN_PATTERN = "portal\\_domain%"

_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_SCRAM_ITERATIONS = 4096  # PostgreSQL's default (scram_iterations)


class RolesUnsupported(PortalDomainsError, ValueError):
    """Roles were asked for on a database that has none (SQLite)."""

    code = "roles_unsupported"
    kind = ErrorKind.INVALID_INPUT


class InvalidRoleInput(PortalDomainsError, ValueError):
    """A role name that is not a plain identifier, one name twice, or an unusable password."""

    code = "invalid_role_input"
    kind = ErrorKind.INVALID_INPUT


class RoleSetupRefused(PortalDomainsError, RuntimeError):
    """The roles cannot be set up as asked; nothing was changed."""

    code = "role_setup_refused"
    kind = ErrorKind.REFUSED


@dataclass(frozen=True, kw_only=True)
class RoleNames:
    owner: str = DEFAULT_OWNER_ROLE
    app: str = DEFAULT_APP_ROLE

    def __post_init__(self) -> None:
        for name in (self.owner, self.app):
            if not _ROLE_NAME.fullmatch(name):
                raise InvalidRoleInput(
                    f"role name {name!r} must be 1-63 characters of a-z, 0-9 and _,"
                    " not starting with a digit"
                )
        if self.owner == self.app:
            raise InvalidRoleInput(
                f"the owner and the application role must differ (both are {self.owner!r})"
            )


@dataclass(frozen=True, kw_only=True)
class RolesReport:
    owner: str
    app: str
    created: tuple[str, ...]  # the roles this run created
    app_password_set: bool

    def to_json(self) -> dict[str, object]:
        return {
            "owner": self.owner,
            "app": self.app,
            "created": list(self.created),
            "app_password_set": self.app_password_set,
        }


def upgrade_with_roles(
    url: str, revision: str, roles: RoleNames, *, app_password: str | None = None
) -> RolesReport:
    """Create the roles, migrate as the owner, grant the application role; one transaction."""
    if is_sqlite(url):
        raise RolesUnsupported(
            "roles are a PostgreSQL feature; SQLite has none: run `db upgrade` without"
            " --create-roles"
        )
    if app_password is not None:
        _check_password(app_password)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            created = _ensure_roles(conn, roles, app_password)
            _let_owner_create(conn, roles)
            _hand_over(conn, roles.owner)
            conn.exec_driver_sql(f"SET LOCAL ROLE {_quote(conn, roles.owner)}")
            logger.info("migrating database up to %s as role %s", revision, roles.owner)
            config = migrate.alembic_config(url)
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
            _grant_app(conn, roles.app)
            conn.exec_driver_sql("RESET ROLE")
    finally:
        engine.dispose()
    return RolesReport(
        owner=roles.owner,
        app=roles.app,
        created=created,
        app_password_set=app_password is not None,
    )


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = 0) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802, RFC 7677)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    iterations = iterations or _SCRAM_ITERATIONS
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def _check_password(password: str) -> None:
    # Clients normalise non-ASCII passwords (SASLprep) before hashing; keep to
    # printable ASCII, where that normalisation changes nothing.
    if not password or not all(" " <= c <= "~" for c in password):
        raise InvalidRoleInput("the application role's password must be non-empty printable ASCII")


def _ensure_roles(conn: Connection, roles: RoleNames, app_password: str | None) -> tuple[str, ...]:
    existing = {
        row.rolname: row
        for row in conn.execute(
            text(
                "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles"
                " WHERE rolname IN (:owner, :app)"
            ),
            {"owner": roles.owner, "app": roles.app},
        )
    }
    created: list[str] = []
    owner, app = _quote(conn, roles.owner), _quote(conn, roles.app)
    if roles.owner not in existing:
        logger.info("creating role %s (owner of the schema, NOLOGIN)", roles.owner)
        conn.exec_driver_sql(f"CREATE ROLE {owner} NOLOGIN")
        created.append(roles.owner)
    if roles.app in existing:
        found = existing[roles.app]
        if found.rolsuper or found.rolbypassrls:
            raise RoleSetupRefused(
                f"role {roles.app} is a superuser or bypasses row security; the service"
                " needs a role without either: pick another --app-role"
            )
        is_member = conn.execute(
            text("SELECT pg_has_role(:app, :owner, 'MEMBER')"),
            {"app": roles.app, "owner": roles.owner},
        ).scalar_one()
        if is_member:
            raise RoleSetupRefused(
                f"role {roles.app} is a member of {roles.owner} and so could alter the audit"
                f" table: REVOKE {roles.owner} FROM {roles.app}, or pick another --app-role"
            )
    else:
        logger.info("creating role %s (the service, LOGIN)", roles.app)
        conn.exec_driver_sql(
            f"CREATE ROLE {app} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
        )
        created.append(roles.app)
    if app_password is not None:
        _set_password(conn, roles.app, app_password)
    # SET ROLE needs membership unless we are a superuser.
    needs_membership = conn.execute(
        text(
            "SELECT NOT rolsuper AND NOT pg_has_role(current_user, :owner, 'USAGE')"
            " FROM pg_roles WHERE rolname = current_user"
        ),
        {"owner": roles.owner},
    ).scalar_one()
    if needs_membership:
        conn.exec_driver_sql(f"GRANT {owner} TO CURRENT_USER")
    return tuple(created)


def _set_password(conn: Connection, role: str, password: str) -> None:
    verifier = scram_verifier(password)
    logger.info("setting the password of role %s", role)
    try:
        # A utility statement takes no bind parameters; the verifier is base64
        # and `$`, `:`, so it needs no escaping inside the quotes.
        conn.exec_driver_sql(f"ALTER ROLE {_quote(conn, role)} PASSWORD '{verifier}'")
    except DBAPIError as exc:
        # Not chained: the exception text would carry the statement.
        raise RoleSetupRefused(
            f"setting the password of role {role} failed: {type(exc.orig).__name__}"
        ) from None


def _let_owner_create(conn: Connection, roles: RoleNames) -> None:
    owner, app = _quote(conn, roles.owner), _quote(conn, roles.app)
    database = _quote(conn, conn.execute(text("SELECT current_database()")).scalar_one())
    schema = _quote(conn, _current_schema(conn))
    conn.exec_driver_sql(f"GRANT CONNECT, CREATE ON DATABASE {database} TO {owner}")
    conn.exec_driver_sql(f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {owner}")
    conn.exec_driver_sql(f"GRANT CONNECT ON DATABASE {database} TO {app}")
    conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA {schema} TO {app}")


def _hand_over(conn: Connection, owner_role: str) -> None:
    """Give the owner the tables, types and functions an earlier upgrade left to another role."""
    params = {"schema": _current_schema(conn), "pattern": _OWN_PATTERN, "owner": owner_role}
    statements: list[str] = []
    # Sequences and indexes follow their table.
    for (name,) in conn.execute(
        text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = :schema AND c.relkind IN ('r', 'p')"
            " AND (c.relname LIKE :pattern OR c.relname = 'alembic_version')"
            " AND pg_get_userbyid(c.relowner) <> :owner ORDER BY c.relname"
        ),
        params,
    ):
        statements.append(f"ALTER TABLE {_quote(conn, name)}")
    for (name,) in conn.execute(
        text(
            "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
            " WHERE n.nspname = :schema AND t.typtype = 'e' AND t.typname LIKE :pattern"
            " AND pg_get_userbyid(t.typowner) <> :owner ORDER BY t.typname"
        ),
        params,
    ):
        statements.append(f"ALTER TYPE {_quote(conn, name)}")
    for (signature,) in conn.execute(
        text(
            "SELECT p.oid::regprocedure::text FROM pg_proc p"
            " JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = :schema AND p.proname LIKE :pattern"
            " AND pg_get_userbyid(p.proowner) <> :owner ORDER BY 1"
        ),
        params,
    ):
        statements.append(f"ALTER FUNCTION {signature}")
    for statement in statements:
        logger.info("%s OWNER TO %s", statement, owner_role)
        conn.exec_driver_sql(f"{statement} OWNER TO {_quote(conn, owner_role)}")


def _grant_app(conn: Connection, app_role: str) -> None:
    app = _quote(conn, app_role)
    for table, privileges in APP_TABLE_PRIVILEGES.items():
        if conn.execute(text("SELECT to_regclass(:t)"), {"t": table}).scalar_one() is None:
            continue  # not created at the target revision
        conn.exec_driver_sql(f"REVOKE ALL ON TABLE {_quote(conn, table)} FROM {app}")
        conn.exec_driver_sql(
            f"GRANT {', '.join(privileges)} ON TABLE {_quote(conn, table)} TO {app}"
        )
        for (sequence,) in conn.execute(
            text(
                "SELECT s.oid::regclass::text FROM pg_class s"
                " JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass"
                " WHERE s.relkind = 'S' AND d.refobjid = CAST(:t AS regclass)"
                " AND d.deptype IN ('a', 'i')"
            ),
            {"t": table},
        ):
            conn.exec_driver_sql(f"REVOKE ALL ON SEQUENCE {sequence} FROM {app}")
            conn.exec_driver_sql(f"GRANT USAGE ON SEQUENCE {sequence} TO {app}")


def _current_schema(conn: Connection) -> str:
    schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    if schema is None:
        raise RoleSetupRefused("no schema on the search_path to create the tables in")
    return str(schema)


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote_identifier(name)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
