"""Sharded reconcile at 100 / 1,000 / 10,000 tenants, next to the bare engine (issue 16).

One process run, gitops mode, file backend, checkpoints on, policy pack on:

- **sharded reconcile** (what the worker runs): `reconciler.environment_reconcile.
  reconcile_once` over `stack.shards.EnvironmentStacks`, ~`--per-shard` tenants per
  shard (1 shard at 100 tenants, 10 at 1,000), `skip_unchanged` and `hold_refused`
  as the activity calls it: the engine runs only for shards whose desired-state
  digest changed (one `up`, no preview, the pack on), every file is exported and
  one commit is pushed to a bare nm-kube-config. Timed: the full rebuild from an
  empty state, a reconcile with nothing changed, and one tenant's change (its
  domain moves: its shard's `up`, its file committed and pushed), `--reps` times.
- **the floor** (`benchmarks.reconcile_scale.bare_engine`'s way, run in a child
  process so its memory is not counted as the worker's): one stack holding every
  tenant, `stack.program.build`, `up` only, no pack, no guards, no export, no Git.
- **synthetic** (`--synthetic N`): N tenants in N/`--per-shard` shards without
  building them: two shards are built for real (shard 0 declares the
  ClusterIssuer, shard 1 is the template); every other shard's checkpoint is
  generated from shard 1's, tenant by tenant (URNs, names, hosts and labels
  substituted, each object's inputs checked against `core.manifests`), imported
  with `import_stack` and its digest recorded, so a reconcile skips it. Then:
  nothing changed (must run no engine), one tenant's change, and the peak memory.
  One commit of all 10,000 files fails in the publisher (a `git commit -m` message
  over the kernel's 128 KiB argument limit, see benchmarks/RESULTS.md): the error
  is recorded and nm-kube-config is seeded in commits of SEED_BATCH files first.

`--floor-last 1000` runs big floor sizes after everything else, stopped at
`--deadline` (UTC HH:MM, which also cuts the one-change repetitions short);
floor sizes not measured are extrapolated (power law through the two largest).

Run: .venv/bin/python -m benchmarks.shard_scale --tenants 100,1000 --synthetic 10000 \
        --out benchmarks/shard-scale.json
Progress goes to stderr; the JSON is rewritten after every phase; a Markdown table
is printed at the end. Plot it with `python -m benchmarks.plot_scale`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pulumi import automation as auto

import reconciler.environment_reconcile as environment_reconcile
from adapters.gitops import GitOpsRepo, GitSettings, ensure_bare_remote
from benchmarks.reconcile_scale import PASS
from benchmarks.stack_scale import records
from core.config import parse_stack_config
from core.manifests import desired_documents
from core.records import DomainRecord
from core.shards import shard_of
from stack import program
from stack.automation import PROJECT, EnvironmentStack
from stack.export import render_files
from stack.shards import EnvironmentStacks
from stack.toolchain import pulumi_environment
from stack.workspace import open_stack

# The targets of issue 16 (seconds / bytes).
TARGETS = {
    "1000": {"one_change_median": 15.0, "unchanged": 5.0, "first": 600.0},
    "10000": {"one_change_median": 20.0, "peak_rss_bytes": 1 << 30},
}


def say(text: str) -> None:
    sys.stderr.write(f"[{datetime.now(UTC):%H:%M:%S}] {text}\n")
    sys.stderr.flush()


def median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def changed(rows: list[DomainRecord], index: int, tag: str) -> list[DomainRecord]:
    """Tenant `index` moves to another hostname (its three objects are replaced)."""
    out = list(rows)
    out[index] = dataclasses.replace(rows[index], domain=f"{tag}.{rows[index].domain}")
    return out


# ---------------------------------------------------------------- instrumentation
class Timers:
    """Wall time spent in selected functions (nested calls are counted in both)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)
        timers = self

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            try:
                return original(*args, **kwargs)
            finally:
                timers.totals[label] += time.monotonic() - started
                timers.calls[label] += 1

        setattr(owner, name, timed)

    def take(self) -> dict[str, dict[str, float]]:
        out = {
            k: {"seconds": round(v, 2), "calls": self.calls[k]}
            for k, v in sorted(self.totals.items())
        }
        self.totals.clear()
        self.calls.clear()
        return out


