"""Publishing tenant YAML to a real bare Git remote in a temporary directory."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import git
import pytest

from adapters.gitops import (
    GitOpsError,
    GitOpsRepo,
    GitPushError,
    GitSettings,
    desired_files,
    ensure_bare_remote,
    redact,
)
from core.adoption import Action
from stack.export import HEADER

DIRECTORY = "argo-workflow/alga-psa-dev/portal-domains"
IDENTITY = {
    "GIT_AUTHOR_NAME": "someone else",
    "GIT_AUTHOR_EMAIL": "someone@example.com",
    "GIT_COMMITTER_NAME": "someone else",
    "GIT_COMMITTER_EMAIL": "someone@example.com",
}


def tenant_file(slug: str, host: str | None = None) -> str:
    host = host or f"portal.{slug}.example"
    return (
        HEADER.format(env="staging") + f"kind: Certificate\nmetadata:\n  name: {slug}\n# {host}\n"
    )


@pytest.fixture
def remote(tmp_path: Path) -> str:
    return ensure_bare_remote(tmp_path / "nm-kube-config.git")


@pytest.fixture
def settings(remote: str, tmp_path: Path) -> GitSettings:
    return GitSettings(
        remote_url=remote, worktree=tmp_path / "work" / "nm-kube-config", command_timeout_seconds=30
    )


@pytest.fixture
def publisher(settings: GitSettings) -> GitOpsRepo:
    return GitOpsRepo(settings)


def remote_history(remote: str) -> list[git.Commit]:
    return list(git.Repo(remote).iter_commits("main"))


def remote_files(remote: str) -> dict[str, str]:
    tree = git.Repo(remote).commit("main").tree
    try:
        folder = tree / DIRECTORY
    except KeyError:
        return {}
    return {blob.name: blob.data_stream.read().decode() for blob in folder.blobs}


def other_clone(remote: str, path: Path) -> git.Repo:
    repo = git.Repo.clone_from(remote, path)
    repo.git.update_environment(**IDENTITY)
    return repo


def commit_in(repo: git.Repo, relative: str, content: str, message: str) -> None:
    assert repo.working_tree_dir is not None
    path = Path(repo.working_tree_dir) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    repo.git.add("--", relative)
    repo.git.commit("-m", message)


def install_hook(git_dir: Path, name: str, script: str) -> None:
    hook = git_dir / "hooks" / name
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/sh\nunset GIT_DIR GIT_INDEX_FILE GIT_WORK_TREE GIT_PREFIX\n" + script)
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)


def push_once_after_our_commit(worktree: Path, other: git.Repo, marker: Path) -> None:
    """The other clone pushes between our commit and our push (a post-commit hook)."""
    install_hook(
        worktree / ".git",
        "post-commit",
        f'[ -e "{marker}" ] && exit 0\ntouch "{marker}"\n'
        f'git -C "{other.working_tree_dir}" push -q origin HEAD:main\n',
    )


# -- ensure_bare_remote ------------------------------------------------------------


def test_the_embedded_remote_is_created_once_with_one_commit(tmp_path: Path) -> None:
    path = tmp_path / "nm-kube-config.git"

    first = ensure_bare_remote(path)
    second = ensure_bare_remote(path)

    assert first == second == str(path.resolve())
    assert git.Repo(first).bare
    assert len(remote_history(first)) == 1


def test_a_non_repository_is_not_taken_for_the_remote(tmp_path: Path) -> None:
    path = tmp_path / "occupied"
    path.mkdir()
    (path / "file").write_text("x")

    with pytest.raises(GitOpsError, match="is not a Git repository"):
        ensure_bare_remote(path)


# -- publish -----------------------------------------------------------------------


def test_the_first_publish_writes_every_tenant_in_one_commit(
    publisher: GitOpsRepo, remote: str
) -> None:
    result = publisher.publish(
        DIRECTORY, {"acme": tenant_file("acme"), "beta": tenant_file("beta")}
    )

    history = remote_history(remote)
    assert result.pushed
    assert result.changed_slugs == ("acme", "beta")
    assert result.attempts == 1
    assert result.commit == history[0].hexsha
    assert len(history) == 2
    assert history[0].message == (
        "chore(portal-domains): sync acme, beta\n\n- acme (added)\n- beta (added)\n"
    )
    assert (history[0].author.name, history[0].author.email) == (
        "portal-domains",
        "portal-domains@algapsa.com",
    )
    assert history[0].committer.email == "portal-domains@algapsa.com"
    assert remote_files(remote) == {
        "acme.yaml": tenant_file("acme"),
        "beta.yaml": tenant_file("beta"),
    }


def test_publishing_the_same_files_again_makes_no_commit(
    publisher: GitOpsRepo, remote: str
) -> None:
    files = {"acme": tenant_file("acme")}
    publisher.publish(DIRECTORY, files)

    again = publisher.publish(DIRECTORY, files)

    assert again.commit is None
    assert not again.pushed
    assert again.changed_slugs == ()
    assert len(remote_history(remote)) == 2


def test_a_change_to_one_tenant_is_committed_under_its_slug(
    publisher: GitOpsRepo, remote: str
) -> None:
    publisher.publish(DIRECTORY, {"acme": tenant_file("acme"), "beta": tenant_file("beta")})

    result = publisher.publish(
        DIRECTORY, {"acme": tenant_file("acme", "portal.acme.net"), "beta": tenant_file("beta")}
    )

    assert result.changed_slugs == ("acme",)
    assert remote_history(remote)[0].message.strip() == "chore(portal-domains): sync acme"
    assert "portal.acme.net" in remote_files(remote)["acme.yaml"]


def test_a_removed_tenant_loses_its_file_while_a_foreign_file_stays(
    publisher: GitOpsRepo, remote: str, tmp_path: Path
) -> None:
    publisher.publish(DIRECTORY, {"acme": tenant_file("acme"), "beta": tenant_file("beta")})
    other = other_clone(remote, tmp_path / "other")
    commit_in(other, f"{DIRECTORY}/kustomization.yaml", "resources: []\n", "add kustomization")
    other.git.push("origin", "HEAD:main")

    result = publisher.publish(DIRECTORY, {"acme": tenant_file("acme")})

    assert result.changed_slugs == ("beta",)
    assert remote_history(remote)[0].message.strip() == "chore(portal-domains): sync beta"
    assert sorted(remote_files(remote)) == ["acme.yaml", "kustomization.yaml"]


# -- files we did not write (adoption) --------------------------------------------


def serving_file(slug: str, host: str) -> str:
    """One of our tenant files whose VirtualService serves `host`."""
    return HEADER.format(env="staging") + foreign_file(slug, host)


def foreign_file(name: str, host: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        f"metadata:\n  name: {name}\n  namespace: msp\nspec:\n  hosts:\n  - {host}\n"
    )


def push_foreign(remote: str, tmp_path: Path, files: dict[str, str]) -> None:
    other = other_clone(remote, tmp_path / "other")
    for name, content in files.items():
        commit_in(other, f"{DIRECTORY}/{name}", content, f"add {name} by hand")
    other.git.push("origin", "HEAD:main")


def test_a_headerless_file_with_a_tenant_files_name_is_adopted_not_a_failure(
    publisher: GitOpsRepo, remote: str, tmp_path: Path
) -> None:
    push_foreign(remote, tmp_path, {"acme.yaml": foreign_file("acme", "portal.acme.example")})
    files = {
        "acme": serving_file("acme", "portal.acme.example"),
        "beta": serving_file("beta", "portal.beta.example"),
    }

    result = publisher.publish(DIRECTORY, files)

    assert result.pushed
    assert result.changed_slugs == ("acme", "beta")
    assert remote_files(remote) == {"acme.yaml": files["acme"], "beta.yaml": files["beta"]}
    assert [(s.action, s.path) for s in result.adoption] == [
        (Action.ADOPT, f"{DIRECTORY}/acme.yaml")
    ]
    assert remote_history(remote)[0].message == (
        "chore(portal-domains): sync acme, beta\n\n- acme (adopted)\n- beta (added)\n\n"
        f"adopted {DIRECTORY}/acme.yaml (was not written by portal-domains)\n"
    )
    again = publisher.publish(DIRECTORY, files)
    assert again.commit is None
    assert again.adoption == ()


def test_a_foreign_file_serving_a_tenants_host_under_another_name_goes_in_the_same_commit(
    publisher: GitOpsRepo, remote: str, tmp_path: Path
) -> None:
    publisher.publish(DIRECTORY, {"acme": serving_file("acme", "portal.acme.example")})
    push_foreign(
        remote, tmp_path, {"legacy-acme.yml": foreign_file("legacy", "Portal.Acme.Example")}
    )
    before = len(remote_history(remote))

    result = publisher.publish(DIRECTORY, {"acme": serving_file("acme", "portal.acme.example")})

    assert result.pushed
    assert len(remote_history(remote)) == before + 1
    assert sorted(remote_files(remote)) == ["acme.yaml"]
    [step] = result.adoption
    assert (step.action, step.taken_over_by) == (Action.REMOVE, ("acme.yaml",))
    assert remote_history(remote)[0].message == (
        "chore(portal-domains): sync legacy-acme\n\n- legacy-acme (removed)\n\n"
        f"removed {DIRECTORY}/legacy-acme.yml (was not written by portal-domains; "
        "acme.yaml serves portal.acme.example)\n"
    )


def test_a_foreign_file_unrelated_to_our_tenants_is_left_alone_and_reported(
    publisher: GitOpsRepo, remote: str, tmp_path: Path
) -> None:
    push_foreign(remote, tmp_path, {"wiki.yaml": foreign_file("wiki", "wiki.acme.example")})

    result = publisher.publish(DIRECTORY, {"acme": serving_file("acme", "portal.acme.example")})

    assert result.pushed
    assert remote_history(remote)[0].message.strip() == "chore(portal-domains): sync acme"
    assert sorted(remote_files(remote)) == ["acme.yaml", "wiki.yaml"]
    assert [s.line() for s in result.adoption] == [
        f"foreign, left alone: {DIRECTORY}/wiki.yaml (serves none of our hosts)"
    ]


def test_a_file_that_is_not_yaml_is_reported_and_does_not_block_the_other_tenants(
    publisher: GitOpsRepo, remote: str, tmp_path: Path
) -> None:
    broken = "hosts: [portal.acme.example\n"
    push_foreign(remote, tmp_path, {"notes.yaml": broken, "beta.yaml": broken})

    result = publisher.publish(
        DIRECTORY,
        {
            "acme": serving_file("acme", "portal.acme.example"),
            "beta": serving_file("beta", "portal.beta.example"),
        },
    )

    assert result.pushed
    assert remote_files(remote)["notes.yaml"] == broken
    assert remote_files(remote)["beta.yaml"].startswith("# Generated by portal-domains")
    by_path = {s.path: s for s in result.adoption}
    assert by_path[f"{DIRECTORY}/beta.yaml"].action is Action.ADOPT
    unreadable = by_path[f"{DIRECTORY}/notes.yaml"]
    assert unreadable.action is Action.UNREADABLE
    assert unreadable.line().startswith(f"not valid YAML, left alone: {DIRECTORY}/notes.yaml (")


def test_a_foreign_file_pushed_while_we_publish_is_adopted_by_the_recomputed_commit(
    publisher: GitOpsRepo, settings: GitSettings, remote: str, tmp_path: Path
) -> None:
    publisher.publish(DIRECTORY, {"acme": serving_file("acme", "portal.acme.example")})
    other = other_clone(remote, tmp_path / "other")
    commit_in(
        other, f"{DIRECTORY}/beta.yaml", foreign_file("beta", "portal.beta.example"), "by hand"
    )
    push_once_after_our_commit(settings.worktree, other, tmp_path / "fired")
    files = {
        "acme": serving_file("acme", "portal.acme.example"),
        "beta": serving_file("beta", "portal.beta.example"),
    }

    result = publisher.publish(DIRECTORY, files)

    assert result.pushed
    assert result.attempts == 2
    assert remote_files(remote) == {"acme.yaml": files["acme"], "beta.yaml": files["beta"]}
    assert [(s.action, s.path) for s in result.adoption] == [
        (Action.ADOPT, f"{DIRECTORY}/beta.yaml")
    ]
    assert remote_history(remote)[0].summary == "chore(portal-domains): sync beta"


def test_the_adoption_plan_shows_the_next_publish_without_committing(
    publisher: GitOpsRepo, remote: str, tmp_path: Path
) -> None:
    push_foreign(
        remote,
        tmp_path,
        {
            "acme.yaml": foreign_file("acme", "portal.acme.example"),
            "old-beta.yaml": foreign_file("old", "portal.beta.example"),
            "kustomization.yaml": "resources: []\n",
        },
    )
    history = remote_history(remote)
    files = {
        "acme": serving_file("acme", "portal.acme.example"),
        "beta": serving_file("beta", "portal.beta.example"),
    }

    plan = publisher.adoption_plan(DIRECTORY, desired_files(files))

    assert [s.line(planned=True) for s in plan.steps] == [
        f"would adopt {DIRECTORY}/acme.yaml (was not written by portal-domains)",
        f"foreign, would leave alone: {DIRECTORY}/kustomization.yaml (serves none of our hosts)",
        f"would remove {DIRECTORY}/old-beta.yaml (was not written by portal-domains; "
        "beta.yaml serves portal.beta.example)",
    ]
    assert remote_history(remote) == history
    published = publisher.publish(DIRECTORY, files)
    assert published.adoption == plan.steps


def test_a_push_rejected_by_a_concurrent_commit_is_rebased_and_retried(
    publisher: GitOpsRepo, settings: GitSettings, remote: str, tmp_path: Path
) -> None:
    publisher.publish(DIRECTORY, {"acme": tenant_file("acme")})
    other = other_clone(remote, tmp_path / "other")
    commit_in(other, "argo-workflow/other-app/values.yaml", "replicas: 2\n", "scale other app")
    push_once_after_our_commit(settings.worktree, other, tmp_path / "fired")

    result = publisher.publish(
        DIRECTORY, {"acme": tenant_file("acme"), "beta": tenant_file("beta")}
    )

    history = remote_history(remote)
    assert result.pushed
    assert result.attempts == 2
    assert result.changed_slugs == ("beta",)
    assert result.commit == history[0].hexsha
    assert [c.summary for c in history[:2]] == [
        "chore(portal-domains): sync beta",
        "scale other app",
    ]
    assert history[0].parents == (history[1],)


def test_a_concurrent_edit_of_the_same_file_is_overwritten_by_a_recomputed_commit(
    publisher: GitOpsRepo, settings: GitSettings, remote: str, tmp_path: Path
) -> None:
    publisher.publish(DIRECTORY, {"acme": tenant_file("acme")})
    other = other_clone(remote, tmp_path / "other")
    commit_in(other, f"{DIRECTORY}/acme.yaml", tenant_file("acme", "hand.edit"), "hand edit")
    push_once_after_our_commit(settings.worktree, other, tmp_path / "fired")

    result = publisher.publish(DIRECTORY, {"acme": tenant_file("acme", "portal.acme.net")})

    assert result.pushed
    assert result.attempts == 2
    assert [c.summary for c in remote_history(remote)[:2]] == [
        "chore(portal-domains): sync acme",
        "hand edit",
    ]
    assert remote_files(remote)["acme.yaml"] == tenant_file("acme", "portal.acme.net")


def test_a_push_still_rejected_after_the_last_attempt_raises_and_leaves_a_clean_worktree(
    remote: str, tmp_path: Path
) -> None:
    settings = GitSettings(
        remote_url=remote, worktree=tmp_path / "work" / "kube", max_push_attempts=1
    )
    publisher = GitOpsRepo(settings)
    publisher.publish(DIRECTORY, {"acme": tenant_file("acme")})
    other = other_clone(remote, tmp_path / "other")
    commit_in(other, "argo-workflow/other-app/values.yaml", "replicas: 2\n", "scale other app")
    push_once_after_our_commit(settings.worktree, other, tmp_path / "fired")

    with pytest.raises(GitPushError, match="after 1 attempt: .*rejected"):
        publisher.publish(DIRECTORY, {"acme": tenant_file("acme"), "beta": tenant_file("beta")})

    worktree = git.Repo(settings.worktree)
    assert worktree.head.commit == git.Repo(remote).commit("main")
    assert not worktree.is_dirty(untracked_files=True)
    assert [c.summary for c in remote_history(remote)][:1] == ["scale other app"]


def test_a_remote_that_refuses_the_push_raises_a_push_error_without_retrying(
    publisher: GitOpsRepo, remote: str
) -> None:
    install_hook(Path(remote), "pre-receive", "echo 'branch is protected' >&2\nexit 1\n")

    with pytest.raises(GitPushError, match="after 1 attempt: .*branch is protected"):
        publisher.publish(DIRECTORY, {"acme": tenant_file("acme")})

    assert len(remote_history(remote)) == 1


def test_leftovers_of_a_killed_run_are_discarded_before_publishing(
    publisher: GitOpsRepo, settings: GitSettings, remote: str
) -> None:
    files = {"acme": tenant_file("acme")}
    publisher.publish(DIRECTORY, files)
    worktree = git.Repo(settings.worktree)
    folder = settings.worktree / DIRECTORY
    (folder / "acme.yaml").write_text("garbage: half-written\n")
    (folder / "zombie.yaml").write_text(tenant_file("zombie"))
    (folder / "acme.yaml.tmp").write_text("partial")
    (settings.worktree / "junk.txt").write_text("junk")
    worktree.git.add("--all")
    worktree.git.commit("-m", "never pushed", env=IDENTITY)
    (settings.worktree / "stray.txt").write_text("stray")
    (settings.worktree / ".git" / "index.lock").write_text("")

    result = publisher.publish(DIRECTORY, files)

    assert result.commit is None
    assert len(remote_history(remote)) == 2
    assert sorted(p.name for p in folder.iterdir()) == ["acme.yaml"]
    assert not (settings.worktree / "junk.txt").exists()
    assert not (settings.worktree / "stray.txt").exists()
    assert not worktree.is_dirty(untracked_files=True)


def test_a_checkout_that_portal_domains_did_not_create_is_never_reset(
    remote: str, tmp_path: Path
) -> None:
    foreign = other_clone(remote, tmp_path / "someone-elses-checkout")
    assert foreign.working_tree_dir is not None
    (Path(foreign.working_tree_dir) / "work-in-progress.txt").write_text("precious")
    publisher = GitOpsRepo(GitSettings(remote_url=remote, worktree=Path(foreign.working_tree_dir)))

    with pytest.raises(GitOpsError, match="did not create"):
        publisher.publish(DIRECTORY, {"acme": tenant_file("acme")})

    assert (Path(foreign.working_tree_dir) / "work-in-progress.txt").read_text() == "precious"


@pytest.mark.parametrize(
    ("directory", "slug"),
    [("../outside", "acme"), ("/abs/path", "acme"), (".git/hooks", "acme"), (DIRECTORY, "a/b")],
)
def test_paths_outside_the_directory_are_refused(
    publisher: GitOpsRepo, directory: str, slug: str
) -> None:
    with pytest.raises(ValueError, match="directory|file names"):
        publisher.publish(directory, {slug: tenant_file("acme")})


# -- review mode -------------------------------------------------------------------

REVIEW = "portal-domains/staging"


def branch_files(remote: str, branch: str) -> dict[str, str]:
    tree = git.Repo(remote).commit(branch).tree
    return {blob.name: blob.data_stream.read().decode() for blob in (tree / DIRECTORY).blobs}


def test_review_mode_pushes_main_plus_one_commit_to_the_review_branch(
    remote: str, settings: GitSettings
) -> None:
    reviewed = GitOpsRepo(dataclasses.replace(settings, review_branch=REVIEW))
    main_before = remote_history(remote)
    result = reviewed.publish(DIRECTORY, {"1111111": tenant_file("1111111")})
    assert result.pushed
    assert remote_history(remote) == main_before  # main is untouched
    head = git.Repo(remote).commit(REVIEW)
    assert head.parents == (main_before[0],)
    assert str(head.message).startswith("chore(portal-domains): sync 1111111")
    assert list(branch_files(remote, REVIEW)) == ["1111111.yaml"]

    # The next run replaces the branch: still main plus one commit, with both tenants.
    reviewed.publish(
        DIRECTORY, {"1111111": tenant_file("1111111"), "2222222": tenant_file("2222222")}
    )
    head = git.Repo(remote).commit(REVIEW)
    assert head.parents == (main_before[0],)
    assert sorted(branch_files(remote, REVIEW)) == ["1111111.yaml", "2222222.yaml"]


def test_once_the_review_is_merged_the_review_branch_is_deleted(
    remote: str, settings: GitSettings, tmp_path: Path
) -> None:
    files = {"1111111": tenant_file("1111111")}
    reviewed = GitOpsRepo(dataclasses.replace(settings, review_branch=REVIEW))
    reviewed.publish(DIRECTORY, files)
    # A reviewer merges the pull request.
    other = other_clone(remote, tmp_path / "reviewer")
    other.git.fetch("origin", REVIEW)
    other.git.merge("--ff-only", f"origin/{REVIEW}")
    other.git.push("origin", "HEAD:main")

    assert reviewed.publish(DIRECTORY, files).commit is None
    assert REVIEW not in [h.name for h in git.Repo(remote).heads]


# -- credentials never leave ------------------------------------------------------


def test_a_failed_publish_never_shows_the_token_in_the_remote_url(tmp_path: Path) -> None:
    secret = "ghp_S3cr3tT0k3nValue"
    publisher = GitOpsRepo(
        GitSettings(
            remote_url=f"https://x-access-token:{secret}@127.0.0.1:1/nm-kube-config.git",
            worktree=tmp_path / "work" / "nm-kube-config",
            command_timeout_seconds=30,
        )
    )
    with pytest.raises(GitOpsError) as failed:
        publisher.publish(DIRECTORY, {"1111111": tenant_file("1111111")})
    assert secret not in str(failed.value)
    assert "https://***@127.0.0.1:1/nm-kube-config.git" in str(failed.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://user:tok@host/r.git", "https://***@host/r.git"),
        (
            "fatal: unable to access 'https://tok@host/r.git/'",
            "fatal: unable to access 'https://***@host/r.git/'",
        ),
        ("ssh://git@host:22/r.git", "ssh://***@host:22/r.git"),
        ("/srv/git/nm-kube-config.git", "/srv/git/nm-kube-config.git"),
        ("git@host:org/r.git", "git@host:org/r.git"),
    ],
)
def test_redact_removes_url_credentials_only(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_a_commit_of_thousands_of_files_names_a_few_and_counts_the_rest() -> None:
    from adapters.gitops import MESSAGE_FILES, _commit_message

    changes = {f"{i:07x}": "added" for i in range(8000)}
    message = _commit_message(changes, DIRECTORY)
    assert message.splitlines()[0] == "chore(portal-domains): sync 8000 files"
    assert f"- ... and {8000 - MESSAGE_FILES} more" in message
    assert len(message.splitlines()) < MESSAGE_FILES + 5
    # Far under Linux's 128 KiB per argument (the uncapped message was over it).
    assert len(message.encode()) < 16 * 1024
