"""Training recipes side by side on the unseen-cameras folds (issue 12), from the reports of
``personlens eval attributes --protocol unseen-cameras`` (one JSON per recipe and fold, or
one per recipe with every fold): per fold and recipe the unseen mA, F1 and mA_core, the
mean over the folds that every recipe has, and each recipe's gain over the first one.

    .venv/bin/python scripts/unseen_recipes.py --split val \\
        --recipe "today's=docs/results/par_unseen_cameras_val_baseline.json,docs/results/par_unseen_cameras_val_baseline_ilids.json" \\
        --recipe "+ augmentation=docs/results/par_unseen_cameras_val_aug2.json,docs/results/par_unseen_cameras_val_aug2_ilids.json" \\
        --json docs/results/par_unseen_recipes_val.json           # + .png

A recipe is chosen on ``--split val`` (the held-out cameras' validation images) and only
then reported on test.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

KEYS = ("mA", "f1", "mA_core")


def read_recipe(spec: str, split: str) -> tuple[str, dict[str, dict]]:
    """``NAME=A.json,B.json``: the recipe's name and its ``<split>_unseen`` scores per fold."""
    name, sep, files = spec.partition("=")
    if not sep or not files:
        raise SystemExit(f"--recipe {spec!r}: expected NAME=REPORT.json[,REPORT.json...]")
    folds = {}
    for f in files.split(","):
        report = json.loads(Path(f).read_text())
        if report.get("protocol") != "unseen-cameras":
            raise SystemExit(f"{f}: not an unseen-cameras report")
        for fold, scores in report["folds"].items():
            if f"{split}_unseen" not in scores:
                raise SystemExit(f"{f}: fold {fold} has no {split}_unseen scores (eval with --split {split})")
            if fold in folds:
                raise SystemExit(f"recipe {name!r}: fold {fold} is in two reports")
            folds[fold] = {k: scores[f"{split}_unseen"].get(k) for k in KEYS}
    return name.strip(), folds


def compare(recipes: dict[str, dict[str, dict]]) -> dict:
    """Per recipe: its folds, and the mean over the folds that every recipe has (the only
    fair mean), with the gain over the first recipe on the same folds."""
    common = sorted(set.intersection(*(set(f) for f in recipes.values())))
    if not common:
        raise SystemExit("the recipes share no fold")
    means = {name: {k: _mean([folds[f][k] for f in common]) for k in KEYS} for name, folds in recipes.items()}
    first = next(iter(means.values()))
    out = {"common_folds": common, "recipes": {}}
    for name, folds in recipes.items():
        mean = means[name]
        gain = {k: None if None in (mean[k], first[k]) else _round(mean[k] - first[k]) for k in KEYS}
        out["recipes"][name] = {"folds": folds, "mean": mean, "gain_over_first": gain}
    return out


def _mean(vals):
    return None if any(v is None for v in vals) else _round(float(np.mean(vals)))


def _round(v):
    return None if v is None else round(v, 2)


def plot(table: dict, split: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, folds = list(table["recipes"]), table["common_folds"]
    x = np.arange(len(folds) + 1)
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(2 + 1.8 * len(x), 4))
    for i, n in enumerate(names):
        r = table["recipes"][n]
        ax.bar(x + (i - (len(names) - 1) / 2) * width,
               [r["folds"][f]["mA"] for f in folds] + [r["mean"]["mA"]], width, label=n)
    ax.set_xticks(x, [*folds, "mean"], fontsize=8)
    ax.set_ylabel(f"mA on cameras never seen ({split})")
    lo = min(r["folds"][f]["mA"] for r in table["recipes"].values() for f in folds)
    ax.set_ylim(np.floor(lo) - 3, None)
    ax.legend(fontsize=8)
    ax.set_title(f"Training recipes, unseen-cameras folds ({split} images)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", action="append", required=True, help="NAME=REPORT.json[,REPORT.json...]")
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()
    recipes = dict(read_recipe(r, args.split) for r in args.recipe)
    table = {"command": shlex.join(sys.argv), "split": args.split, **compare(recipes)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(table, indent=2))
    plot(table, args.split, args.json.with_suffix(".png"))
    for n, r in table["recipes"].items():
        folds = "  ".join(f"{f} {r['folds'][f]['mA']:.2f}" for f in table["common_folds"])
        print(f"{n:40s} {folds}  mean {r['mean']['mA']:.2f} ({r['gain_over_first']['mA']:+.2f})")


if __name__ == "__main__":
    main()
