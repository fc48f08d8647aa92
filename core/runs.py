"""Reconcile runs as nm-kube-config's history tells them: the publisher's commit messages.

`adapters.gitops` commits each publish as `chore(portal-domains): sync <head>`:

- one file changed, nothing adopted:  `sync <slug>` (no body)
- nothing of ours changed:            `sync <directory>` (no body)
- otherwise:                          `sync a, b, c` or `sync <n> files`, then a body
                                      with one `- <slug> (<added|updated|removed|adopted>)`
                                      line per file, then, after a blank line, one line per
                                      file it adopted or removed that it did not write
                                      (core.adoption.AdoptionStep.line: `adopted <path>
                                      (<reason>)`, `removed <path> (<reason>)`)

`parse_sync_message` turns such a message back into the changed slugs and those
adoption lines; any other message (a human's commit, a merge) is None. Pure: the
console reads the log (api.web.runs) and calls this.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field

SYNC_PREFIX = "chore(portal-domains): sync "
# The verbs of the adoption steps that change Git (core.adoption._DONE).
ADOPTION_VERBS = ("adopted ", "removed ")

_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SLUG_LINE = re.compile(r"- (?P<slug>[A-Za-z0-9][A-Za-z0-9._-]*) \((?P<change>[a-z]+)\)")
_FILES_HEAD = re.compile(r"\d+ files")


@dataclass(frozen=True, kw_only=True)
class SyncMessage:
    """What one publisher commit says it changed.

    `slugs`: the tenants' files (sorted); `other_files`: stems named in the message
    that are not tenants (e.g. the environment's cluster-issuer); `changes`: slug ->
    added/updated/removed/adopted where the body says it; `adoption`: the lines
    about files portal-domains did not write.
    """

    slugs: tuple[str, ...]
    other_files: tuple[str, ...] = ()
    changes: dict[str, str] = field(default_factory=dict)
    adoption: tuple[str, ...] = ()


def _head_slugs(head: str, directory: str | None) -> list[str]:
    """The slugs the subject line names (used when there is no body)."""
    if head == directory or "/" in head or _FILES_HEAD.fullmatch(head):
        return []  # the directory itself: no file of ours changed
    names = [name.strip() for name in head.split(",")]
    if all(_SLUG.fullmatch(name) for name in names):
        return names
    return []


def parse_sync_message(
    message: str, *, directory: str | None = None, not_tenants: Collection[str] = ()
) -> SyncMessage | None:
    """The slugs and adoption lines of a publisher commit; None for any other commit.

    `directory` is the environment's manifest folder (a subject naming it means no
    file of ours changed); stems in `not_tenants` go to `other_files`.
    """
    lines = message.strip().splitlines()
    if not lines or not lines[0].startswith(SYNC_PREFIX):
        return None
    head = lines[0].removeprefix(SYNC_PREFIX).strip()
    changes: dict[str, str] = {}
    adoption: list[str] = []
    for raw in lines[1:]:
        line = raw.strip()
        listed = _SLUG_LINE.fullmatch(line)
        if listed is not None:
            changes[listed.group("slug")] = listed.group("change")
        elif line.startswith(ADOPTION_VERBS):
            adoption.append(line)
    named = sorted(changes) if changes else _head_slugs(head, directory)
    return SyncMessage(
        slugs=tuple(s for s in named if s not in not_tenants),
        other_files=tuple(s for s in named if s in not_tenants),
        changes=changes,
        adoption=tuple(adoption),
    )
