"""Write an attribute model's ``new_cameras.json``: per attribute, how well the recipe's
scores separate positives from negatives on cameras it never saw.

Input: a ``choose_calibration.py --split val`` report (its ``folds.*.attribute_auc``: each
unseen-cameras fold model's ROC AUC per attribute on its own val split and on the held-out
cameras' val images). Per attribute the folds' AUCs are averaged weighted by their held-out
positives (a fold with 2 mufflers says little), and the positives are summed; the ratings
(``personlens.models.transfer``) are made when the file is read. No test image is involved.

    python scripts/attribute_transfer.py docs/results/calibration_val_unseen_baseline.json \
        --out src/personlens/weights/par-peta
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from personlens.models.transfer import TransferReport, write_transfer


def combine(report: dict) -> dict:
    """name -> {auc_seen, auc_new_cameras, positives} over the report's folds."""
    folds = report.get("folds") or {}
    tables = [f["attribute_auc"] for f in folds.values() if f.get("attribute_auc")]
    if not tables:
        raise ValueError("the report holds no per-attribute AUC (run choose_calibration.py --split val)")
    out = {}
    for name in tables[0]:
        rows = [t[name] for t in tables if name in t]
        scored = [r for r in rows if r.get("unseen") is not None and r.get("unseen_positives", 0) > 0]
        pos = sum(r["unseen_positives"] for r in scored)
        if not pos:
            continue                     # never positive on a held-out camera: nothing measured
        seen = [r["val"] for r in rows if r.get("val") is not None]
        out[name] = {"auc_seen": round(sum(seen) / len(seen), 3) if seen else None,
                     "auc_new_cameras": round(sum(r["unseen"] * r["unseen_positives"] for r in scored) / pos, 3),
                     "positives": pos}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", type=Path, help="choose_calibration.py --split val JSON")
    ap.add_argument("--out", type=Path, required=True, help="attribute model directory to write into")
    ap.add_argument("--measured-on", default=None, help="what the AUCs were measured on (default: "
                    "the report's folds, on their held-out cameras' val images)")
    a = ap.parse_args(argv)
    report = json.loads(a.report.read_text())
    folds = ", ".join(report.get("folds") or {})
    transfer = {
        "measured_on": a.measured_on or (
            f"unseen-cameras fold models of this recipe ({folds}), each on the val images of the "
            "PETA sub-datasets it never saw; AUC averaged over folds weighted by positives"),
        "command": f"python scripts/attribute_transfer.py {a.report} --out {a.out}",
        "source": str(a.report), "attributes": combine(report)}
    path = write_transfer(a.out, transfer)
    groups = TransferReport.from_dict(transfer).by_rating()
    print(f"wrote {path}: " + "; ".join(f"{r}: {len(n)}" for r, n in groups.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
