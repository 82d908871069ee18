"""`vcam bench`: the real live pipeline on a video file (null sink) per effect and output size, so that
speed claims are measured, not guessed; what it measures and how: docs/performance.md.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing
import os
import resource
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
from tqdm import tqdm

from vcam.compositing.look import look_from_settings
from vcam.config import (
    EFFECTS,
    MAX_ASPECT,
    MIN_SIDE,
    load_settings,
    picture_size_problem,
)
from vcam.errors import VcamError
from vcam.live.pipeline import Pipeline
from vcam.live.state import LiveState, LiveStateHolder
from vcam.logs import setup_logging
from vcam.testdata import testdata_path

log = logging.getLogger(__name__)

DEFAULT_SIZES = "1280x720,1920x1080"
TARGETS = "targets (blur): 720p30 <= 22% of one core (on the still clip <= 15%), 1080p30 <= 30%, " \
          "latency p95 <= 15 ms, uncapped 720p >= 100 fps; video within 1.3x of blur's CPU"
DESK_CLIP = ("videos", "desk_typing_960x540.mp4")  # a person typing: moving all the time
STILL_CLIP = ("videos", "outdoor_sitting_640x360.mp4")  # a person sitting nearly still


class BenchError(VcamError):
    pass


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="measure the live pipeline's speed (null sink)",
                              description="Run the real live pipeline on a video file with the null sink, "
                                          "per effect and output size, and print per-stage ms, uncapped fps, "
                                          "CPU% at 30 fps, latency and memory. " + TARGETS)
    p.add_argument("--video", metavar="FILE", help="source video (default: the desk video in the test data)")
    p.add_argument("--still", metavar="EFFECTS", default=None,
                   help="effects also measured on the still clip (a person sitting nearly still, from the "
                        "test data), comma-separated; default: blur, or none when --video is given")
    p.add_argument("--still-video", metavar="FILE",
                   help="the still clip (default: the outdoor video in the test data)")
    p.add_argument("--sizes", default=DEFAULT_SIZES, help=f"output sizes WxH,... (default {DEFAULT_SIZES})")
    p.add_argument("--effects", default=",".join(EFFECTS), help="effects to run, comma-separated")
    p.add_argument("--frames", type=int, default=150, help="frames in the prepared clip / uncapped run")
    p.add_argument("--seconds", type=float, default=4.0, help="length of the 30 fps run per case")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        try:
            w, h = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise BenchError(f"--sizes: {part!r} is not WIDTHxHEIGHT") from None
        w, h = w - w % 2, h - h % 2  # I420 needs even sizes
        if w > 7680 or h > 4320 or picture_size_problem(w, h):  # the latter: at least MIN_SIDE, MAX_ASPECT
            raise BenchError(f"--sizes: {part!r} is out of range ({MIN_SIDE}..7680 x {MIN_SIDE}..4320, "
                             f"sides within {MAX_ASPECT}:1)")
        sizes.append((w, h))
    return sizes


def prepare_clip(video: Path, size: tuple[int, int], frames: int, directory: Path) -> Path:
    """`frames` frames of `video` scaled to `size`, MJPG in AVI: what a USB webcam sends. Named by the
    source's full path, not its stem alone, so that two sources with one file name (--video and
    --still-video from different folders) don't overwrite each other's clip in `directory`."""
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise BenchError(f"{video}: cannot decode the benchmark video")
    source_id = hashlib.sha1(str(video.resolve()).encode()).hexdigest()[:8]
    out = directory / f"{video.stem}_{source_id}_{size[0]}x{size[1]}.avi"
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, size)
    n = 0
    while n < frames:
        ok, frame = cap.read()
        if not ok:
            if n == 0:
                raise BenchError(f"{video}: no frames")
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        writer.write(cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR))
        n += 1
    writer.release()
    cap.release()
    return out


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mb() -> float:
    """This process's resident high-water mark (VmHWM: ru_maxrss would start from the parent's)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


PIPELINE_THREADS = ("capture", "segmenter", "compositor", "output")  # named vcam-<stage>


