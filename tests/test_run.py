"""`vcam run` end to end: a real daemon subprocess, the real desk video as its camera, pyvirtualcam's real
native v4l2loopback backend writing into a fake device (tests/fake_v4l2/shim.c, LD_PRELOADed).

The shim records every write (time, size) and keeps the latest frame, so we can look at what a video-call
app would have received.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import holds_open, require_tool, wait_until
from control_rig import toml

ROOT = Path(__file__).resolve().parent.parent
VCAM = [sys.executable, "-m", "vcam"]
MAGENTA_BGR = np.array([255, 0, 255])
W, H = 640, 360


class FakeCam:
    """A fake /dev/videoN (a plain file) plus what the shim recorded about it."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.device = directory / "video10"
        self.device.touch()

    def env(self, shim: Path) -> dict:
        return {"LD_PRELOAD": str(shim), "FAKE_V4L2_DEVICE": str(self.device), "FAKE_V4L2_DIR": str(self.dir)}

    def writes(self) -> list[tuple[float, int]]:
        path = self.dir / "writes.log"
        if not path.exists():
            return []
        rows = []
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                rows.append((int(parts[0]) / 1e9, int(parts[1])))
        return rows

    def formats(self) -> list[str]:
        path = self.dir / "format"
        return path.read_text().splitlines() if path.exists() else []

    def frame(self) -> np.ndarray:
        """The latest frame, I420 -> BGR."""
        raw = np.fromfile(self.dir / "frame.raw", np.uint8)
        assert raw.size == W * H * 3 // 2, raw.size
        return cv2.cvtColor(raw.reshape(H * 3 // 2, W), cv2.COLOR_YUV2BGR_I420)

    def wait_writes(self, n: int, timeout: float) -> None:
        wait_until(lambda: len(self.writes()) >= n, timeout,
                   lambda: f"{n} frames; {len(self.writes())} arrived", step=0.1)


def corners_are(frame: np.ndarray, bgr: np.ndarray, tol: int = 12) -> bool:
    """Both top corners (background in the desk video: the woman sits right of centre, below the top)."""
    patches = [frame[4:40, 4:60], frame[4:40, W - 200:W - 150]]
    return all(np.abs(p.reshape(-1, 3).mean(0) - bgr).max() <= tol for p in patches)


def background_detail(frame: np.ndarray) -> float:
    """Fine detail of the desk video's top-left background (left of the woman): the Laplacian's variance."""
    gray = cv2.cvtColor(frame[4:120, 4:200], cv2.COLOR_BGR2GRAY).astype(np.float32)
    return float(cv2.Laplacian(gray, cv2.CV_32F).var())


def video_frames(path: Path, n: int, step: int = 100) -> list[np.ndarray]:
    """`n` frames of the video, `step` apart, at the daemon's output size."""
    cap, frames = cv2.VideoCapture(str(path)), []
    for i in range(n):
        cap.set(cv2.CAP_PROP_POS_FRAMES, i * step)
        ok, frame = cap.read()
        assert ok
        frames.append(cv2.resize(frame, (W, H), interpolation=cv2.INTER_AREA))
    cap.release()
    return frames


def write_config(path: Path, source: Path, device: Path, *, on_demand: bool, fps: int = 30) -> Path:
    path.write_text(toml({
        "camera": {"source": str(source)},
        "output": {"sink": "virtualcam", "device": str(device), "width": W, "height": H, "fps": fps},
        "effect": {"name": "replace", "background": "#ff00ff"},
        "daemon": {"on_demand": on_demand, "idle_fps": 5},
    }))
    return path


def start_daemon(config: Path, extra_env: dict) -> subprocess.Popen:
    env = dict(os.environ, **extra_env)
    env.pop("DISPLAY", None)  # hotkeys are tested elsewhere
    return subprocess.Popen([*VCAM, "--config", str(config), "-v", "run"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def notify_socket(tmp_path):
    """(path, socket): systemd's notify socket as the daemon sees it (NOTIFY_SOCKET), read by the test."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(path))
        notify.settimeout(10)
        yield path, notify


def stop_daemon(proc: subprocess.Popen, sig=signal.SIGTERM) -> tuple[float, int, str]:
    """Send `sig`; (seconds to exit, exit status, stderr)."""
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        rc = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    elapsed = time.monotonic() - t0
    return elapsed, rc, proc.stderr.read()



@pytest.mark.system
def test_frames_format_effect_rate_notify_and_sigterm(shim, desk_video, tmp_path, daemon_guard,
                                                     notify_socket):
    fake = FakeCam(tmp_path)
    notify_path, notify = notify_socket
    config = write_config(tmp_path / "c.toml", desk_video, fake.device, on_demand=False)
    proc = start_daemon(config, {**fake.env(shim), "NOTIFY_SOCKET": str(notify_path)})
    daemon_guard.append(proc)

    # systemd's READY=1 arrives over the real notify socket.
    messages = []
    while not any("READY=1" in m for m in messages):
        messages.append(notify.recv(4096).decode())
    fake.wait_writes(10, timeout=20)

    # The format pyvirtualcam's real backend negotiated: the configured size, I420 ("YU12").
    assert fake.formats() == [f"{W} {H} YU12"]
    assert {size for _, size in fake.writes()} == {W * H * 3 // 2}

    # The effect is in the frames: the desk video's background (top corners) is now magenta...
    wait_until(lambda: corners_are(fake.frame(), MAGENTA_BGR), 5, "magenta background")
    frame = fake.frame()
    # ...and the person is not: the centre-right of the frame (her white coat) is far from magenta.
    coat = frame[int(H * 0.6):int(H * 0.8), int(W * 0.6):int(W * 0.75)].reshape(-1, 3).mean(0)
    assert np.abs(coat - MAGENTA_BGR).max() > 80, coat

    # The send rate holds the configured 30 fps over 3 s.
    n0 = len(fake.writes())
    time.sleep(3.0)
    rows = fake.writes()[n0:]
    rate = (len(rows) - 1) / (rows[-1][0] - rows[0][0])
    assert 27 <= rate <= 33, f"send rate {rate:.1f} fps"  # 30 fps within 10%: 20 would be repeats only

    # STATUS reports fps and the effect, with watchdog pings.
    deadline = time.monotonic() + 6
    while not any("STATUS=" in m and "fps" in m and "replace" in m for m in messages):
        assert time.monotonic() < deadline, messages
        messages.append(notify.recv(4096).decode())
    assert any("WATCHDOG=1" in m for m in messages)

    elapsed, rc, err = stop_daemon(proc, signal.SIGTERM)
    assert rc == 0, err
    assert elapsed < 1.0, f"exit took {elapsed:.2f} s"
    assert "Traceback" not in err


@pytest.mark.system
def test_source_disappears_and_comes_back(shim, desk_video, tmp_path, daemon_guard):
    fake = FakeCam(tmp_path)
    source = tmp_path / "camera.mp4"
    source.symlink_to(desk_video)
    away = tmp_path / "unplugged.mp4"
    config = write_config(tmp_path / "c.toml", source, fake.device, on_demand=False)
    proc = start_daemon(config, fake.env(shim))
    daemon_guard.append(proc)
    fake.wait_writes(5, timeout=20)
    wait_until(lambda: corners_are(fake.frame(), MAGENTA_BGR), 5, "live picture")

    source.rename(away)  # "unplug" the camera
    t_unplug = time.monotonic()
    n_unplug = len(fake.writes())
    # The device keeps getting frames, and soon shows the "camera unavailable" placeholder.
    from vcam.live.placeholder import BACKGROUND_BGR
    wait_until(lambda: corners_are(fake.frame(), np.array(BACKGROUND_BGR), tol=6), 4, "placeholder")
    time.sleep(1.0)
    rows = fake.writes()[n_unplug:]
    assert len(rows) >= 5 * (time.monotonic() - t_unplug) * 0.6, "the device starved while unplugged"
    assert proc.poll() is None

    away.rename(source)  # plug it back in: the picture resumes without a restart
    wait_until(lambda: corners_are(fake.frame(), MAGENTA_BGR), 6, "picture after replug")
    assert proc.poll() is None

    elapsed, rc, err = stop_daemon(proc, signal.SIGINT)
    assert rc == 0, err
    assert elapsed < 1.0
    assert "unavailable" in err or "disappeared" in err


@pytest.mark.system
def test_on_demand_releases_and_reacquires_the_camera(shim, desk_video, tmp_path, daemon_guard):
    fake = FakeCam(tmp_path)
    source = tmp_path / "camera.mp4"
    shutil.copyfile(desk_video, source)  # our own inode, so holding it open is unambiguous
    config = write_config(tmp_path / "c.toml", source, fake.device, on_demand=True)
    proc = start_daemon(config, fake.env(shim))
    daemon_guard.append(proc)

    # No reader: the placeholder goes out at the low idle rate and the camera is not held.
    fake.wait_writes(6, timeout=20)
    assert not holds_open(proc.pid, source)
    assert not corners_are(fake.frame(), MAGENTA_BGR)
    rows = fake.writes()[-6:]
    idle_rate = (len(rows) - 1) / (rows[-1][0] - rows[0][0])
    assert idle_rate < 10, f"idle placeholder sent at {idle_rate:.1f} fps"

    # An application opens the virtual camera: the picture resumes within about a second.
    with open(fake.device, "rb"):
        t0 = time.monotonic()
        wait_until(lambda: corners_are(fake.frame(), MAGENTA_BGR), 3, "live picture for the reader")
        took = time.monotonic() - t0
        assert took < 1.0, f"resumed after {took:.2f} s"
        print(f"\non-demand: live picture {took * 1e3:.0f} ms after a reader opened the device")
        assert holds_open(proc.pid, source)
    # The reader is gone: after the linger the webcam is released again (its light would go off).
    wait_until(lambda: not holds_open(proc.pid, source), 6, "camera release")
    wait_until(lambda: not corners_are(fake.frame(), MAGENTA_BGR), 2, "placeholder after release")

    elapsed, rc, err = stop_daemon(proc)
    assert rc == 0, err
    assert elapsed < 1.0


@pytest.mark.system
@pytest.mark.parametrize("case", ["missing", "permission"])
def test_unusable_device_is_one_line_with_the_fix(case, shim, desk_video, tmp_path):
    fake = FakeCam(tmp_path)
    env = dict(os.environ, **fake.env(shim))
    env.pop("DISPLAY", None)
    if case == "missing":
        device = tmp_path / "no-such-video10"
        env.pop("LD_PRELOAD")  # the real libc open: ENOENT
    else:
        device = fake.device
        env["FAKE_V4L2_ERRNO"] = "13"  # EACCES, as for a user outside the video group
    r = subprocess.run([*VCAM, "run", "--source", str(desk_video), "--device", str(device)], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    line = errors[0]
    assert str(device) in line
    if case == "missing":
        assert 'modprobe v4l2loopback exclusive_caps=1 card_label="Virtual Camera" video_nr=10' in line
    else:
        assert "usermod -aG video" in line


@pytest.mark.system
def test_preview_sink_shows_a_window_and_exits_cleanly(desk_video, tmp_path, daemon_guard):
    xvfb, xdotool = require_tool("Xvfb"), require_tool("xdotool")
    display = ":88"
    server = subprocess.Popen([xvfb, display, "-nolisten", "tcp"], stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        env = dict(os.environ, DISPLAY=display)
        proc = subprocess.Popen([*VCAM, "run", "--source", str(desk_video), "--sink", "preview",
                                 "--no-on-demand"],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        daemon_guard.append(proc)

        def window() -> bool:
            r = subprocess.run([xdotool, "search", "--name", "vcam preview"], env=env, capture_output=True)
            return r.returncode == 0 and bool(r.stdout.strip())

        wait_until(window, 20, "the preview window", step=0.2)
        elapsed, rc, err = stop_daemon(proc)
        assert rc == 0, err
        assert elapsed < 1.0
    finally:
        server.terminate()
        server.wait(5)


@pytest.mark.system
def test_bad_background_at_start_falls_back_to_blur(shim, desk_video, tmp_path, daemon_guard):
    fake = FakeCam(tmp_path)
    config = write_config(tmp_path / "c.toml", desk_video, fake.device, on_demand=False)
    config.write_text(config.read_text().replace('background = "#ff00ff"',
                                                 f'background = "{tmp_path}/gone.jpg"'))
    proc = start_daemon(config, fake.env(shim))
    daemon_guard.append(proc)
    fake.wait_writes(20, timeout=30)
    assert proc.poll() is None, "a missing background must not stop the daemon"
    frame = fake.frame()
    assert not corners_are(frame, MAGENTA_BGR), "the bad background is not shown"
    # blurred, not the camera picture as it is: the top-left background's fine detail (Laplacian variance)
    # is 28-46 in the desk video's frames and about 1.2 once blurred
    unblurred = min(background_detail(f) for f in video_frames(desk_video, 5))
    assert background_detail(frame) < unblurred / 5, (background_detail(frame), unblurred)
    elapsed, rc, err = stop_daemon(proc)
    assert rc == 0
    assert "gone.jpg" in err and "showing blur instead" in err


def test_bad_effect_option_names_the_option(capsys):
    from vcam.cli import main
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--effect", "bogus"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--effect" in err and "bogus" in err and "blur" in err
    assert "<override>" not in err and "\n" not in err


def _status(sent: int, dead: list[str] | None = None) -> dict:
    return {"fps": 30.0, "effect": "blur", "camera": "ok", "on_demand": "off", "paused": False,
            "frames_sent": sent, "dead_threads": dead or []}


def test_watchdog_is_fed_only_while_frames_leave_and_every_stage_lives():
    from vcam.commands.run import Watchdog
    gate = Watchdog()
    fed = [("WATCHDOG=1" in gate.message(s)) for s in (
        _status(10), _status(40), _status(40), _status(70), _status(100, ["vcam-compositor"]),
        _status(130, ["vcam-compositor"]), _status(160, ["vcam-capture"]))]
    assert fed == [True, True, False, True, False, False, False]


@pytest.mark.system
def test_watchdog_stops_while_the_output_is_stalled(shim, desk_video, tmp_path, daemon_guard, notify_socket):
    fake = FakeCam(tmp_path)
    notify_path, notify = notify_socket
    config = write_config(tmp_path / "c.toml", desk_video, fake.device, on_demand=False)
    proc = start_daemon(config, {**fake.env(shim), "NOTIFY_SOCKET": str(notify_path),
                                 "WATCHDOG_USEC": "1000000"})
    daemon_guard.append(proc)

    def pings(seconds: float) -> int:
        """WATCHDOG=1 messages in the next `seconds` (the daemon checks every 0.5 s)."""
        count, deadline = 0, time.monotonic() + seconds
        notify.settimeout(0.1)
        while time.monotonic() < deadline:
            try:
                count += "WATCHDOG=1" in notify.recv(4096).decode()
            except TimeoutError:
                pass
        return count

    fake.wait_writes(10, timeout=30)
    assert pings(2.0) >= 3
    (tmp_path / "stall").touch()  # the device's write() now blocks: nothing leaves
    pings(0.6)  # a tick already under way may still count the last frames
    # pyvirtualcam holds the GIL inside write(), so a wedged device freezes the status loop too: either
    # way no ping reaches systemd, which restarts vcam after WatchdogSec
    assert pings(3.0) == 0
    (tmp_path / "stall").unlink()
    assert pings(2.0) >= 3
    elapsed, rc, err = stop_daemon(proc)
    assert rc == 0 and "Traceback" not in err
