"""Retrieval metrics for re-ID (image -> image) and text-based person search (text -> image).

For each query the gallery is ranked by decreasing similarity (ties keep gallery order).

* With camera ids (re-ID, the Market-1501 rule): gallery items with the query's pid *and*
  camera are removed from that query's ranking (they are the same view, not a re-
  identification). Without camera ids (text -> image) nothing is removed.
* A query with no correct match left in its ranking is skipped and counted
  (``num_skipped``), as in the standard evaluation code (Market-1501, torchreid, fast-reid).
* CMC Rank-k: share of queries whose first correct match is within the top k.
* mAP: mean over queries of average precision = mean of precision@r over the ranks r of the
  correct matches (non-interpolated, as torchreid / fast-reid / IRRA compute it).
* mINP (Ye et al., TPAMI 2021): mean over queries of (number of correct matches) / (rank of
  the last correct match), i.e. how far down the hardest match lies.

All values are percentages.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["RetrievalMetrics", "evaluate_ranking"]


@dataclass(frozen=True)
class RetrievalMetrics:
    cmc: dict[int, float]  # rank k -> Rank-k accuracy (%)
    mAP: float
    mINP: float
    num_queries: int        # queries evaluated
    num_skipped: int = 0    # queries without any valid match
    num_gallery: int = 0
    # AP (0-1) of each evaluated query, in query order (skipped queries left out)
    per_query_ap: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self):
        cmc = {int(k): float(v) for k, v in sorted(dict(self.cmc).items())}
        object.__setattr__(self, "cmc", cmc)
        if not cmc:
            raise ValueError("cmc needs at least one rank")
        if min(cmc) < 1:
            raise ValueError(f"ranks must be >= 1, got {sorted(cmc)}")
        for name, v in [*((f"R{k}", v) for k, v in cmc.items()), ("mAP", self.mAP),
                        ("mINP", self.mINP)]:
            if np.isnan(v) or not 0.0 <= v <= 100.0:
                raise ValueError(f"{name}={v} outside [0, 100]")
        values = list(cmc.values())
        if any(b < a - 1e-9 for a, b in zip(values, values[1:])):
            raise ValueError(f"CMC must not decrease with rank: {cmc}")
        if self.num_queries < 1 or self.num_skipped < 0 or self.num_gallery < 0:
            raise ValueError("need num_queries >= 1 and non-negative counts")

    def rank(self, k: int) -> float:
        """Rank-k accuracy (%); k must be one of the evaluated ranks."""
        try:
            return self.cmc[k]
        except KeyError:
            raise KeyError(f"rank {k} not evaluated; have {sorted(self.cmc)}") from None

    def to_dict(self) -> dict:
        d: dict = {f"R{k}": v for k, v in self.cmc.items()}
        d.update(mAP=self.mAP, mINP=self.mINP, num_queries=self.num_queries,
                 num_skipped=self.num_skipped, num_gallery=self.num_gallery)
        return d


def _vector(x, n: int, name: str) -> np.ndarray:
    a = np.asarray(x).ravel()
    if a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} entries, expected {n}")
    return a


def evaluate_ranking(sim, q_pids, g_pids, q_camids=None, g_camids=None,
                     ranks=(1, 5, 10), chunk: int = 512) -> RetrievalMetrics:
    """CMC, mAP and mINP from a (Q, G) similarity matrix (higher = more similar).

    Pass both ``q_camids`` and ``g_camids`` for re-ID (same pid and camera excluded), or
    neither for text -> image search. Raises ``ValueError`` when no query has a valid match.
    """
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2:
        raise ValueError(f"sim must be (Q, G), got shape {sim.shape}")
    nq, ng = sim.shape
    if nq == 0 or ng == 0:
        raise ValueError(f"empty query or gallery: sim shape {sim.shape}")
    if np.isnan(sim).any():
        raise ValueError("sim contains NaN")
    q_pids = _vector(q_pids, nq, "q_pids")
    g_pids = _vector(g_pids, ng, "g_pids")
    if (q_camids is None) != (g_camids is None):
        raise ValueError("pass both q_camids and g_camids, or neither")
    use_cams = q_camids is not None
    if use_cams:
        q_camids = _vector(q_camids, nq, "q_camids")
        g_camids = _vector(g_camids, ng, "g_camids")
    ranks = sorted({int(k) for k in ranks})
    if not ranks or ranks[0] < 1:
        raise ValueError(f"ranks must be positive integers, got {ranks}")

    first_hits: list[int] = []
    aps: list[float] = []
    inps: list[float] = []
    skipped = 0
    for start in range(0, nq, chunk):
        stop = min(start + chunk, nq)
        order = np.argsort(-sim[start:stop], axis=1, kind="stable")
        ranked_pids = g_pids[order]
        ranked_cams = g_camids[order] if use_cams else None
        for row in range(stop - start):
            q = start + row
            match = ranked_pids[row] == q_pids[q]
            if use_cams:
                keep = ~(match & (ranked_cams[row] == q_camids[q]))
                match = match[keep]
            hits = np.flatnonzero(match)
            if hits.size == 0:
                skipped += 1
                continue
            positions = hits + 1.0  # 1-based ranks of the correct matches
            first_hits.append(int(hits[0]))
            aps.append(float(np.mean(np.arange(1, hits.size + 1) / positions)))
            inps.append(float(hits.size / positions[-1]))
    if not aps:
        raise ValueError(f"none of the {nq} queries has a correct match in the gallery")
    first = np.asarray(first_hits)
    cmc = {k: float(np.mean(first < k) * 100.0) for k in ranks}
    return RetrievalMetrics(cmc=cmc, mAP=min(100.0, float(np.mean(aps) * 100.0)),
                            mINP=min(100.0, float(np.mean(inps) * 100.0)), num_queries=len(aps),
                            num_skipped=skipped, num_gallery=ng,
                            per_query_ap=tuple(aps))
