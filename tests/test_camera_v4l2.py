"""The webcam path through OpenCV's real V4L2 backend: a fake UVC camera (tests/fake_v4l2/camera.c,
compiled with gcc and LD_PRELOADed) answers its ioctls and mmaps and sends real MJPG frames of the desk
video at 30 fps. vcam must ask for the JPEG bytes and decode them itself, log what was granted, and
survive the camera being unplugged, busy and plugged back in.

Each case runs in a child process: LD_PRELOAD only takes effect when a process starts.
"""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import holds_open, psnr, wait_until
from control_rig import toml
from test_run import MAGENTA_BGR, FakeCam, corners_are, start_daemon, stop_daemon, write_config

pytestmark = pytest.mark.system  # every test here starts a process with the fake webcam LD_PRELOADed

ROOT = Path(__file__).resolve().parent.parent
FRAMES = 12
W, H = 1280, 720


@pytest.fixture
def webcam(camera_lib, desk_video, tmp_path):
    """The fake camera's frames (numbered, so order can be checked), its device node and environment.

    The node lives in /dev/shm: a /dev path (what vcam takes for a camera) that a test may create and
    remove, which is what plugging and unplugging look like."""
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    cap = cv2.VideoCapture(str(desk_video))
    reference = []
    for i in range(FRAMES):
        frame = cv2.resize(cap.read()[1], (W, H))
        cv2.putText(frame, f"{i:02d}", (40, 120), cv2.FONT_HERSHEY_SIMPLEX, 4, (0, 0, 255), 8)
        cv2.imwrite(str(frames_dir / f"frame{i:03d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
        reference.append(cv2.imread(str(frames_dir / f"frame{i:03d}.jpg")))
    node = Path("/dev/shm") / f"vcam-test-camera-{uuid.uuid4().hex[:8]}"
    node.touch()
    env = dict(os.environ, LD_PRELOAD=str(camera_lib), FAKE_CAM_DEVICE=str(node),
               FAKE_CAM_DIR=str(frames_dir), FAKE_CAM_SIZE=f"{W}x{H}", FAKE_CAM_FPS="30",
               PYTHONPATH=str(ROOT))
    yield {"node": node, "dir": frames_dir, "env": env, "reference": reference}
    node.unlink(missing_ok=True)


def run_child(code: str, env: dict, *args: str) -> tuple[dict, str]:
    """Run `code` in a fresh Python (so LD_PRELOAD applies); its last stdout line is JSON."""
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


PRELUDE = f"""
import json, logging, sys, time
import numpy as np
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from vcam.config import load_settings
from vcam.live.capture import CameraSource, CameraError, CaptureThread
from vcam.live.slot import OneSlot
settings = load_settings(None, use_user_config=False).replace(
    "camera", source=sys.argv[1] if len(sys.argv) > 1 else __import__("os").environ["FAKE_CAM_DEVICE"],
    width={W}, height={H}, fps=30, mjpg=True)
"""


def best_match(frame: np.ndarray, reference: list[np.ndarray]) -> tuple[int, float]:
    """(index, PSNR) of the reference frame closest to `frame`."""
    scores = [psnr(frame, r) for r in reference]
    i = int(np.argmax(scores))
    return i, scores[i]


def test_webcam_mjpg_is_read_as_jpeg_and_decoded_by_vcam(webcam):
    code = PRELUDE + """
source = CameraSource(settings.camera)
source.open()
buffer, frames = None, []
for _ in range(15):
    buffer = source.read(buffer)
    frames.append(buffer.copy())
t0 = time.perf_counter()
for _ in range(45):  # the rate over 1.5 s, after the first frames
    buffer = source.read(buffer)
rate = 45 / (time.perf_counter() - t0)
np.save(sys.argv[2], np.stack(frames))
print(json.dumps({"raw": source.raw_jpeg, "size": source.size, "fps": source.fps, "rate": rate}))
source.close()
"""
    out_file = webcam["dir"].parent / "frames.npy"
    result, log = run_child(code, webcam["env"], str(webcam["node"]), str(out_file))
    assert result["raw"], "the V4L2 backend hands over the JPEG bytes and vcam decodes them"
    assert tuple(result["size"]) == (W, H) and result["fps"] == 30
    assert f"granted {W}x{H}@30 MJPG (decoded by vcam)" in log
    # the camera's 30 fps, not an unpaced burst (hundreds) nor every other frame (15)
    assert 22 <= result["rate"] <= 38, "frames come at the camera's rate"
    matches = [best_match(f, webcam["reference"]) for f in np.load(out_file)]
    assert all(psnr > 40 for _, psnr in matches), matches
    order = [i for i, _ in matches]
    assert all((b - a) % FRAMES == 1 for a, b in itertools.pairwise(order)), \
        f"in order, none dropped: {order}"


def test_webcam_unplugged_busy_and_back(webcam):
    """The capture thread reports the camera gone, keeps retrying while it is absent and then busy in
    another app, and delivers frames again, as a new run, once it is free."""
    node, busy = webcam["node"], webcam["dir"] / "busy"
    code = PRELUDE + f"""
import os
from pathlib import Path
node, busy = Path({str(node)!r}), Path({str(busy)!r})
slot = OneSlot()
capture = CaptureThread(CameraSource(settings.camera), slot)
seen = {{}}

def wait(what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.02)
    return False

def frame_after(t):
    item = None
    def got():
        nonlocal item
        item = slot.take(0.1)
        return item is not None and item.t_capture > t
    return item if wait(got) else None

capture.start()
first = frame_after(0)
seen["first_run"] = first.run if first else None
node.unlink()  # unplugged
seen["unavailable"] = wait(lambda: capture.state == "unavailable")
seen["gone_error"] = capture.last_error
busy.touch(); node.touch()  # plugged back in, but another app holds it
seen["busy_error"] = wait(lambda: "busy" in capture.last_error) and capture.last_error
busy.unlink()  # the other app lets go
t = time.perf_counter()
again = frame_after(t)
seen["again_run"] = again.run if again else None
seen["state"] = capture.state
seen["error_after"] = capture.last_error
capture.stop()
print(json.dumps(seen))
"""
    seen, log = run_child(code, webcam["env"])
    assert seen["first_run"] and seen["unavailable"], seen
    assert "read failed (unplugged?)" in seen["gone_error"] or "no such device" in seen["gone_error"], seen
    assert "busy or not a camera" in seen["busy_error"], seen
    assert seen["again_run"] and seen["again_run"] > seen["first_run"] and seen["state"] == "ok", seen
    assert seen["error_after"] == "", seen  # status no longer reports the error once frames flow again
    assert "Traceback" not in log


def test_daemon_on_the_webcam_opens_it_only_for_a_reader(webcam, camera_lib, shim, tmp_path, daemon_guard):
    """`vcam run` end to end on the fake webcam (OpenCV's V4L2 capture) and the fake v4l2loopback device
    (pyvirtualcam's native output), both LD_PRELOADed: the webcam is open (its light on) only while an
    application reads the virtual camera, and then the composited picture arrives."""
    out = FakeCam(tmp_path)
    config = write_config(tmp_path / "c.toml", webcam["node"], out.device, on_demand=True)
    env = {**out.env(shim), "LD_PRELOAD": f"{camera_lib} {shim}", "FAKE_CAM_DEVICE": str(webcam["node"]),
           "FAKE_CAM_DIR": str(webcam["dir"]), "FAKE_CAM_SIZE": f"{W}x{H}", "FAKE_CAM_FPS": "30"}
    proc = start_daemon(config, env)
    daemon_guard.append(proc)
    out.wait_writes(5, 30)  # the idle placeholder keeps the device listed
    assert not holds_open(proc.pid, webcam["node"]), "no reader: the webcam stays closed"
    with open(out.device, "rb"):  # a call app opens the virtual camera
        wait_until(lambda: holds_open(proc.pid, webcam["node"]), 3, "webcam opened for the reader")
        wait_until(lambda: corners_are(out.frame(), MAGENTA_BGR), 5, "the composited picture")
    wait_until(lambda: not holds_open(proc.pid, webcam["node"]), 6, "webcam released after the reader left")
    elapsed, rc, log = stop_daemon(proc)
    assert rc == 0 and elapsed < 1.0, log[-2000:]
    assert f"granted {W}x{H}@30 MJPG (decoded by vcam)" in log
    assert "Traceback" not in log


def test_doctor_checks_the_webcam(webcam, tmp_path):
    """`vcam doctor` opens the webcam through V4L2 and reads a frame; busy in another app, it says how to
    find out and fix it."""
    from test_doctor import doctor, lines_about

    config = tmp_path / "c.toml"
    config.write_text(toml({"camera": {"source": str(webcam["node"])}, "output": {"sink": "null"}}))
    preload = {k: webcam["env"][k] for k in ("LD_PRELOAD", "FAKE_CAM_DEVICE", "FAKE_CAM_DIR", "FAKE_CAM_SIZE",
                                             "FAKE_CAM_FPS")}
    (camera,) = lines_about(doctor(config, preload).stdout, f"camera {webcam['node']}")
    assert camera.startswith("ok") and f"opens ({W}x{H})" in camera
    (webcam["dir"] / "busy").touch()
    r = doctor(config, preload)
    (camera,) = lines_about(r.stdout, f"camera {webcam['node']}")
    assert camera.startswith("FIX") and "busy" in camera and "systemctl --user stop vcam" in camera
    assert "Traceback" not in r.stderr
