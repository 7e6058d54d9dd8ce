"""``personlens index``, ``search`` and ``similar``: a searchable library of person crops."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ._common import (
    DEFAULT_DB,
    INPUT_PATHS,
    _err,
    _expand,
    _open_library,
    _parse_where,
    _print_hits,
    _warn,
    _warn_stale,
    model_option,
)
from .manage import filter_options, filters_of, read_manifest
from .video import index_videos, parse_start, settings_from, video_options

_head_dir = click.Path(exists=True, file_okay=False, path_type=Path)


def _db_option(help: str):
    return click.option("--db", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DB,
                        show_default=True, help=help)


_top_k = click.option("--top-k", default=20, show_default=True, type=click.IntRange(min=1),
                      help="Results per query.")
_where = click.option("--where", "where", multiple=True, metavar="ATTR=yes|no",
                      help="Keep only people with (yes) or without (no) an attribute; repeatable.")
_as_json = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


@click.command("index")
@click.argument("paths", nargs=-1, required=False, type=INPUT_PATHS)
@_db_option("Library directory (created if missing).")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1),
              help="Crops per forward pass.")
@click.option("--camera", default=None, help="Camera name stored with every crop of this run.")
@click.option("--timestamp", default=None, metavar="ISO",
              help="Time stored with every crop of this run (ISO 8601, no zone = UTC).")
@click.option("--timestamps-from", "timestamps_from", type=click.Choice(["mtime", "exif"]), default=None,
              help="Each crop's time from its file: modification time, or EXIF DateTimeOriginal "
                   "(crops without one get no time).")
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A .csv (header: path, and optionally camera, timestamp, track) or .jsonl "
                   "(objects with those keys) listing crops or videos with their own camera, time "
                   "(ISO 8601 or epoch seconds; a video's start) and track id; paths relative to "
                   "the manifest's folder. Bad rows are reported with their line, the rest indexed.")
@click.option("--weights", type=_head_dir, default=None,
              help="Attribute model directory (default: the library's, else the shipped model).")
@model_option("attributes")
@click.option("--search-head", type=_head_dir,
              default=None, help="Trained search-embedding head (default: the library's, else the "
                                 "shipped one, else attributes as text).")
@click.option("--reid-head", type=_head_dir,
              default=None, help="Trained re-ID head (default: the library's, else the shipped one, "
                                 "else mean-pooled encoder features).")
@click.option("--describer", type=_head_dir,
              default=None, help="Description model (default: the library's, else the shipped one).")
@click.option("--no-descriptions", is_flag=True,
              help="Store no descriptions (faster indexing; remembered by the library).")
@click.option("--index-type", type=click.Choice(["flat", "hnsw", "ivf"]), default=None,
              help="Vector index kind (remembered by the library; default flat, exact).")
@click.option("--start", default=None, metavar="ISO",
              help="Video: wall-clock time of the first frame (ISO 8601; default: the file's "
                   "modification time minus its duration).")
@click.option("--frames", "frame_folders", is_flag=True,
              help="Folders are videos (one folder of frames each), not folders of crops.")
@video_options
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def index_cmd(paths, db, batch_size, camera, timestamp, timestamps_from, manifest, weights,
              search_head, reid_head, describer, no_descriptions, index_type, start, frame_folders,
              every, detector, tiles, fps, appearance, progress, as_json):
    """Add person crops (files or folders, recursive) or videos to a searchable library.

    Crops are keyed by content: indexing the same files again adds nothing, and an
    interrupted run can simply be run again. Video files (.mp4, .avi, ...; folders of
    frames with --frames) are detected and tracked: one record per track, with its best
    crops, boxes and times; a video indexed again adds nothing.
    """
    from tqdm import tqdm

    from ..data.video import VIDEO_SUFFIXES

    from .manage import parse_cli_time

    if describer is not None and no_descriptions:
        raise click.UsageError("--describer and --no-descriptions exclude each other")
    if not paths and manifest is None:
        raise click.UsageError("give the crops or videos to index (PATH...) or --manifest FILE")
    if timestamp is not None and timestamps_from is not None:
        raise click.UsageError("--timestamp and --timestamps-from exclude each other")
    start_s = parse_start(start)
    timestamp_s = parse_cli_time(timestamp, "--timestamp")

    def is_video(p):
        return (frame_folders and p.is_dir()) or p.suffix.lower() in VIDEO_SUFFIXES

    paths = list(paths or ())
    videos = [p for p in paths if is_video(p)]
    files = _expand([p for p in paths if p not in videos])
    metadata = [None] * len(files)
    video_runs = [(videos, camera, start_s)] if videos else []     # (videos, camera, start)
    manifest_errors: list[str] = []
    if manifest is not None:
        rows, manifest_errors = read_manifest(manifest)
        for e in manifest_errors:
            _err(e)
        for row in rows:
            if is_video(row.path):
                video_runs.append(([row.path], row.camera or camera,
                                   row.timestamp if row.timestamp is not None else start_s))
                videos.append(row.path)
                continue
            for f in _expand([row.path]):
                files.append(f)
                metadata.append(row.metadata())
    settings = settings_from(every, detector, tiles, appearance)
    lib = _open_library(db, create=True, par_dir=weights, search_head=search_head,
                        reid_head=reid_head, index_kind=index_type,
                        describer="baseline" if no_descriptions else describer)
    video_done, video_failed = [], []
    try:
        summary = lib.index_paths(files, batch_size=batch_size, progress=progress, camera=camera,
                                  on_error=lambda e: tqdm.write(f"error: {e.image}: {e.error}",
                                                                file=sys.stderr),
                                  timestamp=timestamp_s, timestamps_from=timestamps_from,
                                  metadata=metadata) if files else None
        for run_videos, run_camera, run_start in video_runs:
            done, failed_ = index_videos(lib, run_videos, camera=run_camera, start=run_start,
                                         settings=settings, progress=progress, fps=fps)
            video_done += done
            video_failed += failed_
        total, stale = len(lib), lib.stale_count()
    finally:
        lib.close()
    if as_json:
        out = {"db": str(db), **(summary.to_dict() if summary else {}), "total": total}
        if videos:
            out["videos"] = [v.to_dict() for v in video_done]
            out["videos_failed"] = [{"video": v, "error": r} for v, r in video_failed]
        if manifest is not None:
            out["manifest_errors"] = manifest_errors
        click.echo(json.dumps(out, indent=2))
    else:
        if summary:
            click.echo(f"{summary.added} added, {summary.skipped_existing} already indexed, "
                       f"{summary.reembedded} re-embedded, {len(summary.failed)} failed; "
                       f"{total} people in {db}")
        for v in video_done:
            if v.already_indexed:
                click.echo(f"{v.video}: already indexed ({v.tracks} tracks); {total} people in {db}")
            else:
                click.echo(f"{v.video}: {v.tracks} tracks ({v.added} added, {v.skipped_existing} already "
                           f"indexed) from {v.frames} frames, {v.speed:.2f}x real time; {total} people in {db}")
    if stale:
        _warn(f"{stale} records in {db} were made by another model")
    failed = False
    if summary and summary.failed:
        _err(f"{len(summary.failed)} of {len(files)} images could not be read")
        failed = True
    if video_failed:
        _err(f"{len(video_failed)} of {len(videos)} videos could not be read")
        failed = True
    if manifest_errors:
        _err(f"{len(manifest_errors)} manifest rows could not be used")
        failed = True
    for v in video_done:
        if v.stopped_early:
            _err(f"{v.video}: decoding stopped before the stated end (truncated or damaged); "
                 f"the frames before it were indexed")
            failed = True
    if failed:
        sys.exit(1)


@click.command()
@click.argument("query")
@_db_option("Library directory.")
@_top_k
@_where
@filter_options
@_as_json
def search(query, db, top_k, where, cameras, after, before, as_json):
    """Find people by a sentence ("a woman with a backpack"), optionally filtered by
    attributes, camera and time."""
    lib = _open_library(db, read_only=True)
    try:
        cond = _parse_where(where, lib)
        try:
            hits = lib.search(query, top_k=top_k, where=cond, **filters_of(cameras, after, before))
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


@click.command()
@click.argument("images", nargs=-1, required=False, type=INPUT_PATHS)
@_db_option("Library directory.")
@click.option("--id", "ids", multiple=True, metavar="ID",
              help="A stored person as the query (by id, as `list` or `search --json` show it; "
                   "itself left out); repeatable.")
@_top_k
@_where
@filter_options
@click.option("--other-cameras", is_flag=True,
              help="Leave out the query's own camera (a stored person's, else --query-camera): "
                   "find the person on the other cameras.")
@click.option("--camera-centring", is_flag=True,
              help="Subtract each camera's mean embedding before ranking (needs crops indexed "
                   "with --camera; helps across cameras, see docs/results.md).")
@click.option("--query-camera", default=None, metavar="NAME",
              help="Camera of query images that are not in the library (for --camera-centring "
                   "and --other-cameras).")
@_as_json
def similar(images, db, ids, top_k, where, cameras, after, before, other_cameras, camera_centring,
            query_camera, as_json):
    """Find people who look like the person in each IMAGE, or the stored person --id ID
    (re-identification), optionally filtered by attributes, camera and time."""
    from ..data.images import ImageLoadError
    from ..library import NO_CAMERAS, PersonNotFoundError

    if not images and not ids:
        raise click.UsageError("give query IMAGES... or --id ID")
    lib = _open_library(db, read_only=True)
    out, failed, bad_ids = [], 0, 0
    filters = filters_of(cameras, after, before)
    try:
        cond = _parse_where(where, lib)
        if camera_centring and lib.camera_statistics() is None:
            _err(f"--camera-centring: {NO_CAMERAS}")
            sys.exit(2)

        def show(query, hits):
            out.append({"query": query, "results": [h.to_dict() for h in hits]})
            if not as_json:
                click.echo(query)
                _print_hits(hits)

        for pid in ids:
            try:
                hits = lib.similar_to_id(pid, top_k=top_k, where=cond, camera_centring=camera_centring,
                                         other_cameras=other_cameras, **filters)
            except (PersonNotFoundError, ValueError) as e:
                bad_ids += 1
                _err(str(e))
                continue
            show(pid, hits)
        for img in _expand(images or ()):
            try:
                hits = lib.similar(img, top_k=top_k, where=cond, camera_centring=camera_centring,
                                   camera=query_camera, other_cameras=other_cameras, **filters)
            except ImageLoadError as e:
                failed += 1
                _err(f"{img}: {e.reason}")
                continue
            show(str(img), hits)
        _warn_stale(lib)
    finally:
        lib.close()
    if as_json:
        click.echo(json.dumps(out, indent=2))
    if failed:
        _err(f"{failed} query images could not be read")
    if bad_ids:
        _err(f"{bad_ids} of {len(ids)} ids are not usable queries")
    if failed or bad_ids:
        sys.exit(1)


@click.command("adapt")
@click.argument("crops", nargs=-1, type=INPUT_PATHS)
@_db_option("Library directory to adapt (it must exist: `personlens index` makes one).")
@click.option("--camera", default=None,
              help="Adapt only for this camera's crops (as named in `index --camera`); "
                   "default: one adaptation for every camera without its own.")
@click.option("--reset", is_flag=True, help="Remove the library's adaptation (all cameras).")
@click.option("--normalisation/--no-normalisation", default=False, show_default=True,
              help="Also re-estimate the encoder's normalisation statistics (AdaBN): more mA, "
                   "less F1 on the validation fold (docs/results.md).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
@_as_json
def adapt_cmd(crops, db, camera, reset, normalisation, progress, as_json):
    """Adapt a library to its cameras from unlabelled crops (CROPS... files or folders).

    Moves each attribute's threshold with how its scores are spread on the crops, and with
    --normalisation re-estimates the encoder's normalisation statistics on them (no labels;
    nothing leaves this machine). The result is saved in the library and used by index, search, similar, the
    service, and `attributes/describe --db`; records indexed before are re-embedded.
    """
    from ..inference.adapt import AdaptSettings
    from ..inference.adaptation import AdaptationError
    from ..library.adapt import adapt_library, reset_adaptation

    if reset and (crops or camera or normalisation):
        raise click.UsageError("--reset takes no crops, --camera or --normalisation")
    if not reset and not crops:
        raise click.UsageError("give the folder(s) of crops to adapt to, or --reset")
    if not (Path(db) / "personlens.sqlite").exists():
        _err(f"no personlens library in {db} (create one with `personlens index PATH --db {db}`)")
        sys.exit(2)
    files = [] if reset else _expand(crops)
    lib = None
    try:
        lib = _open_library(db, adapting=True)
        if reset:
            found, n, failed = reset_adaptation(lib, progress=progress)
            out = {"db": str(db), "removed": found, "reembedded": n,
                   "reembed_failed": [{"image": e.image, "error": e.error} for e in failed]}
            msg = (f"adaptation removed from {db}" if found else f"{db} had no adaptation") + \
                  (f"; {n} records re-embedded" if n else "")
        else:
            summary = adapt_library(lib, files, camera, AdaptSettings(normalisation=normalisation),
                                    progress=progress)
            out, failed = {"db": str(db), **summary.to_dict()}, summary.reembed_failed
            moves = ", ".join(f"{n} {a:.2f}->{b:.2f}"
                              for n, (a, b) in summary.details["largest_threshold_moves"].items())
            msg = (f"adapted {db} for camera {summary.camera} from {summary.crops} crops"
                   f"{f' ({len(summary.unreadable)} unreadable, skipped)' if summary.unreadable else ''}"
                   f"; {summary.reembedded} records re-embedded\nlargest threshold moves: {moves}")
            if summary.replaced:
                _err(f"note: {summary.replaced}; it was replaced")
    except AdaptationError as e:
        _err(f"cannot adapt: {e}")
        sys.exit(2)
    finally:
        if lib is not None:
            lib.close()
    click.echo(json.dumps(out, indent=2) if as_json else msg)
    if failed:
        _err(f"{len(failed)} records could not be re-embedded (their files are gone) and stay "
             f"unsearchable until indexed again")
