"""Video on the command line: ``personlens track`` and ``personlens eval tracking``, and the
options ``index`` takes for video files (``video_options``, ``index_videos``)."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from ._common import _err, needs_extra


def parse_start(value: str | None) -> float | None:
    """``--start`` as epoch seconds: ISO 8601; without a zone it is UTC (say so explicitly with
    +01:00 etc. for local time)."""
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time (e.g. 2026-11-29T14:00:00+01:00)",
                                 param_hint="--start") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


def _tiles(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        c, r = (int(v) for v in value.lower().split("x"))
        if c < 1 or r < 1 or c * r > 16:
            raise ValueError
    except ValueError:
        raise click.BadParameter("expected COLSxROWS, e.g. 2x2 (at most 16 tiles)", param_hint="--tiles") from None
    return c, r


def video_options(fn):
    """Options shared by every command that reads video."""
    for opt in reversed([
        click.option("--every", default=1, show_default=True, type=click.IntRange(min=1),
                     help="Process every N-th frame (faster; tracks need people seen in >= 3 processed frames)."),
        click.option("--detector", default="ssdlite", show_default=True,
                     help="Person detector (registered name)."),
        click.option("--tiles", default=None, metavar="COLSxROWS",
                     help="Also detect on overlapping tiles, for small people in large frames (e.g. 2x2)."),
        click.option("--fps", type=click.FloatRange(min=0.1, max=1000), default=None,
                     help="Frame rate of a folder of frames (default 25; files state their own)."),
        click.option("--appearance", is_flag=True,
                     help="Tracker also matches by the re-ID embedding of every detection (re-links people "
                          "after occlusions; slower: one encoder pass per detection)."),
    ]):
        fn = opt(fn)
    return fn


def settings_from(every: int, detector: str, tiles: str | None, appearance: bool = False):
    from ..video.runner import VideoSettings
    from ..video.tracker import TrackerConfig

    tracker = TrackerConfig(appearance_weight=0.3) if appearance else TrackerConfig()
    return VideoSettings(detector=detector, tiles=_tiles(tiles), every=every, tracker=tracker)


def embedder_for(settings, pipeline_factory):
    """The re-ID embedder when the tracker uses appearance, else None."""
    if settings.tracker.appearance_weight <= 0:
        return None
    from ..video.runner import reid_embedder

    return reid_embedder(pipeline_factory())


def _pipeline():
    from ..inference.pipeline import PersonPipeline

    return PersonPipeline()


def make_detector(settings):
    from ..models.factory import create_detector

    try:
        return create_detector(settings.detector, tiles=settings.tiles)
    except KeyError as e:
        raise click.BadParameter(str(e.args[0]), param_hint="--detector") from None
    except FileNotFoundError as e:
        _err(str(e))
        sys.exit(2)


def index_videos(lib, videos: list[Path], *, camera, start, settings, progress,
                 fps: float | None = None) -> tuple[list, list]:
    """Index each video into ``lib``: (summaries, (video, reason) failures)."""
    from ..data.video import VideoError
    from ..library.video import index_video

    done, failed = [], []
    detector = make_detector(settings) if videos else None
    for v in videos:
        try:
            done.append(index_video(lib, v, camera=camera, start=start, settings=settings,
                                    detector=detector, progress=progress, fps=fps))
        except VideoError as e:
            _err(str(e))
            failed.append((str(v), e.reason))
    return done, failed


@click.command("track")
@click.argument("video", type=click.Path(path_type=Path))
@click.option("--mot-out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Write the tracks here in MOTChallenge format (frame,id,left,top,width,height,score,-1,-1,-1).")
@video_options
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def track_cmd(video, mot_out, every, detector, tiles, fps, appearance, progress, as_json):
    """Detect and track the people in VIDEO (a file or a folder of frames); no library needed."""
    from ..data.mot import write_mot
    from ..data.video import VideoError, VideoSource
    from ..video.runner import track_video

    settings = settings_from(every, detector, tiles, appearance)
    try:
        source = VideoSource(video, every=every, fps=fps)
    except VideoError as e:
        _err(str(e))
        sys.exit(1)
    res = track_video(source, make_detector(settings), settings, collect_crops=False, progress=progress,
                      embedder=embedder_for(settings, _pipeline))
    n = write_mot(mot_out, res.mot_rows)
    ids = len({r[1] for r in res.mot_rows})
    summary = {"video": str(video), "frames": res.frames, "tracks": ids, "boxes": n,
               "frames_per_s": round(res.frames / res.seconds, 2) if res.seconds else None,
               "speed_x_real_time": round(res.speed, 3), "stopped_early": res.stopped_early,
               "mot_out": str(mot_out)}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"{ids} tracks, {n} boxes in {res.frames} frames "
                   f"({summary['frames_per_s']} frames/s, {res.speed:.2f}x real time) -> {mot_out}")
    if res.stopped_early:
        _err(f"{video}: decoding stopped before the stated end (truncated or damaged file)")
        sys.exit(1)


@click.command("tracking")
@click.option("--video", "videos", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Video file or folder of frames; repeat for several sequences.")
@click.option("--gt", "gts", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Its ground truth (MOTChallenge gt.txt), in the same order as --video.")
@video_options
@click.option("--min-iou", default=0.5, show_default=True, type=click.FloatRange(0.05, 0.95),
              help="IoU at which a box matches a ground-truth box.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the results as JSON (and a PNG plot beside it).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@needs_extra("eval")
def eval_tracking_cmd(videos, gts, every, detector, tiles, fps, appearance, min_iou, out, progress):
    """Score detection + tracking against ground truth: MOTA, IDF1, precision, recall, ID switches."""
    import numpy as np

    from ..data.mot import MotFormatError, read_mot
    from ..data.video import VideoError, VideoSource
    from ..eval.tracking import score_tracking, write_tracking_report
    from ..video.runner import track_video

    if len(videos) != len(gts):
        raise click.UsageError(f"{len(videos)} --video but {len(gts)} --gt: give one ground truth per video")
    settings = settings_from(every, detector, tiles, appearance)
    det = make_detector(settings)
    embedder = embedder_for(settings, _pipeline)
    results = {}
    for video, gt_path in zip(videos, gts):
        try:
            gt = read_mot(gt_path, scored_only=True)
            source = VideoSource(video, every=every, fps=fps)
        except (VideoError, MotFormatError, FileNotFoundError) as e:
            _err(str(e))
            sys.exit(1)
        if every > 1:        # score only the frames that were processed
            gt = gt[(gt[:, 0] - 1) % every == 0]
        res = track_video(source, det, settings, collect_crops=False, progress=progress, embedder=embedder)
        hyp = np.array([[*r, -1, -1, -1] for r in res.mot_rows]).reshape(-1, 10)
        s = score_tracking(gt, hyp, min_iou=min_iou)
        s["frames_per_s"] = round(res.frames / res.seconds, 2) if res.seconds else None
        name = Path(video).stem if Path(video).is_file() else Path(video).name
        results[name] = s
        click.echo(f"{name}: MOTA {s['mota']}  IDF1 {s['idf1']}  precision {s['precision']}  "
                   f"recall {s['recall']}  ID switches {s['num_switches']}  ({s['frames_per_s']} frames/s)")
    if out:
        meta = {"title": "detection + tracking", "detector": settings.detector,
                "appearance": appearance,
                "settings": settings.key(), "min_iou": min_iou,
                "command": "personlens " + " ".join(sys.argv[1:])}
        _, png = write_tracking_report(out, results, meta)
        click.echo(f"wrote {out} and {png}")


@click.command("fusion")
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="PETA root (images and PETA.mat).")
@click.option("--partition", default=0, show_default=True, help="PETA partition (0-4).")
@click.option("--split", default="test", show_default=True,
              help="Split to score (choose settings on 'val', report 'test').")
@click.option("--weights", type=click.Path(exists=True, path_type=Path), default=None,
              help="Attribute model directory (default: the shipped PETA model).")
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True,
              help="Inference precision.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Report JSON (a PNG plot is written next to it).")
@needs_extra("eval")
def eval_fusion_cmd(root, partition, split, weights, precision, out):
    """Track-level attributes: several crops of one person fused vs each crop alone, on PETA
    identities with two or more images (groups of up to 4 crops, as a track keeps, and whole
    identities)."""
    import numpy as np

    from ..data import create_dataset
    from ..eval.fusion import evaluate_fusion, identity_groups, plot_fusion
    from ..eval.par import predict_dataset
    from ._common import _load_predictor

    ds = create_dataset("peta", root, split, partition=partition, attributes="standard")
    keep = np.sort(np.concatenate(identity_groups([s.pid for s in ds.samples], None)))
    ds.samples = [ds.samples[i] for i in keep]     # only identities seen more than once are scored
    predictor = _load_predictor(weights, precision=precision)
    probs = predict_dataset(predictor, ds)
    names = ds.schema.names
    th = np.asarray([predictor.thresholds[predictor.names.index(n)] for n in names])
    labels = np.stack([s.attributes for s in ds.samples])
    res = evaluate_fusion(probs, labels, [s.pid for s in ds.samples], names, th)
    meta = {"dataset": "peta", "partition": partition, "split": split,
            "weights": str(weights or "shipped:par-peta"), "precision": predictor.precision,
            "fusion": "mean of calibrated probabilities (personlens.inference.fusion)",
            "command": "personlens " + " ".join(sys.argv[1:])}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**meta, "results": res}, indent=2))
    png = out.with_suffix(".png")
    plot_fusion(res, png, f"PETA p{partition} {split}: fused vs single crops")
    for k, r in res.items():
        click.echo(f"{k}: {r['images']} images in {r['groups']} groups: single mA {r['single']['mA']:.2f} "
                   f"F1 {r['single']['f1']:.2f} -> fused mA {r['fused']['mA']:.2f} F1 {r['fused']['f1']:.2f} "
                   f"({r['gain_mA']:+.2f} mA)")
    click.echo(f"wrote {out} and {png}")
