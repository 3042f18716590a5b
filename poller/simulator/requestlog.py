"""The request log: what a client sent and what it got, for assertions on counts/timing.

Credentials are never recorded: only the Authorization *scheme* ("Basic", "Bearer").
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request. `at` is `time.monotonic()` (or the app's injected monotonic clock)."""

    at: float
    method: str
    path: str
    query: dict[str, str]
    user_agent: str | None
    if_none_match: str | None
    if_modified_since: str | None
    auth_scheme: str | None
    status: int


@dataclass
class RequestLog:
    """Thread-safe, append-only list of `LoggedRequest`."""

    _entries: list[LoggedRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def append(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    @property
    def entries(self) -> list[LoggedRequest]:
        """A copy of every entry, oldest first."""
        with self._lock:
            return list(self._entries)

    def matching(self, pattern: str, status: int | None = None) -> list[LoggedRequest]:
        """Entries whose path matches the regex `pattern` (and `status` when given)."""
        return [
            e
            for e in self.entries
            if re.search(pattern, e.path) and (status is None or e.status == status)
        ]

    def statuses(self) -> list[int]:
        return [e.status for e in self.entries]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __iter__(self) -> Iterator[LoggedRequest]:
        return iter(self.entries)
