"""One pass of the image encoder per batch -> attributes, a search embedding and a re-ID embedding.

``PersonPipeline`` runs the shared image encoder of the PAR model once on a batch of crops
and feeds its patch tokens to every head:

* attributes: the PAR head (``model.head(tokens)``), probabilities and calibrated ``present``
  exactly as ``personlens attributes`` reports them;
* re-ID: a trained ``EmbeddingHead`` (``reid_head=DIR``) or the baseline, the L2-normalised
  mean of the encoder tokens; a lifelong head (``train reid --lifelong``) learned its top on
  the ImageNet encoder's lower stages, so it alone runs a second pass from the pixels;
* search: a trained ``EmbeddingHead`` (``search_head=DIR``) into a text encoder's space or the
  "attributes rendered as text" baseline: the present attributes are written as an English
  sentence from the schema phrases ("a person, a man, wearing a hat, carrying a backpack") and
  embedded with the MiniLM text encoder. Queries go through the same text encoder.

Heads default to ``"default"``: the head shipped in the package (``personlens/weights/
search-peta``, ``personlens/weights/reid``) when it is there and was trained on this PAR
model's image encoder (its config records the encoder's fingerprint), else the baseline.
``None`` (or ``"baseline"``) asks for the baseline explicitly.

``model_version`` is a hash of the configuration and weights of everything that shapes a
record (PAR model, both embedding heads or baselines, the text encoder), so records made by a
different model are detected and re-embedded instead of being compared across spaces.
"""
from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.images import decode_image, read_image_bytes
from ..data.schema import GROUPS, AttributeSchema, schema_for
from ..models.lomo import lomo_descriptors
from ..models.embedding import EmbeddingHead, load_embedding_head
from ..models import hub
from ..models.hub import TrainedOn, module_fingerprint
from .batching import PredictionError, batched_over_paths
from .predict import AttributePredictor
from .records import PersonRecord, content_id

DEFAULT_HEAD = "default"    # the shipped head when present and made for this encoder, else baseline
BASELINE_HEAD = "baseline"  # the untrained baseline (same as None)
BASELINE_SEARCH = "attributes-as-text-v1"
BASELINE_REID = "mean-pooled-tokens-v1"
DEFAULT_TEXT_ENCODER = "minilm"
# Sentence order: who, then what they wear, then what they carry.
_ORDER = ("gender", "age", "hair", "accessory", "upper", "lower", "colour", "footwear", "carrying")
_GROUP_ORDER = {g: i for i, g in enumerate(_ORDER + tuple(g for g in GROUPS if g not in _ORDER))}


def render_attributes(present: Sequence[str], schema: AttributeSchema,
                      probabilities: dict[str, float] | None = None) -> str:
    """English sentence for a set of present attributes, e.g.
    ``"a person, a man, wearing a hat, carrying a backpack"``.

    Order: gender, age, hair, accessories, clothes, colours, footwear, then what they carry;
    within a group the most probable attribute first (schema order without probabilities).
    """
    pos = {n: i for i, n in enumerate(schema.names)}
    probabilities = probabilities or {}

    def key(name):
        a = schema[name]
        return (_GROUP_ORDER.get(a.group, len(_GROUP_ORDER)), -probabilities.get(name, 0.0), pos[name])

    phrases = [schema[n].phrase for n in sorted(present, key=key)]
    return ", ".join(["a person", *phrases])


def _as_head(head, kind: str) -> EmbeddingHead | torch.nn.Module | None:
    if head is None or isinstance(head, torch.nn.Module):
        return head.eval() if head is not None else None
    if kind == "reid" and hub.kind_of(head) == "lifelong-reid":
        # trained with ``train reid --lifelong``: its own pass from the pixels (needs_pixels)
        from ..models.lifelong import load_lifelong_embedder

        return load_lifelong_embedder(head)
    return load_embedding_head(head, kind=kind)


