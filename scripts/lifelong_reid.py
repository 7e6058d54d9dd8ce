"""Lifelong re-ID protocol (issue 16): every strategy, both orders, several seeds.

    .venv/bin/python scripts/lifelong_reid.py --root ../shared/data/PETA \\
        --cuhk03-root ../shared/data/CUHK03-subset --out runs/lifelong \\
        --json docs/results/lifelong_reid.json [--orders large-to-small small-to-large] \\
        [--seeds 0 1] [--strategies finetune lwf vladr ...] [--iterations 300] [--stage 14]
        [--split val] [--set attr_pull_weight=0 kd_weight=2 ...]

``--split val`` runs the validation protocol (a quarter of each seen domain's training persons
held out and scored; no test person, no unseen domain): choose settings there, then run the
test protocol once with them.

Domains and splits: ``personlens.data.reid_domains``; strategies: ``personlens.train.lifelong``;
the run itself: ``personlens.train.lifelong_protocol``. Each (order, seed, strategy) run is
written to ``OUT/<order>-s<seed>/<strategy>.json`` with its weights; a run already there is
read back and a cut one resumes after its last finished step, so a killed protocol is re-run
with the same command. The summary (``--json``) accumulates: a run it already holds, made
with the same settings, is read back instead of trained (``runs/`` may not outlive a
session; the committed summary does), and its runs of other orders, seeds and strategies
are kept, so the protocol can be finished one order and seed at a time. It holds, per strategy,
Seen-Avg / Unseen-Avg mAP and R1 after the last step, the average forgetting and the gap
closure (method - finetune) / (joint - finetune), each as mean and std over orders and seeds
(a matrix plot beside it).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from personlens.data.reid_domains import ORDERS, SPLITS, UNSEEN_DOMAINS
from personlens.eval.lifelong import gap_closure, plot_matrix
from personlens.eval.report import mean_std
from personlens.models.lifelong import LifelongReidConfig
from personlens.train.lifelong import STRATEGIES, LifelongConfig
from personlens.train.lifelong_protocol import Protocol, record_matches, run_config, run_strategy

DEFAULT = ("finetune", "joint", "lwf", "rehearsal_distill", "weight_average", "vladr",
           "vladr_no_xdomain", "vladr_global", "vladr_random_split")
KEYS = ("seen_avg_mAP", "seen_avg_R1", "unseen_avg_mAP", "unseen_avg_R1", "forgetting_mAP")


def config_overrides(items: list[str]) -> dict:
    """``KEY=VALUE`` strings -> LifelongConfig fields, each cast to its default's type."""
    default = LifelongConfig().__dict__
    out = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or k not in default or k in ("iterations", "seed"):
            raise SystemExit(f"--set {item!r}: give KEY=VALUE with KEY one of "
                             + ", ".join(f for f in default if f not in ("iterations", "seed"))
                             + " (--iterations and --seeds have their own options)")
        out[k] = _cast(default[k], v, item)
    return out


def _cast(default, value: str, item: str):
    if isinstance(default, bool):   # bool("False") is True: spell the two values out
        if value.lower() not in ("true", "false"):
            raise SystemExit(f"--set {item!r}: give true or false")
        return value.lower() == "true"
    try:
        return type(default)(value)
    except ValueError:
        raise SystemExit(f"--set {item!r}: {value!r} is not a {type(default).__name__}") from None


def aggregate(runs: dict) -> dict:
    """runs[(order, seed)][strategy] -> per strategy mean/std of every summary key, and
    the gap closure of each run against that run's finetune and joint."""
    table: dict = {}
    for (order, seed), by in runs.items():
        ft, jt = by.get("finetune"), by.get("joint")
        for name, r in by.items():
            row = dict(r["summary"])
            if ft and jt:
                row["gap_closure"] = gap_closure(r["summary"]["seen_avg_mAP"],
                                                 ft["summary"]["seen_avg_mAP"],
                                                 jt["summary"]["seen_avg_mAP"])
            table.setdefault(name, []).append(row)
    out = {}
    for name, rows in table.items():
        out[name] = {"runs": len(rows), "stores_images": STRATEGIES[name].stores_images}
        for k in (*KEYS, "gap_closure"):
            vals = [r[k] for r in rows if r.get(k) is not None]
            if vals:
                out[name][k] = {"mean": float(np.mean(vals)), "std": float(np.std(vals))}
    return out


def kept_runs(prior: dict, runs: dict, overrides: dict, args) -> dict:
    """The summary's earlier runs that this invocation did not make and that were made with its
    settings (a record from other settings is dropped: averages mix one setting only)."""
    kept: dict = {}
    for by in prior.get("runs", {}).values():
        for name, rec in by.items():
            key = (rec.get("order"), rec.get("seed"))
            if name in runs.get(key, {}) or name not in STRATEGIES or key[0] not in ORDERS:
                continue
            cfg = LifelongConfig(**{**overrides, "iterations": args.iterations, "seed": key[1]})
            if record_matches(rec, run_config(name, key[0], cfg), args.stage, args.split):
                kept.setdefault(key, {})[name] = rec
    return kept


