"""Logging set-up: structlog, configured once, with allowlist redaction.

JSON lines when standard error is not a terminal, readable console output when it is.
Account attributes are personal data: only the fields named in :data:`ALLOWED_FIELDS`
reach the output; any other key's value is replaced by ``"[redacted]"``, so a payload
passed to a log call by mistake never gets out.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

#: Fields a log event may carry verbatim: counts, ids of infrastructure, reasons we wrote.
ALLOWED_FIELDS = frozenset(
    {
        "event",
        "level",
        "timestamp",
        "logger",
        "exc_info",
        "topic",
        "partition",
        "partitions",
        "offset",
        "from_offset",
        "to_offset",
        "reason",
        "error",
        "records",
        "verdicts",
        "events",
        "batches",
        "aborted_batches",
        "delete_guard_trips",
        "duration_ms",
        "duration_s",
        "backoff_s",
        "source_id",
        "aggregation_id",
        "status",
        "mode",
        "deleted_events",
        "suppressed",
        "previous_accounts",
        "threshold_percent",
        "deletes_suppressed",
        "sources",
        "rejected",
        "bootstrap_servers",
        "group_id",
        "instance_id",
        "guarantee",
        "state_dir",
        "count",
        "accounts",
        "path",
        "port",
        "host",
        "remediations",
        "url",
        "commit_ms",
        "held_back",
    }
)
REDACTED = "[redacted]"


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: replace the value of every key not in the allowlist."""
    for key in list(event_dict):
        if key not in ALLOWED_FIELDS:
            event_dict[key] = REDACTED
    return event_dict


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog for the process (idempotent)."""
    console = sys.stderr.isatty() if fmt == "auto" else fmt == "console"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=True)
        if console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
