"""The configuration schema: frozen dataclasses, one per config.toml table, and the
vocabulary their values come from. daemon.config.loader reads files into them,
daemon.config.fields and daemon.config.rules check them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

RING_POLICIES = ("block", "drop_oldest", "drop_newest")
MOTION_METHODS = ("dis", "farneback")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# The action-model contract's vocabulary (daemon.stages.model reads models with it):
# NT_CHW is TSM-style, the clip's frames stacked on the batch axis; NCHW stacks the T
# frames' channels time-major (T = 1: a single frame; flow: a two-stream flow stack).
MODEL_LAYOUTS = ("NCTHW", "NTCHW", "NT_CHW", "NCHW")
MODEL_INPUTS = ("rgb", "flow", "rgb+flow")
COLOUR_ORDERS = ("rgb", "bgr")
MODEL_ACTIVATIONS = ("none", "softmax", "sigmoid")
MIN_RING_CAPACITY = 2
RESERVED_CAMERA_NAME = "all"
# Camera names and device_id become MQTT topic levels and Prometheus label values; camera
# names also become parts of shared-memory and recording file names (255 bytes at most).
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
MAX_NAME_CHARS = 64  # a host name's limit (the default device_id)
MAX_TOPIC_PREFIX_CHARS = 1024  # MQTT allows 65535-byte topics; we add a few levels
# The event socket (actiond-<pid>-<run>-events.sock: 34 bytes with a 7-digit pid) lives in
# shm_dir, and an AF_UNIX socket path holds at most 107 bytes.
MAX_SHM_DIR_BYTES = 107 - len("/actiond-4194304-abcdef-events.sock")
# Ranges of the timing keys: outside them a camera or the supervisor cannot work (1e-9
# fps is one frame in 31 years; a 1e-9 s heartbeat timeout kills every worker at once).
MIN_FPS, MAX_FPS = 0.1, 240.0  # cameras[].fps; 0 means the source's own
TIMEOUT_RANGE_S = (0.1, 3600.0)  # open/read timeouts (FFmpeg takes int ms)
BACKOFF_RANGE_S = (0.01, 3600.0)  # restart and reconnect delays
HEARTBEAT_RANGE_S = (1.0, 3600.0)  # workers beat every 0.5 s
INTERVAL_RANGE_S = (0.1, 86400.0)  # status, stable-after, crash window
COOLDOWN_RANGE_S = (0.0, 86400.0)
JPEG_QUALITY_RANGE = (1, 100)  # display.jpeg_quality (OpenCV's scale)
MAX_PEOPLE = 32  # perception.max_people: a detections record has room for this many
MAX_BATCH_FRAMES = 64  # perception.batch_frames (cameras per batch)
MAX_BATCH_WAIT_MS = 100.0  # perception.batch_wait_ms: longer only adds latency
MAX_POSE_BATCH = 256  # perception.pose_batch (crops of 192 x 192 px: 110 KiB each)
ZONE_KINDS = ("include", "exclude")  # cameras[].zones[].kind
MIN_ZONE_POINTS = 3
# What daemon.people can report ([people] actions): each rule's action name.
PEOPLE_ACTIONS = (
    "in_zone",
    "loitering",
    "walking_left",
    "walking_right",
    "walking_towards",
    "walking_away",
    "hand_raised",
    "waving",
    "gesturing",
    "fall",
    "lying",
)


@dataclass(frozen=True)
class DaemonConfig:
    """[daemon]: identity, directories, logging, supervision."""

    device_id: str = ""  # "" -> this machine's host name (config.paths)
    state_dir: str = ""  # "" -> $STATE_DIRECTORY or ~/.local/state/actiond
    shm_dir: str = "/dev/shm"  # where rings and stats blocks live (a tmpfs)
    log_level: str = "info"
    status_interval_s: float = 5.0
    heartbeat_timeout_s: float = 10.0
    restart_backoff_min_s: float = 0.5
    restart_backoff_max_s: float = 30.0
    stable_after_s: float = 30.0  # running this long resets a worker's backoff
    crash_budget: int = 5  # crashes within crash_window_s before a camera is failed
    crash_window_s: float = 60.0


@dataclass(frozen=True)
class ZoneConfig:
    """One cameras[].zones entry: a polygon in normalised frame coordinates (0..1, x to
    the right, y down). A person is in it when the middle of their box's bottom edge is."""

    name: str
    points: tuple[tuple[float, float], ...]  # at least 3 [x, y] pairs
    kind: str = "include"  # include: actions are reported there; exclude: never


