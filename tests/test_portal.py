"""The portal hotkey backend against a fake portal (tests/fake_portal.py, its own process) on a private
dbus-daemon: registration with the converted triggers, Activated running actions, refusals, a portal that
dies and comes back, no portal at all, config updates, and a prompt stop; which backend [hotkeys] backend
picks and switching it on reload; `vcam doctor`; and `vcam run` end to end, the desktop's Activated
changing the effect in the frames sent to the virtual camera."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import require_tool, start_logged_daemon, wait_until
from control_rig import toml
from jeepney import DBusAddress, HeaderFields, MessageType, new_method_call, new_signal
from jeepney.io.blocking import open_dbus_connection

from vcam.control import portal as portal_module
from vcam.control.portal import PortalHotkeys, portal_status, to_portal_trigger

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.timeout(60)
FAKE = HERE / "fake_portal.py"
PATH = "/org/freedesktop/portal/desktop"
APP_ID = "io.github.vcam.Vcam"
LOGGER = "vcam.control.portal"

DEFAULTS = {  # action -> combination, as config/default.toml has them
    "next-effect": "<ctrl>+<alt>+e", "previous-effect": "<ctrl>+<alt>+w",
    "next-background": "<ctrl>+<alt>+b", "previous-background": "<ctrl>+<alt>+v",
    "toggle-pause": "<ctrl>+<alt>+p", "toggle-mirror": "<ctrl>+<alt>+m",
    "blur-stronger": "<ctrl>+<alt>+]", "blur-weaker": "<ctrl>+<alt>+[", "edge-softer": "<ctrl>+<alt>+s",
    "edge-harder": "<ctrl>+<alt>+h"}
TRIGGERS = {
    "next-effect": "CTRL+ALT+e", "previous-effect": "CTRL+ALT+w", "next-background": "CTRL+ALT+b",
    "previous-background": "CTRL+ALT+v", "toggle-pause": "CTRL+ALT+p", "toggle-mirror": "CTRL+ALT+m",
    "blur-stronger": "CTRL+ALT+bracketright", "blur-weaker": "CTRL+ALT+bracketleft",
    "edge-softer": "CTRL+ALT+s", "edge-harder": "CTRL+ALT+h"}


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(portal_module, "RETRY_MIN_S", 0.1)
    monkeypatch.setattr(portal_module, "RETRY_MAX_S", 0.4)


@pytest.fixture(scope="module")
def bus(tmp_path_factory):
    """A private session bus: the session config's policy, no service directories (nothing gets activated)."""
    dbus_daemon = require_tool("dbus-daemon")  # skipped without it, except under CI (a failure there)
    d = tmp_path_factory.mktemp("bus")
    config = d / "session.conf"
    config.write_text(f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:dir={d}</listen><auth>EXTERNAL</auth>
 <policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/>
  <allow own="*"/></policy></busconfig>""")
    proc = subprocess.Popen([dbus_daemon, f"--config-file={config}", "--nofork", "--print-address"],
                            stdout=subprocess.PIPE, text=True)
    address = proc.stdout.readline().strip()
    assert address.startswith("unix:"), "dbus-daemon did not start"
    yield address
    proc.terminate()
    proc.wait(5)
    proc.stdout.close()


class Fake:
    """fake_portal.py in its own process, and the test's line to its control interface."""

    def __init__(self, address: str, state: Path, *args: str) -> None:
        self.address, self.state_file, self.args = address, state, args
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> Fake:
        self.proc = subprocess.Popen([sys.executable, str(FAKE), "--address", self.address,
                                      "--state", str(self.state_file), *self.args],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready", "the fake portal did not start"
        return self

    def call(self, member: str, signature: str | None = None, body: tuple = ()) -> tuple:
        with open_dbus_connection(self.address) as conn:
            control = DBusAddress(PATH, "org.freedesktop.portal.Desktop", "io.github.vcam.test.FakePortal")
            msg = new_method_call(control, member, signature, body)
            reply = conn.send_and_get_reply(msg, timeout=5)
        assert reply.header.message_type == MessageType.method_return, reply.body
        return reply.body

    def state(self) -> dict:
        return json.loads(self.call("State")[0])

    def kill(self) -> None:
        self.proc.kill()  # a crash: no goodbye
        self.proc.wait(5)
        self.proc.stdout.close()


@pytest.fixture
def fake(bus, tmp_path):
    fakes: list[Fake] = []

    def start(*args: str) -> Fake:
        fakes.append(Fake(bus, tmp_path / "portal.json", *args))
        return fakes[-1]

    yield start
    for f in fakes:
        if f.proc.poll() is None:
            f.kill()


@pytest.fixture
def backend(bus):
    started: list[PortalHotkeys] = []

    def start(dispatch=lambda action: None, bindings=DEFAULTS, **kw) -> PortalHotkeys:
        started.append(PortalHotkeys(dict(bindings), dispatch, **{"bus_address": bus, **kw}).start())
        return started[-1]

    yield start
    for b in started:
        b.stop()


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


# -- the trigger format --------------------------------------------------------------------------------------
@pytest.mark.parametrize("combo, trigger", [
    *((DEFAULTS[action], TRIGGERS[action]) for action in DEFAULTS),
    ("<alt>+<ctrl>+E", "CTRL+ALT+e"), ("ctrl+alt+e", "CTRL+ALT+e"), ("<cmd>+a", "LOGO+a"),
    ("<ctrl>+<shift>+<f9>", "CTRL+SHIFT+F9"), ("<shift>+<cmd>+<ctrl>+<enter>", "CTRL+SHIFT+LOGO+Return"),
    ("<ctrl>+<alt>+<page_up>", "CTRL+ALT+Page_Up"), ("<ctrl>+1", "CTRL+1"),
    ("<ctrl>+<space>", "CTRL+space"), ("<f12>", "F12")])
def test_combinations_become_spec_triggers(combo, trigger):
    assert to_portal_trigger(combo) == trigger


@pytest.mark.parametrize("combo", ["<ctrl>+<alt>", "<ctrl>+a+b", "<ctrl>+<65>", "<alt_gr>+e", "<ctrl>+é",
                                   "<ctrl>+", "<ctrl>++", "<ctrl>+!"])
def test_combinations_without_a_trigger_are_refused(combo):
    with pytest.raises(ValueError):
        to_portal_trigger(combo)


def test_every_default_of_the_real_config_converts():
    from vcam import config
    from vcam.control import hotkeys
    actions = {a: c for c, a in hotkeys.bindings(config.load_settings(use_user_config=False).hotkeys).items()}
    assert {a: to_portal_trigger(c) for a, c in actions.items()} == TRIGGERS


# -- registration --------------------------------------------------------------------------------------------
@pytest.mark.system
def test_registers_the_app_then_binds_every_action_and_keeps_the_users_choice(fake, backend):
    portal = fake("--user-trigger", "toggle-pause=LOGO+p")
    hk = backend()
    assert hk.wait_active(5), hk.status()
    state = portal.state()
    assert state["registered"] == [APP_ID] and state["errors"] == []
    assert state["create_session"] == [{"handle_token": "vcam_create", "session_handle_token": "vcam"}]
    (bind,) = state["bind"]
    assert bind["app_id"] == APP_ID
    assert {a: s["preferred_trigger"] for a, s in bind["shortcuts"].items()} == TRIGGERS
    descriptions = [s["description"] for s in bind["shortcuts"].values()]
    assert all(descriptions) and len(set(descriptions)) == len(descriptions)
    shortcuts = hk.status()["hotkeys_shortcuts"]
    assert shortcuts["toggle-pause"] == "Super+P"  # what the user picked, not CTRL+ALT+p
    assert shortcuts["next-effect"] == "Ctrl+Alt+E" and set(shortcuts) == set(DEFAULTS)
    assert hk.status()["hotkeys_state"] == "active" and hk.status()["hotkeys"].startswith("portal active")
    time.sleep(0.3)
    assert len(portal.state()["bind"]) == 1  # never re-bound to force our keys


@pytest.mark.system
def test_a_combination_without_a_trigger_goes_without_one_and_is_said_once(fake, backend, caplog):
    portal = fake()
    portal.call("RefuseNextBind", "u", (2,))
    portal.call("RefuseNextBind", "u", (2,))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        hk = backend(bindings={**DEFAULTS, "toggle-mirror": "<ctrl>+<alt>+!"})  # shifted: not base layer
        assert hk.wait_active(5), hk.status()
    bind = portal.state()["bind"]
    assert len(bind) == 3 and bind[-1]["shortcuts"]["toggle-mirror"]["preferred_trigger"] is None
    assert bind[-1]["shortcuts"]["next-effect"]["preferred_trigger"] == "CTRL+ALT+e"
    said = [w for w in warnings(caplog) if "toggle-mirror" in w]
    assert len(said) == 1 and "pick one in the desktop's dialog" in said[0]  # once, not at every retry


@pytest.mark.system
def test_without_the_registry_it_still_binds(fake, backend):
    portal = fake("--no-registry", "--allow-no-app-id")  # an older portal, KDE-like: no app id needed
    hk = backend()
    assert hk.wait_active(5), hk.status()
    assert portal.state()["registered"] == [] and len(portal.state()["bind"]) == 1


@pytest.mark.system
def test_a_bind_response_without_the_list_is_completed_by_list_shortcuts(fake, backend):
    portal = fake("--bind-without-list", "--user-trigger", "toggle-pause=LOGO+p")
    hk = backend()
    assert hk.wait_active(5), hk.status()
    state = portal.state()
    assert len(state["list"]) == 1 and state["list"][0] == state["bind"][0]["session"]
    assert hk.status()["hotkeys_shortcuts"]["toggle-pause"] == "Super+P"


# -- activation ----------------------------------------------------------------------------------------------
@pytest.mark.system
def test_activated_runs_the_action_off_the_bus_thread_and_deactivated_does_nothing(fake, backend, bus,
                                                                                    caplog):
    portal = fake()
    calls: list[tuple[str, str]] = []
    release = threading.Event()

    def dispatch(action: str) -> None:
        calls.append((action, threading.current_thread().name))
        if action == "next-background":
            release.wait(5)  # a slow action (a background load) ...
        if action == "blur-weaker":
            raise RuntimeError("the action broke")

    hk = backend(dispatch)
    assert hk.wait_active(5), hk.status()
    portal.call("Press", "s", ("next-background",))
    wait_until(lambda: calls)
    portal.call("Activate", "s", ("next-effect",))
    wait_until(lambda: hk.fired == 2)  # ... does not hold up the bus
    assert [a for a, _ in calls] == ["next-background"]  # the next waits its turn
    release.set()
    wait_until(lambda: len(calls) == 2)
    assert [a for a, _ in calls] == ["next-background", "next-effect"]
    assert all(name != "vcam-portal-hotkeys" for _, name in calls)

    portal.call("Deactivate", "s", ("next-effect",))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        portal.call("Activate", "s", ("blur-weaker",))
        wait_until(lambda: len(calls) == 3)
        portal.call("Activate", "s", ("edge-softer",))
        wait_until(lambda: len(calls) == 4)
    assert [a for a, _ in calls][2:] == ["blur-weaker", "edge-softer"]  # nothing for Deactivated
    assert "portal shortcut blur-weaker failed: the action broke" in caplog.text
    assert hk.state == "active"

    # Anyone else on the bus sending Activated for vcam's session is ignored.
    session, owner = next((p, s["owner"]) for p, s in portal.state()["sessions"].items())
    with open_dbus_connection(bus) as conn:
        spoof = new_signal(DBusAddress(PATH, interface="org.freedesktop.portal.GlobalShortcuts"), "Activated",
                           "osta{sv}", (session, "toggle-mirror", 1, {}))
        spoof.header.fields[HeaderFields.destination] = owner
        conn.send(spoof)
    portal.call("Activate", "s", ("edge-harder",))
    wait_until(lambda: len(calls) == 5)
    time.sleep(0.2)
    assert [a for a, _ in calls][4:] == ["edge-harder"]


@pytest.mark.system
def test_shortcuts_changed_in_the_desktop_show_in_status_without_rebinding(fake, backend):
    portal = fake()
    hk = backend()
    assert hk.wait_active(5)
    portal.call("ChangeTrigger", "ss", ("next-effect", "LOGO+e"))
    wait_until(lambda: hk.status()["hotkeys_shortcuts"].get("next-effect") == "Super+E",
               what=lambda: f"next-effect on Super+E; status {hk.status()}")
    assert len(portal.state()["bind"]) == 1 and hk.state == "active"


# -- refusals and a portal that goes away --------------------------------------------------------------------
@pytest.mark.system
def test_a_refused_bind_is_retried_until_it_succeeds(fake, backend, caplog):
    portal = fake()
    portal.call("RefuseNextBind", "u", (2,))
    portal.call("RefuseNextBind", "u", (2,))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        hk = backend()
        assert hk.wait_active(5), hk.status()
    assert len(portal.state()["bind"]) == 3
    assert warnings(caplog) == ["portal hotkeys retrying: the desktop refused the shortcuts (response 2)"]


@pytest.mark.system
def test_gnome_without_an_app_id_refuses_and_that_is_retried_not_raised(fake, backend):
    portal = fake("--no-registry")
    hk = backend()
    wait_until(lambda: len(portal.state()["bind"]) >= 2)
    assert hk.state in ("retrying", "registering", "waiting") and hk._thread.is_alive()


@pytest.mark.system
def test_a_refused_app_id_is_named_in_the_refusal_it_causes(fake, backend, caplog):
    portal = fake("--refuse-register")  # GNOME without io.github.vcam.Vcam.desktop installed
    with caplog.at_level(logging.INFO, logger=LOGGER):
        hk = backend()
        wait_until(lambda: len(portal.state()["bind"]) >= 3)
    assert hk.state in ("retrying", "registering", "waiting")
    (line,) = warnings(caplog)  # one line for all the retries
    assert "response 2" in line and "io.github.vcam.Vcam.desktop installed?" in line


@pytest.mark.system
def test_a_cancelled_dialog_is_not_asked_again_until_the_actions_change(fake, backend):
    portal = fake()
    portal.call("RefuseNextBind", "u", (1,))
    hk = backend()
    wait_until(lambda: hk.state == "declined", what=lambda: f"declined; status {hk.status()}")
    time.sleep(0.6)  # several backoff periods: no nagging
    assert len(portal.state()["bind"]) == 1 and hk.state == "declined"
    hk.update(DEFAULTS)  # a reload with the same actions: still no dialog
    time.sleep(0.3)
    assert len(portal.state()["bind"]) == 1
    hk.update({a: c for a, c in DEFAULTS.items() if a != "edge-harder"})
    assert hk.wait_active(5), hk.status()
    assert len(portal.state()["bind"]) == 2


@pytest.mark.system
def test_the_portal_dies_and_comes_back(fake, backend, caplog):
    portal = fake("--user-trigger", "toggle-pause=LOGO+p")
    calls: list[str] = []
    with caplog.at_level(logging.INFO, logger=LOGGER):
        hk = backend(calls.append)
        assert hk.wait_active(5), hk.status()
        portal.kill()
        wait_until(lambda: hk.state != "active", what=lambda: f"not active; status {hk.status()}")
        time.sleep(0.5)  # retries meanwhile
        assert hk._thread.is_alive() and hk.state in ("unavailable", "retrying")
        # One line for the outage, not one per retry.
        assert warnings(caplog) == ["portal hotkeys retrying: the desktop portal went away"]
        portal.start()
        assert hk.wait_active(5), hk.status()
    state = portal.state()
    assert len(state["bind"]) == 2 and state["registered"] == [APP_ID, APP_ID]
    assert hk.status()["hotkeys_shortcuts"]["toggle-pause"] == "Super+P"  # the desktop remembered
    portal.call("Press", "s", ("toggle-mirror",))
    wait_until(lambda: calls == ["toggle-mirror"])
    assert {json.dumps(c, sort_keys=True) for c in state["create_session"]} == {
        json.dumps({"handle_token": "vcam_create", "session_handle_token": "vcam"}, sort_keys=True)}


@pytest.mark.system
def test_the_desktop_closing_the_session_gets_a_new_one(fake, backend):
    portal = fake()
    hk = backend()
    assert hk.wait_active(5)
    portal.call("CloseSessions")
    wait_until(lambda: len(portal.state()["bind"]) == 2)
    assert hk.wait_active(5), hk.status()


@pytest.mark.system
def test_the_same_tokens_on_every_start(fake, backend):
    portal = fake()
    first = backend()
    assert first.wait_active(5)
    first.stop()
    second = backend()
    assert second.wait_active(5)
    state = portal.state()
    assert len(state["create_session"]) == 2 and state["create_session"][0] == state["create_session"][1]
    sessions = [b["session"].rsplit("/", 1)[1] for b in state["bind"]]
    assert sessions == ["vcam", "vcam"] and state["bind"][0]["sender"] != state["bind"][1]["sender"]


# -- no portal -----------------------------------------------------------------------------------------------
@pytest.mark.system
def test_no_portal_at_all(bus, backend, caplog):
    ok, reason = portal_status(bus)
    assert not ok and "no desktop portal" in reason
    with caplog.at_level(logging.INFO, logger=LOGGER):
        hk = backend()
        wait_until(lambda: hk.state == "unavailable", what=lambda: f"unavailable; status {hk.status()}")
        time.sleep(0.6)  # a few retries
    assert hk.state == "unavailable" and hk._thread.is_alive() and not hk.wait_active(0.1)
    assert len(warnings(caplog)) == 1 and "no desktop portal" in warnings(caplog)[0]


@pytest.mark.system
def test_no_session_bus(backend, tmp_path):
    address = f"unix:path={tmp_path}/nothing"
    ok, reason = portal_status(address)
    assert not ok and "session bus" in reason
    hk = backend(bus_address=address)
    wait_until(lambda: hk.state == "unavailable", what=lambda: f"unavailable; status {hk.status()}")
    assert hk._thread.is_alive()


@pytest.mark.system
def test_a_portal_without_global_shortcuts(fake, bus, backend):
    fake("--no-global-shortcuts")  # Sway/wlroots: a portal, but no GlobalShortcuts
    ok, reason = portal_status(bus)
    assert not ok and "no GlobalShortcuts" in reason
    hk = backend()
    wait_until(lambda: hk.state == "unavailable", what=lambda: f"unavailable; status {hk.status()}")
    assert "no GlobalShortcuts" in hk.status()["hotkeys"]


@pytest.mark.system
def test_portal_status_with_a_portal(fake, bus):
    fake()
    assert portal_status(bus) == (True, "GlobalShortcuts version 2")


# -- config updates and stop ---------------------------------------------------------------------------------
@pytest.mark.system
def test_updates_rebind_only_when_the_actions_change(fake, backend):
    portal = fake()
    hk = backend()
    assert hk.wait_active(5)
    hk.update({**DEFAULTS, "next-effect": "<ctrl>+<shift>+e"})  # another key: the desktop's business
    time.sleep(0.3)
    assert len(portal.state()["bind"]) == 1 and hk.state == "active"
    fewer = {a: c for a, c in DEFAULTS.items() if a not in ("blur-weaker", "blur-stronger")}
    hk.update(fewer)
    wait_until(lambda: len(portal.state()["bind"]) == 2)
    assert hk.wait_active(5)
    state = portal.state()
    assert set(state["bind"][1]["shortcuts"]) == set(fewer) and len(state["sessions"]) == 1
    assert set(hk.status()["hotkeys_shortcuts"]) == set(fewer) and state["errors"] == []
    hk.update({})
    wait_until(lambda: hk.state == "off")


@pytest.mark.system
@pytest.mark.parametrize("situation", ["active", "dialog open", "no portal", "starting"])
def test_stop_is_prompt(fake, backend, situation):
    if situation == "active":
        fake()
    elif situation == "dialog open":
        fake("--bind-delay", "30")
    hk = backend()
    if situation == "active":
        assert hk.wait_active(5)
    elif situation == "dialog open":
        wait_until(lambda: hk.state == "waiting")
    elif situation == "no portal":
        wait_until(lambda: hk.state == "unavailable")
    started = time.monotonic()
    hk.stop()
    assert time.monotonic() - started < 0.5
    wait_until(lambda: not hk._thread.is_alive(), 0.1)


# -- [hotkeys] backend: which backend runs, and switching on reload ------------------------------------------
def hotkey_settings(**changes):
    from vcam.config import load_settings
    settings = load_settings(use_user_config=False)
    return settings.replace("hotkeys", **changes).hotkeys if changes else settings.hotkeys


def test_backend_is_a_choice_that_defaults_to_auto(tmp_path):
    from vcam.config import ConfigError, load_settings
    from vcam.control.hotkeys import bindings
    assert hotkey_settings().backend == "auto"
    config = tmp_path / "config.toml"
    config.write_text('[hotkeys]\nbackend = "wayland"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    assert str(config) in str(err.value) and "[hotkeys] backend" in str(err.value)
    assert "auto, portal, x11, off" in str(err.value)
    config.write_text('[hotkeys]\nbackend = "off"\n')
    assert bindings(load_settings(config).hotkeys) == {}  # off: nothing bound, like enabled = false
    assert len(bindings(hotkey_settings(backend="portal"))) == len(DEFAULTS)


@pytest.mark.parametrize("changes, environ, probe, chosen", [
    ({}, {}, None, "x11"),  # auto outside Wayland: pynput (it waits for an X display by itself)
    ({}, {"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, ("ok", "GlobalShortcuts version 2"), "portal"),
    ({}, {"WAYLAND_DISPLAY": "wayland-0"}, ("unknown", "did not answer"), "portal"),  # starting: it retries
    ({}, {"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, ("absent", "no GlobalShortcuts"), "none"),
    ({"backend": "x11"}, {"WAYLAND_DISPLAY": "wayland-0"}, None, "x11"),
    ({"backend": "portal"}, {}, None, "portal"),
    ({"backend": "off"}, {"WAYLAND_DISPLAY": "wayland-0"}, None, "off"),
    ({"enabled": False, "backend": "portal"}, {"WAYLAND_DISPLAY": "wayland-0"}, None, "off"),
])
def test_the_backend_chosen(changes, environ, probe, chosen):
    from vcam.control.hotkey_backends import choose_backend
    asked = []

    def fake_probe():
        asked.append(1)
        assert probe is not None, "the portal was asked although the answer cannot matter"
        return probe

    backend, why = choose_backend(hotkey_settings(**changes), environ, fake_probe)
    assert backend == chosen, why
    assert why and (not asked or probe[1] in why)


@pytest.fixture
def session(bus, monkeypatch, tmp_path):
    """A Wayland session whose session bus is the test's bus, with no X display (and no systemctl to ask)."""
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-vcam-test")
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    return bus


@pytest.mark.system
def test_auto_takes_the_portal_in_a_wayland_session_and_reloads_switch_backends(fake, session):
    from vcam.control.hotkey_backends import Hotkeys
    portal = fake()
    calls: list[str] = []
    hotkeys = Hotkeys(hotkey_settings(), calls.append).start()
    try:
        assert hotkeys.backend == "portal"
        wait_until(lambda: hotkeys.status()["hotkeys_state"] == "active",
                   what=lambda: f"active; status {hotkeys.status()}")
        status = hotkeys.status()
        assert status["hotkeys_backend"] == "portal" and status["hotkeys"].startswith("portal active: ")
        portal.call("Press", "s", ("next-effect",))
        wait_until(lambda: calls == ["next-effect"])

        hotkeys.update(hotkey_settings(next_effect="<ctrl>+<shift>+e"))  # keys only: the same session
        time.sleep(0.3)
        assert len(portal.state()["bind"]) == 1 and hotkeys.status()["hotkeys_state"] == "active"
        hotkeys.update(hotkey_settings(blur_weaker=""))  # an action fewer: bound again without it
        wait_until(lambda: len(portal.state()["bind"]) == 2)
        assert "blur-weaker" not in portal.state()["bind"][-1]["shortcuts"]
        wait_until(lambda: hotkeys.status()["hotkeys_state"] == "active")
        hotkeys.update(hotkey_settings(backend="portal", blur_weaker=""))  # what auto chose: no new session
        time.sleep(0.3)
        assert len(portal.state()["bind"]) == 2 and hotkeys.status()["hotkeys_state"] == "active"

        hotkeys.update(hotkey_settings(backend="x11"))  # live switch: the portal session ends
        status = hotkeys.status()
        assert status["hotkeys_backend"] == "x11"
        wait_until(lambda: hotkeys.status()["hotkeys"].startswith("disabled: no X display"))
        wait_until(lambda: portal.state()["sessions"] == {})
        portal.call("Press", "s", ("next-effect",))
        hotkeys.update(hotkey_settings(enabled=False))
        assert hotkeys.status() == {"hotkeys": "off ([hotkeys] enabled = false)", "hotkeys_backend": "off"}

        hotkeys.update(hotkey_settings())  # back to auto: the portal again
        wait_until(lambda: hotkeys.status().get("hotkeys_state") == "active",
                   what=lambda: f"active; status {hotkeys.status()}")
        portal.call("Press", "s", ("toggle-mirror",))
        wait_until(lambda: calls == ["next-effect", "toggle-mirror"])
        assert len(portal.state()["bind"]) == 3
    finally:
        hotkeys.stop()
    wait_until(lambda: portal.state()["sessions"] == {})


@pytest.mark.system
@pytest.mark.parametrize("portal_args", [None, ("--no-global-shortcuts",)], ids=["no portal", "sway-like"])
def test_auto_in_a_wayland_session_without_global_shortcuts_says_how_to_bind_vcam_ctl(
        fake, session, caplog, portal_args):
    from vcam.control.hotkey_backends import Hotkeys
    if portal_args is not None:
        fake(*portal_args)
    with caplog.at_level(logging.DEBUG, logger="vcam.control"):
        hotkeys = Hotkeys(hotkey_settings(), lambda action: None).start()
        time.sleep(0.3)
        hotkeys.update(hotkey_settings(blur_weaker=""))  # a reload that keeps the backend: no new line
        hotkeys.stop()
    status = hotkeys.status()
    assert status["hotkeys_backend"] == "none" and status["hotkeys"].startswith("none: ")
    assert "vcam ctl" in status["hotkeys"]
    lines = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) == 1, [r.getMessage() for r in lines]  # one line, and it says what to do
    message = lines[0].getMessage()
    assert "bindsym" in message and "vcam ctl" in message and "docs/control.md" in message
    assert ("no GlobalShortcuts" if portal_args else "no desktop portal") in message


# -- vcam doctor ---------------------------------------------------------------------------------------------
def doctor_lines(**changes) -> list[str]:
    from vcam.commands.doctor import check_hotkeys
    from vcam.config import load_settings
    settings = load_settings(use_user_config=False)
    if changes:
        settings = settings.replace("hotkeys", **changes)
    return [c.line() for c in check_hotkeys(settings)]


@pytest.mark.system
def test_doctor_says_which_hotkey_backend_works(fake, session, monkeypatch, tmp_path):
    from vcam.commands.setup import desktop_file_target
    monkeypatch.setenv("XDG_DATA_DIRS", str(tmp_path / "system"))
    portal = fake()
    line, desktop = doctor_lines()
    assert line.startswith("ok   global hotkeys through the desktop portal (GlobalShortcuts version 2)"), line
    assert desktop.startswith(f"FIX  {APP_ID}.desktop is not installed") and "vcam setup --service" in desktop
    desktop_file_target().parent.mkdir(parents=True)
    desktop_file_target().write_text("[Desktop Entry]\n")
    line, desktop = doctor_lines()
    assert desktop.startswith(f"ok   {desktop_file_target()} installed"), desktop
    assert portal.state()["bind"] == []  # doctor only asks; it binds nothing
    (line,) = doctor_lines(backend="off")
    assert line.startswith("ok   global hotkeys off")
    monkeypatch.delenv("WAYLAND_DISPLAY")  # an X11 session without an X server: the portal would do
    (line,) = doctor_lines()
    assert line.startswith("FIX  no X display") and 'backend = "portal"' in line, line
    line, _ = doctor_lines(backend="portal")
    assert line.startswith("ok   global hotkeys through the desktop portal"), line


@pytest.mark.system
def test_doctor_says_why_no_hotkey_backend_works(fake, session, monkeypatch):
    fake("--no-global-shortcuts")
    (line,) = doctor_lines()
    assert line.startswith("FIX  no global hotkeys"), line
    assert "no GlobalShortcuts" in line and "bindsym" in line, line
    (line,) = doctor_lines(backend="portal")
    assert line.startswith("FIX  global hotkeys through the desktop portal do not work"), line
    assert "GlobalShortcuts" in line
    monkeypatch.delenv("WAYLAND_DISPLAY")
    (line,) = doctor_lines()
    assert line.startswith("FIX  no X display"), line
    assert "no alternative here (the desktop portal has no GlobalShortcuts" in line


@pytest.mark.system
def test_vcam_doctor_in_a_sway_like_session(fake, session, tmp_path):
    """The real `vcam doctor`: a Wayland session whose portal has no GlobalShortcuts gets the one FIX line
    on binding `vcam ctl`, and no X display line (X11 is not what auto would use there)."""
    fake("--no-global-shortcuts")
    import os
    config = tmp_path / "c.toml"
    config.write_text(toml({"camera": {"source": str(tmp_path / "none.mp4")}, "output": {"sink": "null"}}))
    r = subprocess.run([sys.executable, "-m", "vcam", "--config", str(config), "doctor"], cwd=HERE.parent,
                       env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stdout + r.stderr
    (line,) = [line for line in r.stdout.splitlines() if "hotkeys" in line]
    assert line.startswith("FIX  no global hotkeys (auto: Wayland session, but the desktop portal has no "
                           "GlobalShortcuts"), line
    assert "bindsym" in line and "vcam ctl" in line
    assert "X display" not in r.stdout


# -- `vcam run` end to end: the real daemon, the real pipeline, the fake portal on the test's bus ------------
ROOT = HERE.parent
WAYLAND = "wayland-vcam-test"  # a Wayland session by name only: the portal is all the backend talks to


def vcam_status(sock: Path) -> dict:
    from vcam.control.client import request
    return request(sock, "status")["result"]


def stop_vcam(proc: subprocess.Popen, log: Path) -> str:
    import signal
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0, log.read_text()
    text = log.read_text()
    assert "Traceback" not in text, text
    return text


def grey(frame, tol: float = 10.0) -> bool:
    """Both top corners (background in the desk video) without colour: what `desaturate` does there."""
    import numpy as np
    from test_run import W
    patches = [frame[4:40, 4:60], frame[4:40, W - 200:W - 150]]
    return all(float(np.ptp(p.reshape(-1, 3).mean(0))) <= tol for p in patches)


@pytest.mark.system
def test_vcam_run_takes_the_desktops_shortcuts_end_to_end(shim, desk_video, fake, bus, tmp_path,
                                                           daemon_guard):
    """`vcam run` in a Wayland session: registers through the portal with the configured keys as preferred
    triggers, an Activated from the desktop changes the effect in the frames sent to the virtual camera,
    and a refusal, the portal dying and coming back cost one log line each and never the daemon."""
    import numpy as np
    from test_run import MAGENTA_BGR, FakeCam, H, W, corners_are

    from vcam.control.portal_bus import APP_ID as app_id
    assert app_id == APP_ID
    camera = FakeCam(tmp_path)
    sock, log, config = tmp_path / "ctl.sock", tmp_path / "vcam.log", tmp_path / "config.toml"
    config.write_text(toml({
        "camera": {"source": str(desk_video)},
        "output": {"sink": "virtualcam", "device": str(camera.device), "width": W, "height": H},
        "effect": {"name": "replace", "background": "#ff00ff"},
        "daemon": {"on_demand": False},
        "hotkeys": {"backend": "auto", "next_effect": "<ctrl>+<shift>+e"},
        "control": {"socket": str(sock), "watch_config": False},
    }))
    portal = fake("--user-trigger", "toggle-pause=LOGO+p")  # the "user" picks Super+P in the dialog
    portal.call("RefuseNextBind", "u", (2,))  # the first attempt is refused
    session = {"WAYLAND_DISPLAY": WAYLAND, "DBUS_SESSION_BUS_ADDRESS": bus}
    proc = start_logged_daemon(config, log, {**camera.env(shim), **session})
    daemon_guard.append(proc)

    camera.wait_writes(10, timeout=60)
    wait_until(lambda: corners_are(camera.frame(), MAGENTA_BGR), 10, "the magenta background")
    wait_until(lambda: sock.exists() and vcam_status(sock).get("hotkeys_state") == "active", 20,
               lambda: f"the portal's keys; log:\n{log.read_text()}")
    status = vcam_status(sock)
    assert status["hotkeys_backend"] == "portal" and status["hotkeys"].startswith("portal active: ")
    assert status["hotkeys_shortcuts"]["toggle-pause"] == "Super+P"  # the user's choice, not CTRL+ALT+p
    state = portal.state()
    assert state["registered"] == [APP_ID, APP_ID] and len(state["bind"]) == 2 and state["errors"] == []
    preferred = {a: s["preferred_trigger"] for a, s in state["bind"][-1]["shortcuts"].items()}
    assert preferred == {**TRIGGERS, "next-effect": "CTRL+SHIFT+e"}  # the configured keys, converted
    ctl = subprocess.run([sys.executable, "-m", "vcam", "ctl", "--socket", str(sock), "status"], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert ctl.returncode == 0 and "hotkeys: portal active: " in ctl.stdout, ctl.stdout + ctl.stderr

    # The desktop says "next-effect was pressed": replace -> desaturate, in the status and in the frames.
    portal.call("Press", "s", ("next-effect",))
    wait_until(lambda: vcam_status(sock)["effect"] == "desaturate",
               what=lambda: f"desaturate; status {vcam_status(sock)}")
    wait_until(lambda: grey(camera.frame()) and not corners_are(camera.frame(), MAGENTA_BGR),
               what=lambda: f"grey corners; top left {camera.frame()[4:40, 4:60].reshape(-1, 3).mean(0)}")

    # The portal crashes: the daemon keeps streaming and keeps trying; the portal is back: so are the keys.
    portal.kill()
    wait_until(lambda: vcam_status(sock)["hotkeys_state"] != "active",
               what=lambda: f"keys not active; status {vcam_status(sock)}")
    n = len(camera.writes())
    time.sleep(1.5)
    assert proc.poll() is None and len(camera.writes()) > n + 10
    portal.start()
    wait_until(lambda: vcam_status(sock)["hotkeys_state"] == "active", 20,
               lambda: f"keys active; status {vcam_status(sock)}")
    assert vcam_status(sock)["hotkeys_shortcuts"]["toggle-pause"] == "Super+P"  # remembered by the desktop
    portal.call("Press", "s", ("next-effect",))  # desaturate -> transparent: the key colour behind
    wait_until(lambda: vcam_status(sock)["effect"] == "transparent",
               what=lambda: f"transparent; status {vcam_status(sock)}")
    key = np.array([0, 255, 0])  # [effect] key_color, where the matte is fully background (top left)
    wait_until(lambda: np.abs(camera.frame()[4:40, 4:60].reshape(-1, 3).mean(0) - key).max() <= 3,
               what=lambda: f"the key colour; top left {camera.frame()[4:40, 4:60].reshape(-1, 3).mean(0)}")
    state = portal.state()
    tokens = {json.dumps(c, sort_keys=True) for c in state["create_session"]}
    stable = {"handle_token": "vcam_create", "session_handle_token": "vcam"}
    assert tokens == {json.dumps(stable, sort_keys=True)}
    assert state["registered"][-1] == APP_ID

    text = stop_vcam(proc, log)
    assert text.count("portal shortcut next-effect") == 2
    assert text.count("refused the shortcuts (response 2)") == 1  # one line per trouble, not per retry
    assert text.count("went away") == 1 and text.count("WARNING") == 2, text  # refused, went away


@pytest.mark.system
def test_vcam_run_without_portal_shortcuts_says_how_to_bind_vcam_ctl_then_a_reload_takes_the_portal(
        desk_video, fake, bus, tmp_path, daemon_guard):
    """auto in a Wayland session whose portal has no GlobalShortcuts: one line on binding `vcam ctl`; the
    portal appearing and `backend = "portal"` on reload switch to the portal without a restart."""
    sock, log, config = tmp_path / "ctl.sock", tmp_path / "vcam.log", tmp_path / "config.toml"
    sections = {
        "camera": {"source": str(desk_video)},
        "output": {"sink": "null", "width": 480, "height": 270},
        "daemon": {"on_demand": False},
        "control": {"socket": str(sock), "watch_config": False},
    }
    config.write_text(toml({**sections, "hotkeys": {"backend": "auto"}}))
    sway = fake("--no-global-shortcuts")
    proc = start_logged_daemon(config, log, {"WAYLAND_DISPLAY": WAYLAND, "DBUS_SESSION_BUS_ADDRESS": bus})
    daemon_guard.append(proc)
    wait_until(lambda: sock.exists() and vcam_status(sock)["frames_sent"] > 5, 60,
               lambda: f"frames; log:\n{log.read_text()}")
    status = vcam_status(sock)
    assert status["hotkeys_backend"] == "none" and "vcam ctl" in status["hotkeys"], status
    sway.kill()

    portal = fake()  # a desktop with GlobalShortcuts (say, after an update); the user asks for it
    config.write_text(toml({**sections, "hotkeys": {"backend": "portal"}}))
    reload = subprocess.run([sys.executable, "-m", "vcam", "ctl", "--socket", str(sock), "reload"], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert reload.returncode == 0, reload.stderr
    wait_until(lambda: vcam_status(sock).get("hotkeys_state") == "active", 20,
               lambda: f"keys active; status {vcam_status(sock)}")
    assert vcam_status(sock)["hotkeys_backend"] == "portal"
    portal.call("Press", "s", ("toggle-mirror",))
    wait_until(lambda: vcam_status(sock)["mirror"] is True,
               what=lambda: f"mirrored; status {vcam_status(sock)}")

    text = stop_vcam(proc, log)
    (line,) = [line for line in text.splitlines() if "WARNING" in line]  # the one line, and what it says
    assert "no global hotkeys" in line and "no GlobalShortcuts" in line and "bindsym" in line, text
    assert "backend none -> portal after the config reload" in text
