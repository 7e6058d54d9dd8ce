"""The ``personlens`` command line."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

DATASETS = ("peta", "pa100k")


def _err(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="personlens")
def main():
    """Understand people in camera footage: attributes, descriptions, search, re-ID."""


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="A trained model directory (default: the shipped PETA model).")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--top", default=8, show_default=True, help="Attributes shown per image in the table.")
@click.option("--flip-tta/--no-flip-tta", default=None,
              help="Average with the mirror image (default: as the model was calibrated).")
def attributes(images, as_json, weights, batch_size, top, flip_tta):
    """Recognise pedestrian attributes on person crops (IMAGE... files or folders)."""
    paths = _expand(images)
    predictor = _load_predictor(weights, flip_tta=flip_tta)
    _report_per_image(predictor.predict_paths(paths, batch_size=batch_size), len(paths), as_json,
                      lambda r: _print_row(r, top))


def _report_per_image(results, n: int, as_json: bool, show) -> None:
    """Print per-image results (``show(r)`` each, or one JSON list); an unreadable image
    (``PredictionError``) gets one line on stderr, and any makes the exit status 1."""
    from .inference.predict import PredictionError

    done, failed = [], 0
    for r in results:
        if isinstance(r, PredictionError):
            failed += 1
            _err(f"{r.image}: {r.error}")
            continue
        done.append(r)
        if not as_json:
            show(r)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in done], indent=2))
    if failed:
        _err(f"{failed} of {n} images could not be read")
        sys.exit(1)


def _load_predictor(weights, **kw):
    """The predictor, or a one-line error (not a traceback) for an unusable --weights."""
    from .inference.predict import AttributePredictor

    try:
        return AttributePredictor(weights, **kw)
    except (FileNotFoundError, ValueError) as e:
        _err(f"cannot load model: {e}")
        sys.exit(2)


def _expand(items) -> list[Path]:
    """Files as given; folders expanded (recursively) to the images they hold."""
    exts = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
    out = []
    for p in items:
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in exts and f.is_file()))
        else:
            out.append(p)  # missing files are reported by the loader
    return out


def _print_row(r, top: int) -> None:
    shown = sorted(r.present, key=lambda n: -r.attributes[n])[:top]
    text = ", ".join(f"{n} {r.attributes[n]:.2f}" for n in shown) or "(none above threshold)"
    click.echo(f"{r.image}\n    {text}")


DEFAULT_DB = Path("personlens-db")


def _open_library(db: Path, create: bool = False, **kw):
    """A PersonLibrary, or a one-line error (exit 2) for a missing library or unusable model."""
    import sqlite3

    from .library import PersonLibrary

    try:
        lib = PersonLibrary(db, create=create, **kw)
    except (OSError, ValueError, sqlite3.DatabaseError) as e:  # missing, unreadable, not a library
        _err(f"{e}" if isinstance(e, FileNotFoundError) else f"cannot open library {db}: {e}")
        sys.exit(2)
    try:
        lib.pipeline  # load the models now, so a bad model is reported here
    except (FileNotFoundError, ValueError) as e:
        lib.close()
        _err(f"cannot load model: {e}")
        sys.exit(2)
    return lib


def _parse_where(items, lib) -> dict:
    from .library import UnknownAttributeError, parse_where

    try:
        return lib.validate_where(parse_where(items))
    except (ValueError, UnknownAttributeError) as e:
        _err(f"--where {e}")
        sys.exit(2)


def _warn_stale(lib) -> None:
    stale = lib.stale_count()
    if stale:
        _err(f"warning: {stale} records were made by another model and are not searched; "
             f"run `personlens index` on their folders again to re-embed them")


def _print_hits(hits, top: int = 5) -> None:
    if not hits:
        click.echo("    (no matches)")
    for h in hits:
        r = h.record
        attrs = ", ".join(f"{n} {r.attributes[n]:.2f}" for n in r.top_present(top)) or "(none present)"
        click.echo(f"{h.rank:>4}  {h.score:6.3f}  {r.path}\n              {attrs}")
        if r.description:
            click.echo(f"              {r.description}")


@main.command("index")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--db", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DB,
              show_default=True, help="Library directory (created if missing).")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--camera", default=None, help="Camera name stored with every crop of this run.")
@click.option("--weights", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Attribute model directory (default: the library's, else the shipped model).")
@click.option("--search-head", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Trained search-embedding head (default: the library's, else the "
                                 "shipped one, else attributes as text).")
@click.option("--reid-head", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Trained re-ID head (default: the library's, else the shipped one, "
                                 "else mean-pooled encoder features).")
@click.option("--describer", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Description model (default: the library's, else the shipped one).")
@click.option("--no-descriptions", is_flag=True,
              help="Store no descriptions (faster indexing; remembered by the library).")
@click.option("--index-type", type=click.Choice(["flat", "hnsw", "ivf"]), default=None,
              help="Vector index kind (remembered by the library; default flat, exact).")
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def index_cmd(paths, db, batch_size, camera, weights, search_head, reid_head, describer,
              no_descriptions, index_type, progress, as_json):
    """Add person crops (PATH... files or folders, recursive) to a searchable library.

    Crops are keyed by content: indexing the same files again adds nothing, and an
    interrupted run can simply be run again.
    """
    from tqdm import tqdm

    if describer is not None and no_descriptions:
        raise click.UsageError("--describer and --no-descriptions exclude each other")
    files = _expand(paths)
    lib = _open_library(db, create=True, par_dir=weights, search_head=search_head,
                        reid_head=reid_head, index_kind=index_type,
                        describer="baseline" if no_descriptions else describer)
    try:
        summary = lib.index_paths(files, batch_size=batch_size, progress=progress, camera=camera,
                                  on_error=lambda e: tqdm.write(f"error: {e.image}: {e.error}",
                                                                file=sys.stderr))
    finally:
        lib.close()
    if as_json:
        click.echo(json.dumps({"db": str(db), **summary.to_dict()}, indent=2))
    else:
        click.echo(f"{summary.added} added, {summary.skipped_existing} already indexed, "
                   f"{summary.reembedded} re-embedded, {len(summary.failed)} failed; "
                   f"{summary.total} people in {db}")
    if summary.stale:
        _err(f"warning: {summary.stale} records in {db} were made by another model")
    if summary.failed:
        _err(f"{len(summary.failed)} of {len(files)} images could not be read")
        sys.exit(1)


@main.command()
@click.argument("query")
@click.option("--db", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DB,
              show_default=True)
@click.option("--top-k", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--where", "where", multiple=True, metavar="ATTR=yes|no",
              help="Keep only people with (yes) or without (no) an attribute; repeatable.")
@click.option("--json", "as_json", is_flag=True)
def search(query, db, top_k, where, as_json):
    """Find people by a sentence ("a woman with a backpack"), optionally filtered by attributes."""
    lib = _open_library(db)
    try:
        cond = _parse_where(where, lib)
        try:
            hits = lib.search(query, top_k=top_k, where=cond)
        except ValueError as e:
            _err(str(e))
            sys.exit(2)
        _warn_stale(lib)
    finally:
        lib.close()
    if as_json:
        click.echo(json.dumps([h.to_dict() for h in hits], indent=2))
    else:
        _print_hits(hits)


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--db", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DB,
              show_default=True)
@click.option("--top-k", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--where", "where", multiple=True, metavar="ATTR=yes|no")
@click.option("--camera-centring", is_flag=True,
              help="Subtract each camera's mean embedding before ranking (needs crops indexed "
                   "with --camera; helps across cameras, see docs/results.md).")
@click.option("--camera", default=None,
              help="Camera of query images that are not in the library (for --camera-centring).")
@click.option("--json", "as_json", is_flag=True)
def similar(images, db, top_k, where, camera_centring, camera, as_json):
    """Find people who look like the person in each IMAGE (re-identification)."""
    from .data.images import ImageLoadError
    from .library import NO_CAMERAS

    lib = _open_library(db)
    out, failed = [], 0
    try:
        cond = _parse_where(where, lib)
        if camera_centring and lib.camera_statistics() is None:
            _err(f"--camera-centring: {NO_CAMERAS}")
            sys.exit(2)
        for img in _expand(images):
            try:
                hits = lib.similar(img, top_k=top_k, where=cond, camera_centring=camera_centring,
                                   camera=camera)
            except ImageLoadError as e:
                failed += 1
                _err(f"{img}: {e.reason}")
                continue
            out.append({"query": str(img), "results": [h.to_dict() for h in hits]})
            if not as_json:
                click.echo(f"{img}")
                _print_hits(hits)
        _warn_stale(lib)
    finally:
        lib.close()
    if as_json:
        click.echo(json.dumps(out, indent=2))
    if failed:
        _err(f"{failed} query images could not be read")
        sys.exit(1)


@main.group()
def train():
    """Train models on a dataset."""


@train.command("attributes")
@click.option("--dataset", type=click.Choice(DATASETS), default="peta", show_default=True)
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--partition", default=0, show_default=True, help="PETA partition (0-4).")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--head", type=click.Choice(["cross_attention", "linear"]), default="cross_attention",
              show_default=True)
@click.option("--unfreeze-top/--frozen", default=True, show_default=True,
              help="Train the encoder's top stages (named variant) or keep it frozen.")
@click.option("--epochs", default=12, show_default=True)
@click.option("--encoder", default="efficientnet_lite0", show_default=True)
@click.option("--stage", default=8, show_default=True, help="Encoder stages from here are trainable.")
@click.option("--attributes", "attr_set", default="standard", show_default=True,
              help="'standard' (PETA's 35), 'all' (105), or a comma list of names.")
@click.option("--cache", type=click.Path(path_type=Path), default=Path("cache/features"), show_default=True)
@click.option("--encoder-lr", default=3e-4, show_default=True)
@click.option("--calibration", type=click.Choice(["ma", "f1", "balanced", "joint", "keep_ma"]),
              default="joint", show_default=True, help="How per-attribute thresholds are fitted on val.")
@click.option("--seed", default=0, show_default=True)
@click.option("--exclude-subsets", default="", show_default=True,
              help="PETA sub-datasets to leave out of train and val, comma-separated "
                   "(e.g. VIPeR,PRID,GRID: an encoder that has never seen the re-ID test sets).")
def train_attributes(dataset, root, partition, out, head, unfreeze_top, epochs, encoder, stage,
                     attr_set, cache, encoder_lr, calibration, seed, exclude_subsets):
    """Train a VLM-PAR model; choose the epoch and thresholds on the validation split."""
    import torch

    from .data import create_dataset
    from .models.par import HeadConfig
    from .train.par import TrainConfig, train_par

    torch.set_num_threads(max(1, torch.get_num_threads()))
    attrs = attr_set if attr_set in ("standard", "all") else attr_set.split(",")
    excluded = tuple(s.strip() for s in exclude_subsets.split(",") if s.strip())
    try:
        tr, va = (create_dataset(dataset, root, split, partition=partition, attributes=attrs,
                                 exclude_subsets=excluded) for split in ("train", "val"))
    except (FileNotFoundError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    cfg = TrainConfig(encoder=encoder, stage=stage, unfreeze_top=unfreeze_top, epochs=epochs,
                      head=HeadConfig(kind=head), cache_root=str(cache), seed=seed, dataset=dataset,
                      encoder_lr=encoder_lr, calibration=calibration, partition=partition,
                      exclude_subsets=excluded)
    model, summary = train_par(tr, va, tr.paths + va.paths, cfg, out_dir=out, log=click.echo)
    click.echo(json.dumps({"out": str(out), **{k: summary[k] for k in ("val_fixed", "val_calibrated")}},
                          indent=2))


@main.group()
def calibrate():
    """Refit decision thresholds of a trained model on a validation split."""


@calibrate.command("attributes")
@click.option("--dataset", type=click.Choice(DATASETS), default="peta", show_default=True)
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--partition", default=0, show_default=True)
@click.option("--split", default="val", show_default=True)
@click.option("--weights", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--objective", type=click.Choice(["ma", "f1", "balanced", "joint", "keep_ma"]),
              default="joint", show_default=True)
def calibrate_attributes(dataset, root, partition, split, weights, objective):
    """Per-attribute thresholds fitted through the real inference path; rewrites config.json."""
    from .data import create_dataset
    from .eval.metrics import calibrate_thresholds, par_metrics
    from .eval.par import predict_dataset
    from .inference.predict import AttributePredictor

    if split == "test":
        raise click.UsageError("thresholds are never fitted on the test split")
    predictor = AttributePredictor(weights)
    ds = create_dataset(dataset, root, split, partition=partition,
                        attributes=list(predictor.names))
    probs = predict_dataset(predictor, ds)
    th = calibrate_thresholds(probs, ds.labels, objective)
    cfg_path = Path(weights) / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["thresholds"] = [float(t) for t in th]
    fixed, cal = (par_metrics(probs, ds.labels, predictor.names, t) for t in (0.5, th))
    cfg.setdefault("notes", {})["calibration"] = {
        "objective": objective, "split": split, "partition": partition,
        "fixed_0.5": {"mA": fixed.mA, "f1": fixed.f1}, "calibrated": {"mA": cal.mA, "f1": cal.f1}}
    cfg_path.write_text(json.dumps(cfg, indent=2))
    click.echo(f"{split}: fixed 0.5 mA {fixed.mA:.2f} F1 {fixed.f1:.2f} -> "
               f"{objective} mA {cal.mA:.2f} F1 {cal.f1:.2f}; thresholds written to {cfg_path}")


@main.group("eval")
def eval_():
    """Evaluate models on held-out data."""


@eval_.command("attributes")
@click.option("--dataset", type=click.Choice(DATASETS), default="peta", show_default=True)
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--partition", default=0, show_default=True)
@click.option("--split", default="test", show_default=True)
@click.option("--weights", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--attributes", "attr_set", default="standard", show_default=True)
@click.option("--precision", type=click.Choice(["bf16", "fp32"]), default="bf16", show_default=True)
@click.option("--flip-tta/--no-flip-tta", default=None,
              help="Average with the mirror image (default: as the model was calibrated).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), required=True)
def eval_attributes(dataset, root, partition, split, weights, attr_set, precision, flip_tta, json_path):
    """mA, instance accuracy/precision/recall/F1 and per-attribute results (JSON + PNG plot)."""
    from .data import create_dataset
    from .eval.par import evaluate_par, write_report

    attrs = attr_set if attr_set in ("standard", "all") else attr_set.split(",")
    try:
        ds = create_dataset(dataset, root, split, partition=partition, attributes=attrs)
    except (FileNotFoundError, KeyError, ValueError) as e:
        _err(e.args[0] if isinstance(e, KeyError) else str(e))
        sys.exit(2)
    predictor = _load_predictor(weights, precision=precision, flip_tta=flip_tta)
    try:
        results = evaluate_par(predictor, ds)
    except ValueError as e:
        _err(str(e))
        sys.exit(2)
    meta = {"dataset": dataset, "partition": partition, "split": split,
            "weights": str(weights or "shipped:par-peta"), "precision": precision, "flip_tta": predictor.flip_tta,
            "title": f"{dataset} partition {partition} {split}: per-attribute mA"}
    plot = write_report(results, json_path, meta)
    for label, m in results.items():
        click.echo(f"{label:>10}: mA {m.mA:.2f}  acc {m.accuracy:.2f}  prec {m.precision:.2f}  "
                   f"rec {m.recall:.2f}  F1 {m.f1:.2f}  ({m.num_images} images)")
    click.echo(f"wrote {json_path} and {plot}")


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--weights", type=click.Path(exists=True, path_type=Path), default=None)
def info(as_json, weights):
    """Shipped models, their attributes and parameter counts."""
    from .models.io import load_par
    from .models.factory import list_models

    try:
        m = load_par(weights)
    except (FileNotFoundError, ValueError) as e:
        _err(f"cannot load model: {e}")
        sys.exit(2)
    enc = sum(p.numel() for p in m.encoder.parameters())
    head = sum(p.numel() for p in m.head.parameters())
    data = {
        "version": _version(),
        "image_encoders": list_models("image_encoder"),
        "text_encoders": list_models("text_encoder"),
        "attributes_model": {"encoder": m.config.encoder, "head": m.config.head.kind,
                             "attributes": m.config.attributes, "encoder_parameters": enc,
                             "head_parameters": head, "total_parameters": enc + head},
        "description_model": _describe_info(),
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        a = data["attributes_model"]
        click.echo(f"personlens {data['version']}\nattribute model: {a['encoder']} + {a['head']} head, "
                   f"{len(a['attributes'])} attributes, {a['total_parameters']:,} parameters")
        click.echo(f"image encoders: {', '.join(data['image_encoders'])}")
        click.echo(f"text encoders: {', '.join(data['text_encoders'])}")


def _describe_info() -> dict:
    from .models.info import describe_info

    return describe_info()


def _version() -> str:
    from . import __version__

    return __version__


from . import cli_describe  # noqa: E402,F401  (describe, train describe, eval describe)
from . import cli_heads  # noqa: E402,F401  (train/eval search, train/eval reid)
from . import cli_serve  # noqa: E402,F401  (serve, worker)

if __name__ == "__main__":
    main()
