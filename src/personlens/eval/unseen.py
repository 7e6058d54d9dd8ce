"""Cameras never seen: leave-sub-datasets-out folds of PETA.

PETA pools ten sub-datasets, each filmed by its own cameras. A fold holds some of them out:
its model trains on PETA partition 0's train split without them (epoch and thresholds chosen
on the val split without them, so the held-out cameras never steer a choice) and is tested
on partition 0's test images of the held-out sub-datasets only: people *and* cameras it never
saw. The same model is also scored on the rest of the test split ("seen cameras"), so each
fold reports its own domain gap.

The folds group sub-datasets of different kinds of camera and keep about 2,000-2,700 images
each out. TownCentre (a third of PETA) always trains; CUHK is the *validation fold*: recipes
(augmentation, depth, encoder) are compared on it, never on the test folds' images.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.peta import PETA
from .metrics import PARMetrics
from .report import mean_std

HEADLINE = ("mA", "accuracy", "precision", "recall", "f1")
# What users ask of a new camera first, and what the hidden set of other cameras is
# scored on: gender, hat, backpack, short sleeves, trousers, shorts. Their mA ("mA_core") is
# reported beside the 35-attribute mA, so that the folds speak to the same question.
CORE_ATTRIBUTES = ("personalMale", "accessoryHat", "carryingBackpack", "upperBodyShortSleeve",
                   "lowerBodyTrousers", "lowerBodyShorts")


@dataclass(frozen=True)
class Fold:
    name: str
    held_out: tuple[str, ...]
    note: str


FOLDS: dict[str, Fold] = {f.name: f for f in (
    Fold("viper-prid-sarc3d", ("VIPeR", "PRID", "SARC3D"), "outdoor re-ID cameras, two views each"),
    Fold("ilids-caviar-3dpes", ("i-LID", "CAVIAR4REID", "3DPeS"), "airport, shopping-centre and campus CCTV"),
    Fold("grid-mit", ("GRID", "MIT"), "underground-station CCTV and street photos"),
)}
VALIDATION_FOLD = Fold("cuhk", ("CUHK",), "campus cameras; for choosing recipes only")
PROTOCOL = "unseen-cameras"


def fold(name: str) -> Fold:
    if name == VALIDATION_FOLD.name:
        return VALIDATION_FOLD
    if name not in FOLDS:
        raise KeyError(f"unknown fold {name!r}; folds: {', '.join(FOLDS)} "
                       f"(validation: {VALIDATION_FOLD.name})")
    return FOLDS[name]


def fold_datasets(root: str | Path, f: Fold, attributes="standard", partition: int = 0) -> dict:
    """``train``/``val`` without the held-out sub-datasets, ``test_unseen`` with only them,
    ``test_seen`` the rest of the test split; ``val_unseen`` the held-out sub-datasets' val
    images (cameras the fold model never saw, yet not test images: for choosing recipes on
    every fold) and ``val_seen`` the same images as ``val``."""
    kw = {"partition": partition, "attributes": attributes}
    val = PETA(root, "val", exclude_subsets=f.held_out, **kw)
    return {"train": PETA(root, "train", exclude_subsets=f.held_out, **kw), "val": val,
            "test_unseen": PETA(root, "test", only_subsets=f.held_out, **kw),
            "test_seen": PETA(root, "test", exclude_subsets=f.held_out, **kw),
            "val_unseen": PETA(root, "val", only_subsets=f.held_out, **kw), "val_seen": val}


def core_mA(m: PARMetrics) -> float | None:
    """mA over ``CORE_ATTRIBUTES`` that have both positives and negatives among the images
    (an attribute nobody shows has no balanced accuracy); ``None`` when none can be scored."""
    n = m.num_images
    scores = [a.ma for a in m.per_attribute if a.name in CORE_ATTRIBUTES and 0 < a.positives < n]
    return round(float(np.mean(scores)), 2) if scores else None


def _split_summary(m: PARMetrics) -> dict:
    out = {k: round(getattr(m, k), 2) for k in HEADLINE} | {"images": m.num_images}
    core = core_mA(m)
    if core is not None:
        out["mA_core"] = core
    return out


def summarise(per_fold: dict[str, dict[str, PARMetrics]]) -> dict:
    """Per fold: calibrated metrics on unseen and seen cameras; then mean and std (over
    folds) of each, and the mean gap seen - unseen."""
    out = {"folds": {}, "mean": {}, "std": {}}
    for name, res in per_fold.items():
        out["folds"][name] = {
            "held_out": list(fold(name).held_out),
            **{split: _split_summary(m) for split, m in res.items()}}
    p = _prefix(per_fold)
    for split in (f"{p}_unseen", f"{p}_seen", f"{p}_unseen_adapted"):
        scored = [f[split] for f in out["folds"].values() if split in f]
        keys = HEADLINE + (("mA_core",) if scored and all("mA_core" in s for s in scored) else ())
        vals = {k: [s[k] for s in scored] for k in keys}
        if all(vals.values()):
            out["mean"][split] = {k: round(float(np.mean(v)), 2) for k, v in vals.items()}
            # the sample std over folds (the folds are a sample of the cameras users bring)
            out["std"][split] = {k: round(float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, 2)
                                 for k, v in vals.items()}
    if {f"{p}_unseen", f"{p}_seen"} <= set(out["mean"]):
        out["mean"]["gap_mA"] = round(out["mean"][f"{p}_seen"]["mA"] - out["mean"][f"{p}_unseen"]["mA"], 2)
    if {f"{p}_unseen", f"{p}_unseen_adapted"} <= set(out["mean"]):
        gains = [f[f"{p}_unseen_adapted"]["mA"] - f[f"{p}_unseen"]["mA"] for f in out["folds"].values()
                 if f"{p}_unseen_adapted" in f]
        out["mean"]["adapt_gain_mA"] = round(float(np.mean(gains)), 2)
        out["mean"]["adapt_worst_fold_mA"] = round(float(np.min(gains)), 2)
    return out


def mean_text(summary: dict, split: str, metric: str = "mA", digits: int = 2) -> str:
    """``"65.00 ± 7.07"``: the mean over folds of ``metric`` on ``split`` and its std; with a
    single fold scored, ``"57.84 (one fold)"``, as a std of one value says nothing."""
    n = sum(split in f for f in summary["folds"].values())
    return mean_std(summary["mean"][split][metric], summary["std"][split][metric], n, digits,
                    single=" (one fold)")


def _prefix(per_fold: dict) -> str:
    """"val" when the folds were scored on validation images (``--split val``), else "test"."""
    return "val" if any(k.startswith("val_") for res in per_fold.values() for k in res) else "test"


def write_unseen_report(summary: dict, json_path: str | Path, meta: dict) -> Path:
    """JSON (meta + per fold + mean ± std) and a bar plot of mA per fold, seen vs unseen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({**meta, "protocol": PROTOCOL, **summary}, indent=2))
    names = list(summary["folds"])
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(names)), 4))
    p = _prefix(summary["folds"])
    splits = [s for s in (f"{p}_seen", f"{p}_unseen", f"{p}_unseen_adapted")
              if any(s in summary["folds"][n] for n in names)]
    width = 0.8 / len(splits)
    for i, split in enumerate(splits):
        ax.bar(x + (i - (len(splits) - 1) / 2) * width,
               [summary["folds"][n].get(split, {}).get("mA", 0) for n in names], width,
               label=split.replace(f"{p}_", "").replace("_", ", ") + f" cameras ({p})")
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylabel("mA (%)")
    ax.set_ylim(50, 100)
    mean = summary["mean"].get(f"{p}_unseen", {}).get("mA")
    ax.set_title(f"{meta.get('title', 'PETA, cameras never seen')}"
                 + (f": unseen mA {mean_text(summary, f'{p}_unseen', digits=1)}" if mean else ""))
    ax.legend(fontsize=8)
    fig.tight_layout()
    plot = json_path.with_suffix(".png")
    fig.savefig(plot, dpi=110)
    plt.close(fig)
    return plot


