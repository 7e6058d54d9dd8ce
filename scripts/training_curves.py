"""Per-epoch curves of attribute training runs: val (the people and cameras it trains on) beside
the monitors that watch it (``train.monitor``: val images of new people, the held-out cameras'
val images), to see whether the epoch chosen on val is the one that carries over.

Reads each run's ``training.json`` (or the runs of a JSON this script wrote, for runs whose
folder is gone); writes the curves and, per run and monitor, the epoch val chose, the
monitor's best epoch and what choosing on val costs there (a look: the held-out cameras'
monitor is never chosen on), and, per selection rule of ``train attributes --select-on``,
the epoch it chooses and every monitor there. The training trajectory does not depend on the
rule, and each epoch's monitor is scored at that epoch's val-fitted thresholds as ``eval``
would, so these are the numbers the run would have given under the other rule::

    .venv/bin/python scripts/training_curves.py runs/unseen-aug2-pb/grid-mit runs/unseen-aug2-pb/viper-prid-sarc3d \\
        --json docs/results/par_training_curves_person_balance.json      # + .png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from personlens.train.par import SELECTION


def monitors_of(history: list[dict]) -> list[str]:
    """The monitors a history has on every epoch (``<name>_mA`` beside the val split's ``val_mA``)."""
    keys = set.intersection(*(set(h) for h in history)) if history else set()
    return sorted(k[:-3] for k in keys if k.endswith("_mA") and k != "val_mA")


# train attributes --select-on: rule -> the history's prefix whose mA + F1 picks the epoch
RULES = {rule: mon or "val" for rule, mon in SELECTION.items()}


def histories(path: Path) -> list[tuple[str, list[dict]]]:
    """(name, history) of a run folder, or of every run in a JSON this script wrote."""
    if path.is_file():
        return [(r["run"], r["history"]) for r in json.loads(path.read_text())["runs"]]
    return [(str(path), json.loads((path / "training.json").read_text())["history"])]


def by_rule(history: list[dict]) -> dict:
    """Per selection rule whose scores the history has: the epoch it picks and every monitor there."""
    out = {}
    for rule, prefix in RULES.items():
        if all(f"{prefix}_mA" in h and f"{prefix}_f1" in h for h in history):
            h = max(history, key=lambda h: h[f"{prefix}_mA"] + h[f"{prefix}_f1"])
            out[rule] = {"epoch": h["epoch"], **{f"{m}_{k}": h[f"{m}_{k}"]
                                                 for m in monitors_of(history) for k in ("mA", "f1")}}
    return out


def summarise(run: Path | str, history: list[dict] | None = None) -> dict:
    if history is None:
        history = json.loads((Path(run) / "training.json").read_text())["history"]
    chosen = max(history, key=lambda h: h["val_mA"] + h["val_f1"])   # train.par's default rule
    out = {"run": str(run), "epochs": len(history), "chosen_epoch": chosen["epoch"], "monitors": {},
           "rules": by_rule(history)}
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
    ap.add_argument("runs", nargs="+", type=Path,
                    help="folders with a training.json, or JSONs this script wrote (their runs)")
    ap.add_argument("--json", required=True, type=Path)
    args = ap.parse_args()
    runs = [summarise(name, h) for r in args.runs for name, h in histories(r)]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"runs": runs}, indent=1))
    plot(runs, args.json.with_suffix(".png"))
    for r in runs:
        for name, m in r["monitors"].items():
            print(f"{r['run']}: {name} at the val-chosen epoch {r['chosen_epoch']}: mA "
                  f"{m['at_chosen_epoch']['mA']:.2f}; best epoch {m['best_epoch']} ({m['best_mA']:.2f})")
        for rule, at in r["rules"].items():
            print(f"{r['run']}: --select-on {rule} picks epoch {at['epoch']}: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in at.items() if k != "epoch"))
    print(f"wrote {args.json} and {args.json.with_suffix('.png')}")


if __name__ == "__main__":
    main()
