"""The shipped monitoring assets: alert rules (promtool), Grafana dashboard, metric catalog.

promtool comes from the Debian package `prometheus` (CI installs it); without it the
promtool tests skip with that reason and the pure-Python checks still run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from daemon import metrics_catalog as mc

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[1]
PROM_DIR = ROOT / "monitoring" / "prometheus"
RULES = PROM_DIR / "actiond-rules.yml"
RULES_TEST = PROM_DIR / "actiond-rules.test.yml"
PROM_CONFIG = PROM_DIR / "prometheus.example.yml"
GRAFANA_DIR = ROOT / "monitoring" / "grafana"
DASHBOARD = GRAFANA_DIR / "actiond-dashboard.json"
DASHBOARD_PROVIDER = GRAFANA_DIR / "provisioning" / "dashboards" / "actiond.yaml"
DATASOURCE_EXAMPLE = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.example.yaml"
PROMTOOL_TIMEOUT_S = 30

REQUIRED_ALERTS = {
    "ActiondCameraDown",
    "ActiondFpsBelowExpected",
    "ActiondDropsRising",
    "ActiondWorkerRestarts",
    "ActiondSinkDown",
    "ActiondOutboxGrowing",
    "ActiondEventsLost",
}
# Labels Prometheus adds at scrape time and the daemon's label on every series (device);
# the bucket label of histogram series is added where it applies.
TARGET_LABELS = {"instance", "job", *mc.COMMON_LABELS}
METRIC_RE = re.compile(r"\bactiond_[A-Za-z0-9_]+\b")
SELECTOR_RE = re.compile(r"\b(actiond_[A-Za-z0-9_]+)\s*\{([^}]*)\}")
MATCHER_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING_RE = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip(
            "promtool not found: install the Debian package `prometheus` "
            "(apt-get install prometheus) to check the alert rules"
        )
    return path


def run_promtool(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
        check=False,
    )


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    groups = load_yaml(RULES)["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def dashboard_exprs() -> list[str]:
    board = dashboard()
    exprs = [t["expr"] for p in walk_panels(board["panels"]) for t in p.get("targets", [])]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            exprs.append(var["definition"])
    return exprs


def check_expr_against_catalog(expr: str) -> list[str]:
    """Problems with metric and label names in one PromQL expression."""
    problems: list[str] = []
    specs: list[mc.MetricSpec] = []
    for name in METRIC_RE.findall(expr):
        spec = mc.spec_for_series(name)
        if spec is None:
            problems.append(f"{name} is not in daemon.metrics_catalog ({expr})")
        else:
            specs.append(spec)
    known = set(TARGET_LABELS) | {"le"} | {label for s in specs for label in s.labels}
    for name, matchers in SELECTOR_RE.findall(expr):
        spec = mc.spec_for_series(name)
        allowed = set(TARGET_LABELS) | set(spec.labels if spec else ())
        if name.endswith("_bucket"):
            allowed.add("le")
        problems += [
            f"{name} has no label {label!r} ({expr})"
            for label in MATCHER_RE.findall(matchers)
            if label not in allowed
        ]
    for group in GROUPING_RE.findall(expr):
        problems += [
            f"grouping label {label!r} is on none of the metrics ({expr})"
            for label in (x.strip() for x in group.split(","))
            if label and label not in known
        ]
    return problems


# --- metric catalog ----------------------------------------------------------------


def test_catalog_names_follow_conventions() -> None:
    names = [spec.name for spec in mc.CATALOG]
    assert len(names) == len(set(names)), "duplicate metric names"
    for spec in mc.CATALOG:
        assert re.fullmatch(r"actiond_[a-z0-9_]+", spec.name), spec.name
        assert spec.type in mc.METRIC_TYPES, spec
        assert spec.help.strip(), f"{spec.name} has no help text"
        assert all(re.fullmatch(r"[a-z_][a-z0-9_]*", label) for label in spec.labels), spec
        assert spec.name.endswith("_total") == (spec.type == mc.COUNTER), spec.name
        if spec.type == mc.HISTOGRAM:
            assert spec.name.endswith("_seconds"), spec.name
            buckets = mc.HISTOGRAM_BUCKETS_S[spec.name]
            assert list(buckets) == sorted(set(buckets)) and buckets[0] > 0, spec.name
    assert set(mc.HISTOGRAM_BUCKETS_S) == {s.name for s in mc.CATALOG if s.type == mc.HISTOGRAM}


def test_spec_for_series_maps_histogram_suffixes_only() -> None:
    assert (
        mc.spec_for_series("actiond_inference_seconds_bucket")
        is mc.BY_NAME["actiond_inference_seconds"]
    )
    assert mc.spec_for_series("actiond_inference_seconds") is None
    assert mc.spec_for_series("actiond_events_total") is mc.BY_NAME["actiond_events_total"]
    assert mc.spec_for_series("actiond_events_total_count") is None
    assert mc.spec_for_series("actiond_nonexistent") is None
    assert mc.series_names(mc.BY_NAME["actiond_event_latency_seconds"]) == (
        "actiond_event_latency_seconds_bucket",
        "actiond_event_latency_seconds_sum",
        "actiond_event_latency_seconds_count",
    )


class _CatalogCollector:
    """One sample per catalog metric, built the way the real collector will build them."""

    def collect(self) -> Iterator[Metric]:
        for spec in mc.CATALOG:
            values = [f"x{i}" for i in range(len(spec.labels))]
            if spec.type == mc.COUNTER:
                family: Metric = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
                family.add_metric(values, 3.0)
            elif spec.type == mc.GAUGE:
                family = GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)
                family.add_metric(values, 1.0)
            else:
                family = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
                buckets = [
                    (repr(b), float(i)) for i, b in enumerate(mc.HISTOGRAM_BUCKETS_S[spec.name])
                ]
                family.add_metric(values, buckets + [("+Inf", float(len(buckets)))], sum_value=1.5)
            yield family


def test_catalog_exposition_passes_promtool_check_metrics(promtool: str) -> None:
    registry = CollectorRegistry()
    registry.register(_CatalogCollector())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    for spec in mc.CATALOG:
        for series in mc.series_names(spec):
            assert re.search(rf"^{series}[{{ ]", text, re.M), f"{series} not exposed"
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- alert rules -----------------------------------------------------------------------


def test_promtool_check_rules(promtool: str) -> None:
    result = run_promtool(promtool, "check", "rules", RULES.name, cwd=PROM_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_rule_unit_tests_pass(promtool: str) -> None:
    result = run_promtool(promtool, "test", "rules", RULES_TEST.name, cwd=PROM_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_rule_unit_tests_catch_a_broken_rule(promtool: str, tmp_path: Path) -> None:
    """The unit tests must fail when a threshold is loosened (they are not vacuous)."""
    broken = RULES.read_text().replace("< 0.8 * max by", "< 0.95 * max by")
    assert broken != RULES.read_text()
    (tmp_path / RULES.name).write_text(broken)
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    result = run_promtool(promtool, "test", "rules", RULES_TEST.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "ActiondFpsBelowExpected" in result.stdout + result.stderr


def test_promtool_check_example_config(promtool: str) -> None:
    result = run_promtool(promtool, "check", "config", PROM_CONFIG.name, cwd=PROM_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert RULES.name in load_yaml(PROM_CONFIG)["rule_files"]


def test_alerts_have_severity_and_annotations() -> None:
    rules = alert_rules()
    names = {rule["alert"] for rule in rules}
    assert REQUIRED_ALERTS <= names, f"missing alerts: {REQUIRED_ALERTS - names}"
    groups = load_yaml(RULES)["groups"]
    assert [g["name"] for g in groups] == ["actiond"]
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        for key in ("summary", "description"):
            assert rule["annotations"][key].strip(), f"{rule['alert']} lacks {key}"


def test_every_alert_is_tested_firing_and_some_not_firing() -> None:
    cases = [
        case for test in load_yaml(RULES_TEST)["tests"] for case in test.get("alert_rule_test", [])
    ]
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert firing == {rule["alert"] for rule in alert_rules()}
    assert quiet, "no not-firing case"
    for case in cases:
        for alert in case.get("exp_alerts") or []:
            assert alert["exp_labels"]["severity"], case
            assert {"summary", "description"} <= set(alert["exp_annotations"]), case


def test_rule_expressions_use_catalog_metrics() -> None:
    problems = [p for rule in alert_rules() for p in check_expr_against_catalog(rule["expr"])]
    assert problems == []


def test_catalog_checker_rejects_unknown_names() -> None:
    assert check_expr_against_catalog("rate(actiond_frames_total[5m])")
    assert check_expr_against_catalog('actiond_worker_up{ring="x"}')
    assert check_expr_against_catalog("sum by (stage) (actiond_sink_up)")
    assert check_expr_against_catalog("actiond_inference_seconds")  # histogram base name
    assert (
        check_expr_against_catalog(
            'sum by (le) (rate(actiond_inference_seconds_bucket{camera="a"}[1m]))'
        )
        == []
    )


# --- Grafana ---------------------------------------------------------------------------


def test_dashboard_template_variables() -> None:
    board = dashboard()
    assert 38 <= board["schemaVersion"] <= 41
    variables = {v["name"]: v for v in board["templating"]["list"]}
    source = variables["datasource"]
    assert source["type"] == "datasource" and source["query"] == "prometheus"
    device = variables["device"]
    assert device["type"] == "query" and device["multi"] and device["includeAll"]
    assert device["definition"] == "label_values(actiond_build_info, device)"
    assert device["query"]["query"] == device["definition"]
    assert "instance" not in variables, "the device selector replaces the address one"
    camera = variables["camera"]
    assert camera["type"] == "query"
    assert re.fullmatch(
        r"label_values\(actiond_stage_frames_out_total(\{[^}]*\})?, camera\)", camera["definition"]
    )
    assert camera["query"]["query"] == camera["definition"]
    assert camera["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_dashboard_has_no_import_placeholders() -> None:
    text = DASHBOARD.read_text()
    assert "${DS_" not in text
    board = json.loads(text)
    assert "__inputs" not in board and "__requires" not in board
    for panel in walk_panels(board["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_layout() -> None:
    panels = list(walk_panels(dashboard()["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area


def test_dashboard_uses_only_catalog_metrics_and_covers_them_all() -> None:
    exprs = dashboard_exprs()
    problems = [p for expr in exprs for p in check_expr_against_catalog(expr)]
    assert problems == []
    used = {mc.spec_for_series(n) for e in exprs for n in METRIC_RE.findall(e)}
    missing = sorted(s.name for s in mc.CATALOG if s not in used)
    assert missing == [], f"catalog metrics without a panel: {missing}"


def test_dashboard_has_required_panels() -> None:
    exprs = "\n".join(dashboard_exprs())
    for needle in (
        "rate(actiond_stage_frames_out_total",
        "histogram_quantile(0.5, sum by (camera, stage, le) "
        "(rate(actiond_stage_processing_seconds_bucket",
        "histogram_quantile(0.99, sum by (camera, stage, le) "
        "(rate(actiond_stage_processing_seconds_bucket",
        "histogram_quantile(0.99, sum by (camera, le) (rate(actiond_event_latency_seconds_bucket",
        "actiond_ring_occupancy_slots",
        "rate(actiond_ring_drops_total",
        "increase(actiond_worker_restarts_total",
        "actiond_worker_up",
        "increase(actiond_source_reconnects_total",
        "increase(actiond_source_stalls_total",
        "actiond_inference_seconds_bucket",
        "increase(actiond_events_total",
        "actiond_sink_up",
        "actiond_sink_pending_events",
        "actiond_sink_delivered_total",
        "sum by (camera, stage, item, reason) (increase(actiond_lost_total",
    ):
        assert needle in exprs, f"no panel queries {needle}"


def test_dashboard_expressions_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """promtool parses every panel query, with Grafana's variables filled in."""
    substitutions = {
        "$__rate_interval": "1m",
        "$__interval": "1m",
        "$__range": "1h",
        "$device": ".*",
        "$camera": ".*",
    }
    records = []
    for index, expr in enumerate(dashboard_exprs()):
        if expr.startswith("label_values("):
            continue
        for var, value in substitutions.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"unsubstituted Grafana variable in {expr}"
        records.append({"record": f"dashboard:query_{index}", "expr": expr})
    assert len(records) >= 20
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    result = run_promtool(promtool, "check", "rules", path.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_query_filters_on_the_device() -> None:
    """A box chosen in the device selector: no panel shows another box's series."""
    for expr in dashboard_exprs():
        if expr == "label_values(actiond_build_info, device)":
            continue
        selectors = SELECTOR_RE.findall(expr)
        bare = METRIC_RE.findall(SELECTOR_RE.sub("", expr))
        assert selectors and bare == [], f"a metric without a selector in {expr}"
        for name, matchers in selectors:
            assert 'device=~"$device"' in matchers, f"{name} is not filtered on $device in {expr}"


# The fleet row's queries: (panel title, one series per box by these labels).
FLEET_PANELS = {
    "Cameras up": "sum by (device) (actiond_camera_up{",
    "Cameras down": "sum by (device) (1 - actiond_camera_up{",
    "Events per hour": "sum by (device) (increase(actiond_events_total{",
    "Outbox depth": "sum by (device, sink) (actiond_sink_pending_events{",
    "Worker restarts (1 h)": "sum by (device) (increase(actiond_worker_restarts_total{",
}


def fleet_row(board: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels between the first row and the next one."""
    panels = board["panels"]
    assert panels[0]["type"] == "row" and panels[0]["title"].startswith("Fleet"), (
        "the fleet row is not the dashboard's first row"
    )
    rest = panels[1:]
    end = next((i for i, p in enumerate(rest) if p["type"] == "row"), len(rest))
    return rest[:end]


def test_dashboard_opens_with_the_fleet_row() -> None:
    row = fleet_row(dashboard())
    assert {p["title"] for p in row} == set(FLEET_PANELS)
    for panel in row:
        (target,) = panel["targets"]
        assert target["expr"].startswith(FLEET_PANELS[panel["title"]]), target["expr"]
        assert target["legendFormat"].startswith("{{device}}")
        assert target["instant"] and panel["gridPos"]["y"] == 1


def test_grafana_provisioning_files() -> None:
    provider = load_yaml(DASHBOARD_PROVIDER)
    assert provider["apiVersion"] == 1
    (entry,) = provider["providers"]
    assert entry["type"] == "file" and entry["options"]["path"].startswith("/")
    datasources = load_yaml(DATASOURCE_EXAMPLE)
    assert datasources["apiVersion"] == 1
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"].startswith("http")
    assert source["jsonData"]["timeInterval"] == load_yaml(PROM_CONFIG)["global"]["scrape_interval"]


def test_every_loss_the_dashboard_and_rules_name_is_one_a_stage_counts() -> None:
    """A query on actiond_lost_total{stage="s", item="x"} that no stage kind declares is
    an empty panel or an alert that never fires (the event clips' item was renamed once
    and the dashboard's panel kept the old one)."""
    from daemon.stages.kinds import ITEMS
    from daemon.stages.registry import KINDS

    declared = {(kind.name, loss.item) for kind in KINDS.values() for loss in kind.losses}
    texts = DASHBOARD.read_text().replace('\\"', '"') + RULES.read_text()
    selectors = re.findall(r"actiond_lost_total\{([^}]*)\}", texts)
    assert selectors, "no actiond_lost_total selector found: the pattern no longer matches"
    for selector in selectors:
        labels = dict(re.findall(r'(\w+)=~?"([^"]*)"', selector))
        items = labels["item"].split("|") if "item" in labels else []
        assert set(items) <= set(ITEMS), f"{selector}: items no stage counts"
        if "stage" in labels and "$" not in labels["stage"]:
            for item in items:
                assert (labels["stage"], item) in declared, f"{selector}: no such loss"
