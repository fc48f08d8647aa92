"""The operator console over plain HTTP: charts, the tenant's deployment, the environment page.

In process on SQLite (make_api). Temporal is pointed at a closed port where a
test needs it unreachable; the real stack (Pulumi engine) and the Temporal dev
server only where the test says so by its markers.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import git
import pytest

from api.web import environment as environment_page
from api.web.environment import held_deletions
from core.adoption import NOT_OURS
from core.violations import PolicyViolation
from db.service import PLATFORM_LOG, REMOVAL, REMOVAL_HELD, AuditEntry, DomainService
from reconciler.wiring import environment_stack, gitops_repo
from stack.automation import EnvironmentStack, PolicyViolationsError
from stack.export import HEADER
from tests.api.conftest import LocalApi, MakeApi
from tests.support.seed import seed_pending_certificate
from tests.web.conftest import S, host_for, signed_in, walk

ENVIRONMENT = "/console/environment"
# Nothing listens there: Temporal is unreachable, and no CI server is touched by mistake.
NO_TEMPORAL = {"PORTAL_DOMAINS_TEMPORAL_ADDRESS": "127.0.0.1:1"}
ACTIONS = {
    ENVIRONMENT + "/recover": "recover_stack",
    ENVIRONMENT + "/confirm-deletions": "confirm_deletions",
    ENVIRONMENT + "/preview": "preview_changes",
}


def _signed_in(
    local: LocalApi, tenant: UUID | None, role: str = "platform_operator", sub: str = "ops"
) -> Any:
    return signed_in(local, tenant, role, sub)


def _csrf(text: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', text)
    assert found, text
    return found.group(1)


def _console_rows(local: LocalApi, tenant: UUID, action: str) -> list[AuditEntry]:
    return [e for e in local.audit(tenant) if e.action == action]


def _held(service: DomainService, tenant: UUID) -> None:
    service.request(tenant, host_for(tenant), "user:setup")
    walk(service, tenant, S.ACTIVE)
    service.disable(tenant, "user:setup")
    view = service.get(tenant)
    service.record_status(
        tenant,
        expected_status=S.DISABLED,
        new_status=S.DISABLED,
        message="Removal held: over the deletion cap.",
        details={**view.verification_details, REMOVAL: REMOVAL_HELD},
        actor="reconciler",
    )


# ------------------------------------------------------------------ charts


def test_the_console_draws_time_to_active_and_status_per_day_from_the_audit_trail(
    make_api: MakeApi,
) -> None:
    local = make_api()
    active, waiting = uuid.uuid4(), uuid.uuid4()
    for tenant, status in ((active, S.ACTIVE), (waiting, S.DNS_FAILED)):
        local.service.request(tenant, host_for(tenant), "user:setup")
        walk(local.service, tenant, status)
    page = _signed_in(local, None).get("/console")
    assert page.status_code == 200
    bars = re.findall(r'<g class="bar" data-tenant="([^"]+)" data-domain="([^"]+)"', page.text)
    assert bars == [(str(active), host_for(active))]
    today = datetime.now(UTC).date().isoformat()
    column = re.search(
        rf'<g class="day" data-day="{today}" data-total="(\d+)">(.*?)</g>', page.text, re.S
    )
    assert column is not None
    assert column.group(1) == "2"
    segments = dict(re.findall(r'data-status="([a-z_]+)" data-count="(\d+)"', column.group(2)))
    assert segments == {"dns_failed": "1", "active": "1"}
    # Drawn by the server: no script beyond the page's own, no external asset.
    assert re.findall(r"<script src=\"([^\"]+)\"", page.text) == ["/portal/static/app.js"]
    assert "http://" not in page.text.replace("http://www.w3.org", "")


# ------------------------------------------------------------------ the tenant's deployment


def test_a_tenant_page_says_when_the_stack_does_not_exist_yet(make_api: MakeApi) -> None:
    local = make_api()
    tenant = uuid.uuid4()
    local.service.request(tenant, host_for(tenant), "user:setup")
    client = _signed_in(local, None)
    page = client.get(f"/console/tenants/{tenant}")
    assert page.status_code == 200
    assert 'id="console-stack-note"' in page.text
    assert "stack does not exist yet" in page.text
    # A read creates no stack.
    health = client.get(ENVIRONMENT)
    assert 'data-exists="no"' in health.text


# ------------------------------------------------------------------ RBAC and CSRF


@pytest.mark.parametrize("path", list(ACTIONS))
def test_tenant_roles_may_not_use_the_environment_page_and_the_refusal_is_audited(
    make_api: MakeApi, path: str
) -> None:
    local = make_api(env=NO_TEMPORAL)
    tenant = uuid.uuid4()
    client = _signed_in(local, tenant, role="tenant_admin", sub="alice")
    assert client.get(ENVIRONMENT).status_code == 403
    answer = client.post(path, data={"csrf_token": "x"})
    assert answer.status_code == 403
    assert "platform operators only" in answer.text
    action = ACTIONS[path]
    denied = [e for e in local.audit(tenant) if e.outcome == "denied" and e.action == action]
    assert [(e.actor, (e.detail or {}).get("code")) for e in denied] == [
        ("user:alice", "forbidden")
    ]
    assert _console_rows(local, PLATFORM_LOG, action) == []


@pytest.mark.parametrize("path", list(ACTIONS))
def test_an_action_without_the_csrf_token_is_refused_and_audited(
    make_api: MakeApi, path: str
) -> None:
    local = make_api(env=NO_TEMPORAL)
    client = _signed_in(local, None)
    answer = client.post(path, data={"csrf_token": "forged"})
    assert answer.status_code == 403
    action = ACTIONS[path]
    rows = _console_rows(local, PLATFORM_LOG, action)
    assert [(e.outcome, (e.detail or {}).get("code")) for e in rows] == [("denied", "csrf_failed")]


# ------------------------------------------------------------------ held deletions


def test_held_deletions_are_listed_and_confirming_without_temporal_says_so(
    make_api: MakeApi,
) -> None:
    local = make_api(env=NO_TEMPORAL)
    held, other = uuid.uuid4(), uuid.uuid4()
    _held(local.service, held)
    local.service.request(other, host_for(other), "user:setup")
    local.service.disable(other, "user:setup")  # removal requested, not held
    assert [v.tenant_id for v in held_deletions(local.service)] == [held]

    client = _signed_in(local, None)
    page = client.get(ENVIRONMENT)
    assert re.findall(r'<tr data-tenant="([^"]+)">', page.text) == [str(held)]
    answer = client.post(ENVIRONMENT + "/confirm-deletions", data={"csrf_token": _csrf(page.text)})
    assert answer.status_code == 503
    assert "Temporal at 127.0.0.1:1 is unreachable" in answer.text
    assert "nothing was confirmed" in answer.text
    for log in (PLATFORM_LOG, held):
        [row] = _console_rows(local, log, "confirm_deletions")
        assert (row.actor, row.outcome) == ("operator:ops", "rejected")
        assert (row.detail or {})["held_tenants"] == [local.service.get(held).canonical_prefix]
    assert _console_rows(local, other, "confirm_deletions") == []


def test_recover_without_temporal_is_refused_not_guessed(make_api: MakeApi) -> None:
    local = make_api(env=NO_TEMPORAL)
    client = _signed_in(local, None)
    token = _csrf(client.get(ENVIRONMENT).text)
    answer = client.post(ENVIRONMENT + "/recover", data={"csrf_token": token})
    assert answer.status_code == 503
    assert "not recovered" in answer.text
    [row] = _console_rows(local, PLATFORM_LOG, "recover_stack")
    assert (row.actor, row.outcome) == ("operator:ops", "rejected")


# ------------------------------------------------------------------ the real stack


@pytest.mark.pulumi
@pytest.mark.temporal
def test_the_deployed_objects_their_file_and_a_recover_on_the_real_stack(
    make_api: MakeApi, temporal_address: str, tmp_path: Path
) -> None:
    local = make_api(env={"PORTAL_DOMAINS_TEMPORAL_ADDRESS": temporal_address})
    settings = local.app.state.gatekeeper.settings
    tenant, bystander = uuid.uuid4(), uuid.uuid4()
    for t in (tenant, bystander):
        local.service.request(t, host_for(t), "user:setup")
        walk(local.service, t, S.ACTIVE)
    stack = environment_stack(settings, settings.environment)
    stack.up(local.service.load_records())
    prefix = local.service.get(tenant).canonical_prefix

    client = _signed_in(local, None)
    page = client.get(f"/console/tenants/{tenant}")
    assert page.status_code == 200, page.text
    kinds = re.findall(r'<tr data-kind="([^"]+)">', page.text)
    assert sorted(kinds) == ["Certificate", "Gateway", "VirtualService"]
    assert f"{stack.config.manifest_root}/{prefix}.yaml" in page.text
    kube_file = re.search(r'<pre id="console-kube-file">(.*?)</pre>', page.text, re.S)
    assert kube_file is not None
    assert host_for(tenant) in kube_file.group(1)
    assert host_for(bystander) not in kube_file.group(1)

    # A crashed run's lock file: shown, then released by Recover.
    locks = Path(stack.penv.backend_url.removeprefix("file://")) / ".pulumi" / "locks"
    lock = locks / "organization" / "portal-domains" / stack.stack_name / "crashed.json"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("{}")
    health = client.get(ENVIRONMENT)
    assert 'data-exists="yes"' in health.text
    assert 'data-locks="1"' in health.text
    answer = client.post(
        ENVIRONMENT + "/recover", data={"csrf_token": _csrf(health.text)}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    assert not lock.exists()
    after = client.get(answer.headers["location"])
    assert "The stack was recovered." in after.text
    assert 'data-locks="0"' in after.text
    [row] = _console_rows(local, PLATFORM_LOG, "recover_stack")
    assert row.outcome == "ok"
    assert any("lock" in step for step in (row.detail or {})["steps"])


# ------------------------------------------------------------------ preview pending changes


def _busy_answer(monkeypatch: pytest.MonkeyPatch, busy: bool) -> None:
    """What the environment workflow's status query answers (the Temporal side is
    covered by reconciler.starter's own tests)."""

    async def answer(settings: object, environment: str) -> bool:
        return busy

    monkeypatch.setattr(environment_page, "_busy", answer)


