"""Helpers shared by the command modules of :mod:`personlens.cli`: error lines, image
expansion, per-image reports, opening a library, ``--where``, deprecated flag spellings and
the ``--model NAME`` option.

The command modules import this module, never :mod:`personlens.cli` itself (the root group
imports them).
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

DATASETS = ("peta", "pa100k")
DEFAULT_DB = Path("personlens-db")

# IMAGE... / PATH... arguments: not checked by click (its "is not readable" check stopped the
# whole command with exit 2): each unreadable one gets its own error line from the loader.
INPUT_PATHS = click.Path(path_type=Path, readable=False)


def _err(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)


def _warn(msg: str) -> None:
    click.echo(f"warning: {msg}", err=True)


def _fail(e: Exception) -> None:
    """A one-line error (no traceback) and exit status 2."""
    _err(f"{e.args[0] if isinstance(e, KeyError) and e.args else e}")
    sys.exit(2)


def require_extra(extra: str, *modules: str) -> None:
    """Exit with one line ("... is not installed: pip install 'personlens[EXTRA]'") unless the
    optional extra's packages (or just ``modules``) are installed (``personlens.extras``)."""
    from ..extras import MissingExtra, require

    try:
        require(extra, *modules)
    except MissingExtra as e:
        _fail(e)


def needs_extra(*extras: str):
    """Decorate a command's function (below ``@click.command``): it first checks that these
    extras are installed (``--help`` still works without them)."""
    def wrap(f):
        @functools.wraps(f)
        def run(*args, **kwargs):
            for extra in extras:
                require_extra(extra)
            return f(*args, **kwargs)
        return run
    return wrap


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except OSError:          # e.g. inside a folder that cannot be entered: the loader says so
        return False


def _expand(items) -> list[Path]:
    """Files as given; folders expanded (recursively) to the images they hold. A folder that
    cannot be listed (given, or met inside one) stays in the list as it is, so the loader
    reports it ("cannot read folder (Permission denied)") and it counts as failed; missing
    and unreadable files are reported by the loader too."""
    from ..data.images import images_in

    out = []
    for p in items:
        if not _is_dir(p):
            out.append(p)
            continue
        unreadable = []
        found = images_in(p, unreadable)
        out.extend(sorted(found + unreadable))
    return out


def _report_per_image(results, n: int, as_json: bool, show) -> None:
    """Print per-image results (``show(r)`` each, or one JSON list); an unreadable image
    (``PredictionError``) gets one line on stderr, and any makes the exit status 1."""
    from ..inference.predict import PredictionError

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


UNSURE_MARK = "(?)"


def _print_row(r, top_k: int, unsure: frozenset[str] = frozenset()) -> bool:
    """One image's present attributes, the most probable first; those in ``unsure`` (near
    chance on cameras the model never saw) carry UNSURE_MARK. True when one was marked."""
    shown = sorted(r.present, key=lambda n: -r.attributes[n])[:top_k]
    text = ", ".join(f"{n} {r.attributes[n]:.2f}" + (f" {UNSURE_MARK}" if n in unsure else "")
                     for n in shown) or "(none above threshold)"
    click.echo(f"{r.image}\n    {text}")
    return any(n in unsure for n in shown)


def _load_predictor(weights, **kw):
    """The predictor, or a one-line error (not a traceback) for an unusable --weights."""
    from ..inference.predict import AttributePredictor

    try:
        return AttributePredictor(weights, **kw)
    except (FileNotFoundError, ValueError) as e:
        _err(f"cannot load model: {e}")
        sys.exit(2)


def _library_par_dir(db: Path):
    """The attribute model a library was built with (None: the shipped one)."""
    from ..library import PersonLibrary

    try:
        lib = PersonLibrary(db, create=False, read_only=True)    # the store only, no model
    except (OSError, ValueError) as e:
        _err(f"{e}" if isinstance(e, FileNotFoundError) else f"cannot open library {db}: {e}")
        sys.exit(2)
    try:
        return lib.models["par_dir"]
    finally:
        lib.close()


def _use_library_adaptation(predictor, db: Path, camera: str | None) -> None:
    """``--db DIR [--camera NAME]``: apply that library's adaptation (``personlens adapt``) to
    ``predictor``; refused (exit 2) when it was fitted for another model."""
    from ..inference.adaptation import Adaptation, AdaptationError

    try:
        adaptation = Adaptation.load(db)
        if adaptation is None:
            _warn(f"{db} has no adaptation (see `personlens adapt`); using the model as trained")
            return
        adaptation.check(predictor.fingerprint, predictor.names, where=str(db))
    except AdaptationError as e:
        _err(f"cannot use the adaptation: {e}")
        sys.exit(2)
    predictor.set_adaptation(adaptation.entry(camera))


def _open_library(db: Path, create: bool = False, adapting: bool = False, **kw):
    """A PersonLibrary, or a one-line error (exit 2) for a missing library or unusable model.
    ``adapting``: do not apply the stored adaptation (``adapt`` replaces or removes it)."""
    import sqlite3

    from ..library import PersonLibrary

    try:
        lib = PersonLibrary(db, create=create, **kw)
    except (OSError, ValueError, sqlite3.DatabaseError) as e:  # missing, unreadable, not a library
        _err(f"{e}" if isinstance(e, FileNotFoundError) else f"cannot open library {db}: {e}")
        sys.exit(2)
    try:
        # load the models now, so a bad model is reported here
        _ = lib.pipeline_for_adapting() if adapting else lib.pipeline
    except (FileNotFoundError, ValueError) as e:
        lib.close()
        _err(f"cannot load model: {e}")
        sys.exit(2)
    return lib


