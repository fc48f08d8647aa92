"""Inline SVG geometry for the console's charts (drawn by templates/console.html).

No chart library and no script: the server computes every rectangle from the
series of core.fleet, and the template writes them as SVG elements with
presentation attributes (the CSP forbids inline style, not `fill=`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

from api.web.view import BADGES
from core.fleet import DayCounts, TimeToActive
from core.status import DomainStatus

COLOURS: dict[DomainStatus, str] = {
    DomainStatus.PENDING_DNS: "#9aa5b1",
    DomainStatus.VERIFYING_DNS: "#5b7fb0",
    DomainStatus.DNS_FAILED: "#c0392b",
    DomainStatus.PENDING_CERTIFICATE: "#c9a227",
    DomainStatus.CERTIFICATE_ISSUING: "#d9822b",
    DomainStatus.CERTIFICATE_FAILED: "#7b1e12",
    DomainStatus.DEPLOYING: "#2e86c1",
    DomainStatus.ACTIVE: "#1e7a44",
    DomainStatus.DISABLED: "#555555",
}
_LABEL_CHARS = 30
_ROW = 24
BAR_X = 220  # where the duration bars start (labels to the left)
_BAR_MAX = 220
_COLUMN = 36
COLUMN_BAR = 26  # a day column's drawn width
_PLOT_HEIGHT = 160


def duration_text(seconds: float) -> str:
    """`45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`: short, for a label beside a bar."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes = whole // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@dataclass(frozen=True, kw_only=True)
class DurationBar:
    tenant_id: str
    domain: str
    label: str
    seconds: int
    text: str
    width: int
    y: int


@dataclass(frozen=True, kw_only=True)
class DurationChart:
    bars: list[DurationBar]
    height: int
    median_text: str | None
    count: int  # all results, not only the bars shown


def duration_chart(results: Sequence[TimeToActive], *, last: int = 15) -> DurationChart:
    """One bar per domain, the `last` to become active, newest at the bottom."""
    shown = list(results)[-last:]
    longest = max((r.seconds for r in shown), default=0.0) or 1.0
    bars = []
    for index, r in enumerate(shown):
        label = r.domain if len(r.domain) <= _LABEL_CHARS else r.domain[: _LABEL_CHARS - 1] + "…"
        bars.append(
            DurationBar(
                tenant_id=str(r.tenant_id),
                domain=r.domain,
                label=label,
                seconds=round(r.seconds),
                text=duration_text(r.seconds),
                # A zero-length bar would vanish: at least one pixel.
                width=max(1, round(_BAR_MAX * r.seconds / longest)),
                y=index * _ROW,
            )
        )
    return DurationChart(
        bars=bars,
        height=max(1, len(bars)) * _ROW,
        median_text=duration_text(median(r.seconds for r in results)) if results else None,
        count=len(results),
    )


@dataclass(frozen=True, kw_only=True)
class Segment:
    status: str
    label: str
    count: int
    colour: str
    y: int
    height: int


@dataclass(frozen=True, kw_only=True)
class Column:
    day: str  # ISO date
    label: str  # MM-DD, shown on every other column
    total: int
    x: int
    segments: list[Segment]


@dataclass(frozen=True, kw_only=True)
class DaysChart:
    columns: list[Column]
    width: int
    plot_height: int
    height: int
    most: int
    legend: list[tuple[str, str, str]]  # status, label, colour


def days_chart(series: Sequence[DayCounts]) -> DaysChart:
    """A stacked column per day, statuses bottom-up in the order of the status graph."""
    most = max((d.total for d in series), default=0)
    scale = _PLOT_HEIGHT / (most or 1)
    columns = []
    for index, day in enumerate(series):
        segments = []
        top = _PLOT_HEIGHT
        for status in DomainStatus:
            count = day.counts.get(status, 0)
            if not count:
                continue
            height = max(1, round(count * scale))
            top -= height
            segments.append(
                Segment(
                    status=status.value,
                    label=BADGES[status],
                    count=count,
                    colour=COLOURS[status],
                    y=top,
                    height=height,
                )
            )
        last = index == len(series) - 1
        columns.append(
            Column(
                day=day.day.isoformat(),
                label=day.day.strftime("%m-%d") if index % 2 == 0 or last else "",
                total=day.total,
                x=index * _COLUMN,
                segments=segments,
            )
        )
    return DaysChart(
        columns=columns,
        width=max(1, len(series)) * _COLUMN + 40,
        plot_height=_PLOT_HEIGHT,
        height=_PLOT_HEIGHT + 20,
        most=most,
        legend=[(s.value, BADGES[s], COLOURS[s]) for s in DomainStatus],
    )
