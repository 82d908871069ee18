"""A running vcam for the control tests: the real Pipeline on a still frame of the real desk video.

The camera source is one frame of the desk video (a still), so with the matte's temporal smoothing off
every output frame for a given state is the same picture: a state change shows up as a deterministic
difference in the next frames. The sink is the real `null` sink that also keeps the frames it is sent
(registered in place of `null` for the rig's lifetime), with the time each one was sent.
"""
from __future__ import annotations

import collections
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from vcam.compositing.look import look_from_settings
from vcam.config import load_settings
from vcam.control.actions import Controller
from vcam.control.client import request
from vcam.control.server import ControlServer
from vcam.frames import i420
from vcam.live import sinks as output
from vcam.live.pipeline import Pipeline
from vcam.live.state import LiveState, LiveStateHolder

SIZE = (640, 360)
# Regions of the desk frame (640x360) that are background (alpha 0): the white blinds top left, and the
# blue boxes on the right shelf (their mirror image is the dark monitor and white wall on the left).
TOP_LEFT = (slice(0, 60), slice(0, 100))
BLUE_BOXES = (slice(115, 205), slice(535, 565))
SHELF = (slice(130, 220), slice(150, 215))  # bottles: texture for the blur strength


class RecordingSink(output.NullSink):
    """The null sink, keeping the last frames it was sent (I420, kept as BGR pictures) and when."""

    instances: list[RecordingSink] = []

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.frames: collections.deque = collections.deque(maxlen=90)
        self.lock = threading.Lock()
        RecordingSink.instances.append(self)

    def send(self, frame: np.ndarray) -> None:
        super().send(frame)
        with self.lock:
            self.frames.append((time.perf_counter(), i420.to_bgr(frame)))


