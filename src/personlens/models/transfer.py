"""How far each attribute of an attribute model can be trusted on cameras it never saw.

An attribute model learns some attributes in a way that carries over to new cameras (gender,
shorts, short sleeves) and others only for the cameras it trained on (age bands, "carrying
other", footwear kinds): on PETA's leave-sub-datasets-out folds a third of the 35 attributes
fall to a ROC AUC near 0.5 on the held-out cameras while scoring 0.9 on PETA's own val split
(docs/results.md). A user with new cameras needs to know which is which, and neither
thresholds nor ``personlens adapt`` can lift an AUC of 0.5, so the model directory carries the
measurement (``new_cameras.json``, written by ``scripts/attribute_transfer.py`` from the folds'
per-attribute AUCs) and ``info``, the HTTP API and the page show it.

The file is a measurement of the *recipe* (fold models trained like the shipped one, each
scored on cameras it never saw), not of the shipped weights themselves, which saw every PETA
camera: it says so in ``measured_on``. It sits beside the config, not in it, so adding it
changes no model version. The ratings are made here, at read time, so that every reader uses
the same cut-offs.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from .hub import TRANSFER_FILE, _atomic_write_text

# AUC cut-offs of the ratings. 0.6: below it an attribute ranks a random positive above a
# random negative barely more often than a coin (the 11 attributes docs/results.md lists as
# near chance are all under it); 0.7: the usual "acceptable discrimination" line.
HOLDS_AUC = 0.70
CHANCE_AUC = 0.60
# fewer held-out positives than this over all folds: the AUC is too noisy to rate
MIN_POSITIVES = 20
RATINGS = ("holds", "weak", "near chance", "too few examples")


@dataclass(frozen=True)
class AttributeTransfer:
    name: str
    auc_seen: float | None        # on the cameras the fold models trained on (val split)
    auc_new_cameras: float        # on the held-out cameras, mean over the folds
    positives: int                # held-out positives the AUC rests on, all folds together

    @property
    def rating(self) -> str:
        if self.positives < MIN_POSITIVES:
            return "too few examples"
        if self.auc_new_cameras >= HOLDS_AUC:
            return "holds"
        return "weak" if self.auc_new_cameras >= CHANCE_AUC else "near chance"

    def to_dict(self) -> dict:
        return {"auc_seen": self.auc_seen, "auc_new_cameras": self.auc_new_cameras,
                "positives": self.positives, "rating": self.rating}


@dataclass(frozen=True)
class TransferReport:
    """Per-attribute transfer to new cameras, read from a model directory."""

    attributes: dict[str, AttributeTransfer]
    measured_on: str
    command: str

    @classmethod
    def from_dict(cls, d: dict, where: str = "new_cameras.json") -> "TransferReport":
        if not isinstance(d, dict) or not isinstance(d.get("attributes"), dict):
            raise ValueError(f"{where} holds no 'attributes' table")
        out = {}
        for name, a in d["attributes"].items():
            try:
                auc = float(a["auc_new_cameras"])
                seen = None if a.get("auc_seen") is None else float(a["auc_seen"])
                pos = int(a.get("positives", 0))
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{where}: attribute {name!r} is malformed ({e})") from None
            if not (0.0 <= auc <= 1.0) or math.isnan(auc):
                raise ValueError(f"{where}: attribute {name!r} has AUC {auc} outside [0, 1]")
            out[name] = AttributeTransfer(name, seen, auc, pos)
        return cls(out, str(d.get("measured_on", "")), str(d.get("command", "")))

    def to_dict(self) -> dict:
        return {"measured_on": self.measured_on, "command": self.command,
                "cut_offs": {"holds": HOLDS_AUC, "near_chance_below": CHANCE_AUC,
                             "min_positives": MIN_POSITIVES},
                "attributes": {n: a.to_dict() for n, a in self.attributes.items()}}

    def by_rating(self, names: list[str] | None = None) -> dict[str, list[str]]:
        """rating -> attribute names (in ``names``' order, else the file's); attributes the
        file does not know are left out."""
        groups: dict[str, list[str]] = {r: [] for r in RATINGS}
        for n in names if names is not None else list(self.attributes):
            if n in self.attributes:
                groups[self.attributes[n].rating].append(n)
        return groups


def write_transfer(model_dir: str | Path, report: dict) -> Path:
    """Write ``new_cameras.json`` (checked by reading it back first)."""
    TransferReport.from_dict(report)
    path = Path(model_dir) / TRANSFER_FILE
    _atomic_write_text(path, json.dumps(report, indent=1))
    return path


def read_transfer(model_dir: str | Path, names: list[str] | None = None) -> TransferReport | None:
    """The model's transfer report, or None when it has none (or it was measured for other
    attributes than ``names``: a report of another attribute set must not be shown)."""
    path = Path(model_dir) / TRANSFER_FILE
    if not path.is_file():
        return None
    try:
        report = TransferReport.from_dict(json.loads(path.read_text()), str(path))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise ValueError(f"{path} is not readable JSON: {e}") from None
    if names is not None and set(report.attributes) != set(names):
        return None
    return report


__all__ = ["AttributeTransfer", "CHANCE_AUC", "HOLDS_AUC", "MIN_POSITIVES", "RATINGS",
           "TRANSFER_FILE", "TransferReport", "read_transfer", "write_transfer"]
