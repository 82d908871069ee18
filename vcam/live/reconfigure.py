"""A config reload applied to the running pipeline all or nothing, so a refused reload never leaves half
of itself behind: each changed stage is restarted, and put back as it was if a later one fails."""
from __future__ import annotations

import dataclasses
import logging
from typing import Protocol

from vcam.config import OutputSettings, Settings
from vcam.errors import VcamError
from vcam.live.camera_gate import CameraGate
from vcam.live.capture import STOP_WAIT_S, CameraSource, CaptureThread, camera_size_hint
from vcam.live.output_stage import OutputStage
from vcam.live.segmenter_stage import SegmenterStage
from vcam.live.sinks import output_size
from vcam.live.slot import OneSlot
from vcam.matting.matting import Matting


class Reconfigurable(Protocol):
    """What a reload changes in the running pipeline (vcam/live/pipeline.py provides it)."""

    settings: Settings
    started: bool
    pace_source: bool
    output: OutputStage
    segmenter: SegmenterStage
    gate: CameraGate
    capture: CaptureThread
    out_slot: OneSlot

    def start_capture(self, source: CameraSource) -> None: ...

log = logging.getLogger(__name__)


def reconfigure(p: Reconfigurable, settings: Settings) -> None:
    """Apply reloaded settings to `p`, restarting only the stages whose section changed.

    All or nothing: on failure every stage keeps (or gets back) its old settings and VcamError is
    raised; a new segmentation engine goes live only once every other stage succeeded. [effect],
    [matte] and [output] mirror are live state, not stages: the caller updates the holder for those
    in one swap with the rest of the change (a mirror change never reopens the output).
    """
    old = p.settings
    if not p.started:
        p.settings = settings
        return
    output_changed = _without_mirror(settings.output) != _without_mirror(old.output)
    camera_changed = settings.camera != old.camera
    engine = Matting(settings, video=True) if settings.segmentation != old.segmentation else None
    try:
        if output_changed:
            _reopen_output(p, settings, old)
        if camera_changed:
            try:
                _reopen_camera(p, settings)
            except Exception:
                if output_changed:  # back to the old output too: nothing of this reload stays applied
                    try:
                        _reopen_output(p, old, settings)
                    except VcamError as e:
                        log.error("could not reopen the previous output after a refused reload: %s", e)
                raise
    except BaseException:
        if engine is not None:
            engine.close()
        raise
    if engine is not None:  # the segmenter swaps it in between frames
        p.segmenter.offer_engine(engine)
    p.gate.sync(settings)
    p.settings = settings
    p.out_slot.wake()


def _reopen_output(p: Reconfigurable, new: Settings, old: Settings) -> None:
    """Open `new`'s output in place of the current one; on failure reopen `old`'s and raise."""
    size = output_size(new.output, camera_size_hint(new.camera))
    p.output.reopen(new.output, size, old.output)


def _reopen_camera(p: Reconfigurable, new: Settings) -> None:
    """Read `new`'s camera instead of the current one; if it cannot open, go on with the old one and raise."""
    source = CameraSource(new.camera, pace=p.pace_source, as_i420=True)
    wanted = p.gate.wanted
    old_capture = p.capture
    # The old camera must be closed before the same device is reopened: wait out a read in progress.
    closed = old_capture.stop(timeout=STOP_WAIT_S)
    if wanted:
        try:
            source.open()  # validate now so a bad [camera] section is reported, not retried forever
        except Exception as e:  # VcamError, or OpenCV's own (a 1x1 PNG as camera): the old camera goes on
            # A fresh thread on the old source (the old thread, if still inside a read, closes its own
            # when the read returns; until then the new one retries as "unavailable").
            old_source = CameraSource(old_capture.source.settings, pace=p.pace_source, as_i420=True)
            p.start_capture(old_source)
            busy = "" if closed else " (the old camera was still busy in a read)"
            why = str(e) if isinstance(e, VcamError) else f"{source.label}: cannot be read ({_first_line(e)})"
            raise VcamError(f"[camera] not applied, keeping {old_capture.source.label}: "
                            f"{why}{busy}") from None
    p.start_capture(source)


def _without_mirror(output: OutputSettings) -> OutputSettings:
    """[output] minus mirror, which is live state: a mirror change alone must not reopen the device."""
    return dataclasses.replace(output, mirror=False)


def _first_line(error: Exception) -> str:
    """A library's error in one line (OpenCV's span several, with the C++ source location first)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
