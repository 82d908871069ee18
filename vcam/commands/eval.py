"""`vcam eval`: how good the matte is, raw model against vcam's matte, on the real test data, so that
every matte change is kept or dropped on numbers; the metrics (IoU, boundary F on each still set:
eval_stills.py; flicker, lag, timing: here) are defined in docs/matte.md, "How it is measured".
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from vcam.commands.eval_stills import STILL_SETS, EvalError, eval_stills, raw_alpha, still_pairs, write_row
from vcam.compositing.backgrounds import load_background
from vcam.compositing.compositor_bgr import BGRCompositor
from vcam.compositing.engine import Engine
from vcam.compositing.look import Look
from vcam.config import Settings, load_settings
from vcam.errors import VcamError
from vcam.frames.reduce import Reducer
from vcam.matting.matte import Matte, MatteBuilder
from vcam.matting.runtimes import open_segmenter
from vcam.testdata import testdata_path

STATIC_LEVELS = 2        # grey levels: an input pixel changing less than this "barely changed"
EDGE_MOVED = 64          # matte levels: a per-frame matte changing this much at a pixel = an edge moved there
PICTURE_MOVED = 8        # grey levels, within LAG_REACH px: the picture itself moved there (not the model)
LAG_REACH = 2
MAX_LAG = 4              # frames searched for the lag


# -- video metrics ----------------------------------------------------------------------------------------
def _parabolic_argmin(errors: list[float]) -> float:
    k = int(np.argmin(errors))
    if 0 < k < len(errors) - 1:
        a, b, c = errors[k - 1], errors[k], errors[k + 1]
        denom = a - 2 * b + c
        if denom > 0:
            return k + 0.5 * (a - c) / denom
    return float(k)


class _Flicker:
    """Running mean |alpha_t - alpha_{t-1}| over the pixels whose input barely changed."""

    def __init__(self) -> None:
        self.prev: np.ndarray | None = None
        self.total = 0.0
        self.count = 0

    def add(self, alpha: np.ndarray, static: np.ndarray | None) -> None:
        if self.prev is not None and static is not None:
            diff = cv2.absdiff(alpha, self.prev)
            self.total += float(diff[static].sum(dtype=np.int64))
            self.count += int(np.count_nonzero(static))
            self.prev[...] = alpha
        else:
            self.prev = alpha.copy()

    @property
    def value(self) -> float:
        return self.total / self.count if self.count else 0.0


def eval_video(settings: Settings, path: Path, max_frames: int = 300) -> dict:
    """Flicker and lag on one real video, raw model vs vcam's matte (the Engine's live path)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise EvalError(f"{path}: cannot open the video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    seg = settings.segmentation
    per_frame = dataclasses.replace(settings.matte, temporal=0.0)
    flicker = {"raw": _Flicker(), "vcam": _Flicker()}
    history: deque[np.ndarray] = deque(maxlen=MAX_LAG + 1)  # per-frame mattes, newest last
    lag_sums = np.zeros(MAX_LAG + 1)
    lag_n = 0
    prev_gray = gray = static = moving = change = None
    reach = np.ones((2 * LAG_REACH + 1,) * 2, np.uint8)
    n = 0
    try:
        with open_segmenter(seg.model, seg.model_path, video=True, runtime=seg.runtime) as segmenter, \
                Engine(settings, video=True) as engine:
            reference = MatteBuilder(per_frame, video=True)
            while n < max_frames:
                ok, frame = cap.read()
                if not ok:
                    break
                h, w = frame.shape[:2]
                ts = int(n * 1000 / fps)
                gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY, dst=gray)
                if prev_gray is not None:
                    change = cv2.absdiff(gray, prev_gray)
                    static = change < STATIC_LEVELS
                prev_gray = gray.copy()
                confidence = segmenter.segment(frame, ts)
                flicker["raw"].add(raw_alpha(confidence, (w, h)), static)
                history.append(reference.build(confidence, (w, h), frame).copy())
                if change is not None:  # (from the second frame on, with two per-frame mattes)
                    # where the per-frame matte's edge moved across a pixel and the picture moved there:
                    # the model's own jitter on a still picture is flicker, which the matte should not follow
                    moving = cv2.absdiff(history[-1], history[-2]) >= EDGE_MOVED
                    moving &= cv2.dilate(change, reach) >= PICTURE_MOVED
                alpha = engine.alpha(frame, ts)
                flicker["vcam"].add(alpha, static)
                if len(history) == MAX_LAG + 1 and moving is not None and np.any(moving):
                    for k in range(MAX_LAG + 1):
                        lag_sums[k] += float(cv2.absdiff(alpha, history[-1 - k])[moving].sum(dtype=np.int64))
                    lag_n += int(np.count_nonzero(moving))
                n += 1
    finally:
        cap.release()
    if n < MAX_LAG + 2 or lag_n == 0:
        raise EvalError(f"{path}: too few frames to measure ({n})")
    lag = _parabolic_argmin(list(lag_sums / lag_n))
    return {"frames": n, "raw": {"flicker": flicker["raw"].value, "lag": 0.0},
            "vcam": {"flicker": flicker["vcam"].value, "lag": lag}}


