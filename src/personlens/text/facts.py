"""PETA attribute labels as facts about a person, and the vocabulary captions use for them.

:func:`parse_labels` turns a label vector (or a dict of PETA names) into :class:`PersonFacts`,
contradictions removed (see ``personlens.text.captions``). The tables name the PETA
attributes of each kind (``UPPER_KINDS``, ``CARRIED``, ``AGES``, ...) and ``SYNONYMS`` the
words of each concept in the train and eval styles of captions.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..data.schema import PETA_SCHEMA

__all__ = [
    "STYLES", "SYNONYMS", "TRAIN_ONLY_WORDS", "EVAL_ONLY_WORDS", "EVAL_FEMALE_TOP",
    "COLOUR_NAMES", "AGES", "UPPER_KINDS", "LOWER_KINDS", "FOOT_KINDS", "ACCESSORIES",
    "CARRIED", "CARRY_VERB", "Garment", "PersonFacts", "parse_labels",
]

STYLES = ("train", "eval")

COLOUR_NAMES = ("Black", "Blue", "Brown", "Green", "Grey", "Orange", "Pink", "Purple", "Red",
                "White", "Yellow")
AGES = ("personalLess15", "personalLess30", "personalLess45", "personalLess60",
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


EVAL_FEMALE_TOP = "blouse"  # eval only: sometimes the word for a woman's plain top
_SHARED_WORDS = {"hair"}  # also in hair phrases of both styles
TRAIN_ONLY_WORDS = frozenset(_words(0) - _words(1) - _SHARED_WORDS)
EVAL_ONLY_WORDS = frozenset(_words(1) - _words(0) - _SHARED_WORDS | {EVAL_FEMALE_TOP})

UPPER_KINDS = ("upperBodySuit", "upperBodyJacket", "upperBodySweater", "upperBodyTshirt",
               "upperBodyNoSleeve")
LOWER_KINDS = ("lowerBodyJeans", "lowerBodyShortSkirt", "lowerBodyLongSkirt",
               "lowerBodyHotPants", "lowerBodyShorts", "lowerBodyCapri", "lowerBodySuits",
               "lowerBodyTrousers")
FOOT_KINDS = ("footwearBoots", "footwearSandals", "footwearSneaker",
              "footwearLeatherShoes", "footwearShoes")
ACCESSORIES = ("accessoryHat", "accessoryMuffler", "accessorySunglasses",
               "accessoryHeadphone", "accessoryHairBand", "accessoryKerchief")
CARRIED = ("carryingBackpack", "carryingMessengerBag", "carryingOther", "carryingPlasticBags",
           "carryingFolder", "carryingUmbrella", "carryingSuitcase", "carryingBabyBuggy",
           "carryingShoppingTro", "carryingLuggageCase")
CARRY_VERB = {"carryingBabyBuggy": "push", "carryingShoppingTro": "pull",
              "carryingLuggageCase": "pull"}


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
    return tuple(c.lower() for c in COLOUR_NAMES if f"{part}{c}" in on)


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
    kind = next((k for k in UPPER_KINDS if k in on), None)
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
    kind = next((k for k in LOWER_KINDS if k in on), None)
    low_colours = _colours(on, "lowerBody")
    patterns = [p for p, n in (("plaid", "lowerBodyPlaid"), ("thinStripes",
                                                              "lowerBodyThinStripes")) if n in on]
    if kind is None and (low_colours or patterns):
        kind = "lower"
    if kind is not None:
        lower = Garment(kind, low_colours, tuple(patterns))

    footwear = None
    kind = next((k for k in FOOT_KINDS if k in on), None)
    foot_colours = _colours(on, "footwear")
    if kind is None and foot_colours:
        kind = "footwearShoes"
    if kind is not None:
        footwear = Garment(kind, foot_colours)

    carried = tuple(c for c in CARRIED if c in on)
    return PersonFacts(
        gender=gender,
        age=_one(on, AGES),
        hair_length=hair_length,
        hair_colours=hair_colours,
        upper=upper,
        lower=lower,
        footwear=footwear,
        stockings="footwearStocking" in on,
        accessories=tuple(a for a in ACCESSORIES if a in on),
        carried=carried,
        carrying_nothing="carryingNothing" in on and not carried,
    )
