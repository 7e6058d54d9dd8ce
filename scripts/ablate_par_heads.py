"""Head ablation (issue 15): Mamba, Transformer, hybrid, cross-attention and linear heads on
the same cached tokens of one fixed encoder, PETA partition 0, 35 attributes.

    .venv/bin/python scripts/ablate_par_heads.py --root ../shared/data/PETA --out runs/heads \\
        --json docs/results/par_heads_ablation.json [--heads vim transformer ...] [--seeds 3]
    # the same on the frozen ImageNet encoder's tokens (no PAR training in the features):
    .venv/bin/python scripts/ablate_par_heads.py --imagenet --root ../shared/data/PETA \\
        --out runs/heads-imagenet --json docs/results/par_heads_ablation_imagenet.json
    # on an unseen-cameras fold (train and choose without its sub-datasets, test on theirs):
    .venv/bin/python scripts/ablate_par_heads.py --imagenet --fold grid-mit ... \\
        --json docs/results/par_heads_ablation_imagenet_grid-mit.json
    # the folds side by side, mean and std over folds per head:
    .venv/bin/python scripts/ablate_par_heads.py --fold-table FOLD_JSON... --json OUT.json

Each (head, seed) run is trained on train, its epoch and thresholds chosen on val, and
scored on test (``train.token_heads``); its report and weights go to ``OUT/runs/`` and a run
already there is not trained again, so a killed ablation is re-run with the same command.
Every run's report is also kept in ``--json`` (``runs``), and a run found there (same
encoder, loss, epochs and layers) is not trained again either: the committed JSON carries the
ablation across machines whose ``runs/`` is gone, a few heads or seeds at a time, and the
summary always covers every head the JSON holds, not only this call's ``--heads``.
The summary (mean and std over seeds, parameters, ms per crop at batch 1 and crops/s at batch
32 with the encoder included) goes to ``--json`` and a plot beside it, with ``comparisons``:
the study's questions (COMPARISONS) as differences of test mA, each called real only beyond
two standard deviations, the issue's rule. ``--ship-best DIR``
writes the Mamba-family head with the best mean val mA + F1 (its best seed on val) on the
same encoder as an attribute model directory.

``--fold NAME`` runs the same ablation on an unseen-cameras fold (``eval.unseen``): heads
train and are chosen on PETA p0 train / val without the fold's sub-datasets and are tested on
those sub-datasets' test images only. Only an encoder that never saw them makes that fair:
the frozen ImageNet one (``--imagenet``) or a fold model (``--par runs/.../FOLD``); the
shipped encoder trained on every PETA camera and is refused.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from personlens.data import create_dataset
from personlens.eval.report import mean_std
from personlens.eval.unseen import FOLDS, VALIDATION_FOLD, fold, fold_datasets
from personlens.inference.encode import EncoderPass
from personlens.inference.tokens import token_features
from personlens.models.factory import build_head, head_needs
from personlens.models.io import load_par, save_par
from personlens.models.par import HeadConfig, PARModel
from personlens.train.token_heads import METRICS, HeadRun, head_speed, run_head

MAMBA_FAMILY = ("vim", "vim_uni", "vim_text", "hybrid")
ALL_HEADS = ("linear", "cross_attention", "transformer", "transformer_text") + MAMBA_FAMILY
SPLITS = ("val_calibrated", "test_fixed", "test_calibrated")
DEFAULT_JSON = Path("docs/results/par_heads_ablation.json")   # the shipped encoder's ablation
# the study's questions, each a (head, against) pair: does the mixer beat the probe, is Mamba
# better than its Transformer control, what do bidirectionality, text tokens and the hybrid add
COMPARISONS = tuple((k, "linear") for k in MAMBA_FAMILY) + (
    ("vim", "transformer"), ("vim", "vim_uni"), ("vim_text", "vim"),
    ("transformer_text", "transformer"), ("vim_text", "transformer_text"),
    ("hybrid", "transformer"), ("hybrid", "vim"))


def encoder_speed(model, repeats: int = 10) -> dict:
    """The encoder pass with its mirror view: median ms per crop at batch 1, crops/s at 32."""
    enc = EncoderPass(model)
    pre = enc.preprocess
    out = {}
    for b in (1, 32):
        x = torch.randn(b, 3, pre.height, pre.width)
        enc(x, mirror=True, probs=False)
        times = []
        for _ in range(repeats if b == 1 else 3):
            t0 = time.perf_counter()
            enc(x, mirror=True, probs=False)
            times.append(time.perf_counter() - t0)
        med = float(np.median(times))
        out["ms_per_crop_b1" if b == 1 else "crops_per_s_b32"] = 1000 * med if b == 1 else b / med
    return out


def sample_std(values: list[float]) -> float:
    """The sample std (seeds and folds are samples); 0 for a single value."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarise(reports: list[dict]) -> dict:
    out = {"seeds": len(reports), "parameters": reports[0]["parameters"],
           "train_minutes": float(np.mean([r["train_seconds"] for r in reports]) / 60)}
    for split in SPLITS:
        out[split] = {k: {"mean": float(np.mean([r[split][k] for r in reports])),
                          "std": sample_std([r[split][k] for r in reports])}
                      for k in METRICS}
    return out


