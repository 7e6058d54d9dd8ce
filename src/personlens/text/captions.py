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
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ..data.schema import PETA_SCHEMA

__all__ = [
    "STYLES", "Caption", "CaptionGenerator", "PersonFacts", "parse_labels",
    "structured_description", "SYNONYMS", "TRAIN_TEMPLATES", "EVAL_TEMPLATES",
    "TRAIN_ONLY_WORDS", "EVAL_ONLY_WORDS",
]

STYLES = ("train", "eval")

_COLOURS = ("Black", "Blue", "Brown", "Green", "Grey", "Orange", "Pink", "Purple", "Red",
            "White", "Yellow")
_AGES = ("personalLess15", "personalLess30", "personalLess45", "personalLess60",
         "personalLarger60")

# concept -> (train words, eval words); the first train word is canonical.
SYNONYMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # people
    "male": (("man", "guy"), ("man", "gentleman", "male")),
    "female": (("woman", "lady"), ("woman", "female")),
    "person": (("person", "pedestrian"), ("person", "individual")),
    "boy": (("boy",), ("boy", "little boy")),
    "girl": (("girl",), ("girl", "little girl")),
    "child": (("child", "kid"), ("child", "youngster")),
    "age30": (("young",), ("young",)),
    "age45": (("",), ("",)),
    "age60": (("middle-aged",), ("middle-aged", "mature")),
    "age60+": (("elderly", "old"), ("elderly", "older")),
    # upper body
    "upperBodySuit": (("suit jacket", "suit"), ("suit jacket", "blazer")),
    "upperBodyJacket": (("jacket", "coat"), ("jacket", "coat")),
    "upperBodySweater": (("sweater", "jumper"), ("sweater", "pullover")),
    "upperBodyTshirt": (("t-shirt", "tee"), ("t-shirt", "tee shirt")),
    "upperBodyNoSleeve": (("sleeveless top",), ("tank top", "sleeveless top")),
    "upper": (("top", "shirt"), ("top", "shirt")),
    "upperBodyShortSleeve": (("short-sleeved",), ("short-sleeve",)),
    "upperBodyLongSleeve": (("long-sleeved",), ("long-sleeve",)),
    "upperBodyVNeck": (("v-neck",), ("v-neck",)),
    "plaid": (("plaid",), ("checked",)),
    "thinStripes": (("striped",), ("pinstriped",)),
    "thickStripes": (("striped",), ("broad-striped",)),
    # lower body
    "lowerBodyJeans": (("jeans",), ("jeans", "denims")),
    "lowerBodyShortSkirt": (("short skirt", "skirt"), ("short skirt", "miniskirt")),
    "lowerBodyLongSkirt": (("long skirt",), ("long skirt", "maxi skirt")),
    "lowerBodyHotPants": (("hot pants",), ("hot pants", "very short shorts")),
    "lowerBodyShorts": (("shorts",), ("shorts",)),
    "lowerBodyCapri": (("capri pants",), ("capri pants", "cropped trousers")),
    "lowerBodySuits": (("suit trousers", "formal trousers"), ("suit trousers", "dress pants")),
    "lowerBodyTrousers": (("trousers", "pants"), ("trousers", "pants", "slacks")),
    "lower": (("bottoms",), ("bottoms",)),
    # footwear
    "footwearBoots": (("boots",), ("boots",)),
    "footwearSandals": (("sandals",), ("sandals",)),
    "footwearSneaker": (("sneakers", "trainers"), ("sneakers", "running shoes")),
    "footwearLeatherShoes": (("leather shoes",), ("leather shoes", "dress shoes")),
    "footwearShoes": (("shoes",), ("shoes",)),
    "footwearStocking": (("stockings",), ("stockings", "tights")),
    # accessories (worn)
    "accessoryHat": (("hat", "cap"), ("hat",)),
    "accessoryMuffler": (("scarf", "muffler"), ("scarf",)),
    "accessorySunglasses": (("sunglasses",), ("sunglasses", "shades")),
    "accessoryHeadphone": (("headphones",), ("headphones", "earphones")),
    "accessoryHairBand": (("hair band",), ("headband",)),
    "accessoryKerchief": (("kerchief",), ("kerchief", "neckerchief")),
    # carried
    "carryingBackpack": (("backpack", "rucksack"), ("backpack", "knapsack")),
    "carryingMessengerBag": (("messenger bag", "shoulder bag"), ("messenger bag", "satchel")),
    "carryingOther": (("bag", "handbag"), ("bag", "purse")),
    "carryingPlasticBags": (("plastic bags",), ("plastic bags", "shopping bags")),
    "carryingFolder": (("folder",), ("folder", "file folder")),
    "carryingUmbrella": (("umbrella",), ("umbrella",)),
    "carryingSuitcase": (("suitcase",), ("suitcase",)),
    "carryingBabyBuggy": (("baby buggy", "pram"), ("baby buggy", "stroller")),
    "carryingShoppingTro": (("shopping trolley",), ("shopping trolley", "shopping cart")),
    "carryingLuggageCase": (("luggage case", "wheeled suitcase"),
                            ("luggage case", "rolling suitcase")),
    # verbs for carried things
    "carry": (("carrying",), ("carrying", "holding")),
    "push": (("pushing",), ("pushing",)),
    "pull": (("pulling",), ("pulling", "wheeling")),
}


