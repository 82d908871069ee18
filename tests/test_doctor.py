"""`vcam doctor` on this machine: no v4l2loopback module, no /dev/video*, the real desk
video as camera, the real model, and a real Xvfb for the display check."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_tool, wait_until
from control_rig import toml

ROOT = Path(__file__).resolve().parent.parent
VCAM = [sys.executable, "-m", "vcam"]


def doctor(config: Path, env_changes: dict) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("DISPLAY", None)
    env.update(env_changes)
    return subprocess.run([*VCAM, "--config", str(config), "doctor"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def lines_about(out: str, word: str) -> list[str]:
    return [line for line in out.splitlines() if word in line]


@pytest.fixture
def config(tmp_path, desk_video) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(toml({"camera": {"source": str(desk_video)},
                          "output": {"device": str(tmp_path / "video10")}}))
    return path


@pytest.mark.system
def test_doctor_reports_each_problem_with_its_fix(config, tmp_path, desk_video):
    r = doctor(config, {})
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    if not Path("/sys/module/v4l2loopback").exists():
        (module,) = lines_about(out, "v4l2loopback kernel module")
        assert module.startswith("FIX") and "exclusive_caps=1" in module and "modprobe" in module
    (device,) = lines_about(out, str(tmp_path / "video10"))
    assert device.startswith("FIX") and "does not exist" in device and 'card_label="Virtual Camera"' in device
    (camera,) = lines_about(out, f"camera {desk_video}")
    assert camera.startswith("ok") and "960x540" in camera  # the real video decoded
    (model,) = lines_about(out, "segmentation model")
    assert model.startswith("ok")
    (display,) = lines_about(out, "display")
    assert display.startswith("FIX") and "hotkeys" in display
    (jpeg,) = lines_about(out, "libturbojpeg")
    if os.environ.get("CI"):  # CI installs it: the fast MJPG path must be the one tested
        assert jpeg.startswith("ok")
    assert "Traceback" not in r.stderr


def test_doctor_says_how_to_get_libturbojpeg_when_it_is_missing(monkeypatch):
    from vcam.commands import doctor
    from vcam.frames import turbojpeg

    monkeypatch.setattr(turbojpeg, "library", lambda: None)
    line = doctor.check_jpeg().line()
    assert line.startswith("FIX  libturbojpeg not found") and "libturbojpeg0 (Debian/Ubuntu)" in line


@pytest.mark.system
def test_doctor_camera_missing_and_x_display_present(tmp_path):
    xvfb = require_tool("Xvfb")
    display = ":87"
    server = subprocess.Popen([xvfb, display, "-nolisten", "tcp"], stderr=subprocess.DEVNULL)
    try:
        cfg = tmp_path / "c.toml"
        cfg.write_text(toml({"camera": {"source": str(tmp_path / "gone.mp4")}, "output": {"sink": "null"}}))

        def x_answers() -> str | None:  # the X server accepts connections: the doctor must see it answer
            out = doctor(cfg, {"DISPLAY": display}).stdout
            return out if "ok   X display" in out else None

        out = wait_until(x_answers, 30, lambda: f"the X server in the doctor's report:\n"
                                                f"{doctor(cfg, {'DISPLAY': display}).stdout}", step=0.25)
        assert f"ok   X display {display}" in out
        (camera,) = [line for line in out.splitlines() if line.startswith(("ok   camera", "FIX  camera"))]
        assert camera.startswith("FIX") and "gone.mp4" in camera and "not found" in camera
        assert "sink = null" in out
    finally:
        server.terminate()
        server.wait(5)
