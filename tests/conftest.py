"""Shared fixtures: the real test data (through vcam.testdata) and helpers to need it.

Tests that need ../shared/testdata skip with a reason when it is absent, except under CI (any non-empty
value), where missing data is a failure: CI must never go green by skipping the real-data tests.

tests/control_rig.py is loaded as a plugin (pytest_plugins below), so its `rig` fixture (a running pipeline
with its control socket) is there for every test file without importing it; test files import only its
helpers (Rig, RecordingSink, the regions and picture checks).

Tests that start processes (`vcam` itself, Xvfb and xdotool, dbus-daemon and the fake portal, setpriv as
another uid, gcc for the fake v4l2 devices, mount as root) are marked `system` (pyproject.toml), per test
or with a module's pytestmark; the others run in this process:

    python -m pytest -m "not system"   # in-process tests only: quick, nothing started
    python -m pytest -m system         # the tests that start processes
    python -m pytest                   # all of them (make test, CI)
"""
from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from vcam.testdata import PROJECT_ROOT, testdata_path

T = TypeVar("T")

pytest_plugins = ["control_rig"]


def require_path(*parts: str) -> Path:
    """The test data file or folder, or skip (fail under CI) if it is missing."""
    path = testdata_path(*parts)
    if not path.exists():
        message = f"test data missing: {path} (set VCAM_TESTDATA to the shared testdata folder)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def require_tool(name: str) -> str:
    """An executable on PATH, or skip (fail under CI)."""
    import shutil

    found = shutil.which(name)
    if not found:
        message = f"{name} is not installed (CI installs it; locally: apt-get install {name})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def wait_until(predicate: Callable[[], T], timeout: float = 5.0,
               what: str | Callable[[], object] = "the condition", step: float = 0.02,
               ignoring: tuple[type[BaseException], ...] = ()) -> T:
    """predicate()'s first true value, asked every `step` s, or fail after `timeout` s naming `what` (a
    callable is asked then, to show the state at the time): tests wait for a state, never a guessed delay.

    `ignoring`: exceptions that mean "not yet" (a daemon whose socket is not up), asked again; the last
    one is chained to the timeout's error, so a wait that never succeeds still says why."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = predicate()
        except ignoring as e:
            value, last = None, e
        if value:
            return value
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout} s waiting for {described}") from last
        time.sleep(step)


def daemon_env(changes: dict | None = None) -> dict:
    """The environment for a daemon from this checkout with no X display: keys reach it only through what
    the test sets up, never the desktop's X server."""
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    env.update(PYTHONPATH=str(PROJECT_ROOT), **(changes or {}))
    return env