def _words(style_index: int) -> set[str]:
    return {w for tr_ev in SYNONYMS.values() for phrase in tr_ev[style_index]
            for w in phrase.split()}


_EVAL_FEMALE_TOP = "blouse"  # eval only: sometimes the word for a woman's plain top
_SHARED_WORDS = {"hair"}  # also in hair phrases of both styles
TRAIN_ONLY_WORDS = frozenset(_words(0) - _words(1) - _SHARED_WORDS)
EVAL_ONLY_WORDS = frozenset(_words(1) - _words(0) - _SHARED_WORDS | {_EVAL_FEMALE_TOP})

_UPPER_KINDS = ("upperBodySuit", "upperBodyJacket", "upperBodySweater", "upperBodyTshirt",
                "upperBodyNoSleeve")
_LOWER_KINDS = ("lowerBodyJeans", "lowerBodyShortSkirt", "lowerBodyLongSkirt",
                "lowerBodyHotPants", "lowerBodyShorts", "lowerBodyCapri", "lowerBodySuits",
                "lowerBodyTrousers")
_FOOT_KINDS = ("footwearBoots", "footwearSandals", "footwearSneaker",
               "footwearLeatherShoes", "footwearShoes")
_ACCESSORIES = ("accessoryHat", "accessoryMuffler", "accessorySunglasses",
                "accessoryHeadphone", "accessoryHairBand", "accessoryKerchief")
_CARRIED = ("carryingBackpack", "carryingMessengerBag", "carryingOther", "carryingPlasticBags",
            "carryingFolder", "carryingUmbrella", "carryingSuitcase", "carryingBabyBuggy",
            "carryingShoppingTro", "carryingLuggageCase")
_CARRY_VERB = {"carryingBabyBuggy": "push", "carryingShoppingTro": "pull",
               "carryingLuggageCase": "pull"}
_THIRD_PERSON = {"carrying": "carries", "holding": "holds", "pushing": "pushes",
                 "pulling": "pulls", "wheeling": "wheels"}
_PLURAL_HEADS = {"jeans", "trousers", "pants", "slacks", "shorts", "denims", "bottoms", "shoes",
                 "sandals", "sneakers", "trainers", "boots", "stockings", "tights",
                 "sunglasses", "shades", "headphones", "earphones", "bags"}


# --------------------------------------------------------------------------- facts

@dataclass(frozen=True)
class Garment:
    """One garment: a concept key (type) plus what is known about it."""
    kind: str                      # SYNONYMS key ("upperBodyJacket", "upper", ...)
    colours: tuple[str, ...] = ()  # lower-case colour names
    patterns: tuple[str, ...] = () # SYNONYMS keys ("plaid", "thinStripes", ...)
    sleeve: str | None = None      # "upperBodyShortSleeve" / "upperBodyLongSleeve"
    vneck: bool = False
    logo: bool = False


@dataclass(frozen=True)
class PersonFacts:
    """What a label vector says about a person, contradictions removed."""
    gender: str | None = None      # "male" / "female"
    age: str | None = None         # one of the PETA age attribute names
    hair_length: str | None = None # "long" / "short" / "bald"
    hair_colours: tuple[str, ...] = ()
    upper: Garment | None = None
    lower: Garment | None = None
    footwear: Garment | None = None
    stockings: bool = False
    accessories: tuple[str, ...] = ()
    carried: tuple[str, ...] = ()
    carrying_nothing: bool = False

    @property
    def empty(self) -> bool:
        return self == PersonFacts()


