"""Split person descriptions and search queries into adjective-noun chunks.

``noun_chunks("a woman in a red coat with a black backpack")`` gives
``["woman", "red coat", "black backpack"]``.

Rule-based on purpose: no English POS-tagger model can be installed offline (spaCy and
NLTK models come from outside the package registries; the PyPI re-uploads of spaCy models
are unofficial), and a general tagger knows nothing about this domain anyway ("tee", "shades",
"messenger bag"). The chunker runs on a small lexicon:

* head nouns: people ("woman", "guy"), garments, footwear, accessories, carried things, hair;
* modifiers: colours (with "dark"/"light" shades and "-ish" forms) and other adjectives
  ("long", "striped", "short-sleeved"), plus nouns that only modify another noun
  ("shopping" trolley, "messenger" bag, "suit" jacket);
* multi-word nouns merged first ("t shirt", "hair band", "luggage case").

A chunk is a run of modifiers ending in a head noun. Modifiers may be joined by "and"/"or"/
"," ("black and white shirt"); a predicative adjective is moved onto its noun ("her hair is
long and black" -> "long and black hair"); a colour with no noun after "in"/"wearing"/"dressed"
stays a chunk ("a man in black" -> "man", "black"). Articles, possessives, verbs and
prepositions end a chunk and are dropped; body parts ("shoulder", "hand") are not chunks.
Chunks are lowercased, in text order, without duplicates.
"""
from __future__ import annotations

import re

__all__ = ["noun_chunks", "COLOURS", "HEAD_NOUNS"]

COLOURS = frozenset("""
black white red blue green yellow grey gray brown pink purple orange beige khaki navy tan
maroon cream gold golden silver violet turquoise teal burgundy olive blond blonde lilac
multicoloured multicolored colourful colorful dark light pale bright deep
greyish grayish bluish reddish brownish greenish yellowish pinkish purplish whitish blackish
""".split())

_ADJECTIVES = frozenset("""
long short young old older elderly aged little small large big tall slim thin fat heavy
plump skinny tight loose baggy plaid striped pinstriped checked checkered chequered tartan
floral printed patterned spotted dotted sleeveless hooded casual formal smart curly straight
wavy bald high low flat thick broad wide narrow open zipped buttoned new medium cropped
ripped torn fitted heeled teenage grown middle-aged short-sleeved long-sleeved short-sleeve
long-sleeve v-neck knee-length ankle-length shoulder-length full-length mid-length
high-heeled polka-dot dotted strapless collared warm hot mini maxi wheeled rolling mature
""".split())

_INTENSIFIERS = frozenset("very quite rather slightly fairly somewhat really".split())

# Nouns that can head a chunk.
HEAD_NOUNS = frozenset("""
man men woman women boy girl child children kid lady ladies guy gentleman gentlemen person
people pedestrian individual adult teenager teen youngster male female senior baby
shirt t-shirt tshirt tee top blouse jacket coat overcoat raincoat parka anorak blazer suit vest
sweater jumper pullover hoodie sweatshirt cardigan uniform dress gown skirt miniskirt jeans
denims trousers pants slacks shorts leggings tights stockings socks capris outfit clothes
clothing garment bottoms jersey tunic windbreaker fleece poncho apron overalls jumpsuit robe
cloak sleeve sleeves logo stripes pattern
shoes shoe sneakers sneaker trainers boots boot sandals sandal heels slippers loafers flats
footwear flip-flops
hat cap beanie helmet hood scarf muffler kerchief neckerchief headscarf bandana headband
glasses sunglasses shades spectacles eyeglasses headphones headphone earphones earbuds mask
gloves belt watch tie necklace umbrella
bag handbag purse backpack rucksack knapsack satchel suitcase luggage briefcase tote folder
box package parcel bottle phone cellphone stroller pram buggy trolley cart cup book laptop
bicycle bike scooter wheelchair dog
hair ponytail bun braid braids beard moustache mustache head
""".split())

# Nouns that only modify a following noun ("shopping trolley"); some are also head nouns.
_NOUN_MODIFIERS = frozenset("""
shopping school shoulder messenger luggage rain denim leather suede canvas sports sport
running tennis baby plastic paper wool woolen woollen cotton silk suit dress tank polo crop
tote hand cargo capri knee ankle baseball bucket winter summer down trench puffer track
sweat work business hair male female camouflage sleeve file
""".split())

# Head nouns that are not worth a chunk without a modifier ("on his head").
_NEEDS_MODIFIER = frozenset({"head", "sleeve", "sleeves", "pattern"})

_MULTIWORD: dict[tuple[str, ...], tuple[str, str]] = {
    ("t", "shirt"): ("t shirt", "N"),
    ("tee", "shirt"): ("tee shirt", "N"),
    ("hair", "band"): ("hair band", "N"),
    ("luggage", "case"): ("luggage case", "N"),
    ("flip", "flops"): ("flip flops", "N"),
    ("head", "scarf"): ("head scarf", "N"),
    ("v", "neck"): ("v-neck", "A"),
    ("polka", "dot"): ("polka-dot", "A"),
    ("middle", "aged"): ("middle-aged", "A"),
    ("short", "sleeved"): ("short-sleeved", "A"),
    ("long", "sleeved"): ("long-sleeved", "A"),
    ("knee", "length"): ("knee-length", "A"),
    ("shoulder", "length"): ("shoulder-length", "A"),
    ("high", "heeled"): ("high-heeled", "A"),
}
_MAX_MULTI = max(len(k) for k in _MULTIWORD)

