"""Evaluate text -> person search on PETA: the learned search head against the baseline.

Protocol (standard text-based person search, CUHK-PEDES style, on generated text):

* gallery: every image of the split;
* queries: one caption per image from ``CaptionGenerator(style="eval", seed)`` (templates
  and partly synonyms that training never used), fixed by ``key=index``;
* relevance: the gallery images of the same person (PETA global id), query image included;
* metrics: Rank-1/5/10, mAP, mINP (``evaluate_ranking``) and the CMC curve to rank 20.

Both methods are run exactly as ``PersonPipeline`` runs them, from one encoder pass per
image (``pooled_features`` with the attribute probabilities of the same pass):

* ``learned``: the search head's embedding of each crop; queries through MiniLM + the head's
  ``query_proj``;
* ``baseline`` (no training, ``PersonPipeline(par, search_head=None)``): the calibrated
  ``present`` attributes rendered as a sentence and embedded with MiniLM; queries with MiniLM.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .report import EVAL_RANKS, metrics_entry, write_retrieval_report
from .retrieval import evaluate_ranking


def eval_queries(dataset, seed: int = 0) -> list[str]:
    """One eval-style caption per image of a PETA data set (labels over PETA names)."""
    from ..text.captions import CaptionGenerator

    gen = CaptionGenerator("eval", seed=seed)
    names = dataset.schema.names
    return [gen.generate({n: float(v) for n, v in zip(names, row)}, n=1, key=i)[0]
            for i, row in enumerate(dataset.labels)]


def baseline_gallery(pipeline, paths, probs: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, list[str]]:
    """The baseline search embeddings of images from their attribute probabilities, as
    ``PersonPipeline.process`` makes them: (N, d) unit vectors and the sentences."""
    from ..inference.pipeline import render_attributes

    preds = [pipeline.predictor.to_prediction(str(p), pr) for p, pr in zip(paths, probs)]
    sentences = [render_attributes(p.present, pipeline.schema, p.attributes) for p in preds]
    uniq = list(dict.fromkeys(sentences))
    emb = np.concatenate([pipeline._encode_texts(uniq[s:s + batch_size])
                          for s in range(0, len(uniq), batch_size)]) if uniq else np.zeros((0, 1))
    pos = {t: i for i, t in enumerate(uniq)}
    return emb[[pos[s] for s in sentences]], sentences


def evaluate_search(root, partition: int = 0, split: str = "test", par_dir=None,
                    search_head="default", seed: int = 0, cache_root: str | Path = "cache",
                    batch_size: int = 64, progress: bool = True, limit: int | None = None,
                    text_encoder=None, log=print) -> tuple[dict, dict]:
    """``(meta, methods)`` for ``write_retrieval_report``; ``limit``: first images only;
    ``text_encoder``: an already loaded MiniLM (default: load it)."""
    from ..data.peta import PETA
    from ..inference.pipeline import PersonPipeline, resolve_head
    from ..inference.pooled import text_embeddings
    from ..inference.pooled import head_embeddings, pooled_features

    t0 = time.time()
    ds = PETA(root, split, partition=partition, attributes="all")
    if limit:
        ds.samples = ds.samples[:limit]
    pipe = PersonPipeline(par_dir, search_head=None, reid_head=None,   # the baseline pipeline
                          text_encoder=text_encoder)
    model = pipe.model
    flip_tta = bool(getattr(model.config, "flip_tta", False))
    head, head_src = resolve_head(search_head, "search", model, par_dir is None)
    if head is not None and getattr(head.config, "in_dim", model.encoder.dim) != model.encoder.dim:
        raise ValueError(f"the search head expects {head.config.in_dim}-d tokens, the encoder gives "
                         f"{model.encoder.dim}-d")
    log(f"PETA partition {partition} {split}: {len(ds)} images, "
        f"{len({s.pid for s in ds.samples})} identities")
    pooled, probs = pooled_features(model, ds.paths, flip=flip_tta,
                                    probs=True, cache_root=Path(cache_root) / "pooled",
                                    name=f"peta-p{partition}-{split}", progress=progress,
                                    batch_size=batch_size)
    pids = np.array([s.pid for s in ds.samples], np.int64)
    queries = eval_queries(ds, seed)
    q_raw = text_embeddings(pipe.text_encoder, queries, Path(cache_root) / "text",
                            progress=progress, name="eval-queries")
    methods: dict[str, dict | None] = {}
    if head is not None:
        g = head_embeddings(head, pooled, flip_tta)
        with torch.inference_mode():
            q = head.encode_query(torch.from_numpy(q_raw)).numpy()
        methods["learned"] = metrics_entry(
            evaluate_ranking(q @ g.T, pids, pids, ranks=EVAL_RANKS),
            description=f"search head ({head_src}): crop embedding vs MiniLM + query_proj")
    g_base, sentences = baseline_gallery(pipe, ds.paths, probs)
    methods["baseline"] = metrics_entry(
        evaluate_ranking(q_raw @ g_base.T, pids, pids, ranks=EVAL_RANKS),
        description="no training: predicted attributes rendered as text, MiniLM, vs MiniLM query")
    if head is None:
        methods["learned"] = None
    meta = {"task": "text-to-person search", "dataset": "peta", "partition": partition,
            "split": split, "num_images": len(ds), "num_identities": int(len(set(pids.tolist()))),
            "queries": f"one CaptionGenerator(style='eval', seed={seed}) caption per image",
            "relevance": "gallery images of the same person id (query image included)",
            "par": str(par_dir) if par_dir is not None else "shipped:par-peta",
            "search_head": head_src if head is not None else None,
            "flip_tta": flip_tta,
            "examples": [{"query": q, "baseline_description_of_its_image": s}
                         for q, s in list(zip(queries, sentences))[:5]],
            "seconds": round(time.time() - t0, 1)}
    if head is not None:
        meta["search_head_notes"] = head.config.notes
    return meta, methods


def run_search_eval(json_path, **kw) -> tuple[dict, Path]:
    """Evaluate and write ``json_path`` + the PNG beside it."""
    meta, methods = evaluate_search(**kw)
    title = (f"PETA partition {meta['partition']} {meta['split']}: text -> person search "
             f"({meta['num_images']} images)")
    return write_retrieval_report(json_path, meta, methods, title)
