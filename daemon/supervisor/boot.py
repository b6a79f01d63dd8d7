"""Boot: the checked config plus what the model file says, resolved before any worker
starts, so a bad config or model stops the daemon with exit code 2 instead of looping."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from daemon.config import ASSETS_DIR, Config, ConfigError, load_config
from daemon.stages.eventing import event_settings
from daemon.stages.model import ActionModel

DEFAULT_MODEL = ASSETS_DIR / "motion-direction.onnx"


@dataclass(frozen=True)
class Boot:
    """A config that passed every check, with the model it runs and that model's labels."""

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
    try:
        event_settings(config.events, model.contract.labels)
    except ValueError as exc:
        raise ConfigError(str(config_path), "events", f"{exc} (the model {Path(model_path).name} "
                          f"has labels: {', '.join(model.contract.labels)})") from exc
    return Boot(config, Path(config_path), model_path, model.contract.labels, model.providers)
