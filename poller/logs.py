"""structlog set-up: JSON lines when not on a terminal (journald), readable on a terminal.

A redaction processor is the second line of defence for secrets: values of keys that look
like credentials are replaced, and any registered secret string is masked wherever it
appears in a log line (nested dicts and lists included).

Lines from the standard library's `logging` (APScheduler, handlers that use `logging`) go
through the same processors and renderer, so journald gets one format.

A log line that cannot be written (a closed pipe, a full disk, journald restarting) never
raises into the caller: it goes to stderr instead when the log stream was something else,
and is dropped otherwise. Logging must never be what keeps the daemon from stopping.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = re.compile(
    r"^(pass|passwd)$|password|secret|token|authorization|api_key|webhook_url", re.I
)
_secrets: set[str] = set()
MASK = "**********"


def register_secrets(values: Iterable[str]) -> None:
    """Strings that must never appear in a log line (at least 4 characters)."""
    _secrets.update(v for v in values if v and len(v) >= 4)


def _mask(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        # longest first, so a secret that contains another is masked whole
        for s in sorted(_secrets, key=len, reverse=True):
            if s in value:
                value = value.replace(s, MASK)
        return value
    if depth > 5:
        return value
    if isinstance(value, dict):
        return {
            k: MASK if isinstance(k, str) and _SECRET_KEYS.search(k) else _mask(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_mask(v, depth + 1) for v in value]
    if isinstance(value, BaseException):
        return _mask(f"{type(value).__name__}: {value}", depth + 1)
    return value


def mask_text(value: str) -> str:
    """`value` with every registered secret masked (for texts stored, not only logged)."""
    return str(_mask(value))


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key != "event" and _SECRET_KEYS.search(key):
            event_dict[key] = MASK
        else:
            event_dict[key] = _mask(event_dict[key])
    return event_dict


class SafeStream:
    """A text stream whose writes never raise: on failure the line goes to stderr (when the
    stream was not stderr already) or is dropped. Wraps the stream the logs go to."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.failed = 0  # lines that could not be written to `stream`

    def _fallback(self, text: str) -> None:
        err = sys.stderr
        if err is None or self.stream is err or self.stream is sys.__stderr__:
            return
        try:
            err.write(text)
            err.flush()
        except (OSError, ValueError):
            return

    def write(self, text: str) -> int:
        try:
            self.stream.write(text)
        except (OSError, ValueError):  # EPIPE, ENOSPC, EIO, a closed file
            self.failed += 1
            self._fallback(text)
        return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            self.failed += 1

    def isatty(self) -> bool:
        try:
            return bool(self.stream.isatty())
        except (OSError, ValueError, AttributeError):
            return False


def _renderer(fmt: str) -> Any:
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=False)
    return structlog.processors.JSONRenderer()


def configure(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    """Set up structlog (and route stdlib `logging` through it) at `level`."""
    stream = SafeStream(stream or sys.stderr)
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    numeric = getattr(logging, level.upper())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            redact,
            _renderer(fmt),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact,
                _renderer(fmt),
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_bcx_poller", False)]:
        root.removeHandler(old)
    handler._bcx_poller = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric)
    # APScheduler says "Running job ..." / "executed successfully" at INFO every cycle
    # httpx logs every request at INFO (the client logs what matters itself)
    for name in ("apscheduler", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
