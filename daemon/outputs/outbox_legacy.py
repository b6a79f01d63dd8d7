"""The MQTT-only outbox of earlier releases (mqtt-outbox.sqlite3), imported at start.

That file held MQTT messages: a row per event (its MQTT JSON record) and a row per
snapshot (key `<event key>:attachment`, the JPEG). Its pending events are moved into the
event outbox as pending for the `mqtt` sink, with their snapshots, in their order; then
the old file is renamed to `<name>.imported` so the import runs once. A start killed
between the two imports again and skips the events already there (their keys are
unique): nothing is lost and nothing doubled.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

from daemon.outputs.outbox import Outbox, OutboxError

log = logging.getLogger(__name__)

LEGACY_OUTBOX_FILENAME = "mqtt-outbox.sqlite3"
LEGACY_SINK = "mqtt"
IMPORTED_SUFFIX = ".imported"
_ATTACHMENT_SUFFIX = ":attachment"
_SIDE_FILES = ("-wal", "-shm")


def import_legacy_outbox(outbox: Outbox, state_dir: Path) -> int:
    """Move the pending events of state_dir's old MQTT outbox into `outbox`: the number
    imported (0 when there is no old file). OutboxError when it cannot be read."""
    old = Path(state_dir) / LEGACY_OUTBOX_FILENAME
    if not old.exists():
        return 0
    events = _read(old)
    stored = outbox.import_pending(LEGACY_SINK, events)
    for suffix in ("", *_SIDE_FILES):
        part = old.with_name(old.name + suffix)
        if part.exists():
            part.rename(part.with_name(old.name + IMPORTED_SUFFIX + suffix))
    log.info(
        "event outbox: imported %d pending MQTT events from %s (renamed to %s%s)",
        stored,
        old,
        old.name,
        IMPORTED_SUFFIX,
    )
    return stored


def _read(path: Path) -> list[tuple[str, dict[str, Any], bytes | None, float]]:
    try:
        conn = sqlite3.connect(str(path))
        try:
            rows = conn.execute(
                "SELECT event_id, payload, created_at FROM outbox ORDER BY seq"
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise OutboxError(
            f"cannot read the previous release's MQTT outbox {path}: {exc}. "
            f"Move it aside (its pending alerts are then lost) and start "
            f"again"
        ) from exc
    snapshots = {
        str(key).removesuffix(_ATTACHMENT_SUFFIX): bytes(payload)
        for key, payload, _ in rows
        if str(key).endswith(_ATTACHMENT_SUFFIX)
    }
    events = []
    for key, payload, created_at in rows:
        if str(key).endswith(_ATTACHMENT_SUFFIX):
            continue
        record = json.loads(bytes(payload))
        record.pop("has_snapshot", None)  # the MQTT sink says it again when it sends
        events.append((str(key), record, snapshots.get(str(key)), float(created_at)))
    return events
