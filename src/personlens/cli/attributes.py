"""``personlens attributes``, ``train attributes``, ``calibrate attributes`` and
``eval attributes``: the pedestrian-attribute (PAR) model."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ._common import (
    DATASETS,
    INPUT_PATHS,
    UNSURE_MARK,
    _err,
    _expand,
    _library_par_dir,
    _load_predictor,
    _print_row,
    _report_per_image,
    _use_library_adaptation,
    _warn,
    deprecated_alias,
    model_option,
    needs_extra,
    out_option,
)

CALIBRATIONS = ("ma", "f1", "balanced", "joint", "keep_ma")
_root = click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path),
                     required=True, help="Dataset root (PETA: images/ + PETA.mat).")


@click.command()
@click.argument("images", nargs=-1, required=True, type=INPUT_PATHS)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="A trained attribute model directory (default: the shipped PETA model).")
@model_option("attributes")
@click.option("--batch-size", default=32, show_default=True, help="Crops per forward pass.")
@click.option("--top-k", default=8, show_default=True, help="Attributes shown per image in the table.")
@deprecated_alias("--top", "--top-k", "top_k", type=int)
@click.option("--flip-tta/--no-flip-tta", default=None,
              help="Average with the mirror image (default: as the model was calibrated).")
@click.option("--db", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Use this library's model and its adaptation to its cameras (`personlens adapt`).")
@click.option("--camera", default=None, help="With --db: that camera's adaptation (default: all cameras').")
def attributes(images, as_json, weights, batch_size, top_k, flip_tta, db, camera):
    """Recognise pedestrian attributes on person crops (IMAGE... files or folders)."""
    paths = _expand(images)
    if camera is not None and db is None:
        raise click.UsageError("--camera needs --db (the library whose adaptation to use)")
    if db is not None and weights is None:
        weights = _library_par_dir(db)
    predictor = _load_predictor(weights, flip_tta=flip_tta)
    if db is not None:
        _use_library_adaptation(predictor, db, camera)
    unsure = _near_chance(predictor)
    marked = []
    _report_per_image(predictor.predict_paths(paths, batch_size=batch_size), len(paths), as_json,
                      lambda r: marked.append(_print_row(r, top_k, unsure)))
    if any(marked):
        click.echo(f"{UNSURE_MARK}: near chance on cameras the model never saw; `personlens info` "
                   "lists how each attribute holds")


def _near_chance(predictor) -> frozenset[str]:
    """The attributes the model's new_cameras.json rates near chance (none without one; an
    unreadable file costs the marks, not the predictions)."""
    try:
        t = predictor.transfer
    except ValueError as e:
        _warn(str(e))
        return frozenset()
    return frozenset(t.by_rating(predictor.names)["near chance"]) if t is not None else frozenset()


def _protocol_options(f):
    """--protocol / --fold, shared by train and eval attributes."""
    from ..eval.unseen import FOLDS, VALIDATION_FOLD

    f = click.option("--fold", "folds", multiple=True,
                     type=click.Choice([*FOLDS, VALIDATION_FOLD.name]),
                     help="With --protocol unseen-cameras: only these folds (default: the three "
                          f"test folds; '{VALIDATION_FOLD.name}' is the validation fold).")(f)
    return click.option("--protocol", type=click.Choice(["standard", "unseen-cameras"]),
                        default="standard", show_default=True,
                        help="standard: PETA's own splits; unseen-cameras: leave-sub-datasets-"
                             "out folds (docs/results.md).")(f)


def _check_head(ctx, param, value):
    """A registered attribute head; an unknown name lists them (the registry loads lazily)."""
    from ..models.factory import head_needs

    try:
        head_needs(value)
    except KeyError as e:
        raise click.BadParameter(str(e).strip("'\"")) from None
    return value


@click.command("attributes")
@click.option("--dataset", type=click.Choice(DATASETS), default="peta", show_default=True,
              help="Training dataset.")
@_root
@click.option("--partition", default=0, show_default=True, help="PETA partition (0-4).")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Directory the trained model is written to.")
@click.option("--head", default="cross_attention", show_default=True, callback=_check_head,
              help="Attribute head on the encoder's tokens: cross_attention, linear, or a "
                   "sequence head (vim, vim_uni, vim_text, transformer, transformer_text, hybrid).")
@click.option("--head-layers", default=2, show_default=True, type=click.IntRange(1, 12),
              help="Mixer layers of a sequence head.")
@click.option("--loss", type=click.Choice(["ce_focal", "wce"]), default="ce_focal", show_default=True,
              help="ce_focal: CE + focal + label smoothing, imbalance-weighted; wce: weighted CE only.")
@click.option("--unfreeze-top/--frozen", default=True, show_default=True,
              help="Train the encoder's top stages (named variant) or keep it frozen.")
@click.option("--epochs", default=12, show_default=True, help="Training epochs.")
@click.option("--encoder", default="efficientnet_lite0", show_default=True, help="Image encoder name.")
@click.option("--stage", default=8, show_default=True, help="Encoder stages from here are trainable.")
@click.option("--attributes", "attr_set", default="standard", show_default=True,
              help="'standard' (PETA's 35), 'all' (105), or a comma list of names.")
@click.option("--cache", type=click.Path(path_type=Path), default=Path("cache/features"),
              show_default=True, help="Feature cache folder.")
@click.option("--encoder-lr", default=3e-4, show_default=True, help="Learning rate of the encoder.")
@click.option("--calibration", type=click.Choice(CALIBRATIONS),
              default="joint", show_default=True, help="How per-attribute thresholds are fitted on val.")
@click.option("--seed", default=0, show_default=True, help="Random seed.")
@click.option("--exclude-subsets", default="", show_default=True,
              help="PETA sub-datasets to leave out of train and val, comma-separated "
                   "(e.g. VIPeR,PRID,GRID: an encoder that has never seen the re-ID test sets).")
@click.option("--augment-views", default=0, show_default=True, type=click.IntRange(0, 8),
              help="Pixel-augmented copies of each image (framing, resolution, blur, JPEG, "
                   "exposure) cached beside the clean ones and trained on (docs/results.md).")
@click.option("--background-masks", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Person masks (scripts/person_masks.py): the augmented views re-back people "
                   "with other training crops' backgrounds (needs --augment-views).")
@click.option("--background-p", default=1.0, show_default=True, type=click.FloatRange(0, 1),
              help="Share of the augmented views of a crop with a mask that are re-backed.")
@click.option("--mixstyle", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Probability per batch of MixStyle (feature statistics mixed between images) "
                   "on the encoder top's input and first block group; 0: off.")
@click.option("--average-last", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Ship the mean weights of this last fraction of training steps (SWA-style) "
                   "instead of the best epoch's, which is kept in OUT/epoch-selected; 0: off.")
@click.option("--unlabelled", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of unlabelled crops from other cameras (e.g. CUHK03's train/), trained "
                   "on with the --teacher's probabilities as targets (noisy student).")
@click.option("--teacher", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Attribute model that labels the --unlabelled crops; with --protocol "
                   "unseen-cameras, an earlier run's --out (each fold uses its own model).")
@click.option("--unlabelled-weight", default=1.0, show_default=True, type=click.FloatRange(0, 10),
              help="Weight of the unlabelled crops' loss beside the labelled one.")
@click.option("--unlabelled-ratio", default=0.5, show_default=True, type=click.FloatRange(0.05, 4),
              help="Unlabelled crops per labelled crop in each batch.")
@click.option("--person-balance", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Draw training images with probability ∝ (images of their person)^-P: 0 "
                   "uniform, 1 every person the same weight (PETA's TownCentre repeats 214 people).")
@click.option("--select-on", type=click.Choice(["val", "new-persons"]), default="val", show_default=True,
              help="Keep the epoch with the best mA + F1 on the val split, or on its images of people "
                   "the train split lacks (PETA splits images, not people; docs/results.md).")
@click.option("--init-head", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Start the head from this attribute model's (same head, attributes and encoder), "
                   "e.g. one trained --frozen: linear probing, then fine-tuning (LP-FT); with "
                   "--protocol unseen-cameras, an earlier run's --out (each fold its own model).")
@_protocol_options
@click.option("--resume", is_flag=True,
              help="Go on from the checkpoint a killed run left in --out (written every epoch).")
def train_attributes(dataset, root, partition, out, head, head_layers, loss, unfreeze_top, epochs,
                     encoder, stage, attr_set, cache, encoder_lr, calibration, seed, exclude_subsets,
                     augment_views, background_masks, background_p, mixstyle, average_last, unlabelled,
                     teacher, unlabelled_weight, unlabelled_ratio, person_balance, select_on, init_head,
                     protocol, folds, resume):
    """Train a VLM-PAR model; choose the epoch and thresholds on the validation split.

    With --protocol unseen-cameras, one model per leave-sub-datasets-out fold of PETA goes to
    OUT/<fold> (finished folds are skipped, a cut one resumes)."""
    from dataclasses import replace

    import torch

    from ..data import create_dataset
    from ..data.background import BackgroundMasksError
    from ..models.par import HeadConfig
    from ..train.losses import LOSS_PRESETS
    from ..train.par import TrainConfig, train_par
    from ..train.pseudo import PseudoLabelError
    from ..train.warm_start import WarmStartError

    torch.set_num_threads(max(1, torch.get_num_threads()))
    if bool(unlabelled) != bool(teacher):
        raise click.UsageError("--unlabelled and --teacher go together: the teacher labels the crops")
    if background_masks and not augment_views:
        raise click.UsageError("--background-masks re-backs the augmented views: add --augment-views")
    augment = dict(background_p=background_p, masks=str(background_masks)) if background_masks else {}
    recipe = dict(augment=augment, unlabelled=str(unlabelled or ""), teacher=str(teacher or ""),
                  unlabelled_weight=unlabelled_weight, unlabelled_ratio=unlabelled_ratio,
                  person_balance=person_balance, select_on=select_on, init_head=str(init_head or ""))
    attrs = attr_set if attr_set in ("standard", "all") else attr_set.split(",")
    excluded = tuple(s.strip() for s in exclude_subsets.split(",") if s.strip())
    if protocol == "unseen-cameras":
        from ..train.unseen import train_unseen_folds

        if dataset != "peta" or excluded:
            raise click.UsageError("--protocol unseen-cameras trains on PETA and chooses the "
                                   "held-out sub-datasets itself (no --exclude-subsets)")
        cfg = TrainConfig(encoder=encoder, stage=stage, unfreeze_top=unfreeze_top, epochs=epochs,
                          head=HeadConfig(kind=head, layers=head_layers),
                          loss=replace(LOSS_PRESETS[loss]), cache_root=str(cache), seed=seed,
                          encoder_lr=encoder_lr, calibration=calibration, partition=partition,
                          augment_views=augment_views, mixstyle=mixstyle, average_last=average_last,
                          **recipe)
        try:
            summaries = train_unseen_folds(root, out, cfg, list(folds) or None, attrs, resume=True,
                                           log=click.echo)
        except (PseudoLabelError, WarmStartError, BackgroundMasksError) as e:
            raise click.UsageError(str(e)) from None
        click.echo(json.dumps({f: s["val_calibrated"] for f, s in summaries.items()}, indent=2))
        return
    try:
        tr, va = (create_dataset(dataset, root, split, partition=partition, attributes=attrs,
                                 exclude_subsets=excluded) for split in ("train", "val"))
    except (FileNotFoundError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    cfg = TrainConfig(encoder=encoder, stage=stage, unfreeze_top=unfreeze_top, epochs=epochs,
                      head=HeadConfig(kind=head, layers=head_layers), loss=replace(LOSS_PRESETS[loss]),
                      cache_root=str(cache), seed=seed, dataset=dataset,
                      encoder_lr=encoder_lr, calibration=calibration, partition=partition,
                      exclude_subsets=excluded, augment_views=augment_views, mixstyle=mixstyle,
                      average_last=average_last, **recipe)
    try:
        _, summary = train_par(tr, va, tr.paths + va.paths, cfg, out_dir=out, log=click.echo,
                               resume=resume)
    except (PseudoLabelError, WarmStartError, BackgroundMasksError) as e:
        raise click.UsageError(str(e)) from None
    click.echo(json.dumps({"out": str(out), **{k: summary[k] for k in ("val_fixed", "val_calibrated")}},
                          indent=2))


@click.command("attributes")
@click.option("--dataset", type=click.Choice(DATASETS), default="peta", show_default=True,
              help="Dataset whose split the thresholds are fitted on.")
@_root
@click.option("--partition", default=0, show_default=True, help="PETA partition (0-4).")
@click.option("--split", default="val", show_default=True, help="Split to fit on (never test).")
@click.option("--weights", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="The attribute model directory whose config.json is rewritten (no --model: a "
                   "shipped model is never rewritten in place).")
@click.option("--objective", type=click.Choice(CALIBRATIONS),
              default="joint", show_default=True, help="What the thresholds maximise.")
@click.option("--scores-only", is_flag=True,
              help="Keep the thresholds; only (re)write val_scores.json, the score statistics "
                   "`personlens adapt` moves thresholds from.")
def calibrate_attributes(dataset, root, partition, split, weights, objective, scores_only):
    """Per-attribute thresholds fitted through the real inference path; rewrites config.json
    and val_scores.json (the split's score statistics, for `personlens adapt`)."""
    from ..data import create_dataset
    from ..eval.metrics import calibrate_thresholds, par_metrics
    from ..eval.par import predict_dataset
    from ..inference.adapt import score_statistics
    from ..models.hub import write_scores
    from ..models.io import set_thresholds

    if split == "test":
        raise click.UsageError("thresholds are never fitted on the test split")
    predictor = _load_predictor(weights)
    ds = create_dataset(dataset, root, split, partition=partition,
                        attributes=list(predictor.names))
    probs = predict_dataset(predictor, ds)
    scores_path = write_scores(weights, score_statistics(probs, ds.labels, list(predictor.names), split))
    if scores_only:
        click.echo(f"{split}: score statistics of {len(ds)} images written to {scores_path}")
        return
    th = calibrate_thresholds(probs, ds.labels, objective)
    fixed, cal = (par_metrics(probs, ds.labels, predictor.names, t) for t in (0.5, th))
    cfg_path = set_thresholds(weights, th, {
        "objective": objective, "split": split, "partition": partition,
        "fixed_0.5": {"mA": fixed.mA, "f1": fixed.f1}, "calibrated": {"mA": cal.mA, "f1": cal.f1}})
    click.echo(f"{split}: fixed 0.5 mA {fixed.mA:.2f} F1 {fixed.f1:.2f} -> "
               f"{objective} mA {cal.mA:.2f} F1 {cal.f1:.2f}; thresholds written to {cfg_path}")


@click.command("attributes")
@click.option("--dataset", type=click.Choice(DATASETS), default="peta", show_default=True,
              help="Evaluation dataset.")
@_root
@click.option("--partition", default=0, show_default=True, help="PETA partition (0-4).")
@click.option("--split", default="test", show_default=True,
              help="Split to evaluate. With --protocol unseen-cameras: 'test', or 'val' (the "
                   "held-out sub-datasets' validation images, for choosing recipes on every fold).")
@click.option("--weights", type=click.Path(exists=True, path_type=Path), default=None,
              help="Attribute model directory (default: the shipped PETA model).")
@model_option("attributes")
@click.option("--attributes", "attr_set", default="standard", show_default=True,
              help="'standard' (PETA's 35), 'all' (105), or a comma list of names.")
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True,
              help="Inference precision.")
