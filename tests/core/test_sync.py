"""core.sync: the recorded versions round-trip, and the routing check says what is missing."""

from __future__ import annotations

import pytest

from core.sync import Synced, format_synced, parse_synced, routing_not_accepted

APPLIED = {
    "Certificate": Synced(resource_version="812", generation=1),
    "Gateway": Synced(resource_version="813", generation=1),
    "VirtualService": Synced(resource_version="814", generation=2),
}


def test_recorded_versions_round_trip() -> None:
    text = format_synced(APPLIED)
    assert text == "Certificate=812/1,Gateway=813/1,VirtualService=814/2"
    assert parse_synced(text) == APPLIED


@pytest.mark.parametrize("text", [None, "", "garbage", "Gateway=1", "Gateway=1/x"])
def test_unreadable_records_count_as_nothing(text: str | None) -> None:
    assert parse_synced(text) == {}


def test_routing_is_accepted_when_the_cluster_holds_what_we_applied() -> None:
    live: dict[str, Synced | None] = dict(APPLIED)
    assert routing_not_accepted(APPLIED, live) is None


@pytest.mark.parametrize(
    ("live", "reason"),
    [
        ({"Gateway": APPLIED["Gateway"], "VirtualService": None}, "VirtualService is missing"),
        (
            {
                "Gateway": APPLIED["Gateway"],
                "VirtualService": Synced(resource_version="9", generation=1),
            },
            "generation 1, applied 2",
        ),
    ],
)
def test_missing_or_older_routing_is_named(live: dict[str, Synced | None], reason: str) -> None:
    message = routing_not_accepted(APPLIED, live)
    assert message is not None
    assert reason in message


def test_nothing_recorded_is_not_accepted() -> None:
    assert (
        routing_not_accepted({}, dict(APPLIED)) == "no Gateway has been applied for this domain yet"
    )
