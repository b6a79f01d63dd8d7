"""A real Prometheus server for tests: scrapes given targets, answers PromQL over HTTP.

`PrometheusServer(workdir, targets, scrape_interval_s)` writes a scrape config (job
"actiond", as monitoring/prometheus/prometheus.example.yml names it), starts
/usr/bin/prometheus on a free 127.0.0.1 port with its storage under `workdir`, and waits
for /-/ready. `query(expr)` runs an instant query and returns its vector. Needs the
Debian package `prometheus` (the monitoring tests already use its promtool).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from daemon_proc import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
HTTP_TIMEOUT_S = 5.0
POLL_S = 0.1
JOB = "actiond"


class PrometheusServer:
    """One Prometheus process scraping `targets` ("host:port") every `scrape_interval_s`."""

    def __init__(self, workdir: Path, targets: Sequence[str], scrape_interval_s: float) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        self.config_path = workdir / "prometheus.yml"
        interval = f"{int(scrape_interval_s * 1000)}ms"
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": list(targets)}]}],
        }
        self.config_path.write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrometheusServer:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(f"prometheus did not become ready; log:\n{self.log()}")
            time.sleep(POLL_S)
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=HTTP_TIMEOUT_S) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector `expr` evaluates to now: [{"metric": labels, "value": [t, v]}]."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            body = json.loads(response.read())
        if body["status"] != "success" or body["data"]["resultType"] != "vector":
            raise AssertionError(f"query {expr!r} answered {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def targets_up(self) -> int:
        """How many of the job's targets answered their last scrape."""
        return sum(float(s["value"][1]) == 1 for s in self.query(f'up{{job="{JOB}"}}'))

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        self.process = None
