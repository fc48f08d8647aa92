"""Publishing the per-tenant YAML to the GitOps repository (nm-kube-config).

`GitOpsRepo.publish` makes one directory of the repository hold exactly the
tenant files it is given, commits that as `chore(portal-domains): sync ...` and
pushes it. It assumes it will be killed half-way and re-run: every run starts
from the remote branch (hard reset, clean), so whatever an earlier run left
behind (files, a staged index, a commit never pushed, a stale lock, a stopped
rebase) is thrown away and recomputed. Pushes are never forced: a rejected push
is rebased onto the new remote head and retried.

The worktree belongs to this module alone. It is marked as ours when we clone
it, and a directory without that mark is never reset, so a misconfigured path
cannot wipe someone's checkout. Runs on one machine are serialised by a lock
file next to the worktree.

`ensure_bare_remote` creates the embedded stand-in for nm-kube-config: a local
bare repository with one commit.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NoReturn

import git

from adapters.manifest_files import sync_directory
from core.errors import PortalDomainsError

logger = logging.getLogger(__name__)

_MANAGED_KEY = "portal-domains.managed"
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Phrases git prints when the remote moved under us: retry after a rebase.
_RETRYABLE_PUSH = (
    "[rejected]",
    "non-fast-forward",
    "fetch first",
    "stale info",
    "cannot lock ref",
    "failed to update ref",
    "incorrect old value",
)
_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


# `scheme://user:token@host`: what a remote URL with credentials looks like.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s'\"]+@")


def redact(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by `***`."""
    return _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)


class GitOpsError(PortalDomainsError):
    """Publishing to the GitOps repository failed; the message says where and why.

    The message never carries the credentials of a remote URL (a token in
    `https://x-access-token:<token>@host/...`): it travels into activity
    failures, Temporal history and logs.
    """

    code = "gitops_failed"
    retryable = True

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class GitPushError(GitOpsError):
    """The commit could not be pushed; the worktree was reset to the remote branch."""

    code = "gitops_push_failed"


@dataclass(frozen=True, kw_only=True)
class GitSettings:
    remote_url: str
    worktree: Path
    branch: str = "main"
    # Review mode: each publish is `branch` plus one commit, pushed (force-updated) to
    # this branch of ours for a pull request instead of to `branch` itself.
    review_branch: str | None = None
    author_name: str = "portal-domains"
    author_email: str = "portal-domains@algapsa.com"
    max_push_attempts: int = 5
    # Network commands (clone, fetch, push) are killed after this long.
    command_timeout_seconds: float = 120.0
    # How long to wait for another publisher on this machine to release the worktree.
    lock_timeout_seconds: float = 60.0


@dataclass(frozen=True, kw_only=True)
class PublishResult:
    """`commit` is the pushed commit, None when there was nothing to change."""

    commit: str | None
    pushed: bool
    changed_slugs: tuple[str, ...]
    attempts: int


class _Rejected(Exception):
    """The remote refused the push because it has moved on."""


def _identity_env(name: str, email: str) -> dict[str, str]:
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
        # Never wait for a password prompt nobody will answer.
        "GIT_TERMINAL_PROMPT": "0",
    }


def _command_error(error: git.GitCommandError) -> str:
    command = error.command if isinstance(error.command, list) else [str(error.command)]
    detail = str(error.stderr).strip().removeprefix("stderr:").strip().strip("'").strip()
    return f"`{' '.join(str(part) for part in command)}` failed: {detail or error.status}"


def ensure_bare_remote(
    path: Path,
    *,
    branch: str = "main",
    author_name: str = "portal-domains",
    author_email: str = "portal-domains@algapsa.com",
) -> str:
    """A local bare repository at `path` whose `branch` has at least one commit.

    Creates what is missing and leaves an existing history alone. Returns the
    URL to clone (the absolute path).
    """
    path = path.resolve()
    if path.exists() and any(path.iterdir()):
        try:
            repo = git.Repo(path)
        except git.InvalidGitRepositoryError as error:
            raise GitOpsError(f"{path} exists and is not a Git repository") from error
        if not repo.bare:
            raise GitOpsError(f"{path} is a Git worktree, not a bare repository")
    else:
        path.mkdir(parents=True, exist_ok=True)
        repo = git.Repo.init(path, bare=True)
        repo.git.symbolic_ref("HEAD", f"refs/heads/{branch}")
        logger.info("created bare repository %s", path)
    try:
        repo.git.rev_parse("--verify", "--quiet", f"refs/heads/{branch}^{{commit}}")
    except git.GitCommandError:
        env = _identity_env(author_name, author_email)
        sha = repo.git.commit_tree(
            _EMPTY_TREE, "-m", "chore: initialise nm-kube-config (embedded default)", env=env
        )
        repo.git.update_ref(f"refs/heads/{branch}", sha, "")
        logger.info("created branch %s in %s", branch, path)
    return str(path)


