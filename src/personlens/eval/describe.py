"""Evaluate a describer end to end: images -> the ``personlens describe`` path -> metrics.

* Caption metrics against the structured description of the ground-truth labels (one
  reference per image): BLEU-1..4, ROUGE-L and CIDEr(-D) with pycocoevalcap's scorers on
  text tokenised by its PTB tokenizer (Java). If Java / the tokenizer fails, a simple
  tokenisation is used instead (lower-case words, punctuation removed, hyphenated words kept
  whole) and the report says so (``"tokenizer": "simple"``). SPICE is not computed.
* Attribute accuracy parsed back from the text (``personlens.text.consistency``):
  gender, age group, hair length, upper-body colour, lower-body colour (the colour set must
  match: one or two named colours, or "multicoloured" for three and more), backpack, and
  any bag (backpack, messenger bag, other bag, plastic bags); the PAR model's own accuracy on
  the same fields from its probabilities (exclusive groups by argmax, or the complement when
  it codes a group with one attribute; binary fields by its calibrated thresholds; ``null``
  where it does not predict the field, e.g. colours for the standard 35 attributes). Fields
  with an unknown or contradictory ground truth are left out of that field's count.
* Contradictions between the generated text and the attributes of the same pass: the rate of
  images with at least one, per field, and again after the consistency fix.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..text.captions import Garment, PersonFacts, parse_labels, structured_description
from ..text.facts import AGES as _AGES
from ..text.consistency import COLOURS, MULTI, check_consistency, parse_description
from ..text.vocab import tokenize

FIELDS = ("gender", "age", "hair_length", "upper_colour", "lower_colour", "backpack", "bag")
BAGS = ("carryingBackpack", "carryingMessengerBag", "carryingOther", "carryingPlasticBags")
CAPTION_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr")


# --------------------------------------------------------------------------- fields

def colour_key(g: Garment | None) -> str | None:
    if g is None or not g.colours:
        return None
    cs = [c for c in g.colours]
    if MULTI in cs or len(cs) >= 3:
        return MULTI
    return "+".join(sorted(cs))


def fact_fields(f: PersonFacts) -> dict:
    return {"gender": f.gender, "age": f.age, "hair_length": f.hair_length,
            "upper_colour": colour_key(f.upper), "lower_colour": colour_key(f.lower),
            "backpack": "carryingBackpack" in f.carried,
            "bag": any(c in f.carried for c in BAGS)}


def text_fields(text: str) -> dict:
    return fact_fields(parse_description(text))


def label_fields(labels) -> dict:
    return fact_fields(parse_labels(labels))


def par_fields(probs: dict[str, float], thresholds: dict[str, float] | None = None) -> dict:
    """The PAR model's value per field (``"n/a"`` where it has no attribute for the field)."""
    th = thresholds or {}

    def on(a):
        return probs[a] >= th.get(a, 0.5)

    def exclusive(pairs):  # [(attr, value)] -> value
        known = [(a, v) for a, v in pairs if a in probs]
        if not known:
            return "n/a"
        if len(known) == 1:  # one attribute codes the group: its complement is the other value
            a, v = known[0]
            others = [w for b, w in pairs if b != a]
            return v if on(a) else (others[0] if len(others) == 1 else None)
        return max(known, key=lambda av: probs[av[0]])[1]

    out = {
        "gender": exclusive([("personalMale", "male"), ("personalFemale", "female")]),
        "age": exclusive([(a, a) for a in _AGES]),
        "hair_length": exclusive([("hairLong", "long"), ("hairShort", "short")]),
    }
    for field, prefix in (("upper_colour", "upperBody"), ("lower_colour", "lowerBody")):
        names = [f"{prefix}{c.capitalize()}" for c in COLOURS if f"{prefix}{c.capitalize()}" in probs]
        if not names:
            out[field] = "n/a"
        else:
            cs = tuple(n[len(prefix):].lower() for n in names if on(n))
            out[field] = colour_key(Garment("upper", cs)) if cs else None
    out["backpack"] = on("carryingBackpack") if "carryingBackpack" in probs else "n/a"
    bags = [b for b in BAGS if b in probs]
    out["bag"] = any(on(b) for b in bags) if bags else "n/a"
    return out


