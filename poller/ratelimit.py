"""Per-account politeness: a sliding-window request limiter plus a Retry-After gate.

Basecamp allows 500 requests per 10 seconds per authorized user (API.md §7). One
`RateLimiter` exists per account and is shared by every request of that account:

* `await limiter.acquire()` before each request. It returns once the request may go:
  at most `limit` requests are granted in any `window` seconds (a sliding window over
  the grant times, not fixed buckets), and never before a `block_until` deadline.
* `limiter.block_until(deadline)` after a 429: no request of the account is granted
  before the monotonic `deadline` (the latest deadline wins).

Waiters are served one at a time (an `asyncio.Lock`), so concurrent tasks of one
account cannot jointly overrun the window. `clock` (monotonic seconds) and `sleep` are
injectable so tests can drive a fake clock.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

from poller.config import AccountSettings

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]

DEFAULT_WINDOW = 10.0
# The smallest wait the limiter asks for, so float rounding on a fake clock can never
# make it spin without time advancing. Waiting a millisecond longer is always polite.
_MIN_WAIT = 0.001


class RateLimiter:
    """At most `limit` requests per `window` seconds, plus a "blocked until" deadline."""

    def __init__(
        self,
        limit: int,
        window: float = DEFAULT_WINDOW,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if window <= 0:
            raise ValueError("window must be positive")
        self.limit = limit
        self.window = float(window)
        self._clock = clock
        self._sleep = sleep
        self._grants: deque[float] = deque()
        self._blocked_until = float("-inf")
        self._lock = asyncio.Lock()

    @classmethod
    def for_account(
        cls,
        account: AccountSettings,
        window: float = DEFAULT_WINDOW,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> RateLimiter:
        """The limiter for one account: `account.rate_limit` requests per `window`."""
        return cls(account.rate_limit, window, clock=clock, sleep=sleep)

    def __repr__(self) -> str:
        return f"RateLimiter(limit={self.limit}, window={self.window})"

    @property
    def blocked_until(self) -> float | None:
        """The monotonic deadline set by `block_until`, or None if it has passed."""
        if self._blocked_until > self._clock():
            return self._blocked_until
        return None

    def block_until(self, deadline: float) -> None:
        """Grant nothing before the monotonic `deadline` (an earlier one never shortens it)."""
        if deadline > self._blocked_until:
            self._blocked_until = deadline

    def delay(self) -> float:
        """How long an `acquire()` issued now would wait if nobody else were queued."""
        now = self._clock()
        self._expire(now)
        wait = max(0.0, self._blocked_until - now)
        if len(self._grants) >= self.limit:
            wait = max(wait, self._grants[-self.limit] + self.window - now)
        return wait

    async def acquire(self) -> None:
        """Wait until one more request is allowed, and count it."""
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._blocked_until:
                    await self._sleep(max(self._blocked_until - now, _MIN_WAIT))
                    continue
                self._expire(now)
                if len(self._grants) < self.limit:
                    self._grants.append(now)
                    return
                await self._sleep(max(self._grants[0] + self.window - now, _MIN_WAIT))

    def _expire(self, now: float) -> None:
        # A grant at t occupies the half-open window [t, t + window).
        horizon = now - self.window
        grants = self._grants
        while grants and grants[0] <= horizon:
            grants.popleft()