def test_a_preview_is_refused_while_the_workflow_reconciles(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = make_api(env=NO_TEMPORAL)
    _busy_answer(monkeypatch, True)
    client = _signed_in(local, None)
    token = _csrf(client.get(ENVIRONMENT).text)
    answer = client.post(ENVIRONMENT + "/preview", data={"csrf_token": token})
    assert answer.status_code == 409
    assert "is reconciling right now" in answer.text
    assert 'id="console-preview"' not in answer.text
    [row] = _console_rows(local, PLATFORM_LOG, "preview_changes")
    assert (row.actor, row.outcome) == ("operator:ops", "rejected")
    assert "reconciling" in (row.detail or {})["reason"]


def test_a_preview_without_temporal_is_refused_not_guessed(make_api: MakeApi) -> None:
    local = make_api(env=NO_TEMPORAL)
    client = _signed_in(local, None)
    token = _csrf(client.get(ENVIRONMENT).text)
    answer = client.post(ENVIRONMENT + "/preview", data={"csrf_token": token})
    assert answer.status_code == 503
    assert "nothing previewed" in answer.text
    [row] = _console_rows(local, PLATFORM_LOG, "preview_changes")
    assert row.outcome == "rejected"


def test_a_preview_before_the_first_reconcile_says_there_is_no_stack_and_creates_none(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = make_api(env=NO_TEMPORAL)
    _busy_answer(monkeypatch, False)
    tenant = uuid.uuid4()
    local.service.request(tenant, host_for(tenant), "user:setup")
    walk(local.service, tenant, S.PENDING_CERTIFICATE)
    client = _signed_in(local, None)
    token = _csrf(client.get(ENVIRONMENT).text)
    answer = client.post(ENVIRONMENT + "/preview", data={"csrf_token": token})
    assert answer.status_code == 409
    assert "does not exist yet" in answer.text
    assert 'data-exists="no"' in answer.text
    assert 'data-exists="no"' in client.get(ENVIRONMENT).text
    [row] = _console_rows(local, PLATFORM_LOG, "preview_changes")
    assert row.outcome == "rejected"


@pytest.mark.pulumi
@pytest.mark.temporal
def test_a_preview_on_the_real_stack_lists_changes_and_held_deletions_and_a_failure(
    make_api: MakeApi,
    temporal_address: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # deletionCap 0: any removal is held until an operator confirms.
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    staging = (Path(__file__).parents[2] / "Pulumi.staging.yaml").read_text()
    assert 'deletionCap: "10"' in staging
    (stacks / "Pulumi.staging.yaml").write_text(
        staging.replace('deletionCap: "10"', 'deletionCap: "0"')
    )
    local = make_api(
        env={
            "PORTAL_DOMAINS_TEMPORAL_ADDRESS": temporal_address,
            "PORTAL_DOMAINS_STACK_CONFIG_DIR": str(stacks),
        }
    )
    settings = local.app.state.gatekeeper.settings
    seeded = seed_pending_certificate(
        settings.database_url, ["portal.acme.com", "portal.globex.io"]
    )
    kept, leaving = sorted(v.tenant_id for v in seeded.list())
    stack = environment_stack(settings, settings.environment)
    stack.up(local.service.load_records())
    # Since the last run: one domain is disabled (its removal is held), one is new.
    local.service.disable(leaving, "user:setup")
    arriving = uuid.uuid4()
    local.service.request(arriving, host_for(arriving), "user:setup")
    walk(local.service, arriving, S.PENDING_CERTIFICATE)
    slug = {t: local.service.get(t).canonical_prefix for t in (kept, leaving, arriving)}

    client = _signed_in(local, None)
    token = _csrf(client.get(ENVIRONMENT).text)
    answer = client.post(ENVIRONMENT + "/preview", data={"csrf_token": token})
    assert answer.status_code == 200, answer.text
    rows = re.findall(r'<tr data-slug="([^"]+)" data-change="([^"]+)">', answer.text)
    assert rows == [(slug[arriving], "create"), (slug[leaving], "held")]
    held = re.search(r'<p class="note" id="console-preview-held-reason">(.*?)</p>', answer.text)
    assert held is not None
    assert "deletionCap=0" in held.group(1)
    assert f'href="/console/tenants/{arriving}"' in answer.text
    [row] = _console_rows(local, PLATFORM_LOG, "preview_changes")
    assert (row.actor, row.outcome) == ("operator:ops", "ok")
    detail = row.detail or {}
    assert detail["tenants"] == {slug[arriving]: "create"}
    assert detail["held_tenants"] == [slug[leaving]]
    # A preview changes nothing.
    assert stack.stack_tenants() == sorted([slug[kept], slug[leaving]])

    # A plan the policy pack refuses: its words on the page, no 500.
    violation = PolicyViolation(
        policy="host-not-reserved",
        enforcement_level="mandatory",
        resource_urn="urn:pulumi:staging::portal-domains::x",
        message="portal.algapsa.com is reserved",
    )

    def refused(self: EnvironmentStack, records: object, **kwargs: object) -> None:
        raise PolicyViolationsError([violation])

    monkeypatch.setattr(EnvironmentStack, "plan", refused)
    failed = client.post(ENVIRONMENT + "/preview", data={"csrf_token": token})
    assert failed.status_code == 422
    assert "policy violations blocked the run" in failed.text
    assert "portal.algapsa.com is reserved" in failed.text
    assert 'id="console-preview"' not in failed.text
    last = _console_rows(local, PLATFORM_LOG, "preview_changes")[-1]
    assert last.outcome == "rejected"
    assert "portal.algapsa.com is reserved" in (last.detail or {})["reason"]


# ------------------------------------------------------------------ recent reconcile runs


def _runs(text: str) -> list[tuple[str, str]]:
    return re.findall(r'<tr data-commit="([0-9a-f]{40})" data-slugs="([^"]*)">', text)


def _file(slug: str, body: str = "kind: ConfigMap\n") -> str:
    return HEADER.format(env="staging") + f"# {slug}\n" + body


def test_recent_runs_come_from_the_remote_log_of_the_environment_folder(
    make_api: MakeApi, tmp_path: Path
) -> None:
    local = make_api(env=NO_TEMPORAL)
    settings = local.app.state.gatekeeper.settings
    client = _signed_in(local, None)
    # Before the first reconcile: said so, and the embedded remote is not created.
    empty = client.get(ENVIRONMENT)
    assert "No nm-kube-config yet" in empty.text
    assert _runs(empty.text) == []
    assert not settings.embedded_remote.exists()

    repo = gitops_repo(settings, settings.environment)
    folder = environment_stack(settings, settings.environment).config.manifest_root
    first = repo.publish(folder, {"a1b2c3d": _file("a1b2c3d")})
    assert first.commit is not None
    # A human's commit: a file in the folder the next publish adopts (it has our
    # file's name), and a commit outside the folder that is not a run of this page.
    clone = git.Repo.clone_from(str(settings.embedded_remote), tmp_path / "human")
    with clone.config_writer() as writer:
        writer.set_value("user", "name", "human")
        writer.set_value("user", "email", "human@example.com")
    root = Path(str(clone.working_tree_dir))
    (root / folder / "e4f5a6b.yaml").write_text("kind: ConfigMap\n")
    (root / "elsewhere").mkdir()
    (root / "elsewhere" / "x.yaml").write_text("kind: ConfigMap\n")
    clone.index.add([f"{folder}/e4f5a6b.yaml"])
    human = clone.index.commit("hand-written e4f5a6b")
    clone.index.add(["elsewhere/x.yaml"])
    clone.index.commit("not portal-domains")
    clone.remote("origin").push("main")
    second = repo.publish(
        folder,
        {"a1b2c3d": _file("a1b2c3d"), "e4f5a6b": _file("e4f5a6b"), "f0f0f0f": _file("f0f0f0f")},
    )
    assert second.commit is not None

    page = client.get(ENVIRONMENT)
    assert _runs(page.text) == [
        (second.commit, "e4f5a6b f0f0f0f"),
        (human.hexsha, ""),
        (first.commit, "a1b2c3d"),
    ]
    assert f"<code>{second.commit[:12]}</code>" in page.text
    assert "not a portal-domains run: hand-written e4f5a6b" in page.text
    adoption = re.findall(r'<ul class="adoption"><li>(.*?)</li></ul>', page.text)
    assert adoption == [f"adopted {folder}/e4f5a6b.yaml ({NOT_OURS})"]


def test_recent_runs_of_a_network_remote_are_not_fetched(make_api: MakeApi) -> None:
    remote = "https://x-access-token:secret@git.example.com/org/nm-kube-config.git"
    local = make_api(env={**NO_TEMPORAL, "PORTAL_DOMAINS_GITOPS_REMOTE": remote})
    page = _signed_in(local, None).get(ENVIRONMENT)
    assert page.status_code == 200
    assert "Runs are listed for local remotes only." in page.text
    assert "secret" not in page.text


def test_the_runs_table_lists_each_attempt_of_this_environment_failed_ones_too(
    make_api: MakeApi,
) -> None:
    from reconciler.activities import RECONCILE_AUDIT_ACTION

    local = make_api()
    write = local.service.audit_operator_action
    write(
        PLATFORM_LOG,
        RECONCILE_AUDIT_ACTION,
        "reconciler",
        outcome="ok",
        detail={
            "environment": "staging",
            "duration_seconds": 12.5,
            "message": "staging: 3 created, 0 updated, 0 replaced, 0 deleted",
            "changed": ["aaaaaaa"],
            "commit": "0123456789abcdef",
            "attempt": 1,
        },
    )
    write(
        PLATFORM_LOG,
        RECONCILE_AUDIT_ACTION,
        "reconciler",
        outcome="rejected",
        detail={
            "environment": "staging",
            "duration_seconds": 3.0,
            "reason": "git: the remote refused the push",
            "attempt": 2,
        },
    )
    write(
        PLATFORM_LOG,
        RECONCILE_AUDIT_ACTION,
        "reconciler",
        outcome="ok",
        detail={"environment": "prod", "message": "prod: elsewhere"},
    )
    page = _signed_in(local, None).get(ENVIRONMENT)
    assert page.status_code == 200, page.text
    table = page.text.split('id="console-attempts"', 1)[1].split("</table>", 1)[0]
    rows = table.split("<tr data-ok=")[1:]
    assert len(rows) == 2  # prod's run is not this environment's
    assert rows[0].startswith('"no"')  # newest first: the failed attempt
    assert "failed (attempt 2)" in rows[0]
    assert "the remote refused the push" in rows[0]
    assert rows[1].startswith('"yes"')
    assert "12.5 s" in rows[1]
    assert "aaaaaaa" in rows[1]
    assert "0123456789ab" in rows[1]