@dataclass(frozen=True)
class CameraConfig:
    """One [[cameras]] entry."""

    name: str
    source: str  # file path, rtsp://..., /dev/videoN, test:<pattern>,
    # sample:<clip in daemon/assets> (resolved by load_config)
    enabled: bool = True
    fps: float = 0.0  # 0: the source's own rate
    realtime: bool = True  # files: pace to fps (True) or as fast as the pipeline takes
    loop: bool = False  # files: start again at the end
    width: int = 640  # frames are resized to width x height before the ring
    height: int = 360
    crop: tuple[int, int, int, int] | None = None  # x, y, w, h in source pixels, before resize
    ring_capacity: int = 4
    ring_policy: str = "drop_oldest"  # block | drop_oldest | drop_newest
    # pipeline "person": frames analysed per second while something moves (the gate),
    # and the detector run tiled (full frame + 2 x 2 tiles, ~5x the cost) for small people
    analyse_fps: float = 5.0
    tiled_detection: bool = False
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0
    # FFmpeg decoder preset for files and URLs (daemon.capture.table.DECODE_PRESETS):
    # "all" decodes every frame, "reference" skips frames nothing refers to (B-frames)
    decode: str = "all"
    reconnect_backoff_min_s: float = 0.5
    reconnect_backoff_max_s: float = 30.0
    pipeline: str = "clip"  # the graph it runs (daemon.stages.registry.GRAPHS)
    # pipeline "clip": the clip model's events start only while a person is seen (the
    # shared person detector also runs on this camera, at analyse_fps while it moves)
    require_person: bool = False
    zones: tuple[ZoneConfig, ...] = ()  # polygons for [people]'s zone rules


@dataclass(frozen=True)
class MotionConfig:
    """[motion]: preprocessing + optical flow."""

    method: str = "dis"  # dis | farneback
    width: int = 224  # flow is computed at this size
    height: int = 224


@dataclass(frozen=True)
class InferenceConfig:
    """[inference]: the ONNX model and how it runs."""

    model: str = ""  # path to an .onnx file; "" -> the bundled demo model
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    threads: int = 1  # onnxruntime intra-op threads
    clip_length: int = 0  # 0: from the model's metadata
    width: int = 0  # model input size; 0: the model's own (the motion
    height: int = 0  # size where the model leaves it free)
    stride: int = 4  # run the model every `stride` frames
    replicas: int = 1  # infer worker processes sharing one input ring
    max_batch: int = 0  # clips per model run; 0: the model's limit (see model.py)
    # Overrides of the model's own contract (its ONNX metadata_props); empty: the model's.
    labels: tuple[str, ...] = ()  # one per model output
    layout: str = ""  # NCTHW | NTCHW | NT_CHW | NCHW
    input: str = ""  # rgb | flow | rgb+flow (per frame: rgb, then flow x, y)
    colour_order: str = ""  # rgb | bgr: channel order of the model's colour input
    mean: tuple[float, ...] = ()  # 1 value, or one per channel of `input` (0-255 pixels,
    std: tuple[float, ...] = ()  # flow in pixels/frame at model size): (x - mean) / std
    activation: str = ""  # none | softmax | sigmoid, applied to the model output


@dataclass(frozen=True)
class PerceptionConfig:
    """[perception]: the person models of pipeline "person" (detect stage) and its gate."""

    detector: str = ""  # person detector .onnx; "" -> the shipped NanoDet-g
    pose: str = ""  # pose model .onnx (per person crop); "" -> the shipped MoveNet Lightning
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    threads: int = 1  # onnxruntime intra-op threads per replica
    replicas: int = 1  # detect worker processes shared by every person camera
    min_score: float = 0.4  # person score a detection needs (eval/perception.md)
    max_people: int = 16  # people per frame kept (the best)
    # Batching in a detect replica: it takes the analysed frames of up to batch_frames
    # cameras at once, one per camera (those ready, then waiting at most batch_wait_ms for
    # more) and runs the pose model on all their people in calls of up to pose_batch
    # crops. 1, 0, 1: frame by frame, person by person.
    batch_frames: int = 8
    batch_wait_ms: float = 5.0
    pose_batch: int = 32
    # The gate: a frame moves when at least this share of a small grey image's pixels
    # changed since the last frame; a still scene is analysed at keepalive_fps.
    motion_min_share: float = 0.002
    keepalive_fps: float = 1.0