def field_accuracy(predicted: list[dict], truth: list[dict]) -> dict:
    """Per field: accuracy (%) over images with a known ground truth, and that count."""
    out = {}
    for f in FIELDS:
        pairs = [(p[f], t[f]) for p, t in zip(predicted, truth) if t[f] is not None]
        if any(p == "n/a" for p, _ in pairs):
            out[f] = {"accuracy": None, "n": len(pairs), "note": "not predicted by this model"}
            continue
        acc = 100.0 * float(np.mean([p == t for p, t in pairs])) if pairs else None
        out[f] = {"accuracy": acc, "n": len(pairs)}
    return out


def text_field_accuracy(texts: list[str], labels) -> dict:
    return field_accuracy([text_fields(t) for t in texts], [label_fields(r) for r in labels])


# --------------------------------------------------------------------------- caption metrics

def simple_tokenize(text: str) -> str:
    return " ".join(w for w in tokenize(text) if w[0].isalnum())


def _tokenize_all(refs: dict, hyps: dict, tokenizer: str) -> tuple[dict, dict, str]:
    if tokenizer == "ptb":
        try:
            from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

            tok = PTBTokenizer()
            r = tok.tokenize({k: [{"caption": c} for c in v] for k, v in refs.items()})
            h = tok.tokenize({k: [{"caption": c} for c in v] for k, v in hyps.items()})
            if set(r) == set(refs) and set(h) == set(hyps) and \
                    all(len(v) == len(refs[k]) for k, v in r.items()):
                return r, h, "ptb"
            reason = "tokenizer output did not match its input"
        except Exception as e:  # Java missing, read-only package folder, ...
            reason = f"{type(e).__name__}: {e}"
        tokenizer = f"simple (PTB tokenizer failed: {reason})"
    return ({k: [simple_tokenize(c) for c in v] for k, v in refs.items()},
            {k: [simple_tokenize(c) for c in v] for k, v in hyps.items()}, tokenizer)


