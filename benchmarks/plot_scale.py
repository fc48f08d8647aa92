"""Plot benchmarks/shard-scale.json (benchmarks.shard_scale) as time vs tenants.

Run: .venv/bin/python -m benchmarks.plot_scale [--json benchmarks/shard-scale.json]
         [--out docs/scale.png]
Needs matplotlib, which is not a project dependency: `.venv/bin/pip install matplotlib`.
Measured points are solid, extrapolated ones hollow and dashed; the targets are
the short grey bars.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def series(result: dict[str, Any]) -> dict[str, list[tuple[int, float, bool]]]:
    """name -> [(tenants, seconds, measured)]."""
    ours = [*result.get("sharded", []), *([result["synthetic"]] if result.get("synthetic") else [])]
    out: dict[str, list[tuple[int, float, bool]]] = {
        "portal-domains: one tenant's change (median)": [],
        "portal-domains: nothing changed": [],
        "floor (one stack, up only, no pack): one change (median)": [],
    }
    for row in ours:
        if row.get("one_change_median") is not None:
            out["portal-domains: one tenant's change (median)"].append(
                (row["tenants"], row["one_change_median"], True)
            )
        if row.get("unchanged"):
            out["portal-domains: nothing changed"].append(
                (row["tenants"], row["unchanged"]["seconds"], True)
            )
    for row in result.get("floor", []):
        value = row.get("one_change_median")
        if value is None and isinstance(row.get("partial"), dict):
            value = row["partial"].get("one_change_median")
        if value is not None:
            measured = row.get("status") == "measured" or "partial" in row
            out["floor (one stack, up only, no pack): one change (median)"].append(
                (row["tenants"], value, measured)
            )
    return {k: sorted(v) for k, v in out.items()}


def plot(result: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    colors = ["tab:blue", "tab:green", "tab:red"]
    for (name, points), color in zip(series(result).items(), colors, strict=True):
        if not points:
            continue
        measured = [p for p in points if p[2]]
        guessed = [p for p in points if not p[2]]
        ax.plot([p[0] for p in measured], [p[1] for p in measured], color=color, alpha=0.6)
        ax.scatter([p[0] for p in measured], [p[1] for p in measured], color=color, label=name)
        if guessed:
            ax.scatter(
                [p[0] for p in guessed],
                [p[1] for p in guessed],
                facecolors="none",
                edgecolors=color,
                label=f"{name}, extrapolated",
            )
            dashed = measured[-1:] + guessed
            ax.plot([p[0] for p in dashed], [p[1] for p in dashed], color=color, linestyle="--")
        below = "nothing changed" in name
        for x, y, _ in points:
            ax.annotate(
                f"{y:g} s",
                (x, y),
                textcoords="offset points",
                xytext=(6, -11 if below else 4),
                fontsize=8,
                color=color,
            )
    for tenants, target, label in ((1000, 15, "one change"), (1000, 5, "nothing changed"),
                                   (10000, 20, "one change")):  # fmt: skip
        ax.hlines(target, tenants * 0.85, tenants * 1.18, color="grey", linewidth=3, alpha=0.6)
        ax.annotate(
            f"target {label} ≤ {target} s",
            (tenants * 1.2, target),
            fontsize=7,
            color="grey",
            va="center",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tenants (3 Kubernetes objects each)")
    ax.set_ylabel("seconds (wall clock)")
    ax.set_title("Reconcile time vs tenants: sharded (~100 tenants/shard) vs one bare stack")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.text(
        0.01,
        0.01,
        "2-core machine shared with other jobs (load 3-20); 10,000 tenants: 2 shards built, "
        "98 generated checkpoints (benchmarks/shard_scale.py, benchmarks/RESULTS.md)",
        fontsize=6,
        color="grey",
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main() -> int:
    parser = argparse.ArgumentParser(description="plot benchmarks.shard_scale's JSON")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/shard-scale.json"))
    parser.add_argument("--out", type=Path, default=Path("docs/scale.png"))
    args = parser.parse_args()
    plot(json.loads(args.json.read_text()), args.out)
    sys.stdout.write(f"wrote {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
