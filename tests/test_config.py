"""config.toml loading: every bad config names its key and reason; good ones resolve."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import pytest

from daemon.config import (
    ASSETS_DIR,
    Config,
    ConfigError,
    default_device_id,
    default_state_dir,
    load_config,
    parse_listen,
    resolve_source,
    source_kind,
)

pytestmark = pytest.mark.timeout(30)

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CLIP = "one-by-one-person-detection.mp4"
# A camera that needs no file, so each case below changes exactly one thing.
BASE_CAMERA = '[[cameras]]\nname = "cam"\nsource = "test:bars"\n'


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.file == str(path)
    return info.value


# (id, config text, expected key, text the reason must contain)
BAD_CONFIGS = [
    # wrong types
    (
        "int-as-string",
        BASE_CAMERA + 'width = "640"\n',
        "cameras[0].width",
        "must be an integer (got string '640')",
    ),
    (
        "bool-is-not-int",
        BASE_CAMERA + "height = true\n",
        "cameras[0].height",
        "must be an integer (got boolean true)",
    ),
    (
        "float-for-int",
        BASE_CAMERA + "ring_capacity = 4.5\n",
        "cameras[0].ring_capacity",
        "must be an integer (got float 4.5)",
    ),
    (
        "int-for-bool",
        BASE_CAMERA + "enabled = 1\n",
        "cameras[0].enabled",
        "must be a boolean (true or false) (got integer 1)",
    ),
    (
        "string-for-float",
        BASE_CAMERA + '[daemon]\nstatus_interval_s = "5"\n',
        "daemon.status_interval_s",
        "must be a number (got string '5')",
    ),
    (
        "bool-for-float",
        BASE_CAMERA + "[daemon]\ncrash_window_s = false\n",
        "daemon.crash_window_s",
        "must be a number (got boolean false)",
    ),
    (
        "infinite-float",
        BASE_CAMERA + "[daemon]\nstable_after_s = inf\n",
        "daemon.stable_after_s",
        "must be a finite number (got inf)",
    ),
    (
        "crop-too-short",
        BASE_CAMERA + "crop = [0, 0, 10]\n",
        "cameras[0].crop",
        "must be an array of 4 integers (got an array of 3)",
    ),
    (
        "crop-item-type",
        BASE_CAMERA + 'crop = [0, 0, "w", 10]\n',
        "cameras[0].crop[2]",
        "must be an integer (got string 'w')",
    ),
    (
        "providers-not-array",
        BASE_CAMERA + '[inference]\nproviders = "CPUExecutionProvider"\n',
        "inference.providers",
        "must be an array of strings",
    ),
    (
        "provider-item-type",
        BASE_CAMERA + "[inference]\nproviders = [1]\n",
        "inference.providers[0]",
        "must be a string (got integer 1)",
    ),
    (
        "section-not-table",
        "metrics = 5\n" + BASE_CAMERA,
        "metrics",
        "must be a table (got integer 5)",
    ),
    (
        "cameras-as-table",
        '[cameras]\nname = "cam"\nsource = "test:bars"\n',
        "cameras",
        "each entry written as [[cameras]]",
    ),
    (
        "datetime",
        BASE_CAMERA + "[mqtt]\nhost = 1979-05-27\n",
        "mqtt.host",
        "must be a string (got date/time 1979-05-27)",
    ),
    # unknown keys, at each level
    (
        "unknown-top-level",
        BASE_CAMERA + "[camera]\nname = 'x'\n",
        "camera",
        "unknown key (did you mean 'cameras'?)",
    ),
    (
        "unknown-daemon-key",
        BASE_CAMERA + "[daemon]\nloglevel = 'info'\n",
        "daemon.loglevel",
        "did you mean 'log_level'?",
    ),
    (
        "unknown-camera-key",
        BASE_CAMERA + "ring_polcy = 'block'\n",
        "cameras[0].ring_polcy",
        "did you mean 'ring_policy'?",
    ),
    (
        "unknown-second-camera-key",
        BASE_CAMERA + '[[cameras]]\nname = "b"\nsource = "test:bars"\ncolour = 1\n',
        "cameras[1].colour",
        "valid keys here: analyse_fps, crop, decode, enabled, fps",
    ),
    (
        "unknown-motion-key",
        BASE_CAMERA + "[motion]\nalgorithm = 'dis'\n",
        "motion.algorithm",
        "unknown key",
    ),
    (
        "unknown-inference-key",
        BASE_CAMERA + "[inference]\nthread = 2\n",
        "inference.thread",
        "did you mean 'threads'?",
    ),
    (
        "unknown-display-key",
        BASE_CAMERA + "[display]\nmjpeg = '127.0.0.1:1'\n",
        "display.mjpeg",
        "valid keys here: frame_log, jpeg_quality, mjpeg_listen, mjpeg_max_clients, record",
    ),
    ("unknown-mqtt-key", BASE_CAMERA + "[mqtt]\nqos = 1\n", "mqtt.qos", "unknown key"),
    (
        "unknown-metrics-key",
        BASE_CAMERA + "[metrics]\nport = 9108\n",
        "metrics.port",
        "valid keys here: listen",
    ),
    # bad enums
    (
        "ring-policy",
        BASE_CAMERA + 'ring_policy = "drop"\n',
        "cameras[0].ring_policy",
        "must be one of block, drop_oldest, drop_newest (got 'drop')",
    ),
    (
        "decode-preset",
        BASE_CAMERA + 'decode = "fast"\n',
        "cameras[0].decode",
        "must be one of all, reference (got 'fast')",
    ),
    (
        "motion-method",
        BASE_CAMERA + '[motion]\nmethod = "lk"\n',
        "motion.method",
        "must be one of dis, farneback (got 'lk')",
    ),
    (
        "log-level",
        BASE_CAMERA + '[daemon]\nlog_level = "verbose"\n',
        "daemon.log_level",
        "must be one of debug, info, warning, error, critical (got 'verbose')",
    ),
    (
        "provider-name",
        BASE_CAMERA + '[inference]\nproviders = ["CUDA"]\n',
        "inference.providers[0]",
        "onnxruntime provider name",
    ),
    (
        "no-providers",
        BASE_CAMERA + "[inference]\nproviders = []\n",
        "inference.providers",
        "at least one provider",
    ),
    # out of range
    (
        "ring-capacity",
        BASE_CAMERA + "ring_capacity = 1\n",
        "cameras[0].ring_capacity",
        "must be >= 2 (got 1)",
    ),
    ("zero-width", BASE_CAMERA + "width = 0\n", "cameras[0].width", "must be > 0 (got 0)"),
    (
        "negative-fps",
        BASE_CAMERA + "fps = -1\n",
        "cameras[0].fps",
        "must be 0 (the source's own rate) or between 0.1 and 240 frames per second (got -1.0)",
    ),
    (
        "vanishing-fps",
        BASE_CAMERA + "fps = 1e-9\n",
        "cameras[0].fps",
        "or between 0.1 and 240 frames per second (got 1e-09)",
    ),
    (
        "heartbeat-timeout",
        BASE_CAMERA + "[daemon]\nheartbeat_timeout_s = 1e-9\n",
        "daemon.heartbeat_timeout_s",
        "must be between 1 and 3600 s (got 1e-09)",
    ),
    (
        "status-interval",
        BASE_CAMERA + "[daemon]\nstatus_interval_s = 0.0\n",
        "daemon.status_interval_s",
        "must be between 0.1 and 86400 s (got 0.0)",
    ),
    (
        "restart-backoff-huge",
        BASE_CAMERA + "[daemon]\nrestart_backoff_max_s = 1e300\n",
        "daemon.restart_backoff_max_s",
        "must be between 0.01 and 3600 s (got 1e+300)",
    ),
    (
        "read-timeout",
        BASE_CAMERA + "read_timeout_s = 0.0001\n",
        "cameras[0].read_timeout_s",
        "must be between 0.1 and 3600 s (got 0.0001)",
    ),
    (
        "open-timeout-huge",
        BASE_CAMERA + "open_timeout_s = 1e9\n",
        "cameras[0].open_timeout_s",
        "must be between 0.1 and 3600 s",
    ),
    (
        "reconnect-backoff-zero",
        BASE_CAMERA + "reconnect_backoff_min_s = 0.0\n",
        "cameras[0].reconnect_backoff_min_s",
        "must be between 0.01 and 3600 s (got 0.0)",
    ),
    (
        "cooldown",
        BASE_CAMERA + "[events]\ncooldown_s = -1.0\n",
        "events.cooldown_s",
        "must be between 0 and 86400 s (got -1.0)",
    ),
    (
        "motion-height",
        BASE_CAMERA + "[motion]\nheight = -5\n",
        "motion.height",
        "must be > 0 (got -5)",
    ),
    (
        "stride",
        BASE_CAMERA + "[inference]\nstride = 0\n",
        "inference.stride",
        "must be >= 1 (got 0)",
    ),
    (
        "replicas",
        BASE_CAMERA + "[inference]\nreplicas = 0\n",
        "inference.replicas",
        "must be >= 1 (got 0)",
    ),
    (
        "threads",
        BASE_CAMERA + "[inference]\nthreads = -1\n",
        "inference.threads",
        "must be >= 0 (got -1)",
    ),
    (
        "jpeg-quality",
        BASE_CAMERA + "[display]\njpeg_quality = 101\n",
        "display.jpeg_quality",
        "must be 1-100 (got 101)",
    ),
    ("mqtt-port", BASE_CAMERA + "[mqtt]\nport = 0\n", "mqtt.port", "must be 1-65535 (got 0)"),
    (
        "crash-budget",
        BASE_CAMERA + "[daemon]\ncrash_budget = 0\n",
        "daemon.crash_budget",
        "must be >= 1 (got 0)",
    ),
    (
        "restart-backoff",
        BASE_CAMERA + "[daemon]\nrestart_backoff_min_s = 40.0\n",
        "daemon.restart_backoff_min_s",
        "must be <= restart_backoff_max_s (40 > 30)",
    ),
    (
        "reconnect-backoff",
        BASE_CAMERA + "reconnect_backoff_max_s = 0.1\n",
        "cameras[0].reconnect_backoff_min_s",
        "must be <= reconnect_backoff_max_s (0.5 > 0.1)",
    ),
    (
        "crop-values",
        BASE_CAMERA + "crop = [-1, 0, 10, 10]\n",
        "cameras[0].crop",
        "x, y >= 0 and w, h > 0 (got [-1, 0, 10, 10])",
    ),
    (
        "listen-no-port",
        BASE_CAMERA + '[metrics]\nlisten = "9108"\n',
        "metrics.listen",
        'must be "host:port"',
    ),
    (
        "listen-port-range",
        BASE_CAMERA + '[display]\nmjpeg_listen = "127.0.0.1:70000"\n',
        "display.mjpeg_listen",
        "port must be 0-65535 (got 70000)",
    ),
    (
        "listen-clash",
        BASE_CAMERA + '[display]\nmjpeg_listen = "127.0.0.1:9108"\n',
        "display.mjpeg_listen",
        "127.0.0.1:9108 is also metrics.listen",
    ),
    (
        "listen-clash-any-host",
        BASE_CAMERA + '[display]\nmjpeg_listen = ":9108"\n',
        "display.mjpeg_listen",
        ":9108 is also metrics.listen (127.0.0.1:9108)",
    ),
    (
        "derived-mjpeg-port-is-metrics",
        BASE_CAMERA + '[[cameras]]\nname = "off"\nsource = "test:bars"\nenabled = false\n'
        '[[cameras]]\nname = "yard"\nsource = "test:bars"\n'
        '[display]\nmjpeg_listen = "127.0.0.1:9107"\n',
        "display.mjpeg_listen",
        "camera yard (cameras[2]) would serve MJPEG on port 9108 (this port + its index 1 "
        "among the enabled cameras), which is also metrics.listen (127.0.0.1:9108)",
    ),
    (
        "derived-mjpeg-port-range",
        BASE_CAMERA + '[[cameras]]\nname = "yard"\nsource = "test:bars"\n'
        '[display]\nmjpeg_listen = "127.0.0.1:65535"\n',
        "display.mjpeg_listen",
        "camera yard (cameras[1]) would serve MJPEG on port 65536",
    ),
    (
        "listen-bare-ipv6",
        BASE_CAMERA + '[metrics]\nlisten = "::1:9108"\n',
        "metrics.listen",
        '"[::1]:9108"',
    ),
    # names and cameras
    (
        "duplicate-name",
        BASE_CAMERA + '[[cameras]]\nname = "b"\nsource = "test:bars"\n'
        '[[cameras]]\nname = "cam"\nsource = "test:bars"\n',
        "cameras[2].name",
        "duplicate camera name 'cam' (also cameras[0].name)",
    ),
    (
        "name-with-space",
        '[[cameras]]\nname = "front door"\nsource = "test:bars"\n',
        "cameras[0].name",
        "must be letters, digits, '_' or '-' (got 'front door')",
    ),
    (
        "mqtt-wildcard-name",
        '[[cameras]]\nname = "a+b"\nsource = "test:bars"\n',
        "cameras[0].name",
        "MQTT topic level",
    ),
    (
        "long-camera-name",
        f'[[cameras]]\nname = "{"c" * 250}"\nsource = "test:bars"\n',
        "cameras[0].name",
        "must be at most 64 characters (got 250): it becomes part of "
        "shared-memory and recording file names",
    ),
    (
        "long-device-id",
        BASE_CAMERA + f'[daemon]\ndevice_id = "{"d" * 65}"\n',
        "daemon.device_id",
        "must be at most 64 characters (got 65)",
    ),
    (
        "long-mqtt-prefix",
        BASE_CAMERA + f'[mqtt]\ndiscovery_prefix = "{"p" * 1025}"\n',
        "mqtt.discovery_prefix",
        "must be at most 1024 characters (got 1025)",
    ),
    (
        "long-label",
        BASE_CAMERA + f'[inference]\nlabels = ["a", "{"b" * 65}"]\n',
        "inference.labels",
        "at most 64 characters (got one of 65)",
    ),
    (
        "device-id",
        BASE_CAMERA + '[daemon]\ndevice_id = "box/1"\n',
        "daemon.device_id",
        "got 'box/1'",
    ),
    ("mqtt-prefix", BASE_CAMERA + '[mqtt]\nprefix = "a/#"\n', "mqtt.prefix", "without '+', '#'"),
    ("no-cameras", "[daemon]\nlog_level = 'info'\n", "cameras", "no enabled camera"),
    ("all-disabled", BASE_CAMERA + "enabled = false\n", "cameras", "no enabled camera"),
    (
        "missing-source",
        '[[cameras]]\nname = "cam"\n',
        "cameras[0].source",
        "required key is missing",
    ),
    (
        "empty-source",
        '[[cameras]]\nname = "cam"\nsource = ""\n',
        "cameras[0].source",
        "must not be empty",
    ),
    # missing files
    (
        "directory-as-video",
        '[[cameras]]\nname = "cam"\nsource = "."\n',
        "cameras[0].source",
        "is a directory, not a video file",
    ),
    (
        "missing-video",
        '[[cameras]]\nname = "cam"\nsource = "clips/nope.mp4"\n',
        "cameras[0].source",
        "video file not found: ",
    ),
    (
        "mjpeg-max-clients-zero",
        BASE_CAMERA + "[display]\nmjpeg_max_clients = 0\n",
        "display.mjpeg_max_clients",
        "must be >= 1",
    ),
    (
        "unknown-test-pattern",
        '[[cameras]]\nname = "c"\nsource = "test:plaid"\n',
        "cameras[0].source",
        "unknown test pattern 'test:plaid'; use one of test:bars, test:moving-box, test:still",
    ),
    (
        "missing-sample",
        '[[cameras]]\nname = "cam"\nsource = "sample:nope.mp4"\n',
        "cameras[0].source",
        f"no bundled sample named 'nope.mp4'; available: {SAMPLE_CLIP}",
    ),
    (
        "missing-shm-dir",
        BASE_CAMERA + '[daemon]\nshm_dir = "/nonexistent/shm"\n',
        "daemon.shm_dir",
        "directory not found: /nonexistent/shm",
    ),
    (
        "missing-model",
        BASE_CAMERA + '[inference]\nmodel = "models/nope.onnx"\n',
        "inference.model",
        "file not found: ",
    ),
    (
        "missing-record-dir",
        BASE_CAMERA + '[display]\nrecord = "no/such/dir/out.mp4"\n',
        "display.record",
        "directory not found: ",
    ),
    (
        "missing-frame-log-dir",
        BASE_CAMERA + '[display]\nframe_log = "no/dir/frames.jsonl"\n',
        "display.frame_log",
        "directory not found: ",
    ),
    (
        "missing-password-file",
        BASE_CAMERA + '[mqtt]\nenabled = true\npassword_file = "secret.txt"\n',
        "mqtt.password_file",
        "file not found: ",
    ),
    (
        "two-passwords",
        BASE_CAMERA + '[mqtt]\npassword = "x"\npassword_env = "MQTT_PASSWORD"\n',
        "mqtt.password_env",
        "set only one of password, password_file, password_env",
    ),
    ("ca-without-tls", BASE_CAMERA + '[mqtt]\nca_file = "ca.pem"\n', "mqtt.ca_file", "tls = false"),
]


@pytest.mark.parametrize(
    ("text", "key", "reason"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_bad_config_names_key_and_reason(tmp_path: Path, text: str, key: str, reason: str) -> None:
    err = load_error(tmp_path, text)
    assert err.key == key
    assert reason in err.reason
    assert str(err) == f"{tmp_path / 'config.toml'}: {key}: {err.reason}"


def test_error_message_format(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        BASE_CAMERA + '[[cameras]]\nname = "b"\nsource = "test:bars"\nring_policy = "drop"\n',
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}: cameras[1].ring_policy: must be one of block, "
        "drop_oldest, drop_newest (got 'drop')"
    )


def test_missing_file_paths_are_resolved_against_config_dir(tmp_path: Path) -> None:
    err = load_error(tmp_path, '[[cameras]]\nname = "cam"\nsource = "clips/nope.mp4"\n')
    assert str(tmp_path / "clips" / "nope.mp4") in err.reason
    err = load_error(tmp_path, BASE_CAMERA + '[inference]\nmodel = "m.onnx"\n')
    assert str(tmp_path / "m.onnx") in err.reason


def test_names_that_end_up_in_file_names_fit_them(tmp_path: Path) -> None:
    # The event socket lives in shm_dir; a Unix socket path holds 107 bytes.
    deep = tmp_path / ("s" * 60) / ("h" * 40)
    deep.mkdir(parents=True)
    err = load_error(tmp_path, BASE_CAMERA + f'[daemon]\nshm_dir = "{deep}"\n')
    assert err.key == "daemon.shm_dir" and "leave room for the event socket" in err.reason
    # Each camera records to <stem>-<camera>.mp4: the longest names must fit a file name.
    camera = f'[[cameras]]\nname = "{"c" * 64}"\nsource = "test:bars"\n'
    err = load_error(tmp_path, camera + f'[display]\nrecord = "{"r" * 190}.mp4"\n')
    assert err.key == "display.record" and f"{'c' * 64}.mp4, too long" in err.reason
    config = load_config(write(tmp_path, camera + f'[display]\nrecord = "{"r" * 160}.mp4"\n'))
    assert config.cameras[0].name == "c" * 64


def test_malformed_toml_reports_line(tmp_path: Path) -> None:
    err = load_error(tmp_path, BASE_CAMERA + '[daemon]\nlog_level = = "info"\n[motion]\n')
    assert err.key == ""
    assert "not valid TOML" in err.reason
    assert "line 5" in err.reason
    assert str(err).startswith(f"{tmp_path / 'config.toml'}: not valid TOML")


def test_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"[daemon]\ndevice_id = '\xff'\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_missing_and_unreadable_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.toml")
    assert info.value.key == ""
    assert "config file not found" in info.value.reason
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path)  # a directory


def test_shipped_config_loads() -> None:
    config = load_config(REPO_ROOT / "config.toml")
    (demo,) = config.cameras
    assert demo.name == "demo"
    assert demo.source == str(ASSETS_DIR / SAMPLE_CLIP)
    assert Path(demo.source).is_file()
    assert (demo.realtime, demo.loop, demo.ring_policy) == (True, True, "drop_oldest")
    assert config.mqtt.enabled is False
    assert config.metrics.listen == "127.0.0.1:9108"
    # The web console shows every camera on one port; the old per-camera page is off.
    assert config.display.mjpeg_listen == ""
    assert (config.console.enabled, config.console.listen) == (True, "127.0.0.1:8090")
    assert Path(config.daemon.state_dir).is_absolute()


def test_shipped_config_sets_every_key() -> None:
    # The shipped file documents every key: compare its tables with the dataclasses.
    text = (REPO_ROOT / "config.toml").read_text(encoding="utf-8")
    for section in dataclasses.fields(Config):
        if section.name == "cameras":
            continue
        cls = type(getattr(Config(), section.name))
        for f in dataclasses.fields(cls):
            assert f"\n{f.name} = " in text, f"config.toml does not show {section.name}.{f.name}"


def test_types_are_converted(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            BASE_CAMERA + "crop = [1, 2, 30, 40]\nfps = 15\n"
            '[inference]\nproviders = ["CPUExecutionProvider"]\n'
            "[daemon]\nstatus_interval_s = 5\n",
        )
    )
    cam = config.cameras[0]
    assert cam.crop == (1, 2, 30, 40)
    assert isinstance(cam.fps, float) and cam.fps == 15.0
    assert config.inference.providers == ("CPUExecutionProvider",)
    assert isinstance(config.daemon.status_interval_s, float)
    assert load_config(write(tmp_path, BASE_CAMERA, "b.toml")).cameras[0].crop is None


def test_sources_resolve(tmp_path: Path) -> None:
    (tmp_path / "clips").mkdir()
    clip = tmp_path / "clips" / "c.mp4"
    clip.write_bytes(b"\0")  # the loader checks existence only; the source stage decodes
    config = load_config(
        write(
            tmp_path,
            (
                '[[cameras]]\nname = "file"\nsource = "clips/c.mp4"\n'
                '[[cameras]]\nname = "sample"\nsource = "sample:one-by-one-person-detection.mp4"\n'
                '[[cameras]]\nname = "rtsp"\nsource = "rtsp://10.0.0.9:554/s"\n'
                '[[cameras]]\nname = "usb"\nsource = "/dev/video7"\n'
                '[[cameras]]\nname = "pattern"\nsource = "test:bars"\n'
            ),
        )
    )
    sources = [c.source for c in config.cameras]
    assert sources == [
        str(clip),
        str(ASSETS_DIR / SAMPLE_CLIP),
        "rtsp://10.0.0.9:554/s",
        "/dev/video7",
        "test:bars",
    ]
    assert [
        source_kind(s) for s in ("sample:x", "test:y", "http://h/v", "/dev/video0", "a.mp4")
    ] == ["sample", "test", "url", "device", "file"]
    assert resolve_source("sample:" + SAMPLE_CLIP, "/elsewhere") == str(ASSETS_DIR / SAMPLE_CLIP)
    with pytest.raises(ValueError, match="video file not found"):
        resolve_source("c.mp4", tmp_path)


def test_paths_resolved_against_config_dir(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"\0")
    (tmp_path / "pw").write_text("secret")
    config = load_config(
        write(
            tmp_path,
            BASE_CAMERA
            + (
                '[daemon]\nstate_dir = "state"\n[inference]\nmodel = "m.onnx"\n'
                '[display]\nrecord = "out.mp4"\nframe_log = "f.jsonl"\n'
                '[mqtt]\nenabled = true\npassword_file = "pw"\n'
            ),
        )
    )
    assert config.daemon.state_dir == str(tmp_path / "state")
    assert config.inference.model == str(tmp_path / "m.onnx")
    assert config.display.record == str(tmp_path / "out.mp4")
    assert config.display.frame_log == str(tmp_path / "f.jsonl")
    assert config.mqtt.password_file == str(tmp_path / "pw")


def test_disabled_parts_need_no_files(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            BASE_CAMERA
            + (
                '[[cameras]]\nname = "later"\nsource = "absent.mp4"\nenabled = false\n'
                '[mqtt]\npassword_file = "absent"\n'
            ),
        )
    )
    assert config.mqtt.password_file == "absent"
    assert config.cameras[1].source == "absent.mp4"


@pytest.mark.parametrize(
    ("hostname", "expected"),
    [
        ("edge-01", "edge-01"),
        ("cam-box.local", "cam-box-local"),
        ("..", "actiond"),
        ("Lab PC #3", "Lab-PC-3"),
    ],
)
def test_device_id_defaults_to_the_host_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hostname: str, expected: str
) -> None:
    # Boxes left at the default must not share an MQTT client id and topics.
    monkeypatch.setattr(socket, "gethostname", lambda: hostname)
    assert default_device_id() == expected
    assert load_config(write(tmp_path, BASE_CAMERA)).daemon.device_id == expected
    chosen = load_config(write(tmp_path, BASE_CAMERA + '[daemon]\ndevice_id = "gate"\n'))
    assert chosen.daemon.device_id == "gate"


def test_default_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/actiond:/var/lib/other")
    assert default_state_dir() == Path("/var/lib/actiond")
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_state_dir() == tmp_path / "actiond"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_state_dir() == tmp_path / "home" / ".local" / "state" / "actiond"
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/actiond")
    config = load_config(write(tmp_path, BASE_CAMERA))
    assert config.daemon.state_dir == "/var/lib/actiond"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9108", ("127.0.0.1", 9108)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:8090", ("::1", 8090)),
        ("localhost:80", ("localhost", 80)),
        (":9108", ("", 9108)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9108", "host:", "host:x", "::1:80", "h:65536", ""])
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)
