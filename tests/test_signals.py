"""The daemon's signals (vcam/control/signals.py): a stop or reload signal is handled whenever it lands.

The defect this guards: SIGTERM's handler called `Event.set()` while the main loop sat in `Event.wait()`.
When the signal landed at a bytecode where the loop held the Event's lock, the handler waited for that lock
forever and `systemctl stop` hung until systemd's SIGKILL (seen in CI: 1 of 300 stops in a loop here). The
test below delivers the signal at every line the wait executes, in turn, so the window is hit on purpose.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from vcam.control.signals import SignalInbox

ROOT = Path(__file__).resolve().parent.parent

# One process, many waits: in wait number k the tracer raises SIGTERM at the k-th line event inside it (the
# inbox's own lines and everything they call), until a wait finishes with fewer than k line events.
AT_EVERY_LINE = textwrap.dedent("""
    import signal, sys, time
    from vcam.control.signals import SignalInbox

    inbox = SignalInbox()
    handled = []
    inbox.listen(signal.SIGTERM, lambda: handled.append(1))
    k = 0
    while True:
        k += 1
        seen = 0
        def tracer(frame, event, arg):
            global seen
            if event == "line":
                seen += 1
                if seen == k:
                    signal.raise_signal(signal.SIGTERM)
            return tracer
        handled.clear()
        sys.settrace(tracer)
        inbox.wait(0.002)
        sys.settrace(None)
        if seen < k:  # the wait ran fewer lines than k: every line has had its signal
            break
        if not handled:  # it landed after the actions ran: the next wait must take it at once
            t0 = time.monotonic()
            inbox.wait(5)
            assert handled and time.monotonic() - t0 < 0.5, f"the signal at line {k} was not handled"
    inbox.close()
    print(k, flush=True)
""")


def test_a_signal_landing_at_any_line_of_the_wait_is_handled():
    proc = subprocess.run([sys.executable, "-c", AT_EVERY_LINE], cwd=ROOT, capture_output=True, text=True,
                          timeout=20, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 10, "the tracer must have seen the wait's lines"


def test_actions_run_on_the_waiting_thread_once_per_signal_in_order():
    inbox = SignalInbox()
    ran: list[tuple[str, str]] = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2)}
    inbox.listen(signal.SIGUSR1, lambda: ran.append(("usr1", threading.current_thread().name)))
    inbox.listen(signal.SIGUSR2, lambda: ran.append(("usr2", threading.current_thread().name)))
    try:
        t0 = time.monotonic()
        assert inbox.wait(0.05) is False and time.monotonic() - t0 >= 0.04  # nothing came: a full wait
        for sig in (signal.SIGUSR2, signal.SIGUSR1, signal.SIGUSR1):
            signal.raise_signal(sig)
        assert ran == []  # the handler only queues
        assert inbox.wait(5) is True
        me = threading.current_thread().name
        assert ran == [("usr2", me), ("usr1", me), ("usr1", me)]
        # A signal from another thread wakes a wait already under way.
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR2)).start()
        t0 = time.monotonic()
        assert inbox.wait(5) is True and time.monotonic() - t0 < 2
        inbox.forget(signal.SIGUSR2)
        assert signal.getsignal(signal.SIGUSR2) is previous[signal.SIGUSR2]
    finally:
        inbox.close()
    assert signal.getsignal(signal.SIGUSR1) is previous[signal.SIGUSR1]


def test_a_failing_action_is_logged_and_the_next_signal_still_runs(caplog):
    inbox = SignalInbox()
    ran = []

    def broken():
        raise ValueError("boom")

    inbox.listen(signal.SIGUSR1, broken)
    inbox.listen(signal.SIGUSR2, lambda: ran.append("usr2"))
    try:
        signal.raise_signal(signal.SIGUSR1)
        signal.raise_signal(signal.SIGUSR2)
        assert inbox.wait(5)
    finally:
        inbox.close()
    assert ran == ["usr2"]
    assert "handling SIGUSR1 failed" in caplog.text and "boom" in caplog.text