def resolve_head(head, kind: str, model, shipped_par: bool):
    """``(head module or None, source)`` for a head argument of ``PersonPipeline``.

    ``None``/``"baseline"``: the baseline. ``"default"``: the shipped head of that kind when
    the package holds one trained on ``model``'s image encoder (the fingerprint in its config,
    or, without one, when ``model`` is the shipped PAR model), else the baseline. A directory
    or a module: that head (a warning when it records another encoder's fingerprint).
    """
    import warnings

    if head is None or (isinstance(head, str) and head == BASELINE_HEAD):
        return None, "baseline"
    if isinstance(head, str) and head == DEFAULT_HEAD:
        d = hub.shipped_default(kind)
        if d is None:
            return None, "baseline"
        h = load_embedding_head(d, kind=kind)
        fits = TrainedOn.of(h.config).fits(par_model=model)
        ok = fits if fits is not None else shipped_par
        return (h, f"shipped:{d.name}") if ok else (None, "baseline")
    h = _as_head(head, kind)
    if TrainedOn.of(getattr(h, "config", None)).fits(par_model=model) is False:
        warnings.warn(f"the {kind} head was trained on another image encoder than this PAR "
                      f"model's; its embeddings will not be meaningful", stacklevel=3)
    return h, str(head) if isinstance(head, (str, Path)) else type(head).__name__


def resolve_describer(describer, par_dir, names):
    """``(DescriberHead or None, source)`` for the ``describer`` argument of ``PersonPipeline``:
    ``None``/``"baseline"``: none; ``"default"``: the shipped description model when the
    package holds one trained on this PAR model's tokens; a directory: that model (a warning
    when it was trained on another PAR model's tokens)."""
    import warnings

    from .describe import DescriberHead

    if describer is None or describer == BASELINE_HEAD:
        return None, "none"
    if isinstance(describer, str) and describer == DEFAULT_HEAD:
        try:
            head = DescriberHead(None)
        except FileNotFoundError:
            return None, "none"
        return (head, f"shipped:{head.weights.name}") if head.matches(par_dir, names) else (None, "none")
    head = describer if isinstance(describer, DescriberHead) else DescriberHead(describer)
    if not head.matches(par_dir, names):
        warnings.warn("the description model was trained on another PAR model's tokens; "
                      "descriptions may be poor", stacklevel=3)
    return head, str(describer) if isinstance(describer, (str, Path)) else "DescriberHead"