def _validate(directory: str, files: Mapping[str, str]) -> PurePosixPath:
    relative = PurePosixPath(directory)
    if (
        not directory
        or relative.is_absolute()
        or ".." in relative.parts
        or relative == PurePosixPath()
    ):
        raise ValueError(f"directory must be a relative path inside the repository: {directory!r}")
    if relative.parts[0] == ".git":
        raise ValueError(f"directory must not be inside .git: {directory!r}")
    bad = sorted(slug for slug in files if not _SLUG.fullmatch(slug))
    if bad:
        raise ValueError(f"not usable as file names: {', '.join(map(repr, bad))}")
    return relative


def _parse_name_status(output: str, directory: PurePosixPath) -> dict[str, str]:
    """`git diff --name-status` lines -> tenant slug -> "added" / "updated" / "removed"."""
    kinds = {"A": "added", "M": "updated", "D": "removed"}
    changes: dict[str, str] = {}
    for line in output.splitlines():
        code, _, name = line.partition("\t")
        path = PurePosixPath(name)
        if path.parent == directory and path.suffix == ".yaml":
            changes[path.stem] = kinds.get(code[:1], "changed")
    return changes


def _commit_message(changes: Mapping[str, str], directory: str) -> str:
    slugs = sorted(changes)
    if len(slugs) == 1:
        return f"chore(portal-domains): sync {slugs[0]}"
    if not slugs:
        return f"chore(portal-domains): sync {directory}"
    # Files, not tenants: the environment's cluster-issuer.yaml sits beside them.
    head = ", ".join(slugs) if len(slugs) <= 3 else f"{len(slugs)} files"
    body = "\n".join(f"- {slug} ({changes[slug]})" for slug in slugs)
    return f"chore(portal-domains): sync {head}\n\n{body}\n"


