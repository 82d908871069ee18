"""The mutants tests/mutation/run.py applies: one breakage each, with the tests that must notice it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # relative to the repository root
    old: str  # an exact snippet, present once
    new: str
    tests: tuple[str, ...]
    why: str  # what a survivor would mean


MUTANTS: list[Mutant] = [
    Mutant("config-temporal-range", "vcam/config.py",
           "temporal: float = field(metadata=_range(0.0, 0.95))",
           "temporal: float = field(metadata=_range(0.0, 1.0))",
           ("tests/test_config.py",), "temporal 1.0 freezes the matte and would be accepted"),
    Mutant("config-request-bytes-range", "vcam/config.py",
           "max_request_bytes: int = field(metadata=_range(64, 1048576))",
           "max_request_bytes: int = field(metadata=_range(64, 1 << 40))",
           ("tests/test_config.py",), "a terabyte request limit would be accepted"),
    Mutant("config-not-utf8", "vcam/config.py",
           "    except UnicodeDecodeError as e:\n        raise ConfigError",
           "    except KeyError as e:\n        raise ConfigError",
           ("tests/test_config.py",), "a Latin-1 config would end in a traceback"),
    Mutant("apply-no-playback-check", "vcam/frames/video_file.py",
           "        if not cap.isOpened() or not cap.read()[0]:",
           "        if False:",
           ("tests/faults/test_output_files.py",), "an unplayable video would replace a good output"),
    Mutant("apply-blur-ignored", "vcam/commands/apply.py",
           "        settings = settings.replace(\"effect\", blur=args.blur)", "        pass",
           ("tests/test_apply.py",), "--blur would be ignored"),
    Mutant("apply-model-ignored", "vcam/commands/apply.py",
           "        settings = settings.replace(\"segmentation\", model=args.model)", "        pass",
           ("tests/test_apply.py",), "--model would be ignored"),
    Mutant("apply-rotation-ignored", "vcam/commands/apply.py",
           "    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)", "    pass",
           ("tests/test_apply.py",), "phone clips would come out sideways"),
    Mutant("apply-name-collisions", "vcam/commands/apply.py",
           "    _refuse_name_collisions(images, look.effect, target)\n", "",
           ("tests/faults/test_output_files.py",), "photo.jpg and photo.png would both write photo.png"),
    Mutant("background-bomb", "vcam/compositing/backgrounds.py",
           "    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:",
           "    if False:", ("tests/faults/test_background_files.py",), "a PNG bomb would be decoded"),
    Mutant("watchdog-fed-while-dead", "vcam/commands/run.py",
           "if status[\"frames_sent\"] != self._sent_before and not dead:",
           "if status[\"frames_sent\"] != self._sent_before:",
           ("tests/test_run.py",), "systemd would not restart a half-dead pipeline"),
    Mutant("watchdog-fed-while-stalled", "vcam/commands/run.py",
           "if status[\"frames_sent\"] != self._sent_before and not dead:", "if not dead:",
           ("tests/test_run.py",), "systemd would not restart a stalled output"),
    Mutant("fallback-to-none", "vcam/commands/run.py",
           "settings.replace(\"effect\", name=\"blur\", background=\"\")",
           "settings.replace(\"effect\", name=\"none\", background=\"\")",
           ("tests/test_run.py",), "a bad background at start would show the room unblurred"),
    Mutant("server-peer-uid-unchecked", "vcam/control/server.py",
           "        if uid != os.getuid():\n"
           "            return {\"ok\": False, \"error\": \"permission denied\"}",
           "        if False:\n            return {\"ok\": False, \"error\": \"permission denied\"}",
           ("tests/faults/test_control_socket.py",), "another local user could pause or switch vcam"),
    Mutant("client-server-uid-unchecked", "vcam/control/client.py",
           "    if uid != os.getuid():", "    if False:",
           ("tests/faults/test_control_socket.py",),
           "a squatter's socket could answer `vcam ctl pause` falsely"),
    Mutant("no-instance-lock", "vcam/control/runtime.py",
           "        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", "        pass",
           ("tests/faults/test_daemon_faults.py",), "two daemons would write into one device"),
    Mutant("pause-behind-the-lock", "vcam/control/catalog.py",
           'IMMEDIATE_ACTIONS = frozenset({"status", "pause", "resume", "toggle-pause"})',
           'IMMEDIATE_ACTIONS = frozenset({"status"})',
           ("tests/faults/test_slow_loads.py", "tests/test_key_actions.py"),
           "a pause could wait behind a load"),
    Mutant("key-pause-queued-behind-switches", "vcam/control/key_actions.py",
           "        queue = self._immediate if action in IMMEDIATE_ACTIONS else self._others",
           "        queue = self._others",
           ("tests/test_key_actions.py",), "a hotkey pause could wait behind a background switch"),
    Mutant("reload-only-vcam-errors", "vcam/live/reconfigure.py",
           "        except Exception as e:  # VcamError, or OpenCV's own (a 1x1 PNG as camera): "
           "the old camera goes on",
           "        except VcamError as e:  # mutant",
           ("tests/test_reload.py",),
           "a camera failing inside OpenCV would leave the pipeline without a camera"),
    Mutant("matte-without-guided-filter", "vcam/matting/matte.py",
           'if frame is not None and self.settings.refine == "guided":', "if False:",
           ("tests/test_segmentation_quality.py", "tests/test_eval.py"),
           "the edge would not follow the picture"),
    Mutant("matte-bound-off", "vcam/matting/matte.py",
           "        if self._sure is None:\n            return False\n", "        return False\n",
           ("tests/test_matte.py",), "the refinement would cut into people the model is sure of"),
    Mutant("stills-best-quality-ignored", "vcam/compositing/engine.py",
           'if self.stills is not None and quality == "best" and frame.ndim == 3:', "if False:",
           ("tests/test_quality.py",),
           "`vcam apply` would give stills the live matte, below the raw model on varied pictures"),
    Mutant("stills-no-second-look", "vcam/matting/quality.py",
           "            confidence[y0:y1, x0:x1] = _region(segmenter, frame, box, flip)", "            pass",
           ("tests/test_quality.py",), "distant people would get a few dozen of the model's pixels"),
    Mutant("motion-gate-not-dilated", "vcam/matting/matte.py",
           "                cv2.dilate(self._diff, _K5, dst=self._diff)", "                pass",
           ("tests/test_eval.py", "tests/test_matte.py"), "moving edges would trail"),
    Mutant("bgr-solid-spans-skipped", "vcam/compositing/compositor_bgr.py",
           "            if solid:\n"
           "                np.copyto(o, frame[y0:y1, x0:x1])\n"
           "                continue",
           "            if solid:\n                continue",
           ("tests/test_effects.py",), "the inside of the person would show the background"),
    Mutant("i420-chroma-without-edge-lut", "vcam/compositing/compositor_i420.py",
           "        if lut is not None:\n            cv2.LUT(self._alpha_half, lut, dst=self._alpha_half)",
           "        if False:\n            cv2.LUT(self._alpha_half, lut, dst=self._alpha_half)",
           ("tests/test_i420.py",), "the live picture's colour would bleed past the person's edge"),
    Mutant("eval-lag-counts-model-jitter", "vcam/commands/eval.py",
           "                    moving &= cv2.dilate(change, reach) >= PICTURE_MOVED\n", "",
           ("tests/test_eval.py",), "the lag would count the model's jitter on a still picture as motion"),
    Mutant("schedule-fixed-change-level", "vcam/matting/schedule.py",
           "SHIFT = 0.5  #", "SHIFT = 0.0  #",
           ("tests/test_schedule.py",), "compression noise would run the model on every still frame"),
    Mutant("matte-colour-guide-ignored", "vcam/matting/matte.py",
           "        if s.guide == \"colour\":", "        if False:",
           ("tests/test_matte.py",), "guide = \"colour\" would silently guide by grey"),
    Mutant("eval-worst-are-the-best", "vcam/commands/eval_stills.py",
           "key=lambda i: scores[\"file\"][\"iou\"][i])", "key=lambda i: -scores[\"file\"][\"iou\"][i])",
           ("tests/test_eval.py",), "eval would show the best pictures as the worst"),
    Mutant("signal-handler-takes-a-lock", "vcam/control/signals.py",
           "        self._arrived.append(signum)\n"
           "\n"
           "    def wait(self, timeout: float) -> bool:\n"
           '        """Wait up to `timeout` s for signals; run the actions of those that came. '
           'True if any ran."""\n'
           "        if not self._arrived:\n"
           "            select.select([self._read_fd], [], [], timeout)\n",
           "        self._arrived.append(signum)\n"
           '        self.__dict__.setdefault("_event", __import__("threading").Event()).set()\n'
           "\n"
           "    def wait(self, timeout: float) -> bool:\n"
           '        event = self.__dict__.setdefault("_event", __import__("threading").Event())\n'
           "        if not self._arrived:\n"
           "            event.wait(timeout)\n"
           "            event.clear()\n",
           ("tests/test_signals.py",), "SIGTERM could deadlock the stop: a handler's Event.set() waits "
           "for the lock the interrupted Event.wait() holds"),
    Mutant("exit-through-interpreter-shutdown", "vcam/cli.py",
           "        exit_now_if_threads_remain(code)\n", "        pass\n",
           ("tests/faults/test_daemon_faults.py",), "a background still decoding at stop could abort vcam "
           "(SIGABRT, a core dump) after a clean stop"),
]