def _parse_where(items, lib) -> dict:
    """``--where ATTR=yes|no`` items as the library's condition. A usage error (one line,
    exit status 2): a malformed item, an unknown attribute, or one attribute asked both yes and
    no (``parse_where`` raises a ValueError naming it: no one could match)."""
    from ..library import UnknownAttributeError, parse_where

    try:
        return lib.validate_where(parse_where(items))
    except (ValueError, UnknownAttributeError) as e:
        _err(f"--where {e}")
        sys.exit(2)


def _warn_stale(lib) -> None:
    stale = lib.stale_count()
    if stale:
        _warn(f"{stale} records were made by another model and are not searched; "
             f"run `personlens index` on their folders again to re-embed them")


def _print_hits(hits, top: int = 5) -> None:
    if not hits:
        click.echo("    (no matches)")
    for h in hits:
        r = h.record
        attrs = ", ".join(f"{n} {r.attributes[n]:.2f}" for n in r.top_present(top)) or "(none present)"
        click.echo(f"{h.rank:>4}  {h.score:6.3f}  {r.path}\n              {attrs}")
        where = _where_when(r, getattr(h, "track", None))
        if where:
            click.echo(f"              {where}")
        if r.description:
            click.echo(f"              {r.description}")


def _time(t: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _where_when(record, track: dict | None) -> str:
    """"camera cam1, 2026-11-29T13:00:00Z - 13:00:04Z (track, 22 frames; uncertain: ...)"."""
    parts = []
    if record.camera:
        parts.append(f"camera {record.camera}")
    if track and track.get("start") is not None:
        span = f"{_time(track['start'])} - {_time(track['end'])[11:]}"
        extra = f"track, {track.get('frames')} frames"
        if track.get("uncertain"):
            extra += "; uncertain: " + ", ".join(track["uncertain"])
        parts.append(f"{span} ({extra})")
    elif record.timestamp is not None:
        parts.append(_time(record.timestamp))
    return ", ".join(parts)


def _rewrite_kwargs(f, rewrite):
    """``f`` with its keyword arguments passed through ``rewrite(ctx, kwargs)`` first; the
    click options already attached to ``f`` stay attached."""
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        rewrite(click.get_current_context(), kwargs)
        return f(*args, **kwargs)

    return wrapper


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)


def deprecated_alias(old: str, new: str, dest: str, *, required: bool = False, **option_kw):
    """A hidden option ``old`` that still works for one release as the option ``new``
    (parameter ``dest``): using it prints ``warning: OLD is deprecated, use NEW`` on stderr
    and its value becomes ``dest``'s. ``required``: ``new`` is required (declare it without
    ``required=True``; either spelling satisfies it). Put it below the ``@click.command``."""
    alias = f"deprecated_{old.lstrip('-').replace('-', '_')}"

    def rewrite(ctx, kwargs):
        value = kwargs.pop(alias)
        if value is not None:
            if _given(ctx, dest):
                raise click.UsageError(f"{old} is the old spelling of {new}: give only {new}")
            _warn(f"{old} is deprecated, use {new}")
            kwargs[dest] = value
        elif required and kwargs.get(dest) is None:
            raise click.UsageError(f"Missing option '{new}'.")

    def decorate(f):
        return click.option(old, alias, hidden=True, default=None,
                            help=f"Deprecated spelling of {new}.", **option_kw)(_rewrite_kwargs(f, rewrite))

    return decorate


def model_option(kind: str, dest: str = "weights"):
    """``--model NAME``: a model shipped with personlens (``personlens.models.hub.SHIPPED``),
    the other way to choose what ``--weights DIR`` (parameter ``dest``) chooses. The command
    gets the model's directory in ``dest``; the two exclude each other."""
    def rewrite(ctx, kwargs):
        name = kwargs.pop("model")
        if name is None:
            return
        if kwargs.get(dest) is not None:
            raise click.UsageError("--model and --weights exclude each other")
        from ..models import hub

        if name not in hub.SHIPPED:
            raise click.BadParameter(f"no shipped model {name!r}; available: "
                                     f"{', '.join(n for n, m in hub.SHIPPED.items() if m.kind == kind)}",
                                     ctx=ctx, param_hint="'--model'")
        try:
            kwargs[dest] = hub.resolve(name, kind)
        except ValueError as e:
            raise click.BadParameter(str(e), ctx=ctx, param_hint="'--model'") from None

    def decorate(f):
        return click.option("--model", "model", default=None, metavar="NAME",
                            help=f"A shipped {kind} model by name, instead of --weights DIR "
                                 f"(`personlens info` lists them).")(_rewrite_kwargs(f, rewrite))

    return decorate


def out_option(help: str, **path_kw):
    """``--out PATH`` (required) for the report an eval command writes, with ``--json PATH``,
    its old spelling, as a deprecated alias."""
    path = click.Path(dir_okay=False, path_type=Path, **path_kw)

    def decorate(f):
        f = deprecated_alias("--json", "--out", "out", required=True, type=path)(f)
        return click.option("--out", "out", type=path, default=None, help=f"{help} [required]")(f)

    return decorate