def ensure_val_scores(predictor, data: dict, log=print) -> None:
    """A fold model trained before ``val_scores.json`` existed gets it now, from the fold's
    own validation split (never from the held-out cameras)."""
    from ..inference.adapt import score_statistics
    from ..models.hub import read_scores, write_scores
    from .par import predict_dataset

    if read_scores(predictor.model_dir) is None:
        log(f"writing the validation score statistics of {predictor.model_dir}")
        probs = predict_dataset(predictor, data["val"])
        write_scores(predictor.model_dir, score_statistics(probs, data["val"].labels,
                                                           list(predictor.names), "val"))


def adapt_to(predictor, dataset, settings=None, log=print):
    """Fit ``personlens adapt``'s adaptation on a dataset's images (their labels unused) and
    apply it to ``predictor``; returns the seconds it took."""
    import time

    from ..data.images import load_image
    from ..inference.adapt import AdaptSettings
    from ..inference.adaptation import fit_camera

    t0 = time.perf_counter()
    images = [load_image(p) for p in dataset.paths]
    predictor.set_adaptation(None)
    entry = fit_camera(predictor, images, settings or AdaptSettings())
    predictor.set_adaptation(entry)
    seconds = time.perf_counter() - t0
    log(f"adapted on {len(images)} unlabelled images in {seconds:.0f} s")
    return seconds


