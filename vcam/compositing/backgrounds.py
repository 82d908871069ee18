"""Background sources for the replace/video effects: a solid colour, an image or a looping video.

Each source hands out a BGR uint8 frame of the requested size, or I420 for the live pipeline. Images are
scaled to cover the frame and centre-cropped (never stretched) once per size and cached; videos decode
each clip frame they show once, at their own frame rate, and loop at their end (for I420, on a thread
of their own: clip.py).
"""
from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

import cv2
import numpy as np

from vcam.compositing.clip import ClipReader
from vcam.errors import VcamError
from vcam.frames import i420
from vcam.frames.image_size import image_size
from vcam.native import native_stderr_to_log

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
VIDEO_EXTENSIONS = {".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".gif"}

NAMED_COLORS = {
    "white": (255, 255, 255), "black": (0, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255),
    "red": (255, 0, 0), "gray": (128, 128, 128), "grey": (128, 128, 128),
    "magenta": (255, 0, 255), "cyan": (0, 255, 255), "yellow": (255, 255, 0),
}


class BackgroundError(VcamError):
    """A background that cannot be used; the message names the file or the value."""


class ImageFileError(VcamError):
    """An image file that is missing, not an image, or cut off."""


def _is_truncated(data: bytes) -> bool:
    """OpenCV decodes a cut-off JPEG/PNG with only a warning (and grey where data is missing)."""
    if data[:3] == b"\xff\xd8\xff":
        return b"\xff\xd9" not in data[-4096:]
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in data[-64:]
    return False


# Limits on what is read: a picture vcam can use is a few tens of MB and under 64 megapixels (8000x8000);
# anything beyond would take gigabytes to decode (a decompression bomb) or never end (/dev/zero).
MAX_IMAGE_BYTES = 256 << 20
MAX_IMAGE_PIXELS = 64_000_000


def regular_file_problem(path: Path) -> str | None:
    """Why `path` is not a regular file that can be read (a FIFO, a device, a directory), or None."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "file not found"
    except OSError as e:
        return f"cannot read ({e.strerror})"
    if stat.S_ISDIR(mode):
        return "is a directory, expected a file"
    if not stat.S_ISREG(mode):
        return "not a regular file (a FIFO, socket or device)"
    return None


def read_image(path: Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """Decode an image file, refusing missing, non-regular, oversized, non-image and truncated files
    with a one-line error; the header's pixel size is checked before anything is decoded."""
    problem = regular_file_problem(path)
    if problem:
        raise ImageFileError(f"{path}: {problem}")
    try:
        with open(path, "rb", opener=lambda name, fl: os.open(name, fl | os.O_NONBLOCK)) as f:
            data = f.read(MAX_IMAGE_BYTES + 1)
    except OSError as e:
        raise ImageFileError(f"{path}: cannot read ({e.strerror})") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageFileError(f"{path}: larger than {MAX_IMAGE_BYTES >> 20} MB, too large for a picture")
    size = image_size(data)
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise ImageFileError(f"{path}: {size[0]}x{size[1]} is too large (at most "
                             f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels)")
    with native_stderr_to_log():  # libjpeg/libpng print their own complaints about bad files
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags) if data else None
    if image is None:
        raise ImageFileError(f"{path}: not a readable image")
    if _is_truncated(data):
        raise ImageFileError(f"{path}: image file is truncated")
    return image


def parse_color(text: str) -> tuple[int, int, int] | None:
    """'white', '#00ff00', '#0f0' or '0,128,255' (RGB) -> a BGR tuple; None if it is not a colour."""
    s = text.strip().lower()
    if s in NAMED_COLORS:
        r, g, b = NAMED_COLORS[s]
        return b, g, r
    m = re.fullmatch(r"#?([0-9a-f]{6}|[0-9a-f]{3})", s)
    if m and (s.startswith("#") or len(s) == 6 and not Path(text).suffix):
        h = m.group(1)
        if len(h) == 3:
            h = "".join(c * 2 for c in h)
        r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
        return b, g, r
    m = re.fullmatch(r"(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})", s)
    if m and all(int(v) <= 255 for v in m.groups()):
        r, g, b = (int(v) for v in m.groups())
        return b, g, r
    return None


