"""Attribute schemas: each attribute has a dataset name, a group and an English phrase.

The phrase is what prompts and descriptions say ("wearing a hat"); the group lets
callers reason about mutually related attributes (all upper-body colours, ...).
"""
from __future__ import annotations

from dataclasses import dataclass

GROUPS = (
    "gender", "age", "upper", "lower", "colour", "carrying",
    "accessory", "footwear", "hair", "other",
)


@dataclass(frozen=True)
class Attribute:
    name: str
    group: str
    phrase: str

    def __post_init__(self):
        if self.group not in GROUPS:
            raise ValueError(f"attribute {self.name!r}: unknown group {self.group!r}")
        if not self.phrase:
            raise ValueError(f"attribute {self.name!r}: empty phrase")


class AttributeSchema:
    """An ordered set of attributes with lookup by name."""

    def __init__(self, attributes: list[Attribute]):
        self.attributes = list(attributes)
        self._index = {a.name: i for i, a in enumerate(self.attributes)}
        if len(self._index) != len(self.attributes):
            raise ValueError("duplicate attribute names in schema")

    def __len__(self) -> int:
        return len(self.attributes)

    def __iter__(self):
        return iter(self.attributes)

    def __getitem__(self, key: int | str) -> Attribute:
        if isinstance(key, str):
            return self.attributes[self.index(key)]
        return self.attributes[key]

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.attributes]

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            close = [n for n in self._index if n.lower() == name.lower()]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise KeyError(f"unknown attribute {name!r}{hint}") from None

    def subset(self, names: list[str]) -> "AttributeSchema":
        return AttributeSchema([self[n] for n in names])


_COLOURS = ("Black", "Blue", "Brown", "Green", "Grey", "Orange", "Pink", "Purple",
            "Red", "White", "Yellow")

# PETA's 105 attribute names (order of PETA.mat) with group and phrase.
_PETA_FIXED: dict[str, tuple[str, str]] = {
    "personalLess15": ("age", "a child under 15"),
    "personalLess30": ("age", "a young adult under 30"),
    "personalLess45": ("age", "an adult between 30 and 45"),
    "personalLess60": ("age", "a middle-aged adult between 45 and 60"),
    "personalLarger60": ("age", "an elderly person over 60"),
    "personalMale": ("gender", "a man"),
    "personalFemale": ("gender", "a woman"),
    "carryingBackpack": ("carrying", "carrying a backpack"),
    "carryingOther": ("carrying", "carrying something"),
    "carryingMessengerBag": ("carrying", "carrying a messenger bag"),
    "carryingNothing": ("carrying", "carrying nothing"),
    "carryingPlasticBags": ("carrying", "carrying plastic bags"),
    "carryingBabyBuggy": ("carrying", "pushing a baby buggy"),
    "carryingShoppingTro": ("carrying", "pulling a shopping trolley"),
    "carryingUmbrella": ("carrying", "carrying an umbrella"),
    "carryingFolder": ("carrying", "carrying a folder"),
    "carryingLuggageCase": ("carrying", "pulling a luggage case"),
    "carryingSuitcase": ("carrying", "carrying a suitcase"),
    "lowerBodyCasual": ("lower", "wearing casual trousers or skirt"),
    "upperBodyCasual": ("upper", "wearing a casual top"),
    "lowerBodyFormal": ("lower", "wearing formal trousers"),
    "upperBodyFormal": ("upper", "wearing a formal top"),
    "accessoryHat": ("accessory", "wearing a hat"),
    "accessoryMuffler": ("accessory", "wearing a scarf"),
    "accessoryNothing": ("accessory", "wearing no accessories"),
    "accessorySunglasses": ("accessory", "wearing sunglasses"),
    "accessoryHeadphone": ("accessory", "wearing headphones"),
    "accessoryHairBand": ("accessory", "wearing a hair band"),
    "accessoryKerchief": ("accessory", "wearing a kerchief"),
    "upperBodyJacket": ("upper", "wearing a jacket"),
    "upperBodyLogo": ("upper", "wearing a top with a logo"),
    "upperBodyPlaid": ("upper", "wearing a plaid top"),
    "upperBodyShortSleeve": ("upper", "wearing short sleeves"),
    "upperBodyThinStripes": ("upper", "wearing a top with thin stripes"),
    "upperBodyThickStripes": ("upper", "wearing a top with thick stripes"),
    "upperBodyTshirt": ("upper", "wearing a t-shirt"),
    "upperBodyOther": ("upper", "wearing some other top"),
    "upperBodyVNeck": ("upper", "wearing a v-neck top"),
    "upperBodyLongSleeve": ("upper", "wearing long sleeves"),
    "upperBodyNoSleeve": ("upper", "wearing a sleeveless top"),
    "upperBodySuit": ("upper", "wearing a suit jacket"),
    "upperBodySweater": ("upper", "wearing a sweater"),
    "lowerBodyJeans": ("lower", "wearing jeans"),
    "lowerBodyShorts": ("lower", "wearing shorts"),
    "lowerBodyShortSkirt": ("lower", "wearing a short skirt"),
    "lowerBodyTrousers": ("lower", "wearing trousers"),
    "lowerBodyCapri": ("lower", "wearing capri pants"),
    "lowerBodyHotPants": ("lower", "wearing hot pants"),
    "lowerBodyLongSkirt": ("lower", "wearing a long skirt"),
    "lowerBodyPlaid": ("lower", "wearing plaid trousers"),
    "lowerBodyThinStripes": ("lower", "wearing striped trousers"),
    "lowerBodySuits": ("lower", "wearing suit trousers"),
    "footwearLeatherShoes": ("footwear", "wearing leather shoes"),
    "footwearSandals": ("footwear", "wearing sandals"),
    "footwearShoes": ("footwear", "wearing shoes"),
    "footwearSneaker": ("footwear", "wearing sneakers"),
    "footwearBoots": ("footwear", "wearing boots"),
    "footwearStocking": ("footwear", "wearing stockings"),
    "hairLong": ("hair", "with long hair"),
    "hairShort": ("hair", "with short hair"),
    "hairBald": ("hair", "bald"),
}

