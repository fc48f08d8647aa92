"""Publisher commit messages back into the changed slugs and adoption lines."""

from __future__ import annotations

import pytest

from adapters.gitops import _commit_message
from core.adoption import Action, AdoptionPlan, AdoptionStep
from core.runs import SyncMessage, parse_sync_message

DIRECTORY = "argo-workflow/alga-psa-dev/portal-domains"
ISSUER = "cluster-issuer"


def parse(message: str) -> SyncMessage | None:
    return parse_sync_message(message, directory=DIRECTORY, not_tenants=(ISSUER,))


def test_one_file_is_the_subject() -> None:
    assert parse("chore(portal-domains): sync a1b2c3d") == SyncMessage(slugs=("a1b2c3d",))


def test_the_directory_as_subject_means_no_file_of_ours_changed() -> None:
    assert parse(f"chore(portal-domains): sync {DIRECTORY}") == SyncMessage(slugs=())
    # A directory of one component is known by the argument, not by its slash.
    assert parse_sync_message("chore(portal-domains): sync tenants", directory="tenants") == (
        SyncMessage(slugs=())
    )


def test_the_body_lists_every_file_with_its_change_and_the_issuer_is_not_a_tenant() -> None:
    message = (
        "chore(portal-domains): sync 4 files\n\n"
        "- a1b2c3d (added)\n- cluster-issuer (updated)\n- e4f5a6b (removed)\n- f0f0f0f (updated)\n"
    )
    parsed = parse(message)
    assert parsed is not None
    assert parsed.slugs == ("a1b2c3d", "e4f5a6b", "f0f0f0f")
    assert parsed.other_files == (ISSUER,)
    assert parsed.changes["e4f5a6b"] == "removed"
    assert parsed.adoption == ()


def test_a_short_list_subject_without_body_still_names_the_slugs() -> None:
    parsed = parse("chore(portal-domains): sync a1b2c3d, e4f5a6b")
    assert parsed is not None
    assert parsed.slugs == ("a1b2c3d", "e4f5a6b")


@pytest.mark.parametrize(
    "message",
    [
        "Merge pull request #12 from org/portal-domains-staging",
        "chore: initialise nm-kube-config (embedded default)",
        "fix(portal-domains): sync a1b2c3d",
        "",
    ],
)
def test_other_commits_are_not_runs(message: str) -> None:
    assert parse(message) is None


def test_what_the_publisher_writes_parses_back_with_its_adoption_lines() -> None:
    adopted = AdoptionStep(
        action=Action.ADOPT,
        path=f"{DIRECTORY}/a1b2c3d.yaml",
        reason="a file of ours has its name",
    )
    removed = AdoptionStep(
        action=Action.REMOVE,
        path=f"{DIRECTORY}/old-acme.yaml",
        reason="serves only hosts our files serve: portal.acme.com",
    )
    left = AdoptionStep(action=Action.LEAVE, path=f"{DIRECTORY}/other.yaml", reason="foreign")
    plan = AdoptionPlan(steps=(adopted, removed, left))
    message = _commit_message({"a1b2c3d": "adopted", ISSUER: "added"}, DIRECTORY, plan)
    parsed = parse(message)
    assert parsed is not None
    assert parsed.slugs == ("a1b2c3d",)
    assert parsed.other_files == (ISSUER,)
    assert parsed.changes == {"a1b2c3d": "adopted", ISSUER: "added"}
    # Only what the commit did to Git (a file left alone is not in the message).
    assert parsed.adoption == (adopted.line(), removed.line())

    single = parse(_commit_message({"e4f5a6b": "updated"}, DIRECTORY))
    assert single == SyncMessage(slugs=("e4f5a6b",))
    nothing = parse(_commit_message({}, DIRECTORY))
    assert nothing == SyncMessage(slugs=())
    many = parse(_commit_message({f"s{i}": "added" for i in range(5)}, DIRECTORY))
    assert many is not None
    assert many.slugs == ("s0", "s1", "s2", "s3", "s4")
