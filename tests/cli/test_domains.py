"""`portal-domains db ...` and `portal-domains domains ...` against a temporary SQLite file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from cli.exit_codes import ExitCode
from cli.main import main
from core.hostnames import REASON_CODES
from core.status import DomainStatus
from db import migrate
from db.service import DomainService
from db.session import make_engine, make_session_factory

ALICE = "3f2b6c1e-8d4a-4e2f-9b7c-1a2b3c4d5e6f"
BOB = "9a8b7c6d-1111-4222-8333-444455556666"


@pytest.fixture
def db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "state" / "portal-domains.db"
    monkeypatch.setenv("PORTAL_DOMAINS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PORTAL_DOMAINS_DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.setenv("PORTAL_DOMAINS_BASE_DOMAIN", "portal.algapsa.com")
    monkeypatch.setenv("USER", "alice")
    # no Temporal in these tests: the after-commit hook is exercised by the reconciler tests
    monkeypatch.setenv("PORTAL_DOMAINS_START_WORKFLOWS", "off")
    return path


@pytest.fixture
def migrated(db_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    return db_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code, out, err = run(capsys, *argv, "--json")
    assert err == ""
    return code, json.loads(out)


def assert_one_error_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def audit_actors(db_path: Path, tenant: str) -> list[str]:
    engine = make_engine(f"sqlite:///{db_path}")
    try:
        service = DomainService(make_session_factory(engine), base_domain="portal.algapsa.com")
        return [entry.actor for entry in service.audit_log(UUID(tenant))]
    finally:
        engine.dispose()


# ---------------------------------------------------------------------- validate


def test_validate_prints_the_normalised_hostname(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "domains", "validate", "Bücher.Acme.de.") == (
        0,
        "xn--bcher-kva.acme.de\n",
        "",
    )
    assert not db_path.exists()  # validation never touches the database


def test_validate_refuses_with_the_reason_code_and_exit_2(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "domains", "validate", "acme.com")
    assert (code, out) == (2, "")
    assert_one_error_line(err, "registrable_domain:", "portal.acme.com")


def test_validate_json_reports_both_outcomes(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_json(capsys, "domains", "validate", "PORTAL.acme.com") == (
        0,
        {"input": "PORTAL.acme.com", "valid": True, "hostname": "portal.acme.com"},
    )
    code, payload = run_json(capsys, "domains", "validate", "my_portal.acme.com")
    assert code == 2
    assert payload["valid"] is False
    assert payload["code"] == "invalid_characters"
    assert "underscore" in payload["message"]


def test_validate_help_lists_every_reason_code(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["domains", "validate", "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for code in REASON_CODES:
        assert f"  {code} " in out


# ----------------------------------------------------------------------- schema


def test_domain_commands_on_an_unmigrated_database_say_what_to_run(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "domains", "list")
    assert (code, out) == (ExitCode.UNAVAILABLE, "")
    assert_one_error_line(err, "run `portal-domains db upgrade`")
    assert not db_path.exists()


def test_db_upgrade_and_downgrade_report_the_revision(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, payload = run_json(capsys, "db", "upgrade")
    assert code == 0
    assert payload["revision"] == payload["head"] == migrate.head_revision()
    assert payload["up_to_date"] is True
    assert db_path.exists()

    code, out, _ = run(capsys, "db", "upgrade")  # idempotent
    assert code == 0
    assert migrate.head_revision() in out

    code, payload = run_json(capsys, "db", "downgrade", "--revision", "base")
    assert (code, payload["revision"]) == (0, None)
    code, _, err = run(capsys, "domains", "list")
    assert code == ExitCode.UNAVAILABLE
    assert "db upgrade" in err


def test_db_downgrade_requires_a_revision_and_refuses_unknown_ones(
    migrated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["db", "downgrade"])
    assert caught.value.code == 2
    capsys.readouterr()

    code, _, err = run(capsys, "db", "downgrade", "--revision", "nonexistent")
    assert code == 1
    assert_one_error_line(err, "nonexistent")


def test_an_unreachable_database_is_one_error_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(
        "PORTAL_DOMAINS_DATABASE_URL", "postgresql+psycopg://nobody:secret@127.0.0.1:1/none"
    )
    code, out, err = run(capsys, "domains", "list")
    assert (code, out) == (ExitCode.UNAVAILABLE, "")
    assert_one_error_line(err, "database error")
    assert "secret" not in err


# ---------------------------------------------------------------- domain commands


def test_request_then_status_and_list_show_the_domain(
    migrated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, view = run_json(
        capsys, "domains", "request", "--tenant", ALICE, "--domain", "Portal.Acme.com"
    )
    assert code == 0
    assert view["domain"] == "portal.acme.com"
    assert view["status"] == "pending_dns"
    assert view["canonical_host"] == "3f2b6c1.portal.algapsa.com"
    assert view["tenant_id"] == ALICE

    assert run_json(capsys, "domains", "status", "--tenant", ALICE) == (0, view)
    code, listing = run_json(capsys, "domains", "list")
    assert (code, listing) == (0, [view])

    code, out, _ = run(capsys, "domains", "status", "--tenant", ALICE)
    assert code == 0
    assert "pending_dns" in out
    assert "3f2b6c1.portal.algapsa.com" in out
    code, out, _ = run(capsys, "domains", "list")
    assert out.splitlines()[0].split() == [
        "TENANT",
        "DOMAIN",
        "STATUS",
        "CANONICAL",
        "HOST",
        "UPDATED",
    ]
    assert ALICE in out.splitlines()[1]


def test_operator_actions_are_audited_as_the_unix_user_or_the_given_actor(
    migrated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run(capsys, "domains", "request", "--tenant", ALICE, "--domain", "portal.acme.com")[0] == 0
    )
    assert run(capsys, "domains", "disable", "--tenant", ALICE, "--actor", "ticket:OPS-42")[0] == 0
    assert audit_actors(migrated, ALICE) == ["operator:alice", "ticket:OPS-42"]


def test_a_hostname_held_by_another_tenant_exits_1(
    migrated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "domains", "request", "--tenant", ALICE, "--domain", "portal.acme.com")
    # Alice's DNS is verified: only now does she hold the hostname.
    service = DomainService(
        make_session_factory(make_engine(f"sqlite:///{migrated}")),
        base_domain="portal.algapsa.com",
    )
    for old, new in (
        (DomainStatus.PENDING_DNS, DomainStatus.VERIFYING_DNS),
        (DomainStatus.VERIFYING_DNS, DomainStatus.PENDING_CERTIFICATE),
    ):
        service.record_status(UUID(ALICE), expected_status=old, new_status=new, message="x")
    code, out, err = run(
        capsys, "domains", "request", "--tenant", BOB, "--domain", "portal.acme.com", "--json"
    )
    assert (code, out) == (1, "")
    assert_one_error_line(err, "domain_already_claimed")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (
            ["domains", "request", "--tenant", "acme", "--domain", "portal.acme.com"],
            "invalid_tenant_id",
        ),
        (["domains", "request", "--tenant", ALICE, "--domain", "*.acme.com"], "wildcard"),
        (["domains", "status", "--tenant", "not-a-uuid"], "invalid_tenant_id"),
    ],
)
def test_invalid_input_exits_2_with_one_error_line(
    migrated: Path, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert_one_error_line(err, fragment)


def test_status_of_a_tenant_without_a_domain_exits_1(
    migrated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "domains", "status", "--tenant", BOB)
    assert code == 1
    assert_one_error_line(err, "domain_not_found", BOB)


def test_disable_refresh_and_filtered_list(
    migrated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "domains", "request", "--tenant", ALICE, "--domain", "portal.acme.com")
    run(capsys, "domains", "request", "--tenant", BOB, "--domain", "portal.bob.net")

    code, view = run_json(capsys, "domains", "refresh", "--tenant", BOB)
    assert (code, view["status"]) == (0, "pending_dns")
    code, view = run_json(capsys, "domains", "disable", "--tenant", ALICE)
    assert (code, view["status"]) == (0, "disabled")
    assert run_json(capsys, "domains", "disable", "--tenant", ALICE)[0] == 0  # idempotent

    code, disabled = run_json(capsys, "domains", "list", "--status", "disabled")
    assert [d["tenant_id"] for d in disabled] == [ALICE]
    code, pending = run_json(capsys, "domains", "list", "--status", "pending_dns")
    assert [d["tenant_id"] for d in pending] == [BOB]

    code, _, err = run(capsys, "domains", "refresh", "--tenant", ALICE)
    assert code == 1
    assert_one_error_line(err, "domain_disabled")

    code, view = run_json(
        capsys, "domains", "request", "--tenant", ALICE, "--domain", "portal.acme.com"
    )
    assert (code, view["status"]) == (0, "pending_dns")


def test_list_rejects_an_unknown_status(migrated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["domains", "list", "--status", "exploded"])
    assert caught.value.code == 2


def test_audit_shows_every_change_and_refusal_newest_first(
    migrated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "domains", "request", "--tenant", ALICE, "--domain", "portal.acme.com")
    run(capsys, "domains", "disable", "--tenant", ALICE)
    run(capsys, "domains", "refresh", "--tenant", ALICE)  # refused: disabled
    code, entries = run_json(capsys, "domains", "audit", "--tenant", ALICE)
    assert code == 0
    assert [(e["action"], e["outcome"]) for e in entries] == [
        ("refresh", "rejected"),
        ("disable", "ok"),
        ("request", "ok"),
    ]
    assert entries[1]["status_after"] == "disabled"
    code, latest = run_json(capsys, "domains", "audit", "--tenant", ALICE, "--limit", "1")
    assert [e["action"] for e in latest] == ["refresh"]
    code, out, _ = run(capsys, "domains", "audit", "--tenant", ALICE)
    assert code == 0
    assert "pending_dns -> disabled" in out


def test_purge_and_expire_from_the_command_line(
    migrated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "domains", "request", "--tenant", ALICE, "--domain", "portal.acme.com")
    code, out, err = run(capsys, "domains", "purge", "--tenant", ALICE)
    assert code == 4  # refused: not disabled
    assert_one_error_line(err, "domain_not_disabled")
    # An unverified claim: expiring everything older than a millisecond disables it.
    code, expired = run_json(capsys, "domains", "expire", "--older-than-hours", "0.0000003")
    assert expired == {"expired": [ALICE]}
    code, _, err = run(capsys, "domains", "purge", "--tenant", ALICE)
    assert code == 0, err
    code, _, err = run(capsys, "domains", "status", "--tenant", ALICE)
    assert code == 1
    assert_one_error_line(err, "domain_not_found")