def compare(summary: dict, split: str = "test_calibrated", metric: str = "mA") -> list[dict]:
    """Each of COMPARISONS whose two heads are in ``summary``: the difference of their means
    and whether it is real by the issue's rule, beyond two standard deviations. The std is
    that of one seed's difference, sqrt(std_a^2 + std_b^2) (conservative: not divided by the
    number of seeds); with fewer than 2 seeds of either head nothing can be called real."""
    out = []
    for a, b in COMPARISONS:
        if a not in summary or b not in summary:
            continue
        sa, sb = summary[a][split][metric], summary[b][split][metric]
        diff, std = sa["mean"] - sb["mean"], float(np.hypot(sa["std"], sb["std"]))
        seeds = min(summary[a]["seeds"], summary[b]["seeds"])
        out.append({"head": a, "against": b, "split": split, "metric": metric, "seeds": seeds,
                    "difference": round(diff, 2), "std": round(std, 2),
                    "real": bool(seeds >= 2 and abs(diff) > 2 * std)})
    return out


def earlier(path: Path, settings: dict) -> dict | None:
    """What an earlier call wrote into ``path`` with the same ``settings`` (encoder, loss,
    epochs, layers, tokens), or None."""
    if not path.is_file():
        return None
    old = json.loads(path.read_text())
    return old if all(old.get(k) == v for k, v in settings.items()) else None


def banked_reports(path: Path, settings: dict) -> dict[str, list[dict]]:
    """The per-seed reports an earlier call wrote into ``path`` with the same ``settings``;
    {} when there is none or it was made otherwise. A JSON written before per-seed reports
    were kept gives its one-seed heads back from the summary (with one seed, the mean is that
    seed's number); heads with more seeds there are re-run."""
    old = earlier(path, settings)
    if old is None:
        return {}
    if "runs" in old:
        return {k: list(v) for k, v in old["runs"].items()}
    out = {}
    for kind, s in old.get("heads", {}).items():
        if s.get("seeds") != 1:
            continue
        run = HeadRun(kind=kind, seed=0, epochs=old["epochs"], layers=old["layers"], loss=old["loss"])
        out[kind] = [{"run": asdict(run), "head_config": asdict(run.head_config(old["tokens"][0])),
                      "parameters": s["parameters"], "train_seconds": 60 * s["train_minutes"],
                      **{sp: {m: v["mean"] for m, v in s[sp].items()} for sp in SPLITS},
                      "from_summary": True}]
    return out


def collect(heads: list[str], seeds: int, runs: Path, banked: dict[str, list[dict]], train) -> dict:
    """head -> per-seed reports, in ALL_HEADS' order: each (head, seed) of this call from
    ``runs/`` if it is there, else from ``banked`` (the JSON), else ``train(head, seed)``;
    plus every banked head and seed this call does not ask for."""
    reports = {k: list(v) for k, v in banked.items() if k not in heads}
    for kind in heads:
        reps = []
        for seed in range(seeds):
            path = runs / f"{kind}-s{seed}.json"
            kept = [r for r in banked.get(kind, []) if r["run"]["seed"] == seed]
            reps.append(json.loads(path.read_text()) if path.is_file() else kept[0] if kept else train(kind, seed))
        reports[kind] = reps + [r for r in banked.get(kind, []) if r["run"]["seed"] >= seeds]
    return {k: reports[k] for k in sorted(reports, key=lambda k: (ALL_HEADS + (k,)).index(k))}


