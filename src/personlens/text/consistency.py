"""Read a description back into attributes, and check it against an attribute model.

* :func:`parse_description` turns English text ("The image shows a young female adult with
  long black hair wearing a red jacket and blue jeans, carrying a backpack.") into
  :class:`~personlens.text.captions.PersonFacts`, the same structure
  :func:`~personlens.text.captions.parse_labels` makes from labels, so text and labels
  compare field by field. It knows every word of ``SYNONYMS`` (train and eval wording), the
  structured form of :func:`~personlens.text.captions.structured_description`, and is
  forgiving about everything else (unknown words are ignored).
* :func:`asserted_attributes` lists what a text claims as PETA attributes: ``True`` for things
  it says, ``False`` for the alternatives it excludes ("female" excludes ``personalMale``).
* :func:`check_consistency` compares those claims with an attribute model's probabilities
  and returns the contradictions; :func:`reconcile` flags or fixes them.

Contradiction rules (``present`` = probability >= the attribute's threshold, 0.5 unless
given):

* exclusive groups (gender, age, hair length): the text's value ``t`` contradicts the model
  when ``t`` is not present and either another value of the group is present, or the model
  codes the group with ``t`` alone (PETA's standard 35 attributes have ``personalMale`` but no
  ``personalFemale``: "male" with p(personalMale) < 0.5 is a contradiction);
* everything else (garment types, colours, patterns, accessories, carried things): an
  attribute the text asserts contradicts the model when the model has it and it is not
  present; "carrying nothing" contradicts any present carried item. "top", "bottoms" and
  "shoes" claim no garment type: structured descriptions also use them for a garment known
  only by its colour.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .captions import structured_description
from .facts import ACCESSORIES as _ACCESSORIES, AGES as _AGES, CARRIED as _CARRIED
from .facts import COLOUR_NAMES as _COLOURS, FOOT_KINDS as _FOOT_KINDS
from .facts import LOWER_KINDS as _LOWER_KINDS, UPPER_KINDS as _UPPER_KINDS
from .facts import SYNONYMS, Garment, PersonFacts

COLOURS = tuple(c.lower() for c in _COLOURS)
MULTI = "multicoloured"
_MULTI_WORDS = {"multicoloured", "multicolored", "colourful", "colorful", "multi-coloured"}
_TOKEN = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*|[.,;:!?]")

_MALE = {"male", "man", "men", "boy", "guy", "gentleman", "he", "his", "him"}
_FEMALE = {"female", "woman", "women", "girl", "lady", "she", "her"}
_AGE_WORDS = {"child": "personalLess15", "kid": "personalLess15", "youngster": "personalLess15",
              "boy": "personalLess15", "girl": "personalLess15",
              "young": "personalLess30", "middle-aged": "personalLess60", "mature": "personalLess60",
              "elderly": "personalLarger60", "old": "personalLarger60", "older": "personalLarger60"}
_HAIR_LENGTH = {"long": "long", "short": "short"}
_PATTERN_WORDS = {"plaid": "plaid", "checked": "plaid", "striped": "thinStripes",
                  "pinstriped": "thinStripes", "broad-striped": "thickStripes"}
_SLEEVE_WORDS = {"short-sleeved": "upperBodyShortSleeve", "short-sleeve": "upperBodyShortSleeve",
                 "long-sleeved": "upperBodyLongSleeve", "long-sleeve": "upperBodyLongSleeve"}

_PART = {**{k: "upper" for k in (*_UPPER_KINDS, "upper")},
         **{k: "lower" for k in (*_LOWER_KINDS, "lower")},
         **{k: "footwear" for k in _FOOT_KINDS},
         "footwearStocking": "stockings",
         **{k: "accessory" for k in _ACCESSORIES},
         **{k: "carried" for k in _CARRIED}}


def _phrase_table() -> list[tuple[tuple[str, ...], str]]:
    """(words, concept) for every garment/accessory/carried phrase, longest first."""
    table: dict[tuple[str, ...], str] = {}
    for concept in _PART:
        train, ev = SYNONYMS[concept]
        for phrase in (*train, *ev):
            key = tuple(_TOKEN.findall(phrase))
            table.setdefault(key, concept)
    table.setdefault(("blouse",), "upper")
    table.setdefault(("shopping", "bags"), "carryingPlasticBags")
    for extra, concept in ((("bags",), "carryingOther"), (("coat",), "upperBodyJacket"),
                           (("skirt",), "lowerBodyShortSkirt"), (("dress",), "lowerBodyLongSkirt")):
        table.setdefault(extra, concept)
    return sorted(table.items(), key=lambda kv: -len(kv[0]))


_PHRASES = _phrase_table()


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _split_colour(w: str) -> list[str] | None:
    """Colour words of one token ("black", "black-and-white") or None."""
    if w in COLOURS:
        return [w]
    if w in _MULTI_WORDS:
        return [MULTI]
    parts = w.split("-and-")
    if len(parts) == 2 and all(p in COLOURS for p in parts):
        return parts
    return None


def _modifiers(toks: list[str], end: int) -> tuple[list[str], list[str], str | None, bool, int]:
    """Walk left from ``end`` (exclusive) over colour/pattern/sleeve/v-neck words."""
    colours, patterns, sleeve, vneck = [], [], None, False
    i = end - 1
    while i >= 0:
        w = toks[i]
        c = _split_colour(w)
        if c:
            colours[:0] = c
        elif w == "and" and i > 0 and colours and _split_colour(toks[i - 1]):
            pass  # "black and white": the "and" inside a colour phrase
        elif w in _PATTERN_WORDS:
            patterns.insert(0, _PATTERN_WORDS[w])
        elif w in _SLEEVE_WORDS:
            sleeve = _SLEEVE_WORDS[w]
        elif w == "v-neck":
            vneck = True
        else:
            break
        i -= 1
    return colours, patterns, sleeve, vneck, i + 1


def _colour_tuple(colours: list[str]) -> tuple[str, ...]:
    if MULTI in colours:
        return (MULTI,)
    return tuple(dict.fromkeys(c for c in COLOURS if c in colours))  # canonical order


def parse_description(text: str) -> PersonFacts:
    """What a description says, as :class:`PersonFacts` (module docstring)."""
    toks = _tokens(text)
    words = set(toks)
    # --- hair (consumes its words, so "black hair" is not read as a garment colour)
    used = [False] * len(toks)
    hair_length, hair_colours = None, ()
    for i, w in enumerate(toks):
        if w == "hair" and not (i + 1 < len(toks) and toks[i + 1] in ("band",)):
            colours, _, _, _, start = _modifiers(toks, i)
            hair_colours = _colour_tuple(colours)
            if start > 0 and toks[start - 1] in _HAIR_LENGTH:
                hair_length = _HAIR_LENGTH[toks[start - 1]]
                start -= 1
            for j in range(start, i + 1):
                used[j] = True
            break
    if "bald" in words:
        hair_length, hair_colours = "bald", ()

    # --- garments, accessories, carried things (longest phrase first, left to right)
    found: list[tuple[str, Garment | None]] = []
    i = 0
    while i < len(toks):
        if used[i]:
            i += 1
            continue
        for phrase, concept in _PHRASES:
            n = len(phrase)
            if tuple(toks[i:i + n]) == phrase and not any(used[i:i + n]):
                part = _PART[concept]
                garment = None
                if part in ("upper", "lower", "footwear"):
                    colours, patterns, sleeve, vneck, _ = _modifiers(toks, i)
                    logo = toks[i + n:i + n + 3] in (["with", "a", "logo"],)
                    garment = Garment(concept, _colour_tuple(colours), tuple(dict.fromkeys(patterns)),
                                      sleeve if concept == "upper" else None,
                                      vneck and concept in ("upper", "upperBodyTshirt",
                                                            "upperBodySweater"),
                                      logo)
                found.append((concept, garment))
                for j in range(i, i + n):
                    used[j] = True
                i += n - 1
                break
        i += 1

    def first(part: str) -> Garment | None:
        return next((g for c, g in found if _PART[c] == part), None)

    upper = first("upper")
    if upper is None and ("logo" in words):
        upper = Garment("upper", logo=True)
    carried = tuple(c for c in _CARRIED if any(fc == c for fc, _ in found))
    nothing = "nothing" in words and not carried and any(
        toks[k] in ("carrying", "carries", "holding") and toks[k + 1] == "nothing"
        for k in range(len(toks) - 1))

    # --- subject: gender and age
    male, female = bool(words & _MALE), bool(words & _FEMALE)
    gender = "male" if male and not female else "female" if female and not male else None
    ages = {a for w, a in _AGE_WORDS.items() if w in words}
    if not ages and "adult" in words:
        ages = {"personalLess45"}
    age = next(iter(ages)) if len(ages) == 1 else None

    return PersonFacts(
        gender=gender, age=age, hair_length=hair_length, hair_colours=hair_colours,
        upper=upper, lower=first("lower"), footwear=first("footwear"),
        stockings=any(c == "footwearStocking" for c, _ in found),
        accessories=tuple(a for a in _ACCESSORIES if any(fc == a for fc, _ in found)),
        carried=carried, carrying_nothing=nothing,
    )


# --------------------------------------------------------------------------- claims

GENDER = ("personalMale", "personalFemale")
HAIR = ("hairLong", "hairShort", "hairBald")
EXCLUSIVE = {"gender": GENDER, "age": _AGES, "hair_length": HAIR}
_GENDER_ATTR = {"male": "personalMale", "female": "personalFemale"}
_HAIR_ATTR = {"long": "hairLong", "short": "hairShort", "bald": "hairBald"}
_PATTERN_ATTR = {("upper", "plaid"): "upperBodyPlaid", ("upper", "thinStripes"): "upperBodyThinStripes",
                 ("upper", "thickStripes"): "upperBodyThickStripes",
                 ("lower", "plaid"): "lowerBodyPlaid", ("lower", "thinStripes"): "lowerBodyThinStripes"}
# "top", "bottoms" and "shoes" are also the words for a garment known only by its colour
_GENERIC_KINDS = ("upper", "lower", "footwearShoes")
_COLOUR_PREFIX = {"upper": "upperBody", "lower": "lowerBody", "footwear": "footwear", "hair": "hair"}


def exclusive_value(facts: PersonFacts, group: str) -> str | None:
    """The attribute name a fact states for an exclusive group (or None)."""
    if group == "gender":
        return _GENDER_ATTR.get(facts.gender)
    if group == "age":
        return facts.age
    return _HAIR_ATTR.get(facts.hair_length)


def _colour_attrs(prefix: str, colours) -> list[str]:
    return [f"{prefix}{c.capitalize()}" for c in colours if c in COLOURS]


def item_claims(facts: PersonFacts) -> dict[str, tuple[str, str]]:
    """Non-exclusive claims: attribute -> (field, words), e.g. "upperBodyRed" -> ("upper_colour", "red")."""
    out: dict[str, tuple[str, str]] = {}
    for c in _colour_attrs("hair", facts.hair_colours):
        out[c] = ("hair_colour", c[4:].lower())
    for part, g in (("upper", facts.upper), ("lower", facts.lower), ("footwear", facts.footwear)):
        if g is None:
            continue
        if g.kind not in _GENERIC_KINDS:
            out[g.kind] = (f"{part}_type", SYNONYMS[g.kind][0][0])
        for c in _colour_attrs(_COLOUR_PREFIX[part], g.colours):
            out[c] = (f"{part}_colour", c[len(_COLOUR_PREFIX[part]):].lower())
        for p in g.patterns:
            if (part, p) in _PATTERN_ATTR:
                out[_PATTERN_ATTR[(part, p)]] = (f"{part}_pattern", SYNONYMS[p][0][0])
        if g.sleeve:
            out[g.sleeve] = ("upper_sleeve", SYNONYMS[g.sleeve][0][0])
        if g.vneck:
            out["upperBodyVNeck"] = ("upper_neck", "v-neck")
        if g.logo:
            out["upperBodyLogo"] = ("upper_logo", "logo")
    if facts.stockings:
        out["footwearStocking"] = ("footwear_type", "stockings")
    for a in facts.accessories:
        out[a] = ("accessory", SYNONYMS[a][0][0])
    for c in facts.carried:
        out[c] = ("carried", SYNONYMS[c][0][0])
    if facts.carrying_nothing:
        out["carryingNothing"] = ("carried", "nothing")
    return out


def asserted_attributes(facts_or_text: PersonFacts | str) -> dict[str, bool]:
    """PETA attribute -> True (the text says it) / False (the text rules it out)."""
    f = parse_description(facts_or_text) if isinstance(facts_or_text, str) else facts_or_text
    out: dict[str, bool] = {}
    for group, names in EXCLUSIVE.items():
        t = exclusive_value(f, group)
        if t is not None:
            out.update({n: n == t for n in names})
    out.update({a: True for a in item_claims(f)})
    if f.carrying_nothing:
        out.update({c: False for c in _CARRIED})
    return out


# --------------------------------------------------------------------------- consistency

@dataclass(frozen=True)
class Contradiction:
    field: str          # "gender", "age", "hair_length", "upper_colour", "carried", ...
    text: str           # what the text says ("female", "red", "backpack")
    attribute: str      # the model attribute that disagrees
    probability: float  # its probability
    present: bool       # whether the model says it is present

    def __str__(self) -> str:
        state = "present" if self.present else "absent"
        return (f"{self.field}: text says {self.text!r} but the model has {self.attribute} "
                f"{state} (p={self.probability:.2f})")

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "message": str(self)}


def _as_probabilities(attributes, known: Sequence[str] | None) -> dict[str, float]:
    if isinstance(attributes, Mapping):
        return {str(k): float(v) for k, v in attributes.items()}
    present = set(attributes)
    names = list(dict.fromkeys([*present, *(known or [])]))
    return {n: 1.0 if n in present else 0.0 for n in names}


_WORD_OF = {**{v: k for k, v in _GENDER_ATTR.items()}, **{v: k for k, v in _HAIR_ATTR.items()},
            "personalLess15": "child", "personalLess30": "young", "personalLess45": "adult (30-45)",
            "personalLess60": "middle-aged", "personalLarger60": "elderly"}


def check_consistency(text: str | PersonFacts, attributes: Mapping[str, float] | Sequence[str],
                      thresholds: Mapping[str, float] | None = None,
                      known: Sequence[str] | None = None) -> list[Contradiction]:
    """Contradictions between a text and predicted attributes (module docstring).

    ``attributes``: name -> probability, or the names of present attributes (then ``known``
    lists the attributes the model predicts, present or not). ``thresholds``: name ->
    decision threshold (default 0.5 for all).
    """
    facts = parse_description(text) if isinstance(text, str) else text
    probs = _as_probabilities(attributes, known)
    th = dict(thresholds or {})

    def present(a: str) -> bool:
        return probs[a] >= th.get(a, 0.5)

    out: list[Contradiction] = []
    for group, names in EXCLUSIVE.items():
        t = exclusive_value(facts, group)
        if t is None or (t in probs and present(t)):
            continue
        others = [n for n in names if n != t and n in probs and present(n)]
        if others:
            a = max(others, key=lambda n: probs[n])
            out.append(Contradiction(group, _WORD_OF[t], a, probs[a], True))
        elif t in probs and not any(n in probs for n in names if n != t):
            out.append(Contradiction(group, _WORD_OF[t], t, probs[t], False))
    claims = item_claims(facts)
    for a, (field, words) in claims.items():
        if a == "carryingNothing":
            hits = [c for c in _CARRIED if c in probs and present(c)]
            if hits:
                c = max(hits, key=lambda n: probs[n])
                out.append(Contradiction(field, words, c, probs[c], True))
            elif a in probs and not present(a):
                out.append(Contradiction(field, words, a, probs[a], False))
            continue
        if a in probs and not present(a):
            out.append(Contradiction(field, words, a, probs[a], False))
    return out


def reconcile(text: str, attributes: Mapping[str, float] | Sequence[str],
              thresholds: Mapping[str, float] | None = None, mode: str = "fix",
              known: Sequence[str] | None = None) -> tuple[str, list[Contradiction]]:
    """``mode="flag"``: the text unchanged and its contradictions. ``mode="fix"``: when there
    are contradictions, the facts of the text corrected by the model (a contradicted exclusive
    value replaced by the model's, a contradicted item removed) and written again as a
    structured description; a consistent text is returned unchanged."""
    if mode not in ("fix", "flag"):
        raise ValueError("mode must be 'fix' or 'flag'")
    facts = parse_description(text)
    found = check_consistency(facts, attributes, thresholds, known)
    if mode == "flag" or not found:
        return text, found
    return structured_description(fix_facts(facts, found)), found


def fix_facts(facts: PersonFacts, contradictions: Sequence[Contradiction]) -> PersonFacts:
    """``facts`` with every contradicted claim replaced by the model's value or removed."""
    f = facts
    bad = {c.attribute: c for c in contradictions}
    for c in contradictions:
        if c.field == "gender":
            g = {"personalMale": "male", "personalFemale": "female"}[c.attribute]
            f = dataclasses.replace(f, gender=g if c.present else {"male": "female",
                                                                   "female": "male"}[g])
        elif c.field == "age":
            f = dataclasses.replace(f, age=c.attribute if c.present else None)
        elif c.field == "hair_length":
            h = {"hairLong": "long", "hairShort": "short", "hairBald": "bald"}[c.attribute]
            f = dataclasses.replace(f, hair_length=h if c.present else
                                    ("short" if h == "long" else "long"))
    f = dataclasses.replace(
        f,
        hair_colours=tuple(x for x in f.hair_colours if f"hair{x.capitalize()}" not in bad),
        upper=_fix_garment(f.upper, "upperBody", "upper", bad),
        lower=_fix_garment(f.lower, "lowerBody", "lower", bad),
        footwear=_fix_garment(f.footwear, "footwear", "footwearShoes", bad),
        stockings=f.stockings and "footwearStocking" not in bad,
        accessories=tuple(a for a in f.accessories if a not in bad),
        carried=tuple(c for c in f.carried if c not in bad),
        carrying_nothing=f.carrying_nothing and not any(
            c.field == "carried" and c.text == "nothing" for c in contradictions),
    )
    return f


def _fix_garment(g: Garment | None, prefix: str, generic: str, bad: dict) -> Garment | None:
    if g is None:
        return None
    kind_bad = g.kind in bad
    kind = generic if kind_bad else g.kind
    part = "upper" if prefix == "upperBody" else "lower" if prefix == "lowerBody" else "footwear"
    colours = tuple(c for c in g.colours if f"{prefix}{c.capitalize()}" not in bad)
    patterns = tuple(p for p in g.patterns if _PATTERN_ATTR.get((part, p)) not in bad)
    sleeve = g.sleeve if g.sleeve not in bad and kind == "upper" else None
    vneck = g.vneck and "upperBodyVNeck" not in bad
    logo = g.logo and "upperBodyLogo" not in bad
    if kind_bad and not (colours or patterns or sleeve or vneck or logo):
        return None  # nothing left to say about it
    return Garment(kind, colours, patterns, sleeve, vneck, logo)
