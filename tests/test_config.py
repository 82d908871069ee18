"""Settings: defaults from config/default.toml, user overrides, and errors that name key and file."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vcam.config import DEFAULT_CONFIG, ConfigError, load_settings, user_config_path


def test_defaults_load_and_every_setting_is_documented():
    settings = load_settings(use_user_config=False)
    assert settings.effect.name in ("blur", "replace", "video", "desaturate", "transparent", "none")
    commented = False  # whether the block of lines a key stands in has a comment above it
    for line in DEFAULT_CONFIG.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("["):
            commented = False
        elif stripped.startswith("#"):
            commented = True
        else:
            assert commented, f"{stripped.split('=')[0].strip()} has no comment above it"


def test_xdg_user_file_overrides_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    user_config_path().parent.mkdir(parents=True)
    user_config_path().write_text('[effect]\nname = "desaturate"\nblur = 50\n')
    settings = load_settings()
    assert settings.effect.name == "desaturate" and settings.effect.blur == 50
    assert settings.camera.width == load_settings(use_user_config=False).camera.width


def test_explicit_config_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[matte]\nthreshold = 0.6\n")
    assert load_settings(path).matte.threshold == 0.6


@pytest.mark.parametrize("body,words", [
    ("[effect]\nnmae = 'blur'\n", ["nmae", "unknown key"]),
    ("[efect]\nname = 'blur'\n", ["efect", "unknown section"]),
    ("[effect]\nblur = 'strong'\n", ["blur", "integer"]),
    ("[effect]\nblur = 0\n", ["blur", "between"]),
    ("[matte]\nthreshold = 1.5\n", ["threshold", "between"]),
    ("[effect]\nname = 'sparkles'\n", ["name", "one of"]),
    ("[camera]\nmjpg = 1\n", ["mjpg", "true or false"]),
    ("[effect\nname = 'blur'\n", ["invalid TOML"]),
    ("[output]\nwidth = 7680\nheight = 16\n", ["[output] width and height", "16:1"]),
    ("[camera]\nwidth = 16\nheight = 1080\n", ["[camera] width and height", "16:1"]),
    ("[output]\nwidth = 0\nheight = 8\n", ["[output] width and height", "at least 16"]),
])
def test_bad_settings_name_the_key_and_the_file(tmp_path, body, words):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    message = str(err.value)
    assert str(path) in message
    for word in words:
        assert word in message


def test_cli_reports_config_error_in_one_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[effect]\nblur = -3\n")
    proc = subprocess.run([sys.executable, "-m", "vcam", "--config", str(path), "apply", "a.jpg", "b.jpg"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "blur" in proc.stderr and str(path) in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("data,words", [
    (b"[effect]\nname = 'blur' # caf\xe9\n", ["not UTF-8"]),
    (b"[backgrounds]\npaths = " + b"[" * 2000 + b"]" * 2000 + b"\n", ["nested too deeply"]),
    (b"# " + b"x" * (2 << 20) + b"\n", ["larger than"]),
])
def test_unreadable_config_text_is_one_line_naming_the_file(tmp_path, data, words):
    path = tmp_path / "bad.toml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert str(path) in str(err.value) and all(w in str(err.value) for w in words)


def test_config_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)  # no writer: a plain open() would block for ever
    link = tmp_path / "zero.toml"
    link.symlink_to("/dev/zero")  # endless: a plain read() would fill the memory
    for path in (fifo, link):
        with pytest.raises(ConfigError, match="not a regular file"):
            load_settings(path)


def test_cli_reports_a_latin1_config_in_one_line(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"[effect]\nbackground = 'caf\xe9.jpg'\n")
    vcam = [sys.executable, "-m", "vcam", "--config", str(path)]
    proc = subprocess.run(vcam + ["apply", "a.jpg", "b.jpg"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "not UTF-8" in proc.stderr and str(path) in proc.stderr
    # `vcam ctl` only needs the socket path from the file: it warns in one line and goes on
    proc = subprocess.run(vcam + ["ctl", "status"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "not UTF-8" in proc.stderr.splitlines()[0] and "not running" in proc.stderr
