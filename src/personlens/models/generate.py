"""Decoding for prefix decoders: greedy, beam search and sampling.

The decoder is seen through one function, ``step(prefix, ids) -> logits (N, V)`` for the
next token after ``ids`` (N, T) given the prefix rows (N, P, d), recomputed from scratch at
every step, or through an incremental decoder with ``init_state(prefix)``,
``step_state(state, ids) -> (logits, state)`` and ``reorder_state(state, index)`` (cached
keys/values: one new token per step). Both give the same tokens. Every method applies the
same logits processors first (repetition penalty, no-repeat-n-gram, banned tokens), so beam
search with width 1 and sampling with ``top_k=1`` give exactly the greedy output. Sampling
draws from a ``torch.Generator`` seeded with ``seed``: the same seed gives the same text.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch

METHODS = ("greedy", "beam", "sample")
StepFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class DecodeConfig:
    method: str = "greedy"
    max_len: int = 48                 # new tokens, <eos> included
    beam_size: int = 4
    length_penalty: float = 1.0       # beam: score = sum log p / length ** length_penalty
    temperature: float = 1.0
    top_k: int = 0                    # 0: off
    top_p: float = 1.0                # 1.0: off
    repetition_penalty: float = 1.0   # 1.0: off (CTRL-style, on tokens already generated)
    no_repeat_ngram_size: int = 0     # 0: off
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"decoding method must be one of {METHODS}, got {self.method!r}")
        if self.max_len < 1 or self.beam_size < 1:
            raise ValueError("max_len and beam_size must be >= 1")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0 or self.no_repeat_ngram_size < 0 or self.repetition_penalty <= 0:
            raise ValueError("top_k and no_repeat_ngram_size must be >= 0, repetition_penalty > 0")

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- processors

def apply_repetition_penalty(logits: torch.Tensor, generated: torch.Tensor, penalty: float) -> torch.Tensor:
    """Divide positive (multiply negative) logits of tokens already in ``generated`` (N, T)."""
    if penalty == 1.0 or generated.shape[1] == 0:
        return logits
    picked = logits.gather(1, generated)
    picked = torch.where(picked > 0, picked / penalty, picked * penalty)
    return logits.scatter(1, generated, picked)


def banned_ngram_tokens(seq: list[int], n: int) -> set[int]:
    """Tokens that would complete an n-gram already present in ``seq``."""
    if n <= 0 or len(seq) < n:
        return set()
    if n == 1:
        return set(seq)
    tail = tuple(seq[-(n - 1):])
    return {seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i:i + n - 1]) == tail}


def process_logits(logits: torch.Tensor, generated: torch.Tensor, cfg: DecodeConfig,
                   banned: list[int] = ()) -> torch.Tensor:
    """The processors shared by all methods; ``generated`` (N, T) excludes the start token."""
    logits = logits.float()
    logits = apply_repetition_penalty(logits, generated, cfg.repetition_penalty)
    if banned:
        logits[:, list(banned)] = float("-inf")
    if cfg.no_repeat_ngram_size:
        rows = generated.tolist()
        for r, seq in enumerate(rows):
            ban = banned_ngram_tokens(seq, cfg.no_repeat_ngram_size)
            if ban:
                logits[r, list(ban)] = float("-inf")
    return logits


def top_k_top_p(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Mask (to -inf) everything outside the top ``k`` tokens and the nucleus of mass ``p``."""
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass before it already reaches top_p (the top token always stays)
        drop = (probs.cumsum(-1) - probs) >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)
    return logits


# --------------------------------------------------------------------------- methods

class _Recompute:
    """Adapter: a plain ``step(prefix, ids)`` function seen as an incremental decoder."""

    def __init__(self, fn: StepFn):
        self.fn = fn

    def init_state(self, prefix):
        return prefix

    def step_state(self, state, ids):
        return self.fn(state, ids), state

    @staticmethod
    def reorder_state(state, index):
        return state[index]


def _stepper(step):
    return step if hasattr(step, "step_state") else _Recompute(step)


def generate(step, prefix: torch.Tensor, bos_id: int, eos_id: int,
             cfg: DecodeConfig | None = None, banned: list[int] = ()) -> list[list[int]]:
    """Token ids (without start and end tokens) for each prefix row (B, P, d).

    ``step``: a ``step(prefix, ids) -> logits`` function or an incremental decoder (module
    docstring)."""
    cfg = cfg or DecodeConfig()
    if cfg.method == "beam":
        return _beam(_stepper(step), prefix, bos_id, eos_id, cfg, banned)
    return _greedy_or_sample(_stepper(step), prefix, bos_id, eos_id, cfg, banned)


