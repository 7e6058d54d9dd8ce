"""Per-epoch curves of attribute training runs: val (the people and cameras it trains on) beside
the monitors that watch it (``train.monitor``: val images of new people, the held-out cameras'
val images), to see whether the epoch chosen on val is the one that carries over.

Reads each run's ``training.json``; writes the curves and, per run and monitor, the epoch
val chose, the monitor's best epoch and what choosing on val costs there (a look, not a rule:
nothing is chosen on a monitor)::

    .venv/bin/python scripts/training_curves.py runs/unseen-aug2-pb/grid-mit runs/unseen-aug2-pb/viper-prid-sarc3d \\
        --json docs/results/par_training_curves_person_balance.json      # + .png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def monitors_of(history: list[dict]) -> list[str]:
    """The monitors a history has on every epoch (``<name>_mA`` beside the val split's ``val_mA``)."""
    keys = set.intersection(*(set(h) for h in history)) if history else set()
    return sorted(k[:-3] for k in keys if k.endswith("_mA") and k != "val_mA")


def summarise(run: Path) -> dict:
    history = json.loads((run / "training.json").read_text())["history"]
    chosen = max(history, key=lambda h: h["val_mA"] + h["val_f1"])   # train.par's rule
    out = {"run": str(run), "epochs": len(history), "chosen_epoch": chosen["epoch"], "monitors": {}}
    for name in monitors_of(history):
        best = max(history, key=lambda h: h[f"{name}_mA"])
        out["monitors"][name] = {
            "at_chosen_epoch": {k: chosen[f"{name}_{k}"] for k in ("mA", "f1", "auc")},
            "best_epoch": best["epoch"], "best_mA": best[f"{name}_mA"],
            "cost_of_choosing_on_val": round(best[f"{name}_mA"] - chosen[f"{name}_mA"], 2)}
    out["history"] = history
    return out


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.4), squeeze=False)
    for ax, r in zip(axes[0], runs):
        ep = [h["epoch"] for h in r["history"]]
        ax.plot(ep, [h["val_mA"] for h in r["history"]], "k-", label="val (trained people, cameras)")
        for name in r["monitors"]:
            ax.plot(ep, [h[f"{name}_mA"] for h in r["history"]], "-o", ms=3, label=name)
        ax.axvline(r["chosen_epoch"], color="grey", ls="--", lw=0.8)
        ax.set_title(Path(r["run"]).name, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("mA (val-fitted thresholds)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="folders with a training.json")
    ap.add_argument("--json", required=True, type=Path)
    args = ap.parse_args()
    runs = [summarise(r) for r in args.runs]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"runs": runs}, indent=1))
    plot(runs, args.json.with_suffix(".png"))
    for r in runs:
        for name, m in r["monitors"].items():
            print(f"{r['run']}: {name} at the val-chosen epoch {r['chosen_epoch']}: mA "
                  f"{m['at_chosen_epoch']['mA']:.2f}; best epoch {m['best_epoch']} ({m['best_mA']:.2f})")
    print(f"wrote {args.json} and {args.json.with_suffix('.png')}")


if __name__ == "__main__":
    main()
