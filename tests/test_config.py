"""Settings: defaults from config/default.toml, user overrides, and errors that name key and file."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
from control_rig import toml

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


def test_a_blank_effect_background_means_none_configured(tmp_path):
    """[effect] background = " " is no background, like "": the configured look is replace with nothing
    loaded yet (the library supplies it), not a load of the file named " " that fails."""
    from vcam.compositing.look import look_from_settings

    path = tmp_path / "c.toml"
    path.write_text(toml({"effect": {"name": "replace", "background": " \t "}}))
    settings = load_settings(path)
    assert settings.effect.background == " \t "  # the value as written: only its reading is blank
    look = look_from_settings(settings)
    assert look.effect == "replace" and look.background is None
    assert settings.effect.configured_background == ""


def test_a_padded_effect_background_is_read_without_its_spaces(tmp_path, background_image):
    """[effect] background = " /path/pic.jpg " is that picture at startup, as set-effect and apply read it,
    not a file whose name starts with a space."""
    from vcam.compositing.look import look_from_settings

    path = tmp_path / "c.toml"
    path.write_text(toml({"effect": {"name": "replace", "background": f"  {background_image}\t"}}))
    look = look_from_settings(load_settings(path))
    assert look.background is not None and look.background.label.endswith(background_image.name)


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


@pytest.mark.system
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


@pytest.mark.system
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


# Every bounded key with the bounds that keep vcam working, written down here independently of config.py:
# widening one (temporal 1.0 freezes the matte, a terabyte request limit, a 100000 px guide) must fail.
BOUNDS = {
    "camera.width": (16, 7680), "camera.height": (16, 4320), "camera.fps": (1, 240),
    "output.width": (0, 7680), "output.height": (0, 4320), "output.fps": (1, 120),
    "segmentation.interval": (1, 4),
    "matte.threshold": (0.0, 1.0), "matte.edge_width": (0.0, 1.0), "matte.feather": (0, 64),
    "matte.temporal": (0.0, 0.95), "matte.motion": (0, 255), "matte.refine_size": (64, 1080),
    "matte.refine_radius": (1, 32), "matte.refine_eps": (0.0, 1.0), "matte.confident": (0.5, 1.0),
    "effect.blur": (1, 200), "daemon.idle_fps": (1, 30),
    "control.max_request_bytes": (64, 1048576), "control.client_timeout": (0.1, 60.0),
}


def test_every_bounded_key_is_listed_with_its_bounds():
    settings = load_settings(use_user_config=False)
    bounded = set()
    for section in dataclasses.fields(settings):
        value = getattr(settings, section.name)
        if dataclasses.is_dataclass(value):
            bounded |= {f"{section.name}.{f.name}" for f in dataclasses.fields(value)
                        if "range" in f.metadata}
    assert bounded == set(BOUNDS)


@pytest.mark.parametrize("key", sorted(BOUNDS))
def test_each_bound_is_where_it_should_be(tmp_path, key):
    section, name = key.split(".")
    lo, hi = BOUNDS[key]
    step = 0.01 if isinstance(lo, float) else 1
    # picture sides are also bound by the 16:1 rule: give the other side a size that lets this one reach
    # its own bounds (0 means "the camera's size")
    other = {"width": "height", "height": "width"}.get(name) if section in ("camera", "output") else None
    path = tmp_path / "c.toml"

    def load(value):
        extra = f"{other} = 0" if other and section == "output" else f"{other} = 480" if other else ""
        path.write_text(f"[{section}]\n{name} = {value!r}\n{extra}\n")
        return load_settings(path)

    for ok in (lo, hi):
        if not other:
            assert getattr(getattr(load(ok), section), name) == ok
    for bad in (lo - step, hi + step):
        with pytest.raises(ConfigError, match=name):
            load(round(bad, 2))
