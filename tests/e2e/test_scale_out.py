"""Scale out: two worker processes share one Pulumi state and run an environment's shards.

Real: PostgreSQL (the rows, the shared run records and Pulumi's PostgreSQL DIY
backend), the Temporal dev server, two `portal-domains worker` processes with
separate working directories, the Pulumi engine, Git. The environment has two
shards; each worker runs one activity at a time, so the two shards run at once
on the two workers. Then one worker is killed in the middle of a shard and the
other takes the shard over and converges.
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
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType, PendingActivityState

from core.shards import shard_of
from core.status import DomainStatus as S
from reconciler import payloads as p
from stack.automation import ISSUER_FILE
from tests.support.harness import Harness, reconciler_harness
from tests.support.services import pulumi_postgres_backend

pytestmark = [pytest.mark.pulumi, pytest.mark.postgres, pytest.mark.temporal]

SHARDS = 2


def _tenant_in(shard: int) -> uuid.UUID:
    while True:
        tenant = uuid.uuid4()
        if shard_of(str(tenant), SHARDS) == shard:
            return tenant


class Workers:
    def __init__(self, h: Harness, tmp_path: Path) -> None:
        self.h = h
        self.tmp = tmp_path
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            **self.h.env,
            # A host of its own: separate working directory and Pulumi home.
            "PORTAL_DOMAINS_HOME": str(self.tmp / name),
            "PORTAL_DOMAINS_WORKER_MAX_ACTIVITIES": "1",
        }
        log = (self.tmp / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("portal-domains")), "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def identity(self, name: str) -> str:
        return f"{self.procs[name].pid}@"

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


async def _shard_starts(h: Harness) -> list[tuple[int, int, str]]:
    """(shard, attempt, worker identity) of every reconcile_shard start in the history."""
    client = h.runtime.client
    handle = client.get_workflow_handle(p.reconcile_workflow_id(h.environment))
    scheduled: dict[int, int] = {}
    starts = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_type.name == p.RECONCILE_SHARD:
                payload = attrs.input.payloads[0].data
                shard = int(json.loads(payload)["shard"])
                scheduled[event.event_id] = shard
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            if started.scheduled_event_id in scheduled:
                starts.append(
                    (scheduled[started.scheduled_event_id], started.attempt, started.identity)
                )
    return starts


async def _running_shard_on(h: Harness, identity: str, timeout: float = 180) -> int:
    """Wait until a reconcile_shard activity is running on the worker `identity`."""
    handle = h.runtime.client.get_workflow_handle(p.reconcile_workflow_id(h.environment))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            description = await handle.describe()
        except Exception:  # noqa: BLE001 - not started yet
            await asyncio.sleep(0.1)
            continue
        for pending in description.raw_description.pending_activities:
            if (
                pending.activity_type.name == p.RECONCILE_SHARD
                and pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                and pending.last_worker_identity.startswith(identity)
            ):
                return len(description.raw_description.pending_activities)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no shard ever ran on {identity}")


def test_two_workers_run_two_shards_at_once_and_one_takes_over_a_killed_shard(
    tmp_path: Path, postgres_url: str, temporal_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (stacks / "Pulumi.staging.yaml").write_text(f'config:\n  portal-domains:shards: "{SHARDS}"\n')
    extra = {
        "PORTAL_DOMAINS_STACK_CONFIG_DIR": str(stacks),
        "PULUMI_BACKEND_URL": pulumi_postgres_backend(postgres_url),
        "PULUMI_CONFIG_PASSPHRASE": "scale-out-test",
    }
    for key in ("PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE"):
        monkeypatch.setenv(key, extra[key])  # this process reads the shared state too

    async def scenario() -> None:
        async with reconciler_harness(
            tmp_path,
            database_url=postgres_url,
            temporal_address=temporal_address,
            run_worker=False,
            extra_env=extra,
        ) as h:
            workers = Workers(h, tmp_path)
            try:
                workers.start("host-a")
                workers.start("host-b")
                first = [
                    h.request(f"portal{k}.acme-scale.com", tenant=_tenant_in(k))
                    for k in range(SHARDS)
                ]
                for view in first:
                    await h.wait_status(view.tenant_id, {S.ACTIVE}, timeout=240)
                starts = await _shard_starts(h)
                # Both workers ran shards: the environment's run was spread over them.
                assert {identity.split("@")[0] for _, _, identity in starts} == {
                    str(workers.procs["host-a"].pid),
                    str(workers.procs["host-b"].pid),
                }, starts

                # host-a dies in the middle of a shard; host-b takes the shard over.
                second = [
                    h.request(f"portal{k}.acme-scale-two.com", tenant=_tenant_in(k))
                    for k in range(SHARDS)
                ]
                await _running_shard_on(h, workers.identity("host-a"))
                await asyncio.sleep(1.0)
                os.killpg(workers.procs["host-a"].pid, signal.SIGKILL)
                workers.procs["host-a"].wait()
                for view in second:
                    await h.wait_status(view.tenant_id, {S.ACTIVE}, timeout=300)
                # Only this phase's starts: a first run may retry too (two hosts
                # creating the Pulumi backend's table at once, for one).
                retried = [
                    (shard, attempt, identity)
                    for shard, attempt, identity in (await _shard_starts(h))[len(starts) :]
                    if attempt > 1
                ]
                assert retried, "the killed worker's shard was never retried"
                assert all(i.startswith(workers.identity("host-b")) for _, _, i in retried), (
                    retried,
                    workers.identity("host-b"),
                )

                # Converged: every tenant in its shard's stack, every file in Git.
                stack = h.runtime.deps.stack_for("staging")
                for index, shard in enumerate(stack.shards):
                    held = await asyncio.to_thread(shard.stack_tenants)
                    assert held == sorted(
                        v.canonical_prefix
                        for v in (*first, *second)
                        if shard_of(str(v.tenant_id), SHARDS) == index
                    )
                files = await asyncio.to_thread(h.all_remote_files)
                assert set(files) == {
                    *(f"{v.canonical_prefix}.yaml" for v in (*first, *second)),
                    f"{ISSUER_FILE}.yaml",
                }
            finally:
                workers.stop_all()

    asyncio.run(scenario())
