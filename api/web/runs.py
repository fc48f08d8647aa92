"""Recent reconcile runs, read from nm-kube-config's Git log (read-only).

The publisher (adapters.gitops) commits every run that changed the environment's
manifest folder as `chore(portal-domains): sync ...`; core.runs reads the slugs
and adoption lines back from the message. The log is read with GitPython
straight from the bare remote: no clone, no fetch, nothing written. Only a local
remote (a path, or a file:// URL) is read; for any other the page says so. An
embedded remote that does not exist yet is said so, not created.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import git

from adapters.gitops import GitSettings, redact
from core.runs import parse_sync_message
from core.settings import Settings
from db.service import PLATFORM_LOG, DomainService
from reconciler.activities import RECONCILE_AUDIT_ACTION
from stack.automation import ISSUER_FILE
from stack.config import load_stack_config

RUN_LIMIT = 20


@dataclass(frozen=True, kw_only=True)
class RunEntry:
    commit: str  # full sha
    short: str
    at: datetime  # UTC
    subject: str
    publisher: bool  # a `chore(portal-domains): sync` commit
    slugs: tuple[str, ...]
    other_files: tuple[str, ...]
    adoption: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class RunListing:
    remote: str
    branch: str
    directory: str
    runs: list[RunEntry]
    note: str | None = None  # why no runs are listed (no remote yet, not local, ...)
    review_branch: str | None = None  # review mode: runs wait there until merged


def _local_path(remote_url: str) -> Path | None:
    """The directory of a local remote; None for a network one (https, ssh, scp-like)."""
    if remote_url.startswith("file://"):
        return Path(remote_url.removeprefix("file://"))
    if "://" in remote_url:
        return None
    path = Path(remote_url)
    # `git@host:org/repo.git` is scp-like ssh; a local path here is always absolute.
    return path if path.is_absolute() else None


def recent_runs(settings: Settings, environment: str, *, limit: int = RUN_LIMIT) -> RunListing:
    """The last `limit` commits of the branch that touch the environment's folder."""
    config = load_stack_config(environment, root=settings.stack_config_dir)
    directory = config.manifest_root
    # The same remote and branch as reconciler.wiring.gitops_repo, without its
    # ensure_bare_remote: a read never creates the embedded remote.
    git_settings = GitSettings(
        remote_url=settings.gitops_remote or str(settings.embedded_remote),
        worktree=settings.gitops_worktree(environment),
        review_branch=config.gitops_review_branch,
    )
    remote, branch = git_settings.remote_url, git_settings.branch

    def listing(runs: list[RunEntry], note: str | None = None) -> RunListing:
        return RunListing(
            remote=redact(remote),
            branch=branch,
            directory=directory,
            runs=runs,
            note=note,
            review_branch=git_settings.review_branch,
        )

    path = _local_path(remote)
    if path is None:
        return listing([], "Runs are listed for local remotes only.")
    if not path.exists():
        if settings.gitops_remote is None:
            return listing([], "No nm-kube-config yet: the first reconcile creates it.")
        return listing([], f"The remote {redact(remote)} does not exist.")
    try:
        repo = git.Repo(path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return listing([], f"{redact(remote)} is not a Git repository.")
    try:
        with repo:
            try:
                repo.git.rev_parse("--verify", "--quiet", f"refs/heads/{branch}^{{commit}}")
            except git.GitCommandError:
                return listing([], f"{redact(remote)} has no branch {branch} yet.")
            commits = list(
                repo.iter_commits(f"refs/heads/{branch}", paths=directory, max_count=limit)
            )
            runs = [_entry(commit, directory) for commit in commits]
    except git.GitCommandError as exc:
        detail = str(exc.stderr).strip() or str(exc.status)
        return listing([], redact(f"The log of {remote} cannot be read: {detail}"))
    except (git.GitError, OSError, ValueError) as exc:  # a damaged repository
        return listing([], redact(f"The log of {remote} cannot be read: {exc}"))
    note = None if runs else f"No commit of {branch} touches {directory} yet."
    return listing(runs, note)


def _entry(commit: git.Commit, directory: str) -> RunEntry:
    message = commit.message if isinstance(commit.message, str) else commit.message.decode()
    parsed = parse_sync_message(message, directory=directory, not_tenants=(ISSUER_FILE,))
    return RunEntry(
        commit=commit.hexsha,
        short=commit.hexsha[:12],
        at=commit.committed_datetime.astimezone(UTC),
        subject=message.strip().splitlines()[0] if message.strip() else "",
        publisher=parsed is not None,
        slugs=parsed.slugs if parsed else (),
        other_files=parsed.other_files if parsed else (),
        adoption=parsed.adoption if parsed else (),
    )


@dataclass(frozen=True)
class AuditedRun:
    """One reconcile attempt as the worker audited it (db.service PLATFORM_LOG)."""

    at: datetime
    ok: bool
    duration_seconds: float | None
    summary: str  # the run's message, or why it failed
    changed: tuple[str, ...]
    commit: str | None
    attempt: int | None


def audited_runs(service: DomainService, environment: str, *, limit: int = 20) -> list[AuditedRun]:
    """The environment's last reconcile attempts, newest first: when, result, duration,
    what changed per tenant (every attempt, failed ones too, unlike the Git log)."""
    runs: list[AuditedRun] = []
    for entry in reversed(service.audit_log(PLATFORM_LOG)):
        detail = entry.detail or {}
        if entry.action != RECONCILE_AUDIT_ACTION or detail.get("environment") != environment:
            continue
        duration = detail.get("duration_seconds")
        attempt = detail.get("attempt")
        changed = detail.get("changed")
        commit = detail.get("commit")
        runs.append(
            AuditedRun(
                at=entry.occurred_at,
                ok=entry.outcome == "ok",
                duration_seconds=float(duration) if isinstance(duration, int | float) else None,
                summary=str(detail.get("message") or detail.get("reason") or ""),
                changed=tuple(str(s) for s in changed) if isinstance(changed, list) else (),
                commit=str(commit) if isinstance(commit, str) else None,
                attempt=attempt if isinstance(attempt, int) else None,
            )
        )
        if len(runs) >= limit:
            break
    return runs
