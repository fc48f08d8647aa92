"""Pulumi's PostgreSQL DIY backend: one stack state shared by workers on different machines.

Real Pulumi CLI (our build includes the postgres:// backend) against real PostgreSQL;
two EnvironmentStacks with separate work directories stand for two worker hosts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry import trace

from core.config import parse_stack_config
from reconciler.environment_reconcile import ReconcileReport, reconcile_once
from stack.automation import EnvironmentStack
from stack.toolchain import pulumi_environment
from tests.e2e.test_cluster_mode import tenants
from tests.support.services import pulumi_postgres_backend

pytestmark = [pytest.mark.pulumi, pytest.mark.postgres]


def _worker(tmp_path: Path, name: str, backend: str) -> EnvironmentStack:
    work = tmp_path / name
    penv = pulumi_environment(
        work_dir=work,
        environ={"PULUMI_CONFIG_PASSPHRASE": "shared-test", "PULUMI_BACKEND_URL": backend},
    )
    return EnvironmentStack(penv, parse_stack_config({}, environment="staging"), work_dir=work)


def test_two_workers_see_and_update_one_stack_state(tmp_path: Path, postgres_url: str) -> None:
    backend = _worker(tmp_path, "host-a", pulumi_postgres_backend(postgres_url))
    other = _worker(tmp_path, "host-b", pulumi_postgres_backend(postgres_url))
    rows = tenants(3)

    assert backend.up(rows[:2]).counts["create"] == 6
    # The other host starts from the shared state: nothing to do for the same rows.
    assert other.stack_tenants() == sorted(r.prefix for r in rows[:2])
    assert other.plan(rows[:2]).has_changes is False
    assert other.up(rows).counts["create"] == 3
    assert backend.stack_tenants() == sorted(r.prefix for r in rows)


def test_with_a_shared_backend_the_unchanged_skip_is_never_trusted(
    tmp_path: Path, postgres_url: str
) -> None:
    # Another worker may have changed the shared stack since this host's last run,
    # so this host's record cannot vouch for it: the engine runs every time.
    stack = _worker(tmp_path, "host-a", pulumi_postgres_backend(postgres_url))
    assert stack.state_is_private is False
    rows = tenants(1)
    for _ in range(2):
        report = reconcile_once(
            stack=stack,
            load_records=lambda: rows,
            git=None,
            tracer=trace.get_tracer("test"),
            skip_unchanged=True,
        )
        assert report.skipped is None


def test_with_a_shared_run_record_store_another_host_skips_and_exports_from_it(
    tmp_path: Path, postgres_url: str
) -> None:
    # The record lives in PostgreSQL beside the rows (db.run_records), so what one
    # host recorded vouches for the shared stack on every host.
    from db import migrate
    from db.run_records import DbRunRecords
    from db.session import make_engine, make_session_factory

    migrate.upgrade(postgres_url)
    shared = DbRunRecords(make_session_factory(make_engine(postgres_url)))
    host_a = _worker(tmp_path, "host-a", pulumi_postgres_backend(postgres_url))
    host_b = _worker(tmp_path, "host-b", pulumi_postgres_backend(postgres_url))
    host_a.run_records = host_b.run_records = shared
    rows = tenants(2)

    def reconcile(stack: EnvironmentStack) -> ReconcileReport:
        return reconcile_once(
            stack=stack,
            load_records=lambda: rows,
            git=None,
            tracer=trace.get_tracer("test"),
            skip_unchanged=True,
        )

    first = reconcile(host_a)
    assert first.skipped is None
    other = reconcile(host_b)
    assert other.skipped is not None  # host-b trusts host-a's shared record
    assert other.files == first.files  # exported from the recorded objects
    # An `up` by hand on host-b forgets the record for everybody.
    host_b.up(rows)
    assert reconcile(host_a).skipped is None
