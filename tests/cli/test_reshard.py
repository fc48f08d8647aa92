"""`portal-domains stack reshard` against the real engine and a file backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from core.records import DomainRecord
from core.status import DomainStatus
from stack.automation import EnvironmentStack
from stack.config import load_stack_config
from stack.toolchain import pulumi_environment

pytestmark = pytest.mark.pulumi

# With 4 shards: 1111111 -> staging-0, 5555555 -> staging-1, none in staging-2 or -3.
TENANTS = [
    ("1111111", "11111111-aaaa-4aaa-8aaa-000000000001", "portal.acme.com"),
    ("5555555", "55555555-aaaa-4aaa-8aaa-000000000005", "clients.globex.io"),
]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("PORTAL_DOMAINS_HOME", str(home))
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "test")
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    penv = pulumi_environment(work_dir=home, environ={"PULUMI_CONFIG_PASSPHRASE": "test"})
    stack = EnvironmentStack(penv, load_stack_config("staging"), work_dir=home, policy_pack=None)
    rows = [
        DomainRecord(
            tenant_id=tid,
            prefix=slug,
            domain=domain,
            canonical_host=f"{slug}.portal.algapsa.com",
            certificate_secret_name=f"portal-domain-{slug}-tls",
            status=DomainStatus.ACTIVE,
        )
        for slug, tid, domain in TENANTS
    ]
    assert stack.up(rows).counts["create"] == 6
    return home


def test_stack_reshard_dry_run_then_moves_and_back_to_the_configured_count(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["stack", "reshard", "--env", "staging"]
    assert main([*args, "--shards", "4", "--dry-run", "--json", "--quiet"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["dry_run"] is True
    assert dry["moved"] == []
    assert dry["planned"]["moves"] == [
        {"source": "staging", "dest": "staging-0", "slugs": ["1111111"], "issuer": True},
        {"source": "staging", "dest": "staging-1", "slugs": ["5555555"], "issuer": False},
    ]
    assert dry["planned"]["remove"] == ["staging"]

    assert main([*args, "--shards", "4"]) == 0
    captured = capsys.readouterr()
    assert "moved staging -> staging-1: 5555555" in captured.err  # progress on stderr
    assert "removed stack(s): staging" in captured.out
    assert "tenants per stack: staging-0 1, staging-1 1, staging-2 0, staging-3 0" in captured.out

    assert main([*args, "--shards", "4"]) == 0
    assert "already in its shard: nothing to do" in capsys.readouterr().out

    # Without --shards: the environment's `shards` setting (1 in Pulumi.staging.yaml).
    assert main([*args, "--json", "--quiet"]) == 0
    back = json.loads(capsys.readouterr().out)
    assert back["count"] == 1
    assert back["removed"] == ["staging-0", "staging-1", "staging-2", "staging-3"]
    assert back["sizes"] == {"staging": 2}


def test_stack_reshard_rejects_a_shard_count_out_of_range(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["stack", "reshard", "--env", "staging", "--shards", "0"])
    assert exited.value.code == 2
    assert "expected 1 to 256" in capsys.readouterr().err
