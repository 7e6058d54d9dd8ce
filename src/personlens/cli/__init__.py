"""The ``personlens`` command line: the root group and where every command is registered.

One module per command group (:mod:`.attributes`, :mod:`.library`, :mod:`.describe`,
:mod:`.heads`, :mod:`.serve`, :mod:`.info`, :mod:`.video`), their shared helpers in :mod:`._common`. Those
modules never import this one; it imports them. Entry points: the ``personlens`` script
(``personlens.cli:main``), ``python -m personlens`` and ``python -m personlens.cli``.
"""
from __future__ import annotations

import click

from . import attributes, describe, heads, info, library, serve, video

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="personlens")
def main():
    """Understand people in camera footage: attributes, descriptions, search, re-ID."""


@main.group()
def train():
    """Train models on a dataset."""


@main.group()
def calibrate():
    """Refit decision thresholds of a trained model on a validation split."""


@main.group("eval")
def eval_():
    """Evaluate models on held-out data."""


for _cmd in (attributes.attributes, library.index_cmd, library.search, library.similar,
             describe.describe, serve.serve, serve.worker, info.info, library.adapt_cmd,
             video.track_cmd):
    main.add_command(_cmd)
for _cmd in (attributes.train_attributes, describe.train_describe, heads.train_search_cmd,
             heads.train_reid_cmd):
    train.add_command(_cmd)
calibrate.add_command(attributes.calibrate_attributes)
for _cmd in (attributes.eval_attributes, describe.eval_describe, heads.eval_search_cmd,
             heads.eval_reid_cmd, video.eval_tracking_cmd, video.eval_fusion_cmd):
    eval_.add_command(_cmd)
del _cmd
