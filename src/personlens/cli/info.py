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
def info(as_json, weights):
    """Shipped models, their attributes and parameter counts."""
    from .. import __version__
    from ..models.factory import list_models
    from ..models.hub import SHIPPED
    from ..models.info import describe_info
    from ..models.io import load_par

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
        "attributes_model": {"encoder": m.config.encoder, "head": m.config.head.kind,
                             "attributes": m.config.attributes, "encoder_parameters": enc,
                             "head_parameters": head, "total_parameters": enc + head},
        "description_model": describe_info(),
        "shipped_models": {n: {"kind": s.kind, "present": s.present, "summary": s.summary}
                           for n, s in SHIPPED.items()},
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        a = data["attributes_model"]
        click.echo(f"personlens {data['version']}\nattribute model: {a['encoder']} + {a['head']} head, "
                   f"{len(a['attributes'])} attributes, {a['total_parameters']:,} parameters")
        click.echo(f"image encoders: {', '.join(data['image_encoders'])}")
        click.echo(f"text encoders: {', '.join(data['text_encoders'])}")
        click.echo("shipped models (--model NAME): " + ", ".join(
            f"{n} ({s['kind']}{'' if s['present'] else ', not in this build'})"
            for n, s in data["shipped_models"].items()))
