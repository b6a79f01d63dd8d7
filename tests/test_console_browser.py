"""The web console in a real headless Chromium (Debian's chromium + chromedriver, driven by
selenium; nothing is downloaded), against a real daemon on the bundled clip of people
walking into a room, with the console on a non-loopback address behind a token from the
environment and an MQTT password configured (the broker is down: events wait for it).

A user's path: the login page, then the cameras page (the camera listed, its live image
shown, its state and figures), then the events page (an event appears once someone is in
the room, with its snapshot), and its clip plays (the <video> reaches a duration > 0)
once the overlay's clip writer has written it. At a phone's width nothing overflows; the
theme toggle switches themes and the text stays readable in both. Every page and API
answer, fetched with the token, carries neither the token nor the MQTT password.

ACTIOND_CONSOLE_SCREENSHOTS=<dir> saves the pages as PNG (the README's docs/console.png).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import NEEDS_CHROMIUM, headless_chromium
from daemon_proc import Daemon, free_port, wait_for
from metrics_helpers import label_set, parse_samples, scrape_text

TOKEN = "browser-test-token-5f2c9a7e41"
MQTT_PASSWORD = "mqtt-password-7d1e0b"
TOKEN_ENV = "ACTIOND_TEST_CONSOLE_TOKEN"
CAMERA = "room"
EVENT_DEADLINE_S = 150.0
CLIP_DEADLINE_S = 150.0
PHONE_WIDTH_PX = 375
MIN_CONTRAST = 4.5  # WCAG AA for body text

pytestmark = [pytest.mark.timeout(420), pytest.mark.slow, NEEDS_CHROMIUM]
# What people do in the bundled clip, labelled by hand (eval/): the events to expect.
LABELS = (
    Path(__file__).resolve().parent.parent / "eval/labels/people/one-by-one-person-detection.json"
)


@pytest.fixture
def browser() -> Iterator[Any]:
    driver = headless_chromium(
        "--window-size=1280,900", "--autoplay-policy=no-user-gesture-required"
    )
    yield driver
    driver.quit()


def _sections(port: int, metrics_port: int) -> dict[str, dict[str, object]]:
    sections: dict[str, dict[str, object]] = {
        "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
        "console": {"enabled": True, "listen": f"0.0.0.0:{port}", "auth_token_env": TOKEN_ENV},
        "mqtt": {
            "enabled": True,
            "host": "127.0.0.1",
            "port": free_port(),  # nobody listens: events wait in the outbox
            "username": "actiond",
            "password": MQTT_PASSWORD,
        },
    }
    sections["clips"] = {"pre_roll_s": 1.0, "post_roll_s": 1.0, "max_clip_s": 4.0}
    return sections


def _camera() -> dict[str, object]:
    room = {"name": "room", "kind": "include", "points": [[0, 0], [1, 0], [1, 1], [0, 1]]}
    return {
        "name": CAMERA,
        "source": "sample:one-by-one-person-detection.mp4",
        "pipeline": "person",
        "width": 640,
        "height": 360,
        "analyse_fps": 5.0,
        "loop": True,
        "zones": [room],
    }


def _get(url: str, token: str | None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _js(driver: Any, script: str) -> Any:
    return driver.execute_script(script)


CONTRAST_JS = """
function lum(c) {
  const [r, g, b] = c.match(/[\\d.]+/g).slice(0, 3).map(Number).map(v => {
    v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
function ratio(a, b) { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); }
const bg = getComputedStyle(document.body).backgroundColor;
const panel = getComputedStyle(document.querySelector('.bar')).backgroundColor;
const link = getComputedStyle(document.querySelector('nav a:not([aria-current])')).color;
const text = getComputedStyle(document.body).color;
return {bg: bg, link: ratio(link, panel), text: ratio(text, bg)};
"""


def _screenshot(driver: Any, name: str) -> None:
    folder = os.environ.get("ACTIOND_CONSOLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / name))


def _log_in(driver: Any, base: str) -> None:
    driver.get(base + "/")
    wait_for(lambda: driver.current_url.endswith("/login"), 20, "the redirect to /login")
    field = driver.find_element("id", "token")
    field.send_keys("not-the-token")
    field.submit()
    wait_for(lambda: "Wrong token" in driver.page_source, 20, "the wrong-token message")
    field = driver.find_element("id", "token")
    field.send_keys(TOKEN)
    field.submit()
    wait_for(lambda: driver.current_url.rstrip("/") == base, 20, "the cameras page")


def _cameras_page(driver: Any) -> None:
    wait_for(
        lambda: _js(driver, f"return document.querySelector('[data-camera=\"{CAMERA}\"]')"),
        30,
        "the camera on the cameras page",
    )
    # The live image (the overlay's live slot, asked for by the page) replaces the
    # "connecting" placeholder.
    shown = (
        f"const img = document.querySelector('[data-camera=\"{CAMERA}\"] img');"
        "return img && !img.hidden && img.naturalWidth > 0;"
    )
    covered = (
        f"const p = document.querySelector('[data-camera=\"{CAMERA}\"] .placeholder');"
        "return getComputedStyle(p).display;"
    )
    wait_for(lambda: _js(driver, shown), 90, "the camera's live image")
    assert _js(driver, covered) == "none", "the 'connecting' placeholder covers the image"
    state = f"return document.querySelector('[data-camera=\"{CAMERA}\"] .state').textContent"
    wait_for(lambda: _js(driver, state) == "running", 30, "the camera's state: running")


def _themes_and_phone_width(driver: Any) -> None:
    first = _js(driver, CONTRAST_JS)
    driver.find_element("id", "theme").click()
    second = _js(driver, CONTRAST_JS)
    assert first["bg"] != second["bg"], "the theme toggle changed nothing"
    for theme in (first, second):
        assert theme["text"] >= MIN_CONTRAST and theme["link"] >= MIN_CONTRAST, theme
    driver.find_element("id", "theme").click()  # back to the first
    driver.set_window_size(PHONE_WIDTH_PX, 800)
    width = _js(driver, "return document.documentElement.scrollWidth")
    assert width <= PHONE_WIDTH_PX, f"the page is {width} px wide at a phone's width"
    driver.find_element("id", "theme").click()
    _screenshot(driver, "console-phone-other-theme.png")
    driver.find_element("id", "theme").click()
    driver.set_window_size(1280, 900)


def _known_actions() -> list[str]:
    """The actions the labels say happen in the bundled clip."""
    return sorted({event["action"] for event in json.loads(LABELS.read_text())["events"]})


def _events_page(driver: Any, base: str) -> str:
    """The id of an event of a known action (one the clip's labels name), shown with its
    snapshot; its record (from the API) is of this camera and, for in_zone, this zone."""
    driver.get(base + "/events")
    actions = _known_actions()
    known = json.dumps(actions)
    first = (
        f"const e = [...document.querySelectorAll('article.event')]"
        f".find(a => {known}.includes(a.querySelector('h2').textContent));"
        "return e && e.dataset.id;"
    )
    event_id = wait_for(
        lambda: _js(driver, first), EVENT_DEADLINE_S, f"an event of a known action ({known})"
    )
    status, body = _get(f"{base}/api/events/{event_id}", TOKEN)
    record = json.loads(body)
    assert status == 200 and record["camera"] == CAMERA and record["action"] in actions, record
    assert record["action"] != "in_zone" or record["zone"] == "room", record
    snapshot = "const i = document.querySelector('article.event img'); return i && i.naturalWidth"
    wait_for(lambda: _js(driver, snapshot), 30, "the event's snapshot")
    # Filter by the newest event's action: only events of that action stay listed.
    action = _js(driver, "return document.querySelector('article.event h2').textContent")
    option = (
        f"return [...document.getElementById('action').options].some(o => o.value == '{action}')"
    )
    wait_for(lambda: _js(driver, option), 30, "the action in the filter")
    _js(
        driver,
        f"const s = document.getElementById('action'); s.value = '{action}';"
        "s.dispatchEvent(new Event('change'));",
    )
    listed = "return [...document.querySelectorAll('article.event h2')].map(h => h.textContent)"
    wait_for(
        lambda: (names := _js(driver, listed)) and set(names) == {action},
        30,
        f"only {action} events listed",
    )
    _js(
        driver,
        "const s = document.getElementById('action'); s.value = '';"
        "s.dispatchEvent(new Event('change'));",
    )
    return str(event_id)


def _no_secrets(base: str) -> None:
    assert _get(base + "/api/events", None)[0] == 401
    assert _get(base + "/api/cameras", "wrong")[0] == 401
    paths = ["/", "/events", "/login", "/api/status", "/api/cameras", "/api/events"]
    paths += ["/static/console.js", "/static/cameras.js", "/static/events.js"]
    status, body = _get(base + "/api/events", TOKEN)
    assert status == 200
    for event in json.loads(body)["events"]:
        paths.append(f"/api/events/{event['id']}")
    for path in paths:
        status, body = _get(base + path, TOKEN)
        assert status == 200, (path, status)
        assert TOKEN.encode() not in body and MQTT_PASSWORD.encode() not in body, path


def test_the_console_in_a_real_browser(tmp_path: Path, browser: Any) -> None:
    port, metrics_port = free_port(), free_port()
    sections = _sections(port, metrics_port)
    daemon = Daemon(tmp_path, [_camera()], sections, env={TOKEN_ENV: TOKEN}).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: "console on http://" in daemon.log(), 60, "the console to listen")
        _log_in(browser, base)
        _cameras_page(browser)
        _screenshot(browser, "console-cameras.png")
        _themes_and_phone_width(browser)
        _events_page(browser, base)
        _screenshot(browser, "console-events.png")
        _no_secrets(base)
        # One wrong token on the login page, one as a bearer token: both counted.
        samples = parse_samples(scrape_text(f"http://127.0.0.1:{metrics_port}/metrics"))
        assert samples["actiond_console_logins_failed_total"] == {label_set(): 2}
        duration = (
            "const v = document.querySelector('article.event video');"
            "return v && v.readyState >= 1 ? v.duration : 0;"
        )
        wait_for(lambda: _js(browser, duration) > 0, CLIP_DEADLINE_S, "a clip that plays")
        _screenshot(browser, "console-events-clip.png")
        assert daemon.stop() == 0
    finally:
        daemon.cleanup()
    log = daemon.log()
    assert "Traceback" not in log
    assert TOKEN not in log and MQTT_PASSWORD not in log


def test_the_chromium_here_plays_webm(tmp_path: Path, browser: Any) -> None:
    """The clip check above relies on this Chromium decoding VP8 WebM (what OpenCV writes)."""
    can = _js(
        browser, "return document.createElement('video').canPlayType('video/webm; codecs=\"vp8\"')"
    )
    assert can in ("probably", "maybe")
