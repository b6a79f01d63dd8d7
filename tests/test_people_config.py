"""[people] and cameras[].zones in config.toml: each bad value names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import ConfigError, ZoneConfig, load_config

pytestmark = pytest.mark.timeout(30)

CAMERA = '[[cameras]]\nname = "cam"\nsource = "test:bars"\n'
ZONE = '[[cameras.zones]]\nname = "{name}"\nkind = "{kind}"\npoints = {points}\n'
SQUARE = "[[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]]"


def zone(name: str = "door", kind: str = "include", points: str = SQUARE) -> str:
    return ZONE.format(name=name, kind=kind, points=points)


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        (
            CAMERA + zone(points="[[0.1, 0.1], [0.5, 0.1]]"),
            "cameras[0].zones[0].points",
            "at least 3",
        ),
        (
            CAMERA + zone(points="[[0.1, 0.1], [1.5, 0.1], [0.5, 0.5]]"),
            "cameras[0].zones[0].points[1]",
            "0..1",
        ),
        (CAMERA + zone() + zone(), "cameras[0].zones[1].name", "also cameras[0].zones[0].name"),
        (CAMERA + zone(kind="maybe"), "cameras[0].zones[0].kind", "include, exclude"),
        (CAMERA + zone(points="[[0.1, 0.1, 0.2]]"), "cameras[0].zones[0].points[0]", "2 numbers"),
        (CAMERA + '[people]\nactions = ["dancing"]\n', "people.actions[0]", "unknown action"),
        (CAMERA + '[people]\nactions = ["fall", "fall"]\n', "people.actions", "twice"),
        (CAMERA + "[people]\nconfirm_hits = 0\n", "people.confirm_hits", ">= 1"),
        (CAMERA + "[people]\nhorizontal_deg = 100\n", "people.horizontal_deg", "degrees"),
        (CAMERA + "[people]\nlost_after_s = 0\n", "people.lost_after_s", " s"),
        (CAMERA + "[people]\nloiter_seconds = 3\n", "people.loiter_seconds", "loiter_s"),
        (
            CAMERA + '[people]\nclassifiers = [{ model = "no.onnx" }]\n',
            "people.classifiers[0].model",
            "file not found",
        ),
        (
            CAMERA + '[people]\nclassifiers = [{ model = "m.onnx", threshold = 2 }]\n',
            "people.classifiers[0].threshold",
            "between 0 and 1",
        ),
    ],
)
def test_bad_people_config_names_the_key(tmp_path: Path, text: str, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert info.value.key == key
    assert reason in info.value.reason
    assert "\n" not in str(info.value)


def test_good_people_config_loads(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.onnx").write_bytes(b"checked by the engine, not the loader")
    text = (
        CAMERA
        + zone()
        + zone("tv", "exclude")
        + '[people]\nactions = ["in_zone", "fall"]\nlying_s = 4\n'
        + 'classifiers = [{ model = "models/m.onnx", ignore = ["idle"] }]\n'
    )
    config = load(tmp_path, text)
    assert config.cameras[0].zones == (  # type: ignore[attr-defined]
        ZoneConfig("door", ((0.1, 0.1), (0.5, 0.1), (0.5, 0.5), (0.1, 0.5)), "include"),
        ZoneConfig("tv", ((0.1, 0.1), (0.5, 0.1), (0.5, 0.5), (0.1, 0.5)), "exclude"),
    )
    people = config.people  # type: ignore[attr-defined]
    assert (people.actions, people.lying_s) == (("in_zone", "fall"), 4.0)
    assert people.classifiers[0].model == str(tmp_path / "models" / "m.onnx")


PERSON_CAMERA = CAMERA + 'pipeline = "person"\n'


def test_tracker_times_must_fit_the_analysis_rates(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, PERSON_CAMERA + "analyse_fps = 1.5\n")
    assert info.value.key == "people.confirm_window_s"
    assert "camera cam analyses 1.5 frames/s" in info.value.reason
    with pytest.raises(ConfigError) as info:
        load(tmp_path, PERSON_CAMERA + "[people]\nlost_after_s = 1.0\n")
    assert info.value.key == "people.lost_after_s"
    assert "keepalive_fps = 1" in info.value.reason
    # The same values on a clip-model camera: [people] does not run there.
    load(tmp_path, CAMERA + "analyse_fps = 1.5\n[people]\nlost_after_s = 1.0\n")