def fold_model_dir(d: Path, selected_on: str | None) -> Path:
    """The model of run folder ``d`` whose epoch the ``selected_on`` rule kept: ``d`` itself
    when it was chosen that way (runs from before the rules existed were chosen on val), else
    the one kept beside it (``d/selected-<rule>``)."""
    if selected_on is None:
        return d
    notes = json.loads((d / "config.json").read_text()).get("notes") or {}
    if notes.get("selected_on", "val") == selected_on:
        return d
    if (d / f"selected-{selected_on}" / "config.json").is_file():
        return d / f"selected-{selected_on}"
    raise FileNotFoundError(f"{d} holds no model whose epoch was kept on {selected_on!r} (trained "
                            "before both rules' epochs were kept: train it again)")


def evaluate_unseen(models_dir: str | Path, root: str | Path, folds: list[str] | None = None,
                    precision: str = "auto", batch_size: int = 32, log=print,
                    seen: bool = True, adapt: bool = False, adapt_settings=None, split: str = "test",
                    selected_on: str | None = None) -> dict:
    """Score the fold models in ``models_dir/<fold>`` (``personlens train attributes
    --protocol unseen-cameras``) on their unseen and seen test cameras; ``summarise``d.

    ``adapt``: also score each on its unseen cameras after ``personlens adapt`` on those
    cameras' test images, without their labels (``test_unseen_adapted``). ``split="val"``: the
    same on the folds' validation images (``val_unseen``: the held-out sub-datasets' val
    images; ``val_seen``: the fold's own val split), for choosing recipes on every fold.
    ``selected_on``: the fold model whose epoch that ``--select-on`` rule kept (a run keeps
    both rules' models: ``fold_model_dir``); None: each fold's main model."""
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    from ..inference.predict import AttributePredictor
    from .par import evaluate_par

    per_fold = {}
    for name in folds or list(FOLDS):
        f, d = fold(name), Path(models_dir) / name
        if not (d / "config.json").is_file():
            raise FileNotFoundError(f"no model for fold {name} in {d}: train it first")
        d = fold_model_dir(d, selected_on)
        predictor = AttributePredictor(d, precision=precision)
        data = fold_datasets(root, f, attributes=list(predictor.names))
        per_fold[name] = {}
        unseen = f"{split}_unseen"
        for key in (unseen, f"{split}_seen") if seen else (unseen,):
            per_fold[name][key] = evaluate_par(predictor, data[key], batch_size)["calibrated"]
            log(f"{name} {key}: mA {per_fold[name][key].mA:.2f} F1 {per_fold[name][key].f1:.2f}")
        if adapt:
            ensure_val_scores(predictor, data, log)
            adapt_to(predictor, data[unseen], adapt_settings, log)
            m = evaluate_par(predictor, data[unseen], batch_size)["calibrated"]
            per_fold[name][f"{unseen}_adapted"] = m
            log(f"{name} {unseen}_adapted: mA {m.mA:.2f} F1 {m.f1:.2f}")
            predictor.set_adaptation(None)
    return summarise(per_fold)
