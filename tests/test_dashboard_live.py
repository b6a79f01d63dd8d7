"""The Grafana dashboard against a live daemon's scrape: picking a camera in the camera
variable must not empty a panel that has data (the shared inference stage reports under
camera="all", and rings are named after their camera)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from daemon_proc import Daemon, free_port, wait_for
from metrics_helpers import Labels, parse_samples, scrape_text

from daemon.exitcodes import ExitCode

DASHBOARD = Path(__file__).resolve().parents[1] / "monitoring/grafana/actiond-dashboard.json"
START_S = 60.0
# metric{matchers}: the selectors of a PromQL expression (no nested braces in ours).
SELECTOR_RE = re.compile(r"(actiond_[a-z_]+)\{([^}]*)\}")
MATCHER_RE = re.compile(r'\s*([a-z_]+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')


def panel_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    out: list[str] = []
    stack = list(board["panels"])
    while stack:
        panel = stack.pop()
        stack.extend(panel.get("panels", []))
        out.extend(t["expr"] for t in panel.get("targets", []))
    return out


def matches(matchers: str, labels: Labels) -> bool:
    """PromQL label matching (anchored regexes; a missing label is the empty string)."""
    have = dict(labels)
    for name, op, raw in MATCHER_RE.findall(matchers):
        value = raw.encode().decode("unicode_escape")  # PromQL string escapes
        got = have.get(name, "")
        ok = {
            "=": got == value,
            "!=": got != value,
            "=~": re.fullmatch(value, got) is not None,
            "!~": re.fullmatch(value, got) is None,
        }[op]
        if not ok:
            return False
    return True


def selector_hits(
    expr: str, samples: dict[str, dict[Labels, float]], variables: dict[str, str]
) -> dict[str, list[dict[str, str]]]:
    """Each selector of `expr` (variables filled in) -> the label sets it selects."""
    for var, value in variables.items():
        expr = expr.replace(var, value)
    return {
        f"{name}{{{m}}}": [dict(labels) for labels in samples.get(name, {}) if matches(m, labels)]
        for name, m in SELECTOR_RE.findall(expr)
    }


def of_camera(labels: dict[str, str], camera: str) -> bool:
    return labels.get("camera") == camera or labels.get("ring", "").startswith(camera + ".")


def test_matcher_semantics() -> None:
    labels = frozenset({("camera", "door"), ("ring", "door.frames")})
    assert matches('camera=~"door|all"', labels)
    assert not matches('camera=~"all"', labels)
    assert matches('ring=~"(door)\\\\..+|clips"', labels)
    assert not matches('ring=~"(yard)\\\\..+|clips"', labels)
    assert matches('instance=~".*"', labels)  # absent label: the empty string


@pytest.mark.timeout(180)
def test_choosing_a_camera_empties_no_panel_that_has_data(tmp_path: Path, daemons) -> None:
    port = free_port()
    cams = [
        {"name": n, "source": "test:moving-box", "fps": 10, "width": 160, "height": 120}
        for n in ("door", "yard")
    ]
    d = Daemon(
        tmp_path,
        cams,
        {"motion": {"width": 64, "height": 64}, "metrics": {"listen": f"127.0.0.1:{port}"}},
    )
    daemons.append(d.start())
    url = f"http://127.0.0.1:{port}/metrics"
    wait_for(
        lambda: d.stats("infer.0").get("frames_out_total", 0) > 0,
        START_S,
        "a clip through the shared inference stage",
    )
    samples = parse_samples(scrape_text(url))
    every = {"$__rate_interval": "1m", "$device": ".*", "$camera": ".*"}
    # Grafana formats one chosen value of a regex variable as the escaped value itself.
    door = {**every, "$camera": "door"}
    emptied, leaked = [], []
    for expr in panel_exprs():
        with_all, with_door = (selector_hits(expr, samples, v) for v in (every, door))
        for (selector, got_all), got_door in zip(with_all.items(), with_door.values()):
            if got_all and not got_door:
                emptied.append(selector)
            if any(of_camera(labels, "yard") for labels in got_door):
                leaked.append(selector)
    assert emptied == [], "choosing camera door empties these panels' series"
    assert leaked == [], "these panels show camera yard's series when door is chosen"
    assert d.stop() == ExitCode.OK