_COLOUR_PARTS = {
    "upperBody": ("a {c} top", "colour"),
    "lowerBody": ("{c} trousers or skirt", "colour"),
    "hair": ("{c} hair", "colour"),
    "footwear": ("{c} shoes", "colour"),
}


def _peta_attribute(name: str) -> Attribute:
    if name in _PETA_FIXED:
        group, phrase = _PETA_FIXED[name]
        return Attribute(name, group, phrase)
    for part, (template, group) in _COLOUR_PARTS.items():
        colour = name[len(part):]
        if name.startswith(part) and colour in _COLOURS:
            verb = "with" if part == "hair" else "wearing"
            return Attribute(name, group, f"{verb} {template.format(c=colour.lower())}")
    raise KeyError(f"no phrase for PETA attribute {name!r}")


# The order in PETA.mat (``peta.attribute``); the first 35 are the standard subset.
PETA_ATTRIBUTE_NAMES: tuple[str, ...] = (
    "personalLess30", "personalLess45", "personalLess60", "personalLarger60",
    "carryingBackpack", "carryingOther", "lowerBodyCasual", "upperBodyCasual",
    "lowerBodyFormal", "upperBodyFormal", "accessoryHat", "upperBodyJacket",
    "lowerBodyJeans", "footwearLeatherShoes", "upperBodyLogo", "hairLong",
    "personalMale", "carryingMessengerBag", "accessoryMuffler", "accessoryNothing",
    "carryingNothing", "upperBodyPlaid", "carryingPlasticBags", "footwearSandals",
    "footwearShoes", "lowerBodyShorts", "upperBodyShortSleeve", "lowerBodyShortSkirt",
    "footwearSneaker", "upperBodyThinStripes", "accessorySunglasses", "lowerBodyTrousers",
    "upperBodyTshirt", "upperBodyOther", "upperBodyVNeck",
    *(f"upperBody{c}" for c in _COLOURS), *(f"lowerBody{c}" for c in _COLOURS),
    *(f"hair{c}" for c in _COLOURS), *(f"footwear{c}" for c in _COLOURS),
    "accessoryHeadphone", "personalLess15", "carryingBabyBuggy", "hairBald",
    "footwearBoots", "lowerBodyCapri", "carryingShoppingTro", "carryingUmbrella",
    "personalFemale", "carryingFolder", "accessoryHairBand", "lowerBodyHotPants",
    "accessoryKerchief", "lowerBodyLongSkirt", "upperBodyLongSleeve", "lowerBodyPlaid",
    "lowerBodyThinStripes", "carryingLuggageCase", "upperBodyNoSleeve", "hairShort",
    "footwearStocking", "upperBodySuit", "carryingSuitcase", "lowerBodySuits",
    "upperBodySweater", "upperBodyThickStripes",
)
PETA_STANDARD_35: tuple[str, ...] = PETA_ATTRIBUTE_NAMES[:35]

PETA_SCHEMA = AttributeSchema([_peta_attribute(n) for n in PETA_ATTRIBUTE_NAMES])

# PA-100K's 26 attributes, spelled as in its annotation.mat.
_PA100K: tuple[tuple[str, str, str], ...] = (
    ("Female", "gender", "a woman"),
    ("AgeOver60", "age", "an elderly person over 60"),
    ("Age18-60", "age", "an adult between 18 and 60"),
    ("AgeLess18", "age", "a child under 18"),
    ("Front", "other", "seen from the front"),
    ("Side", "other", "seen from the side"),
    ("Back", "other", "seen from the back"),
    ("Hat", "accessory", "wearing a hat"),
    ("Glasses", "accessory", "wearing glasses"),
    ("HandBag", "carrying", "carrying a handbag"),
    ("ShoulderBag", "carrying", "carrying a shoulder bag"),
    ("Backpack", "carrying", "carrying a backpack"),
    ("HoldObjectsInFront", "carrying", "holding objects in front"),
    ("ShortSleeve", "upper", "wearing short sleeves"),
    ("LongSleeve", "upper", "wearing long sleeves"),
    ("UpperStride", "upper", "wearing a striped top"),
    ("UpperLogo", "upper", "wearing a top with a logo"),
    ("UpperPlaid", "upper", "wearing a plaid top"),
    ("UpperSplice", "upper", "wearing a patchwork top"),
    ("LowerStripe", "lower", "wearing striped trousers"),
    ("LowerPattern", "lower", "wearing patterned trousers"),
    ("LongCoat", "upper", "wearing a long coat"),
    ("Trousers", "lower", "wearing trousers"),
    ("Shorts", "lower", "wearing shorts"),
    ("Skirt&Dress", "lower", "wearing a skirt or dress"),
    ("boots", "footwear", "wearing boots"),
)
PA100K_SCHEMA = AttributeSchema([Attribute(*row) for row in _PA100K])


def schema_for(names: list[str]) -> AttributeSchema:
    """Schema for a list of names, from the known datasets; unknown names get a generic phrase."""
    known = {a.name: a for a in (*PETA_SCHEMA, *PA100K_SCHEMA)}
    return AttributeSchema([known.get(n) or Attribute(n, "other", n) for n in names])