def _greedy_or_sample(model, prefix, bos_id, eos_id, cfg, banned):
    b = prefix.shape[0]
    ids = torch.full((b, 1), bos_id, dtype=torch.long)
    done = torch.zeros(b, dtype=torch.bool)
    gen = torch.Generator().manual_seed(cfg.seed) if cfg.method == "sample" else None
    state = model.init_state(prefix)
    for _ in range(cfg.max_len):
        logits, state = model.step_state(state, ids)
        logits = process_logits(logits, ids[:, 1:], cfg, banned)
        if cfg.method == "sample":
            logits = top_k_top_p(logits / cfg.temperature, cfg.top_k, cfg.top_p)
            nxt = torch.multinomial(logits.softmax(-1), 1, generator=gen).squeeze(1)
        else:
            nxt = logits.argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
        ids = torch.cat([ids, nxt[:, None]], 1)
        done |= nxt == eos_id
        if bool(done.all()):
            break
    return [_strip(row, eos_id) for row in ids[:, 1:].tolist()]


def _strip(row: list[int], eos_id: int) -> list[int]:
    return row[:row.index(eos_id)] if eos_id in row else row


def _beam(model, prefix, bos_id, eos_id, cfg, banned):
    """Beam search; a batch row is finished once it holds ``beam_size`` ended hypotheses whose
    worst score beats its best live beam (or at ``max_len``)."""
    b, k = prefix.shape[0], cfg.beam_size
    state = model.init_state(prefix.repeat_interleave(k, 0))   # (B*K, P, d)
    ids = torch.full((b * k, 1), bos_id, dtype=torch.long)
    scores = torch.full((b, k), float("-inf"))
    scores[:, 0] = 0.0                                         # start from one live beam per row
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    done = [False] * b

    def norm(score: float, length: int) -> float:
        return score / (max(length, 1) ** cfg.length_penalty)

    for t in range(cfg.max_len):
        logits, state = model.step_state(state, ids)
        logp = process_logits(logits, ids[:, 1:], cfg, banned).log_softmax(-1)
        v = logp.shape[-1]
        cand = (scores.view(-1, 1) + logp).view(b, k * v)
        top_s, top_i = cand.topk(min(2 * k, k * v), dim=-1)
        new_ids, rows, new_scores = [], [], torch.full((b, k), float("-inf"))
        for r in range(b):
            chosen = []
            if not done[r]:
                for s, i in zip(top_s[r].tolist(), top_i[r].tolist()):
                    if s == float("-inf"):
                        break
                    beam, tok = divmod(i, v)
                    seq = ids[r * k + beam, 1:].tolist()
                    if tok == eos_id:
                        finished[r].append((norm(s, len(seq) + 1), seq))
                    else:
                        chosen.append((s, beam, tok))
                    if len(chosen) == k:
                        break
                if len(finished[r]) >= k:
                    finished[r].sort(key=lambda x: -x[0])
                    finished[r] = finished[r][:k]
                    # stop when the worst kept hypothesis beats the best live beam at its
                    # current length (the usual heuristic, as in transformers' beam search)
                    best_live = max((s for s, _, _ in chosen), default=float("-inf"))
                    if finished[r][-1][0] >= norm(best_live, t + 1):
                        done[r] = True
            for j in range(k):
                if j < len(chosen) and not done[r]:
                    s, beam, tok = chosen[j]
                    new_ids.append(ids[r * k + beam].tolist() + [tok])
                    rows.append(r * k + beam)
                    new_scores[r, j] = s
                else:
                    new_ids.append(ids[r * k].tolist() + [eos_id])
                    rows.append(r * k)
        ids = torch.tensor(new_ids, dtype=torch.long)
        state = model.reorder_state(state, torch.tensor(rows, dtype=torch.long))
        scores = new_scores
        if all(done):
            break
    out = []
    for r in range(b):
        if not done[r]:
            for j in range(k):  # unfinished beams at max_len also compete
                if scores[r, j] > float("-inf"):
                    seq = ids[r * k + j, 1:].tolist()
                    finished[r].append((norm(float(scores[r, j]), len(seq)), seq))
        best = max(finished[r], key=lambda x: x[0]) if finished[r] else (0.0, [])
        out.append(_strip(best[1], eos_id))
    return out
