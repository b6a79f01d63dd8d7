"""Configuration: config.toml read with tomllib into frozen dataclasses.

THE LOADER IS TO BE WRITTEN (helper task): load_config(path) -> Config, raising
ConfigError(file, key, reason) for unknown keys, wrong types, out-of-range values and
missing files. The dataclasses below are the contract other modules code against.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DaemonConfig:
    """[daemon]: identity, directories, logging, supervision."""

    device_id: str = "actiond"
    state_dir: str = ""            # "" -> $STATE_DIRECTORY or ~/.local/state/actiond
    shm_dir: str = "/dev/shm"      # where rings and stats blocks live (a tmpfs)
    log_level: str = "info"
    status_interval_s: float = 5.0
    heartbeat_timeout_s: float = 10.0
    restart_backoff_min_s: float = 0.5
    restart_backoff_max_s: float = 30.0
    stable_after_s: float = 30.0   # running this long resets a worker's backoff
    crash_budget: int = 5          # crashes within crash_window_s before a camera is failed
    crash_window_s: float = 60.0


@dataclass(frozen=True)
class CameraConfig:
    """One [[cameras]] entry."""

    name: str
    source: str                    # file path, rtsp://..., /dev/videoN, test:<pattern>
    enabled: bool = True
    fps: float = 0.0               # 0: the source's own rate
    realtime: bool = True          # files: pace to fps (True) or as fast as the pipeline takes
    loop: bool = False             # files: start again at the end
    width: int = 640               # frames are resized to width x height before the ring
    height: int = 360
    crop: tuple[int, int, int, int] | None = None   # x, y, w, h in source pixels, before resize
    ring_capacity: int = 4
    ring_policy: str = "drop_oldest"   # block | drop_oldest | drop_newest
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0
    reconnect_backoff_min_s: float = 0.5
    reconnect_backoff_max_s: float = 30.0


@dataclass(frozen=True)
class MotionConfig:
    """[motion]: preprocessing + optical flow."""

    method: str = "dis"            # dis | farneback
    width: int = 224               # flow is computed at this size
    height: int = 224


@dataclass(frozen=True)
class InferenceConfig:
    """[inference]: the ONNX model and how it runs."""

    model: str = ""                # path to an .onnx file; "" -> the bundled demo model
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    threads: int = 1               # onnxruntime intra-op threads
    clip_length: int = 0           # 0: from the model's metadata
    stride: int = 4                # run the model every `stride` frames
    replicas: int = 1              # infer worker processes sharing one input ring


@dataclass(frozen=True)
class DisplayConfig:
    """[display]: optional local outputs of the overlay stage."""

    mjpeg_listen: str = ""         # "host:port" serves an MJPEG page; "" disables
    window: bool = False           # needs a GUI-capable OpenCV
    record: str = ""               # path of a video file to record the overlay to
    jpeg_quality: int = 80


@dataclass(frozen=True)
class MqttConfig:
    """[mqtt]: alerts to a broker."""

    enabled: bool = False
    host: str = "localhost"
    port: int = 1883
    tls: bool = False
    ca_file: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    password_file: str = ""
    password_env: str = ""
    prefix: str = "actiond"
    keepalive_s: int = 30
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    snapshots: bool = True
    outbox_max_events: int = 10000


@dataclass(frozen=True)
class MetricsConfig:
    """[metrics]: the Prometheus endpoint."""

    listen: str = "127.0.0.1:9108"   # "" disables


@dataclass(frozen=True)
class Config:
    """The whole configuration file."""

    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    cameras: tuple[CameraConfig, ...] = ()
    motion: MotionConfig = field(default_factory=MotionConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