def _label_set(labels) -> set[str]:
    if isinstance(labels, Mapping):
        out = set()
        for name, value in labels.items():
            PETA_SCHEMA.index(name)  # KeyError (with a hint) for unknown names
            v = float(value) if value is not None else 0.0
            if v > 0.5:
                out.add(name)
        return out
    arr = np.asarray(labels, dtype=np.float64).ravel()
    if arr.shape[0] != len(PETA_SCHEMA):
        raise ValueError(f"label array has {arr.shape[0]} values; PETA_SCHEMA has "
                         f"{len(PETA_SCHEMA)} (pass a dict for a subset of attributes)")
    return {PETA_SCHEMA.names[i] for i in np.flatnonzero(np.nan_to_num(arr) > 0.5)}


def _colours(on: set[str], part: str) -> tuple[str, ...]:
    return tuple(c.lower() for c in _COLOURS if f"{part}{c}" in on)


def _one(on: set[str], names) -> str | None:
    hit = [n for n in names if n in on]
    return hit[0] if len(hit) == 1 else None


def parse_labels(labels) -> PersonFacts:
    """Turn PETA labels (dict or array over ``PETA_SCHEMA``) into :class:`PersonFacts`."""
    on = _label_set(labels)
    gender = _one(on, ("personalMale", "personalFemale"))
    gender = {"personalMale": "male", "personalFemale": "female", None: None}[gender]
    hair_length = {"hairLong": "long", "hairShort": "short", "hairBald": "bald", None: None}[
        _one(on, ("hairLong", "hairShort", "hairBald"))]
    hair_colours = () if hair_length == "bald" else _colours(on, "hair")

    upper = None
    kind = next((k for k in _UPPER_KINDS if k in on), None)
    up_colours = _colours(on, "upperBody")
    patterns = []
    if "upperBodyPlaid" in on:
        patterns.append("plaid")
    stripes = [s for s, n in (("thinStripes", "upperBodyThinStripes"),
                              ("thickStripes", "upperBodyThickStripes")) if n in on]
    if stripes:
        patterns.append(stripes[0] if len(stripes) == 1 else "thinStripes")
    sleeve = _one(on, ("upperBodyShortSleeve", "upperBodyLongSleeve"))
    vneck = "upperBodyVNeck" in on
    logo = "upperBodyLogo" in on
    if kind is None and (up_colours or patterns or sleeve or vneck or logo):
        kind = "upper"
    if kind is not None:
        if kind not in ("upper",):  # sleeves are implied by jackets, t-shirts, ...
            sleeve = None
        upper = Garment(kind, up_colours, tuple(patterns), sleeve,
                        vneck and kind in ("upper", "upperBodyTshirt", "upperBodySweater"), logo)

    lower = None
    kind = next((k for k in _LOWER_KINDS if k in on), None)
    low_colours = _colours(on, "lowerBody")
    patterns = [p for p, n in (("plaid", "lowerBodyPlaid"), ("thinStripes",
                                                              "lowerBodyThinStripes")) if n in on]
    if kind is None and (low_colours or patterns):
        kind = "lower"
    if kind is not None:
        lower = Garment(kind, low_colours, tuple(patterns))

    footwear = None
    kind = next((k for k in _FOOT_KINDS if k in on), None)
    foot_colours = _colours(on, "footwear")
    if kind is None and foot_colours:
        kind = "footwearShoes"
    if kind is not None:
        footwear = Garment(kind, foot_colours)

    carried = tuple(c for c in _CARRIED if c in on)
    return PersonFacts(
        gender=gender,
        age=_one(on, _AGES),
        hair_length=hair_length,
        hair_colours=hair_colours,
        upper=upper,
        lower=lower,
        footwear=footwear,
        stockings="footwearStocking" in on,
        accessories=tuple(a for a in _ACCESSORIES if a in on),
        carried=carried,
        carrying_nothing="carryingNothing" in on and not carried,
    )


# --------------------------------------------------------------------------- phrases

_LOGO = " with a logo"


def _article(np_: str) -> str:
    """``np_`` with "a"/"an", or bare when its head noun is plural."""
    head = np_.split(" with ")[0]
    if head.split()[-1] in _PLURAL_HEADS:
        return np_
    return ("an " if np_[0] in "aeiou" else "a ") + np_