def merged_commands(prior: dict, runs: dict, command: str) -> list[str]:
    """The commands behind the summary: the earlier ones while a run they made is still in it
    (read back or kept), then this one."""
    earlier = prior.get("runs", {})
    from_prior = any(r is earlier.get(f"{o}-s{s}", {}).get(n) for (o, s), by in runs.items()
                     for n, r in by.items())
    old = prior.get("commands", [prior["command"]] if "command" in prior else [])
    return [*(c for c in old if c != command and from_prior), command]


def markdown(summary: dict, encoder: dict | None) -> str:
    lines = ["| strategy | stores images | Seen-Avg mAP / R1 | Unseen-Avg mAP / R1 | forgetting | gap closure | runs |",
             "|---|---|---|---|---|---|---|"]
    def f(s, k, digits=1):
        return mean_std(s[k]["mean"], s[k]["std"], s["runs"], digits) if k in s else "-"

    for name, s in summary.items():
        gc = f(s, "gap_closure", 2)
        lines.append(f"| {name} | {'yes' if s['stores_images'] else 'no'} | {f(s, 'seen_avg_mAP')} / "
                     f"{f(s, 'seen_avg_R1')} | {f(s, 'unseen_avg_mAP')} / {f(s, 'unseen_avg_R1')} | "
                     f"{f(s, 'forgetting_mAP')} | {gc} | {s['runs']} |")
    if encoder and all(d in encoder for d in UNSEEN_DOMAINS):     # not scored on --split val
        u = np.mean([encoder[d]["mAP"] for d in UNSEEN_DOMAINS])
        lines.append(f"\nStarting encoder (ImageNet, mean-pooled tokens): Unseen-Avg mAP {u:.1f}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="PETA folder")
    ap.add_argument("--cuhk03-root", required=True)
    ap.add_argument("--out", default="runs/lifelong")
    ap.add_argument("--json", default="docs/results/lifelong_reid.json")
    ap.add_argument("--cache", default="cache")
    ap.add_argument("--orders", nargs="+", default=list(ORDERS), choices=list(ORDERS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--strategies", nargs="+", default=list(DEFAULT), choices=list(STRATEGIES))
    ap.add_argument("--iterations", type=int, default=LifelongConfig.iterations)
    ap.add_argument("--stage", type=int, default=LifelongReidConfig.stage,
                    help="first encoder block that learns (the lower ones are cached)")
    ap.add_argument("--split", default="test", choices=list(SPLITS),
                    help="test: the protocol; val: its validation protocol, for choosing settings")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                    help="training settings other than the defaults (LifelongConfig fields)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    overrides = config_overrides(args.set)
    need_text = any(STRATEGIES[s].uses_text for s in args.strategies)
    out = Path(args.json)
    # the summary accumulates: runs it already holds with these settings are read back, not
    # re-run, and kept beside this invocation's (orders and seeds can be run session by session)
    prior = json.loads(out.read_text()) if out.exists() else {}
    runs, encoder_rows, t0 = {}, {}, time.time()
    for seed in args.seeds:
        protocol = Protocol(args.root, args.cuhk03_root, args.cache, seed=seed, stage=args.stage,
                            need_text=need_text, split=args.split)
        enc_path = Path(args.out) / ("encoder.json" if args.split == "test" else f"encoder-{args.split}.json")
        if enc_path.exists():
            encoder_rows[seed] = json.loads(enc_path.read_text())
        else:
            encoder_rows[seed] = protocol.encoder_row()
            enc_path.parent.mkdir(parents=True, exist_ok=True)
            enc_path.write_text(json.dumps(encoder_rows[seed], indent=1))
        for order in args.orders:
            for name in args.strategies:
                cfg = LifelongConfig(**{**overrides, "iterations": args.iterations, "seed": seed})
                known = prior.get("runs", {}).get(f"{order}-s{seed}", {}).get(name)
                runs.setdefault((order, seed), {})[name] = run_strategy(
                    protocol, name, order, cfg, args.out, encoder_rows[seed], known=known)
                print(f"[{time.time() - t0:.0f}s] {order} seed {seed} {name}: "
                      + json.dumps({k: round(v, 2) for k, v in runs[(order, seed)][name]["summary"].items()}),
                      flush=True)
    kept = kept_runs(prior, runs, overrides, args)
    for key, by in kept.items():
        runs.setdefault(key, {}).update(by)
    summary = aggregate(dict(sorted(runs.items())))
    command = "python scripts/lifelong_reid.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items())
    result = {"commands": merged_commands(prior, runs, command),
              "summary": summary, "encoder": encoder_rows.get(args.seeds[0]),
              "runs": {f"{o}-s{s}": by for (o, s), by in sorted(runs.items())},
              "seconds": round(time.time() - t0, 1)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    first = runs[min(runs)]
    plot_matrix(first, out.with_suffix(".png"))
    print(markdown(summary, result["encoder"]))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
