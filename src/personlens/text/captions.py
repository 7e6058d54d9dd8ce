"""English descriptions of a person from PETA's 105 attribute labels.

Two products:

* :class:`CaptionGenerator` writes varied, natural captions and search-style queries
  ("A young woman in a red jacket with a backpack.", "red top, blue jeans, backpack"),
  often *partial* (only some attributes), as people type them. Captions for text-image
  training use ``style="train"``; ``style="eval"`` writes with templates training never used
  and partly different synonyms, so a search model can be evaluated on unseen phrasing.
* :func:`structured_description` writes one canonical sentence per label vector in a fixed
  PersonVLM-like style, "The image shows a male adult with black hair wearing a black jacket
  and blue jeans, carrying a backpack.", the target of a describer.

Both build on :mod:`personlens.text.facts` (labels -> :class:`PersonFacts`, the attribute
tables and ``SYNONYMS``) and :mod:`personlens.text.templates` (wording and the caption
templates); this module re-exports the public names it has always had.

Train/eval split of the wording (see ``TRAIN_TEMPLATES``, ``EVAL_TEMPLATES``, ``SYNONYMS``):

* Templates are disjoint. Train: participial ("A man with short hair wearing ..., carrying
  ..."), finite sentences ("A man is wearing .... He has ..."), "in ... with ...", keyword
  lists ("red top, blue jeans, backpack"), wear-first ("Wearing ..., a man ... is carrying
  ...") and "This man has ..., wears ... and carries ...". Eval: "Looking for ... who ...",
  "... worn by ...", telegraphic fragments ("Young woman. Long hair. Red top, jeans."),
  "Find the ... carrying ...; she wears ..." and "There is .... He is dressed in ...". Eval
  lists also use the serial (Oxford) comma.
* Synonyms: each concept lists its train words and eval words; the first train word is the
  canonical one (used by :meth:`CaptionGenerator.chunks` and :func:`structured_description`).
  The lists overlap for common words ("jacket", "jeans", "backpack") and differ elsewhere:
  words that only eval captions use are :data:`EVAL_ONLY_WORDS` ("gentleman", "pullover",
  "slacks", "knapsack", "stroller", "shades", "checked", ...), words only train captions use
  :data:`TRAIN_ONLY_WORDS` ("guy", "jumper", "rucksack", "pram", "trainers", "handbag", ...).

Labels: a ``dict`` of PETA attribute names to truth values (names missing from the dict count
as false), or an array over ``PETA_SCHEMA`` (values > 0.5 are true). Contradictions drop the
attribute they concern (male and female -> no gender; several ages -> no age; two hair lengths
-> no length); a garment type with no colour gets no colour word; several colours read "black
and white", three or more "multicoloured"; no labels at all give "A person."-like captions.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from .facts import (CARRY_VERB, EVAL_ONLY_WORDS, STYLES, SYNONYMS, TRAIN_ONLY_WORDS, Garment,
                    PersonFacts, parse_labels)
from .templates import (EVAL_TEMPLATES, TRAIN_TEMPLATES, CaptionParts, Template, Wording,
                        article, carry_text, item_chunks, join_phrases)

__all__ = [
    "STYLES", "Caption", "CaptionGenerator", "PersonFacts", "parse_labels",
    "structured_description", "SYNONYMS", "TRAIN_TEMPLATES", "EVAL_TEMPLATES",
    "TRAIN_ONLY_WORDS", "EVAL_ONLY_WORDS", "Garment", "Template",
]


@dataclass(frozen=True)
class Caption:
    """A generated caption, the template that wrote it and the chunks it mentions."""
    text: str
    template: str
    chunks: tuple[str, ...]


class CaptionGenerator:
    """Varied English captions from PETA labels.

    ``style="train"`` and ``style="eval"`` use disjoint templates and partly disjoint
    synonyms (module docstring). ``partial`` is the probability that a caption mentions only
    a random part of what is known (as real queries do); the rest mention everything.
    Deterministic: the same seed and the same sequence of calls give the same captions, and
    ``generate(..., key=k)`` gives captions that depend only on ``(seed, k)``, not on calls
    before it (use a sample index as ``key`` for order-independent training data).
    """

    def __init__(self, style: str = "train", seed: int = 0, partial: float = 0.7):
        if style not in STYLES:
            raise ValueError(f"unknown style {style!r}; choose from {STYLES}")
        if not 0.0 <= partial <= 1.0:
            raise ValueError("partial must be in [0, 1]")
        self.style = style
        self.seed = seed
        self.partial = partial
        self._rng = random.Random(f"{style}:{seed}")
        self.templates = TRAIN_TEMPLATES if style == "train" else EVAL_TEMPLATES

    # -- public ---------------------------------------------------------------
    def generate(self, labels, n: int = 1, key: int | str | None = None) -> list[str]:
        """``n`` captions (distinct where the labels allow it)."""
        return [c.text for c in self.sample(labels, n, key)]

    def sample(self, labels, n: int = 1, key: int | str | None = None) -> list[Caption]:
        """Like :meth:`generate`, with each caption's template and chunks."""
        if n < 0:
            raise ValueError("n must be >= 0")
        facts = labels if isinstance(labels, PersonFacts) else parse_labels(labels)
        rng = self._rng if key is None else random.Random(f"{self.style}:{self.seed}:{key}")
        out: list[Caption] = []
        seen: set[str] = set()
        for _ in range(n):
            for _attempt in range(8):
                cap = self._one(facts, rng)
                if cap.text not in seen:
                    break
            seen.add(cap.text)
            out.append(cap)
        return out

    def chunks(self, labels) -> list[str]:
        """Canonical adjective-noun chunks of everything the labels say, e.g.
        ``["young woman", "long black hair", "red jacket", "blue jeans", "backpack"]``.

        Style-independent and deterministic (canonical words, every known detail), without
        articles, like :func:`personlens.text.noun_chunks`.
        """
        facts = labels if isinstance(labels, PersonFacts) else parse_labels(labels)
        w = Wording("train")
        out = [w.subject(facts)]
        if (hair := w.hair(facts)):
            out.append(hair)
        for item in _worn_items(facts, w):
            out += item_chunks(item)
        out += [w.word(c) for c in facts.carried]
        return list(dict.fromkeys(out))

    # -- internals --------------------------------------------------------------
    def _one(self, f: PersonFacts, rng: random.Random) -> Caption:
        full = rng.random() >= self.partial
        w = Wording(self.style, rng, colour_p=1.0 if full else 0.85,
                    detail_p=1.0 if full else 0.6)
        gender = f.gender is not None and (full or rng.random() < 0.85)
        age = f.age is not None and (full or rng.random() < 0.5)
        facets: list[str] = []
        if f.hair_length or f.hair_colours:
            facets.append("hair")
        for name in ("upper", "lower", "footwear"):
            if getattr(f, name) is not None:
                facets.append(name)
        if f.stockings:
            facets.append("stockings")
        facets += list(f.accessories) + list(f.carried)
        if f.carrying_nothing:
            facets.append("nothing")
        if not full and facets:
            keep = [x for x in facets if rng.random() < 0.55]
            facets = keep or [rng.choice(facets)]
        hair = w.hair(f) if "hair" in facets else None
        wear = [w.garment(getattr(f, name), female=f.gender == "female")
                for name in ("upper", "lower", "footwear") if name in facets]
        if "stockings" in facets:
            wear.append(w.word("footwearStocking"))
        acc = [w.word(a) for a in f.accessories if a in facets]
        carry = [(w.word(CARRY_VERB.get(c, "carry")), w.word(c))
                 for c in f.carried if c in facets]
        parts = CaptionParts(w.subject(f, gender, age), f.gender if gender else None, hair,
                             wear, acc, carry, oxford=self.style == "eval", rng=rng)
        names = list(self.templates)
        rng.shuffle(names)
        for name in names:
            text = self.templates[name](parts)
            if text is not None:
                break
        if "nothing" in facets and text.endswith("."):
            text = text[:-1] + (", carrying nothing." if self.style == "train"
                                else ", empty-handed.")
        return Caption(text, name, parts.mentioned_chunks())


