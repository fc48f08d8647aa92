"""What a publish does with nm-kube-config files that portal-domains did not write.

The environment's folder in nm-kube-config can hold YAML written before us (by
hand, or by the TypeScript implementation) for the very tenants we now manage.
Left alone, such a file either sits where our tenant's file must go, or serves
a host a second time beside our file (two Certificates and two Gateways for
one host). Neither may stop every reconcile. `plan_adoption` decides, from our
desired files and the folder's files, one step per file we did not write:

- adopt: it has the name of one of our files (`<canonical prefix>.yaml`); our
  commit replaces it at the same path;
- remove: under another name it serves only hosts our files serve; the same
  commit removes it, so no two files serve one host;
- conflict: it serves a host of ours *and* hosts we do not manage; removing it
  would take those down, so it stays and is reported for an operator to split;
- leave: it has nothing to do with our tenants (a kustomization, another
  team's objects): left alone;
- unreadable: not valid YAML, so what it serves is unknown: not parsed, not
  deleted, reported; it never blocks the other files.

Pure: the adapter reads the files, parses them and applies the plan.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

NOT_OURS = "was not written by portal-domains"


class Action(enum.StrEnum):
    ADOPT = "adopt"
    REMOVE = "remove"
    CONFLICT = "conflict"
    LEAVE = "leave"
    UNREADABLE = "unreadable"


# Verbs for reports of what was done and for dry runs of what would be.
_DONE = {
    Action.ADOPT: "adopted",
    Action.REMOVE: "removed",
    Action.CONFLICT: "conflict, left in place:",
    Action.LEAVE: "foreign, left alone:",
    Action.UNREADABLE: "not valid YAML, left alone:",
}
_PLANNED = {
    Action.ADOPT: "would adopt",
    Action.REMOVE: "would remove",
    Action.CONFLICT: "conflict, would leave in place:",
    Action.LEAVE: "foreign, would leave alone:",
    Action.UNREADABLE: "not valid YAML, would leave alone:",
}


@dataclass(frozen=True, kw_only=True)
class DesiredFile:
    """One of our files: `<slug>.yaml` and the hosts its objects serve."""

    name: str
    hosts: frozenset[str] = frozenset()


@dataclass(frozen=True, kw_only=True)
class FoundFile:
    """A YAML file in the environment's folder.

    `hosts` is None when the file is not valid YAML; `error` then says why.
    """

    name: str
    ours: bool
    hosts: frozenset[str] | None = frozenset()
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class AdoptionStep:
    action: Action
    path: str  # inside the repository
    reason: str
    shared_hosts: tuple[str, ...] = ()  # hosts our files serve too
    taken_over_by: tuple[str, ...] = ()  # our files that serve them (or replace it)

    @property
    def changes_git(self) -> bool:
        return self.action in (Action.ADOPT, Action.REMOVE)

    def line(self, *, planned: bool = False) -> str:
        verb = (_PLANNED if planned else _DONE)[self.action]
        return f"{verb} {self.path} ({self.reason})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": str(self.action),
            "path": self.path,
            "reason": self.reason,
            "shared_hosts": list(self.shared_hosts),
            "taken_over_by": list(self.taken_over_by),
        }


@dataclass(frozen=True, kw_only=True)
class AdoptionPlan:
    steps: tuple[AdoptionStep, ...] = ()

    def of(self, *actions: Action) -> tuple[AdoptionStep, ...]:
        return tuple(s for s in self.steps if s.action in actions)

    @property
    def replaced_paths(self) -> tuple[str, ...]:
        """Files the publish deletes before writing ours: adopted and removed ones."""
        return tuple(s.path for s in self.steps if s.changes_git)

    def counts(self) -> dict[str, int]:
        return {str(a): len(self.of(a)) for a in Action}


def _join(directory: str, name: str) -> str:
    return f"{directory.rstrip('/')}/{name}" if directory else name


def plan_adoption(
    desired: Iterable[DesiredFile], found: Iterable[FoundFile], *, directory: str
) -> AdoptionPlan:
    """One step per file in `found` that we did not write, ordered by name."""
    ours = {d.name: d for d in desired}
    served_by: dict[str, list[str]] = {}
    for wanted in sorted(ours.values(), key=lambda d: d.name):
        for host in wanted.hosts:
            served_by.setdefault(host, []).append(wanted.name)
    steps = []
    for item in sorted(found, key=lambda f: f.name):
        if item.ours:
            continue
        path = _join(directory, item.name)
        if item.name in ours:
            # The name alone decides: it is where our tenant's file must go.
            unreadable = f"; not valid YAML: {item.error}" if item.hosts is None else ""
            steps.append(
                AdoptionStep(
                    action=Action.ADOPT,
                    path=path,
                    reason=f"{NOT_OURS}{unreadable}",
                    shared_hosts=tuple(sorted((item.hosts or frozenset()) & ours[item.name].hosts)),
                    taken_over_by=(item.name,),
                )
            )
            continue
        if item.hosts is None:
            steps.append(
                AdoptionStep(action=Action.UNREADABLE, path=path, reason=item.error or "unreadable")
            )
            continue
        shared = tuple(sorted(h for h in item.hosts if h in served_by))
        owners = tuple(sorted({name for h in shared for name in served_by[h]}))
        if not shared:
            steps.append(
                AdoptionStep(action=Action.LEAVE, path=path, reason="serves none of our hosts")
            )
        elif len(shared) < len(item.hosts):
            others = sorted(item.hosts - set(shared))
            steps.append(
                AdoptionStep(
                    action=Action.CONFLICT,
                    path=path,
                    reason=(
                        f"{NOT_OURS}; serves {', '.join(shared)} like {', '.join(owners)}, and "
                        f"{', '.join(others)} that portal-domains does not manage: split it by hand"
                    ),
                    shared_hosts=shared,
                    taken_over_by=owners,
                )
            )
        else:
            steps.append(
                AdoptionStep(
                    action=Action.REMOVE,
                    path=path,
                    reason=f"{NOT_OURS}; {', '.join(owners)} serves {', '.join(shared)}",
                    shared_hosts=shared,
                    taken_over_by=owners,
                )
            )
    return AdoptionPlan(steps=tuple(steps))


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _maps(value: object) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _host(raw: str) -> str | None:
    """A concrete host name, lower case; None for wildcards (they are nobody's tenant)."""
    host = raw.strip().lower().rstrip(".")
    if not host or "*" in host:
        return None
    return host


def served_hosts(documents: Iterable[object]) -> frozenset[str]:
    """The host names the objects in one YAML file serve or hold certificates for.

    Certificate `dnsNames`/`commonName`, Gateway server `hosts` (without their
    `namespace/` part), VirtualService `hosts`, Ingress rule and TLS hosts and
    HTTPRoute `hostnames`. Wildcards are not counted: a catch-all is nobody's
    tenant file.
    """
    raw: list[str] = []
    for doc in documents:
        if not isinstance(doc, Mapping):
            continue
        spec = doc.get("spec")
        if not isinstance(spec, Mapping):
            continue
        kind = doc.get("kind")
        if kind == "Certificate":
            raw += _strings(spec.get("dnsNames")) + _strings(spec.get("commonName"))
        elif kind == "Gateway":
            for server in _maps(spec.get("servers")):
                raw += [h.rpartition("/")[2] for h in _strings(server.get("hosts"))]
        elif kind == "VirtualService":
            raw += _strings(spec.get("hosts"))
        elif kind == "Ingress":
            raw += [h for rule in _maps(spec.get("rules")) for h in _strings(rule.get("host"))]
            raw += [h for tls in _maps(spec.get("tls")) for h in _strings(tls.get("hosts"))]
        elif kind == "HTTPRoute":
            raw += _strings(spec.get("hostnames"))
    return frozenset(h for h in map(_host, raw) if h is not None)