_CONJ = frozenset({"and", "or", ",", "&", "/"})
_COPULA = frozenset({"is", "are", "was", "were", "looks", "look", "seems", "seem",
                     "appears", "appear"})
_COLOUR_CUES = frozenset({"in", "wearing", "wears", "wore", "dressed", "all"})

# token classes
_A, _C, _I, _N, _M, _NM, _J, _BE, _X = "A", "C", "I", "N", "M", "NM", "J", "BE", "X"
_MODIFIER_CLASSES = (_A, _C, _I)
_NOUNISH = (_N, _M, _NM)

_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*|[,;:.!?()/&\"]")


def _is_noun(word: str) -> bool:
    if word in HEAD_NOUNS:
        return True
    return any(word.endswith(suf) and word[:-len(suf)] in HEAD_NOUNS for suf in ("s", "es"))


def _classify(word: str) -> str:
    if word in COLOURS:
        return _C
    if word in _ADJECTIVES:
        return _A
    if word in _INTENSIFIERS:
        return _I
    if word in _CONJ:
        return _J
    if word in _COPULA:
        return _BE
    noun, mod = _is_noun(word), word in _NOUN_MODIFIERS
    if noun and mod:
        return _NM
    if noun:
        return _N
    if mod:
        return _M
    if "-" in word:
        parts = word.split("-")
        if all(p in COLOURS or p in _ADJECTIVES or p in ("and", "or") for p in parts):
            return _C if any(p in COLOURS for p in parts) else _A
    return _X


def _tokenise(text: str) -> list[str]:
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    out: list[str] = []
    for tok in _TOKEN.findall(text):
        if tok.endswith("'s"):  # possessive: "woman's bag" -> woman | bag
            out += [tok[:-2], "'s"]
        elif "-" in tok and _classify(tok) == _X:
            # unknown hyphenated word: classify its parts ("denim-blue" -> denim blue)
            out += [p for p in tok.split("-") if p]
        else:
            out.append(tok)
    return out


def _merge_multiword(tokens: list[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(tokens):
        for size in range(_MAX_MULTI, 1, -1):
            key = tuple(tokens[i:i + size])
            if len(key) == size and key in _MULTIWORD:
                out.append(_MULTIWORD[key])
                i += size
                break
        else:
            out.append((tokens[i], _classify(tokens[i])))
            i += 1
    return out


def _render(words: list[str]) -> str:
    """Join modifier words (commas dropped, no trailing conjunctions)."""
    words = [w for w in words if w != ","]
    while words and words[-1] in _CONJ:
        words.pop()
    while words and words[0] in _CONJ:
        words.pop(0)
    return " ".join(words)


def noun_chunks(text: str) -> list[str]:
    """The adjective-noun chunks of a description or query, in order, without duplicates."""
    toks = _merge_multiword(_tokenise(text))
    words = [w for w, _ in toks]
    kinds = [k for _, k in toks]
    n = len(toks)
    chunks: list[str] = []

    def emit(chunk: str) -> None:
        if chunk and chunk not in chunks:
            chunks.append(chunk)

    mods: list[str] = []
    mods_start = 0

    def flush_dangling(end: int) -> None:
        # a colour with no noun after "in"/"wearing"/"dressed": "a man in black"
        nonlocal mods
        if mods and any(_classify(w) == _C for w in mods) and mods_start > 0 \
                and words[mods_start - 1] in _COLOUR_CUES:
            emit(_render(mods))
        mods = []

    i = 0
    while i < n:
        w, k = words[i], kinds[i]
        nxt = kinds[i + 1] if i + 1 < n else None
        if k in _MODIFIER_CLASSES:
            if not mods:
                mods_start = i
            mods.append(w)
        elif k == _J:
            prev = kinds[i - 1] if i else None
            if mods and prev in (_A, _C) and nxt in _MODIFIER_CLASSES:
                mods.append(w)  # "black and white", "young, slim"
            else:
                flush_dangling(i)
        elif k in (_M, _NM) and nxt in _NOUNISH:
            if not mods:
                mods_start = i
            mods.append(w)  # noun used as a modifier: "shopping trolley", "male adult"
        elif k in (_N, _NM):
            head_mods = mods
            mods = []
            i += 1
            # predicative adjectives: "her hair is long and black"
            if i < n and kinds[i] == _BE:
                j, pred = i + 1, []
                while j < n and kinds[j] in (*_MODIFIER_CLASSES, _J):
                    pred.append(words[j])
                    j += 1
                described = any(kinds[t] in (_A, _C) for t in range(i + 1, j))
                if described and (j >= n or kinds[j] not in _NOUNISH):
                    head_mods = head_mods + [_render(pred)]
                    i = j
            if head_mods or w not in _NEEDS_MODIFIER:
                emit(" ".join(filter(None, [_render(head_mods), w])))
            continue
        else:
            flush_dangling(i)
        i += 1
    flush_dangling(n)
    return chunks