@dataclass(frozen=True)
class DisplayConfig:
    """[display]: optional local outputs of the overlay stage."""

    mjpeg_listen: str = ""  # "host:port" serves an MJPEG page; "" disables
    window: bool = False  # needs a GUI-capable OpenCV
    record: str = ""  # path of a video file to record the overlay to
    jpeg_quality: int = 80
    mjpeg_max_clients: int = 8  # streams at once; each holds a thread and uplink share
    frame_log: str = ""  # JSON lines, one per displayed frame (frame id, the
    # result joined to it, label): for debugging and tests


@dataclass(frozen=True)
class ClipsConfig:
    """[clips]: a WebM (VP8) clip of each event, from an in-memory pre-roll to a post-roll
    after its end, under <state_dir>/clips/<camera>/<event id>.webm."""

    enabled: bool = True
    pre_roll_s: float = 3.0  # kept before the event's start
    post_roll_s: float = 3.0  # recorded after its end
    max_clip_s: float = 60.0  # a clip is closed at this length, the event going on
    fps: float = 10.0  # frames kept and written per second (at most the camera's)
    max_width: int = 640  # frames are scaled down to this width before buffering
    max_age_days: float = 7.0  # older clips are deleted
    max_total_mb: float = 2048.0  # the oldest clips are deleted beyond this total
    min_free_mb: float = 500.0  # no clip is started with less free on the state dir's disk


@dataclass(frozen=True)
class ActionThreshold:
    """One [[events.actions]] entry: a per-action score threshold."""

    name: str
    threshold: float


@dataclass(frozen=True)
class EventsConfig:
    """[events]: turning per-window scores into start/end events (hysteresis)."""

    start_windows: int = 2  # consecutive windows >= threshold to start an event
    end_windows: int = 2  # consecutive windows below it to end the event
    cooldown_s: float = 5.0  # after an end, the same action waits this long
    threshold: float = 0.6  # default score threshold for every action
    ignore: tuple[str, ...] = ()  # labels that never make events; () -> the model's
    # background labels (still, idle, nobody, background)
    actions: tuple[ActionThreshold, ...] = ()


@dataclass(frozen=True)
class SkeletonModelConfig:
    """One [[people.classifiers]] entry: a user's ONNX skeleton classifier (keypoint
    sequences in, label scores out; the contract is in daemon/people/skeleton.py)."""

    model: str  # path to the .onnx file
    threshold: float = 0.6  # a label's score at or above this counts as 'on'
    ignore: tuple[str, ...] = ()  # labels that never make events


@dataclass(frozen=True)
class PeopleConfig:
    """[people]: tracks and person-centred actions (daemon.people). Every duration is
    in seconds of media time (the frames' capture time); lengths relative to the
    person's size are in body units (torso length, shoulder to hip)."""

    actions: tuple[str, ...] = PEOPLE_ACTIONS  # the rules that make events
    keypoint_score: float = 0.3  # keypoints scored below this are not used
    # Tracker: a detection opens a tentative track; it counts (confirmed) once seen
    # confirm_hits times within confirm_window_s (so the analysis rate must give that
    # many frames in the window); a track unseen lost_after_s ends.
    confirm_hits: int = 3
    confirm_window_s: float = 1.0
    lost_after_s: float = 2.5  # > 1 / perception.keepalive_fps (a still scene)
    match_iou: float = 0.1  # least box overlap to continue a track
    # Hysteresis of every action: on this long to start, off this long to end, then
    # the same action of the same person waits cooldown_s.
    start_s: float = 0.4
    end_s: float = 1.0
    cooldown_s: float = 5.0
    # Walking, over walk_window_s, upright: left/right when the body (hips, else
    # shoulders, else the box centre) crosses the frame at walk_speed body units/s;
    # towards/away when the body's size grows/shrinks by walk_growth of itself per second
    # and its lowest part in view moves down/up the frame by walk_rise body units/s
    # (daemon/people/approach.py).
    walk_window_s: float = 0.6
    walk_speed: float = 1.0
    walk_growth: float = 0.15
    walk_rise: float = 0.5
    # Hands: a wrist this far above its shoulder (body units) is raised; waving is a
    # raised wrist swinging sideways at least wave_swings times (each at least
    # wave_amplitude body units) within wave_window_s; gesturing is a wrist in front of
    # the torso of a person facing the camera, moving at least gesture_speed body units
    # per second over gesture_window_s.
    raised_margin: float = 0.1
    wave_window_s: float = 2.0
    wave_swings: int = 2
    wave_amplitude: float = 0.15
    gesture_window_s: float = 1.0
    gesture_speed: float = 0.5
    # Fall: the hips drop at least fall_drop body units within fall_window_s and the
    # torso ends up more than horizontal_deg from vertical; lying: horizontal lying_s.
    fall_window_s: float = 1.0
    fall_drop: float = 1.0
    horizontal_deg: float = 60.0
    lying_s: float = 10.0
    loiter_s: float = 30.0  # in one zone this long: loitering
    classifiers: tuple[SkeletonModelConfig, ...] = ()


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
class JsonlConfig:
    """[jsonl]: every event record as one JSON line appended (and fsync'd) to a file, for
    log shippers; an event sink with its own queue in the durable outbox."""

    enabled: bool = False
    path: str = "events.jsonl"  # relative paths are under daemon.state_dir
    outbox_max_events: int = 10000


@dataclass(frozen=True)
class ConsoleConfig:
    """[console]: the web console (cameras live, event history with snapshots and clips,
    a JSON API), served by the supervisor; an event sink that keeps its own history."""

    enabled: bool = False
    listen: str = "127.0.0.1:8090"
    # A non-loopback listen needs one of these (check-config refuses it without).
    auth_token_file: str = ""
    auth_token_env: str = ""
    # How others reach it (e.g. "https://box.example:8443" behind a proxy): the base of
    # the clip/snapshot links in MQTT and webhook events; "" derives it from a concrete
    # listen address (none for a wildcard one).
    public_url: str = ""
    # Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto the console believes
    # (addresses or networks, e.g. "127.0.0.1"); a console behind one needs a token.
    trusted_proxies: tuple[str, ...] = ()
    history_max_age_days: float = 30.0
    history_max_events: int = 10000
    history_max_mb: float = 1024.0  # records and snapshots together
    outbox_max_events: int = 10000


@dataclass(frozen=True)
class MetricsConfig:
    """[metrics]: the Prometheus endpoint."""

    listen: str = "127.0.0.1:9108"  # "" disables


@dataclass(frozen=True)
class WebhookConfig:
    """[webhook]: every event record POSTed as JSON to each URL, retried with backoff,
    optionally signed (HMAC-SHA256); an event sink with its own queue in the outbox."""

    enabled: bool = False
    urls: tuple[str, ...] = ()  # http:// or https://; each must take every event
    timeout_s: float = 10.0  # one request as a whole: connect, send, the answer
    retry_min_s: float = 1.0  # backoff after a failed try, doubled per failure
    retry_max_s: float = 300.0  # ... up to this (a longer Retry-After is capped too)
    secret_file: str = ""  # the HMAC secret, from a file or an environment variable
    secret_env: str = ""
    ca_file: str = ""  # https: trust this CA (e.g. a self-signed receiver); "" system CAs
    outbox_max_events: int = 10000


@dataclass(frozen=True)
class Config:
    """The whole configuration file."""

    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    cameras: tuple[CameraConfig, ...] = ()
    motion: MotionConfig = field(default_factory=MotionConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    perception: PerceptionConfig = field(default_factory=PerceptionConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    clips: ClipsConfig = field(default_factory=ClipsConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    people: PeopleConfig = field(default_factory=PeopleConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    jsonl: JsonlConfig = field(default_factory=JsonlConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
