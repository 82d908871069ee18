"""On-demand: is any application reading the virtual camera? If not, vcam lets the webcam go.

How readers are detected: inotify on the device node (IN_OPEN / IN_CLOSE_*) wakes us whenever any
process opens or closes it; we then count the processes that hold it open by scanning /proc/*/fd
(other than ourselves: we hold the writer end). A slow periodic rescan covers missed events.

Why not the v4l2loopback >= 0.13 "client usage" V4L2 event (V4L2_EVENT_PRI_CLIENT_USAGE): it has to be
subscribed with VIDIOC_SUBSCRIBE_EVENT on an fd of the device, and the writer fd belongs to
pyvirtualcam's native code, which does not expose it; a second fd of our own would itself be counted
as a client by older modules. inotify + /proc works on every module version (0.12 in Debian/Ubuntu
LTS included) and can be tested without the kernel module. Its limits: processes of other users are
not visible in /proc/*/fd (a call app runs as the same user, so this is fine), and a program that
keeps the node open without reading (e.g. a device monitor) counts as a reader (see
docs/troubleshooting.md).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from inotify_simple import INotify, flags

from vcam.config import Settings

log = logging.getLogger(__name__)

RESCAN_S = 2.0  # periodic rescan in case an event was missed
POLL_MS = 200


def monitored_device(settings: Settings) -> str | None:
    """The device whose readers decide whether the camera is wanted, or None: on-demand applies only to
    a virtual camera, and only with [daemon] on_demand."""
    if settings.daemon.on_demand and settings.output.sink == "virtualcam":
        return settings.output.device
    return None


def readers_of(device: str, exclude_pid: int | None = None) -> list[int]:
    """PIDs of processes (readable to us) that have `device` open, except `exclude_pid`."""
    try:
        target = os.stat(device)
    except OSError:
        return []
    me = exclude_pid if exclude_pid is not None else os.getpid()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fds = os.scandir(f"/proc/{entry.name}/fd")
        except OSError:
            continue
        with fds:
            for fd in fds:
                try:
                    st = os.stat(fd.path)
                except OSError:
                    continue
                if st.st_ino == target.st_ino and st.st_dev == target.st_dev:
                    found.append(int(entry.name))
                    break
    return found


class ReaderMonitor:
    """A thread that keeps `.active` = "someone other than us has the device open", with a linger.

    Policy: `active` turns on at the first reader and off only once readers have been gone for `linger` s
    (apps reopen the device when switching resolution, and Chrome briefly opens every camera to list them);
    on_change(active) is called on each change, from the monitor's thread (or start()'s).
    """

    def __init__(self, device: str, linger: float = 2.0,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self.device = device
        self.linger = linger
        self.on_change = on_change
        self.readers: list[int] = []
        self.active = False
        self._last_seen = 0.0
        self._stop = threading.Event()
        self._inotify: INotify | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._inotify = INotify()
        self._watch()
        self._update(time.monotonic())
        self._thread = threading.Thread(target=self._run, name="vcam-ondemand", daemon=True)
        self._thread.start()

    def _watch(self) -> bool:
        try:
            self._inotify.add_watch(self.device, flags.OPEN | flags.CLOSE_WRITE | flags.CLOSE_NOWRITE
                                    | flags.ATTRIB | flags.DELETE_SELF)
            return True
        except OSError as e:
            log.debug("cannot watch %s: %s", self.device, e)
            return False

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None

    def _update(self, now: float) -> None:
        self.readers = readers_of(self.device)
        if self.readers:
            self._last_seen = now
        active = bool(self.readers) or (self.active and now - self._last_seen < self.linger)
        if active != self.active:
            self.active = active
            log.info("virtual camera %s: %s", self.device,
                     f"read by pid {', '.join(map(str, self.readers))}" if active
                     else "no readers, going idle")
            if self.on_change is not None:
                self.on_change(active)

    def _run(self) -> None:
        watched = True
        last_scan = time.monotonic()
        while not self._stop.is_set():
            try:  # a short timeout so stop() returns quickly
                events = self._inotify.read(timeout=POLL_MS)
            except OSError:
                events = []
            if self._stop.is_set():
                break
            now = time.monotonic()
            lingering = self.active and not self.readers
            if not events and not lingering and now - last_scan < RESCAN_S:
                continue
            last_scan = now
            if any(e.mask & (flags.IGNORED | flags.DELETE_SELF) for e in events):
                watched = False
            if not watched:  # the node went away (module reloaded): watch it again when it is back
                watched = self._watch()
            # Coalesce bursts (an app opens and closes the node several times while probing).
            if events:
                time.sleep(0.05)
            self._update(time.monotonic())
