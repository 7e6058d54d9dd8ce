"""Regenerate the golden outputs after shipping new weights.

    .venv/bin/python scripts/make_golden.py            # tests/golden/par_peta.json + heads.json
    .venv/bin/python scripts/make_golden.py --only par-peta-mamba   # another shipped attribute model

``par_peta.json``: the attribute model's logits on a seeded random batch and its probabilities on
four real PETA crops. ``heads.json``: each shipped embedding head on seeded random encoder tokens,
the first values of the full pipeline's search and re-ID embeddings on the same real crops (and
the last re-ID values: the colour part), and
the pipeline's descriptions of them (shipped description model, greedy, fp32).
"""
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
REAL = ["00001.png", "05000.png", "10000.png", "15000.png"]
IMAGES = ROOT.parent / "shared/data/PETA/images"
HEAD_DIMS = 8  # leading embedding values kept per real crop


def synthetic_batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 256, 192, generator=g)


def synthetic_tokens(dim: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 48, dim, generator=g)


def real_paths():
    return [next(IMAGES.glob(name.split(".")[0] + ".*")) for name in REAL]


def par_golden(model: str | None = None) -> dict:
    from personlens.inference.predict import AttributePredictor

    p = AttributePredictor(model, precision="fp32")
    with torch.inference_mode():
        logits = p.model(synthetic_batch())
    out = {"synthetic_logits": logits.tolist(), "real": {}}
    for path in real_paths():
        out["real"][path.stem] = next(p.predict_paths([path])).attributes
    return out


def heads_golden() -> dict:
    from personlens.models.embedding import load_embedding_head
    from personlens.models.hub import shipped_default as shipped_head_dir
    from personlens.inference.pipeline import PersonPipeline, load_crop

    out = {"synthetic": {}, "real": {}}
    for kind in ("search", "reid"):
        d = shipped_head_dir(kind)
        if d is None:
            continue
        head = load_embedding_head(d, kind)
        with torch.inference_mode():
            out["synthetic"][kind] = head(synthetic_tokens(head.config.in_dim)).tolist()
    pipe = PersonPipeline(precision="fp32")
    paths = real_paths()
    images = [load_crop(p)[1] for p in paths]
    out["descriptions"] = {}
    for p, r in zip(paths, pipe.process(images, [str(p) for p in paths])):
        # the re-ID tail is the colour part when the shipped head has one
        out["real"][p.stem] = {"search": r.search_embedding[:HEAD_DIMS].tolist(),
                               "reid": r.reid_embedding[:HEAD_DIMS].tolist(),
                               "reid_tail": r.reid_embedding[-HEAD_DIMS:].tolist()}
        out["descriptions"][p.stem] = r.description
    out["sources"] = {k: pipe.describe()[k] for k in ("search", "reid", "describer")}
    return out


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description="Regenerate golden outputs of shipped weights.")
    ap.add_argument("--only", default=None,
                    help="one shipped attribute model, e.g. par-peta-mamba -> tests/golden/par_peta_mamba.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    golden = ROOT / "tests/golden"
    if args.only:
        out = golden / f"{args.only.replace('-', '_')}.json"
        out.write_text(json.dumps(par_golden(args.only), indent=1))
        return
    (golden / "par_peta.json").write_text(json.dumps(par_golden(), indent=1))
    (golden / "heads.json").write_text(json.dumps(heads_golden(), indent=1))


if __name__ == "__main__":
    main()
