"""The one table of capture backends: how a camera's source string is recognised, how the
config loader resolves and checks it, and which backend class decodes it.

A new backend is one module beside this one (a CaptureBackend, see protocol.py) plus one
SourceKind line in SOURCES. Backend classes are named as "module:Class" strings and
imported on first use, so importing this module (the config loader and check-config do)
imports neither cv2 nor numpy.

Kinds are tried in order; the last (a file path) takes any string. Resolvers raise
ValueError with one line naming the problem and the fix; the config loader prefixes the
file and key (`cameras[0].source`).
"""

from __future__ import annotations

import glob
import importlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the protocol module imports numpy: types only here
    from daemon.capture.protocol import CaptureBackend, OpenOptions, SkipFrame

    BackendFactory = Callable[[str, OpenOptions], CaptureBackend]

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets"  # bundled `sample:` clips
SAMPLE_PREFIX = "sample:"
TEST_PREFIX = "test:"
IMAGES_PREFIX = "images:"
TEST_PATTERNS = ("bars", "moving-box", "still")  # drawn by daemon.capture.pattern
_SAMPLE_SUFFIXES = (".mp4", ".mkv", ".avi", ".webm", ".mov")


@dataclass(frozen=True)
class SourceKind:
    """One kind of source. `backend` is "module:Class" (imported when first opened), a
    factory (tests), or None for a kind the config loader resolves into another kind's
    source (a bundled sample becomes a file path).

    live: never ends; a lost stream is released and reopened with backoff.
    ends: a replay that reaches an end (started again when the camera loops).
    """

    name: str
    recognise: Callable[[str], bool]
    resolve: Callable[[str, Path], str]
    backend: str | BackendFactory | None
    live: bool = False
    ends: bool = False


class SourceTable:
    """An ordered, immutable list of SourceKinds; the first that recognises a source wins."""

    def __init__(self, kinds: Sequence[SourceKind]) -> None:
        self.kinds = tuple(kinds)
        names = [k.name for k in self.kinds]
        if len(set(names)) != len(names):
            raise ValueError(f"source kinds named twice: {names}")

    def with_kind(self, kind: SourceKind) -> SourceTable:
        """A copy that tries `kind` before every other (e.g. a test-only backend)."""
        return SourceTable((kind, *self.kinds))

    def kind_of(self, source: str) -> SourceKind:
        """The kind of `source`; the table's last kind should take any string."""
        for kind in self.kinds:
            if kind.recognise(source):
                return kind
        raise ValueError(
            f"no source kind takes {source!r}; use one of {', '.join(k.name for k in self.kinds)}"
        )

    def resolve(self, source: str, config_dir: str | Path) -> str:
        """The source as the source stage opens it; ValueError names the problem."""
        return self.kind_of(source).resolve(source, Path(config_dir))

    def backend(self, source: str, options: OpenOptions) -> CaptureBackend:
        """A new, unopened backend for a resolved `source`; ValueError if unresolved."""
        kind = self.kind_of(source)
        if kind.backend is None:
            raise ValueError(
                f"source {source!r} was not resolved; load the config with "
                "daemon.config.load_config"
            )
        factory = load_backend(kind.backend) if isinstance(kind.backend, str) else kind.backend
        return factory(source, options)


def load_backend(reference: str) -> BackendFactory:
    """The class named by "package.module:Class"."""
    module, _, name = reference.partition(":")
    factory: BackendFactory = getattr(importlib.import_module(module), name)
    return factory


def prefixed(prefix: str) -> Callable[[str], bool]:
    """A recogniser for sources that start with `prefix`."""
    return lambda source: source.startswith(prefix)


def unchanged(source: str, config_dir: Path) -> str:
    """Resolver for sources that are used as written (URLs, devices)."""
    return source


