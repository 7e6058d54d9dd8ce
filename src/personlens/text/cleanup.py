"""Clean-up pass for generated descriptions.

``clean_description`` repairs what small decoders typically get wrong, in this order:

1. repeated phrases collapse: "a black jacket a black jacket" -> "a black jacket",
   "black and black" -> "black", "the the" -> "the";
2. dangling fragments go: an article with no noun ("wearing a and blue jeans" -> "wearing
   blue jeans", "carrying a." -> ""), a preposition/participle with no object ("with ,",
   "wearing."), doubled or stray conjunctions ("and and", "and ,", a leading "and");
3. punctuation and spacing: no space before ``, . ; : ! ?``, one after, repeated marks merged
   (", ." -> "."), leading marks dropped;
4. "a"/"an" agree with the next word ("a elderly" -> "an elderly");
5. every sentence starts with a capital letter and the text ends with a period (a trailing
   comma or semicolon becomes one).

The input may be any text; words keep their case except the capitalised sentence starts.
Empty input (or input with no words) gives "".
"""
from __future__ import annotations

import re

_TOKEN = re.compile(r"[A-Za-z0-9]+(?:['-][A-Za-z0-9]+)*|[.,;:!?]|[^\sA-Za-z0-9.,;:!?]+")
PUNCT = {".", ",", ";", ":", "!", "?"}
END = {".", "!", "?"}
ARTICLES = {"a", "an", "the"}
CONJ = {"and", "or"}
# words that need something after them
NEEDS_OBJECT = {"with", "wearing", "carrying", "pushing", "pulling", "holding", "in", "of",
                "has", "is", "wears", "carries", "shows", "a", "an", "the", "and", "or"}
PARTICIPLES = {"with", "wearing", "carrying", "pushing", "pulling", "holding"}
_A_EXCEPTIONS = {"one", "once", "uniform", "unicorn", "university", "user", "used", "useful",
                 "usual", "european", "eu"}
_AN_EXCEPTIONS = {"hour", "honest", "honour", "honor", "heir"}
MAX_PHRASE = 8


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _low(ws: list[str]) -> list[str]:
    return [w.lower() for w in ws]


def collapse_repeats(ws: list[str], max_n: int = MAX_PHRASE) -> list[str]:
    """Remove immediately repeated phrases ("X X", "X and X", "X , X") of up to ``max_n`` tokens."""
    ws = list(ws)
    changed = True
    while changed:
        changed = False
        low = _low(ws)
        for n in range(min(max_n, len(ws) // 2), 0, -1):
            for i in range(len(ws) - 2 * n + 1):
                a = low[i:i + n]
                if any(w in PUNCT for w in a[1:]):
                    continue  # a unit is a phrase (it may start with a mark), not "bag , a"
                if a == low[i + n:i + 2 * n]:
                    del ws[i + n:i + 2 * n]
                    changed = True
                    break
                # "X and X" / "X , X" (a list naming the same thing twice)
                after = low[i + 2 * n + 1] if i + 2 * n + 1 < len(low) else None
                if (i + 2 * n + 1 <= len(ws) and low[i + n] in (CONJ | {","})
                        and a == low[i + n + 1:i + 2 * n + 1] and any(w not in PUNCT for w in a)
                        and (after is None or after in PUNCT or after in CONJ)
                        and (i == 0 or low[i - 1] in PUNCT or low[i - 1] in NEEDS_OBJECT)):
                    del ws[i + n:i + 2 * n + 1]
                    changed = True
                    break
            if changed:
                break
    return ws


def drop_dangling(ws: list[str]) -> list[str]:
    """Remove articles, prepositions and conjunctions left without what must follow them."""
    ws = list(ws)
    changed = True
    while changed:
        changed = False
        low = _low(ws)
        for i, w in enumerate(low):
            nxt = low[i + 1] if i + 1 < len(low) else None
            if w in ARTICLES and nxt in CONJ:            # "a and blue jeans" -> "blue jeans"
                del ws[i:i + 2]
            elif w in ARTICLES and (nxt is None or nxt in PUNCT or nxt in ARTICLES
                                    or nxt in PARTICIPLES or nxt in CONJ):
                del ws[i]
            elif w in NEEDS_OBJECT and (nxt is None or nxt in PUNCT):
                del ws[i]                               # "wearing ." / "with ," / "and ."
            elif w in CONJ and (nxt in CONJ or i == 0 or low[i - 1] in PUNCT and low[i - 1] in END):
                del ws[i]                               # "and and", leading "and"
            elif w in PARTICIPLES and nxt in CONJ:      # "wearing and blue jeans"
                del ws[i + 1]
            elif w in PARTICIPLES and nxt in PARTICIPLES:  # "with wearing a hat"
                del ws[i]
            elif w in PUNCT and (i == 0 or nxt in PUNCT):
                # leading mark, or two marks in a row: keep the stronger (the sentence end)
                if i == 0:
                    del ws[i]
                else:
                    del ws[i if (nxt in END or w not in END) else i + 1]
            else:
                continue
            changed = True
            break
    return ws


def fix_articles(ws: list[str]) -> list[str]:
    out = list(ws)
    for i, w in enumerate(out[:-1]):
        if w.lower() not in ("a", "an"):
            continue
        nxt = out[i + 1].lower()
        if not nxt[:1].isalpha():
            continue
        vowel = (nxt[0] in "aeiou" and nxt not in _A_EXCEPTIONS) or nxt in _AN_EXCEPTIONS
        want = "an" if vowel else "a"
        if w.lower() != want:
            out[i] = want.capitalize() if w[0].isupper() else want
    return out


def join_tokens(ws: list[str]) -> str:
    text = ""
    for w in ws:
        text += w if (not text or w in PUNCT) else " " + w
    return text


def capitalise_sentences(ws: list[str]) -> list[str]:
    out = list(ws)
    start = True
    for i, w in enumerate(out):
        if start and w[:1].isalpha():
            out[i] = w[:1].upper() + w[1:]
        if w not in PUNCT:
            start = False
        elif w in END:
            start = True
    return out


def clean_description(text: str) -> str:
    """The full clean-up pass (module docstring); idempotent."""
    ws = tokens(text)
    for _ in range(4):  # each step can expose work for another; stop when stable
        before = list(ws)
        ws = drop_dangling(collapse_repeats(ws))
        if ws == before:
            break
    if not any(w not in PUNCT for w in ws):
        return ""
    ws = fix_articles(ws)
    if ws[-1] in PUNCT - END:
        ws[-1] = "."
    elif ws[-1] not in END:
        ws.append(".")
    return join_tokens(capitalise_sentences(ws))
