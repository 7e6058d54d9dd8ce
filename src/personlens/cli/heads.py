"""``personlens train search|reid`` and ``personlens eval search|reid``: the search and re-ID
heads on the PAR model's frozen encoder (see ``personlens.train.search``/``.reid`` and
``personlens.eval.search``/``.reid``).

Registered on the ``train`` and ``eval`` groups by :mod:`personlens.cli`.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from ._common import _fail, deprecated_alias, needs_extra, out_option


def _set_threads(threads) -> None:
    if threads:
        import torch

        torch.set_num_threads(int(threads))


_dir = click.Path(exists=True, file_okay=False, path_type=Path)
_PAR_OPTION = click.option("--par", "par", type=_dir,
                           default=None, help="PAR model directory whose encoder the head uses "
                                              "(default: the shipped PETA model).")
_CACHE_OPTION = click.option("--cache", type=click.Path(file_okay=False, path_type=Path),
                             default=Path("cache"), show_default=True,
                             help="Cache folder (pooled features, text embeddings).")
_THREADS_OPTION = click.option("--threads", type=click.IntRange(min=1), default=None,
                               help="CPU threads (default: torch's).")
_OUT_DIR = click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
                        help="Directory the trained head is written to.")
_LR = click.option("--lr", default=1e-3, show_default=True, help="Learning rate.")
_SEED = click.option("--seed", default=0, show_default=True, help="Random seed.")
_PROGRESS = click.option("--progress/--no-progress", default=True, show_default=True,
                         help="Show progress bars.")


def _eval_io(f):
    """``--out`` (the report; old spelling ``--json``), ``--cache`` and ``--threads``."""
    for o in (_THREADS_OPTION, _CACHE_OPTION, out_option("Report JSON (a PNG plot is written next to it).")):
        f = o(f)
    return f


@click.command("search")
@click.option("--root", type=_dir, required=True,
              help="PETA folder (images/, PETA.mat).")
@_PAR_OPTION
@_OUT_DIR
@click.option("--partition", default=0, show_default=True, help="PETA partition (0-4).")
@click.option("--epochs", default=40, show_default=True, type=click.IntRange(min=1), help="Training epochs.")
@click.option("--captions-per-image", default=6, show_default=True, type=click.IntRange(min=1),
              help="Generated captions per training image.")
@click.option("--hidden", default=512, show_default=True, help="Hidden width of the image head (0: linear).")
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(min=2),
              help="Training batch size.")
@_LR
@click.option("--attr-weight", default=1.0, show_default=True,
              help="Weight of the attribute (chunk) loss; 0 turns it off.")
@_CACHE_OPTION
@_SEED
@_THREADS_OPTION
@click.option("--limit", type=click.IntRange(min=2), default=None,
              help="Use only the first N training images (quick runs).")
@_PROGRESS
def train_search_cmd(root, par, out, partition, epochs, captions_per_image, hidden, batch_size, lr,
                     attr_weight, cache, seed, threads, limit, progress):
    """Train a text-search head (MiniLM query space) on the PAR model's frozen encoder."""
    from ..train.search import SearchTrainConfig, train_search

    _set_threads(threads)
    cfg = SearchTrainConfig(epochs=epochs, captions_per_image=captions_per_image, hidden=hidden,
                            batch_size=batch_size, lr=lr, attr_weight=attr_weight, seed=seed,
                            partition=partition)
    try:
        _, summary = train_search(root, out, par_dir=par, cfg=cfg, cache_root=cache, log=click.echo,
                                  progress=progress, limit=limit)
    except (FileNotFoundError, ValueError, KeyError) as e:
        _fail(e)
    click.echo(json.dumps({"out": str(out), "best_epoch": summary["best_epoch"],
                           "val": summary["val"]}, indent=2))


@click.command("reid")
@click.option("--root", type=_dir, default=None,
              help="PETA folder (identities.csv): TownCentre, 3DPeS, CAVIAR4REID, i-LIDS.")
