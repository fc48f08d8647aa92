"""What the cluster held after our last apply, per tenant, and whether it still holds it.

After each cluster-mode apply the reconciler stores, per tenant, every object's
resourceVersion and generation (`last_synced_resource_version`, e.g.
`Certificate=812/1,Gateway=813/1,VirtualService=814/2`). Before the HTTPS probe
the workflow checks that the Gateway and VirtualService exist at (at least)
those generations: the intent of the seed's waitForIstioSync, i.e. that the
routing config we applied is what the cluster serves before we judge HTTPS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ROUTING_KINDS = ("Gateway", "VirtualService")


@dataclass(frozen=True, kw_only=True)
class Synced:
    resource_version: str
    generation: int


def format_synced(objects: Mapping[str, Synced]) -> str:
    return ",".join(
        f"{kind}={s.resource_version}/{s.generation}" for kind, s in sorted(objects.items())
    )


def parse_synced(text: str | None) -> dict[str, Synced]:
    """The stored form back; anything unreadable counts as nothing recorded."""
    found: dict[str, Synced] = {}
    for part in (text or "").split(","):
        kind, _, rest = part.partition("=")
        version, _, generation = rest.partition("/")
        if kind and version and generation.isdigit():
            found[kind] = Synced(resource_version=version, generation=int(generation))
    return found


def routing_not_accepted(
    recorded: Mapping[str, Synced], live: Mapping[str, Synced | None]
) -> str | None:
    """Why the cluster does not (yet) hold the routing we applied; None when it does."""
    for kind in ROUTING_KINDS:
        want = recorded.get(kind)
        have = live.get(kind)
        if want is None:
            return f"no {kind} has been applied for this domain yet"
        if have is None:
            return f"the {kind} is missing from the cluster"
        if have.generation < want.generation:
            return f"the {kind} is at generation {have.generation}, applied {want.generation}"
    return None
