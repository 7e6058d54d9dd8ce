"""Regenerate tests/golden/par_peta.json after shipping new attribute weights.

    .venv/bin/python scripts/make_golden.py
"""
import json
from pathlib import Path

import torch

from personlens.predict import AttributePredictor

ROOT = Path(__file__).resolve().parents[1]
REAL = ["00001.png", "05000.png", "10000.png", "15000.png"]


def synthetic_batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 256, 192, generator=g)


def main():
    torch.set_num_threads(1)
    p = AttributePredictor(precision="fp32")
    with torch.inference_mode():
        logits = p.model(synthetic_batch())
    out = {"synthetic_logits": logits.tolist(), "real": {}}
    images = ROOT.parent / "shared/data/PETA/images"
    for name in REAL:
        path = next(images.glob(name.split(".")[0] + ".*"))
        r = next(p.predict_paths([path]))
        out["real"][name.split(".")[0]] = r.attributes
    (ROOT / "tests/golden/par_peta.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
