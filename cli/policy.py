"""`portal-domains policy check|config`: run the policy pack against a snapshot of records.

`policy check --env E` previews environment E's program for a snapshot of domain
records with the pack in policies/ and E's policy configuration, and lists the
violations. The records are the built-in fixtures (`--fixtures`, the default) or
the database's rows (`--no-fixtures`); they are previewed on a throwaway stack in
a scratch file backend so the check never reads or locks the real stack.

Exit codes (cli.exit_codes): 0 no mandatory violation (advisory ones are listed),
6 at least one mandatory violation, 2 bad input (unknown environment), 3 no
toolchain, 1 the preview failed for another reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from cli import output
from cli.exit_codes import CliError, ExitCode
from core.config import ConfigError, StackConfig
from core.manifests import DesiredStateError, desired_state
from core.records import DomainRecord
from core.settings import Settings
from core.violations import PolicyViolation
from db.migrate import SchemaNotReady, require_current_schema
from policies import fixtures
from policies.settings import (
    committed_config_path,
    render_policy_pack_config,
    write_policy_pack_config,
)
from reconciler.environment_reconcile import all_records
from reconciler.wiring import domain_service
from stack.automation import (
    POLICY_PACK,
    EnvironmentStack,
    PolicyViolationsError,
    StackOperationError,
)
from stack.config import load_stack_config
from stack.toolchain import pulumi_environment

# The scratch stack holds nothing secret and is deleted after the check.
_SCRATCH_PASSPHRASE = "portal-domains-policy-check-scratch"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = sub.add_parser("policy", help="run or configure the policy pack")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")

    check = policy_sub.add_parser(
        "check",
        help="preview a snapshot of records with the policy pack",
        description=(
            "Preview the environment's program for a snapshot of domain records with the "
            "policy pack and list violations. Exit 6 on any mandatory violation."
        ),
    )
    check.add_argument("--env", required=True, help="environment (stack) name, e.g. staging")
    check.add_argument(
        "--fixtures",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="check the built-in fixture tenants (default); --no-fixtures checks the rows of "
        "PORTAL_DOMAINS_DATABASE_URL instead",
    )
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(handler=_cmd_check)

    config = policy_sub.add_parser(
        "config",
        help="print the --policy-pack-config JSON of an environment",
        description=(
            "Print the policy configuration derived from Pulumi.<env>.yaml; with --write, "
            "update the committed policies/config/<env>.json instead."
        ),
    )
    config.add_argument("--env", required=True, help="environment (stack) name, e.g. staging")
    config.add_argument("--write", action="store_true", help="write policies/config/<env>.json")
    config.set_defaults(handler=_cmd_config)


# ------------------------------------------------------------------------ result


@dataclass(frozen=True, kw_only=True)
class CheckReport:
    environment: str
    source: str
    tenants: list[str]
    violations: list[PolicyViolation]

    @property
    def mandatory(self) -> list[PolicyViolation]:
        return [v for v in self.violations if v.mandatory]

    def as_dict(self) -> dict[str, object]:
        return {
            "environment": self.environment,
            "source": self.source,
            "tenants": self.tenants,
            "violations": [asdict(v) for v in self.violations],
            "passed": not self.mandatory,
        }


# ------------------------------------------------------------------------ running


def run_check(
    config: StackConfig, records: Sequence[DomainRecord], *, scratch_root: Path, source: str
) -> CheckReport:
    """Preview `records` for `config` on a scratch stack with the policy pack."""

    try:
        tenants = [m.slug for m in desired_state(records, config)]
    except DesiredStateError as exc:
        raise CliError(f"the record snapshot cannot be deployed: {exc}", ExitCode.FAILED) from exc
    scratch_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="policy-check-", dir=scratch_root) as tmp:
        work_dir = Path(tmp)
        # A scratch file backend whatever PULUMI_BACKEND_URL says: fixtures must
        # never be previewed against (or lock) a real stack.
        environ = {k: v for k, v in os.environ.items() if k != "PULUMI_BACKEND_URL"}
        environ["PULUMI_CONFIG_PASSPHRASE"] = _SCRATCH_PASSPHRASE
        penv = pulumi_environment(work_dir=work_dir, environ=environ)
        if penv.toolchain.executable("pulumi") is None:
            raise CliError("no Pulumi CLI found: run scripts/setup.sh", ExitCode.UNAVAILABLE)
        pack_config = work_dir / "policy-pack-config.json"
        stack = EnvironmentStack(
            penv,
            # Every fixture in one scratch stack, whatever the environment's shard count.
            dataclasses.replace(config, shards=1),
            work_dir=work_dir,
            policy_pack=POLICY_PACK,
            policy_pack_config=pack_config,
        )
        write_policy_pack_config(config, pack_config, tenants_before=stack.stack_tenants())
        try:
            summary = stack.preview(records)
        except PolicyViolationsError as exc:
            violations = list(exc.violations)
        except StackOperationError as exc:
            raise CliError(f"the preview failed: {exc}", ExitCode.FAILED) from exc
        else:
            violations = summary.policy_violations
    return CheckReport(
        environment=config.environment, source=source, tenants=tenants, violations=violations
    )


def _database_records(settings: Settings) -> list[DomainRecord]:
    """Every row of PORTAL_DOMAINS_DATABASE_URL (the program deploys the deployable ones)."""

    try:
        require_current_schema(settings.database_url)
    except SchemaNotReady as exc:
        raise CliError(str(exc), ExitCode.FAILED) from exc
    return all_records(domain_service(settings))


def _cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    try:
        config = load_stack_config(args.env)
    except ConfigError as exc:
        raise CliError.from_error(exc) from exc
    if args.fixtures:
        records = fixtures.fixture_records(config.base_domain)
        source = "fixtures"
    else:
        records = _database_records(settings)
        source = "database"
    report = run_check(config, records, scratch_root=settings.work_dir, source=source)
    if args.json:
        output.emit_json(report.as_dict())
    else:
        _print_report(report)
    return ExitCode.POLICY_VIOLATION if report.mandatory else ExitCode.OK


def _print_report(report: CheckReport) -> None:
    output.line(
        f"policy check {report.environment}: {len(report.tenants)} tenant(s) from "
        f"{report.source} ({', '.join(report.tenants) or 'none'})"
    )
    for violation in report.violations:
        output.line(f"[{violation.enforcement_level}] {violation.policy}")
        output.line(f"    {violation.message}")
    advisory = len(report.violations) - len(report.mandatory)
    if report.mandatory:
        output.line(
            f"FAILED: {len(report.mandatory)} mandatory and {advisory} advisory violation(s)"
        )
    else:
        output.line(f"passed: no mandatory violations ({advisory} advisory)")


def _cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    try:
        config = load_stack_config(args.env)
    except ConfigError as exc:
        raise CliError.from_error(exc) from exc
    if args.write:
        path = write_policy_pack_config(config, committed_config_path(args.env))
        output.line(f"wrote {path}")
    else:
        output.line(render_policy_pack_config(config).rstrip("\n"))
    return 0
