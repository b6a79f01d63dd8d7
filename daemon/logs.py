"""Logging to stderr in a form journald reads well.

Under systemd (JOURNAL_STREAM is set) each line starts with a `<N>` syslog priority,
which journald turns into the entry's PRIORITY and strips; it adds its own timestamp.
On a terminal, lines carry a timestamp instead.
"""

from __future__ import annotations

import logging
import os
import sys
from types import MappingProxyType

_SYSLOG_PRIORITY = MappingProxyType(
    {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}
)


class JournalFormatter(logging.Formatter):
    """Prefixes each record with its syslog priority for journald."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
        return f"<{priority}>{super().format(record)}"


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(processName)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
