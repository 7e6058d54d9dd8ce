"""Does the style replay cost the last domain through the normalisation statistics?

    .venv/bin/python scripts/check_lifelong_normalisation.py --root ../shared/data/PETA \
        --cuhk03-root ../shared/data/CUHK03-subset --run runs/lifelong-test/small-to-large-s0 \
        --strategies vladr_styles finetune lwf --json docs/results/lifelong_normalisation_check.json
    # the validation protocol's runs: --run runs/lifelong-val-default/small-to-large-s0-val

With ``vladr_styles`` half of every training batch is re-styled crops, so the learning top's
batch-norm statistics are a mixture of the new domain and its earlier-domain looks. For each
finished run's final model (``<run>/<strategy>/model.safetensors`` of
``scripts/lifelong_reid.py``) this re-estimates every batch-norm statistic on the last
domain's plain training crops only (no labels are used) and scores the seen domains (the
run's protocol, test or validation) before and after. If the mixture were what slows the last domain, its mAP would rise.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def renormalise(model, features, rows: np.ndarray, batch: int = 64) -> None:
    """Every batch-norm of ``model`` gets statistics of ``rows`` (plain views) only, in place:
    ``personlens adapt``'s estimator with no prior pull towards the old statistics."""
    from personlens.inference.adapt import apply_bn_statistics, estimate_bn_statistics

    views = lambda r: features.batch(r, np.zeros(len(r), int))
    batches = (views(rows[s:s + batch]) for s in range(0, len(rows), batch))
    apply_bn_statistics(model, estimate_bn_statistics(model.eval(), batches, prior=0.0))


def main(argv=None) -> dict:
    from safetensors.torch import load_file

    from personlens.data.reid_domains import domain_order
    from personlens.train.lifelong_protocol import Protocol

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True, help="PETA root")
    ap.add_argument("--cuhk03-root", required=True)
    ap.add_argument("--run", required=True, type=Path,
                    help="<out>/<order>-s<seed>[-val] of lifelong_reid.py (-val: the validation protocol)")
    ap.add_argument("--strategies", nargs="+", required=True)
    ap.add_argument("--cache", default="cache")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    split = "val" if args.run.name.endswith("-val") else "test"
    order, _, seed = args.run.name.removesuffix("-val").rpartition("-s")
    seen = list(domain_order(order))
    protocol = Protocol(args.root, args.cuhk03_root, args.cache, seed=int(seed), need_text=False, split=split)
    last = protocol.step_data([seen[-1]])
    out = {"run": str(args.run), "order": order, "seed": int(seed), "split": split, "renormalised_on": seen[-1],
           "strategies": {}}
    for name in args.strategies:
        state = load_file(str(args.run / name / "model.safetensors"))
        model = protocol.new_model("learned")
        for d in seen:
            model.add_domain(d, state[f"classifiers.{d}.weight"].shape[0])
        model.load_state_dict(state)
        model.eval()
        score = lambda: {d: round(r["mAP"], 2) for d, r in protocol.score(model.embed, seen).items()}
        before = score()
        renormalise(model, protocol.features, last.rows)
        out["strategies"][name] = {"mAP_before": before, "mAP_after": score()}
        print(name, json.dumps(out["strategies"][name]), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