class PersonPipeline:
    """Attributes, search and re-ID embeddings and a description from one encoder pass.

    Example::

        from PIL import Image
        from personlens import PersonPipeline

        pipe = PersonPipeline()                       # the shipped models
        records = pipe.process([Image.open("crop.jpg").convert("RGB")], ["crop.jpg"])
        records[0].present, records[0].description, records[0].reid_embedding.shape
        pipe.reid_embeddings([Image.open("query.jpg").convert("RGB")])   # re-ID only
    """

    def __init__(self, par_dir: str | Path | None = None, search_head=DEFAULT_HEAD,
                 reid_head=DEFAULT_HEAD, *, describer=DEFAULT_HEAD,
                 text_encoder=None, precision: str = "auto", threads: int | None = None,
                 sentence_cache: int = 4096):
        self.predictor = AttributePredictor(par_dir, precision=precision, threads=threads)
        self.model = self.predictor.model
        self.names = self.predictor.names
        self.schema = schema_for(self.names)
        self.preprocess = self.predictor.preprocess
        shipped_par = par_dir is None
        self.search_head, search_src = resolve_head(search_head, "search", self.model, shipped_par)
        self.reid_head, reid_src = resolve_head(reid_head, "reid", self.model, shipped_par)
        self.describer_head, describer_src = resolve_describer(describer, par_dir, self.names)
        self.head_sources = {"search": search_src, "reid": reid_src, "describer": describer_src}
        enc_dim = self.model.encoder.dim
        for kind, head in (("search", self.search_head), ("reid", self.reid_head)):
            cfg = getattr(head, "config", None)
            if cfg is not None and getattr(cfg, "in_dim", enc_dim) != enc_dim:
                raise ValueError(f"the {kind} head expects {cfg.in_dim}-d tokens but the image "
                                 f"encoder {self.model.config.encoder} gives {enc_dim}-d")
        if text_encoder is None or isinstance(text_encoder, str):
            from ..models.factory import create_text_encoder

            name = text_encoder or getattr(getattr(self.search_head, "config", None),
                                           "text_encoder", None) or DEFAULT_TEXT_ENCODER
            text_encoder = _quietly(create_text_encoder, name)
        self.text_encoder = text_encoder.eval()
        for p in self.text_encoder.parameters():
            p.requires_grad_(False)
        self._sentences: OrderedDict[str, np.ndarray] = OrderedDict()
        self._sentence_cache = sentence_cache
        self.adaptation = None
        self.versions = self._versions(par_dir)
        self._set_model_version()

    def _set_model_version(self) -> None:
        self.model_version = "pl1-" + hashlib.blake2b(
            json.dumps(self.versions, sort_keys=True).encode(), digest_size=8).hexdigest()

    def set_adaptation(self, adaptation) -> None:
        """Use an ``inference.adaptation.Adaptation`` (``None``: the models as trained). It
        is part of the model version: records made before it are re-embedded, never mixed."""
        if adaptation is not None:
            adaptation.check(self.predictor.fingerprint, self.names)
            self.versions["adaptation"] = adaptation.id
        else:
            self.versions.pop("adaptation", None)
        self.adaptation = adaptation
        self._set_model_version()
        self.use_camera(None)

    def use_camera(self, camera: str | None) -> None:
        """Apply the adaptation of ``camera`` (or of all cameras, ``*``) to what follows."""
        self.predictor.set_adaptation(self.adaptation.entry(camera) if self.adaptation else None)

    # ------------------------------------------------------------------ identity
    def _versions(self, par_dir) -> dict[str, str]:
        text = f"{getattr(self.text_encoder, 'name', type(self.text_encoder).__name__)}:" \
               f"{module_fingerprint(self.text_encoder)}"
        v = {"attributes": self.predictor.fingerprint, "text_encoder": text}
        for kind, head, baseline in (("search", self.search_head, BASELINE_SEARCH),
                                     ("reid", self.reid_head, BASELINE_REID)):
            cfg = getattr(head, "config", None)
            cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else {"class": type(head).__name__}
            v[kind] = baseline if head is None else module_fingerprint(head, cfg)
        if self.describer_head is not None:  # descriptions are part of the record
            v["describer"] = module_fingerprint(self.describer_head.model, self.describer_head.config.to_dict())
        return v

    @property
    def search_dim(self) -> int:
        if self.search_head is not None and hasattr(self.search_head, "config"):
            return int(self.search_head.config.embedding_dim)
        return int(self.text_encoder.dim)

    @property
    def reid_dim(self) -> int:
        if self.reid_head is not None and hasattr(self.reid_head, "config"):
            return int(self.reid_head.config.embedding_dim)
        return int(self.model.encoder.dim)

    def describe(self) -> dict:
        """What this pipeline runs (for logs, ``info`` and the store's metadata)."""
        cfg = self.model.config
        return {"model_version": self.model_version, "versions": dict(self.versions),
                "attributes": {"encoder": cfg.encoder, "head": cfg.head.kind, "names": list(self.names)},
                "search": f"trained head ({self.head_sources['search']})"
                if self.search_head is not None else
                f"baseline: attributes rendered as text, {getattr(self.text_encoder, 'name', '?')}",
                "reid": f"trained head ({self.head_sources['reid']})" if self.reid_head is not None
                else "baseline: mean-pooled encoder tokens",
                "describer": f"description model ({self.head_sources['describer']})"
                if self.describer_head is not None else "none",
                "search_dim": self.search_dim, "reid_dim": self.reid_dim,
                "runtime": {"encoder": self.predictor.encoder.runtime,
                            "precision": self.predictor.encoder.precision}}

    # ------------------------------------------------------------------ text
    @torch.inference_mode()
    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        emb = self.text_encoder.encode(list(texts)).float()
        if self.search_head is not None and hasattr(self.search_head, "encode_query"):
            emb = self.search_head.encode_query(emb)
        return F.normalize(emb, dim=-1).numpy().astype(np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        """A text query as a unit vector in the search space."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("the query is empty")
        return self._encode_texts([text.strip()])[0]

    def _embed_sentences(self, sentences: list[str]) -> np.ndarray:
        """Sentence embeddings with a small LRU cache (many crops share an attribute set)."""
        todo = list(dict.fromkeys(s for s in sentences if s not in self._sentences))
        if todo:
            for s, e in zip(todo, self._encode_texts(todo)):
                self._sentences[s] = e
        out = np.stack([self._sentences[s] for s in sentences])
        for s in sentences:
            self._sentences.move_to_end(s)
        while len(self._sentences) > self._sentence_cache:
            self._sentences.popitem(last=False)
        return out

    # ------------------------------------------------------------------ images
    def forward(self, images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(probabilities (N, A), re-ID (N, d), search (N, d) or None for the text baseline).

        With the PAR model's ``flip_tta`` (as ``personlens attributes`` does), the crops and
        their mirror images go through the encoder together (still one pass) and every
        output is averaged over the two views.
        """
        return self._run(images)[:3]

    def _colour_pool(self):
        if getattr(self, "_colour_executor", None) is None:
            from concurrent.futures import ThreadPoolExecutor

            self._colour_executor = ThreadPoolExecutor(1, thread_name_prefix="personlens-colour")
        return self._colour_executor

    def reid_embeddings(self, images: list[Image.Image]) -> np.ndarray:
        """Re-ID embeddings ``(N, reid_dim)`` only: no search embedding and no description
        (what ``similar`` needs for a new image)."""
        return self._run(images, want_search=False, want_text=False)[1]

    def _run(self, images, *, want_search: bool = True, want_text: bool = True):
        """``forward`` plus the describer's pooled tokens of the crops (or None); outputs not
        wanted are not computed."""
        colour = None
        if getattr(self.reid_head, "needs_lomo", False):
            # from the pixels, not the tokens; numpy/scipy release the GIL, so the descriptors
            # are computed beside the encoder pass instead of after it
            colour = self._colour_pool().submit(lomo_descriptors, images,
                                                self.reid_head.lomo_config)
        out = self.predictor.encoder(images)                   # the one encoder pass
        own_pass = getattr(self.reid_head, "needs_pixels", False)
        with torch.inference_mode():
            # the embedding heads are small: run them in float32 on the float32-pooled tokens,
            # as they were trained (personlens.inference.pooled)
            tokens = out.tokens.float()
            if own_pass:   # a lifelong head learned on the ImageNet lower stages, not these tokens
                reid = self.reid_head.embed_images(images)
            else:
                reid = (F.normalize(self.reid_head(tokens).float(), dim=-1)
                        if self.reid_head is not None else tokens.mean(1))
            search = (F.normalize(self.search_head(tokens).float(), dim=-1)
                      if self.search_head is not None and want_search else None)
            text_tokens = (self.describer_head.pool(out.first_view(tokens))
                           if self.describer_head is not None and want_text else None)

        merge = out.merge
        reid = F.normalize(reid if own_pass else merge(reid), dim=-1)
        if colour is not None:
            reid = self.reid_head.add_lomo(reid, torch.from_numpy(colour.result()))
        probs = out.probs
        reid = reid.numpy()
        if search is not None:
            search = F.normalize(merge(search), dim=-1).numpy()
        return probs, reid, search, text_tokens

    def process(self, images: list[Image.Image], sources: list[str], *, ids: list[str] | None = None,
                camera: str | None = None, timestamps: list[float | None] | None = None,
                track_ids: list[str | None] | None = None) -> list[PersonRecord]:
        """Records for decoded RGB crops. ``ids`` default to the SHA-256 of the file at each
        source (or of the decoded pixels when the source is not a readable file)."""
        n = len(images)
        if len(sources) != n:
            raise ValueError("images and sources differ in length")
        if n == 0:
            return []
        ids = list(ids) if ids is not None else [_id_for(s, im) for s, im in zip(sources, images)]
        timestamps = list(timestamps) if timestamps is not None else [None] * n
        track_ids = list(track_ids) if track_ids is not None else [None] * n
        if not len(ids) == len(timestamps) == len(track_ids) == n:
            raise ValueError("ids, timestamps and track_ids must match the images in length")
        probs, reid, search, text_tokens = self._run(images)
        preds = [self.predictor.to_prediction(str(s), p) for s, p in zip(sources, probs)]
        descriptions: list[str | None] = [None] * n
        if search is None:
            descriptions = [render_attributes(p.present, self.schema, p.attributes) for p in preds]
            search = self._embed_sentences(descriptions)
        if text_tokens is not None:
            texts = self.describer_head.texts(text_tokens, probs, self.predictor.threshold_map, self.names)
            descriptions = [text for text, _, _ in texts]
        return [PersonRecord(id=ids[i], path=str(sources[i]), attributes=preds[i].attributes,
                             present=preds[i].present, search_embedding=search[i],
                             reid_embedding=reid[i], camera=camera, timestamp=timestamps[i],
                             track_id=track_ids[i], model_version=self.model_version,
                             description=descriptions[i])
                for i in range(n)]

    def process_groups(self, groups: list[list[Image.Image]], sources: list[str], *, ids: list[str],
                       weights: list[list[float]] | None = None, camera: str | None = None,
                       timestamps: list[float | None] | None = None,
                       track_ids: list[str | None] | None = None) -> list[tuple[PersonRecord, list[str]]]:
        """One record per group of crops of one person (a video track's best crops), and the
        attributes its crops disagree on (``inference.fusion``).

        One encoder pass over every crop; attributes, search and re-ID embeddings fused per
        group (quality-weighted); one description per group, generated from the group's
        mean describer tokens and conditioned on, and checked against, the fused attributes
        (one generation per person, not one per crop). ``sources[i]`` is group i's best crop.
        """
        from .fusion import fuse_attributes, mean_unit

        n = len(groups)
        if not (len(sources) == len(ids) == n) or any(not g for g in groups):
            raise ValueError("one source and id per group, and at least one crop in each group")
        weights = weights or [None] * n
        timestamps = list(timestamps) if timestamps is not None else [None] * n
        track_ids = list(track_ids) if track_ids is not None else [None] * n
        if not len(weights) == len(timestamps) == len(track_ids) == n:
            raise ValueError("weights, timestamps and track_ids must match the groups in length")
        if n == 0:
            return []
        probs, reid, search, tokens = self._run([im for g in groups for im in g])
        names, thr_map = list(self.names), self.predictor.threshold_map
        thresholds = [thr_map[a] for a in names]
        fused, at = [], 0
        for g, w in zip(groups, weights):
            sl = slice(at, at + len(g))
            at += len(g)
            wt = np.asarray(w, np.float64) if w is not None else np.ones(len(g))
            fused.append((fuse_attributes(probs[sl], names, thresholds, wt), mean_unit(reid[sl], wt),
                          mean_unit(search[sl], wt) if search is not None else None,
                          (torch.from_numpy((wt / wt.sum()).astype(np.float32)) @ tokens[sl].flatten(1)
                           ).view(tokens.shape[1:]) if tokens is not None else None))
        fa_probs = np.array([[f[0].attributes[a] for a in names] for f in fused], np.float32)
        descriptions: list[str | None] = [None] * n
        if search is None:
            descriptions = [render_attributes(f[0].present, self.schema, f[0].attributes) for f in fused]
            search_vecs = self._embed_sentences(descriptions)
        else:
            search_vecs = np.stack([f[2] for f in fused])
        if tokens is not None:
            texts = self.describer_head.texts(torch.stack([f[3] for f in fused]), fa_probs, thr_map, names)
            descriptions = [text for text, _, _ in texts]
        return [(PersonRecord(id=ids[i], path=str(sources[i]), attributes=fused[i][0].attributes,
                              present=fused[i][0].present, search_embedding=search_vecs[i],
                              reid_embedding=fused[i][1], camera=camera, timestamp=timestamps[i],
                              track_id=track_ids[i], model_version=self.model_version,
                              description=descriptions[i]), fused[i][0].uncertain)
                for i in range(n)]

    def process_cameras(self, images: list[Image.Image], sources: list[str], cameras: list,
                        **kw) -> list[PersonRecord]:
        """``process`` for crops of several cameras: each camera's crops run with that camera's
        adaptation (one encoder pass per camera present); records come back in input order."""
        groups: dict = {}
        for i, c in enumerate(cameras):
            groups.setdefault(c, []).append(i)
        if self.adaptation is None or len(groups) <= 1:     # one pass for the whole batch
            self.use_camera(cameras[0] if cameras else None)
            records = self.process(images, sources, **kw)
            for r, c in zip(records, cameras):
                r.camera = c
            return records
        out: list = [None] * len(images)
        for cam, idx in groups.items():
            self.use_camera(cam)
            sub = {k: [v[i] for i in idx] for k, v in kw.items() if v is not None}
            for i, r in zip(idx, self.process([images[i] for i in idx], [sources[i] for i in idx],
                                              camera=cam, **sub)):
                out[i] = r
        return out

    def records_from_paths(self, paths: Iterable[str | Path], batch_size: int = 32,
                           camera: str | None = None) -> Iterator[PersonRecord | PredictionError]:
        """One result per path, in order; unreadable files yield a ``PredictionError``."""
        def run(sources, loaded):
            ids, images = zip(*loaded)
            return self.process(list(images), list(sources), ids=list(ids), camera=camera)

        return batched_over_paths(paths, batch_size, run, load=load_crop)


def _quietly(fn, *args, **kw):
    """Call ``fn`` with transformers' weight-loading progress bars off (they clutter CLI output)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover
        return fn(*args, **kw)
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return fn(*args, **kw)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_crop(path: str | Path) -> tuple[str, Image.Image]:
    """(content id, decoded RGB image) of a crop file, or ImageLoadError."""
    data = read_image_bytes(path)
    return content_id(data), decode_image(data, str(path))


def _id_for(source: str, image: Image.Image) -> str:
    try:
        return content_id(Path(source).read_bytes())
    except (OSError, ValueError):
        h = hashlib.sha256(f"{image.mode}:{image.size}".encode())
        h.update(image.tobytes())
        return h.hexdigest()
