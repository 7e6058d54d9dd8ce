"""``personlens describe``, ``personlens train describe`` and ``personlens eval describe``.

Registered on the command groups by :mod:`personlens.cli`. Here ``--weights`` is the
description model (the model these commands run) and ``--par`` its attribute model.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ._common import (INPUT_PATHS, _err, _expand, _report_per_image, _use_library_adaptation, _warn,
                      deprecated_alias, model_option, needs_extra, out_option)

DECODINGS = ("greedy", "beam", "sample")
CONSISTENCY = ("fix", "flag", "off")
_weights = click.option("--weights", type=click.Path(path_type=Path), default=None,
                       help="Description model directory (from `personlens train describe`; "
                            "default: the shipped one).")
_par = click.option("--par", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
                    help="Attribute model (default: the one saved with the description model).")


def _decoding_options(f):
    """The generation options shared by ``describe`` and ``eval describe``."""
    opts = [
        click.option("--decoding", type=click.Choice(DECODINGS), default="greedy", show_default=True,
                     help="How words are chosen: the most likely, beam search, or sampled."),
        click.option("--beam-size", default=4, show_default=True, type=click.IntRange(min=1),
                     help="Beams (--decoding beam)."),
        click.option("--temperature", default=1.0, show_default=True,
                     type=click.FloatRange(min=0, min_open=True), help="Sampling only."),
        click.option("--sample-top-k", default=0, show_default=True, type=click.IntRange(min=0),
                     help="Sampling: keep the k most likely words (0: off)."),
        deprecated_alias("--top-k", "--sample-top-k", "sample_top_k", type=click.IntRange(min=0)),
        click.option("--top-p", default=1.0, show_default=True,
                     type=click.FloatRange(min=0, max=1, min_open=True), help="Sampling: nucleus mass."),
        click.option("--repetition-penalty", default=1.0, show_default=True,
                     type=click.FloatRange(min=0, min_open=True),
                     help="Divide the score of words already said by this (1: off)."),
        click.option("--no-repeat-ngram", default=0, show_default=True, type=click.IntRange(min=0),
                     help="Never repeat an n-gram of this size (0: off)."),
        click.option("--seed", default=0, show_default=True, help="Sampling seed (same seed, same text)."),
        click.option("--consistency", type=click.Choice(CONSISTENCY), default="fix", show_default=True,
                     help="Check the text against the attributes: fix contradictions, flag them, or off."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _decode_config(decoding, beam_size, temperature, sample_top_k, top_p, repetition_penalty,
                   no_repeat_ngram, seed, max_words=48):
    from ..models.generate import DecodeConfig

    return DecodeConfig(method=decoding, max_len=max_words + 1, beam_size=beam_size,
                        temperature=temperature, top_k=sample_top_k, top_p=top_p,
                        repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram,
                        seed=seed)


def _load_describer(weights, par, decode_kw, consistency, precision="auto"):
    from ..inference.describe import Describer

    try:
        d = Describer(weights, par_dir=par, consistency=consistency, precision=precision,
                      warn=_warn)
    except (FileNotFoundError, ValueError, ModuleNotFoundError) as e:
        _err(f"cannot load model: {e}")
        sys.exit(2)
    d.decoding = _decode_config(**decode_kw, max_words=d.config.max_words)
    return d


@click.command()
@click.argument("images", nargs=-1, required=True, type=INPUT_PATHS)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@_weights
@model_option("describer")
@_par
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1),
              help="Crops per forward pass.")
@_decoding_options
@click.option("--db", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Use this library's adaptation to its cameras (`personlens adapt`).")
@click.option("--camera", default=None, help="With --db: that camera's adaptation (default: all cameras').")
def describe(images, as_json, weights, par, batch_size, consistency, db, camera, **decode_kw):
    """Describe the person in each crop (IMAGE... files or folders) in one sentence.

    The attributes come from the same encoder pass; the text is checked against them
    (--consistency).
    """
    paths = _expand(images)
    if camera is not None and db is None:
        raise click.UsageError("--camera needs --db (the library whose adaptation to use)")
    describer = _load_describer(weights, par, decode_kw, consistency)
    if db is not None:
        _use_library_adaptation(describer.predictor, db, camera)
    verb = "corrected" if consistency == "fix" else "contradiction"

    def show(r):
        click.echo(f"{r.image}\n    {r.text}")
        for c in r.contradictions:
            click.echo(f"    ({verb}: {c['message']})")

    _report_per_image(describer.describe_paths(paths, batch_size=batch_size), len(paths), as_json, show)


def _grid(value: str) -> tuple[int, int]:
    try:
        r, c = (int(v) for v in value.lower().split("x"))
        if r < 1 or c < 1:
            raise ValueError
        return r, c
    except ValueError:
        raise click.BadParameter(f"expected ROWSxCOLS such as 4x3, got {value!r}") from None


@click.command("describe")
@click.option("--dataset", type=click.Choice(["peta"]), default="peta", show_default=True,
              help="Training dataset.")
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="PETA root (images/ + PETA.mat).")
@click.option("--partition", default=0, show_default=True, help="PETA partition (0-4).")
@click.option("--jsonl", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Train on image-text pairs instead ({\"image\", \"answer\"} per line).")
@click.option("--val-jsonl", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Validation pairs for --jsonl (the epoch is chosen on them).")
@click.option("--par", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Attribute model whose encoder feeds the describer (default: the shipped one).")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Directory the trained describer is written to.")
@click.option("--decoder", type=click.Choice(["transformer", "smollm2"]), default="transformer",
              show_default=True, help="Text decoder: a small transformer or SmolLM2.")
@click.option("--epochs", default=15, show_default=True, type=click.IntRange(min=1), help="Training epochs.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1),
              help="Training batch size.")
@click.option("--lr", default=5e-4, show_default=True, help="Learning rate.")
@click.option("--layers", default=3, show_default=True, type=click.IntRange(min=1), help="Decoder layers.")
@click.option("--d-model", default=256, show_default=True, type=click.IntRange(min=8),
              help="Decoder width.")
@click.option("--heads", default=4, show_default=True, type=click.IntRange(min=1),
              help="Attention heads per decoder layer.")
@click.option("--grid", default="4x3", show_default=True, help="Visual prefix grid (ROWSxCOLS).")
@click.option("--attr-conditioning/--no-attr-conditioning", default=True, show_default=True,
              help="Feed the attribute model's probabilities as prefix tokens.")
@click.option("--augment", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Probability of training on a varied caption instead of the structured one.")
@click.option("--limit", default=None, type=click.IntRange(min=1),
              help="Use only the first N training images (and N/4 validation images): quick runs.")
@click.option("--cache", type=click.Path(path_type=Path), default=Path("cache"), show_default=True,
              help="Cache root (reads <cache>/features, writes <cache>/describe).")
@click.option("--allow-over-budget", is_flag=True, help="Train even above the 100M-parameter budget.")
@click.option("--seed", default=0, show_default=True, help="Random seed.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
def train_describe(dataset, root, partition, jsonl, val_jsonl, par, out, decoder, epochs, batch_size,
                   lr, layers, d_model, heads, grid, attr_conditioning, augment, limit, cache,
                   allow_over_budget, seed, progress):
    """Train a describer on PETA structured descriptions (or JSONL pairs); epoch chosen on val loss."""
    import torch

    from ..models.describer import BudgetError
    from ..train.describer import (
        CaptionSet,
        DescribeTrainConfig,
        jsonl_caption_set,
        peta_caption_set,
        train_describer,
    )

    torch.set_num_threads(max(1, torch.get_num_threads()))
    grid = _grid(grid)
    try:
        if jsonl is not None:
            if val_jsonl is None:
                raise click.UsageError("--jsonl needs --val-jsonl (the epoch is chosen on it)")
            tr, va = jsonl_caption_set(jsonl), jsonl_caption_set(val_jsonl)
        else:
            if root is None:
                raise click.UsageError("pass --root PETA_DIR (or --jsonl/--val-jsonl)")
            from ..data import create_dataset

            n_aug = 2 if augment > 0 else 0
            tr = peta_caption_set(create_dataset(dataset, root, "train", partition, "all"), n_aug, seed)
            va = peta_caption_set(create_dataset(dataset, root, "val", partition, "all"))
    except (FileNotFoundError, ValueError) as e:
        _err(str(e))
        sys.exit(2)
    if limit:
        tr = CaptionSet(tr.paths[:limit], tr.texts[:limit], None if tr.labels is None else tr.labels[:limit])
        nv = max(1, limit // 4)
        va = CaptionSet(va.paths[:nv], va.texts[:nv], None if va.labels is None else va.labels[:nv])
    args = {"d_model": d_model, "layers": layers, "heads": heads, "ff": 4 * d_model, "dropout": 0.1,
            "max_len": 64}
    cfg = DescribeTrainConfig(decoder=decoder, decoder_args=args, grid=grid,
                              attr_conditioning=attr_conditioning, epochs=epochs,
                              batch_size=batch_size, lr=lr, augment=augment, seed=seed,
                              cache_root=str(cache), allow_over_budget=allow_over_budget)
    try:
        _, summary = train_describer(tr, va, cfg, par_dir=par, out_dir=out, log=click.echo,
                                     progress=progress)
    except BudgetError as e:
        _err(f"{e}; not trained (--allow-over-budget trains it anyway)")
        sys.exit(2)
    except (FileNotFoundError, ValueError, ModuleNotFoundError) as e:
        _err(str(e))
        sys.exit(2)
    click.echo(json.dumps({"out": str(out), "best_epoch": summary["best_epoch"],
                           "val_loss": min((h["val_loss"] for h in summary["history"]), default=None),
                           "total_parameters": summary["parameters"]["total_parameters"],
                           "seconds": summary["seconds"]}, indent=2))


@click.command("describe")
@click.option("--dataset", type=click.Choice(["peta"]), default="peta", show_default=True,
              help="Evaluation dataset.")
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="PETA root (images/ + PETA.mat).")
@click.option("--partition", default=0, show_default=True, help="PETA partition (0-4).")
@click.option("--split", default="test", show_default=True, help="Split to evaluate.")
@_weights
@model_option("describer")
@_par
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1),
              help="Crops per forward pass.")
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Only the first N images.")
@click.option("--tokenizer", type=click.Choice(["ptb", "simple"]), default="ptb", show_default=True,
              help="Caption-metric tokenisation (ptb needs Java; falls back to simple).")
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True,
              help="Inference precision.")
@out_option("Report JSON (a PNG plot is written next to it).")
@_decoding_options
@needs_extra("eval")
def eval_describe(dataset, root, partition, split, weights, par, batch_size, limit, tokenizer,
                  precision, out, consistency, **decode_kw):
    """BLEU-1..4, ROUGE-L, CIDEr, attribute accuracy from the text vs the attribute model, and
    text-attribute contradictions (JSON + PNG plot)."""
    from ..data import create_dataset
    from ..eval.describe import evaluate_describer, write_report

    try:
        ds = create_dataset(dataset, root, split, partition=partition, attributes="all")
    except (FileNotFoundError, KeyError, ValueError) as e:
        _err(e.args[0] if isinstance(e, KeyError) else str(e))
        sys.exit(2)
    describer = _load_describer(weights, par, decode_kw, consistency, precision)
    try:
        results = evaluate_describer(describer, ds, batch_size=batch_size, limit=limit,
                                     tokenizer=tokenizer)
    except ValueError as e:
        _err(str(e))
        sys.exit(2)
    meta = {"dataset": dataset, "partition": partition, "split": split,
            "weights": str(describer.weights), "par": str(describer.par_dir or "shipped:par-peta"),
            "decoding": describer.decoding.to_dict(), "consistency": consistency,
            "precision": precision,
            "title": f"{dataset} partition {partition} {split}: descriptions ({describer.decoding.method})"}
    plot = write_report(results, out, meta)
    cm = results["caption_metrics"]
    click.echo("  ".join(f"{m} {cm[m]:.1f}" for m in ("BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr"))
               + f"  (tokenizer: {cm['tokenizer'].split(' ')[0]}, {results['num_images']} images)")
    for f, v in results["text_attribute_accuracy"].items():
        p = results["par_attribute_accuracy"][f]["accuracy"]
        click.echo(f"{f:>14}: text {v['accuracy'] if v['accuracy'] is not None else float('nan'):5.1f}  "
                   f"attribute model {'  n/a' if p is None else f'{p:5.1f}'}")
    click.echo(f"contradictions: {results['contradiction_rate']:.1f}% of images before the fix, "
               f"{results['contradiction_rate_after_fix']:.1f}% after")
    click.echo(f"wrote {out} and {plot}")