def _worn_items(f: PersonFacts, w: Wording) -> list[str]:
    out: list[str] = []
    for g in (f.upper, f.lower, f.footwear):
        if g is not None:
            out.append(w.garment(g))
    if f.stockings:
        out.append(w.word("footwearStocking"))
    out += [w.word(a) for a in f.accessories]
    return out


# --------------------------------------------------------------------------- structured

_AGE_WORDS = {  # age -> (adjective before the gender, noun)
    "personalLess15": ("", "child"), "personalLess30": ("young", "adult"),
    "personalLess45": ("", "adult"), "personalLess60": ("middle-aged", "adult"),
    "personalLarger60": ("elderly", "adult"), None: ("", "person"),
}


def structured_description(labels) -> str:
    """One canonical sentence in a fixed PersonVLM-like form, e.g. "The image shows a male
    adult with black hair wearing a black jacket and blue jeans, carrying a backpack."

    Subject: age adjective + gender + "adult"/"child"/"person" ("a young female adult",
    "a male child", "an elderly adult", "a person"). Then hair, worn items (upper, lower,
    footwear, stockings, accessories), carried items ("pushing a baby buggy", "pulling a luggage case").
    Deterministic; canonical words only; "The image shows a person." when nothing is known.
    """
    f = labels if isinstance(labels, PersonFacts) else parse_labels(labels)
    w = Wording("train")
    adj, noun = _AGE_WORDS[f.age]
    subject = " ".join(filter(None, [adj, f.gender, noun]))
    s = f"The image shows {article(subject)}"
    hair = w.hair(f)
    if hair:
        s += f" with {article(hair) if hair == 'bald head' else hair}"
    worn = _worn_items(f, w)
    if worn:
        s += f" wearing {join_phrases([article(x) for x in worn])}"
    if f.carried:
        carry = [(w.word(CARRY_VERB.get(c, "carry")), w.word(c)) for c in f.carried]
        s += ("," if (hair or worn) else "") + f" {carry_text(carry)}"
    return s + "."