@deprecated_alias("--peta-root", "--root", "root", type=_dir)
@click.option("--cuhk03-root", type=_dir, default=None, help="CUHK03-subset folder: train/ (training) and val/ (epoch choice).")
@_PAR_OPTION
@_OUT_DIR
@click.option("--epochs", default=60, show_default=True, type=click.IntRange(min=1), help="Training epochs.")
@click.option("--p", "p", default=16, show_default=True, help="Identities per batch.")
@click.option("--k", "k", default=4, show_default=True, help="Images per identity in a batch.")
@click.option("--hidden", default=1024, show_default=True, help="Hidden width (0: linear).")
@click.option("--out-dim", default=256, show_default=True, help="Embedding size of the learned part.")
@_LR
@click.option("--lomo-dim", "lomo_dim", default=256, show_default=True, type=click.IntRange(min=0),
              help="Size of the projected LOMO part (colour and texture) appended to the "
                   "embedding (0: none); its texture weight and weight are chosen on the "
                   "validation domains.")
@deprecated_alias("--colour-dim", "--lomo-dim", "lomo_dim", type=click.IntRange(min=0))
@_CACHE_OPTION
@_SEED
@_THREADS_OPTION
@click.option("--limit", type=click.IntRange(min=2), default=None,
              help="Use only the images of the first identities, N in all (quick runs).")
@click.option("--val-domains", default="3DPeS,i-LIDS", show_default=True,
              help="PETA subsets held out of training to choose the epoch, feature and base weight "
                   "on unseen cameras (comma-separated; empty: CUHK03-subset val, in-domain).")
@click.option("--lifelong", is_flag=True,
              help="Learn new cameras in sequence (VLADR and baselines): continue --from a "
                   "lifelong head on each --domain, keeping its attribute prototype memory.")
@click.option("--from", "from_dir", type=_dir, default=None,
              help="--lifelong: the lifelong head to continue (default: start from the ImageNet encoder).")
@click.option("--domain", "domains", multiple=True, metavar="NAME=PATH",
              help="--lifelong: a new domain's labelled crops, a folder per person (cameras in "
                   "sub-folders or c<N> in file names) or a CSV path,person,camera; repeat, in order.")
@click.option("--strategy", default="vladr_styles", show_default=True,
              help="--lifelong: vladr_styles (VLADR with an attribute style memory, chosen on "
                   "validation; docs/results.md), finetune, lwf, lwf_average, weight_average, "
                   "vladr or an ablation.")
@click.option("--iterations", default=None, type=click.IntRange(min=1),
              help="--lifelong: PK batches per domain (default: the protocol's, 300).")
@_PROGRESS
def train_reid_cmd(root, cuhk03_root, par, out, epochs, p, k, hidden, out_dim, lr, lomo_dim,
                   cache, seed, threads, limit, val_domains, lifelong, from_dir, domains, strategy,
                   iterations, progress):
    """Train a re-ID head (ID loss + batch-hard triplet, PK batches) on the PAR model's encoder.

    VIPeR, PRID and GRID are never used for training (they are the cross-domain tests).
    With --lifelong: learn the --domain cameras one after the other (see docs/results.md).
    """
    from ..train.reid import ReidTrainConfig, train_reid

    if lifelong:
        from .lifelong import train_lifelong_cmd

        return train_lifelong_cmd(out, from_dir, domains, strategy, iterations, seed, cache,
                                  threads, progress)
    if from_dir or domains:
        raise click.UsageError("--from and --domain go with --lifelong")
    if root is None and cuhk03_root is None:
        raise click.UsageError("give --root (PETA) and/or --cuhk03-root")
    _set_threads(threads)
    cfg = ReidTrainConfig(epochs=epochs, p=p, k=k, hidden=hidden, out_dim=out_dim, lr=lr,
                          lomo_dim=lomo_dim, seed=seed)
    try:
        _, summary = train_reid(out, peta_root=root, cuhk03_root=cuhk03_root, par_dir=par,
                                cfg=cfg, cache_root=cache, log=click.echo, progress=progress,
                                limit=limit,
                                val_domains=tuple(d.strip() for d in val_domains.split(",") if d.strip()))
    except (FileNotFoundError, ValueError, KeyError) as e:
        _fail(e)
    click.echo(json.dumps({"out": str(out), "best_epoch": summary["best_epoch"],
                           "feature": summary["feature"], "base_weight": summary["base_weight"],
                           "lomo_weight": summary.get("colour", {}).get("weight", 0.0),
                           "val": summary.get("val")}, indent=2))