class Rig:
    def __init__(self, tmp: Path, desk_video: Path, library: list[Path], **overrides) -> None:
        cap = cv2.VideoCapture(str(desk_video))
        ok, frame = cap.read()
        cap.release()
        assert ok, desk_video
        self.still = cv2.resize(frame, SIZE, interpolation=cv2.INTER_AREA)
        self.still_sent = as_sent(self.still)  # the still as the sink sees it untouched
        still_path = tmp / "desk_still.png"
        cv2.imwrite(str(still_path), self.still)
        self.socket = tmp / "vcam.sock"
        self.config = tmp / "config.toml"
        self.sections = {
            "camera": {"source": str(still_path), "fps": 30},
            "output": {"sink": "null", "width": SIZE[0], "height": SIZE[1], "fps": 30},
            "matte": {"temporal": 0.0},
            "daemon": {"on_demand": False},
            "backgrounds": {"paths": [str(p) for p in library]},
            "control": {"socket": str(self.socket), "watch_config": False},
        }
        for section, values in overrides.items():
            self.sections.setdefault(section, {}).update(values)
        self.write_config()
        settings = load_settings(self.config)
        self.settings = settings
        self.library = library
        self.holder = LiveStateHolder(LiveState(look=look_from_settings(settings)))
        self.pipeline = Pipeline(settings, self.holder)
        self.controller: Controller | None = None
        self.server: ControlServer | None = None

    @property
    def sink(self) -> RecordingSink:
        """The sink now open (a reload that changes [output] opens a new one)."""
        return RecordingSink.instances[-1]

    def write_config(self, **changes) -> None:
        """Write the rig's config file, with some sections' keys changed (values: str, number, bool, list)."""
        for section, values in changes.items():
            self.sections.setdefault(section, {}).update(values)
        self.config.write_text(toml(self.sections))

    def start(self) -> Rig:
        self.pipeline.start()
        self.controller = Controller(self.pipeline, self.holder, self.settings)
        self.server = ControlServer(self.controller, self.settings.control).start()
        self.frame_after(time.perf_counter(), settle=0.0, timeout=15)  # model loaded, frames flowing
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.pipeline.stop()
        if self.controller is not None:
            self.controller.close()

    def ctl(self, action: str, *args: str) -> dict:
        """One request over the real control socket."""
        return request(self.socket, action, list(args))

    def ok(self, action: str, *args: str) -> dict:
        reply = self.ctl(action, *args)
        assert reply["ok"], reply
        return reply["result"]

    def frame_after(self, t: float, settle: float = 0.15, timeout: float = 5.0) -> np.ndarray:
        """The first frame sent at least `settle` s after `t` (so it was composited after a change at t)."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with self.sink.lock:
                for sent, frame in self.sink.frames:
                    if sent >= t + settle:
                        return frame
            time.sleep(0.02)
        raise AssertionError(f"no frame sent within {timeout} s after the change")

    def shows(self, predicate, since: float | None = None, timeout: float = 5.0) -> np.ndarray:
        """The first frame sent after `since` (default: now) for which `predicate(frame)` holds.

        Frames composited before a change may still be in flight for a moment (more so on a loaded
        machine), so this waits for the change to reach the output rather than guessing a delay.
        """
        since = time.perf_counter() if since is None else since
        deadline = time.perf_counter() + timeout
        checked = 0.0
        last = None
        while time.perf_counter() < deadline:
            with self.sink.lock:
                fresh = [(sent, f) for sent, f in self.sink.frames if sent > max(since, checked)]
            for sent, frame in fresh:
                checked, last = sent, frame
                if predicate(frame):
                    return frame
            time.sleep(0.02)
        raise AssertionError(f"no frame within {timeout} s showed the change"
                             + ("" if last is not None else " (no frames at all)"))

    def wait_state(self, predicate, timeout: float = 5.0) -> LiveState:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            state = self.holder.get()
            if predicate(state):
                return state
            time.sleep(0.01)
        raise AssertionError(f"state never matched; now {self.holder.get()}")


def toml(sections: dict) -> str:
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "".join(f"[{name}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in values.items()) + "\n"
                   for name, values in sections.items())


def background_region(path: Path, region=TOP_LEFT) -> np.ndarray:
    """What `replace` with this image shows in a background region: the image cover-scaled to the frame,
    as sent."""
    from vcam.compositing.backgrounds import load_background
    bg = load_background(str(path))
    try:
        return as_sent(bg.frame(SIZE))[region]
    finally:
        bg.close()


def as_sent(bgr: np.ndarray) -> np.ndarray:
    """A BGR picture as it looks after the trip every frame makes to the virtual camera (I420: chroma at
    half resolution, limited range), which is what RecordingSink keeps."""
    return i420.to_bgr(i420.from_bgr(bgr))


def sent_color(bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    """A solid colour as it arrives after the trip to the virtual camera (green (0, 255, 0) ->
    (1, 255, 0))."""
    return tuple(int(c) for c in as_sent(np.full((2, 2, 3), bgr, np.uint8))[0, 0])


KEY_SENT = sent_color((0, 255, 0))


def close_to(a: np.ndarray, b: np.ndarray, tol: float = 3.0) -> bool:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) <= tol


def blueness(frame: np.ndarray) -> float:
    region = frame[BLUE_BOXES].astype(np.float32)
    return float(region[..., 0].mean() - region[..., 2].mean())


def grey(frame: np.ndarray) -> bool:
    """The blue boxes in grey: every pixel's three channels equal (the key colour, the blue camera picture,
    a replaced or blurred background all differ by 100 levels or more there); the region's 2 px border is
    left out, since the person's edge just outside can tint it through I420's half-resolution colour."""
    region = frame[BLUE_BOXES][2:-2, 2:-2].astype(np.int16)
    return int((region.max(axis=2) - region.min(axis=2)).max()) <= 3


def sharpness(frame: np.ndarray) -> float:
    """Detail in the shelf region: the Laplacian's variance, at half size so that the rounding of an I420
    frame's half-resolution chroma on its way back to BGR (a floor of about 2 here) does not count."""
    gray = cv2.cvtColor(np.ascontiguousarray(frame[SHELF]), cv2.COLOR_BGR2GRAY)
    gray = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def key_pixels(frame: np.ndarray, key=KEY_SENT) -> int:
    return int(np.all(frame == np.array(key, np.uint8), axis=2).sum())


def library_files(testdata_images: Path, testdata_videos: Path) -> list[Path]:
    return [testdata_images / "pixabay_porch-691330_1280.jpg",
            testdata_images / "mate_nature_Aqua.jpg",
            testdata_images / "backscrub_background_retro.png",
            testdata_videos / "backscrub_retrowave.webm"]


@pytest.fixture(scope="module")
def rig(tmp_path_factory, desk_video):
    """A started Rig on the real background library, shared by a test module's tests (and stopped after)."""
    from conftest import require_path

    images = require_path("backgrounds", "images")
    videos = require_path("backgrounds", "videos")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(output.SINKS, "null", RecordingSink)
        r = Rig(tmp_path_factory.mktemp("rig"), desk_video, library_files(images, videos)).start()
        try:
            yield r
        finally:
            r.stop()