def _item_chunks(item: str) -> list[str]:
    """"red top with a logo" -> ["red top", "logo"]."""
    return [item[:-len(_LOGO)], "logo"] if item.endswith(_LOGO) else [item]


def _carry_text(carry: list[tuple[str, str]], finite: bool = False,
                oxford: bool = False) -> str:
    """[("carrying", "backpack"), ("carrying", "bag"), ("pushing", "pram")] ->
    "carrying a backpack and a bag and pushing a pram"."""
    groups: list[tuple[str, list[str]]] = []
    for verb, np_ in carry:
        if groups and groups[-1][0] == verb:
            groups[-1][1].append(_article(np_))
        else:
            groups.append((verb, [_article(np_)]))
    return _join([f"{_THIRD_PERSON[v] if finite else v} {_join(nps)}" for v, nps in groups],
                 oxford)


def _join(items: list[str], oxford: bool = False) -> str:
    if len(items) <= 1:
        return "".join(items)
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return ", ".join(items[:-1]) + ("," if oxford else "") + " and " + items[-1]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


@dataclass
class _Wording:
    """Chooses words: randomly within a style, or canonically (``rng=None``)."""
    style: str
    rng: random.Random | None = None
    colour_p: float = 1.0
    detail_p: float = 1.0

    def word(self, concept: str) -> str:
        options = SYNONYMS[concept][0 if self.style == "train" else 1]
        return options[0] if self.rng is None else self.rng.choice(options)

    def keep(self, p: float) -> bool:
        return self.rng is None or self.rng.random() < p

    def colour(self, colours: tuple[str, ...]) -> str:
        if not colours:
            return ""
        if len(colours) == 1:
            return colours[0]
        if len(colours) == 2:
            sep = " and " if self.rng is None or self.style == "train" or \
                self.rng.random() < 0.5 else "-and-"
            return f"{colours[0]}{sep}{colours[1]}"
        return "multicoloured" if self.style == "train" or self.rng is None else "colourful"

    def garment(self, g: Garment, female: bool = False) -> str:
        """Bare noun phrase for a garment ("short-sleeved red top with a logo")."""
        noun = self.word(g.kind)
        if g.kind == "upper" and self.style == "eval" and female and self.rng is not None \
                and self.rng.random() < 0.3:
            noun = _EVAL_FEMALE_TOP
        mods = []
        if g.sleeve and self.keep(self.detail_p * 0.7):
            mods.append(self.word(g.sleeve))
        if g.vneck and self.keep(self.detail_p * 0.7):
            mods.append(self.word("upperBodyVNeck"))
        if g.colours and self.keep(self.colour_p):
            mods.append(self.colour(g.colours))
        for p in g.patterns:
            if self.keep(self.detail_p):
                w = self.word(p)
                if w not in mods:
                    mods.append(w)
        out = " ".join(mods + [noun])
        if g.logo and self.keep(self.detail_p * 0.7):
            out += _LOGO
        return out

    def subject(self, f: PersonFacts, gender: bool = True, age: bool = True) -> str:
        """Bare subject noun phrase ("young woman", "elderly gentleman", "person")."""
        g = f.gender if gender else None
        a = f.age if age else None
        if a == "personalLess15":
            return self.word({"male": "boy", "female": "girl", None: "child"}[g])
        noun = self.word(g or "person")
        adj = {"personalLess30": "age30", "personalLess45": "age45", "personalLess60": "age60",
               "personalLarger60": "age60+", None: None}[a]
        adj = self.word(adj) if adj else ""
        return f"{adj} {noun}".strip()

    def hair(self, f: PersonFacts) -> str | None:
        if f.hair_length == "bald":
            return "bald head"
        parts = []
        if f.hair_length:
            parts.append(f.hair_length)
        if f.hair_colours and self.keep(self.colour_p):
            parts.append(self.colour(f.hair_colours))
        return " ".join(parts + ["hair"]) if parts else None


# --------------------------------------------------------------------------- captions

@dataclass(frozen=True)
class Caption:
    """A generated caption, the template that wrote it and the chunks it mentions."""
    text: str
    template: str
    chunks: tuple[str, ...]


