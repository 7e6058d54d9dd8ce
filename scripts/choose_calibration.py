"""Which threshold calibration transfers to cameras never seen (issue 12, item 2).

Each model of the unseen-cameras protocol (``MODELS/<fold>``) is run once on its own val
split (the cameras it trained on) and on its fold's unseen test images (probabilities cached
under ``--cache``). Thresholds are fitted on val by each candidate rule and scored on the
unseen images. Rules:

* ``pooled`` (today's): ``joint`` calibration, every val image weighs the same;
* ``sources``: every sub-dataset (its cameras) weighs the same (``group_weights``);
* ``sources-sqrt``: half way (a sub-dataset of c crops weighs sqrt(c) in total);
* ``median``: each attribute's ``balanced`` threshold fitted on every sub-dataset alone, the
  median over those with positives and negatives;
* ``fixed-0.5``: no calibration;
* ``new-persons``: ``joint`` calibration on the val images whose person the fold's train split
  lacks only (PETA's partitions split images, not people: most val images show someone train
  shows, so val scores favour memorised people);
* ``shift-global`` / ``shift-attribute`` ("fit them across folds"): today's thresholds moved
  in log-odds by how far the best thresholds moved, for *other* fold models, from the cameras
  they saw (their val split) to the ones they never saw (the val images of their held-out
  sub-datasets): one mean shift for all attributes, or per attribute shrunk half way to it.
  Only validation images set the shifts, and a fold's own model never sets its own.

The rule is chosen on the **validation fold** (CUHK held out; ``--folds cuhk``) by unseen
mA + F1, or on the test folds' **val** images of their held-out sub-datasets (``--split val``:
no test image is loaded); the test folds report it against today's rule, nothing is chosen
on them::

    .venv/bin/python scripts/choose_calibration.py --root ../shared/data/PETA \\
        --models runs/adapt-val --folds cuhk --json docs/results/calibration_validation.json \\
        --shift-from runs/unseen-baseline/{grid-mit,viper-prid-sarc3d,ilids-caviar-3dpes}
    .venv/bin/python scripts/choose_calibration.py --root ../shared/data/PETA \\
        --models runs/unseen-baseline --json docs/results/calibration_unseen_folds.json \\
        --shift-from runs/adapt-val/cuhk runs/unseen-baseline/{grid-mit,viper-prid-sarc3d,ilids-caviar-3dpes}
    .venv/bin/python scripts/choose_calibration.py --root ../shared/data/PETA --split val \
        --models runs/unseen-aug2 --json docs/results/calibration_val_unseen_aug2.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from personlens.eval.metrics import attribute_aucs, calibrate_thresholds, mean_auc, par_metrics
from personlens.eval.par import predict_dataset
from personlens.eval.unseen import FOLDS, fold, fold_datasets
from personlens.inference.predict import AttributePredictor


def _median_of_sources(probs, labels, groups) -> np.ndarray:
    per = []
    for g in sorted(set(groups)):
        m = np.asarray(groups) == g
        y = labels[m] > 0.5
        th = calibrate_thresholds(probs[m], labels[m], "balanced")
        ok = y.any(0) & (~y).any(0)
        per.append(np.where(ok, th, np.nan))
    med = np.nanmedian(np.stack(per), axis=0)
    return np.where(np.isnan(med), 0.5, med)


RULES = {
    "pooled": lambda p, y, g: calibrate_thresholds(p, y, "joint"),
    "sources": lambda p, y, g: calibrate_thresholds(p, y, "joint", groups=g),
    "sources-sqrt": lambda p, y, g: calibrate_thresholds(p, y, "joint", groups=g, group_power=0.5),
    "median": _median_of_sources,
    "fixed-0.5": lambda p, y, g: np.full(p.shape[1], 0.5),
}


def _probs(predictor, dataset, path: Path) -> np.ndarray:
    if path.exists():
        return np.load(path)["probs"]
    probs = predict_dataset(predictor, dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, probs=probs)
    return probs


def _logit(p):
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def fold_probs(model_dir: Path, root, name: str, cache: Path, test: bool = True) -> dict:
    """Probabilities and labels of a fold model on its val split (cameras it saw), on the
    val images of its held-out sub-datasets (cameras it never saw, still validation data)
    and, with ``test``, on its fold's unseen test images; which val images show people the
    fold's train split lacks (``new``)."""

    predictor = AttributePredictor(model_dir)
    f = fold(name)
    data = fold_datasets(root, f, attributes=list(predictor.names))
    key = f"{name}-{predictor.fingerprint[:12]}"
    out = {split: {"probs": _probs(predictor, data[split], cache / f"{key}-{split}.npz"),
                   "labels": data[split].labels, "subsets": data[split].subsets}
           for split in ("val", "val_unseen", *(("test_unseen",) if test else ()))}
    trained = {s.pid for s in data["train"].samples}
    out["val"]["new"] = np.array([s.pid not in trained for s in data["val"].samples])
    out["names"] = list(data["val"].schema.names)
    return out


