"""The reconciler end to end: Temporal workflows drive real DNS, Pulumi, Git and TLS.

See tests/support/harness.py for the rig. Timings are the "test" profile
(sub-second polls), so each scenario takes seconds to a minute, dominated by
`pulumi up`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from core.status import DomainStatus as S
from db.service import DomainView
from reconciler import payloads as p
from reconciler.wiring import domain_service
from reconciler.worker import resume_registrations
from tests.support.harness import (
    Harness,
    deletion_cap_zero,
    held_removal,
    reconciler_harness,
)
from tests.support.regen import may_rewrite

pytestmark = [pytest.mark.pulumi, pytest.mark.postgres, pytest.mark.temporal]
# Recorded here, replayed by tests/reconciler/test_replay.py.
HISTORIES = Path(__file__).parent.parent / "reconciler" / "histories"


def test_a_requested_domain_goes_active_then_removal_prunes_it_everywhere(
    tmp_path: Path, postgres_url: str, temporal_address: str
) -> None:
    async def scenario() -> None:
        async with reconciler_harness(
            tmp_path, database_url=postgres_url, temporal_address=temporal_address
        ) as h:
            view = h.request("portal.acme.com")
            active = await h.wait_status(view.tenant_id, {S.ACTIVE})
            assert "https://portal.acme.com/" in active.status_message
            slug = view.canonical_prefix
            files = h.remote_files()
            assert list(files) == [f"{slug}.yaml"]
            assert "portal.acme.com" in files[f"{slug}.yaml"]
            issuer = h.issuer_file()
            assert issuer is not None
            assert "kind: ClusterIssuer" in issuer
            first_sync = ", ".join(sorted([slug, "cluster-issuer"]))
            assert h.remote_log()[0] == f"chore(portal-domains): sync {first_sync}"

            handle = h.runtime.client.get_workflow_handle(
                p.registration_workflow_id(str(view.tenant_id))
            )
            if may_rewrite("RECORD_HISTORY"):
                history = await handle.fetch_history()
                HISTORIES.mkdir(exist_ok=True)
                recorded = {
                    "workflow_id": history.workflow_id,
                    "history": json.loads(history.to_json()),
                }
                (HISTORIES / "registration-to-active.json").write_text(json.dumps(recorded))
                env_history = await h.runtime.client.get_workflow_handle(
                    p.reconcile_workflow_id("staging")
                ).fetch_history()
                recorded = {
                    "workflow_id": env_history.workflow_id,
                    "history": json.loads(env_history.to_json()),
                }
                (HISTORIES / "environment-reconcile.json").write_text(json.dumps(recorded))

            await asyncio.to_thread(h.service.disable, view.tenant_id, "operator:test")
            await h.wait_status(view.tenant_id, {S.DISABLED})
            await h.wait_remote(lambda f: f == {})
            assert await handle.result() == "disabled"
            # "Removed", not only "removal requested", once the objects are gone.
            removed = await wait_removed(h, view.tenant_id)
            assert (removed.status_message or "").startswith("Removed: portal.acme.com")
            stack = h.runtime.deps.stack_for("staging")
            assert await asyncio.to_thread(stack.stack_tenants) == []

            h.analytics.flush()
            names = [e["event"] for e in h.capture.events()]
            for expected in (
                "portal_domain.requested",
                "portal_domain.dns_verified",
                "portal_domain.cert_ready",
                "portal_domain.activated",
                "portal_domain.reconciled",
                "portal_domain.disabled",
            ):
                assert expected in names, names
            activated = next(
                e for e in h.capture.events() if e["event"] == "portal_domain.activated"
            )
            assert activated["properties"]["domain"] == "portal.acme.com"
            assert activated["properties"]["time_to_active_seconds"] > 0
            reconciled = next(
                e for e in h.capture.events() if e["event"] == "portal_domain.reconciled"
            )
            assert reconciled["properties"]["created"] == 3

            spans = {s.name: s for s in h.spans.get_finished_spans()}
            for name in (
                "reconcile_environment",
                "pulumi.up",
                "git.push",
                "dns.verify_cname",
                "tls.check_certificate",
            ):
                assert name in spans, sorted(spans)
            assert dict(spans["pulumi.up"].attributes or {})["env"] == "staging"
            assert dict(spans["dns.verify_cname"].attributes or {})["domain"] == "portal.acme.com"
            assert any(
                n.startswith(("RunWorkflow", "StartActivity", "RunActivity")) for n in spans
            ), "temporalio's tracing interceptor spans are exported"

    asyncio.run(scenario())


def test_a_wrong_cname_ends_in_dns_failed_naming_the_observed_target(
    tmp_path: Path, postgres_url: str, temporal_address: str
) -> None:
    async def scenario() -> None:
        async with reconciler_harness(
            tmp_path, database_url=postgres_url, temporal_address=temporal_address
        ) as h:
            view = h.request("help.initech.co.uk", cname_ok=False)
            failed = await h.wait_status(view.tenant_id, {S.DNS_FAILED})
            assert "old.hosting.example.net" in failed.status_message
            assert view.canonical_host in failed.status_message
            assert failed.verification_details.get("observed") == "old.hosting.example.net"
            assert h.runtime.activities.reconcile_runs == 0

            # fixing DNS and choosing Refresh takes it all the way
            h.dns.set_cname("help.initech.co.uk", view.canonical_host)
            await asyncio.to_thread(h.service.refresh, view.tenant_id, "operator:test")
            await h.wait_status(view.tenant_id, {S.ACTIVE})

    asyncio.run(scenario())


def test_a_replaced_domain_leaves_git_and_the_new_one_goes_active(
    tmp_path: Path, postgres_url: str, temporal_address: str
) -> None:
    async def scenario() -> None:
        async with reconciler_harness(
            tmp_path, database_url=postgres_url, temporal_address=temporal_address
        ) as h:
            view = h.request("portal.acme.com")
            await h.wait_status(view.tenant_id, {S.ACTIVE})
            slug = view.canonical_prefix
            # the new host's DNS is wrong at first: the old host must still go
            h.request("portal.acme-corp.com", tenant=view.tenant_id, cname_ok=False)
            await h.wait_remote(lambda f: f == {})
            await h.wait_status(view.tenant_id, {S.DNS_FAILED})
            h.dns.set_cname("portal.acme-corp.com", view.canonical_host)
            await asyncio.to_thread(h.service.refresh, view.tenant_id, "operator:test")
            await h.wait_status(view.tenant_id, {S.ACTIVE})
            files = h.remote_files()
            assert list(files) == [f"{slug}.yaml"]
            assert "portal.acme-corp.com" in files[f"{slug}.yaml"]
            assert "portal.acme.com" not in files[f"{slug}.yaml"]

    asyncio.run(scenario())


def test_twenty_concurrent_requests_are_served_by_far_fewer_pulumi_runs(
    tmp_path: Path,
    postgres_url: str,
    temporal_address: str,
    record_property: Callable[[str, object], None],
) -> None:
    async def scenario() -> int:
        async with reconciler_harness(
            tmp_path, database_url=postgres_url, temporal_address=temporal_address
        ) as h:
            views = await asyncio.gather(
                *(asyncio.to_thread(h.request, f"portal.tenant{i:02d}.com") for i in range(20))
            )
            for view in views:
                await h.wait_status(view.tenant_id, {S.ACTIVE}, timeout=150)
            files = h.remote_files()
            assert len(files) == 20
            return h.runtime.activities.reconcile_runs

    runs = asyncio.run(scenario())
    record_property("pulumi_up_runs_for_20_requests", runs)
    sys.stderr.write(f"\n20 concurrent requests -> {runs} pulumi up run(s)\n")
    assert runs <= 5


def test_a_worker_killed_during_pulumi_up_is_recovered_by_the_next_worker(
    tmp_path: Path, postgres_url: str, temporal_address: str
) -> None:
    async def scenario() -> None:
        async with reconciler_harness(
            tmp_path, database_url=postgres_url, temporal_address=temporal_address, run_worker=False
        ) as h:
            env = {**os.environ, **h.env}
            exe = str(Path(sys.executable).with_name("portal-domains"))

            def start_worker(name: str) -> subprocess.Popen[bytes]:
                log = (tmp_path / f"{name}.log").open("wb")
                return subprocess.Popen(
                    [exe, "worker"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

            first = start_worker("worker-1")
            view = h.request("portal.acme.com")
            locks = h.settings.work_dir / "pulumi-state" / ".pulumi" / "locks"
            deadline = time.monotonic() + 180
            while not list(locks.glob("**/staging/*.json")):
                assert time.monotonic() < deadline, "pulumi up never started"
                assert first.poll() is None, (tmp_path / "worker-1.log").read_text()
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # well inside `pulumi up`
            os.killpg(first.pid, signal.SIGKILL)  # the whole container dies
            first.wait()

            second = start_worker("worker-2")
            try:
                await h.wait_status(view.tenant_id, {S.ACTIVE}, timeout=240)
            finally:
                second.send_signal(signal.SIGTERM)
                second.wait(timeout=60)
            stack = h.runtime.deps.stack_for("staging")
            objects = await asyncio.to_thread(stack.state_objects)
            assert len(objects) == 4  # the tenant's three and the ClusterIssuer
            assert list(h.remote_files()) == [f"{view.canonical_prefix}.yaml"]
            syncs = [m for m in h.remote_log() if m.startswith("chore(portal-domains)")]
            first_sync = ", ".join(sorted([view.canonical_prefix, "cluster-issuer"]))
            assert syncs == [f"chore(portal-domains): sync {first_sync}"]
            log = (tmp_path / "worker-2.log").read_text()
            # The kill came while the lock file existed: the retry must say it released it.
            assert "recovered the stack" in log, log
            assert "released the stale lock of a crashed update" in log, log

    asyncio.run(scenario())


def test_in_prod_a_removed_domain_is_pruned_and_the_next_tenant_still_deploys(
    tmp_path: Path, postgres_url: str, temporal_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prod's deletion budget (mandatory, 20 %) once refused this removal (1 of 1 tenants)
    # and then every later reconcile of the environment.
    # Prod refuses the built-in development passphrase: give it its own, as production must.
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", f"prod-test-{uuid.uuid4()}")

    async def scenario() -> None:
        async with reconciler_harness(
            tmp_path,
            database_url=postgres_url,
            temporal_address=temporal_address,
            extra_env={"PORTAL_DOMAINS_ENVIRONMENT": "prod"},
        ) as h:
            assert h.manifest_root == "alga-psa/portal-domains"
            first = h.request("portal.acme.com")
            await h.wait_status(first.tenant_id, {S.ACTIVE})
            assert list(h.remote_files()) == [f"{first.canonical_prefix}.yaml"]
            await asyncio.to_thread(h.service.disable, first.tenant_id, "operator:test")
            await h.wait_remote(lambda f: f == {})
            stack = h.runtime.deps.stack_for("prod")
            assert await asyncio.to_thread(stack.stack_tenants) == []

            second = h.request("clients.globex.io")
            await h.wait_status(second.tenant_id, {S.ACTIVE})
            assert list(h.remote_files()) == [f"{second.canonical_prefix}.yaml"]

    asyncio.run(scenario())


def test_a_removal_over_the_deletion_cap_is_held_with_a_status_until_an_operator_confirms(
    tmp_path: Path, postgres_url: str, temporal_address: str
) -> None:
    async def scenario() -> None:
        async with reconciler_harness(
            tmp_path,
            database_url=postgres_url,
            temporal_address=temporal_address,
            extra_env=deletion_cap_zero(tmp_path),
        ) as h:
            view = await held_removal(h, "portal.acme.com")
            # Another tenant's domain still deploys meanwhile.
            other = h.request("clients.globex.io")
            await h.wait_status(other.tenant_id, {S.ACTIVE})

            # The operator confirms, through the environment workflow the worker runs.
            exe = str(Path(sys.executable).with_name("portal-domains"))
            confirmed = await asyncio.to_thread(
                subprocess.run,
                [exe, "reconcile", "--env", "staging", "--yes", "--json", "--timeout", "120"],
                env={**os.environ, **h.env},
                capture_output=True,
                text=True,
                check=False,
            )
            assert confirmed.returncode == 0, confirmed.stderr
            outcome = json.loads(confirmed.stdout)
            assert outcome["ok"] is True
            assert outcome["deleted"] == 3
            assert outcome["held_tenants"] == []
            files = await h.wait_remote(lambda f: f"{view.canonical_prefix}.yaml" not in f)
            assert list(files) == [f"{other.canonical_prefix}.yaml"]

    asyncio.run(scenario())


async def wait_removed(h: Harness, tenant: uuid.UUID, timeout: float = 60) -> DomainView:
    deadline = time.monotonic() + timeout
    while True:
        view = await asyncio.to_thread(h.service.get, tenant)
        if view.verification_details.get("removal") == "removed":
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"never removed: {view.status} {view.status_message}")
        await asyncio.sleep(0.3)


def test_a_removal_requested_while_temporal_was_down_is_carried_out_when_the_worker_starts(
    tmp_path: Path, postgres_url: str, temporal_address: str
) -> None:
    async def scenario() -> None:
        async with reconciler_harness(
            tmp_path, database_url=postgres_url, temporal_address=temporal_address
        ) as h:
            view = h.request("portal.acme.com")
            await h.wait_status(view.tenant_id, {S.ACTIVE})
            # No workflow left and no way to reach Temporal: the row changes, nothing else.
            handle = h.runtime.client.get_workflow_handle(
                p.registration_workflow_id(str(view.tenant_id))
            )
            await handle.terminate("simulating an outage")
            offline = domain_service(h.settings)  # no hook: Temporal is "down"
            await asyncio.to_thread(offline.disable, view.tenant_id, "operator:test")
            requested = await asyncio.to_thread(h.service.get, view.tenant_id)
            assert requested.verification_details["removal"] == "requested"
            assert list(h.remote_files()) == [f"{view.canonical_prefix}.yaml"]

            # What the worker does when it starts.
            assert await resume_registrations(h.runtime) == 1
            await h.wait_remote(lambda f: f == {})
            await wait_removed(h, view.tenant_id)
            stack = h.runtime.deps.stack_for("staging")
            assert await asyncio.to_thread(stack.stack_tenants) == []
            # Once removed, a restart starts nothing for it.
            assert await resume_registrations(h.runtime) == 0

    asyncio.run(scenario())


def test_a_failing_reconcile_sends_the_failure_event(
    tmp_path: Path, postgres_url: str, temporal_address: str
) -> None:
    async def scenario() -> None:
        async with reconciler_harness(
            tmp_path,
            database_url=postgres_url,
            temporal_address=temporal_address,
            # nm-kube-config cannot be reached: every publish fails.
            extra_env={"PORTAL_DOMAINS_GITOPS_REMOTE": str(tmp_path / "missing.git")},
        ) as h:
            view = h.request("portal.acme.com")
            deadline = time.monotonic() + 120
            while True:
                h.analytics.flush()
                failures = [
                    e for e in h.capture.events() if e["event"] == "portal_domain.reconcile_failed"
                ]
                if failures:
                    break
                assert time.monotonic() < deadline, "no reconcile_failed event"
                await asyncio.sleep(0.5)
            assert failures[0]["properties"]["env"] == "staging"
            assert failures[0]["properties"]["code"]
            current = await asyncio.to_thread(h.service.get, view.tenant_id)
            assert current.status is S.PENDING_CERTIFICATE

    asyncio.run(scenario())
