"""``personlens list``, ``export`` and ``delete``: what a library holds, filtered by attributes,
camera and time; the camera / time options ``search`` and ``similar`` share
(``filter_options``); and reading ``index --manifest`` files (``read_manifest``)."""
from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from ._common import DEFAULT_DB, _err, _open_library, _parse_where, _warn_stale, _where_when


# ---------------------------------------------------------------------- camera and time options
def parse_cli_time(value: str | None, flag: str) -> float | None:
    """An ISO 8601 time of the command line (no zone: UTC) as epoch seconds; a usage error
    (exit 2) otherwise."""
    from ..library.results import parse_time

    try:
        return parse_time(value, flag, allow_epoch=False)
    except ValueError as e:
        raise click.BadParameter(str(e).split(": ", 1)[-1], param_hint=f"'{flag}'") from None


def _time_option(flag: str, help: str):
    return click.option(flag, flag.lstrip("-"), default=None, metavar="ISO", help=help,
                        callback=lambda ctx, param, v: parse_cli_time(v, flag))


def filter_options(fn):
    """``--camera NAME`` (repeatable), ``--after ISO``, ``--before ISO``: the camera / time
    filters (parameters ``cameras``, ``after``, ``before``, epoch seconds)."""
    for opt in reversed([
        click.option("--camera", "cameras", multiple=True, metavar="NAME",
                     help="Only people seen by this camera; repeatable (any of them)."),
        _time_option("--after", "Only people seen at or after this time (ISO 8601, no zone = UTC); "
                                "people without a time are left out."),
        _time_option("--before", "Only people seen before this time (ISO 8601, no zone = UTC); "
                                 "people without a time are left out."),
    ]):
        fn = opt(fn)
    return fn


def filters_of(cameras, after, before) -> dict:
    return {"cameras": list(cameras) or None, "after": after, "before": before}


_db = click.option("--db", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DB,
                   show_default=True, help="Library directory.")
_where = click.option("--where", "where", multiple=True, metavar="ATTR=yes|no",
                      help="Keep only people with (yes) or without (no) an attribute; repeatable.")


# ---------------------------------------------------------------------- list
def _print_records(records, top: int = 5) -> None:
    from ..library.results import track_json

    for r in records:
        attrs = ", ".join(f"{n} {r.attributes[n]:.2f}" for n in r.top_present(top)) or "(none present)"
        click.echo(f"{r.id}  {r.path}\n              {attrs}")
        where = _where_when(r, track_json(r) if r.track_id else None)
        if where:
            click.echo(f"              {where}")
        if r.description:
            click.echo(f"              {r.description}")


@click.command("list")
@_db
@_where
@filter_options
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1),
              help="How many people to show.")
@click.option("--offset", default=0, show_default=True, type=click.IntRange(min=0),
              help="Skip this many first (paging).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_cmd(db, where, cameras, after, before, limit, offset, as_json):
    """The people in a library, most recently added first, filtered by attributes, camera
    and time (no query: see `search` and `similar` for ranking)."""
    from ..library.results import result_json

    lib = _open_library(db, read_only=True)
    try:
        cond = _parse_where(where, lib)
        filters = filters_of(cameras, after, before)
        records = lib.filter(cond, limit=limit, offset=offset, **filters)
        total = lib.count_matching(cond, **filters)
        _warn_stale(lib)
    finally:
        lib.close()
    if as_json:
        click.echo(json.dumps([result_json(r) for r in records], indent=2))
        return
    if not records:
        click.echo("    (no matches)")
    _print_records(records)
    if records:
        click.echo(f"{offset + 1}-{offset + len(records)} of {total}")


# ---------------------------------------------------------------------- export
@click.command("export")
@_db
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True,
              help="csv: id, path, camera, timestamp_iso, track_id, present (';'-joined), "
                   "description, then one column per attribute probability; jsonl: one result "
                   "(as `search --json` prints it) per line.")
@_where
@filter_options
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the export here (default: standard output).")
def export_cmd(db, fmt, where, cameras, after, before, out):
    """Export the people of a library (filtered by attributes, camera and time), in the order
    they were added, as CSV or JSON lines."""
    from ..library import matching_ids
    from ..library.results import export_lines

    lib = _open_library(db, read_only=True)
    try:
        cond = _parse_where(where, lib)
        ids = matching_ids(lib.store, lib.model_version, cond, **filters_of(cameras, after, before))
        names = lib.attribute_names()

        def records():
            for i in range(0, len(ids), 500):
                yield from lib.store.get_many(ids[i:i + 500])

        stream = open(out, "w", newline="", encoding="utf-8") if out else sys.stdout
        try:
            for line in export_lines(records(), fmt, names):
                stream.write(line)
        finally:
            if out:
                stream.close()
            else:
                stream.flush()
        _warn_stale(lib)
    finally:
        lib.close()
    if out:
        click.echo(f"exported {len(ids)} people to {out}", err=True)