def camera_shift(p: dict) -> np.ndarray:
    """Per attribute: how far (in log-odds) the best threshold moves from the cameras a fold
    model saw (its val split) to cameras it never saw (its held-out val images)."""
    seen = calibrate_thresholds(p["val"]["probs"], p["val"]["labels"], "joint")
    unseen = calibrate_thresholds(p["val_unseen"]["probs"], p["val_unseen"]["labels"], "joint")
    y = p["val_unseen"]["labels"] > 0.5
    ok = y.any(0) & (~y).any(0)
    return np.where(ok, _logit(unseen) - _logit(seen), np.nan)


def _shifted(shifts: list[np.ndarray], per_attribute: bool):
    """A rule: today's thresholds moved by the other folds' mean camera shift (one number
    for all attributes, or per attribute shrunk half way to that number)."""
    def fit(p, y, g):
        base = calibrate_thresholds(p, y, "joint")
        s = np.stack(shifts)
        glob = float(np.nanmean(s))
        move = np.full(p.shape[1], glob)
        if per_attribute:
            attr = np.nanmean(s, 0)
            move = np.where(np.isnan(attr), glob, 0.5 * attr + 0.5 * glob)
        return 1 / (1 + np.exp(-(_logit(base) + move)))
    return fit


def _rounded(v: float) -> float | None:
    return None if np.isnan(v) else round(float(v), 3)


