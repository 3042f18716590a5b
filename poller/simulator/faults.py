"""Fault injection: make chosen requests misbehave, a set number of times.

    app.faults.add(r"/todos\\.json$", 503, times=2)            two 503s, then normal
    app.faults.add(r"events", 429, retry_after=3)              429 + `Retry-After: 3`
    app.faults.add(r"events", 429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    app.faults.add(r"projects", "truncated")                   cut JSON, every time
    app.faults.add(r"people", None, delay=2.0)                 normal answer, 2 s late
    app.faults.add(r"people", None, hang=True)                 never answers

`match` is a regex searched in the request path (e.g. `/999/api/v1/projects.json`) or a
callable taking the `SimRequest` and returning bool. The first matching fault with uses
left applies; `times=None` means forever.

`status` is an HTTP status (the response is that status with a small HTML body; 429 and
503 get `Retry-After` when `retry_after` is given) or one of these kinds, applied to
the real response of a successful request:

    html          200, `text/html` maintenance page instead of JSON
    truncated     200, the real JSON cut in half
    object        200, `{}` where the endpoint returns a list (or `[]` where a dict)
    wrong_types   200, real JSON with every int turned into a string and every
                  `*_at` value into an int
    invalid_utf8  200, the real body with invalid UTF-8 bytes inside it
    huge          200, a valid JSON list of about `size` bytes (default 16 MiB)
    empty         200, an empty body with a JSON content type
    stale_304     304 whenever the request carries If-None-Match / If-Modified-Since,
                  even if the content changed
    etag_churn    the real response with a new ETag every time (content unchanged)
    disconnect    the connection is dropped without a response (transport raises
                  `httpx.RemoteProtocolError`; the server closes the socket)

`delay` (seconds) postpones any answer; `hang=True` never answers (the server holds the
connection until shutdown; the transport waits for the client's read timeout).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

FAULT_KINDS = frozenset(
    {
        "html",
        "truncated",
        "object",
        "wrong_types",
        "invalid_utf8",
        "huge",
        "empty",
        "stale_304",
        "etag_churn",
        "disconnect",
    }
)


@dataclass(frozen=True, slots=True)
class SimRequest:
    """What a fault matcher sees."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]


Matcher = str | re.Pattern[str] | Callable[[SimRequest], bool]


@dataclass(slots=True)
class Fault:
    """One injected misbehaviour; `remaining` counts down (None = unlimited)."""

    match: Matcher
    status: int | str | None = None
    remaining: int | None = None
    delay: float = 0.0
    hang: bool = False
    retry_after: int | float | str | None = None
    size: int = 16 * 1024 * 1024
    hits: int = field(default=0)

    def matches(self, request: SimRequest) -> bool:
        if callable(self.match) and not isinstance(self.match, re.Pattern):
            return bool(self.match(request))
        return re.search(self.match, request.path) is not None


class FaultSet:
    """The faults of one app. Thread-safe."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(
        self,
        match: Matcher,
        status: int | str | None = None,
        *,
        times: int | None = None,
        delay: float = 0.0,
        hang: bool = False,
        retry_after: int | float | str | None = None,
        size: int = 16 * 1024 * 1024,
    ) -> Fault:
        """Register a fault (see the module doc) and return it."""
        if isinstance(status, str) and status not in FAULT_KINDS:
            raise ValueError(f"unknown fault {status!r}; one of {sorted(FAULT_KINDS)}")
        if status is None and not delay and not hang:
            raise ValueError("a fault needs a status/kind, a delay or hang=True")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        fault = Fault(match, status, times, delay, hang, retry_after, size)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, request: SimRequest) -> Fault | None:
        """The first matching fault with uses left, consuming one use."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(request):
                    fault.hits += 1
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining == 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)
