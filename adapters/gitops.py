"""Publishing the per-tenant YAML to the GitOps repository (nm-kube-config).

`GitOpsRepo.publish` makes one directory of the repository hold exactly the
tenant files it is given, commits that as `chore(portal-domains): sync ...` and
pushes it. It assumes it will be killed half-way and re-run: every run starts
from the remote branch (hard reset, clean), so whatever an earlier run left
behind (files, a staged index, a commit never pushed, a stale lock, a stopped
rebase) is thrown away and recomputed. Pushes are never forced: a rejected push
is rebased onto the new remote head and retried.

Files in the directory that we did not write (no portal-domains header) never
stop a publish: `core.adoption` decides per file, and the same commit replaces
one that has a tenant file's name (adopted), removes one that serves only hosts
our files serve (so no two files serve one host), and leaves the rest alone;
`PublishResult.adoption` and the commit message say which. `adoption_plan`
shows what the next publish would do without committing anything.

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
import shlex
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NoReturn

import git
import yaml

from adapters.manifest_files import HEADER_PREFIX, sync_directory
from core.adoption import (
    Action,
    AdoptionPlan,
    AdoptionStep,
    DesiredFile,
    FoundFile,
    plan_adoption,
    served_hosts,
)
from core.errors import PortalDomainsError
from core.text import redact_urls

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
# What Argo CD / Flux read from the directory: a foreign file with either suffix can
# serve one of our hosts.
_YAML_SUFFIXES = (".yaml", ".yml")


redact = redact_urls  # `text` with the credentials of every URL in it replaced by `***`


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
    # HTTPS without a token in the URL: git asks a credential helper that reads the
    # token from this file at each use (so it can be rotated in place); the token
    # never reaches the URL, the command line, git's config or a log.
    token_file: Path | None = None
    token_username: str = "x-access-token"
    # SSH remotes (git@host:org/nm-kube-config.git): the private key to use and,
    # recommended, a known_hosts file to pin the host key (strict checking).
    ssh_key: Path | None = None
    ssh_known_hosts: Path | None = None


@dataclass(frozen=True, kw_only=True)
class PublishResult:
    """`commit` is the pushed commit, None when there was nothing to change.

    `adoption` lists the directory's files we did not write and what the commit
    did with them (adopted, removed) or why it left them (foreign, conflict,
    not valid YAML).
    """

    commit: str | None
    pushed: bool
    changed_slugs: tuple[str, ...]
    attempts: int
    adoption: tuple[AdoptionStep, ...] = ()


@dataclass(frozen=True, kw_only=True)
class _Commit:
    changes: dict[str, str]  # slug -> "added"/"updated"/"removed"/"adopted"
    adoption: AdoptionPlan


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


def _credential_env(settings: GitSettings) -> dict[str, str]:
    """How git authenticates to the remote, without credentials in the URL.

    The credential helper is passed through GIT_CONFIG_* variables, so nothing is
    written to the worktree's config; it prints the token file's content only
    when git asks for a credential (`get`).
    """
    env: dict[str, str] = {}
    if settings.token_file is not None:
        if not settings.token_file.is_file():
            raise GitOpsError(
                f"PORTAL_DOMAINS_GITOPS_TOKEN_FILE={settings.token_file} is not a readable file"
            )
        helper = (
            '!f() { test "$1" = get || exit 0; '
            f"echo username={shlex.quote(settings.token_username)}; "
            f"printf 'password=%s\\n' \"$(cat {shlex.quote(str(settings.token_file))})\"; }}; f"
        )
        env.update(
            {
                "GIT_CONFIG_COUNT": "1",
                # An empty helper first would drop any system-wide helper: keep theirs.
                "GIT_CONFIG_KEY_0": "credential.helper",
                "GIT_CONFIG_VALUE_0": helper,
            }
        )
    if settings.ssh_key is not None:
        command = [
            "ssh",
            "-i",
            shlex.quote(str(settings.ssh_key)),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
        ]
        if settings.ssh_known_hosts is not None:
            command += [
                "-o",
                f"UserKnownHostsFile={shlex.quote(str(settings.ssh_known_hosts))}",
                "-o",
                "StrictHostKeyChecking=yes",
            ]
        env["GIT_SSH_COMMAND"] = " ".join(command)
    return env


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
        if path.parent == directory and path.suffix in _YAML_SUFFIXES:
            changes[path.stem] = kinds.get(code[:1], "changed")
    return changes


# Files named one by one in a commit message; beyond that, a count. Past a few
# thousand lines the message alone would exceed Linux's 128 KiB per argument.
MESSAGE_FILES = 200


def _commit_message(
    changes: Mapping[str, str], directory: str, adoption: AdoptionPlan | None = None
) -> str:
    slugs = sorted(changes)
    # What the commit did to files we did not write, for whoever reads the history.
    notes = [step.line() for step in (adoption.steps if adoption else ()) if step.changes_git]
    if len(slugs) == 1 and not notes:
        return f"chore(portal-domains): sync {slugs[0]}"
    if not slugs:
        return f"chore(portal-domains): sync {directory}"
    # Files, not tenants: the environment's cluster-issuer.yaml sits beside them.
    head = ", ".join(slugs) if len(slugs) <= 3 else f"{len(slugs)} files"
    listed = slugs[:MESSAGE_FILES]
    body = "\n".join(f"- {slug} ({changes[slug]})" for slug in listed)
    if len(slugs) > len(listed):
        # A first build of thousands of tenants: `git show --stat` lists them all.
        body += f"\n- ... and {len(slugs) - len(listed)} more"
    if notes:
        body += "\n\n" + "\n".join(notes)
    return f"chore(portal-domains): sync {head}\n\n{body}\n"


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())[:300]


def _parsed_hosts(text: str) -> tuple[frozenset[str] | None, str | None]:
    """The hosts a file's objects serve, or (None, why) when it is not valid YAML."""
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as error:
        return None, _one_line(error)
    return served_hosts(documents), None


