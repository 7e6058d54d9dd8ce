"""Phrases and caption templates: how :class:`~personlens.text.facts.PersonFacts` become words.

:class:`Wording` chooses words (randomly within a style, or canonically); a template turns the
:class:`CaptionParts` of one caption into a sentence. ``TRAIN_TEMPLATES`` and
``EVAL_TEMPLATES`` are disjoint (``personlens.text.captions`` describes both).
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from .facts import EVAL_FEMALE_TOP, SYNONYMS, Garment, PersonFacts

__all__ = ["Wording", "CaptionParts", "Template", "TRAIN_TEMPLATES", "EVAL_TEMPLATES",
           "article", "item_chunks", "carry_text", "join_phrases"]

_THIRD_PERSON = {"carrying": "carries", "holding": "holds", "pushing": "pushes",
                 "pulling": "pulls", "wheeling": "wheels"}
_PLURAL_HEADS = {"jeans", "trousers", "pants", "slacks", "shorts", "denims", "bottoms", "shoes",
                 "sandals", "sneakers", "trainers", "boots", "stockings", "tights",
                 "sunglasses", "shades", "headphones", "earphones", "bags"}


# --------------------------------------------------------------------------- phrases

_LOGO = " with a logo"


def article(np_: str) -> str:
    """``np_`` with "a"/"an", or bare when its head noun is plural."""
    head = np_.split(" with ")[0]
    if head.split()[-1] in _PLURAL_HEADS:
        return np_
    return ("an " if np_[0] in "aeiou" else "a ") + np_


def item_chunks(item: str) -> list[str]:
    """"red top with a logo" -> ["red top", "logo"]."""
    return [item[:-len(_LOGO)], "logo"] if item.endswith(_LOGO) else [item]


def carry_text(carry: list[tuple[str, str]], finite: bool = False,
               oxford: bool = False) -> str:
    """[("carrying", "backpack"), ("carrying", "bag"), ("pushing", "pram")] ->
    "carrying a backpack and a bag and pushing a pram"."""
    groups: list[tuple[str, list[str]]] = []
    for verb, np_ in carry:
        if groups and groups[-1][0] == verb:
            groups[-1][1].append(article(np_))
        else:
            groups.append((verb, [article(np_)]))
    return join_phrases([f"{_THIRD_PERSON[v] if finite else v} {join_phrases(nps)}"
                         for v, nps in groups], oxford)


def join_phrases(items: list[str], oxford: bool = False) -> str:
    if len(items) <= 1:
        return "".join(items)
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return ", ".join(items[:-1]) + ("," if oxford else "") + " and " + items[-1]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


@dataclass
class Wording:
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
            noun = EVAL_FEMALE_TOP
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


@dataclass
class CaptionParts:
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
        return article(self.subj_bare)

    def with_hair(self) -> str:
        return article(self.hair) if self.hair == "bald head" else self.hair

    @property
    def wear(self) -> list[str]:
        return self.clothes + self.acc

    def wear_np(self, items: list[str] | None = None) -> str:
        items = self.wear if items is None else items
        return join_phrases([article(w) for w in items], self.oxford)

    def carry_groups(self, finite: bool = False) -> str:
        return carry_text(self.carry, finite, self.oxford)

    def carry_nps(self) -> list[str]:
        return [article(np_) for _, np_ in self.carry]

    def bare_items(self) -> list[str]:
        return ([self.hair] if self.hair else []) + list(self.wear) + [c for _, c in self.carry]

    def mentioned_chunks(self) -> tuple[str, ...]:
        chunks = [self.subj_bare]
        for item in self.bare_items():
            chunks += item_chunks(item)
        return tuple(dict.fromkeys(chunks))

    @property
    def pron(self) -> tuple[str, str, str]:
        """(pronoun, be, have)"""
        return {"male": ("he", "is", "has"), "female": ("she", "is", "has")}.get(
            self.gender, ("they", "are", "have"))


Template = Callable[[CaptionParts], "str | None"]


def _t_participle(p: CaptionParts) -> str:
    s = _cap(p.subj)
    if p.hair:
        s += f" with {p.with_hair()}"
    if p.wear:
        s += f" wearing {p.wear_np()}"
    if p.carry:
        s += f", {p.carry_groups()}" if (p.hair or p.wear) else f" {p.carry_groups()}"
    return s + "."


def _t_finite(p: CaptionParts) -> str | None:
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
        s += f" {_cap(pron)} {join_phrases([f'{v} {o}' for _, v, o in clauses[1:]])}."
    return s


def _t_in_with(p: CaptionParts) -> str | None:
    if not p.clothes:
        return None
    s = _cap(p.subj)
    if p.hair:
        s += f" with {p.with_hair()}"
    s += f" in {p.wear_np(p.clothes)}"
    withs = [article(a) for a in p.acc] + p.carry_nps()
    if withs:
        s += f", with {join_phrases(withs)}"
    return s + "."


def _t_keywords(p: CaptionParts) -> str:
    items = p.bare_items()
    p.rng.shuffle(items)
    items.insert(p.rng.randrange(len(items) + 1), p.subj_bare)
    return ", ".join(items)


def _t_wear_first(p: CaptionParts) -> str | None:
    if not p.wear:
        return None
    s = f"Wearing {p.wear_np()}, {p.subj}"
    if p.hair:
        s += f" with {p.with_hair()}"
    s += f" is {p.carry_groups()}." if p.carry else " walks by."
    return s


def _t_this_has(p: CaptionParts) -> str | None:
    clauses = []
    if p.hair:
        clauses.append(f"has {p.with_hair()}")
    if p.wear:
        clauses.append(f"wears {p.wear_np()}")
    if p.carry:
        clauses.append(p.carry_groups(finite=True))
    if not clauses:
        return None
    return f"This {p.subj_bare} {join_phrases(clauses)}."


def _e_looking_for(p: CaptionParts) -> str:
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
    return f"Looking for {p.subj}" + (f" who {join_phrases(rel, True)}" if rel else "") + "."


def _e_worn_by(p: CaptionParts) -> str | None:
    if not p.wear:
        return None
    s = f"{_cap(p.wear_np())} worn by {p.subj}"
    if p.hair:
        s += f" who has {p.with_hair()}"
    if p.carry:
        s += f", also {p.carry_groups()}"
    return s + "."


def _e_telegraphic(p: CaptionParts) -> str:
    frags = [p.subj_bare]
    if p.hair:
        frags.append(p.hair)
    if p.wear:
        frags.append(", ".join(p.wear))
    if p.carry:
        frags.append(", ".join(c for _, c in p.carry))
    return ". ".join(_cap(f) for f in frags) + "."


def _e_find_the(p: CaptionParts) -> str:
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
        s += f"; {pron} {join_phrases(rest, True)}"
    return s + "."


def _e_there_is(p: CaptionParts) -> str:
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
        s += f" {_cap(pron)} {be} {join_phrases(rest, True)}."
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