def cover_resize(image: np.ndarray, size: tuple[int, int], dst: np.ndarray | None = None) -> np.ndarray:
    """Scale `image` to cover (width, height) keeping its aspect, then centre-crop."""
    w, h = size
    ih, iw = image.shape[:2]
    scale = max(w / iw, h / ih)
    cw, ch = min(iw, max(1, round(w / scale))), min(ih, max(1, round(h / scale)))
    x0, y0 = (iw - cw) // 2, (ih - ch) // 2
    crop = image[y0:y0 + ch, x0:x0 + cw]
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(crop, (w, h), dst=dst, interpolation=interp)


class Background:
    """A source of background frames. `frame(size)` may return a shared buffer: don't modify it.

    `t`: the time (seconds, any origin) of the picture the background goes behind; only a video uses it.
    """

    label = "background"
    _i420: np.ndarray | None = None  # frame_i420()'s buffer, and what it holds (size, picture key)
    _i420_key: object = None

    def frame(self, size: tuple[int, int], t: float | None = None) -> np.ndarray:
        raise NotImplementedError

    def frame_i420(self, size: tuple[int, int], t: float | None = None) -> np.ndarray:
        """frame() as I420 (vcam/frames/i420.py) for the live pipeline, converted only when the picture
        changed."""
        bgr = self.frame(size, t)
        key = (size, self._picture_key())
        if self._i420_key != key:
            self._i420 = i420.from_bgr(bgr, self._i420)
            self._i420_key = key
        return self._i420

    def _picture_key(self) -> object:
        """What identifies the picture frame() returns, for a given size (a still picture: nothing)."""
        return None

    def close(self) -> None:
        pass


class ColorBackground(Background):
    def __init__(self, bgr: tuple[int, int, int], label: str = "") -> None:
        self.bgr = bgr
        self.label = label or f"#{bgr[2]:02x}{bgr[1]:02x}{bgr[0]:02x}"
        self._buf: np.ndarray | None = None

    def frame(self, size: tuple[int, int], t: float | None = None) -> np.ndarray:
        w, h = size
        if self._buf is None or self._buf.shape[:2] != (h, w):
            self._buf = np.empty((h, w, 3), np.uint8)
            self._buf[:] = self.bgr
        return self._buf


class SolidColors:
    """The colour backgrounds a compositor draws by itself: white (replace without a background) and
    the key colour (transparent, live). Kept between frames: each fills its buffer once per size, not
    every frame (docs/performance.md)."""

    def __init__(self) -> None:
        self.white = ColorBackground((255, 255, 255))
        self._key: ColorBackground | None = None

    def key(self, bgr: tuple[int, int, int]) -> ColorBackground:
        """The background of colour `bgr`, the same object while the colour stays."""
        if self._key is None or self._key.bgr != tuple(bgr):
            self._key = ColorBackground(tuple(bgr))
        return self._key


MAX_BACKGROUND_SIDE = 3840  # the largest side kept of a background image (4K UHD)


