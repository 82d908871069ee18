"""The background library and config reload against awkward folders and files: an unreadable folder (at
start and on reload, which must not leave the reload half-applied), thousands of undecodable files, a
symlink loop, and a config file saved in several writes."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import other_user_prefix
from control_rig import toml

from vcam.compositing.look import Look
from vcam.config import load_settings
from vcam.control.actions import Controller
from vcam.control.library import BackgroundLibrary, scan
from vcam.control.reload import ConfigWatcher
from vcam.live.state import LiveState, LiveStateHolder

ROOT = Path(__file__).resolve().parents[2]

# Run as another user, for whom a mode-000 folder is really unreadable (root reads everything).
UNREADABLE_LIBRARY = """
import json, sys
from vcam.compositing.look import Look
from vcam.config import load_settings
from vcam.control.actions import Controller
from vcam.control.catalog import ActionError
from vcam.live.state import LiveState, LiveStateHolder

config, v2, v3 = sys.argv[1:4]

class Pipeline:
    def status(self):
        return {"size": [320, 180]}

    def reconfigure(self, settings):
        pass

current = [config]
load = lambda: load_settings(current[0], use_user_config=False)
holder = LiveStateHolder(LiveState(look=Look(effect="blur", blur=load().effect.blur)))
out = {}
try:
    ctl = Controller(Pipeline(), holder, load(), loader=load)  # vcam run's start, the folder configured
    out["start"] = "ok"
except Exception as e:
    out["start"] = f"{type(e).__name__}: {e}"
    ctl = Controller(Pipeline(), holder, load().replace("backgrounds", paths=[]), loader=load)
for name, path in (("reload_unreadable", v2), ("reload_fixed", v3)):
    current[0] = path
    try:
        ctl.run("reload")
        out[name] = "ok"
    except Exception as e:  # an ActionError is a refusal; anything else the bug this test is about
        out[name] = str(e) if isinstance(e, ActionError) else f"{type(e).__name__}: {e}"
    out[name + "_blur"] = holder.get().look.blur
ctl.close()
print(json.dumps(out))
"""


@pytest.mark.system
def test_an_unreadable_library_folder_is_skipped_at_start_and_on_reload():
    nobody = other_user_prefix(65534)
    base = Path(tempfile.mkdtemp(prefix="vcam-unreadable-", dir="/tmp"))
    try:
        base.chmod(0o755)
        locked = base / "locked"
        locked.mkdir(mode=0o000)
        locked.chmod(0o000)

        def config(name: str, blur: int, paths: list[str]) -> Path:
            path = base / name
            path.write_text(toml({"effect": {"name": "blur", "blur": blur}, "backgrounds": {"paths": paths}}))
            path.chmod(0o644)
            return path

        start = config("start.toml", 20, [str(locked)])
        v2 = config("v2.toml", 40, [str(locked)])  # new blur, and the unreadable folder
        v3 = config("v3.toml", 40, [])  # the folder fixed: the blur must still arrive
        configs = [str(start), str(v2), str(v3)]
        run = subprocess.run([*nobody, sys.executable, "-c", UNREADABLE_LIBRARY, *configs],
                             env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0, run.stderr
        out = json.loads(run.stdout.strip().splitlines()[-1])
        # Before: the first reload failed after committing its settings, so the second saw "no change" and
        # the new blur never arrived; and the start itself failed with a traceback.
        assert out["reload_fixed"] == "ok" and out["reload_fixed_blur"] == 40, out
        assert out["reload_unreadable"] == "ok" and out["reload_unreadable_blur"] == 40, out
        assert out["start"] == "ok", out  # no traceback at start
        assert f"{locked} cannot be read (Permission denied), skipped" in run.stderr
    finally:
        (base / "locked").chmod(0o700)
        shutil.rmtree(base, ignore_errors=True)


def test_thousands_of_undecodable_files_log_a_few_lines_and_a_summary(tmp_path, caplog):
    for i in range(300):
        (tmp_path / f"broken{i:04d}.png").write_bytes(b"not a png")
    library = BackgroundLibrary([str(tmp_path)], lambda: (320, 180))
    try:
        with caplog.at_level(logging.WARNING, logger="vcam.control.library"):
            switch = library.step(+1, lambda s: None).result(30)
    finally:
        library.close()
    assert switch.background is None and len(switch.skipped) == 300
    lines = [r.getMessage() for r in caplog.records if r.name == "vcam.control.library"]
    assert len(lines) <= 6, lines
    assert any("297 more" in line for line in lines), lines


def test_a_symlink_loop_is_reported_as_one(tmp_path, caplog):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with caplog.at_level(logging.WARNING, logger="vcam.control.library"):
        assert scan([str(loop), str(tmp_path / "gone")]) == []
    assert f"{loop} is a symlink loop" in caplog.text
    assert "gone does not exist" in caplog.text


class Recorder:
    """A ReloadRunner that keeps what the config file held at each reload."""

    def __init__(self, path: Path) -> None:
        self.config_path = str(path)
        self.seen: list[str] = []

    def run(self, name: str) -> object:
        self.seen.append(Path(self.config_path).read_text())
        return {}


def test_a_config_saved_in_several_writes_is_reloaded_once_whole(tmp_path):
    path = tmp_path / "config.toml"
    recorder = Recorder(path)
    watcher = ConfigWatcher(recorder).start()
    pieces = ['[effect]\n', 'name = "desaturate"\n', 'blur = 30\n', '[output]\nmirror = true\n']
    try:
        with open(path, "w") as f:  # CREATE, then writes 0.2 s apart, then CLOSE_WRITE
            for piece in pieces:
                f.write(piece)
                f.flush()
                time.sleep(0.2)
        time.sleep(1.0)
    finally:
        watcher.stop()
    assert recorder.seen == ["".join(pieces)], recorder.seen


def test_reload_keeps_settings_uncommitted_when_the_pipeline_refuses(tmp_path):
    """Settings are committed last: a refused reload is tried again in full by the next one."""
    from vcam.control.catalog import ActionError
    from vcam.errors import VcamError

    class Pipeline:
        refuse = True

        def status(self):
            return {"size": [320, 180]}

        def reconfigure(self, settings):
            if self.refuse:
                raise VcamError("camera busy")

    config = tmp_path / "c.toml"
    config.write_text('[effect]\nname = "blur"\nblur = 40\n')
    settings = load_settings(use_user_config=False)
    holder = LiveStateHolder(LiveState(look=Look(effect="blur", blur=settings.effect.blur)))
    pipeline = Pipeline()
    ctl = Controller(pipeline, holder, settings, loader=lambda: load_settings(config, use_user_config=False))
    try:
        with pytest.raises(ActionError, match="camera busy"):
            ctl.run("reload")
        assert ctl.settings is settings and holder.get().look.blur == settings.effect.blur
        pipeline.refuse = False
        ctl.run("reload")
        assert holder.get().look.blur == 40
    finally:
        ctl.close()
