"""``personlens info``: version, encoders, the attribute and description models."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ._common import _err, model_option


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--weights", type=click.Path(exists=True, path_type=Path), default=None,
              help="Attribute model directory to report (default: the shipped PETA model).")
@model_option("attributes")
@click.option("--db", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Also report this library: its models, records and adaptation (`personlens adapt`).")
@click.option("--reid-head", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Also report this re-ID head; for a lifelong head, the domains it learned in order.")
def info(as_json, weights, db, reid_head):
    """Shipped models, their attributes and parameter counts (and a library's, with --db)."""
    from .. import __version__
    from ..models.factory import list_models
    from ..models.hub import SHIPPED
    from ..models.info import describe_info
    from ..models.io import load_par
    from ..inference.encode import resolve_precision
    from ..inference.onnx_encoder import resolve_runtime

    try:
        m = load_par(weights)
    except (FileNotFoundError, ValueError) as e:
        _err(f"cannot load model: {e}")
        sys.exit(2)
    enc = sum(p.numel() for p in m.encoder.parameters())
    head = sum(p.numel() for p in m.head.parameters())
    data = {
        "version": __version__,
        "image_encoders": list_models("image_encoder"),
        "text_encoders": list_models("text_encoder"),
        "attribute_heads": list_models("par_head"),
        "attributes_model": {"encoder": m.config.encoder, "head": m.config.head.kind,
                             "attributes": m.config.attributes, "encoder_parameters": enc,
                             "head_parameters": head, "total_parameters": enc + head},
        "description_model": describe_info(),
        "new_cameras": _transfer_info(weights, m.config.attributes),
        # how this machine runs the encoder (PERSONLENS_PRECISION / PERSONLENS_RUNTIME)
        "runtime": {"precision": (p := resolve_precision("auto")),
                    "encoder": resolve_runtime("auto", p)},
        "shipped_models": {n: {"kind": s.kind, "present": s.present, "summary": s.summary}
                           for n, s in SHIPPED.items()},
    }
    from ..train.lifelong import STRATEGIES

    data["lifelong_strategies"] = list(STRATEGIES)
    if reid_head is not None:
        try:
            data["reid_head"] = _reid_head_info(reid_head)
        except (FileNotFoundError, ValueError) as e:
            _err(f"cannot read {reid_head}: {e}")
            sys.exit(2)
    if db is not None:
        data["library"] = _library_info(db)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        a = data["attributes_model"]
        click.echo(f"personlens {data['version']}\nattribute model: {a['encoder']} + {a['head']} head, "
                   f"{len(a['attributes'])} attributes, {a['total_parameters']:,} parameters")
        _print_transfer(data["new_cameras"])
        click.echo(f"encoder runtime here: {data['runtime']['encoder']} "
                   f"({data['runtime']['precision']})")
        click.echo(f"image encoders: {', '.join(data['image_encoders'])}")
        click.echo(f"text encoders: {', '.join(data['text_encoders'])}")
        click.echo(f"attribute heads (train attributes --head): {', '.join(data['attribute_heads'])}")
        click.echo("shipped models (--model NAME): " + ", ".join(
            f"{n} ({s['kind']}{'' if s['present'] else ', not in this build'})"
            for n, s in data["shipped_models"].items()))
        click.echo(f"lifelong re-ID strategies (train reid --lifelong --strategy): "
                   f"{', '.join(data['lifelong_strategies'])}")
        if "reid_head" in data:
            h = data["reid_head"]
            line = f"re-ID head {reid_head}: {h['kind']}"
            if h["kind"] == "lifelong-reid":
                line += (f", strategy {h['strategy']}, learned in order: "
                         + (", ".join(f"{d['name']} ({d['persons']} persons)" for d in h["domains"])
                            or "nothing yet")
                         + f"; prototype memory: {', '.join(h['prototype_memory']) or 'empty'}")
            click.echo(line)
        if "library" in data:
            _print_library(data["library"])


def _transfer_info(weights, names) -> dict | None:
    """The attribute model's ``new_cameras.json`` with its ratings grouped, or None."""
    from ..models import hub
    from ..models.transfer import read_transfer

    try:
        report = read_transfer(hub.resolve(weights, "attributes"), list(names))
    except (FileNotFoundError, ValueError) as e:
        return {"error": str(e)}
    if report is None:
        return None
    return {**report.to_dict(), "by_rating": report.by_rating(list(names))}


def _print_transfer(t: dict | None) -> None:
    if t is None:
        click.echo("on cameras never seen: not measured for this model")
    elif "error" in t:
        click.echo(f"on cameras never seen: unreadable measurement ({t['error']})")
    else:
        g = t["by_rating"]
        click.echo("how each attribute holds on cameras never seen (ROC AUC on PETA sub-datasets "
                   "the recipe did not train on; `info --json`: how it was measured):")
        for rating, label in (("holds", f"holds (AUC >= {t['cut_offs']['holds']})"),
                              ("weak", "weak"),
                              ("near chance", f"near chance (AUC < {t['cut_offs']['near_chance_below']}): "
                                              "do not rely on these"),
                              ("too few examples", "too few examples to say")):
            if g.get(rating):
                click.echo(f"  {label}: " + ", ".join(
                    f"{n} {t['attributes'][n]['auc_new_cameras']:.2f}" for n in g[rating]))


def _reid_head_info(head: Path) -> dict:
    from ..models import hub

    kind = hub.kind_of(head)
    cfg = hub.read_config(head)
    if kind != "lifelong-reid":
        return {"kind": kind}
    return {"kind": kind, "strategy": cfg.get("strategy"),
            "domains": [{k: d.get(k) for k in ("name", "persons", "images", "strategy", "iterations")}
                        for d in cfg.get("domains", [])],
            "prototype_memory": cfg.get("memory_names", []),
            "stage": cfg.get("stage"), "parts": cfg.get("parts")}


def _library_info(db: Path) -> dict:
    """A library's models, record counts and adaptation, from its store and files (the
    stored adaptation is checked against the library's attribute model)."""
    import numpy as np

    from ..inference.adaptation import Adaptation, AdaptationError
    from ._common import _open_library

    lib = _open_library(db, adapting=True, read_only=True)
    try:
        pipe = lib.pipeline
        out = {"db": str(db), "records": lib.store.count(), "models": dict(lib.models),
               "adaptation": None}
        try:
            adaptation = Adaptation.load(db)
            if adaptation is not None:
                adaptation.check(pipe.predictor.fingerprint, pipe.names, where=str(db))
                pipe.set_adaptation(adaptation)
        except AdaptationError as e:
            out["adaptation"] = {"error": str(e)}
            adaptation = None
        out["model_version"] = lib.model_version
        out["searchable"] = len(lib)
        out["stale"] = lib.stale_count()
        if adaptation is not None:
            base = np.asarray(pipe.predictor.base_thresholds)
            out["adaptation"] = {"id": adaptation.id, "settings": vars(adaptation.settings),
                                 "cameras": {c: e.summary(list(pipe.names), base)
                                             for c, e in adaptation.cameras.items()}}
        return out
    finally:
        lib.close()


def _print_library(lib: dict) -> None:
    click.echo(f"library {lib['db']}: {lib['records']} records, {lib.get('searchable', 0)} searchable "
               f"with model version {lib.get('model_version')}"
               + (f", {lib['stale']} stale (made by another model)" if lib.get("stale") else ""))
    a = lib["adaptation"]
    if a is None:
        click.echo("  not adapted (see `personlens adapt`)")
    elif "error" in a:
        click.echo(f"  adaptation unusable: {a['error']}")
    else:
        for cam, e in a["cameras"].items():
            moves = ", ".join(f"{n} {x:.2f}->{y:.2f}" for n, (x, y) in e["largest_threshold_moves"].items())
            click.echo(f"  adapted for camera {'(all)' if cam == '*' else cam}: {e['crops']} crops, "
                       f"{e['created']}, normalisation {'re-estimated' if e['normalisation'] else 'kept'}"
                       f"; largest threshold moves: {moves}")
