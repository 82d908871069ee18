"""The `vcam` command line: only the command that runs is imported, so `vcam ctl` stays light (no OpenCV,
no numpy) while `vcam --help` still lists every command."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

import pytest

from vcam.cli import COMMANDS, build_parser, command_word, main


@pytest.mark.parametrize("words, command", [
    (["ctl", "status"], "ctl"),
    (["--config", "ctl", "run"], "run"),  # the value of --config is not the command
    (["--config=x.toml", "-vv", "ctl", "--json", "status"], "ctl"),
    (["-v", "--verbose", "doctor"], "doctor"),
    (["--conf", "x.toml", "ctl"], None),  # an abbreviated option: let argparse decide, with every command
    (["-h", "ctl"], None),
    (["--version"], None),
    (["sparkles"], None),
    ([], None),
])
def test_command_word_is_only_the_certain_one(words, command):
    assert command_word(words) == command


def test_each_command_module_registers_its_command():
    for name in COMMANDS:
        parser = build_parser([name])
        (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        assert list(sub.choices) == [name]


def test_help_lists_every_command_in_order(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    positions = [out.index(f"\n    {name} ") for name in COMMANDS]
    assert positions == sorted(positions)
    with pytest.raises(SystemExit) as exit_:
        main(["sparkles"])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err


@pytest.mark.system
def test_vcam_ctl_imports_neither_opencv_nor_numpy(tmp_path):
    """`vcam ctl` runs on a key press: its whole path (parser, help, config, socket) must stay light (nor does
    it need the hotkey backends or their D-Bus library)."""
    code = textwrap.dedent("""
        import json, sys
        from vcam.cli import main
        code = main(["ctl", "status"])
        try:
            main(["ctl", "--help"])
        except SystemExit:
            pass
        heavy = sorted(m for m in sys.modules
                       if m.split(".")[0] in ("cv2", "numpy", "mediapipe", "pynput", "jeepney")
                       or m.startswith(("vcam.control.portal", "vcam.control.hotkey")))
        print(json.dumps({"code": code, "heavy": heavy}))
    """)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result == {"code": 2, "heavy": []}, r.stderr  # 2: no daemon (the socket path is the tmp dir)
    assert "vcam is not running" in r.stderr


@pytest.mark.system
def test_output_into_a_closed_pipe_is_no_traceback(tmp_path, daemon_guard):
    """`vcam ctl status | head -1`: the reader has left before vcam writes; vcam exits quietly."""
    from conftest import require_path, wait_until

    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path))
    clip = require_path("videos", "outdoor_sitting_640x360.mp4")
    daemon = subprocess.Popen([sys.executable, "-m", "vcam", "run", "--source", str(clip), "--sink", "null"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    daemon_guard.append(daemon)
    ctl = [sys.executable, "-m", "vcam", "ctl", "status"]

    def answers() -> bool:
        assert daemon.poll() is None, "the daemon ended"
        return subprocess.run(ctl, env=env, capture_output=True).returncode == 0

    wait_until(answers, 30, "the daemon to answer", step=0.2)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(ctl, env=env, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
