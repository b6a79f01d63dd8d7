"""Helpers of the metrics tests: scraping an endpoint and reading its samples back."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

HTTP_TIMEOUT_S = 5.0
Labels = frozenset[tuple[str, str]]


def label_set(**kv: str) -> Labels:
    return frozenset(kv.items())


def scrape_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
        assert response.status == 200
        return response.read().decode()


def parse_samples(text: str, keep_device: bool = False) -> dict[str, dict[Labels, float]]:
    """name -> label set -> value. The daemon's constant `device` label (on every series,
    daemon.metrics_catalog.COMMON_LABELS) is left out unless `keep_device`: one daemon's
    tests look series up by their own labels (tests/test_fleet.py checks `device`)."""
    out: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if keep_device or k != "device"}
            out.setdefault(sample.name, {})[frozenset(labels.items())] = sample.value
    return out


def histogram_series(
    samples: dict[str, dict[Labels, float]], name: str, **labels: str
) -> tuple[list[tuple[float, float]], float, float]:
    """(le, cumulative count) pairs in bound order, the count and the sum of one series."""
    key = label_set(**labels)
    buckets = sorted(
        (float(dict(k)["le"]), v)
        for k, v in samples[f"{name}_bucket"].items()
        if k - {("le", dict(k)["le"])} == key
    )
    return buckets, samples[f"{name}_count"][key], samples[f"{name}_sum"][key]
