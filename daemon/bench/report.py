"""How every `actiond bench` prints its result: JSON with --json, else key: value lines."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def print_report(result: Mapping[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key}: {value}")