def video_paths() -> list[Path]:
    folder = testdata_path("videos")
    paths = sorted(folder.glob("*.mp4")) if folder.is_dir() else []
    if not paths:
        raise EvalError(f"{folder}: no videos found (set VCAM_TESTDATA to the shared testdata folder)")
    return paths


# -- timing -----------------------------------------------------------------------------------------------
def time_stages(settings: Settings, frames: int = 100, size: tuple[int, int] = (1280, 720)) -> dict:
    """Median ms a frame of the matte stage (raw upsampling vs vcam's) and of each segmentation runtime.

    The contenders run interleaved, frame by frame, so a busy machine slows them alike.
    """
    video = video_paths()[0]
    cap = cv2.VideoCapture(str(video))
    clip = []
    while len(clip) < 30:
        ok, frame = cap.read()
        if not ok:
            break
        clip.append(cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR))
    cap.release()
    seg = settings.segmentation
    out: dict = {"size": f"{size[0]}x{size[1]}"}
    segmenters = {}
    for runtime in ("mediapipe", "litert"):
        try:
            segmenters[runtime] = open_segmenter(seg.model, seg.model_path, video=True, runtime=runtime)
        except VcamError as e:
            out[f"segment_{runtime}_ms"] = None
            out[f"segment_{runtime}_error"] = str(e)
    times: dict[str, list[float]] = {name: [] for name in [*segmenters, "raw", "vcam"]}
    alpha = np.empty(size[::-1], np.uint8)
    builder = MatteBuilder(settings.matte, video=True)
    reduced = Reducer()
    try:
        for i in range(frames + 5):
            frame = clip[i % len(clip)]
            confidence = None
            for runtime, segmenter in segmenters.items():
                t0 = time.perf_counter()
                reduced.set(frame)  # as in the Engine: the model makes the reductions the matte reuses
                c = segmenter.segment(frame, i * 33, reduced)
                times[runtime].append(time.perf_counter() - t0)
                if runtime == seg.runtime or confidence is None:
                    confidence = c
            t0 = time.perf_counter()
            raw_alpha(confidence, size, dst=alpha)
            t1 = time.perf_counter()
            builder.build(confidence, size, frame, reduced)
            t2 = time.perf_counter()
            times["raw"].append(t1 - t0)
            times["vcam"].append(t2 - t1)
    finally:
        for segmenter in segmenters.values():
            segmenter.close()
    ms = {name: float(np.median(v[5:]) * 1e3) for name, v in times.items()}  # the first few warm up
    for runtime in segmenters:
        out[f"segment_{runtime}_ms"] = ms[runtime]
    out["matte_raw_ms"], out["matte_vcam_ms"] = ms["raw"], ms["vcam"]
    return out


# -- picture strip ----------------------------------------------------------------------------------------
STRIP_FRAMES = {"desk_typing_960x540": (90, 240), "outdoor_sitting_640x360": (150,)}
STRIP_BACKGROUND = ("backgrounds", "images", "pixabay_porch-691330_1280.jpg")


