"""Boot: the checked config plus what the model file says, resolved before any worker
starts, so a bad config or model stops the daemon with exit code 2 instead of looping."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon.config import (
    ASSETS_DIR,
    CameraConfig,
    Config,
    ConfigError,
    ModelFacts,
    check_model_rules,
    facts_without_model,
    load_config,
)
from daemon.events import event_actions
from daemon.stages.actions import (
    camera_actions,
    clip_model_needed,
    person_actions,
    runs_clip_model,
    runs_people,
)
from daemon.stages.model import ActionModel
from daemon.stages.records import CLIP_SCORES, ResultSpec
from daemon.stages.registry import GRAPHS, PERSON_GATED

# Trained by tools/train_demo_model.py; what it can and cannot tell apart: eval/README.md.
DEFAULT_MODEL = ASSETS_DIR / "demo-actions.onnx"


@dataclass(frozen=True)
class Boot:
    """A config that passed every check, with the model it runs and that model's facts.

    `config` is the user's, as loaded; what the model dictates (clip length and size,
    input kind, labels) is in `facts`, so the rings are sized for, and the motion stage
    makes, the clips the model takes.
    """

    config: Config
    config_path: Path
    model_path: str
    facts: ModelFacts
    providers: tuple[str, ...]
    result: ResultSpec | None = None  # what the model's results hold (its contract's
    # result_kind); None: clip scores over the labels
    # The people engine's actions ([people] rules + skeleton classifiers' labels), read
    # at boot; None: the [people] rules alone (tests that build a Boot by hand).
    people_actions: tuple[str, ...] | None = None

    @property
    def result_spec(self) -> ResultSpec:
        return self.result or ResultSpec(CLIP_SCORES, self.facts.labels)

    def actions(self, clip_actions: Sequence[str]) -> tuple[str, ...]:
        """What the enabled cameras' events can be called, in order: `clip_actions` (of
        the clip model's labels) for cameras whose results are scores, the people
        engine's rule actions ([people] actions) for cameras on the person pipeline."""
        names: dict[str, None] = {}
        for cam in self.config.cameras:
            if cam.enabled:
                names.update(dict.fromkeys(self.camera_actions(cam, clip_actions)))
        return tuple(names)

    def camera_actions(self, cam: CameraConfig, clip_actions: Sequence[str]) -> tuple[str, ...]:
        """What this camera's events can be called (see actions)."""
        people = self.people_actions
        return camera_actions(
            self.config, cam, clip_actions, self.config.people.actions if people is None else people
        )

    def camera_line(self, cam: CameraConfig) -> str:
        """check-config's words for one camera: its pipeline, the clip model it runs (if
        it runs one) and the actions its events can have."""
        model = ""
        if runs_clip_model(self.config, cam):
            model = f" (model {Path(self.model_path).name})"
        actions = self.camera_actions(cam, event_actions(self.labels, self.config.events.ignore))
        return f"{cam.name}: pipeline {cam.pipeline}{model}, actions {', '.join(actions) or '-'}"

    @property
    def labels(self) -> tuple[str, ...]:
        """The model's labels, one per score."""
        return self.facts.labels


def load_boot(config_path: Path) -> Boot:
    """Load and check the config, the clip model (only when a camera runs it) and the
    skeleton classifiers (only when a camera feeds the people engine); ConfigError or
    ModelError on a problem."""
    config = load_config(config_path)
    check_pipelines(config, str(config_path))
    people = _people_actions(config, str(config_path))
    if not clip_model_needed(config):
        facts = facts_without_model(config)
        return Boot(config, Path(config_path), "", facts, (), None, people)
    model_path = config.inference.model or str(DEFAULT_MODEL)
    model = ActionModel(config.inference, model_path)  # validates the model contract
    facts = model.facts(config)
    check_model_rules(config, facts, str(config_path))
    return Boot(
        config, Path(config_path), model_path, facts, model.providers, model.contract.result, people
    )


def _people_actions(config: Config, file: str) -> tuple[str, ...] | None:
    """The people engine's actions when a camera feeds it; ConfigError naming
    people.classifiers when a skeleton classifier cannot be used."""
    if not any(runs_people(config, c) for c in config.cameras if c.enabled):
        return None
    try:
        return person_actions(config.people)
    except ValueError as exc:
        raise ConfigError(file, "people.classifiers", str(exc)) from exc


def check_pipelines(config: Config, file: str) -> None:
    """ConfigError for a camera whose `pipeline` names no graph."""
    for index, cam in enumerate(config.cameras):
        if cam.pipeline not in GRAPHS:
            raise ConfigError(
                file,
                f"cameras[{index}].pipeline",
                f"{cam.pipeline!r} is not a pipeline; use one of: {', '.join(GRAPHS)}",
            )
        if cam.require_person and cam.pipeline not in PERSON_GATED:
            raise ConfigError(
                file,
                f"cameras[{index}].require_person",
                f"pipeline {cam.pipeline!r} has no person-gated variant (only "
                f"{', '.join(PERSON_GATED)} has); the person pipeline needs no gate",
            )
