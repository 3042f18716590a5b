"""Handlers are independent: a slow or failing handler never delays another one; within
one handler, events go out in detection order. Real time, measured."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from poller.store import Store
from tests.delivery._support import (
    WEBHOOK_SECRET,
    FakeClock,
    HttpPeer,
    commit,
    dispatcher,
    make_event,
    settings,
)


def hooks_toml(**peers: HttpPeer) -> str:
    return "".join(
        f"""
[[handlers]]
name = "{name}"
type = "webhook"
url = "{peer.url}/in"
secrets = ["{WEBHOOK_SECRET}"]
timeout = 30
retry_initial = 0.05
retry_max = 0.2
"""
        for name, peer in peers.items()
    )


async def wait_for_hits(peer: HttpPeer, n: int, within: float) -> float:
    """Seconds until `peer` has `n` requests (fails after `within`)."""
    start = time.monotonic()
    while len(peer.hits) < n:
        assert time.monotonic() - start < within, f"{len(peer.hits)} of {n} requests"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_a_slow_handler_does_not_delay_another_in_the_running_dispatcher(
    tmp_path: Path,
) -> None:
    slow, fast = HttpPeer(delay=5).start(), HttpPeer().start()
    s = settings(tmp_path, hooks_toml(slow=slow, fast=fast))
    store = Store(s.poller.state_path)
    disp = dispatcher(store, s)
    stop = asyncio.Event()
    task = asyncio.create_task(disp.run(stop, idle=0.2))
    try:
        commit(store, s, [make_event(1)])
        disp.notify()
        assert await wait_for_hits(fast, 1, within=1) < 0.5
        await wait_for_hits(slow, 1, within=1)  # slow now holds event 1 for 5 s
        # a new event while the slow handler is stuck: the fast one gets it right away
        commit(store, s, [make_event(2)])
        disp.notify()
        assert await wait_for_hits(fast, 2, within=1) < 0.5
        # and the fast handler's retries are not held back either
        fast.statuses.append(500)
        commit(store, s, [make_event(3)])
        disp.notify()
        assert await wait_for_hits(fast, 4, within=2) < 1.0
        assert len(slow.hits) == 1
        slow.release.set()
        await wait_for_hits(slow, 3, within=3)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await disp.aclose()
        store.close()
        slow.stop()
        fast.stop()
    assert [h.headers["webhook-id"] for h in fast.hits] == [
        make_event(n)["id"] for n in (1, 2, 3, 3)
    ]


async def test_a_slow_handler_does_not_delay_another_s_retries_in_drain(tmp_path: Path) -> None:
    slow, fast = HttpPeer(delay=3).start(), HttpPeer(statuses=[500, 500]).start()
    s = settings(tmp_path, hooks_toml(slow=slow, fast=fast))
    store = Store(s.poller.state_path)
    commit(store, s, [make_event(1), make_event(2)])
    disp = dispatcher(store, s)
    try:
        task = asyncio.create_task(disp.drain(within=10))
        took = await wait_for_hits(fast, 4, within=2.5)  # 2 failures, 2 deliveries
        assert took < 1.5, took
        slow.release.set()
        assert await asyncio.wait_for(task, 10) == 4
    finally:
        await disp.aclose()
        store.close()
        slow.stop()
        fast.stop()


async def test_a_failing_handler_does_not_delay_another(tmp_path: Path) -> None:
    bad, good = HttpPeer(statuses=[500] * 50).start(), HttpPeer().start()
    s = settings(tmp_path, hooks_toml(bad=bad, good=good))
    store = Store(s.poller.state_path)
    events = [make_event(n) for n in range(1, 4)]
    commit(store, s, events)
    clock = FakeClock(time.time())
    disp = dispatcher(store, s, clock=clock)
    try:
        assert await disp.deliver_due() == 3
        assert [h.headers["webhook-id"] for h in good.hits] == [e["id"] for e in events]
        # the bad handler's first event holds back its own later events, nobody else's
        assert [h.headers["webhook-id"] for h in bad.hits] == [events[0]["id"]]
        pending = store.deliveries(status=("pending",), handler="bad")
        assert [(d.event["id"], d.attempts) for d in pending] == [
            (events[0]["id"], 1),
            (events[1]["id"], 0),
            (events[2]["id"], 0),
        ]
    finally:
        await disp.aclose()
        store.close()
        bad.stop()
        good.stop()


async def test_each_handler_gets_events_in_detection_order_across_retries(
    tmp_path: Path,
) -> None:
    peer = HttpPeer(statuses=[500, 200, 503, 502, 200, 200, 500]).start()
    s = settings(tmp_path, hooks_toml(hook=peer))
    store = Store(s.poller.state_path)
    events = [make_event(n) for n in range(1, 7)]
    commit(store, s, events[:3])
    commit(store, s, events[3:])
    clock = FakeClock(time.time())
    disp = dispatcher(store, s, clock=clock)
    try:
        for _ in range(20):
            await disp.deliver_due()
            clock.advance(1)
    finally:
        await disp.aclose()
        store.close()
        peer.stop()
    got = [h.headers["webhook-id"] for h in peer.hits]
    deduped = [i for n, i in enumerate(got) if n == 0 or got[n - 1] != i]
    assert deduped == [e["id"] for e in events]
    assert len(got) == len(events) + 4