def split_datasets(root: str, fold_name: str | None) -> dict:
    """train / val / test: PETA p0's splits, or an unseen-cameras fold's (test: the held-out
    sub-datasets' test images, "test_unseen" in ``eval.unseen``)."""
    if fold_name is None:
        return {s: create_dataset("peta", root, s, partition=0, attributes="standard")
                for s in ("train", "val", "test")}
    d = fold_datasets(root, fold(fold_name))
    return {"train": d["train"], "val": d["val"], "test": d["test_unseen"]}


def rows_of(tokens: np.ndarray, all_paths: list[str], paths: list[str]) -> np.ndarray:
    """The rows of ``tokens`` (one per path of ``all_paths``) for ``paths``, in their order and
    in memory: a fold's images are a subset of p0's, so every fold shares p0's token cache."""
    where = {p: i for i, p in enumerate(all_paths)}
    missing = [p for p in paths if p not in where]
    if missing:
        raise KeyError(f"{len(missing)} images have no cached tokens, e.g. {missing[0]}")
    return np.asarray(tokens[np.array([where[p] for p in paths], dtype=np.int64)])


def fold_table(paths: list[Path]) -> dict:
    """Per head: test mA / F1 (calibrated) on each fold's held-out cameras, then the mean and
    sample std over the folds every head of the table has."""
    by_fold = {}
    for path in paths:
        d = json.loads(Path(path).read_text())
        if not d.get("fold"):
            raise ValueError(f"{path} is not a fold ablation (made without --fold)")
        by_fold[d["fold"]] = d
    kinds = [k for k in ALL_HEADS if all(k in d["heads"] for d in by_fold.values())]
    heads = {}
    for kind in kinds:
        per = {f: {m: round(d["heads"][kind]["test_calibrated"][m]["mean"], 2) for m in ("mA", "f1")}
               for f, d in by_fold.items()}
        heads[kind] = {"folds": per, **{
            stat: {m: round(float(fn([v[m] for v in per.values()])), 2) for m in ("mA", "f1")}
            for stat, fn in (("mean", np.mean), ("std", sample_std))}}
    first = next(iter(by_fold.values()))
    return {"protocol": "unseen-cameras", "encoder": first["encoder"], "epochs": first["epochs"],
            "folds": list(by_fold), "heads": heads, "sources": [str(p) for p in paths]}


