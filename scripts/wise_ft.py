"""WiSE-FT on the unseen-cameras folds: each fold's fine-tuned model (LP-FT, ``train attributes
--init-head``) averaged in weight space with the linear probe it started from
(``personlens.train.wise_ft``), for several mixing weights alpha (0: the probe, 1: the
fine-tuned model). Each mix gets its thresholds fitted again on the fold's val split (the
cameras it trained on, as training does) and is scored on the held-out cameras' *val* images,
where alpha is chosen; the test images are scored afterwards by ``personlens eval attributes
--protocol unseen-cameras --weights OUT/a<alpha>`` for the chosen alpha only::

    .venv/bin/python scripts/wise_ft.py --probe runs/lp-ca --tuned runs/unseen-aug2-lpft \\
        --root ../shared/data/PETA --fold viper-prid-sarc3d --alphas 0 0.25 0.5 0.75 0.9 1 \\
        --out runs/wise-ft --json docs/results/par_wise_ft_val_viper.json      # + .png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


from personlens.eval.metrics import calibrate_thresholds, par_metrics
from personlens.eval.par import predict_dataset
from personlens.eval.unseen import FOLDS, core_mA, fold, fold_datasets
from personlens.inference.predict import AttributePredictor
from personlens.models.io import load_par, save_par, set_thresholds
from personlens.models.par import PARModel
from personlens.train.wise_ft import wise_ft


def mix_fold(probe: PARModel, tuned: PARModel, out_dir: Path, alpha: float, data: dict,
             objective: str) -> dict:
    """Write the alpha-mix of one fold's models to ``out_dir``, fit its thresholds on the
    fold's val split and score the held-out cameras' val images; returns both scores."""
    save_par(wise_ft(probe, tuned, alpha), out_dir)
    predictor = AttributePredictor(out_dir, precision="fp32")
    val, unseen = data["val"], data["val_unseen"]
    p_val, p_unseen = predict_dataset(predictor, val), predict_dataset(predictor, unseen)
    th = calibrate_thresholds(p_val, val.labels, objective)
    seen_m = par_metrics(p_val, val.labels, val.schema.names, th)
    unseen_m = par_metrics(p_unseen, unseen.labels, unseen.schema.names, th)
    set_thresholds(out_dir, th, {"objective": objective, "split": "val", "wise_ft_alpha": alpha,
                                 "calibrated": {"mA": seen_m.mA, "f1": seen_m.f1}})
    return {"alpha": alpha,
            "val_seen": {"mA": round(seen_m.mA, 2), "f1": round(seen_m.f1, 2)},
            "val_unseen": {"mA": round(unseen_m.mA, 2), "f1": round(unseen_m.f1, 2),
                           "mA_core": core_mA(unseen_m), "images": unseen_m.num_images}}


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rows in report["folds"].items():
        a = [r["alpha"] for r in rows]
        ax.plot(a, [r["val_unseen"]["mA"] for r in rows], "o-", label=f"{name}: held-out cameras' val")
        ax.plot(a, [r["val_seen"]["mA"] for r in rows], "s--", alpha=0.6, label=f"{name}: fold val (seen)")
    ax.set_xlabel("alpha (0: linear probe, 1: fine-tuned)")
    ax.set_ylabel("mA, calibrated on the fold's val split")
    ax.set_title("WiSE-FT between the probe and the LP-FT model")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--probe", type=Path, required=True, help="unseen-cameras run trained --frozen")
    ap.add_argument("--tuned", type=Path, required=True, help="unseen-cameras run trained --init-head PROBE")
    ap.add_argument("--root", required=True)
    ap.add_argument("--fold", nargs="+", choices=list(FOLDS), required=True)
    ap.add_argument("--alphas", nargs="+", type=float, default=[0.0, 0.25, 0.5, 0.75, 1.0])
    ap.add_argument("--objective", default="joint", help="threshold objective (as the runs were calibrated)")
    ap.add_argument("--out", type=Path, required=True, help="OUT/a<alpha>/<fold>: each mix, a model folder")
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args(argv)

    report = {"probe": str(args.probe), "tuned": str(args.tuned), "objective": args.objective,
              "chosen_on": "val_unseen (the held-out cameras' val images)", "folds": {}}
    for name in args.fold:
        data = fold_datasets(args.root, fold(name))
        probe, tuned = load_par(args.probe / name), load_par(args.tuned / name)   # once per fold
        rows = []
        for a in args.alphas:
            r = mix_fold(probe, tuned, args.out / f"a{a:.2f}" / name, a, data, args.objective)
            print(f"{name} alpha {a:.2f}: held-out val mA {r['val_unseen']['mA']:.2f} "
                  f"F1 {r['val_unseen']['f1']:.2f} | fold val mA {r['val_seen']['mA']:.2f}", flush=True)
            rows.append(r)
        report["folds"][name] = rows
        best = max(rows, key=lambda r: r["val_unseen"]["mA"] + r["val_unseen"]["f1"])
        report.setdefault("chosen_alpha", {})[name] = best["alpha"]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    plot(report, args.json.with_suffix(".png"))
    print(json.dumps(report["chosen_alpha"]))


if __name__ == "__main__":
    main()
