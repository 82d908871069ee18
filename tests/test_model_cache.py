"""The selfie models on every Python: found in order (model_path, an installed mediapipe, vcam's cache),
fetched only by `vcam setup --models`, verified by sha256, and a one-line error when there are none."""
from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
from conftest import require_path

from vcam.matting import model_cache
from vcam.matting.model_cache import (
    MEMBER_DIR,
    MODELS,
    ModelFetchError,
    ModelMissing,
    fetch_models,
    find_model,
)


@pytest.fixture(scope="module")
def real_models() -> dict[str, bytes]:
    """The real model files, from wherever this Python has them (mediapipe 0.10.21 or the cache)."""
    return {name: find_model(name)[0].read_bytes() for name in MODELS}


def wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(MEMBER_DIR + name, data)
    return path


@pytest.fixture
def good_wheel(tmp_path, real_models) -> Path:
    return wheel(tmp_path / "mediapipe-0.10.21.whl", {MODELS[n].filename: d for n, d in real_models.items()})


def test_fetch_verifies_and_installs_both_models(tmp_path, good_wheel):
    paths = fetch_models(tmp_path / "cache", source_url=str(good_wheel))
    assert {p.name for p in (tmp_path / "cache").iterdir()} == {m.filename for m in MODELS.values()}
    for name, m in MODELS.items():
        assert model_cache.is_valid(paths[name], m)
    # verified copies are kept: a second call reads no source at all
    assert fetch_models(tmp_path / "cache", source_url=str(tmp_path / "gone.whl")) == paths


def test_a_damaged_or_foreign_source_writes_nothing(tmp_path, real_models):
    general = MODELS["general"].filename
    flipped = bytearray(real_models["general"])
    flipped[len(flipped) // 2] ^= 0xFF
    bad = {"flipped": {general: bytes(flipped),
                       MODELS["landscape"].filename: real_models["landscape"]},
           "missing": {general: real_models["general"]}}
    for label, members in bad.items():
        with pytest.raises(ModelFetchError) as err:
            fetch_models(tmp_path / "cache", source_url=str(wheel(tmp_path / f"{label}.whl", members)))
        assert "\n" not in str(err.value)
        assert not any(p.suffix == ".tflite" for p in (tmp_path / "cache").glob("*"))
    (tmp_path / "text.whl").write_text("not a zip")
    with pytest.raises(ModelFetchError, match="not a zip"):
        fetch_models(tmp_path / "cache", source_url=str(tmp_path / "text.whl"))
    with pytest.raises(ModelFetchError, match="sha256"):  # a pinned wheel checksum that does not match
        fetch_models(tmp_path / "cache", source_url=str(tmp_path / "text.whl"), wheel_sha256="0" * 64)


def test_http_errors_are_one_line(tmp_path):
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ModelFetchError, match="HTTP 404"):
            fetch_models(tmp_path / "c", source_url=f"http://127.0.0.1:{server.server_port}/m.whl", timeout=5)
    finally:
        server.shutdown()


def test_find_model_order(tmp_path, monkeypatch, good_wheel):
    own = tmp_path / "mine.tflite"
    own.write_bytes(b"x")
    assert find_model("general", str(own)) == (own, "model_path")
    with pytest.raises(ModelMissing, match="model_path"):
        find_model("general", str(tmp_path / "nope.tflite"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(model_cache, "mediapipe_model_path", lambda name: None)  # as on Python 3.13
    with pytest.raises(ModelMissing, match="vcam setup --models"):
        find_model("general")
    cached = fetch_models(source_url=str(good_wheel))["general"]
    assert cached.parent == tmp_path / "xdg" / "vcam" / "models"
    assert find_model("general") == (cached, "cache")
    cached.write_bytes(cached.read_bytes()[:-1])  # damaged: not used
    with pytest.raises(ModelMissing, match="damaged"):
        find_model("general")


@pytest.mark.system
def test_no_model_anywhere_is_one_line_naming_the_fix(tmp_path):
    """Nothing cached and no mediapipe 0.10.21: `vcam apply` says what to run, exit 2, no download."""
    portrait = sorted(require_path("portraits", "images").glob("*.jpg"))[0]
    code = ("import sys; sys.modules['mediapipe'] = None; from vcam.cli import main; "
            f"sys.exit(main(['apply', {str(portrait)!r}, 'o.jpg']))")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "empty"), https_proxy="http://127.0.0.1:9")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "vcam setup --models" in lines[0], proc.stderr
    assert not (tmp_path / "empty").exists() and not (tmp_path / "o.jpg").exists()