def desired_files(files: Mapping[str, str]) -> list[DesiredFile]:
    """Our files (slug -> content) as the adoption plan sees them: name and hosts."""
    return [
        DesiredFile(name=f"{slug}.yaml", hosts=_our_hosts(content))
        for slug, content in sorted(files.items())
    ]


def _our_hosts(text: str) -> frozenset[str]:
    """The hosts one of our own files serves (we rendered it: libyaml when present)."""
    return served_hosts(list(yaml.load_all(text, Loader=_FAST_LOADER)))


_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_folder(folder: Path) -> list[FoundFile]:
    """The YAML files directly in `folder`: ours (our header) or not, and what they serve."""
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        if path.suffix not in _YAML_SUFFIXES or not path.is_file():
            continue
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as error:
            found.append(FoundFile(name=path.name, ours=False, hosts=None, error=_one_line(error)))
            continue
        if text.startswith(HEADER_PREFIX):
            found.append(FoundFile(name=path.name, ours=True))
            continue
        hosts, problem = _parsed_hosts(text)
        found.append(FoundFile(name=path.name, ours=False, hosts=hosts, error=problem))
    return found


def _log_adoption(plan: AdoptionPlan) -> None:
    for step in plan.steps:
        needs_a_human = step.action in (Action.CONFLICT, Action.UNREADABLE)
        logger.log(logging.WARNING if needs_a_human else logging.INFO, "%s", step.line())