def write_strips(settings: Settings, out_dir: Path, tile_height: int = 150,
                 frames: dict[str, tuple[int, ...]] | None = None) -> list[Path]:
    """PNG rows (input | raw mask | vcam matte | composite on a new background) of a few video frames.

    Only the Pixabay videos and background are used: the portraits may not be redistributed.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    background = load_background(str(testdata_path(*STRIP_BACKGROUND)))
    compositor = BGRCompositor()
    seg = settings.segmentation
    written = []
    for stem, wanted in (frames or STRIP_FRAMES).items():
        path = testdata_path("videos", stem + ".mp4")
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise EvalError(f"{path}: cannot open the video")
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        with open_segmenter(seg.model, seg.model_path, video=True, runtime=seg.runtime) as raw_seg, \
                Engine(settings, video=True) as engine:
            for n in range(max(wanted) + 1):
                ok, frame = cap.read()
                if not ok:
                    break
                h, w = frame.shape[:2]
                ts = int(n * 1000 / fps)
                raw = raw_alpha(raw_seg.segment(frame, ts), (w, h))
                alpha = engine.alpha(frame, ts)
                if n not in wanted:
                    continue
                look = Look(effect="replace", background=background)
                composite = compositor.composite(frame, Matte(alpha), look)
                tiles = [frame, *(cv2.cvtColor(m, cv2.COLOR_GRAY2BGR) for m in (raw, alpha)), composite]
                target = out_dir / f"matte_strip_{stem.split('_')[0]}_{n}.png"
                written.append(write_row(tiles, tile_height, target))
        cap.release()
    background.close()
    return written


# -- the command ------------------------------------------------------------------------------------------
def evaluate(settings: Settings, *, portraits: int = 0, people: int = 0, frames: int = 300,
             timing: bool = True) -> dict:
    """`portraits`, `people`: how many of each still set (0: all, -1: skip it)."""
    result: dict = {"model": settings.segmentation.model, "runtime": settings.segmentation.runtime,
                    "matte": dataclasses.asdict(settings.matte)}
    for name, limit in (("portraits", portraits), ("people_varied", people)):
        if limit >= 0:
            result[name] = eval_stills(settings, still_pairs(name, limit))
    if frames > 0:
        result["videos"] = {p.stem: eval_video(settings, p, frames) for p in video_paths()}
    if timing:
        result["timing"] = time_stages(settings)
    return result


def format_table(result: dict) -> str:
    rows = [f"model {result['model']}, runtime {result['runtime']}, quality {result['matte']['quality']}",
            f"{'':34} {'raw model':>10} {'vcam matte':>11} {'vcam file':>10}",
            f"{'':34} {'':>10} {'(live)':>11} {'(apply)':>10}"]
    for name in STILL_SETS:
        if name not in result:
            continue
        p = result[name]
        rows.append(f"{name} ({p['images']})")
        for key, label in (("iou", "mean IoU at 50%"), ("boundary_f", "boundary F (2 px)")):
            rows.append(f"  {label:32} {p['raw'][key]:10.4f} {p['vcam'][key]:11.4f} {p['file'][key]:10.4f}")
        for e in p.get("worst", []):
            rows.append(f"  {'worst: ' + e['picture'] + ' IoU':32} {e['raw']['iou']:10.4f} "
                        f"{e['vcam']['iou']:11.4f} {e['file']['iou']:10.4f}")
    for name, v in result.get("videos", {}).items():
        rows.append(f"{name} ({v['frames']} frames)")
        rows.append(f"  {'flicker (0..255 on still pixels)':32} {v['raw']['flicker']:10.3f} "
                    f"{v['vcam']['flicker']:11.3f}")
        rows.append(f"  {'lag (frames)':32} {v['raw']['lag']:10.2f} {v['vcam']['lag']:11.2f}")
    if "timing" in result:
        t = result["timing"]
        rows.append(f"time a frame at {t['size']} (median)")
        rows.append(f"  {'matte stage (ms)':32} {t['matte_raw_ms']:10.2f} {t['matte_vcam_ms']:11.2f}")
        for runtime in ("mediapipe", "litert"):
            ms = t.get(f"segment_{runtime}_ms")
            rows.append(f"  {'segment, ' + runtime + ' (ms)':32} {'':10} "
                        f"{(f'{ms:11.2f}' if ms is not None else 'n/a'.rjust(11))}")
    return "\n".join(rows)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="measure the matte (IoU, boundary F, flicker, lag) on the real test data",
        description="Measure the raw model and vcam's matte on $VCAM_TESTDATA (default ../shared/testdata): "
                    "IoU and boundary F-score on each still set (portraits, people_varied), live and in "
                    "file mode, flicker and lag on the videos.")
    p.add_argument("--portraits", type=int, default=0, metavar="N",
                   help="use N portraits spread over the set (default: all; -1: skip)")
    p.add_argument("--people", type=int, default=0, metavar="N",
                   help="use N of the people_varied pictures spread over the set (default: all; -1: skip)")
    p.add_argument("--frames", type=int, default=300, metavar="N",
                   help="frames of each video (default 300; 0: skip the videos)")
    p.add_argument("--no-timing", action="store_true", help="skip the timing of the stages")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--strip", metavar="DIR",
                   help="also write picture strips (input, raw mask, vcam matte, composite) of a few video "
                        "frames as PNG into DIR")
    p.add_argument("--worst", metavar="DIR",
                   help="also write each still set's worst pictures (by the file-mode matte's IoU) as PNG "
                        "into DIR: the picture, the raw model's and the file-mode matte's errors")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    result = evaluate(settings, portraits=args.portraits, people=args.people, frames=args.frames,
                      timing=not args.no_timing)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    if args.strip:
        for path in write_strips(settings, Path(args.strip)):
            print(f"wrote {path}", file=sys.stderr)
    if args.worst:
        from vcam.commands.eval_worst import write_worst  # only when asked: the rows re-run the stills

        for path in write_worst(settings, result, Path(args.worst)):
            print(f"wrote {path}", file=sys.stderr)
    return 0