def score_fold(p: dict, name: str, other_shifts: list[np.ndarray], target: str = "test_unseen") -> dict:
    """Every rule fitted on ``p``'s val split, scored on ``target`` (``test_unseen``, or
    ``val_unseen``: the held-out cameras' val images)."""
    val, test, names = p["val"], p[target], p["names"]
    new = val["new"]
    rules = dict(RULES)
    rules["new-persons"] = lambda p, y, g: calibrate_thresholds(p[new], y[new], "joint")
    if other_shifts:
        rules["shift-global"] = _shifted(other_shifts, False)
        rules["shift-attribute"] = _shifted(other_shifts, True)
    out = {}
    for rule, fit in rules.items():
        th = fit(val["probs"], val["labels"], val["subsets"])
        m_un = par_metrics(test["probs"], test["labels"], names, th)
        m_val = par_metrics(val["probs"], val["labels"], names, th)
        out[rule] = {"unseen_mA": round(m_un.mA, 2), "unseen_F1": round(m_un.f1, 2),
                     "val_mA": round(m_val.mA, 2), "val_F1": round(m_val.f1, 2),
                     "unseen_pos_recall": round(float(np.mean([a.positive_recall for a in m_un.per_attribute])), 2)}
        print(f"{name:>20} {rule:>13}: unseen mA {m_un.mA:.2f} F1 {m_un.f1:.2f} | val mA {m_val.mA:.2f} "
              f"F1 {m_val.f1:.2f}", flush=True)
    # bounds, not rules: thresholds fitted on the unseen test labels, and how well the scores
    # rank at all (mean per-attribute ROC AUC), which no threshold changes
    th = calibrate_thresholds(test["probs"], test["labels"], "joint")
    oracle = par_metrics(test["probs"], test["labels"], names, th)
    auc = {"val": round(mean_auc(val["probs"], val["labels"]), 3),
           "unseen": round(mean_auc(test["probs"], test["labels"]), 3)}
    # per attribute: which ones carry over to new cameras at all (0.5: chance)
    per_auc = {n: {"val": _rounded(v), "unseen": _rounded(u), "unseen_positives": int(k)}
               for n, v, u, k in zip(names, attribute_aucs(val["probs"], val["labels"]),
                                     attribute_aucs(test["probs"], test["labels"]),
                                     (test["labels"] > 0.5).sum(0))}
    print(f"{name:>20} oracle bound: unseen mA {oracle.mA:.2f} F1 {oracle.f1:.2f}; mean AUC val "
          f"{auc['val']:.3f} unseen {auc['unseen']:.3f}", flush=True)
    return {"scored_on": target, "val_images": len(val["labels"]), "val_new_persons": int(new.sum()),
            "unseen_images": len(test["labels"]),
            "oracle_bound": {"unseen_mA": round(oracle.mA, 2), "unseen_F1": round(oracle.f1, 2)},
            "mean_auc": auc, "attribute_auc": per_auc,
            "val_unseen_images": len(p["val_unseen"]["labels"]),
            "val_sources": {s: val["subsets"].count(s) for s in sorted(set(val["subsets"]))},
            "rules": out}


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folds = list(result["folds"])
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(folds), 3.2))
    rules = list(result["mean"])
    width = 0.8 / len(rules)
    for i, rule in enumerate(rules):
        ax.bar(np.arange(len(folds)) + i * width, [result["folds"][f]["rules"][rule]["unseen_mA"] for f in folds],
               width, label=rule)
    ax.set_xticks(np.arange(len(folds)) + 0.4 - width / 2, folds)
    ax.set_ylabel("mA on cameras never seen")
    lo = min(r["unseen_mA"] for f in folds for r in result["folds"][f]["rules"].values())
    ax.set_ylim(lo - 3, None)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _plot_attributes(result: dict, path: Path) -> None:
    """Per attribute, the mean AUC over the folds on the cameras seen (val) and never seen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folds = list(result["folds"].values())
    names = list(folds[0]["attribute_auc"])

    def mean(n, k):
        v = [f["attribute_auc"][n][k] for f in folds if f["attribute_auc"][n][k] is not None]
        return float(np.mean(v)) if v else np.nan

    names.sort(key=lambda n: mean(n, "unseen"))
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(6, 0.22 * len(names) + 1))
    ax.barh(y + 0.2, [mean(n, "val") for n in names], 0.4, label="cameras seen (val)")
    ax.barh(y - 0.2, [mean(n, "unseen") for n in names], 0.4, label="cameras never seen")
    ax.axvline(0.5, color="k", lw=0.8, ls="--")
    ax.set_yticks(y, names, fontsize=6)
    ax.set_xlabel("ROC AUC, mean over folds (0.5: chance)")
    ax.set_xlim(0.3, 1.0)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="PETA folder")
    ap.add_argument("--models", required=True, help="folder of fold models (MODELS/<fold>)")
    ap.add_argument("--folds", nargs="+", default=list(FOLDS))
    ap.add_argument("--shift-from", nargs="*", default=[], metavar="MODELS/FOLD",
                    help="fold models whose camera shift (val seen -> val unseen) the shift rules "
                         "use; a fold scored never uses its own")
    ap.add_argument("--split", choices=("test", "val"), default="test",
                    help="score on the held-out sub-datasets' test images (the validation fold's "
                         "for choosing) or on their val images (no test image is loaded)")
    ap.add_argument("--cache", default="cache/calibration")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    cache = Path(args.cache)
    test = args.split == "test"
    probs = {f: fold_probs(Path(args.models) / f, args.root, f, cache, test) for f in args.folds}
    shifts = {}
    for spec in args.shift_from:
        d = Path(spec)
        shifts[d.name] = camera_shift(probs[d.name] if d.name in probs and d.parent == Path(args.models)
                                      else fold_probs(d, args.root, d.name, cache, test=False))
    target = "test_unseen" if test else "val_unseen"
    folds = {f: score_fold(probs[f], f, [s for n, s in shifts.items() if n != f], target) for f in args.folds}
    rules = list(next(iter(folds.values()))["rules"])
    mean = {rule: {k: round(float(np.mean([folds[f]["rules"][rule][k] for f in folds])), 2)
                   for k in ("unseen_mA", "unseen_F1", "val_mA", "val_F1")} for rule in rules}
    result = {"command": "python scripts/choose_calibration.py --root ROOT --models " + args.models
              + " --folds " + " ".join(args.folds) + " --split " + args.split
              + " --shift-from " + " ".join(args.shift_from),
              "folds": folds, "mean": mean,
              "camera_shift": {n: {a: (None if np.isnan(v) else round(float(v), 3))
                                   for a, v in zip(probs.get(n, probs[args.folds[0]])["names"], s)}
                               for n, s in shifts.items()}}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    _plot(result, out.with_suffix(".png"))
    _plot_attributes(result, out.with_name(out.stem + "_attributes.png"))
    for rule, m in mean.items():
        print(f"mean {rule:>13}: unseen mA {m['unseen_mA']:.2f} F1 {m['unseen_F1']:.2f}")
    print(f"wrote {out}, {out.with_suffix('.png')} and {out.stem}_attributes.png")


if __name__ == "__main__":
    main()
