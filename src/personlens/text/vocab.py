"""A word-level vocabulary for the description decoder, built from the training captions.

Tokens are lower-case words (hyphenated words such as "t-shirt" and "middle-aged" stay one
token) and punctuation marks. Ids 0-3 are the special tokens ``<pad> <bos> <eos> <unk>``;
the other words follow in order of decreasing frequency (ties alphabetical), so the same
corpus always gives the same ids. Saved as JSON (``vocab.json``) beside the weights.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
_TOKEN = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*|[.,;:!?]")
_NO_SPACE_BEFORE = {".", ",", ";", ":", "!", "?"}
FORMAT = "personlens-vocab-1"


def tokenize(text: str) -> list[str]:
    """Lower-case words and punctuation: "A man, in a T-shirt." -> [a, man, ",", in, a, t-shirt, "."]."""
    return _TOKEN.findall(text.lower())


def detokenize(words: Iterable[str]) -> str:
    """Join words with single spaces, punctuation attached to the word before it."""
    out = ""
    for w in words:
        if w in _NO_SPACE_BEFORE or not out:
            out += w
        else:
            out += " " + w
    return out


class Vocab:
    """Word <-> id mapping with the four special tokens at ids 0-3."""

    def __init__(self, words: Iterable[str]):
        words = list(words)
        if tuple(words[:4]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with the special tokens {SPECIALS}")
        if len(set(words)) != len(words):
            dup = sorted(w for w, c in Counter(words).items() if c > 1)
            raise ValueError(f"duplicate words in vocabulary: {dup[:5]}")
        self.itos: list[str] = words
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(words)}

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    @classmethod
    def build(cls, texts: Iterable[str], min_freq: int = 1, max_size: int | None = None) -> "Vocab":
        """Words seen at least ``min_freq`` times (most frequent first, at most ``max_size``)."""
        if min_freq < 1:
            raise ValueError("min_freq must be >= 1")
        counts = Counter(t for text in texts for t in tokenize(text))
        for s in SPECIALS:
            counts.pop(s, None)
        kept = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        if max_size is not None:
            kept = kept[:max(0, max_size - len(SPECIALS))]
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, word: str) -> bool:
        return word in self.stoi

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids = [self.stoi.get(w, self.unk_id) for w in tokenize(text)]
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """Text for ids; stops at the first <eos>; <pad>/<bos> (and <unk>) dropped when skipping."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if not 0 <= i < len(self.itos):
                raise ValueError(f"token id {i} outside the vocabulary (size {len(self)})")
            if skip_special and i in (self.pad_id, self.bos_id, self.unk_id):
                continue
            words.append(self.itos[i])
        return detokenize(words)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "words": self.itos}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=0))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read vocabulary {path}: {e}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT \
                or not isinstance(data.get("words"), list):
            raise ValueError(f"{path} is not a personlens vocabulary ({FORMAT})")
        return cls(data["words"])

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos
