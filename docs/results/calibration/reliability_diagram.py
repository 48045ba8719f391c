"""Draw the reliability diagram (before and after calibration, test blocks, one panel per
scenario) and print the ECE table from the JSON that `train_cli.py calibrate --report` wrote.

    python docs/results/calibration/reliability_diagram.py docs/results/calibration/calibration_check.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NAMES = {"region": "region hidden", "species": "one species hidden", "both": "species hidden in a region",
         "pooled": "pooled (maps with nothing hidden)"}


def upper_gap(rel: dict) -> tuple[float, int]:
    """The cell-weighted gap between probability and observed share over the bins above the first
    (p >= 1/15): where cells get flagged; most hidden cells sit in the first bin and make the ECE small."""
    gaps = [(abs(p - o), n) for p, o, n in zip(rel["mean_probability"][1:], rel["observed"][1:], rel["cells"][1:])
            if n and p == p]
    n = sum(c for _, c in gaps)
    return (sum(g * c for g, c in gaps) / n if n else float("nan")), int(n)


def table(check: dict) -> str:
    rows = ["| scenario | method (chosen on validation) | test cells | base rate | ECE before | ECE after | "
            "gap above p = 1/15, before → after (cells) | ECE after: temperature / Platt / isotonic | "
            "Dice before → after | flagged share before → after |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for sc, r in check["scenarios"].items():
        by = r["ece_after_by_method"]
        (gb, nb), (ga, na) = upper_gap(r["reliability_before"]), upper_gap(r["reliability_after"])
        rows.append(f"| {NAMES.get(sc, sc)} | {r['method']} | {r['cells']:,} | {r['base_rate']:.4f} | "
                    f"{r['ece_before']:.4f} | {r['ece_after']:.4f} | {gb:.3f} ({nb:,}) → {ga:.3f} ({na:,}) | "
                    f"{by['temperature']:.4f} / {by['platt']:.4f} / {by['isotonic']:.4f} | "
                    f"{r['scores_before']['dice']:.3f} → {r['scores_after']['dice']:.3f} | "
                    f"{r['scores_before']['flagged_share']:.4f} → {r['scores_after']['flagged_share']:.4f} |")
    return "\n".join(rows)


def draw(check: dict, out: Path) -> Path:
    scenarios = list(check["scenarios"])
    fig, axes = plt.subplots(1, len(scenarios), figsize=(3.2 * len(scenarios), 3.4), sharey=True)
    for ax, sc in zip(axes, scenarios):
        r = check["scenarios"][sc]
        for key, style, label in (("reliability_before", "o--", "before"), ("reliability_after", "s-", "after")):
            d = r[key]
            pts = [(p, o) for p, o, n in zip(d["mean_probability"], d["observed"], d["cells"]) if n and p == p]
            ax.plot([p for p, _ in pts], [o for _, o in pts], style, ms=3.5, label=f"{label} (ECE "
                    f"{r['ece_before' if label == 'before' else 'ece_after']:.3f})")
        ax.plot([0, 1], [0, 1], ":", color="grey", lw=1)
        ax.set_title(NAMES.get(sc, sc), fontsize=9)
        ax.set_xlabel("mean probability in bin")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_ylabel("share of cells with a record")
    fig.suptitle("Reliability on the test blocks' hidden cells (15 equal-width bins)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return out


if __name__ == "__main__":
    path = Path(sys.argv[1])
    check = json.loads(path.read_text())
    print(table(check))
    print(f"wrote {draw(check, path.with_name('reliability.png'))}")