@click.option("--flip-tta/--no-flip-tta", default=None,
              help="Average with the mirror image (default: as the model was calibrated).")
@out_option("Report JSON (a PNG plot is written next to it).")
@_protocol_options
@click.option("--seen/--no-seen", default=True, show_default=True,
              help="With --protocol unseen-cameras: also score each fold model on the cameras it "
                   "saw (the rest of the test split), for the gap.")
@click.option("--adapt", "adapt", is_flag=True,
              help="With --protocol unseen-cameras: also score each fold model after `personlens "
                   "adapt` on its unseen cameras' test images (labels unused).")
@click.option("--normalisation/--no-normalisation", default=False, show_default=True,
              help="With --adapt: also re-estimate the normalisation statistics (AdaBN).")
@click.option("--selected-on", type=click.Choice(["val", "new-persons"]), default=None,
              help="With --protocol unseen-cameras: score each fold's model whose epoch this "
                   "`train attributes --select-on` rule kept (a run keeps both; default: its main one).")
@needs_extra("eval")
def eval_attributes(dataset, root, partition, split, weights, attr_set, precision, flip_tta, out,
                    protocol, folds, seen, adapt, normalisation, selected_on):
    """mA, instance accuracy/precision/recall/F1 and per-attribute results (JSON + PNG plot).

    With --protocol unseen-cameras, --weights is the folder of fold models written by `train
    attributes --protocol unseen-cameras`: each is scored on its fold's never-seen cameras and
    on the rest of the test split; per fold and mean +- std."""
    from ..data import create_dataset
    from ..eval.par import evaluate_par, write_report

    if protocol == "unseen-cameras":
        from ..eval.unseen import evaluate_unseen, mean_text, write_unseen_report

        if weights is None:
            raise click.UsageError("--protocol unseen-cameras needs --weights DIR (the fold models)")
        try:
            from ..inference.adapt import AdaptSettings

            summary = evaluate_unseen(weights, root, list(folds) or None, precision, log=click.echo,
                                      seen=seen, adapt=adapt,
                                      adapt_settings=AdaptSettings(normalisation=normalisation),
                                      split=split, selected_on=selected_on)
        except (FileNotFoundError, KeyError, ValueError) as e:
            _err(e.args[0] if isinstance(e, KeyError) else str(e))
            sys.exit(2)
        plot = write_unseen_report(summary, out, {"weights": str(weights), "selected_on": selected_on,
                                                  "precision": precision,
                                                  "adapt": adapt and {"normalisation": normalisation},
                                                  "title": "PETA p0, cameras never seen"})
        click.echo(f"unseen cameras ({split}): mA {mean_text(summary, f'{split}_unseen')}  "
                   f"F1 {mean_text(summary, f'{split}_unseen', 'f1')}")
        if "adapt_gain_mA" in summary["mean"]:
            click.echo(f"after adapt: mA {summary['mean'][f'{split}_unseen_adapted']['mA']:.2f} "
                       f"(gain {summary['mean']['adapt_gain_mA']:+.2f}, worst fold "
                       f"{summary['mean']['adapt_worst_fold_mA']:+.2f})")
        click.echo(f"wrote {out} and {plot}")
        return

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
            "weights": str(weights or "shipped:par-peta"), "precision": predictor.precision,
            "flip_tta": predictor.flip_tta,
            "title": f"{dataset} partition {partition} {split}: per-attribute mA"}
    plot = write_report(results, out, meta)
    for label, m in results.items():
        click.echo(f"{label:>10}: mA {m.mA:.2f}  acc {m.accuracy:.2f}  prec {m.precision:.2f}  "
                   f"rec {m.recall:.2f}  F1 {m.f1:.2f}  ({m.num_images} images)")
    click.echo(f"wrote {out} and {plot}")