def start_logged_daemon(config: Path, log: Path, env_changes: dict | None = None) -> subprocess.Popen:
    """`vcam --config CONFIG run` from this checkout (daemon_env), its output in `log` (read when a test
    fails)."""
    env = daemon_env(env_changes)
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "vcam", "--config", str(config), "run"],
                                cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two 8-bit pictures in dB: "the same picture within a codec's loss" as
    a number (identical pictures: about 138 dB, not infinity)."""
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-9)))


def holds_open(pid: int, path: Path) -> bool:
    """Does process `pid` have `path` open? (The real check that a camera was released.)"""
    target = os.stat(path)
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            st = os.stat(fd)
        except OSError:
            continue
        if (st.st_ino, st.st_dev) == (target.st_ino, target.st_dev):
            return True
    return False


def build_preload(source: str, tmp_path_factory) -> Path:
    """tests/fake_v4l2/`source` compiled with the real gcc into an LD_PRELOAD library."""
    gcc = require_tool("gcc")
    out = tmp_path_factory.mktemp("preload") / (Path(source).stem + ".so")
    subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", str(out),
                    str(Path(__file__).parent / "fake_v4l2" / source), "-ldl", "-lpthread"], check=True)
    return out


@pytest.fixture(scope="session")
def shim(tmp_path_factory) -> Path:
    """The fake v4l2loopback output device (tests/fake_v4l2/shim.c)."""
    return build_preload("shim.c", tmp_path_factory)


@pytest.fixture(scope="session")
def camera_lib(tmp_path_factory) -> Path:
    """The fake USB webcam (tests/fake_v4l2/camera.c)."""
    return build_preload("camera.c", tmp_path_factory)


@pytest.fixture
def daemon_guard():
    """Daemon processes a test started; killed at the end if still running."""
    procs: list = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.fixture(scope="session")
def testdata() -> Path:
    return require_path()


def _image_mask_pairs(folder: str) -> list[tuple[Path, Path]]:
    """(image, mask) pairs of one still set of the test data: images/*.jpg with masks/<stem>.png."""
    images = require_path(folder, "images")
    masks = require_path(folder, "masks")
    pairs = [(p, masks / (p.stem + ".png")) for p in sorted(images.glob("*.jpg"))]
    assert pairs, f"no pictures in {images}"
    return pairs


@pytest.fixture(scope="session")
def portraits() -> list[tuple[Path, Path]]:
    """(image, hand-drawn mask) pairs of the real portrait set."""
    return _image_mask_pairs("portraits")


@pytest.fixture(scope="session")
def people_varied() -> list[tuple[Path, Path]]:
    """(image, remove.bg mask) pairs of the varied people set: groups, full bodies, distant people."""
    return _image_mask_pairs("people_varied")


@pytest.fixture(scope="session")
def still_scores(portraits, people_varied):
    """still_scores(name): eval_stills() with the default settings on the whole still set `name` (raw
    model, live matte, file-mode matte), computed once a session for every test that asks."""
    from vcam.commands.eval_stills import eval_stills
    from vcam.config import load_settings

    pairs = {"portraits": portraits, "people_varied": people_varied}

    @functools.cache
    def scores(name: str) -> dict:
        return eval_stills(load_settings(None, use_user_config=False), pairs[name])

    return scores


@pytest.fixture(scope="module")
def engine():
    """The file Engine with the live path's matte (one model pass; [matte] quality = "best" is for
    stills in file mode), shared by a module's tests."""
    from vcam.compositing.engine import Engine
    from vcam.config import load_settings

    settings = load_settings(None, use_user_config=False).replace("matte", quality="fast")
    with Engine(settings, video=False) as e:
        yield e


@pytest.fixture(scope="session")
def desk_video() -> Path:
    return require_path("videos", "desk_typing_960x540.mp4")


@pytest.fixture(scope="session")
def background_image() -> Path:
    return require_path("backgrounds", "images", "pixabay_porch-691330_1280.jpg")


@pytest.fixture(scope="session")
def background_video() -> Path:
    return require_path("backgrounds", "videos", "backscrub_retrowave.webm")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep the user's real ~/.config, ~/.local/share, runtime dir and desktop session out of every test
    (a vcam started by a test must not register global shortcuts with the desktop's real portal)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)  # and no $XDG_RUNTIME_DIR/bus either
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home / "run"))
    (home / "run").mkdir(mode=0o700)


@contextlib.contextmanager
def unwritable_folder(path: Path):
    """A folder nobody can create files in: a read-only tmpfs as root (root ignores modes), else mode 0500."""
    path.mkdir()
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)], check=True)
        try:
            yield path
        finally:
            subprocess.run(["umount", str(path)], check=True)
    else:
        os.chmod(path, 0o500)
        try:
            yield path
        finally:
            os.chmod(path, 0o700)


def mp4_with_display_rotation(image, path: Path, frames: int = 8) -> None:
    """An mp4 whose pixels are stored sideways with a 90-degree display matrix in its track header, as
    phones record portrait video."""
    import struct

    import cv2

    side = cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, side.shape[1::-1])
    for _ in range(frames):
        writer.write(side)
    writer.release()
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd") + 4
    assert data[at] == 0  # version 0 header: the matrix follows 40 bytes of fields
    at += 4 + 20 + 8 + 8

    def fixed(v: float, bits: int) -> bytes:
        return struct.pack(">i", int(v * (1 << bits)))

    matrix = [(0, 16), (1, 16), (0, 30), (-1, 16), (0, 16), (0, 30), (0, 16), (0, 16), (1, 30)]
    data[at:at + 36] = b"".join(fixed(v, b) for v, b in matrix)
    path.write_bytes(bytes(data))


def other_user_prefix(uid: int = 65534) -> list[str]:
    """setpriv's command prefix to run a process as another user, or skip: that needs root, and a Python
    the other user can run (pyenv's builds under /root load their libpython from where only root reads)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a process as another user (CI runs as root)")
    prefix = [require_tool("setpriv"), f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    probe = subprocess.run([*prefix, sys.executable, "-c", "pass"], capture_output=True, text=True,
                           timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"{sys.executable} cannot run as uid {uid}: {probe.stderr.strip()[:120]}")
    return prefix
