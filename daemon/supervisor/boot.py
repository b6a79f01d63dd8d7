"""Boot: the checked config plus what the model file says, resolved before any worker
starts, so a bad config or model stops the daemon with exit code 2 instead of looping."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from daemon.config import ASSETS_DIR, Config, ConfigError, load_config
from daemon.stages.eventing import event_settings
from daemon.stages.model import ActionModel

# Trained by tools/train_demo_model.py; what it can and cannot tell apart: eval/README.md.
DEFAULT_MODEL = ASSETS_DIR / "demo-actions.onnx"


@dataclass(frozen=True)
class Boot:
    """A config that passed every check, with the model it runs and that model's labels.

    `config.inference.clip_length`, `.width` and `.height` are the model's (never 0
    here), so the rings are sized for, and the motion stage makes, the clips it takes.
    """

    config: Config
    config_path: Path
    model_path: str
    labels: tuple[str, ...]
    providers: tuple[str, ...]


def load_boot(config_path: Path) -> Boot:
    """Load and check the config and the model; ConfigError or ModelError on a problem."""
    config = load_config(config_path)
    model_path = config.inference.model or str(DEFAULT_MODEL)
    model = ActionModel(config.inference, model_path)   # validates the model contract
    c = model.contract
    # The rings are sized, and the motion stage makes clips, at what the model takes.
    width, height = model.clip_size(config.motion)
    inference = dataclasses.replace(config.inference, clip_length=c.clip_length,
                                    width=width, height=height, input=c.inputs)
    config = dataclasses.replace(config, inference=inference)
    try:
        event_settings(config.events, c.labels)
    except ValueError as exc:
        raise ConfigError(str(config_path), "events", f"{exc} (the model {Path(model_path).name} "
                          f"has labels: {', '.join(c.labels)})") from exc
    return Boot(config, Path(config_path), model_path, model.contract.labels, model.providers)