def thread_cpu_seconds() -> dict[tuple[str, int], float]:
    """CPU seconds used so far by each live thread of this process, by (name, native id): from
    /proc/self/task/<id>/schedstat (nanoseconds), else from its stat (clock ticks, 10 ms, too coarse
    for a stage that takes a fraction of a millisecond a frame over a short run)."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {}
    for t in threading.enumerate():
        task = f"/proc/self/task/{t.native_id}"
        try:
            try:
                with open(f"{task}/schedstat") as f:
                    seconds = int(f.read().split()[0]) / 1e9
            except OSError:  # no schedstat in this kernel (or the thread ended: then stat fails too)
                with open(f"{task}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                seconds = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, TypeError):  # the thread ended, or never started
            continue
        used[(t.name, t.native_id)] = seconds
    return used


def _per_thread_ms(before: dict[tuple[str, int], float], after: dict[tuple[str, int], float], cpu: float,
                   frames: int) -> dict:
    """ms of CPU per processed frame for each pipeline thread, and "other": the rest of the process.
    A thread counts from 0 if it started during the run; one that ended during it is in "other"."""
    out = {stage: 0.0 for stage in PIPELINE_THREADS}
    for (name, tid), seconds in after.items():
        stage = name.removeprefix("vcam-")
        if stage in out:
            out[stage] += 1e3 * (seconds - before.get((name, tid), 0.0)) / max(1, frames)
    out = {stage: round(ms, 2) for stage, ms in out.items()}
    out["other"] = round(max(0.0, 1e3 * cpu / max(1, frames) - sum(out.values())), 2)
    return out


def _mean(values) -> float | None:
    values = list(values)
    return round(sum(values) / len(values), 2) if values else None


def run_case(base, clip: Path, size: tuple[int, int], effect: str, backgrounds: dict, frames: int,
             seconds: float) -> dict:
    w, h = size
    s = base.replace("camera", source=str(clip), width=w, height=h, fps=30)
    s = s.replace("output", sink="null", width=w, height=h, fps=30)
    s = s.replace("effect", name=effect, background=backgrounds.get(effect, ""))
    s = s.replace("daemon", on_demand=False)
    holder = LiveStateHolder(LiveState(look=look_from_settings(s)))
    row: dict = {"size": f"{w}x{h}", "effect": effect, "clip": clip.stem.split("_")[0]}

    # Uncapped: how fast can the pipeline go?
    with Pipeline(s, holder, pace_source=False, uncapped=True, ) as p:
        _wait_frames(p, 10, 30)
        n0, t0 = p.frames_sent, time.perf_counter()
        _wait_frames(p, n0 + frames, 120)
        row["uncapped_fps"] = round((p.frames_sent - n0) / (time.perf_counter() - t0), 1)

    # Paced like a 30 fps camera: CPU, latency, stages.
    with Pipeline(s, holder, ) as p:
        _wait_frames(p, 15, 30)
        p.stats.reset()
        p._capture.read_ms.clear()
        c0, t0, n0, k0 = cpu_seconds(), time.perf_counter(), p.frames_sent, p.frames_processed
        threads0, schedule0 = thread_cpu_seconds(), _schedule_counts(p)
        time.sleep(seconds)
        wall, cpu, processed = time.perf_counter() - t0, cpu_seconds() - c0, p.frames_processed - k0
        row["model_share"] = _model_share(schedule0, _schedule_counts(p))
        row["thread_cpu_ms"] = _per_thread_ms(threads0, thread_cpu_seconds(), cpu, processed)
        row["fps_30"] = round((p.frames_sent - n0) / wall, 1)
        # CPU per processed frame x 30: a loaded machine that drops frames doesn't look cheaper.
        row["cpu_pct_30fps"] = round(100.0 * cpu / max(1, processed) * 30, 1)
        st = p.status()
        row["latency_ms_p50"], row["latency_ms_p95"] = st["latency_ms_p50"], st["latency_ms_p95"]
        ms = p.stats.ms
        row["ms"] = {"read": _mean(p._capture.read_ms), "resize": _mean(ms["resize"]),
                     "segment": _mean(ms["segment"]), "matte": _mean(ms["matte"]),
                     "composite": _mean(ms["composite"]), "send": _mean(ms["send"])}
        row["dropped"] = st["frames_dropped"]
        row["rss_mb"] = round(current_rss_mb(), 1)
    row["peak_rss_mb"] = round(max(peak_rss_mb(), row["rss_mb"]), 1)  # the kernel's mark lags a little
    look = holder.get().look
    if look.background is not None:
        look.background.close()
    return row


def _schedule_counts(p: Pipeline) -> tuple[int, int] | None:
    """(frames decided, model runs) of the segmentation's schedule so far; None without one."""
    engine = p.segmenter.engine
    return None if engine is None else (engine.schedule.frames, engine.schedule.model_runs)


def _model_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of the frames segmented in between on which the model ran (None: it never ran)."""
    if before is None or after is None or after[1] == before[1]:
        return None
    frames, runs = after[0] - before[0], after[1] - before[1]
    return round(runs / frames, 2) if frames > 0 else 1.0  # no frames decided: the model on every one


def _in_fresh_process(verbosity: int, fn, *args):
    """fn(*args) in a new Python process (spawned: no threads or heap inherited), its result returned;
    it logs like this one (`-v`)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=setup_logging, initargs=(verbosity,)) as pool:
        return pool.submit(fn, *args).result()


