"""The output sinks' names, in one leaf module (no imports) so the config can validate [output] sink
without loading numpy, OpenCV or pyvirtualcam; vcam/live/sinks/ registers one class per name."""
from __future__ import annotations

SINK_NAMES: tuple[str, ...] = ("virtualcam", "preview", "file", "null")