@dataclass
class _Parts:
    """What one caption mentions, in bare and article forms."""
    subj_bare: str
    gender: str | None
    hair: str | None                  # bare ("long black hair", "bald head")
    clothes: list[str]                # bare garment phrases ("red top with a logo")
    acc: list[str]                    # bare accessory phrases ("sunglasses")
    carry: list[tuple[str, str]]      # (participle, bare phrase)
    oxford: bool
    rng: random.Random

    # forms ---------------------------------------------------------------
    @property
    def subj(self) -> str:
        return _article(self.subj_bare)

    def with_hair(self) -> str:
        return _article(self.hair) if self.hair == "bald head" else self.hair

    @property
    def wear(self) -> list[str]:
        return self.clothes + self.acc

    def wear_np(self, items: list[str] | None = None) -> str:
        items = self.wear if items is None else items
        return _join([_article(w) for w in items], self.oxford)

    def carry_groups(self, finite: bool = False) -> str:
        return _carry_text(self.carry, finite, self.oxford)

    def carry_nps(self) -> list[str]:
        return [_article(np_) for _, np_ in self.carry]

    def bare_items(self) -> list[str]:
        return ([self.hair] if self.hair else []) + list(self.wear) + [c for _, c in self.carry]

    def mentioned_chunks(self) -> tuple[str, ...]:
        chunks = [self.subj_bare]
        for item in self.bare_items():
            chunks += _item_chunks(item)
        return tuple(dict.fromkeys(chunks))

    @property
    def pron(self) -> tuple[str, str, str]:
        """(pronoun, be, have)"""
        return {"male": ("he", "is", "has"), "female": ("she", "is", "has")}.get(
            self.gender, ("they", "are", "have"))


Template = Callable[[_Parts], "str | None"]


def _t_participle(p: _Parts) -> str:
    s = _cap(p.subj)
    if p.hair:
        s += f" with {p.with_hair()}"
    if p.wear:
        s += f" wearing {p.wear_np()}"
    if p.carry:
        s += f", {p.carry_groups()}" if (p.hair or p.wear) else f" {p.carry_groups()}"
    return s + "."


def _t_finite(p: _Parts) -> str | None:
    pron, be, have = p.pron
    clauses = []  # (verb for a singular subject, verb after the pronoun, object)
    if p.hair:
        clauses.append(("has", have, p.with_hair()))
    if p.wear:
        clauses.append(("is", be, f"wearing {p.wear_np()}"))
    if p.carry:
        clauses.append(("is", be, p.carry_groups()))
    if not clauses:
        return None
    p.rng.shuffle(clauses)
    s = f"{_cap(p.subj)} {clauses[0][0]} {clauses[0][2]}."
    if clauses[1:]:
        s += f" {_cap(pron)} {_join([f'{v} {o}' for _, v, o in clauses[1:]])}."
    return s


def _t_in_with(p: _Parts) -> str | None:
    if not p.clothes:
        return None
    s = _cap(p.subj)
    if p.hair:
        s += f" with {p.with_hair()}"
    s += f" in {p.wear_np(p.clothes)}"
    withs = [_article(a) for a in p.acc] + p.carry_nps()
    if withs:
        s += f", with {_join(withs)}"
    return s + "."


def _t_keywords(p: _Parts) -> str:
    items = p.bare_items()
    p.rng.shuffle(items)
    items.insert(p.rng.randrange(len(items) + 1), p.subj_bare)
    return ", ".join(items)


def _t_wear_first(p: _Parts) -> str | None:
    if not p.wear:
        return None
    s = f"Wearing {p.wear_np()}, {p.subj}"
    if p.hair:
        s += f" with {p.with_hair()}"
    s += f" is {p.carry_groups()}." if p.carry else " walks by."
    return s


def _t_this_has(p: _Parts) -> str | None:
    clauses = []
    if p.hair:
        clauses.append(f"has {p.with_hair()}")
    if p.wear:
        clauses.append(f"wears {p.wear_np()}")
    if p.carry:
        clauses.append(p.carry_groups(finite=True))
    if not clauses:
        return None
    return f"This {p.subj_bare} {_join(clauses)}."


