"""``personlens train reid --lifelong`` and ``personlens eval reid --lifelong`` (issue 16):
the command side of ``personlens.train.lifelong_user``."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ._common import _fail


def _domains(specs) -> list[tuple[str, str]]:
    out = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise click.UsageError(f"--domain takes NAME=PATH, got {spec!r}")
        out.append((name.strip(), path.strip()))
    return out


def train_lifelong_cmd(out, from_dir, domains, strategy, iterations, seed, cache, threads, progress):
    from ..train.lifelong import LifelongConfig
    from ..train.lifelong_user import train_lifelong

    if threads:
        import torch

        torch.set_num_threads(int(threads))
    try:
        result = train_lifelong(out, _domains(domains), from_dir=from_dir, strategy_name=strategy,
                                cfg=LifelongConfig(seed=seed, **({"iterations": iterations} if iterations else {})),
                                cache_root=cache, progress=progress, log=click.echo)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as e:
        _fail(e)
    click.echo(json.dumps({"out": result["out"], "domains": result["domains"]}, indent=2))


def eval_lifelong_cmd(head, root, cuhk03_root, trials, out, cache, threads):
    from ..train.lifelong_user import evaluate_head

    if head is None:
        raise click.UsageError("--lifelong needs --reid-head DIR (a head trained with --lifelong)")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    try:
        result = evaluate_head(head, root, cuhk03_root, trials, cache, log=click.echo)
    except (FileNotFoundError, ValueError, KeyError) as e:
        _fail(e)
    click.echo(f"learned, in order: {', '.join(result['learned']) or 'nothing yet'} "
               f"(strategy {result['strategy']})")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2))
        click.echo(f"wrote {out}")
