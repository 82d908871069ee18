"""`vcam apply` on a full disk, a read-only folder, concurrent runs and killed runs: an existing output is
never replaced by a broken one, nothing half-written is left, and the error is one line."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from conftest import require_path
from control_rig import toml

pytestmark = pytest.mark.system  # every test here starts vcam (and mounts a tmpfs as root)


def vcam(*args, limit_bytes: int | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    def limit():  # the file-size limit: writes past it fail with EFBIG, as a full disk fails with ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "vcam", *map(str, args)], capture_output=True, text=True,
                          timeout=180, preexec_fn=limit if limit_bytes else None,
                          env=dict(env or os.environ, PYTHONWARNINGS="ignore"))


def one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert all(w in lines[0] for w in words), lines[0]


@pytest.fixture(scope="module")
def portrait() -> Path:
    return sorted(require_path("portraits", "images").glob("*.jpg"))[0]


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    """The first 40 frames of the outdoor video, so each run is quick."""
    src = cv2.VideoCapture(str(require_path("videos", "outdoor_sitting_640x360.mp4")))
    out = tmp_path_factory.mktemp("clip") / "clip.mp4"
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 360))
    for _ in range(40):
        ok, frame = src.read()
        writer.write(frame)
    writer.release()
    src.release()
    return out


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_image_on_a_full_disk_keeps_the_existing_output(tmp_path, portrait):
    out = tmp_path / "out.png"
    out.write_bytes(b"the good output of an earlier run")
    proc = vcam("apply", portrait, out, "--effect", "replace", limit_bytes=20_000)
    one_line_error(proc, str(out))
    assert out.read_bytes() == b"the good output of an earlier run"
    assert listing(tmp_path) == ["out.png"]


def test_video_on_a_full_disk_keeps_the_existing_output(tmp_path, short_clip):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"the good output of an earlier run")
    proc = vcam("apply", short_clip, out, "--effect", "blur", limit_bytes=60_000)
    one_line_error(proc, str(out))
    assert out.read_bytes() == b"the good output of an earlier run"
    assert listing(tmp_path) == ["out.mp4"]


def _mount_tmpfs(path: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (CI runs as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


def test_video_on_a_really_full_tmpfs(tmp_path, short_clip):
    disk = tmp_path / "disk"
    disk.mkdir()
    _mount_tmpfs(disk, "96k")
    try:
        proc = vcam("apply", short_clip, disk / "out.mp4", "--effect", "blur")
        one_line_error(proc, "out.mp4")
        assert listing(disk) == []
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_read_only_folder_is_one_line_and_a_folder_run_goes_on(tmp_path, portrait):
    disk = tmp_path / "ro"
    disk.mkdir()
    _mount_tmpfs(disk, "1m")
    try:
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        one_line_error(vcam("apply", portrait, disk / "out.jpg"), "out.jpg", "Read-only")
        inputs = tmp_path / "in"
        inputs.mkdir()
        for name in ("a.jpg", "b.jpg"):
            (inputs / name).write_bytes(portrait.read_bytes())
        proc = vcam("apply", inputs, disk, "--effect", "desaturate")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "a.jpg" in proc.stderr and "b.jpg" in proc.stderr  # both tried, both reported
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_two_runs_to_one_output_leave_one_good_file(tmp_path, short_clip):
    out = tmp_path / "out.mp4"
    cmd = [sys.executable, "-m", "vcam", "apply", str(short_clip), str(out), "--effect", "desaturate"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert all("Traceback" not in err for _, err in results)
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 40 and cap.read()[0]
    cap.release()
    assert listing(tmp_path) == ["out.mp4"]


def test_what_a_killed_run_left_is_removed_by_the_next(tmp_path, portrait):
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    stale = tmp_path / f".out.x1y2.vcam-partial-{dead.pid}.jpg"
    stale.write_bytes(b"half")
    alive = tmp_path / f".out.z3.vcam-partial-{os.getpid()}.jpg"  # a live writer's: kept
    alive.write_bytes(b"in progress")
    assert vcam("apply", portrait, tmp_path / "out.jpg").returncode == 0
    assert listing(tmp_path) == sorted([alive.name, "out.jpg"])


@pytest.mark.parametrize("effect", ["mask", "transparent"])
def test_folder_inputs_that_would_share_an_output_name_are_refused_up_front(tmp_path, portrait, effect):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    outputs.mkdir()
    (inputs / "photo.jpg").write_bytes(portrait.read_bytes())
    cv2.imwrite(str(inputs / "photo.png"), cv2.imread(str(portrait)))
    one_line_error(vcam("apply", inputs, outputs, "--effect", effect), "photo.jpg", "photo.png")
    assert listing(outputs) == []




def test_vcam_run_into_an_unwritable_folder_is_one_line(tmp_path):
    from conftest import unwritable_folder

    clip = require_path("videos", "outdoor_sitting_640x360.mp4")
    with unwritable_folder(tmp_path / "ro") as folder:
        config = tmp_path / "c.toml"
        config.write_text(toml({"output": {"sink": "file", "file": str(folder / "out.mp4")}}))
        proc = vcam("--config", config, "run", "--source", clip,
                    env=dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path)))
        one_line_error(proc, "out.mp4")