def caption_scores(references: list[str | list[str]], hypotheses: list[str],
                   tokenizer: str = "ptb") -> dict:
    """BLEU-1..4, ROUGE-L, CIDEr (x100) of hypotheses against one or more references each."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if len(references) != len(hypotheses) or not hypotheses:
        raise ValueError("need one reference (list) per hypothesis, and at least one")
    refs = {i: [r] if isinstance(r, str) else list(r) for i, r in enumerate(references)}
    hyps = {i: [h] for i, h in enumerate(hypotheses)}
    refs, hyps, used = _tokenize_all(refs, hyps, tokenizer)
    hyps = {k: [v[0] if v[0].strip() else "<empty>"] for k, v in hyps.items()}
    bleu, _ = Bleu(4).compute_score(refs, hyps, verbose=0)
    rouge, _ = Rouge().compute_score(refs, hyps)
    cider, _ = Cider().compute_score(refs, hyps)
    scores = [*bleu, rouge, cider]
    return {**{m: 100.0 * float(s) for m, s in zip(CAPTION_METRICS, scores)}, "tokenizer": used}


# --------------------------------------------------------------------------- evaluation

def evaluate_describer(describer, dataset, batch_size: int = 32, limit: int | None = None,
                       tokenizer: str = "ptb", progress: bool = True) -> dict:
    """All metrics on a PETA split read with ``attributes="all"`` (module docstring)."""
    from ..data.schema import PETA_ATTRIBUTE_NAMES
    from ..inference.predict import PredictionError

    if list(dataset.schema.names) != list(PETA_ATTRIBUTE_NAMES):
        raise ValueError("evaluation needs the dataset read with all 105 PETA attributes")
    n = len(dataset) if limit is None else min(limit, len(dataset))
    paths, labels = dataset.paths[:n], dataset.labels[:n]
    results = []
    t0 = time.time()
    it = describer.describe_paths(paths, batch_size=batch_size)
    for r in tqdm(it, total=n, desc="describing", unit="img", disable=not progress):
        if isinstance(r, PredictionError):
            raise ValueError(f"cannot evaluate: {r.image}: {r.error}")
        results.append(r)
    seconds = time.time() - t0
    th = describer.thresholds
    refs = [structured_description(row) for row in labels]
    final = [r.text for r in results]
    raw = [r.generated or r.text for r in results]
    truth = [label_fields(row) for row in labels]

    raw_found = [check_consistency(t, r.attributes, th) for t, r in zip(raw, results)]
    final_found = [check_consistency(t, r.attributes, th) for t, r in zip(final, results)]
    by_field = Counter(c.field for cs in raw_found for c in cs)

    out = {
        "num_images": n,
        "seconds": round(seconds, 1), "images_per_s": round(n / max(seconds, 1e-9), 2),
        "caption_metrics": caption_scores(refs, final, tokenizer),
        "text_attribute_accuracy": field_accuracy([text_fields(t) for t in final], truth),
        "par_attribute_accuracy": field_accuracy(
            [par_fields(r.attributes, th) for r in results], truth),
        "contradiction_rate": 100.0 * float(np.mean([bool(c) for c in raw_found])),
        "contradictions_per_image": float(np.mean([len(c) for c in raw_found])),
        "contradictions_by_field": dict(sorted(by_field.items(), key=lambda kv: -kv[1])),
        "contradiction_rate_after_fix": 100.0 * float(np.mean([bool(c) for c in final_found])),
        "exact_match": 100.0 * float(np.mean([a.lower() == b.lower() for a, b in zip(final, refs)])),
        "examples": [{"image": r.image, "reference": ref, "text": r.text,
                      **({"generated": r.generated} if r.generated != r.text else {}),
                      "contradictions": [c["message"] for c in r.contradictions]}
                     for r, ref in list(zip(results, refs))[:12]],
    }
    if raw != final:
        out["caption_metrics_before_fix"] = caption_scores(refs, raw, tokenizer)
        out["text_attribute_accuracy_before_fix"] = field_accuracy([text_fields(t) for t in raw], truth)
    return out


def write_report(results: dict, json_path: str | Path, meta: dict) -> Path:
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({**meta, **results}, indent=2))
    plot_path = json_path.with_suffix(".png")
    plot_report(results, plot_path, meta.get("title", "descriptions"))
    return plot_path


def plot_report(results: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [1, 1.6]})
    cm = results["caption_metrics"]
    vals = [cm[m] for m in CAPTION_METRICS]
    bars = a1.bar(CAPTION_METRICS, vals, color="#4477aa")
    for b, v in zip(bars, vals):
        a1.text(b.get_x() + b.get_width() / 2, v, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    a1.set_title(f"caption metrics (tokenizer: {cm['tokenizer'].split(' ')[0]})")
    a1.tick_params(axis="x", rotation=30)

    x = np.arange(len(FIELDS) + 1)
    ta, pa = results["text_attribute_accuracy"], results["par_attribute_accuracy"]
    tv = [ta[f]["accuracy"] or 0 for f in FIELDS] + [0]
    pv = [pa[f]["accuracy"] if pa[f]["accuracy"] is not None else np.nan for f in FIELDS] + [0]
    w = 0.38
    a2.bar(x[:-1] - w / 2, tv[:-1], w, label="parsed from the text", color="#4477aa")
    a2.bar(x[:-1] + w / 2, pv[:-1], w, label="attribute model", color="#ee6677")
    a2.bar(x[-1], results["contradiction_rate"], w, color="#bbbbbb",
           label=f"contradiction rate ({results['contradiction_rate']:.1f}%)")
    a2.set_xticks(x, [*FIELDS, "contradictions"], rotation=30, fontsize=8)
    a2.set_ylim(0, 100)
    a2.set_ylabel("%")
    a2.set_title("attribute accuracy (n/a bars: not predicted by the attribute model)")
    a2.legend(fontsize=8, loc="lower left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
