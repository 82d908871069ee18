"""Where the control socket and the instance lock live, checked before anything trusts them, so that no
other local user can take vcam's place: $XDG_RUNTIME_DIR (private by design), else a private folder
/tmp/vcam-UID that must be ours, not a symlink and mode 0700, never a world-writable path.

Kept light (no OpenCV, no numpy): `vcam ctl` uses it on every key press.
"""
from __future__ import annotations

import fcntl
import os
import socket
import stat
import struct
from pathlib import Path

from vcam.config import ControlSettings
from vcam.errors import VcamError

SOCKET_NAME = "vcam.sock"
FALLBACK_BASE = "/tmp"  # without $XDG_RUNTIME_DIR (su, sudo -u, cron, ssh without pam_systemd, containers)


class UnsafeRuntimeDir(VcamError):
    """The folder of the control socket could be someone else's: refused rather than trusted."""


def fallback_dir() -> Path:
    return Path(FALLBACK_BASE) / f"vcam-{os.getuid()}"


def socket_path(settings: ControlSettings) -> Path:
    """[control] socket, else $XDG_RUNTIME_DIR/vcam.sock, else /tmp/vcam-UID/vcam.sock (a private folder)."""
    if settings.socket:
        return Path(settings.socket).expanduser()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / SOCKET_NAME
    return fallback_dir() / SOCKET_NAME


def check_private_dir(path: Path, create: bool) -> bool:
    """True if `path` is a folder only we can use (ours, not a symlink, no access for others), creating
    it so when `create`; False if it is missing; UnsafeRuntimeDir (one line) if it is anything else."""
    if create:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError as e:
            raise UnsafeRuntimeDir(f"{path}: cannot create vcam's private folder ({e.strerror or e}); "
                                   f"set $XDG_RUNTIME_DIR or [control] socket") from None
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        problem = "is a symlink"
    elif not stat.S_ISDIR(st.st_mode):
        problem = "is not a folder"
    elif st.st_uid != os.getuid():
        problem = f"belongs to uid {st.st_uid}, not to you (uid {os.getuid()})"
    elif stat.S_IMODE(st.st_mode) & 0o077:
        problem = f"is open to other users (mode {stat.S_IMODE(st.st_mode):o}, expected 700)"
    else:
        return True
    raise UnsafeRuntimeDir(f"{path} {problem}: it is not vcam's private folder, so its control socket "
                           f"could be someone else's; remove it, or set $XDG_RUNTIME_DIR or [control] socket")


def prepare_socket_dir(path: Path) -> None:
    """Make the socket's folder ready for the daemon: the private fallback is created and checked."""
    if path.parent == fallback_dir():
        check_private_dir(path.parent, create=True)
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise VcamError(f"{path.parent}: cannot create the control socket's folder: {e.strerror or e}") \
                from None


class InstanceLock:
    """An exclusive flock beside the control socket, held for the daemon's lifetime: one vcam per socket."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd

    def release(self) -> None:
        """Unlock (the file stays: removing it would race with the next vcam taking it)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


def lock_path(socket: Path) -> Path:
    return socket.with_name(socket.name + ".lock")


def acquire_instance_lock(socket: Path) -> InstanceLock:
    """The instance lock for `socket`, taken before the daemon opens anything (model, camera, device);
    VcamError naming the running vcam if another one holds it."""
    prepare_socket_dir(socket)
    path = lock_path(socket)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise VcamError(f"{path}: cannot open vcam's instance lock ({e.strerror or e}); remove it if it is "
                        f"not yours, or set [control] socket") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise VcamError(f"another vcam is already running (pid {pid}, control socket {socket}); stop it "
                        f"first (`systemctl --user stop vcam`) or control it with `vcam ctl`") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return InstanceLock(path, fd)


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a connected Unix socket (SO_PEERCRED); OSError if the
    kernel cannot say."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]