def absolute(value: str, config_dir: Path) -> Path:
    """`value` (with ~ expanded) made absolute against the config file's directory."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else config_dir / path


def resolve_sample(source: str, config_dir: Path) -> str:
    """`sample:<name>`: the absolute path of a clip bundled in daemon/assets."""
    name = source.removeprefix(SAMPLE_PREFIX)
    available = sorted(
        p.name for p in SAMPLES_DIR.iterdir() if p.suffix.lower() in _SAMPLE_SUFFIXES
    )
    if name not in available:
        raise ValueError(
            f"no bundled sample named {name!r}; available: {', '.join(available) or 'none'}"
        )
    return str(SAMPLES_DIR / name)


def check_pattern(source: str, config_dir: Path) -> str:
    """`test:<pattern>`: one of TEST_PATTERNS."""
    if source.removeprefix(TEST_PREFIX) not in TEST_PATTERNS:
        raise ValueError(
            f"unknown test pattern {source!r}; use one of "
            f"{', '.join(TEST_PREFIX + p for p in TEST_PATTERNS)}"
        )
    return source


def resolve_file(source: str, config_dir: Path) -> str:
    """A video file: absolute, and it must exist now."""
    path = absolute(source, config_dir)
    if path.is_dir():
        raise ValueError(
            f"{path} is a directory, not a video file; name one file in it "
            f"(one camera per file; for a folder of images use "
            f"{IMAGES_PREFIX}{path}/*.jpg)"
        )
    if not path.is_file():
        raise ValueError(
            f"video file not found: {path} (relative paths are resolved "
            f"against the config file's directory; for a USB camera use "
            f"/dev/videoN, for a stream rtsp://...)"
        )
    return str(path)


def matching_files(pattern: str) -> list[str]:
    """The files `pattern` (a glob) matches, in natural order (frame_2 before frame_10)."""

    def key(path: str) -> list[str | int]:
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]

    return sorted((p for p in glob.glob(pattern) if os.path.isfile(p)), key=key)


def resolve_images(source: str, config_dir: Path) -> str:
    """`images:<glob>`: an absolute glob that matches at least one file now."""
    pattern = source.removeprefix(IMAGES_PREFIX)
    path = absolute(pattern, config_dir)
    if path.is_dir():
        raise ValueError(
            f"{source!r} is a directory; name the images with a glob such as "
            f"{IMAGES_PREFIX}{path}/*.jpg"
        )
    if not matching_files(str(path)):
        raise ValueError(
            f"{source!r} matches no files ({path}; relative paths are resolved "
            "against the config file's directory)"
        )
    return IMAGES_PREFIX + str(path)


SOURCES = SourceTable(
    [
        SourceKind("sample", prefixed(SAMPLE_PREFIX), resolve_sample, None, ends=True),
        SourceKind(
            "test", prefixed(TEST_PREFIX), check_pattern, "daemon.capture.pattern:PatternCapture"
        ),
        SourceKind(
            "images",
            prefixed(IMAGES_PREFIX),
            resolve_images,
            "daemon.capture.images:ImageSequence",
            ends=True,
        ),
        SourceKind(
            "url", lambda s: "://" in s, unchanged, "daemon.capture.rtsp:StreamCapture", live=True
        ),
        SourceKind(
            "device", prefixed("/dev/"), unchanged, "daemon.capture.v4l2:DeviceCapture", live=True
        ),
        SourceKind(
            "file", lambda s: True, resolve_file, "daemon.capture.file:FileCapture", ends=True
        ),
    ]
)


@dataclass(frozen=True)
class DecodePreset:
    """cameras[].decode: how the FFmpeg backends (files and URLs, daemon.capture.pyav)
    decode a camera's stream. skip_frame is the decoder's AVCodecContext.skip_frame, by
    the name PyAV gives it ("DEFAULT": every frame; "NONREF": frames no other frame
    refers to are dropped before decoding). V4L2 devices (OpenCV) have no such choice.
    """

    name: str
    skip_frame: SkipFrame
    cost: str  # what it gives up, for the config's and the README's text


DECODE_PRESETS = MappingProxyType(
    {
        "all": DecodePreset("all", "DEFAULT", "every frame of the stream is decoded and shown"),
        # The frames OpenCV's reader gave with its "avdiscard;nonref" option, whole. On
        # the made 1080p15 H.264 stream of `actiond bench load` (x264, B-frames): 15 ->
        # 8.2 fps decoded (README "Performance").
        "reference": DecodePreset(
            "reference",
            "NONREF",
            "frames no other frame refers to (most B-frames) are skipped: fewer, unevenly "
            "spaced frames, each whole; no saving on a stream without B-frames",
        ),
    }
)


def source_kind(source: str) -> str:
    """The name of `source`'s kind in SOURCES ("sample", "test", "url", ...)."""
    return SOURCES.kind_of(source).name


def resolve_source(source: str, config_dir: str | Path) -> str:
    """`source` resolved by its kind in SOURCES (see SourceTable.resolve)."""
    return SOURCES.resolve(source, config_dir)