# ---------------------------------------------------------------------- delete
@click.command("delete")
@click.argument("ids", nargs=-1, required=True)
@_db
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def delete_cmd(ids, db, yes):
    """Delete people (by ID, as `list`, `search --json` and the API show them): their records,
    index entries and the files the library keeps for them (uploaded copies, a video
    track's crops and track file). Crops indexed from your own folders are never touched."""
    lib = _open_library(db)
    try:
        wanted = list(dict.fromkeys(ids))
        known = {r.id for r in lib.store.get_many(wanted)}
        unknown = [i for i in wanted if i not in known]
        for i in unknown:
            _err(f"no person with id {i} in {db}")
        todo = [i for i in wanted if i in known]
        if todo and not yes:
            click.confirm(f"Delete {len(todo)} {'person' if len(todo) == 1 else 'people'} from {db} "
                          "(records, index entries and the files the library keeps for them)?",
                          abort=True, err=True)
        n = lib.delete(todo) if todo else 0
        total = len(lib)
    finally:
        lib.close()
    click.echo(f"{n} deleted; {total} people in {db}")
    if unknown:
        sys.exit(1)


# ---------------------------------------------------------------------- manifests
@dataclass
class ManifestRow:
    path: Path
    line: int
    camera: str | None = None
    timestamp: float | None = None
    track_id: str | None = None

    def metadata(self) -> dict:
        """What the row says (keys it leaves empty fall back to the command's options)."""
        return {k: v for k, v in (("camera", self.camera), ("timestamp", self.timestamp),
                                  ("track_id", self.track_id)) if v is not None}


MANIFEST_KEYS = ("path", "camera", "timestamp", "track")


def _row(manifest: Path, line: int, values: dict) -> ManifestRow:
    """One manifest row (ValueError with the reason for a bad one)."""
    from ..library.results import parse_time

    path = values.get("path")
    if not isinstance(path, str) or not path.strip():
        raise ValueError("no path")
    camera = values.get("camera")
    if camera is not None and not isinstance(camera, str):
        raise ValueError(f"camera {camera!r}: expected text")
    track = values.get("track")
    if isinstance(track, bool) or (track is not None and not isinstance(track, (str, int))):
        raise ValueError(f"track {track!r}: expected text or a whole number")
    ts = parse_time(values.get("timestamp"), "timestamp")
    p = Path(path.strip())
    return ManifestRow(path=p if p.is_absolute() else manifest.parent / p, line=line,
                       camera=(camera.strip() or None) if camera is not None else None,
                       timestamp=ts,
                       track_id=(str(track).strip() or None) if track is not None else None)


def read_manifest(manifest: Path) -> tuple[list[ManifestRow], list[str]]:
    """The rows of a CSV (header with a ``path`` column; ``camera``, ``timestamp``, ``track``
    optional) or JSON-lines manifest (objects with those keys), paths relative to the
    manifest's folder, timestamps ISO 8601 (no zone: UTC) or epoch seconds; and one error line
    (``FILE:LINE: reason``) per bad row. A manifest that cannot be read at all: one error."""
    rows, errors = [], []
    suffix = manifest.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        return [], [f"{manifest}: a manifest is a .csv or .jsonl file"]
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        return [], [f"{manifest}: cannot read it ({getattr(e, 'strerror', None) or e})"]
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        if "path" not in fields:
            return [], [f"{manifest}:1: the header needs a 'path' column (and optionally "
                        f"camera, timestamp, track)"]
        reader.fieldnames = fields
        for values in reader:
            line = reader.line_num
            try:
                rows.append(_row(manifest, line, {k: (v if v is None else v.strip() or None)
                                                  for k, v in values.items() if k in MANIFEST_KEYS}))
            except ValueError as e:
                errors.append(f"{manifest}:{line}: {e}")
        return rows, errors
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            values = json.loads(raw)
            if not isinstance(values, dict):
                raise ValueError("expected a JSON object with a path")
            rows.append(_row(manifest, line, values))
        except ValueError as e:      # json.JSONDecodeError is a ValueError
            errors.append(f"{manifest}:{line}: {e}")
    return rows, errors
