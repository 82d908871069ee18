"""Where composited frames go: a registry of sinks by name, one module per sink, opened the same way.

`virtualcam` is the real job; `preview`, `file` and `null` are for debugging, tests and `vcam bench`.
The names come from vcam/live/sink_names.py, the list the config validates against.
"""
from __future__ import annotations

from collections.abc import Callable

from vcam.config import OutputSettings, picture_size_problem
from vcam.live.sink_names import SINK_NAMES
from vcam.live.sinks.base import OutputError, Sink
from vcam.live.sinks.file import FileSink
from vcam.live.sinks.null import NullSink
from vcam.live.sinks.preview import PreviewSink
from vcam.live.sinks.virtualcam import MODPROBE_LINE, VirtualCamSink, explain_virtualcam_error

SINKS: dict[str, Callable[..., Sink]] = {}


def register_sink(name: str, cls: Callable[..., Sink]) -> None:
    """Add (or replace) a sink type, like pyvirtualcam's register_backend."""
    SINKS[name] = cls


for _cls in (VirtualCamSink, PreviewSink, FileSink, NullSink):
    register_sink(_cls.name, _cls)
if tuple(SINKS) != SINK_NAMES:  # the config would accept a sink that cannot open, or refuse one that can
    raise ImportError(f"sink classes {tuple(SINKS)} do not match vcam.live.sink_names {SINK_NAMES}")


def output_size(settings: OutputSettings, camera_size: tuple[int, int]) -> tuple[int, int]:
    """[output] width/height (0 = the camera's), rounded down to even numbers (I420 needs even sizes).
    OutputError if the result is a size vcam cannot process (one side taken from the camera can make it)."""
    w = settings.width or camera_size[0]
    h = settings.height or camera_size[1]
    size = max(2, w - w % 2), max(2, h - h % 2)
    problem = picture_size_problem(*size)
    if problem:
        raise OutputError(f"[output] width and height: {problem} (0 takes the camera's: "
                          f"{camera_size[0]}x{camera_size[1]})")
    return size


def open_sink(settings: OutputSettings, size: tuple[int, int], fps: float | None = None,
              **kw: object) -> Sink:
    """Open the sink [output] sink names; OutputError if there is no such sink or it cannot open."""
    try:
        cls = SINKS[settings.sink]
    except KeyError:
        raise OutputError(f"[output] sink: unknown sink {settings.sink!r} "
                          f"(one of {', '.join(SINKS)})") from None
    return cls(settings, size, float(fps or settings.fps), **kw)


__all__ = ["SINKS", "MODPROBE_LINE", "FileSink", "NullSink", "OutputError", "PreviewSink", "Sink",
           "VirtualCamSink", "explain_virtualcam_error", "open_sink", "output_size", "register_sink"]