TIMERS = Timers()


def instrument() -> None:
    """Time the parts of a reconcile (benchmark process only; no source file changes)."""
    TIMERS.wrap(EnvironmentStack, "_apply", "engine up (pulumi up, pack on)")
    TIMERS.wrap(EnvironmentStack, "state_objects", "state read (pulumi stack export)")
    TIMERS.wrap(EnvironmentStack, "_policy_objections", "policy rules in-process")
    TIMERS.wrap(EnvironmentStack, "desired_digest", "desired-state digests")
    TIMERS.wrap(EnvironmentStack, "recorded_objects", "read recorded objects (skipped shards)")
    TIMERS.wrap(EnvironmentStack, "record_run", "record digest + objects")
    TIMERS.wrap(environment_reconcile, "render_files", "render YAML files")
    TIMERS.wrap(GitOpsRepo, "publish", "git publish (commit + push)")


class Memory:
    """Peak resident memory: this process, and this process plus all its descendants."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.peak_self = 0
        self.peak_tree = 0
        self.peak_tree_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    @staticmethod
    def _children() -> dict[int, list[int]]:
        children: dict[int, list[int]] = defaultdict(list)
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children[ppid].append(int(entry))
        return children

    def sample(self) -> None:
        me = os.getpid()
        tree = self._children()
        pids, todo = [], [me]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            todo.extend(tree.get(pid, ()))
        own = self._rss(me)
        total = sum(self._rss(pid) for pid in pids)
        self.peak_self = max(self.peak_self, own)
        if total > self.peak_tree:
            self.peak_tree = total
            self.peak_tree_processes = len(pids)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> Memory:
        self._thread.start()
        return self

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        return {
            "sampled_peak_self_bytes": self.peak_self,
            "sampled_peak_tree_bytes": self.peak_tree,
            "sampled_peak_tree_processes": self.peak_tree_processes,
        }


def rusage() -> dict[str, int]:
    """ru_maxrss is in KiB on Linux; children: the largest reaped descendant."""
    return {
        "ru_maxrss_self_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "ru_maxrss_children_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    }


def cpu_seconds() -> float:
    """CPU time of this process and its reaped descendants (the pulumi CLI, its plugins):
    less sensitive than wall time to other jobs on a shared machine."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def vm_hwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def reset_vm_hwm() -> bool:
    """Reset this process's peak RSS (VmHWM); ru_maxrss is not reset by this."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- the project's reconcile
class Environment:
    """An environment of `shards` stacks, its nm-kube-config remote, and a traced reconcile."""

    def __init__(self, work: Path, shards: int) -> None:
        self.work = work
        penv = pulumi_environment(work_dir=work, environ=PASS)
        config = parse_stack_config(
            {"shards": str(shards), "deletionCap": "100000"}, environment="staging"
        )
        self.stacks = EnvironmentStacks(penv, config, work_dir=work)
        remote = ensure_bare_remote(work / "nm-kube-config.git")
        self.git = GitOpsRepo(GitSettings(remote_url=remote, worktree=work / "worktree"))
        self.spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.tracer = provider.get_tracer("bench")

    def reconcile(self, rows: Sequence[DomainRecord]) -> dict[str, Any]:
        self.spans.clear()
        TIMERS.take()
        started, cpu = time.monotonic(), cpu_seconds()
        report = environment_reconcile.reconcile_once(
            stack=self.stacks,
            load_records=lambda: rows,
            git=self.git,
            tracer=self.tracer,
            skip_unchanged=True,
            hold_refused=True,
        )
        seconds = time.monotonic() - started
        cpu = cpu_seconds() - cpu
        spans: dict[str, float] = defaultdict(float)
        for item in self.spans.get_finished_spans():
            if item.end_time and item.start_time:
                spans[item.name] += (item.end_time - item.start_time) / 1e9
        published = report.published
        return {
            "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu, 2),
            "loadavg": os.getloadavg()[0],
            "shards_run": list(report.shards_run),
            "counts": report.summary.counts,
            "skipped": report.skipped,
            "commit": published.commit if published else None,
            "changed_files": len(published.changed_slugs) if published else 0,
            "files": len(report.files),
            "spans": {k: round(v, 2) for k, v in sorted(spans.items())},
            "parts": TIMERS.take(),
        }


def one_changes(
    env: Environment, rows: list[DomainRecord], indexes: Sequence[int], deadline: float
) -> tuple[list[DomainRecord], list[dict[str, Any]]]:
    runs: list[dict[str, Any]] = []
    for rep, index in enumerate(indexes):
        if runs and time.time() > deadline:
            say(f"  deadline reached: {len(runs)} of {len(indexes)} one-tenant changes")
            break
        rows = changed(rows, index, f"c{rep}")
        run = env.reconcile(rows)
        run["tenant"] = rows[index].prefix
        run["shard"] = shard_of(rows[index].tenant_id, env.stacks.config.shards)
        say(
            f"  one change #{rep + 1} ({run['tenant']}, shard {run['shard']}): "
            f"{run['seconds']} s ({run['cpu_seconds']} s CPU, load {run['loadavg']:.1f}), "
            f"ran {run['shards_run']}, counts {run['counts']}"
        )
        runs.append(run)
    return rows, runs


def spread_indexes(rows: Sequence[DomainRecord], count: int, reps: int) -> list[int]:
    """`reps` tenants in different shards (when there are several)."""
    chosen: list[int] = []
    seen: set[int] = set()
    step = max(1, len(rows) // (reps + 1))
    for i in range(step // 2, len(rows), step):
        shard = shard_of(rows[i].tenant_id, count)
        if count > 1 and shard in seen:
            continue
        seen.add(shard)
        chosen.append(i)
        if len(chosen) == reps:
            break
    return chosen


def sharded(n: int, per_shard: int, reps: int, base: Path, deadline: float) -> dict[str, Any]:
    shards = max(1, round(n / per_shard))
    work = Path(tempfile.mkdtemp(prefix=f"shard-{n}-", dir=base))
    env = Environment(work, shards)
    rows = records(n)
    say(f"{n} tenants, {shards} shard(s): full rebuild from an empty state...")
    first = env.reconcile(rows)
    say(
        f"  full rebuild: {first['seconds']} s ({first['cpu_seconds']} s CPU), "
        f"ran {len(first['shards_run'])} shard(s)"
    )
    same = env.reconcile(rows)
    say(f"  nothing changed: {same['seconds']} s, ran {same['shards_run']}")
    rows, ones = one_changes(env, rows, spread_indexes(rows, shards, reps), deadline)
    return {
        "tenants": n,
        "shards": shards,
        "first": first,
        "unchanged": same,
        "one_change": ones,
        "one_change_median": median([r["seconds"] for r in ones]),
        "one_change_cpu_median": median([r["cpu_seconds"] for r in ones]),
        "rusage_after": rusage(),
    }


# ---------------------------------------------------------------- the floor
def floor_in_process(n: int, reps: int, out: Path | None) -> dict[str, Any]:
    """One stack of n tenants, `up` only, no pack (reconcile_scale.bare_engine, repeated);
    what is measured so far is written to `out` after every step."""
    work = Path(tempfile.mkdtemp(prefix=f"floor-{n}-", dir=Path.cwd()))
    os.chdir(work)  # the provider renders YAML under the cwd
    penv = pulumi_environment(work_dir=work, environ=PASS)
    config = parse_stack_config({"deletionCap": "100000"}, environment="staging")
    current = {"rows": records(n)}

    def run_program() -> None:
        program.build(current["rows"], config)

    stack = open_stack(
        penv, project=PROJECT, stack="bare", program=run_program, work_dir=work / "bare"
    )

    cpu: list[float] = []

    def timed() -> float:
        started, used = time.monotonic(), cpu_seconds()
        stack.up()
        cpu.append(round(cpu_seconds() - used, 2))
        return round(time.monotonic() - started, 2)

    result: dict[str, Any] = {"tenants": n, "status": "partial"}
    say(f"floor {n}: first up...")
    result["first"] = timed()
    result["cpu_seconds"] = cpu
    say(f"floor {n}: first up {result['first']} s ({cpu[-1]} s CPU)")
    write(out, result)
    result["unchanged"] = timed()
    say(f"floor {n}: unchanged up {result['unchanged']} s")
    write(out, result)
    ones: list[float] = []
    for rep, index in enumerate(spread_indexes(current["rows"], 1, reps)):
        current["rows"] = changed(current["rows"], index, f"c{rep}")
        ones.append(timed())
        say(f"floor {n}: one change #{rep + 1} {ones[-1]} s ({cpu[-1]} s CPU)")
        result.update(
            one_change=ones, one_change_median=median(ones), one_change_cpu_median=median(cpu[2:])
        )
        write(out, result)
    result["status"] = "measured"
    write(out, result)
    return result


def floor(n: int, reps: int, base: Path, timeout: float) -> dict[str, Any]:
    """The floor in a child process (own memory, own cwd), killed after `timeout` s."""
    out = base / f"floor-{n}.json"
    command = [
        sys.executable, "-m", "benchmarks.shard_scale", "--floor-child", str(n),
        "--reps", str(reps), "--out", str(out),
    ]  # fmt: skip
    child = subprocess.Popen(
        command,
        cwd=base,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        start_new_session=True,
    )
    try:
        child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        # The session this function started, and the provider plugins, which the
        # pulumi CLI starts in process groups of their own.
        tree, pids, todo = Memory._children(), [], [child.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            todo.extend(tree.get(pid, ()))
        os.killpg(child.pid, 15)
        for pid in pids[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 15)
        child.wait()
        say(f"floor {n}: stopped after {timeout:.0f} s")
        partial = json.loads(out.read_text()) if out.exists() else {}
        return {
            "tenants": n,
            "status": f"stopped after {timeout:.0f} s (timeout)",
            "partial": partial,
        }
    if child.returncode != 0 or not out.exists():
        return {"tenants": n, "status": f"failed (exit {child.returncode})"}
    return dict(json.loads(out.read_text()))


def extrapolate(floors: Sequence[dict[str, Any]], n: int) -> dict[str, Any] | None:
    """A power law t = a * n^b through the two largest measured sizes."""
    measured = sorted(
        (f for f in floors if f.get("status") == "measured"), key=lambda f: f["tenants"]
    )
    if len(measured) < 2:
        return None
    low, high = measured[-2], measured[-1]
    out: dict[str, Any] = {"tenants": n, "status": f"extrapolated from {low['tenants']} and "
                           f"{high['tenants']} (power law)"}  # fmt: skip
    for key in ("first", "unchanged", "one_change_median"):
        a, b = low[key], high[key]
        if not a or not b:
            continue
        exponent = math.log(b / a) / math.log(high["tenants"] / low["tenants"])
        out[key] = round(b * (n / high["tenants"]) ** exponent, 1)
        out[f"{key}_exponent"] = round(exponent, 2)
    return out


# ---------------------------------------------------------------- synthetic shards
_DROPPED = ("created", "modified", "sourcePosition", "stackTrace", "provider")


def _substitute(resource_: dict[str, Any], pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """`resource_` with each old string replaced by its new one (placeholders in between,
    so a new value is never rewritten by a later pair); bookkeeping fields untouched."""
    kept = {k: resource_[k] for k in _DROPPED if k in resource_}
    text = json.dumps({k: v for k, v in resource_.items() if k not in _DROPPED})
    for i, (old, _) in enumerate(pairs):
        text = text.replace(old, f"\x00{i}\x00")
    for i, (_, new) in enumerate(pairs):
        text = text.replace(f"\x00{i}\x00", new)
    return {**json.loads(text), **kept}


def _tenant_pairs(old: DomainRecord, new: DomainRecord) -> list[tuple[str, str]]:
    # Longest first: the tenant id, the canonical host and the secret name contain the slug.
    return [
        (old.tenant_id, new.tenant_id),
        (old.canonical_host, new.canonical_host),
        (old.certificate_secret_name, new.certificate_secret_name),
        (old.domain, new.domain),
        (old.prefix, new.prefix),
    ]


def synthetic_deployment(
    template: Mapping[str, Any],
    template_stack: str,
    template_row: DomainRecord,
    shard: EnvironmentStack,
    rows: Sequence[DomainRecord],
) -> dict[str, Any]:
    """Shard `shard`'s checkpoint for its tenants, from the template shard's."""
    name = shard.stack_name
    stack_pairs = [
        (f"urn:pulumi:{template_stack}::", f"urn:pulumi:{name}::"),
        (f"::portal-domains-{template_stack}", f"::portal-domains-{name}"),
    ]
    resources = template["resources"]
    by_type: dict[str, dict[str, Any]] = {}
    for item in resources:
        if item["type"] in ("pulumi:pulumi:Stack", "pulumi:providers:kubernetes"):
            by_type[item["type"]] = item
    slug = template_row.prefix
    tenant_items = [
        item
        for item in resources
        if item["urn"].endswith(
            (f"::{slug}", f"::{slug}-certificate", f"::{slug}-gateway", f"::{slug}-virtualservice")
        )
    ]
    if len(tenant_items) != 4:
        raise RuntimeError(
            f"template tenant {slug}: expected 4 resources, found {len(tenant_items)}"
        )

    stack_res = copy.deepcopy(by_type["pulumi:pulumi:Stack"])
    stack_res = {**_substitute(stack_res, stack_pairs)}
    mine = [r for r in shard.mine(rows) if r.deployable]
    stack_res["outputs"] = {
        "domains": {r.prefix: r.domain for r in mine},
        "environment": shard.config.environment,
    }
    provider = _substitute(by_type["pulumi:providers:kubernetes"], stack_pairs)
    provider["parent"] = stack_res["urn"]
    provider["id"] = str(uuid.uuid4())
    provider_ref = f"{provider['urn']}::{provider['id']}"

    components, children = [], []
    wanted = {(d["kind"], d["metadata"]["name"]): d for d in desired_documents(mine, shard.config)}
    for row in mine:
        pairs = _tenant_pairs(template_row, row) + stack_pairs
        for item in tenant_items:
            new = _substitute(item, pairs)
            if item.get("custom"):
                new["provider"] = provider_ref
                doc = wanted[(new["inputs"]["kind"], new["inputs"]["metadata"]["name"])]
                if new["inputs"] != doc or new["outputs"]["__inputs"] != doc:
                    raise RuntimeError(
                        f"{name}/{row.prefix}: generated {new['inputs']['kind']} differs from "
                        "core.manifests"
                    )
                children.append(new)
            else:
                components.append(new)
    return {
        **{k: v for k, v in template.items() if k != "resources"},
        "resources": [stack_res, *components, provider, *children],
    }


SEED_BATCH = 4000


def seed_remote(env: Environment, batch: int) -> dict[str, Any]:
    """Benchmark-only workaround: publish every shard's recorded files in commits of at
    most `batch` new files (one commit of all 10,000 fails, see RESULTS.md)."""
    objects = [o for shard in env.stacks.shards for o in shard.recorded_objects() or []]
    files = render_files(objects, environment=env.stacks.config.environment)
    slugs = sorted(files)
    commits, started = 0, time.monotonic()
    for end in range(batch, len(slugs) + batch, batch):
        published = env.git.publish(
            env.stacks.config.manifest_root, {slug: files[slug] for slug in slugs[:end]}
        )
        commits += published.commit is not None
    return {"files": len(files), "commits": commits, "seconds": round(time.monotonic() - started)}


def synthetic(n: int, per_shard: int, reps: int, base: Path, deadline: float) -> dict[str, Any]:
    shards = max(1, round(n / per_shard))
    work = Path(tempfile.mkdtemp(prefix=f"synthetic-{n}-", dir=base))
    had_reset = reset_vm_hwm()
    memory = Memory().start()
    env = Environment(work, shards)
    rows = records(n)
    out: dict[str, Any] = {"tenants": n, "shards": shards, "vm_hwm_reset": had_reset}
    # What the first reconcile of an empty environment does: create every shard's
    # stack, empty and tagged with the layout (stack.reshard.prepare_layout).
    env.stacks.check_layout()
    stacks = env.stacks.shards
    real = [0, 1] if shards > 1 else [0]
    out["real_shards"] = []
    for k in real:
        say(f"synthetic {n}: real build of shard {stacks[k].stack_name}...")
        started, used = time.monotonic(), cpu_seconds()
        stacks[k].up(rows, hold_refused=True)
        stacks[k].record_run(
            stacks[k].desired_digest(rows), at=datetime.now(UTC), objects=stacks[k].state_objects()
        )
        seconds = round(time.monotonic() - started, 1)
        out["real_shards"].append(
            {
                "stack": stacks[k].stack_name,
                "tenants": len(stacks[k].mine(rows)),
                "seconds": seconds,
                "cpu_seconds": round(cpu_seconds() - used, 1),
            }
        )
        say(f"  {stacks[k].stack_name}: {len(stacks[k].mine(rows))} tenants, {seconds} s")
    if shards > 2:
        template_shard = stacks[1]
        template = template_shard._open(()).export_stack()
        template_row = template_shard.mine(rows)[0]
        started = time.monotonic()
        for k in range(2, shards):
            shard = stacks[k]
            deployment = synthetic_deployment(
                template.deployment or {}, template_shard.stack_name, template_row, shard, rows
            )
            shard._open(()).import_stack(
                auto.Deployment(version=template.version, deployment=deployment)
            )
            shard.record_run(
                shard.desired_digest(rows), at=datetime.now(UTC), objects=shard.state_objects()
            )
            if k % 10 == 0 or k == shards - 1:
                say(f"  generated and imported {k + 1 - 2} of {shards - 2} shards")
        out["generate_import_seconds"] = round(time.monotonic() - started, 1)
        say(f"  synthetic shards: {out['generate_import_seconds']} s")
    say(f"synthetic {n}: reconcile with nothing changed (first publish of every file)...")
    started = time.monotonic()
    try:
        first_publish = env.reconcile(rows)
    except Exception as error:  # noqa: BLE001 - recorded, then worked around below
        out["unchanged_first_publish"] = {
            "error": f"{type(error).__name__}: {error}"[:500],
            "seconds": round(time.monotonic() - started, 1),
        }
        say(f"  the first publish failed: {out['unchanged_first_publish']['error']}")
        out["seeded_in_batches"] = seed_remote(env, SEED_BATCH)
        say(f"  nm-kube-config seeded in batches of {SEED_BATCH}: {out['seeded_in_batches']}")
        first_publish = env.reconcile(rows)
        out["unchanged_after_seed"] = first_publish
    else:
        out["unchanged_first_publish"] = first_publish
    say(
        f"  {first_publish['seconds']} s, ran {first_publish['shards_run']}, "
        f"{first_publish['changed_files']} files published"
    )
    if first_publish["shards_run"]:
        out["problem"] = f"shards ran the engine: {first_publish['shards_run']}"
    same = env.reconcile(rows)
    out["unchanged"] = same
    say(f"  nothing changed again: {same['seconds']} s, ran {same['shards_run']}")
    # Change tenants of generated shards (their up diffs every generated tenant too).
    generated = [i for i, r in enumerate(rows) if shard_of(r.tenant_id, shards) >= 2]
    picks = [generated[j] for j in spread_indexes([rows[i] for i in generated], shards, reps)]
    rows, ones = one_changes(env, rows, picks, deadline)
    out["one_change"] = ones
    out["one_change_median"] = median([r["seconds"] for r in ones])
    out["one_change_cpu_median"] = median([r["cpu_seconds"] for r in ones])
    out["memory"] = {**memory.stop(), **rusage(), "vm_hwm_self_bytes": vm_hwm()}
    return out


# ---------------------------------------------------------------- report
def _fmt(value: Any, unit: str = " s") -> str:
    return "-" if value is None else f"{value}{unit}"


def table(result: dict[str, Any]) -> str:
    floors = {f["tenants"]: f for f in result.get("floor", [])}
    lines = [
        "| tenants | shards | full rebuild | nothing changed | one change (median; runs) "
        "| floor one change (median) | ratio one change | floor first up | ratio first |",
        "|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    rows = list(result.get("sharded", []))
    if result.get("synthetic"):
        rows.append(result["synthetic"])
    for row in rows:
        n = row["tenants"]
        fl = floors.get(n, {})
        fl_one = fl.get("one_change_median")
        fl_first = fl.get("first")
        ours_one = row.get("one_change_median")
        first = row.get("first", {}).get("seconds") if isinstance(row.get("first"), dict) else None
        tag = "" if fl.get("status") in (None, "measured") else " (extrapolated)"
        runs = ", ".join(str(r["seconds"]) for r in row.get("one_change", []))
        lines.append(
            f"| {n} | {row['shards']} | {_fmt(first)} | {_fmt(row['unchanged']['seconds'])} "
            f"| {_fmt(ours_one)} ({runs}) | {_fmt(fl_one)}{tag} "
            f"| {f'{ours_one / fl_one:.2f}x' if ours_one and fl_one else '-'} "
            f"| {_fmt(fl_first)}{tag} "
            f"| {f'{first / fl_first:.2f}x' if first and fl_first else '-'} |"
        )
    return "\n".join(lines)


def write(path: Path | None, result: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(result, indent=2, default=str) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Sharded reconcile at scale vs the bare engine (see the module doc)."
    )
    parser.add_argument("--tenants", default="100,1000", help="real sizes, comma-separated")
    parser.add_argument("--per-shard", type=int, default=100, help="tenants per shard")
    parser.add_argument("--synthetic", type=int, default=0, help="synthetic size (0: none)")
    parser.add_argument("--floor", default="100,300", help="floor sizes, comma-separated")
    parser.add_argument(
        "--floor-last",
        default="",
        help="floor sizes run at the very end, stopped at --deadline (e.g. 1000)",
    )
    parser.add_argument(
        "--floor-timeout", type=float, default=1800, help="seconds before a floor size is stopped"
    )
    parser.add_argument("--reps", type=int, default=3, help="one-tenant changes per size")
    parser.add_argument(
        "--deadline", default=None, help="UTC HH:MM: stop repeating one-tenant changes after it"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    parser.add_argument("--floor-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.floor_child:
        floor_in_process(args.floor_child, args.reps, args.out)
        return 0

    deadline = float("inf")
    if args.deadline:
        hh, mm = (int(x) for x in args.deadline.split(":"))
        today = datetime.now(UTC).replace(hour=hh, minute=mm, second=0, microsecond=0)
        deadline = today.timestamp()
    out = args.out.resolve() if args.out else None
    base = Path(tempfile.mkdtemp(prefix="pd-shard-scale-"))
    # The gitops provider renders YAML under the process's cwd: keep it in the scratch dir.
    os.chdir(base)
    instrument()
    say(f"scratch directory {base}")
    result: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.shard_scale", *sys.argv[1:]]),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "targets": TARGETS,
        "floor": [],
        "sharded": [],
        "synthetic": None,
    }
    tenants = [int(x) for x in args.tenants.split(",") if x]
    floor_sizes = [int(x) for x in args.floor.split(",") if x]
    phases: list[tuple[str, int]] = []
    for n in sorted(set(tenants) | set(floor_sizes)):
        if n in floor_sizes:
            phases.append(("floor", n))
        if n in tenants:
            phases.append(("sharded", n))
    for kind, n in phases:
        if kind == "floor":
            result["floor"].append(floor(n, args.reps, base, args.floor_timeout))
        else:
            result["sharded"].append(sharded(n, args.per_shard, args.reps, base, deadline))
        write(out, result)
    if args.synthetic:
        result["synthetic"] = synthetic(args.synthetic, args.per_shard, args.reps, base, deadline)
        write(out, result)
    for n in [int(x) for x in args.floor_last.split(",") if x]:
        # The big floors last, stopped at the deadline: they may not fit in the time.
        budget = min(args.floor_timeout, deadline - time.time())
        if budget < 60:
            say(f"floor {n}: no time left before the deadline, not run")
            result["floor"].append({"tenants": n, "status": "not run (no time left)"})
            continue
        result["floor"].append(floor(n, args.reps, base, budget))
        write(out, result)
    measured = {f["tenants"] for f in result["floor"] if f.get("status") == "measured"}
    result["floor"] = [f for f in result["floor"] if f.get("status") == "measured"] + [
        f for f in result["floor"] if f.get("status") != "measured" and f["tenants"] not in measured
    ]
    for n in [*tenants, *([args.synthetic] if args.synthetic else [])]:
        if n not in measured:
            guess = extrapolate(result["floor"], n)
            if guess:
                result["floor"] = [f for f in result["floor"] if f["tenants"] != n] + [guess]
    result["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["loadavg_end"] = os.getloadavg()
    result["rusage_end"] = rusage()
    write(out, result)
    sys.stdout.write(table(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
