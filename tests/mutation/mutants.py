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
           "temporal: float = field(metadata=_range(0.0, 0.95))", "temporal: float = field(metadata=_range(0.0, 1.0))",
           ("tests/test_config.py",), "temporal 1.0 freezes the matte and would be accepted"),
    Mutant("config-request-bytes-range", "vcam/config.py",
           "max_request_bytes: int = field(metadata=_range(64, 1048576))",
           "max_request_bytes: int = field(metadata=_range(64, 1 << 40))",
           ("tests/test_config.py",), "a terabyte request limit would be accepted"),
    Mutant("config-not-utf8", "vcam/config.py",
           "    except UnicodeDecodeError as e:\n        raise ConfigError",
           "    except KeyError as e:\n        raise ConfigError",
           ("tests/test_config.py",), "a Latin-1 config would end in a traceback"),
    Mutant("apply-no-playback-check", "vcam/commands/apply.py",
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
           ("tests/test_daemon.py",), "systemd would not restart a half-dead pipeline"),
    Mutant("watchdog-fed-while-stalled", "vcam/commands/run.py",
           "if status[\"frames_sent\"] != self._sent_before and not dead:", "if not dead:",
           ("tests/test_daemon.py",), "systemd would not restart a stalled output"),
    Mutant("fallback-to-none", "vcam/commands/run.py",
           "settings.replace(\"effect\", name=\"blur\", background=\"\")",
           "settings.replace(\"effect\", name=\"none\", background=\"\")",
           ("tests/test_daemon.py",), "a bad background at start would show the room unblurred"),
]
