"""`portal-domains gitops adopt --env E --dry-run`: nm-kube-config files we did not write.

The environment's folder in nm-kube-config may hold tenant YAML written before
portal-domains (by hand, by the TypeScript implementation). The next publish
adopts the ones with a tenant file's name, removes the ones that serve only our
tenants' hosts, and leaves the rest (core.adoption). This command shows which,
for the database's rows (what the next reconcile deploys) against the remote
branch, and changes nothing in Git: no commit, no push. The adoption itself is
done by the next reconcile (`portal-domains reconcile --env E`).
"""

from __future__ import annotations

import argparse

from adapters.gitops import redact
from cli import output
from cli.common import guarded, json_flag
from cli.exit_codes import CliError, ExitCode
from core.adoption import Action, AdoptionPlan, DesiredFile, served_hosts
from core.config import ConfigError, StackConfig
from core.manifests import desired_state
from core.settings import Settings
from db.migrate import require_current_schema
from reconciler.environment_reconcile import all_records
from reconciler.wiring import domain_service, gitops_remote, gitops_repo
from stack.automation import ISSUER_FILE
from stack.config import ENVIRONMENTS, load_stack_config


def desired_files(settings: Settings, config: StackConfig) -> list[DesiredFile]:
    """The files the next reconcile publishes for the database's rows, and their hosts."""
    require_current_schema(settings.database_url)
    manifests = desired_state(all_records(domain_service(settings)), config)
    files = [
        DesiredFile(name=f"{m.slug}.yaml", hosts=served_hosts(m.documents())) for m in manifests
    ]
    if config.declare_issuer:
        files.append(DesiredFile(name=f"{ISSUER_FILE}.yaml"))
    return files


def _summary(plan: AdoptionPlan) -> str:
    counts = plan.counts()
    return (
        f"{counts[Action.ADOPT]} to adopt, {counts[Action.REMOVE]} to remove, "
        f"{counts[Action.CONFLICT]} in conflict, {counts[Action.LEAVE]} foreign left alone, "
        f"{counts[Action.UNREADABLE]} not valid YAML"
    )


@guarded
def _cmd_adopt(args: argparse.Namespace, settings: Settings) -> int:
    if not args.dry_run:
        raise CliError(
            "the next publish adopts the files (`portal-domains reconcile --env "
            f"{args.env}`); add --dry-run to see what it will do",
            ExitCode.INVALID_INPUT,
        )
    try:
        config = load_stack_config(args.env, root=settings.stack_config_dir)
    except ConfigError as err:
        raise CliError(str(err), ExitCode.INVALID_INPUT) from err
    desired = desired_files(settings, config)
    remote = redact(gitops_remote(settings))  # printed: never its credentials
    plan = gitops_repo(settings, args.env).adoption_plan(config.manifest_root, desired)
    if args.json:
        output.emit_json(
            {
                "environment": args.env,
                "remote": remote,
                "directory": config.manifest_root,
                "dry_run": True,
                "counts": plan.counts(),
                "steps": [
                    {**step.as_dict(), "line": step.line(planned=True)} for step in plan.steps
                ],
            }
        )
        return 0
    where = f"{remote}: {config.manifest_root}/"
    if not plan.steps:
        output.line(f"{where} holds only files portal-domains wrote; nothing to adopt")
        return 0
    output.line(f"{where} (dry run, nothing changed)")
    for step in plan.steps:
        output.line(f"  {step.line(planned=True)}")
    output.line(_summary(plan))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gitops = sub.add_parser("gitops", help="the nm-kube-config repository")
    gitops_sub = gitops.add_subparsers(dest="gitops_command", required=True, metavar="COMMAND")
    adopt = gitops_sub.add_parser(
        "adopt",
        help="what the next publish does with files portal-domains did not write",
        description=(
            "List the files in the environment's nm-kube-config folder that portal-domains "
            "did not write, and what the next publish does with each: adopt (a tenant "
            "file's name), remove (serves only our tenants' hosts), leave alone, or report "
            "(a conflict, or not valid YAML). --dry-run changes nothing in Git."
        ),
    )
    adopt.add_argument("--env", required=True, choices=ENVIRONMENTS, help="environment")
    adopt.add_argument(
        "--dry-run",
        action="store_true",
        help="show what the next publish would do, without committing (required: the "
        "adoption itself is done by the next reconcile)",
    )
    json_flag(adopt)
    adopt.set_defaults(handler=_cmd_adopt)
