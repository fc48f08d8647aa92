"""nm-kube-config over authenticated HTTPS-style smart HTTP, the token never in the URL.

A real `git http-backend` behind Basic authentication (tests/support/git_http.py).
"""

from __future__ import annotations

import secrets
from pathlib import Path

import git
import pytest

from adapters.gitops import GitOpsError, GitOpsRepo, GitSettings, ensure_bare_remote
from stack.export import HEADER
from tests.support.git_http import git_http_server

USER = "x-access-token"


def _file(slug: str) -> str:
    return HEADER.format(env="staging") + f"kind: Certificate\nmetadata:\n  name: {slug}\n"


def _everything_under(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())


def test_a_token_file_authenticates_and_the_token_is_written_nowhere(tmp_path: Path) -> None:
    token = secrets.token_hex(20)
    ensure_bare_remote(tmp_path / "repos" / "nm-kube-config.git")
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    worktree = tmp_path / "work" / "nm-kube-config"
    with git_http_server(tmp_path / "repos", username=USER, token=token) as server:
        url = f"{server.url}/nm-kube-config.git"  # no credentials in the URL
        repo = GitOpsRepo(GitSettings(remote_url=url, worktree=worktree, token_file=token_file))
        result = repo.publish("tenants/staging", {"aaaaaaa": _file("aaaaaaa")})
    assert result.commit is not None
    pushed = git.Repo(tmp_path / "repos" / "nm-kube-config.git").commit("main")
    assert pushed.hexsha == result.commit
    assert token.encode() not in _everything_under(worktree)  # not in .git/config either
    assert token not in url


def test_a_wrong_token_fails_with_an_error_that_does_not_carry_it(tmp_path: Path) -> None:
    ensure_bare_remote(tmp_path / "repos" / "nm-kube-config.git")
    wrong = secrets.token_hex(20)
    token_file = tmp_path / "token"
    token_file.write_text(wrong)
    with git_http_server(tmp_path / "repos", username=USER, token="the-right-one") as server:
        repo = GitOpsRepo(
            GitSettings(
                remote_url=f"{server.url}/nm-kube-config.git",
                worktree=tmp_path / "work",
                token_file=token_file,
                command_timeout_seconds=30,
            )
        )
        with pytest.raises(GitOpsError) as failed:
            repo.publish("tenants/staging", {"aaaaaaa": _file("aaaaaaa")})
        # git did present the (wrong) token: the helper ran.
        assert any(a.startswith("Basic ") for a in server.seen_authorizations)
    assert wrong not in str(failed.value)


def test_without_credentials_the_remote_refuses_and_nothing_prompts(tmp_path: Path) -> None:
    ensure_bare_remote(tmp_path / "repos" / "nm-kube-config.git")
    with git_http_server(tmp_path / "repos", username=USER, token="t") as server:
        repo = GitOpsRepo(
            GitSettings(
                remote_url=f"{server.url}/nm-kube-config.git",
                worktree=tmp_path / "work",
                command_timeout_seconds=30,
            )
        )
        with pytest.raises(GitOpsError):
            repo.publish("tenants/staging", {"aaaaaaa": _file("aaaaaaa")})


def test_a_missing_token_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GitOpsError, match="PORTAL_DOMAINS_GITOPS_TOKEN_FILE=.* is not a readable"):
        GitOpsRepo(
            GitSettings(
                remote_url="http://127.0.0.1:9/x.git",
                worktree=tmp_path / "work",
                token_file=tmp_path / "absent",
            )
        )


def test_an_ssh_remote_uses_the_configured_key_without_prompting(tmp_path: Path) -> None:
    # No SSH server on this machine: the real ssh client runs and fails to connect,
    # and its message shows it was handed our key (which does not exist here).
    key = tmp_path / "deploy-key-that-is-not-there"
    repo = GitOpsRepo(
        GitSettings(
            remote_url="ssh://git@127.0.0.1:1/nm-kube-config.git",
            worktree=tmp_path / "work",
            ssh_key=key,
            ssh_known_hosts=tmp_path / "known_hosts",
            command_timeout_seconds=30,
        )
    )
    with pytest.raises(GitOpsError) as failed:
        repo.publish("tenants/staging", {"aaaaaaa": _file("aaaaaaa")})
    assert str(key) in str(failed.value)
