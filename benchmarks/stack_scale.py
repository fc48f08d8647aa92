"""How long `pulumi up` takes as the stack grows, with and without checkpoints.

The file backend writes the whole checkpoint after every resource step
(pulumi/pulumi#3178, #14967), so a first `up` of N tenants (3N resources) grows
worse than linearly. PULUMI_SKIP_CHECKPOINTS=true writes it once at the end.
Run: .venv/bin/python -m benchmarks.stack_scale [N ...]   (default: 10 50 100)
Prints one JSON line per measurement: tenants, mode, seconds for the first up
(all creates), and for a second up with nothing to change.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from core.config import parse_stack_config
from core.records import DomainRecord
from core.status import DomainStatus
from stack.automation import EnvironmentStack
from stack.toolchain import pulumi_environment


def records(n: int) -> list[DomainRecord]:
    out = []
    for i in range(n):
        tenant = uuid.UUID(int=i + 1)
        slug = tenant.hex[-7:]
        out.append(
            DomainRecord(
                tenant_id=str(tenant),
                prefix=slug,
                domain=f"portal.t{i}.com",
                canonical_host=f"{slug}.portal.algapsa.com",
                certificate_secret_name=f"portal-domain-{slug}-tls",
                status=DomainStatus.ACTIVE,
            )
        )
    return out


def measure(n: int, skip_checkpoints: bool) -> dict[str, object]:
    os.environ["PULUMI_SKIP_CHECKPOINTS"] = "true" if skip_checkpoints else "false"
    work = Path(tempfile.mkdtemp(prefix="pd-bench-"))
    penv = pulumi_environment(work_dir=work, environ={"PULUMI_CONFIG_PASSPHRASE": "bench"})
    config = parse_stack_config({"deletionCap": "100000"}, environment="staging")
    stack = EnvironmentStack(penv, config, work_dir=work)
    data = records(n)
    start = time.monotonic()
    stack.up(data)
    first = time.monotonic() - start
    start = time.monotonic()
    stack.up(data)
    second = time.monotonic() - start
    return {
        "tenants": n,
        "resources": 3 * n,
        "skip_checkpoints": skip_checkpoints,
        "first_up_seconds": round(first, 1),
        "noop_up_seconds": round(second, 1),
    }


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [10, 50, 100]
    for n in sizes:
        for skip in (False, True):
            sys.stdout.write(json.dumps(measure(n, skip)) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
