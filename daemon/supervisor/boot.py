"""Boot: the checked config plus what the model file says, resolved before any worker
starts, so a bad config or model stops the daemon with exit code 2 instead of looping."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon.config import (
    ASSETS_DIR,
    Config,
    ConfigError,
    ModelFacts,
    check_model_rules,
    load_config,
)
from daemon.stages.model import ActionModel
from daemon.stages.records import CLIP_SCORES, ResultSpec, feeds_people
from daemon.stages.registry import GRAPHS

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
                make = GRAPHS[cam.pipeline].result
                people = make is not None and feeds_people(make(self.config))
                names.update(dict.fromkeys(self.config.people.actions if people else clip_actions))
        return tuple(names)

    @property
    def labels(self) -> tuple[str, ...]:
        """The model's labels, one per score."""
        return self.facts.labels


def load_boot(config_path: Path) -> Boot:
    """Load and check the config and the model; ConfigError or ModelError on a problem."""
    config = load_config(config_path)
    check_pipelines(config, str(config_path))
    model_path = config.inference.model or str(DEFAULT_MODEL)
    model = ActionModel(config.inference, model_path)  # validates the model contract
    facts = model.facts(config)
    check_model_rules(config, facts, str(config_path))
    return Boot(
        config, Path(config_path), model_path, facts, model.providers, model.contract.result
    )


def check_pipelines(config: Config, file: str) -> None:
    """ConfigError for a camera whose `pipeline` names no graph."""
    for index, cam in enumerate(config.cameras):
        if cam.pipeline not in GRAPHS:
            raise ConfigError(
                file,
                f"cameras[{index}].pipeline",
                f"{cam.pipeline!r} is not a pipeline; use one of: {', '.join(GRAPHS)}",
            )
