"""The segmentation runtimes by name ([segmentation] runtime), like the sink registry (live/sinks/).

Every runtime runs the same model file and gives the same mask (docs/matte.md, Segmentation); the
heavy packages they wrap (mediapipe, ai-edge-litert) are imported only when one is opened.
"""
from __future__ import annotations

from vcam.matting.runtimes.base import SegmenterBase
from vcam.matting.runtimes.litert import LiteRTSegmenter
from vcam.matting.runtimes.mediapipe import MediaPipeSegmenter

RUNTIMES: dict[str, type[SegmenterBase]] = {
    "mediapipe": MediaPipeSegmenter,
    "litert": LiteRTSegmenter,
}


def open_segmenter(model: str = "general", model_path: str = "", *, video: bool = False,
                   runtime: str = "mediapipe") -> SegmenterBase:
    """A segmenter for `runtime`, its model loaded (ModelError if the file is missing or unusable)."""
    try:
        cls = RUNTIMES[runtime]
    except KeyError:
        raise ValueError(f"unknown segmentation runtime {runtime!r} (one of {', '.join(RUNTIMES)})") from None
    return cls(model, model_path, video=video)


__all__ = ["RUNTIMES", "SegmenterBase", "open_segmenter"]