def _e_looking_for(p: _Parts) -> str:
    rel = []
    if p.clothes and (p.acc or p.rng.random() < 0.5):
        rel.append(f"wears {p.wear_np()}")
    elif p.clothes:
        rel.append(f"is dressed in {p.wear_np()}")
    elif p.acc:
        rel.append(f"is wearing {p.wear_np()}")
    if p.hair:
        rel.append(f"has {p.with_hair()}")
    if p.carry:
        rel.append(f"is {p.carry_groups()}")
    p.rng.shuffle(rel)
    return f"Looking for {p.subj}" + (f" who {_join(rel, True)}" if rel else "") + "."


def _e_worn_by(p: _Parts) -> str | None:
    if not p.wear:
        return None
    s = f"{_cap(p.wear_np())} worn by {p.subj}"
    if p.hair:
        s += f" who has {p.with_hair()}"
    if p.carry:
        s += f", also {p.carry_groups()}"
    return s + "."


def _e_telegraphic(p: _Parts) -> str:
    frags = [p.subj_bare]
    if p.hair:
        frags.append(p.hair)
    if p.wear:
        frags.append(", ".join(p.wear))
    if p.carry:
        frags.append(", ".join(c for _, c in p.carry))
    return ". ".join(_cap(f) for f in frags) + "."


def _e_find_the(p: _Parts) -> str:
    pron, be, have = p.pron
    s = f"Find the {p.subj_bare}"
    if p.carry:
        s += f" {p.carry_groups()}"
    rest = []
    if p.wear:
        rest.append(f"{'wear' if pron == 'they' else 'wears'} {p.wear_np()}")
    if p.hair:
        rest.append(f"{have} {p.with_hair()}")
    if rest:
        s += f"; {pron} {_join(rest, True)}"
    return s + "."


def _e_there_is(p: _Parts) -> str:
    pron, be, _ = p.pron
    s = f"There is {p.subj}"
    if p.hair:
        s += f" with {p.with_hair()}"
    s += "."
    rest = []
    if p.clothes:
        rest.append(f"dressed in {p.wear_np(p.clothes)}")
    if p.acc:
        rest.append(f"wearing {p.wear_np(p.acc)}")
    if p.carry:
        rest.append(p.carry_groups())
    if rest:
        s += f" {_cap(pron)} {be} {_join(rest, True)}."
    return s


TRAIN_TEMPLATES: dict[str, Template] = {
    "participle": _t_participle,
    "finite": _t_finite,
    "in_with": _t_in_with,
    "keywords": _t_keywords,
    "wear_first": _t_wear_first,
    "this_has": _t_this_has,
}
EVAL_TEMPLATES: dict[str, Template] = {
    "looking_for": _e_looking_for,
    "worn_by": _e_worn_by,
    "telegraphic": _e_telegraphic,
    "find_the": _e_find_the,
    "there_is": _e_there_is,
}
assert not set(TRAIN_TEMPLATES) & set(EVAL_TEMPLATES)


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
        w = _Wording("train")
        out = [w.subject(facts)]
        if (hair := w.hair(facts)):
            out.append(hair)
        for item in _worn_items(facts, w):
            out += _item_chunks(item)
        out += [w.word(c) for c in facts.carried]
        return list(dict.fromkeys(out))

    # -- internals --------------------------------------------------------------
    def _one(self, f: PersonFacts, rng: random.Random) -> Caption:
        full = rng.random() >= self.partial
        w = _Wording(self.style, rng, colour_p=1.0 if full else 0.85,
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
        carry = [(w.word(_CARRY_VERB.get(c, "carry")), w.word(c))
                 for c in f.carried if c in facets]
        parts = _Parts(w.subject(f, gender, age), f.gender if gender else None, hair, wear,
                       acc, carry, oxford=self.style == "eval", rng=rng)
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


def _worn_items(f: PersonFacts, w: _Wording) -> list[str]:
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
    w = _Wording("train")
    adj, noun = _AGE_WORDS[f.age]
    subject = " ".join(filter(None, [adj, f.gender, noun]))
    s = f"The image shows {_article(subject)}"
    hair = w.hair(f)
    if hair:
        s += f" with {_article(hair) if hair == 'bald head' else hair}"
    worn = _worn_items(f, w)
    if worn:
        s += f" wearing {_join([_article(x) for x in worn])}"
    if f.carried:
        carry = [(w.word(_CARRY_VERB.get(c, "carry")), w.word(c)) for c in f.carried]
        s += ("," if (hair or worn) else "") + f" {_carry_text(carry)}"
    return s + "."