class GitOpsRepo:
    """The worktree of the GitOps repository that portal-domains writes to."""

    def __init__(self, settings: GitSettings) -> None:
        if settings.max_push_attempts < 1:
            raise ValueError("max_push_attempts must be at least 1")
        self.settings = settings
        self._env = {
            **_identity_env(settings.author_name, settings.author_email),
            **_credential_env(settings),
        }

    # -- public ------------------------------------------------------------------

    def publish(self, directory: str, files: Mapping[str, str]) -> PublishResult:
        """Make `<directory>/` hold exactly `<slug>.yaml` for each of `files` and push it.

        `files` maps tenant slug to the file's full content (with our header).
        Files without our header are deleted only as `core.adoption` decides
        (replaced by ours of the same name, or serving only our hosts).
        Publishing the same files again changes nothing and makes no commit.
        """
        relative = _validate(directory, files)
        with self._locked():
            try:
                repo = self._prepare()
                committed, plan = self._commit(repo, relative, files)
                if committed is None:
                    logger.info("%s is already up to date in %s", directory, self._remote())
                    self._drop_stale_review_branch(repo)
                    return PublishResult(
                        commit=None,
                        pushed=False,
                        changed_slugs=(),
                        attempts=0,
                        adoption=plan.steps,
                    )
                return self._push_with_retries(repo, relative, files, committed)
            except git.GitCommandError as error:
                raise GitOpsError(f"{self._remote()}: {_command_error(error)}") from error

    def adoption_plan(self, directory: str, desired: Sequence[DesiredFile]) -> AdoptionPlan:
        """What the next publish of `desired` would do with the files we did not write.

        Read-only for the remote: our own worktree is brought to the remote branch
        (as every publish does first) and read; nothing is committed or pushed.
        """
        relative = _validate(directory, {})
        with self._locked():
            try:
                repo = self._prepare()
            except git.GitCommandError as error:
                raise GitOpsError(f"{self._remote()}: {_command_error(error)}") from error
            assert repo.working_tree_dir is not None
            found = read_folder(Path(repo.working_tree_dir) / relative)
            return plan_adoption(desired, found, directory=str(relative))

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
    ) -> tuple[_Commit | None, AdoptionPlan]:
        """Adopt, sync, stage and commit; None when nothing changed, and the adoption plan."""
        assert repo.working_tree_dir is not None
        root = Path(repo.working_tree_dir)
        target = root / directory
        found = read_folder(target)
        # Our files' hosts matter only against files we did not write: parsing a
        # thousand files of ours for nothing was most of a publish's time.
        desired = (
            desired_files(files)
            if any(not item.ours for item in found)
            else [DesiredFile(name=f"{slug}.yaml", hosts=frozenset()) for slug in sorted(files)]
        )
        plan = plan_adoption(desired, found, directory=str(directory))
        for path in plan.replaced_paths:
            # Adopted ones come back as ours from sync_directory; removed ones stay gone.
            (root / path).unlink()
        try:
            sync_directory(files, target)
        except FileExistsError as error:  # the plan adopts these; kept as a last guard
            self._reset_to_remote(repo)
            raise GitOpsError(f"{self._remote()}: {error}") from error
        _log_adoption(plan)
        repo.git.add("--all", "--", str(directory))
        status = repo.git.diff("--cached", "--name-status", "--no-renames", "--", str(directory))
        if not status:
            return None, plan
        changes = _parse_name_status(status, directory)
        for step in plan.of(Action.ADOPT):
            changes[PurePosixPath(step.path).stem] = "adopted"
        message = _commit_message(changes, str(directory), plan)
        # From a file, never argv: a long message must not hit the argument size limit.
        message_file = Path(repo.git_dir) / "PORTAL_DOMAINS_COMMIT_MSG"
        message_file.write_text(message)
        repo.git.commit("--no-verify", "--no-gpg-sign", "--quiet", "-F", str(message_file))
        logger.info("committed %s: %s", repo.head.commit.hexsha[:12], message.splitlines()[0])
        return _Commit(changes=changes, adoption=plan), plan

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
        committed: _Commit,
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
                rebased = self._rebase(repo, directory, files, committed.adoption)
                if rebased is None:
                    # Someone else already published exactly this content.
                    return PublishResult(
                        commit=None,
                        pushed=False,
                        changed_slugs=(),
                        attempts=attempts,
                        adoption=committed.adoption.steps,
                    )
                committed = rebased
                continue
            except git.GitCommandError as error:
                self._give_up(repo, attempts, _command_error(error))
            sha = repo.head.commit.hexsha
            logger.info("pushed %s to %s", sha[:12], self._remote())
            return PublishResult(
                commit=sha,
                pushed=True,
                changed_slugs=tuple(sorted(committed.changes)),
                attempts=attempts,
                adoption=committed.adoption.steps,
            )

    def _rebase(
        self,
        repo: git.Repo,
        directory: PurePosixPath,
        files: Mapping[str, str],
        adoption: AdoptionPlan,
    ) -> _Commit | None:
        """Put our commit on top of the remote head; redo it if it conflicts."""
        branch = self.settings.branch
        before = repo.head.commit
        try:
            repo.git.rebase("--no-gpg-sign", f"refs/remotes/origin/{branch}")
        except git.GitCommandError:
            logger.info("rebase onto %s conflicts; recomputing the commit", self._remote())
            repo.git.rebase("--abort")
            self._reset_to_remote(repo)
            return self._commit(repo, directory, files)[0]
        if repo.head.commit == repo.commit(f"refs/remotes/origin/{branch}"):
            return None  # our change became empty on top of theirs
        logger.debug("rebased %s onto the remote head", before.hexsha[:12])
        status = repo.git.diff(
            "--name-status", "--no-renames", "HEAD~1", "HEAD", "--", str(directory)
        )
        changes = _parse_name_status(status, directory)
        for step in adoption.of(Action.ADOPT):
            stem = PurePosixPath(step.path).stem
            if stem in changes:
                changes[stem] = "adopted"
        return _Commit(changes=changes, adoption=adoption)

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
