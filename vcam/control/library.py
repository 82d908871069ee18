"""The background library (images and videos from [backgrounds] paths, in a stable order), loaded so
that switching backgrounds never stalls the frame path.

Opening, decoding and scaling a file takes several frame intervals, so it runs on one loader thread,
which also keeps rapid switches in order; a ready background is swapped into the live state in one step.
An undecodable file is skipped with one log line; a replaced background is closed once no frame in
flight can still use it.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vcam.compositing.backgrounds import (
    Background,
    BackgroundError,
    ColorBackground,
    ImageBackground,
    VideoBackground,
    is_image_path,
    is_video_path,
    load_background,
)

log = logging.getLogger(__name__)

RETIRE_DELAY_S = 2.0  # far longer than one frame: the worker has moved on before a replaced video closes


def scan(paths: list[str]) -> list[Path]:
    """Image and video files of `paths` (directories: their files sorted by name; files: as given)."""
    entries: list[Path] = []
    for spec in paths:
        path = Path(spec).expanduser()
        if path.is_dir():
            files = [p for p in path.iterdir() if p.is_file() and (is_image_path(p) or is_video_path(p))]
            entries.extend(sorted(files, key=lambda p: (p.name.lower(), p.name)))
        elif path.is_file():
            entries.append(path)
        else:
            log.warning("background library: %s does not exist, skipped", path)
    seen: set[Path] = set()
    unique = []
    for p in entries:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def prewarm(bg: Background, size: tuple[int, int]) -> None:
    """Scale to the frame size now, so the first frame that shows it costs no more than usual.

    (Images cache their scaled copy; a video decodes a frame per output frame anyway.)"""
    if isinstance(bg, (ImageBackground, ColorBackground)):
        bg.frame(size)


def effect_for(background: Background) -> str:
    """The effect name that shows `background`: 'video' for a looping video, else 'replace'."""
    return "video" if isinstance(background, VideoBackground) else "replace"


@dataclass(frozen=True)
class Switch:
    """The outcome of a background request: the background now live, or None for the blur fallback."""

    background: Background | None
    index: int | None  # 0-based position in the library, None for a path/colour outside it
    skipped: tuple[str, ...] = ()  # files that could not be decoded on the way


class BackgroundLibrary:
    """The configured backgrounds, a current position, and the loader thread that switches them."""

    def __init__(self, paths: list[str], frame_size: Callable[[], tuple[int, int]]) -> None:
        self.paths = list(paths)
        self.entries = scan(self.paths)
        self.position: int | None = None
        self._frame_size = frame_size
        self._bad: set[Path] = set()
        # Normal priority on purpose: a niced loader thread that is preempted while holding the GIL
        # stalls the frame path behind it (priority inversion; measured in docs/control.md).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vcam-bg-loader")
        self._retired: list[tuple[float, Background]] = []
        self._lock = threading.Lock()
        log.info("background library: %d file(s) from %d path(s)", len(self.entries), len(self.paths))

    def __len__(self) -> int:
        return len(self.entries)

    # -- requests (any thread); the returned Future resolves once the switch is live --------------------------
    def step(self, delta: int, apply: Callable[[Switch], None]) -> Future:
        """Move `delta` entries along the library (wrapping), skipping undecodable files."""
        return self._executor.submit(self._step, delta, apply)

    def select(self, target: str, apply: Callable[[Switch], None]) -> Future:
        """Show entry N (1-based, as `vcam ctl background 3`) or a path / colour."""
        return self._executor.submit(self._select, target, apply)

    def current(self, apply: Callable[[Switch], None]) -> Future:
        """Load the current entry (the first one if none yet) for effects that need a background."""
        return self._executor.submit(self._step, 0 if self.position is not None else 1, apply)

    def retire(self, background: Background | None) -> None:
        """Close `background` a little later, when no frame in flight can still use it."""
        if background is not None:
            with self._lock:
                self._retired.append((time.monotonic() + RETIRE_DELAY_S, background))
            timer = threading.Timer(RETIRE_DELAY_S + 0.05, self._submit_close)
            timer.daemon = True
            timer.start()

    def _submit_close(self) -> None:
        try:
            self._executor.submit(self._close_retired)
        except RuntimeError:  # shut down meanwhile: close() closed them
            pass

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            retired, self._retired = self._retired, []
        for _, bg in retired:
            bg.close()

    # -- loader thread ----------------------------------------------------------------------------------------
    def _open(self, path: Path) -> Background:
        bg = load_background(str(path))
        self._prewarm(bg)
        return bg

    def _prewarm(self, bg: Background) -> None:
        prewarm(bg, self._frame_size())

    def _step(self, delta: int, apply: Callable[[Switch], None]) -> Switch:
        self._close_retired()
        n = len(self.entries)
        skipped: list[str] = []
        if n == 0:
            switch = Switch(None, None)
        else:
            start = -1 if self.position is None and delta > 0 else (self.position if self.position is not None else 0)
            switch = Switch(None, None)
            step = 1 if delta >= 0 else -1
            index = (start + delta) % n
            for _ in range(n):
                path = self.entries[index]
                if path not in self._bad:
                    try:
                        switch = Switch(self._open(path), index)
                        break
                    except Exception as e:  # undecodable (BackgroundError) or worse: skip it, never crash
                        self._bad.add(path)
                        skipped.append(path.name)
                        reason = str(e) if isinstance(e, BackgroundError) else f"{path}: {type(e).__name__}: {e}"
                        log.warning("background library: skipping %s", reason)
                index = (index + step) % n
            switch = Switch(switch.background, switch.index, tuple(skipped))
        if switch.background is None:
            log.warning("background library: no usable background (%d configured); falling back to blur", n)
        else:
            self.position = switch.index
            log.info("background %d/%d: %s", switch.index + 1, n, self.entries[switch.index])
        apply(switch)
        return switch

    def _select(self, target: str, apply: Callable[[Switch], None]) -> Switch:
        self._close_retired()
        target = target.strip()
        if target.isdigit():
            number = int(target)
            if not 1 <= number <= len(self.entries):
                raise BackgroundError(f"background {number}: the library has {len(self.entries)} entries "
                                      f"(numbered from 1)")
            path = self.entries[number - 1]
            try:
                bg = self._open(path)
            except BackgroundError:
                self._bad.add(path)
                log.warning("background library: %s cannot be decoded", path)
                raise
            switch = Switch(bg, number - 1)
        else:
            bg = load_background(target)  # a path or a colour; raises BackgroundError naming it
            self._prewarm(bg)
            index = None
            if not isinstance(bg, ColorBackground):
                resolved = Path(target).expanduser().resolve()
                index = next((i for i, p in enumerate(self.entries) if p.resolve() == resolved), None)
            switch = Switch(bg, index)
        if switch.index is not None:
            self.position = switch.index
        log.info("background: %s", bg.label)
        apply(switch)
        return switch

    def _close_retired(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [bg for t, bg in self._retired if t <= now]
            self._retired = [(t, bg) for t, bg in self._retired if t > now]
        for bg in due:
            bg.close()