class ImageBackground(Background):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = str(path)
        try:
            image = read_image(path)
        except ImageFileError as e:
            raise BackgroundError(f"cannot use as background: {e}") from None
        # only this copy is kept: a 50-megapixel photo costs its 4K cover, not 150 MB while shown
        h, w = image.shape[:2]
        scale = min(1.0, MAX_BACKGROUND_SIDE / max(w, h))
        self.image = image if scale == 1.0 else cv2.resize(
            image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        self._cached: np.ndarray | None = None

    def frame(self, size: tuple[int, int], t: float | None = None) -> np.ndarray:
        w, h = size
        if self._cached is None or self._cached.shape[:2] != (h, w):
            self._cached = cover_resize(self.image, size)
        return self._cached


PAUSE_S = 1.0  # a gap this long between two frames is a pause: the video goes on from where it was


class VideoBackground(Background):
    """A looping video, played at its own frame rate.

    Why by time: a 24 fps clip behind a 30 fps camera must not run 25% fast, and when the clip has fewer
    frames a second than the camera, the scaled frame is reused instead of decoded and scaled again.
    With `t`, each call shows the clip's frame nearest to `t` (counted from the first call's `t`; after
    a pause or when `t` goes back, from the frame shown); without it, each call advances one frame.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = str(path)
        self._cap = cv2.VideoCapture(str(path))
        self._cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)  # shown the way players show it
        ok, first = self._cap.read() if self._cap.isOpened() else (False, None)
        if not ok or first is None:
            self._cap.release()
            raise BackgroundError(f"{path}: cannot decode background video "
                                  f"(missing, unreadable or not a video)")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 1 <= fps <= 240 else 30.0
        self._raw = first
        self._shown = 0  # the clip's frame in _raw, counted from the start, across loops
        self._t0: float | None = None
        self._last_t = 0.0
        self._buf: np.ndarray | None = None
        self._scaled: tuple | None = None  # (size, frame number) that _buf holds
        self._reader: ClipReader | None = None  # frame_i420()'s decoder, started by its first call
        self._started = False  # a frame was shown

    def _step(self, keep: bool) -> None:
        """Move to the next frame (from the start again at the end); decode it into _raw if `keep`."""
        ok = self._cap.grab()
        if not ok:  # end of file (or a broken frame): loop from the start
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok = self._cap.grab()
        if ok and keep:
            self._cap.retrieve(self._raw)
        # if that failed, keep showing the last good frame rather than failing the stream
        self._shown += 1

    def _due(self, t: float | None) -> int:
        """The frame number to show at `t`."""
        if t is None:
            return self._shown + self._started
        if self._t0 is None:
            self._t0 = t - self._shown / self.fps
        elif t < self._last_t or t - self._last_t > PAUSE_S:  # a new stream or a pause: go on from here
            self._t0 = t - (self._shown + 1) / self.fps
        self._last_t = t
        return max(self._shown, int((t - self._t0) * self.fps + 0.5))

    def frame(self, size: tuple[int, int], t: float | None = None) -> np.ndarray:
        w, h = size
        due = self._due(t)
        while self._shown < due:  # frames in between (a clip faster than the camera) are skipped
            self._step(keep=self._shown + 1 == due)
        if self._scaled != (size, self._shown):
            if self._buf is None or self._buf.shape[:2] != (h, w):
                self._buf = np.empty((h, w, 3), np.uint8)
            cover_resize(self._raw, size, dst=self._buf)
            self._scaled = (size, self._shown)
        self._started = True
        return self._buf

    def frame_i420(self, size: tuple[int, int], t: float | None = None) -> np.ndarray:
        """The frame due at `t` as I420, made ready one frame ahead on the clip's own thread (clip.py)."""
        if self._reader is None:
            self._reader = ClipReader(self.path)
        due = self._due(t)
        picture = self._reader.get(due, size, ahead=max(1, due - self._shown))
        self._shown, self._started = max(self._shown, due), True
        return picture if picture is not None else super().frame_i420(size, t)

    def _picture_key(self) -> object:
        return self._shown

    def close(self) -> None:
        self._cap.release()
        if self._reader is not None:
            self._reader.close()

    def __del__(self) -> None:
        if getattr(self, "_reader", None) is not None:
            self._reader.close()


def is_video_path(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def load_background(spec: str) -> Background:
    """A colour, an image file or a video file, by what `spec` is."""
    color = parse_color(spec)
    if color is not None:
        return ColorBackground(color, spec.strip())
    path = Path(spec).expanduser()
    if not path.exists():
        raise BackgroundError(f"{spec}: background is neither an existing file nor a colour "
                              f"(use an image/video path, a name like 'white', '#00ff00' or '0,128,255')")
    if path.is_dir():
        raise BackgroundError(f"{path}: background is a directory, expected an image or video file")
    problem = regular_file_problem(path)  # a FIFO would block the loader, /dev/zero never end
    if problem:
        raise BackgroundError(f"{path}: cannot use as background: {problem}")
    if is_video_path(path):
        return VideoBackground(path)
    return ImageBackground(path)
