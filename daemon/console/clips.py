"""Where an event's clip file is, if anywhere: the only way the console finds a file to
serve from an event record.

The record's `clip` is "<camera>/<event id>.webm", relative to <state_dir>/clips. It is
refused (None) when it is not a plain relative path, names `..`, or resolves (symlinks
followed) outside the clips root, or when the file is not there yet (the clip writer
writes `<name>.part` and renames it when the clip is complete).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

CLIPS_DIRNAME = "clips"
CLIP_MEDIA_TYPES = (("webm", "video/webm"), ("mp4", "video/mp4"))


def clip_path(root: Path, name: object) -> Path | None:
    """The file of clip `name` under `root`, or None (see the module docstring)."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        return None
    if name.startswith("/") or any(part in ("..", ".", "") for part in name.split("/")):
        return None
    rel = PurePosixPath(name)
    try:
        base = root.resolve(strict=True)
        target = (base / rel).resolve(strict=True)
    except (OSError, RuntimeError):
        return None  # not there (yet), or a symlink loop
    if not target.is_relative_to(base) or not target.is_file():
        return None
    return target if os.access(target, os.R_OK) else None


def media_type(path: Path) -> str:
    suffix = path.suffix.lstrip(".").lower()
    return next(
        (kind for ext, kind in CLIP_MEDIA_TYPES if ext == suffix), "application/octet-stream"
    )
