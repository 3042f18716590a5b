"""Clocks and timestamp formats used by the simulator.

The account reads time from an injectable clock: any zero-argument callable returning an
*aware* datetime. `SystemClock` is real time; `ManualClock` only moves when told to, so
tests control every `created_at` / `updated_at` the simulator produces.

Times are truncated to milliseconds when read (`now_ms`), because Basecamp renders
milliseconds: a `since` cursor copied from a rendered `created_at` must compare equal to
the stored time, not a few microseconds before it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime

Clock = Callable[[], datetime]

_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")


class SystemClock:
    """Real time in UTC."""

    def __call__(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that stands still until `advance()` or `set()` moves it (forward only).

    Starts at `start` (default 2024-01-15T12:00:00Z).
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2024, 1, 15, 12, 0, 0, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")

    def __call__(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward by `seconds` (must be >= 0) and return the new time."""
        if seconds < 0:
            raise ValueError("ManualClock only moves forward")
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, when: datetime) -> None:
        """Jump to `when`, which must not be earlier than the current time."""
        if when.tzinfo is None or when < self._now:
            raise ValueError("ManualClock.set needs an aware datetime not in the past")
        self._now = when


def now_ms(clock: Clock) -> datetime:
    """Read `clock` and drop sub-millisecond precision."""
    now = clock()
    if now.tzinfo is None:
        raise ValueError("the simulator clock must return aware datetimes")
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def parse_offset(offset: str) -> timezone:
    """'Z' -> UTC, '-05:00' -> UTC-5. Raises ValueError for anything else."""
    if offset == "Z":
        return UTC
    m = _OFFSET.match(offset)
    if not m:
        raise ValueError(f"offset must be 'Z' or like '-05:00', not {offset!r}")
    sign = -1 if m.group(1) == "-" else 1
    return timezone(sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))


def format_timestamp(when: datetime, offset: str = "-05:00") -> str:
    """Render like Basecamp: `2024-01-15T07:00:00.000-05:00` (or `...000Z`)."""
    local = when.astimezone(parse_offset(offset))
    base = local.strftime("%Y-%m-%dT%H:%M:%S") + f".{local.microsecond // 1000:03d}"
    return base + ("Z" if offset == "Z" else offset)


def format_date(value: date) -> str:
    """Date-only fields (`due_on`, all-day `starts_at`): `YYYY-MM-DD`."""
    return value.strftime("%Y-%m-%d")


def parse_timestamp(text: str, default_tz: timezone = UTC) -> datetime:
    """Parse an ISO 8601 timestamp with `Z`, any offset and optional fractional seconds.

    A timestamp without an offset is read in `default_tz` (the account's zone). Raises
    ValueError on anything else, including a space where a `+` should be (the result of
    sending `+01:00` unencoded in a query string).
    """
    if " " in text or not text:
        raise ValueError(f"not an ISO 8601 timestamp: {text!r}")
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=default_tz)
    return parsed


def http_date(when: datetime) -> str:
    """RFC 7231 date for `Last-Modified` / `Retry-After`: `Mon, 15 Jan 2024 12:00:00 GMT`."""
    return format_datetime(when.astimezone(UTC).replace(microsecond=0), usegmt=True)


def parse_http_date(text: str) -> datetime | None:
    """Parse an HTTP date; None when it cannot be read."""
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed
