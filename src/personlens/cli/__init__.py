"""The ``personlens`` command line: the root group and where every command is registered.

One module per command group (:mod:`.attributes`, :mod:`.library`, :mod:`.describe`,
:mod:`.heads`, :mod:`.serve`, :mod:`.info`, :mod:`.video`, :mod:`.manage`), their shared helpers in :mod:`._common`. Those
modules never import this one; it imports them. Entry points: the ``personlens`` script
(``personlens.cli:main``), ``python -m personlens`` and ``python -m personlens.cli``.
"""
from __future__ import annotations

import sys

import click

from . import attributes, describe, heads, info, library, manage, serve, video

__all__ = ["main"]


class _Main(click.Group):
    """The root group: a package of an optional extra that a command turns out to need and
    that is not installed ends in one line naming the extra, not a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ImportError as e:
            from ..extras import missing_extra

            missing = missing_extra(e)
            if missing is None:
                raise
            click.echo(f"error: {missing}", err=True)
            sys.exit(2)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
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
             video.track_cmd, manage.list_cmd, manage.export_cmd, manage.delete_cmd):
    main.add_command(_cmd)
for _cmd in (attributes.train_attributes, describe.train_describe, heads.train_search_cmd,
             heads.train_reid_cmd):
    train.add_command(_cmd)
calibrate.add_command(attributes.calibrate_attributes)
for _cmd in (attributes.eval_attributes, describe.eval_describe, heads.eval_search_cmd,
             heads.eval_reid_cmd, video.eval_tracking_cmd, video.eval_fusion_cmd):
    eval_.add_command(_cmd)
del _cmd