def _wait_frames(p: Pipeline, n: int, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while p.frames_sent < n:
        if time.perf_counter() > deadline:
            raise BenchError(f"pipeline sent only {p.frames_sent} frames in {timeout} s: {p.status()}")
        time.sleep(0.01)


def format_table(rows: list[dict]) -> str:
    head = (f"{'size':>9} {'effect':<11} {'clip':<7} {'read':>5} {'segm':>5} {'model':>5} {'matte':>5} "
            f"{'comp':>5} {'send':>5} {'uncap':>6} {'fps':>4} {'cpu@30':>6} {'p50':>5} {'p95':>5} {'rss':>6} "
            f"{'peak':>6}")
    lines = [head, "-" * len(head)]

    def f(v, spec=".1f"):
        return format(v, spec) if v is not None else "-"

    for r in rows:
        m = r["ms"]
        share = r.get("model_share")
        model = f"{share:.0%}" if share is not None else "-"
        lines.append(" ".join([
            f"{r['size']:>9} {r['effect']:<11} {r.get('clip', ''):<7}",
            *(f"{f(m[k]):>5}" for k in ("read", "segment")), f"{model:>5}",
            *(f"{f(m[k]):>5}" for k in ("matte", "composite", "send")),
            f"{f(r['uncapped_fps'], '.0f'):>6} {f(r['fps_30'], '.0f'):>4} {f(r['cpu_pct_30fps'], '.0f'):>5}%",
            f"{f(r['latency_ms_p50']):>5} {f(r['latency_ms_p95']):>5}",
            f"{f(r['rss_mb'], '.0f'):>4}MB {f(r['peak_rss_mb'], '.0f'):>4}MB"]))
    lines.append("stage columns: mean ms per frame; model: share of frames the model ran on; uncap: uncapped "
                 "fps; fps: achieved in the 30 fps run; cpu@30: % of one core at 30 fps; p50/p95: "
                 "capture-to-send latency ms; rss: resident memory during the run, "
                 "peak: process high-water mark")
    lines += ["", "CPU ms per frame by thread (30 fps run):",
              f"{'size':>9} {'effect':<11} {'clip':<7} "
              + " ".join(f"{t:>10}" for t in (*PIPELINE_THREADS, "other"))]
    for r in rows:
        per = r["thread_cpu_ms"]
        lines.append(f"{r['size']:>9} {r['effect']:<11} {r.get('clip', ''):<7} "
                     + " ".join(f"{per[t]:>10.2f}" for t in (*PIPELINE_THREADS, "other")))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    sizes = parse_sizes(args.sizes)
    effects = _effect_list(args.effects, "--effects")
    if args.frames < 10:
        raise BenchError("--frames must be at least 10")
    video = Path(args.video) if args.video else testdata_path(*DESK_CLIP)
    if not video.is_file():
        raise BenchError(f"{video}: benchmark video not found (pass --video FILE or set VCAM_TESTDATA)")
    still_effects = _still_effects(args, effects)
    still = Path(args.still_video) if args.still_video else testdata_path(*STILL_CLIP)
    if still_effects and not still.is_file():
        raise BenchError(f"{still}: still clip not found (pass --still-video FILE or --still none, or set "
                         f"VCAM_TESTDATA)")
    base = load_settings(args.config)
    backgrounds = {"replace": "white", "video": ""}
    image = testdata_path("backgrounds", "images", "pixabay_porch-691330_1280.jpg")
    clip = testdata_path("backgrounds", "videos", "backscrub_retrowave.webm")
    if image.is_file():
        backgrounds["replace"] = str(image)
    if clip.is_file():
        backgrounds["video"] = str(clip)
    elif "video" in effects or "video" in still_effects:
        effects = [e for e in effects if e != "video"]
        still_effects = [e for e in still_effects if e != "video"]
        log.warning("no background video in the test data: skipping the video effect")
    rows = []
    with tempfile.TemporaryDirectory(prefix="vcam-bench-") as tmp:
        cases = [(size, effect, source) for size in sizes
                 for source, chosen in ((video, effects), (still, still_effects)) for effect in chosen]
        clips = {}
        for size, effect, source in tqdm(cases, desc="bench", unit="case",
                                         disable=args.json or not sys.stderr.isatty()):
            if (source, size) not in clips:
                clips[source, size] = prepare_clip(source, size, args.frames, Path(tmp))
            rows.append(_in_fresh_process(args.verbose, run_case, base, clips[source, size], size, effect,
                                          backgrounds, args.frames, args.seconds))
    if args.json:
        print(json.dumps({"cpu_count": _cpus(), "targets": TARGETS, "results": rows}, indent=2))
    else:
        clips_text = video.name + (f" (still clip: {still.name})" if still_effects else "")
        print(f"vcam bench: {clips_text}, {_cpus()} CPUs, null sink, {args.frames} frames uncapped, "
              f"{args.seconds:g} s at 30 fps per case")
        print(format_table(rows))
        print(TARGETS)
    return 0


def _still_effects(args: argparse.Namespace, effects: list[str]) -> list[str]:
    """The effects to run on the still clip too: --still's, by default blur (when it runs) unless --video
    names the clip."""
    if args.still is None:
        return ["blur"] if "blur" in effects and not args.video else []
    return [e for e in _effect_list(args.still, "--still", also="none") if e != "none"]


def _effect_list(text: str, option: str, also: str | None = None) -> list[str]:
    """The comma-separated effect names of `option` (and `also`, if given, as a name allowed too)."""
    chosen = [e.strip() for e in text.split(",") if e.strip()]
    for e in chosen:
        if e not in EFFECTS and e != also:
            known = ", ".join(EFFECTS) + (f", or {also}" if also else "")
            raise BenchError(f"{option}: unknown effect {e!r} (one of {known})")
    return chosen


def _cpus() -> int:
    return len(os.sched_getaffinity(0))