class GitOpsRepo:
    """The worktree of the GitOps repository that portal-domains writes to."""

    def __init__(self, settings: GitSettings) -> None:
        if settings.max_push_attempts < 1:
            raise ValueError("max_push_attempts must be at least 1")
        self.settings = settings
        self._env = _identity_env(settings.author_name, settings.author_email)

    # -- public ------------------------------------------------------------------

    def publish(self, directory: str, files: Mapping[str, str]) -> PublishResult:
        """Make `<directory>/` hold exactly `<slug>.yaml` for each of `files` and push it.

        `files` maps tenant slug to the file's full content (with our header);
        only files carrying our header are ever deleted. Publishing the same
        files again changes nothing and makes no commit.
        """
        relative = _validate(directory, files)
        with self._locked():
            try:
                repo = self._prepare()
                changes = self._commit(repo, relative, files)
                if changes is None:
                    logger.info("%s is already up to date in %s", directory, self._remote())
                    self._drop_stale_review_branch(repo)
                    return PublishResult(commit=None, pushed=False, changed_slugs=(), attempts=0)
                return self._push_with_retries(repo, relative, files, changes)
            except git.GitCommandError as error:
                raise GitOpsError(f"{self._remote()}: {_command_error(error)}") from error

    # -- steps -------------------------------------------------------------------

    def _remote(self) -> str:
        review = self.settings.review_branch
        target = f"{review} for review against {self.settings.branch}" if review else None
        return f"{redact(self.settings.remote_url)} ({target or self.settings.branch})"

    def _drop_stale_review_branch(self, repo: git.Repo) -> None:
        """Review mode with nothing left to review (merged): the branch goes too."""
        review = self.settings.review_branch
        if review is None:
            return
        listed = str(
            repo.git.ls_remote(
                "--heads",
                "origin",
                f"refs/heads/{review}",
                kill_after_timeout=self.settings.command_timeout_seconds,
            )
        )
        if listed.strip():
            repo.git.push(
                "origin",
                "--delete",
                review,
                kill_after_timeout=self.settings.command_timeout_seconds,
            )
            logger.info("deleted %s: %s already holds its content", review, self.settings.branch)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        worktree = self.settings.worktree
        worktree.parent.mkdir(parents=True, exist_ok=True)
        lock_path = worktree.parent / f".{worktree.name}.lock"
        deadline = time.monotonic() + self.settings.lock_timeout_seconds
        with lock_path.open("a") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise GitOpsError(
                            f"another publisher holds {lock_path} for more than "
                            f"{self.settings.lock_timeout_seconds:g}s"
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _prepare(self) -> git.Repo:
        """Open (or clone) the worktree and make it identical to the remote branch."""
        repo = self._open_or_clone()
        self._discard_interrupted_operations(repo)
        self._fetch(repo)
        self._reset_to_remote(repo)
        return repo

    def _open_or_clone(self) -> git.Repo:
        worktree = self.settings.worktree
        if worktree.exists() and any(worktree.iterdir()):
            try:
                repo = git.Repo(worktree)
            except git.InvalidGitRepositoryError as error:
                raise GitOpsError(
                    f"{worktree} exists and is not a Git worktree; refusing to touch it"
                ) from error
            with repo.config_reader() as reader:
                managed = reader.get_value("portal-domains", "managed", default="false")
            if str(managed).lower() != "true" or repo.working_tree_dir is None:
                raise GitOpsError(
                    f"{worktree} is a Git worktree that portal-domains did not create "
                    f"(no {_MANAGED_KEY} in its config); refusing to reset it"
                )
            repo.git.update_environment(**self._env)
            origin = repo.remote("origin")
            if origin.url != self.settings.remote_url:
                logger.info("origin of %s moves to %s", worktree, redact(self.settings.remote_url))
                origin.set_url(self.settings.remote_url)
            return repo
        return self._clone()

    def _clone(self) -> git.Repo:
        worktree = self.settings.worktree
        # Clone beside the target and rename, so a killed clone never leaves a
        # half-made worktree at the real path.
        staging = worktree.parent / f".{worktree.name}.cloning"
        if staging.exists():
            shutil.rmtree(staging)
        git.Git(str(worktree.parent)).clone(
            "--branch",
            self.settings.branch,
            "--",
            self.settings.remote_url,
            str(staging),
            env=self._env,
            kill_after_timeout=self.settings.command_timeout_seconds,
        )
        repo = git.Repo(staging)
        with repo.config_writer() as writer:
            writer.set_value("portal-domains", "managed", "true")
        if worktree.exists():
            worktree.rmdir()  # empty, checked by the caller
        os.replace(staging, worktree)
        logger.info("cloned %s into %s", self._remote(), worktree)
        repo = git.Repo(worktree)
        repo.git.update_environment(**self._env)
        return repo

    def _discard_interrupted_operations(self, repo: git.Repo) -> None:
        git_dir = Path(repo.git_dir)
        lock = git_dir / "index.lock"
        if lock.exists():
            # Only our publisher uses this worktree and we hold the lock file, so
            # an index.lock is what a killed git process left behind.
            logger.warning("removing stale %s", lock)
            lock.unlink()
        for state in ("rebase-merge", "rebase-apply"):
            if (git_dir / state).exists():
                logger.warning("aborting a rebase left behind in %s", repo.working_tree_dir)
                try:
                    repo.git.rebase("--abort")
                except git.GitCommandError:
                    shutil.rmtree(git_dir / state, ignore_errors=True)

    def _fetch(self, repo: git.Repo) -> None:
        branch = self.settings.branch
        repo.git.fetch(
            "--prune",
            "origin",
            f"+refs/heads/{branch}:refs/remotes/origin/{branch}",
            kill_after_timeout=self.settings.command_timeout_seconds,
        )
        try:
            repo.git.rev_parse("--verify", "--quiet", f"refs/remotes/origin/{branch}^{{commit}}")
        except git.GitCommandError as error:
            raise GitOpsError(f"{self.settings.remote_url} has no branch {branch}") from error

    def _reset_to_remote(self, repo: git.Repo) -> None:
        branch = self.settings.branch
        repo.git.checkout("--force", "-B", branch, f"refs/remotes/origin/{branch}")
        repo.git.reset("--hard", f"refs/remotes/origin/{branch}")
        repo.git.clean("-ffdx")

    def _commit(
        self, repo: git.Repo, directory: PurePosixPath, files: Mapping[str, str]
    ) -> dict[str, str] | None:
        """Sync, stage and commit; slug -> "added"/"updated"/"removed", None if unchanged."""
        assert repo.working_tree_dir is not None
        target = Path(repo.working_tree_dir) / directory
        try:
            sync_directory(files, target)
        except FileExistsError as error:
            self._reset_to_remote(repo)
            raise GitOpsError(f"{self._remote()}: {error}") from error
        repo.git.add("--all", "--", str(directory))
        status = repo.git.diff("--cached", "--name-status", "--no-renames", "--", str(directory))
        if not status:
            return None
        changes = _parse_name_status(status, directory)
        message = _commit_message(changes, str(directory))
        repo.git.commit("--no-verify", "--no-gpg-sign", "--quiet", "-m", message)
        logger.info("committed %s: %s", repo.head.commit.hexsha[:12], message.splitlines()[0])
        return changes

    def _push(self, repo: git.Repo) -> None:
        review = self.settings.review_branch
        # The review branch is ours alone and always `branch` plus one commit, so it
        # is replaced; `branch` itself is only ever fast-forwarded.
        target = (
            f"+HEAD:refs/heads/{review}" if review else f"HEAD:refs/heads/{self.settings.branch}"
        )
        try:
            repo.git.push(
                "--porcelain",
                "origin",
                target,
                kill_after_timeout=self.settings.command_timeout_seconds,
            )
        except git.GitCommandError as error:
            text = f"{error.stdout}\n{error.stderr}"
            if any(phrase in text for phrase in _RETRYABLE_PUSH):
                raise _Rejected(_command_error(error)) from error
            raise

    def _push_with_retries(
        self,
        repo: git.Repo,
        directory: PurePosixPath,
        files: Mapping[str, str],
        changes: dict[str, str],
    ) -> PublishResult:
        attempts = 0
        while True:
            attempts += 1
            try:
                self._push(repo)
            except _Rejected as rejection:
                if attempts >= self.settings.max_push_attempts:
                    self._give_up(repo, attempts, str(rejection))
                logger.info(
                    "push to %s rejected (attempt %d of %d); rebasing",
                    self._remote(),
                    attempts,
                    self.settings.max_push_attempts,
                )
                self._fetch(repo)
                rebased = self._rebase(repo, directory, files)
                if rebased is None:
                    # Someone else already published exactly this content.
                    return PublishResult(
                        commit=None, pushed=False, changed_slugs=(), attempts=attempts
                    )
                changes = rebased
                continue
            except git.GitCommandError as error:
                self._give_up(repo, attempts, _command_error(error))
            sha = repo.head.commit.hexsha
            logger.info("pushed %s to %s", sha[:12], self._remote())
            return PublishResult(
                commit=sha, pushed=True, changed_slugs=tuple(sorted(changes)), attempts=attempts
            )

    def _rebase(
        self, repo: git.Repo, directory: PurePosixPath, files: Mapping[str, str]
    ) -> dict[str, str] | None:
        """Put our commit on top of the remote head; redo it if it conflicts."""
        branch = self.settings.branch
        before = repo.head.commit
        try:
            repo.git.rebase("--no-gpg-sign", f"refs/remotes/origin/{branch}")
        except git.GitCommandError:
            logger.info("rebase onto %s conflicts; recomputing the commit", self._remote())
            repo.git.rebase("--abort")
            self._reset_to_remote(repo)
            return self._commit(repo, directory, files)
        if repo.head.commit == repo.commit(f"refs/remotes/origin/{branch}"):
            return None  # our change became empty on top of theirs
        logger.debug("rebased %s onto the remote head", before.hexsha[:12])
        status = repo.git.diff(
            "--name-status", "--no-renames", "HEAD~1", "HEAD", "--", str(directory)
        )
        return _parse_name_status(status, directory)

    def _give_up(self, repo: git.Repo, attempts: int, reason: str) -> NoReturn:
        try:
            self._fetch(repo)
            self._reset_to_remote(repo)
        except (git.GitCommandError, GitOpsError):
            logger.exception("could not reset %s after a failed push", self.settings.worktree)
        raise GitPushError(
            f"could not push to {self._remote()} after {attempts} attempt"
            f"{'s' if attempts > 1 else ''}: {reason}; the worktree was reset to the remote "
            "branch and the next run will try again"
        )
