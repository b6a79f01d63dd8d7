"""Every end_reason an event record can carry (daemon/events.py for the clip pipeline,
daemon/people/person.py for the person pipeline) is explained in README.md and in
config.toml, so a new reason cannot ship undocumented."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon import events
from daemon.people import person

pytestmark = pytest.mark.timeout(10)

ROOT = Path(__file__).resolve().parent.parent


def end_reasons() -> set[str]:
    return {
        str(getattr(module, name))
        for module in (events, person)
        for name in dir(module)
        if name.startswith("END_")
    }


def test_every_end_reason_is_documented() -> None:
    reasons = end_reasons()
    assert {"scores_low", "action_over", "track_lost", "stopped"} <= reasons
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    config = (ROOT / "config.toml").read_text(encoding="utf-8")
    assert [r for r in sorted(reasons) if f"`{r}` (" not in readme] == []
    assert [r for r in sorted(reasons) if r not in config] == []