def plot(summary: dict, path: Path, where: str = "PETA p0") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(summary)
    ma = [summary[k]["test_calibrated"]["mA"]["mean"] for k in kinds]
    sd = [summary[k]["test_calibrated"]["mA"]["std"] for k in kinds]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar(kinds, ma, yerr=sd, capsize=4, color=["#c44" if k in MAMBA_FAMILY else "#48a" for k in kinds])
    ax.set_ylim(min(ma) - 5, max(ma) + 3)
    ax.set_ylabel("test mA (calibrated)")
    ax.set_title(f"{where}, same encoder tokens; red: Mamba family (mean ± std over seeds)")
    plt.setp(ax.get_xticklabels(), rotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def ship(best_kind: str, reports: dict, model, runs: Path, out_dir: Path, tokens: int, prompts) -> Path:
    seed_reports = reports[best_kind]
    best = max(seed_reports, key=lambda r: r["val_calibrated"]["mA"] + r["val_calibrated"]["f1"])
    weights = runs / f"{best_kind}-s{best['run']['seed']}.safetensors"
    if not weights.is_file():     # a run read back from --json: its report travelled, not its weights
        raise FileNotFoundError(f"{weights} is missing (that run was read back from the JSON): "
                                f"train it here with --heads {best_kind} --out DIR and a new --json")
    cfg = HeadConfig(**best["head_config"])
    use_prompts, _ = head_needs(cfg.kind)
    head = build_head(model.encoder.dim, prompts if use_prompts else None, len(model.config.attributes), cfg)
    head.load_state_dict(load_file(weights))
    config = type(model.config).from_dict(model.config.to_dict())
    config.head, config.thresholds = cfg, best["thresholds"]
    config.notes = {"trained_on": "PETA partition 0 train (cached tokens of the encoder of "
                                  f"{config.notes.get('name', 'par-peta')})",
                    "ablation": "scripts/ablate_par_heads.py", "seed": best["run"]["seed"],
                    "best_epoch": best["best_epoch"], "val_calibrated": best["val_calibrated"],
                    "test_calibrated": best["test_calibrated"]}
    return save_par(PARModel(model.encoder, head.eval(), config), out_dir)


def _pm(m: dict, seeds: int) -> str:
    return mean_std(m["mean"], m["std"], seeds)


def print_tables(out: dict) -> None:
    """The markdown tables of a finished ablation (its JSON): the summary, the instance
    metrics at 0.5 and calibrated on test, and the comparisons."""
    heads = out["heads"]
    print("| head | seeds | params | test mA (cal.) | test F1 (cal.) | test mA @0.5 | ms/crop b1 | crops/s b32 |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, s in heads.items():
        tc, tf = s["test_calibrated"], s["test_fixed"]
        print(f"| {kind} | {s['seeds']} | {s['parameters']:,} | {_pm(tc['mA'], s['seeds'])} | {_pm(tc['f1'], s['seeds'])} | "
              f"{tf['mA']['mean']:.2f} | {s['ms_per_crop_b1']:.1f} | {s['crops_per_s_b32']:.1f} |")
    instance = ("accuracy", "precision", "recall", "f1")
    print("\n| head | @0.5: " + " | ".join(instance) + " | calibrated: " + " | ".join(instance) + " |")
    print("|---|" + "---|" * 2 * len(instance))
    for kind, s in heads.items():
        print(f"| {kind} | " + " | ".join(_pm(s[split][k], s["seeds"]) for split in ("test_fixed", "test_calibrated")
                                          for k in instance) + " |")
    print()
    for c in out["comparisons"]:
        print(f"{c['head']} - {c['against']}: {c['difference']:+.2f} ± {c['std']:.2f} test mA over "
              f"{c['seeds']} seed(s): {'real' if c['real'] else 'not called real'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="PETA folder")
    ap.add_argument("--par", default=None, help="attribute model whose encoder makes the tokens (default: shipped)")
    ap.add_argument("--imagenet", action="store_true",
                    help="tokens of the frozen ImageNet encoder instead (no PAR training at all: the "
                         "heads differ most there); --ship-best is then refused")
    ap.add_argument("--out", type=Path, default=Path("runs/heads"))
    ap.add_argument("--json", type=Path, default=None,
                    help=f"summary JSON (default {DEFAULT_JSON}); runs already "
                         "in it are read back, and one made with other settings is refused")
    ap.add_argument("--heads", nargs="+", default=list(ALL_HEADS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--loss", default="wce", choices=["wce", "ce_focal"])
    ap.add_argument("--ship-best", type=Path, default=None)
    ap.add_argument("--fold", default=None, choices=[*FOLDS, VALIDATION_FOLD.name],
                    help="an unseen-cameras fold: train without its sub-datasets, test on theirs "
                         "(needs --imagenet or a fold model as --par)")
    ap.add_argument("--fold-table", nargs="+", type=Path, default=None, metavar="FOLD_JSON",
                    help="only tabulate fold ablations (their --json files) into --json")
    ap.add_argument("--table", type=Path, default=None, metavar="ABLATION_JSON",
                    help="only print the tables of a finished ablation (its --json), no work")
    args = ap.parse_args(argv)
    if args.table:
        try:
            print_tables(json.loads(args.table.read_text()))
        except (OSError, ValueError, KeyError) as e:
            ap.error(f"--table: {e}")
        return 0
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.fold_table:
        if args.json is None:
            ap.error("--fold-table needs --json OUT (where the table goes)")
        try:
            table = fold_table(args.fold_table)
        except (OSError, ValueError, KeyError) as e:
            ap.error(f"--fold-table: {e}")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(table, indent=2))
        print("| head | " + " | ".join(table["folds"]) + " | mean ± std |")
        print("|---|" + "---|" * (len(table["folds"]) + 1))
        for kind, h in table["heads"].items():
            print(f"| {kind} | " + " | ".join(f"{h['folds'][f]['mA']:.2f}" for f in table["folds"])
                  + f" | {h['mean']['mA']:.2f} ± {h['std']['mA']:.2f} |")
        return 0
    args.json = args.json or DEFAULT_JSON
    if args.fold and not (args.imagenet or args.par):
        ap.error("--fold needs an encoder that never saw the fold's cameras: --imagenet, or --par "
                 "with that fold's model (the shipped par-peta trained on every PETA camera)")
    if args.fold and args.ship_best:
        ap.error("--ship-best ships a model trained on all of PETA: not with --fold")
    source = "EfficientNet-Lite0, ImageNet, frozen" if args.imagenet else (args.par or "par-peta (shipped)")
    settings = {"encoder": source, "loss": args.loss, "epochs": args.epochs, "layers": args.layers,
                "fold": args.fold}
    if args.json.is_file() and earlier(args.json, settings) is None:
        # its runs would not be read back, and this call would write over them
        ap.error(f"{args.json} holds an ablation made otherwise (not {settings}): "
                 "give this one its own --json")

    if args.imagenet:
        if args.ship_best or args.par:
            ap.error("--imagenet makes its own encoder: no --par, no --ship-best")
        from personlens.data.schema import PETA_SCHEMA, PETA_STANDARD_35
        from personlens.train.par import TrainConfig, build_model

        torch.manual_seed(0)   # the (unused) head's weights are part of the cache key
        model = build_model(TrainConfig(), list(PETA_STANDARD_35), PETA_SCHEMA.subset(list(PETA_STANDARD_35)))
        model.config.flip_tta = True
    else:
        model = load_par(args.par)
    names = list(model.config.attributes)
    p0 = split_datasets(args.root, None)
    paths = [str(p) for s in ("train", "val", "test") for p in p0[s].paths]
    tokens = token_features(model, paths)        # always p0's images: one cache for every fold
    data, start = {}, 0
    if args.fold is None:
        for s in ("train", "val", "test"):
            n = len(p0[s])
            data[s] = (tokens[start:start + n], p0[s].labels)
            start += n
    else:
        for s, ds in split_datasets(args.root, args.fold).items():
            data[s] = (rows_of(tokens, paths, [str(p) for p in ds.paths]), ds.labels)
    prompts = getattr(model.head, "prompts", None)
    runs = (args.out / args.fold if args.fold else args.out) / "runs"    # a fold's runs apart
    runs.mkdir(parents=True, exist_ok=True)
    settings["tokens"] = [int(tokens.shape[2]), int(tokens.shape[3])]

    def train(kind: str, seed: int) -> dict:
        run = HeadRun(kind=kind, seed=seed, epochs=args.epochs, layers=args.layers, loss=args.loss)
        head, rep = run_head(run, data, names, prompts)
        save_file({k: v.contiguous() for k, v in head.state_dict().items()},
                  str(runs / f"{kind}-s{seed}.safetensors"))
        (runs / f"{kind}-s{seed}.json").write_text(json.dumps(rep, indent=2))
        return rep

    reports = collect(args.heads, args.seeds, runs, banked_reports(args.json, settings), train)
    # every call that added to this JSON, in order: together they rebuild its table
    before = earlier(args.json, settings) or {}
    commands = before.get("commands") or [c for c in [before.get("command", "")] if "--" in c]
    this = "python scripts/ablate_par_heads.py " + " ".join(sys.argv[1:] if argv is None else argv)
    commands = commands + [this] if this not in commands else commands
    t, c = tokens.shape[2], tokens.shape[3]
    enc_speed = encoder_speed(model)
    summary = {}
    for kind, reps in reports.items():
        cfg = HeadConfig(**reps[0]["head_config"])
        use_prompts, _ = head_needs(kind)
        hs = head_speed(build_head(c, prompts if use_prompts else None, len(names), cfg), t, c)
        summary[kind] = {**summarise(reps), "head_speed": hs,
                         "ms_per_crop_b1": enc_speed["ms_per_crop_b1"] + hs["ms_per_crop_b1"],
                         "crops_per_s_b32": 1 / (1 / enc_speed["crops_per_s_b32"] + 1 / hs["crops_per_s_b32"])}
    dataset = "PETA partition 0, 35 attributes"
    if args.fold:
        dataset += (f"; unseen-cameras fold {args.fold}: trained and chosen without "
                    f"{', '.join(fold(args.fold).held_out)}, tested on their test images only")
    out = {"dataset": dataset, **settings,
           "encoder_speed": enc_speed, "heads": summary, "comparisons": compare(summary),
           "commands": commands, "runs": reports}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2))
    plot(summary, args.json.with_suffix(".png"),
         f"fold {args.fold}, held-out cameras" if args.fold else "PETA p0")
    print_tables(out)
    if args.ship_best:
        family = [k for k in summary if k in MAMBA_FAMILY]
        best = max(family, key=lambda k: summary[k]["val_calibrated"]["mA"]["mean"]
                   + summary[k]["val_calibrated"]["f1"]["mean"])
        try:
            print(f"shipping {best}: {ship(best, reports, model, runs, args.ship_best, t, prompts)}")
        except FileNotFoundError as e:
            ap.error(str(e))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
