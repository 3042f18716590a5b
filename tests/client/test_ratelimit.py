"""RateLimiter: sliding window, Retry-After gate, concurrency safety."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poller.ratelimit import RateLimiter
from tests.client.fakes import FakeTime, account


async def test_grants_up_to_limit_then_waits_for_oldest_to_leave_window() -> None:
    t = FakeTime(start=0.0)
    lim = RateLimiter(3, 10.0, clock=t.clock, sleep=t.sleep)
    for _ in range(3):
        await lim.acquire()
    assert t.now == 0.0
    assert lim.delay() == pytest.approx(10.0)
    await lim.acquire()
    assert t.now == pytest.approx(10.0)


async def test_sliding_not_fixed_buckets() -> None:
    t = FakeTime(start=0.0)
    lim = RateLimiter(2, 10.0, clock=t.clock, sleep=t.sleep)
    await lim.acquire()  # t=0
    t.now = 9.0
    await lim.acquire()  # t=9
    t.now = 10.5
    await lim.acquire()  # the t=0 grant left the window: no wait
    assert t.now == 10.5
    await lim.acquire()  # must wait for the t=9 grant to leave: until 19
    assert t.now == pytest.approx(19.0)


async def test_block_until_delays_every_acquire_and_never_shortens() -> None:
    t = FakeTime(start=100.0)
    lim = RateLimiter(500, clock=t.clock, sleep=t.sleep)
    lim.block_until(107.0)
    lim.block_until(103.0)  # an earlier deadline does not shorten the block
    assert lim.blocked_until == 107.0
    await lim.acquire()
    assert t.now == pytest.approx(107.0)
    assert lim.blocked_until is None
    await lim.acquire()
    assert t.now == pytest.approx(107.0)


async def test_for_account_uses_account_rate_limit() -> None:
    lim = RateLimiter.for_account(account(rate_limit=42))
    assert lim.limit == 42
    assert lim.window == 10.0
    assert "42" in repr(lim)


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)
    with pytest.raises(ValueError):
        RateLimiter(1, 0)


async def test_concurrent_tasks_share_the_window() -> None:
    t = FakeTime(start=0.0)
    lim = RateLimiter(5, 10.0, clock=t.clock, sleep=t.sleep)
    grants: list[float] = []

    async def one() -> None:
        await lim.acquire()
        grants.append(t.now)

    await asyncio.gather(*(one() for _ in range(17)))
    assert len(grants) == 17
    grants.sort()
    for i in range(len(grants) - 5):
        assert grants[i + 5] - grants[i] >= 10.0 - 1e-9
    # and it was not needlessly slow: 17 requests at 5/10 s need 30 s
    assert grants[-1] == pytest.approx(30.0)


@settings(max_examples=150, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=8),
    window=st.floats(min_value=0.5, max_value=20.0),
    gaps=st.lists(st.floats(min_value=0.0, max_value=5.0), min_size=1, max_size=60),
    concurrency=st.integers(min_value=1, max_value=4),
    block=st.one_of(st.none(), st.tuples(st.integers(0, 59), st.floats(0.0, 30.0))),
)
def test_property_never_more_than_limit_in_any_window(
    limit: int,
    window: float,
    gaps: list[float],
    concurrency: int,
    block: tuple[int, float] | None,
) -> None:
    """Whatever the arrival pattern, no half-open window of `window` seconds holds more
    than `limit` grants, and no grant happens before a block_until deadline."""

    async def scenario() -> tuple[list[float], list[tuple[float, float]]]:
        t = FakeTime(start=0.0)
        lim = RateLimiter(limit, window, clock=t.clock, sleep=t.sleep)
        grants: list[float] = []
        blocks: list[tuple[float, float]] = []  # (set at, deadline)
        queue = list(enumerate(gaps))

        async def worker() -> None:
            while queue:
                index, gap = queue.pop(0)
                await t.sleep(gap)
                if block is not None and block[0] == index:
                    lim.block_until(t.now + block[1])
                    blocks.append((t.now, t.now + block[1]))
                await lim.acquire()
                grants.append(t.now)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return grants, blocks

    grants, blocks = asyncio.run(scenario())
    assert len(grants) == len(gaps)
    grants.sort()
    for i in range(len(grants) - limit):
        assert grants[i + limit] - grants[i] >= window - 1e-6
    for set_at, deadline in blocks:
        assert not [g for g in grants if set_at < g < deadline - 1e-9]
