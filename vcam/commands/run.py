"""`vcam run`: the live daemon (pipeline and control paths), reporting to systemd so that a wedged
pipeline gets restarted and a stop request is obeyed at once.

systemd (Type=notify; sdnotify is a no-op outside it): READY=1 once frames can flow, STATUS= every few
seconds, WATCHDOG=1 only while the output is sending and every pipeline thread is alive. On
SIGTERM/SIGINT the main thread, which only waits for signals between status ticks, stops everything within
about 0.5 s.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import time

import sdnotify

from vcam.compositing.backgrounds import BackgroundError
from vcam.compositing.look import Look, look_from_settings
from vcam.config import EFFECTS, Settings, load_settings
from vcam.control.runtime import acquire_instance_lock, socket_path
from vcam.control.signals import SignalInbox
from vcam.control.wiring import start_controls
from vcam.live.pipeline import Pipeline
from vcam.live.state import LiveState, LiveStateHolder

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 2.0


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="run the virtual camera (the daemon)",
                              description="Read the webcam, change the background and send the result to the "
                                          "virtual camera until stopped (SIGTERM/SIGINT).")
    p.add_argument("--source", metavar="DEV|FILE",
                   help="camera: /dev/videoN, an index, or a video/image file")
    p.add_argument("--sink", choices=("virtualcam", "preview", "file", "null"), help="where frames go")
    p.add_argument("--device", metavar="DEV", help="the v4l2loopback device (default from [output] device)")
    p.add_argument("--effect", choices=EFFECTS, help="background effect")
    p.add_argument("--background", metavar="SPEC", help="image, video or colour for replace/video")
    p.add_argument("--no-on-demand", action="store_true", help="keep the webcam open even without readers")
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    if args.source:
        settings = settings.replace("camera", source=args.source)
    out = {k: v for k, v in (("sink", args.sink), ("device", args.device)) if v}
    if out:
        settings = settings.replace("output", **out)
    eff = {k: v for k, v in (("name", args.effect), ("background", args.background)) if v}
    if eff:
        settings = settings.replace("effect", **eff)
    if args.no_on_demand:
        settings = settings.replace("daemon", on_demand=False)
    return settings


def startup_look(settings: Settings) -> Look:
    """The configured look; a background that cannot be loaded is logged and blur shown instead, so a
    moved or broken file never keeps the camera from starting."""
    try:
        return look_from_settings(settings)
    except BackgroundError as e:
        log.error("%s; showing blur instead", e)
        return look_from_settings(settings.replace("effect", name="blur", background=""))


def status_line(status: dict) -> str:
    bits = [f"{status['fps']:.0f} fps", status["effect"], f"camera {status['camera']}"]
    if status["on_demand"] == "idle":
        bits.append("idle (no app reading)")
    if status["paused"]:
        bits.append("paused")
    if status.get("dead_threads"):
        bits.append("ended: " + " ".join(status["dead_threads"]))
    return ", ".join(bits)


class Watchdog:
    """The sd_notify message for each status tick: WATCHDOG=1 only while frames leave and every stage
    thread lives, so systemd restarts a wedged or half-dead pipeline instead of trusting a live process."""

    def __init__(self) -> None:
        self._sent_before = -1
        self._dead_before: list[str] = []

    def message(self, status: dict) -> str:
        message = f"STATUS={status_line(status)}"
        dead = status["dead_threads"]
        if dead and dead != self._dead_before:
            log.error("pipeline thread(s) ended: %s; no more watchdog pings, so systemd restarts vcam",
                      ", ".join(dead))
        if status["frames_sent"] != self._sent_before and not dead:
            message += "\nWATCHDOG=1"
        self._sent_before, self._dead_before = status["frames_sent"], dead
        return message


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    # One vcam per control socket, decided before anything is opened (background, model, camera, device):
    # a refused second instance must not touch the first one's devices.
    instance = acquire_instance_lock(socket_path(settings.control))
    # A reload request while the model is still loading must not kill us (SIGHUP's default; the cli
    # already ignores it from the start); the controls listen for it once they run.
    ignored_hup = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signals: SignalInbox | None = None
    try:
        signals = SignalInbox()
        return _serve(args, settings, signals)
    finally:
        if signals is not None:
            signals.close()
        signal.signal(signal.SIGHUP, ignored_hup)
        instance.release()


def _serve(args: argparse.Namespace, settings: Settings, signals: SignalInbox) -> int:
    holder = LiveStateHolder(LiveState(look=startup_look(settings), mirror=settings.output.mirror))
    pipeline = Pipeline(settings, holder)
    stopping: list[str] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signals.listen(sig, lambda name=sig.name: stopping.append(name))
    notifier = sdnotify.SystemdNotifier()
    controls: list = []
    pipeline.start()  # VcamError (no device, no permission, bad model) -> exit 2 with the fix
    try:
        signals.wait(0)  # a stop asked for while the model loaded: no controls, no READY
        if not stopping:
            controls = start_controls(pipeline, holder, settings, signals,
                                      loader=lambda: settings_from_args(args))
            notifier.notify("READY=1\nSTATUS=starting")
            log.info("running: %s -> %s (%s)", settings.camera.source,
                     settings.output.device if settings.output.sink == "virtualcam" else settings.output.sink,
                     holder.get().look.effect)
        watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        interval = min(STATUS_INTERVAL_S, watchdog_usec / 2e6) if watchdog_usec else STATUS_INTERVAL_S
        watchdog = Watchdog()
        next_tick = time.monotonic() + interval
        while not stopping:
            signals.wait(max(0.0, next_tick - time.monotonic()))  # runs SIGHUP's reload, notes a stop
            if not stopping and time.monotonic() >= next_tick:
                notifier.notify(watchdog.message(pipeline.status()))
                next_tick = time.monotonic() + interval
        log.info("%s: stopping", stopping[0])
    finally:
        notifier.notify("STOPPING=1")
        # The camera and the device first: whatever a control is busy with (a reload, a background stuck
        # loading), stopping must release them at once.
        t0 = time.perf_counter()
        pipeline.stop()
        t1 = time.perf_counter()
        for control in controls:
            try:
                control.stop()
            except Exception:
                log.exception("stopping %r failed", control)
        log.info("stopped in %.0f ms (pipeline %.0f ms, controls %.0f ms)", (time.perf_counter() - t0) * 1e3,
                 (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3)
    return 0
