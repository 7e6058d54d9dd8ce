"""What lifelong re-ID retrieval should compare (issue 16): the final models of a protocol
run, each scored after its last step with the BNNeck embedding ("global", what the protocol
scores), the attribute parts alone, and both.

VLADR's alignment losses act on the attribute part features; the protocol retrieves with the
global embedding, which those losses reach only through the shared top. This asks whether
the parts carry what VLADR keeps. It is an analysis of finished runs, not a choice made on
their test domains: a view to ship is chosen on validation persons of the seen domains.

    .venv/bin/python scripts/lifelong_retrieval_views.py --root ../shared/data/PETA \\
        --cuhk03-root ../shared/data/CUHK03-subset --run runs/lifelong-s14/large-to-small-s0 \\
        --json docs/results/lifelong_retrieval_views.json
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from personlens.data.reid_domains import UNSEEN_DOMAINS
from personlens.models.lifelong import RETRIEVAL_VIEWS
from personlens.train.lifelong_protocol import Protocol


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="PETA folder")
    ap.add_argument("--cuhk03-root", required=True)
    ap.add_argument("--run", required=True, help="one order and seed of a protocol run (<out>/<order>-s<seed>)")
    ap.add_argument("--strategies", nargs="+", default=["finetune", "lwf", "vladr", "vladr_no_xdomain"])
    ap.add_argument("--json", default="docs/results/lifelong_retrieval_views.json")
    ap.add_argument("--cache", default="cache")
    args = ap.parse_args()
    torch.set_num_threads(2)
    run = Path(args.run)
    records = {s: json.loads((run / f"{s}.json").read_text()) for s in args.strategies}
    stage = {r["stage"] for r in records.values()}
    if len(stage) != 1:
        raise SystemExit(f"runs of different stages: {stage}")
    protocol = Protocol(args.root, args.cuhk03_root, args.cache, stage=stage.pop(), need_text=False)
    out = {}
    for name, rec in records.items():
        model = protocol.new_model("learned")
        state = load_file(str(run / name / "model.safetensors"))
        # the old domains' classifiers are not needed to embed
        missing, unexpected = model.load_state_dict(
            {k: v for k, v in state.items() if not k.startswith("classifiers.")}, strict=False)
        if missing or [k for k in unexpected if not k.startswith("classifiers.")]:
            raise SystemExit(f"{name}: weights do not fit the model ({missing[:3]}, {unexpected[:3]})")
        model.eval()
        seen = [d for d in rec["domains"] if d not in UNSEEN_DOMAINS]
        out[name] = {}
        for view in RETRIEVAL_VIEWS:
            model.config.retrieval = view
            row = protocol.score(model.embed)
            out[name][view] = {
                "seen_avg_mAP": float(np.mean([row[d]["mAP"] for d in seen])),
                "unseen_avg_mAP": float(np.mean([row[d]["mAP"] for d in UNSEEN_DOMAINS])),
                "per_domain_mAP": {d: row[d]["mAP"] for d in row}}
            # the protocol's own scoring: the same numbers, or these weights are not that run's
            if view == "global" and abs(out[name][view]["seen_avg_mAP"] - rec["summary"]["seen_avg_mAP"]) > 0.05:
                raise SystemExit(f"{name}: global view scores {out[name][view]['seen_avg_mAP']:.2f}, "
                                 f"the run recorded {rec['summary']['seen_avg_mAP']:.2f}")
            print(f"{name} {view}: Seen-Avg {out[name][view]['seen_avg_mAP']:.2f}  "
                  f"Unseen-Avg {out[name][view]['unseen_avg_mAP']:.2f}", flush=True)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"command": "python " + shlex.join(sys.argv), "run": str(run),
                                "views": out}, indent=1))
    _plot(out, path.with_suffix(".png"))


def _plot(out: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    names, width = list(out), 0.8 / len(RETRIEVAL_VIEWS)
    for ax, key, title in zip(axes, ("seen_avg_mAP", "unseen_avg_mAP"), ("Seen-Avg mAP", "Unseen-Avg mAP")):
        for j, view in enumerate(RETRIEVAL_VIEWS):
            ax.bar(np.arange(len(names)) + j * width, [out[n][view][key] for n in names], width, label=view)
        ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=30, ha="right")
        ax.set_title(title)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