def _print_methods(methods: dict) -> None:
    for name, m in methods.items():
        if m is None:
            click.echo(f"{name:>22}: (no trained head available)")
            continue
        click.echo(f"{name:>22}: R1 {m['R1']:.2f}  R5 {m['R5']:.2f}  R10 {m['R10']:.2f}  "
                   f"mAP {m['mAP']:.2f}  mINP {m['mINP']:.2f}")
        u = m.get("unseen")
        if u:
            click.echo(f"{'unseen queries':>22}: R1 {u['R1']:.2f}  R5 {u['R5']:.2f}  R10 {u['R10']:.2f}  "
                       f"mAP {u['mAP']:.2f}  ({u['num_queries']} queries per trial)")


@click.command("search")
@click.option("--dataset", type=click.Choice(["peta"]), default="peta", show_default=True,
              help="Evaluation dataset.")
@click.option("--root", type=_dir, required=True, help="PETA folder (images/, PETA.mat).")
@click.option("--partition", default=0, show_default=True, help="PETA partition (0-4).")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True,
              help="Split to evaluate.")
@_PAR_OPTION
@click.option("--search-head", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Trained search head (default: the shipped one, if any).")
@click.option("--seed", default=0, show_default=True, help="Seed of the query captions.")
@_eval_io
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Use only the first N images of the split (quick runs).")
@_PROGRESS
@needs_extra("eval")
def eval_search_cmd(dataset, root, partition, split, par, search_head, seed, out, cache,
                    threads, limit, progress):
    """Text -> person search: learned head vs attributes-as-text baseline (JSON + PNG)."""
    from ..eval.search import run_search_eval

    _set_threads(threads)
    try:
        result, png = run_search_eval(out, root=root, partition=partition, split=split,
                                      par_dir=par, search_head=search_head or "default", seed=seed,
                                      cache_root=cache, progress=progress, limit=limit,
                                      log=click.echo)
    except (FileNotFoundError, ValueError, KeyError) as e:
        _fail(e)
    _print_methods(result["methods"])
    click.echo(f"wrote {out} and {png}")


@click.command("reid")
@click.option("--dataset", type=click.Choice(["viper", "prid", "grid", "cuhk03-subset"]), default=None,
              help="Re-ID test set (required without --lifelong).")
@click.option("--root", type=_dir, default=None,
              help="PETA folder (viper, prid, grid) or CUHK03-subset folder.")
@click.option("--lifelong", is_flag=True,
              help="Score a lifelong head (--reid-head) on the domains it learned and the unseen "
                   "ones (--root PETA, --cuhk03-root), and print what it learned, in order.")
@click.option("--cuhk03-root", type=_dir, default=None, help="--lifelong: the CUHK03-subset folder.")
@click.option("--trials", default=10, show_default=True, type=click.IntRange(min=1),
              help="Random splits averaged (VIPeR, PRID, GRID).")
@_PAR_OPTION
@click.option("--reid-head", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Trained re-ID head (default: the shipped one, if any).")
@click.option("--seed", default=0, show_default=True, help="Seed of the random splits.")
@_eval_io
@click.option("--n-test", type=click.IntRange(min=1), default=None,
              help="Test identities per trial (default: the protocol's; quick runs).")
@click.option("--camera-centring/--no-camera-centring", default=True, show_default=True,
              help="Also score every method after per-camera centring (camera ids only; "
                   "reported as 'METHOD+camera').")
@_PROGRESS
@needs_extra("eval")
def eval_reid_cmd(dataset, root, lifelong, cuhk03_root, trials, par, reid_head, seed, out,
                  cache, threads, n_test, camera_centring, progress):
    """Re-ID: learned head vs ImageNet and PAR-encoder baselines, CMC + mAP (JSON + PNG)."""
    from ..eval.reid import run_reid_eval

    if lifelong:
        from .lifelong import eval_lifelong_cmd

        return eval_lifelong_cmd(reid_head, root, cuhk03_root, trials, out, cache, threads)
    if dataset is None or root is None:
        raise click.UsageError("give --dataset and --root (or --lifelong)")
    _set_threads(threads)
    try:
        result, png = run_reid_eval(out, dataset=dataset, root=root, trials=trials, par_dir=par,
                                    reid_head=reid_head or "default", seed=seed, cache_root=cache,
                                    progress=progress, n_test=n_test,
                                    camera_centring=camera_centring, log=click.echo)
    except (FileNotFoundError, ValueError, KeyError) as e:
        _fail(e)
    _print_methods(result["methods"])
    click.echo(f"wrote {out} and {png}")
