"""Train one attribute model per unseen-camera fold (``personlens.eval.unseen``).

Each fold's model goes to ``<out>/<fold>``; a fold already trained is skipped and one cut
short resumes from its checkpoint, so the command can be re-run until all folds are done.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..eval.unseen import FOLDS, fold, fold_datasets
from ..models.hub import CONFIG_FILE
from .checkpoint import CHECKPOINT_FILE
from .par import TrainConfig, train_par
from .pseudo import PseudoLabelError
from .warm_start import WarmStartError


def fold_model(base: str | Path, name: str, role: str = "teacher",
               error: type[ValueError] = PseudoLabelError) -> Path:
    """The model fold ``name`` learns from (a teacher, ``train.pseudo``, or a head to start
    from, ``train.warm_start``): the fold's own model ``<base>/<name>``. A model trained on all
    of PETA saw the held-out cameras' people, so it is refused."""
    t = Path(base) / name
    if not (t / CONFIG_FILE).is_file():
        raise error(f"fold {name}: the {role} must be the fold's own model, {t} is not one "
                    f"(pass the --out folder of an unseen-cameras run)")
    return t


def train_unseen_folds(root: str | Path, out: str | Path, cfg: TrainConfig,
                       folds: list[str] | None = None, attributes="standard",
                       resume: bool = True, log=print) -> dict[str, dict]:
    from ..data.peta import PETA

    # one feature cache for every fold: all of the partition's train and val images
    everything = [p for split in ("train", "val")
                  for p in PETA(root, split, partition=cfg.partition, attributes=attributes).paths]
    summaries = {}
    for name in folds or list(FOLDS):
        f, d = fold(name), Path(out) / name
        if (d / CONFIG_FILE).is_file() and not (d / CHECKPOINT_FILE).exists():
            log(f"fold {name}: already trained in {d}")
            continue
        data = fold_datasets(root, f, attributes=attributes, partition=cfg.partition)
        log(f"fold {name}: held out {', '.join(f.held_out)}; train {len(data['train'])}, "
            f"val {len(data['val'])} images")
        fcfg = replace(cfg, exclude_subsets=tuple(f.held_out))
        if cfg.teacher:
            fcfg = replace(fcfg, teacher=str(fold_model(cfg.teacher, name)))
        if cfg.init_head:
            fcfg = replace(fcfg, init_head=str(fold_model(cfg.init_head, name, "head to start from",
                                                          WarmStartError)))
        # the held-out cameras' val images are watched every epoch (history only, never chosen on)
        _, summaries[name] = train_par(data["train"], data["val"], everything, fcfg, out_dir=d,
                                       log=log, resume=resume, monitor={"val_unseen": data["val_unseen"]})
    return summaries
