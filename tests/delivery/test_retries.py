"""Retries, backoff, Retry-After and dead letters: the real Dispatcher and Store, real
peers (scripts, an HTTP receiver), and a fake clock so the timing is exact."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from poller.config import HandlerSettings
from poller.dispatch import Dispatcher, Target, backoff
from poller.store import Store
from tests.delivery._support import (
    WEBHOOK_SECRET,
    FakeClock,
    HttpPeer,
    commit,
    dispatcher,
    make_event,
    settings,
    write_script,
)

FLAKY = """
id="$BCX_EVENT_ID"
n=$(cat "{dir}/$id.count" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "{dir}/$id.count"
echo "$n $id" >> "{dir}/attempts.log"
[ "$n" -ge {succeed_on} ] || {{ echo "not yet ($n)" >&2; exit 1; }}
cat > "{dir}/$id.json"
"""


def flaky_script(tmp: Path, succeed_on: int) -> Path:
    work = tmp / "script"
    work.mkdir(exist_ok=True)
    return write_script(tmp / "flaky.sh", FLAKY.format(dir=work, succeed_on=succeed_on))


def attempts_log(tmp: Path) -> list[tuple[int, str]]:
    path = tmp / "script" / "attempts.log"
    if not path.exists():
        return []
    return [(int(n), i) for n, i in (line.split() for line in path.read_text().splitlines())]


def row(store: Store, handler: str) -> Any:
    [d] = [d for d in store.deliveries(status=("pending", "dead", "done")) if d.handler == handler]
    return d


async def test_script_failing_twice_gets_the_event_on_the_third_try(tmp_path: Path) -> None:
    script = flaky_script(tmp_path, succeed_on=3)
    s = settings(
        tmp_path,
        f"""
[[handlers]]
name = "run"
type = "script"
command = ["{script}"]
retry_initial = 2
retry_max = 60
""",
    )
    store = Store(s.poller.state_path)
    event = make_event(1)
    commit(store, s, [event])
    clock = FakeClock(time.time())
    disp = dispatcher(store, s, clock=clock)
    try:
        assert await disp.deliver_due() == 0
        first = row(store, "run")
        assert (first.status, first.attempts) == ("pending", 1)
        assert "exited with status 1" in (first.last_error or "")
        assert "not yet (1)" in (first.last_error or "")
        # not due yet: nothing is attempted however often the dispatcher looks
        clock.advance(1.5)
        assert await disp.deliver_due() == 0
        assert len(attempts_log(tmp_path)) == 1
        clock.now = first.next_at
        assert await disp.deliver_due() == 0
        second = row(store, "run")
        assert second.attempts == 2
        clock.now = second.next_at
        assert await disp.deliver_due() == 1
        done = row(store, "run")
        assert (done.status, done.attempts, done.last_error) == ("done", 3, None)
    finally:
        await disp.aclose()
        store.close()
    assert attempts_log(tmp_path) == [(1, event["id"]), (2, event["id"]), (3, event["id"])]
    import json

    assert json.loads((tmp_path / "script" / f"{event['id']}.json").read_text()) == event


async def test_retries_back_off_exponentially_with_jitter_up_to_retry_max(
    tmp_path: Path,
) -> None:
    script = write_script(tmp_path / "fail.sh", "exit 7\n")
    s = settings(
        tmp_path,
        f"""
[[handlers]]
name = "run"
type = "script"
command = ["{script}"]
retry_initial = 1
retry_max = 8
max_attempts = 12
""",
    )
    store = Store(s.poller.state_path)
    commit(store, s, [make_event(1)])
    clock = FakeClock(time.time())
    disp = dispatcher(store, s, clock=clock)
    delays = []
    try:
        for _ in range(8):
            await disp.deliver_due()
            d = row(store, "run")
            delays.append(d.next_at - clock.now)
            clock.now = d.next_at
    finally:
        await disp.aclose()
        store.close()
    for attempt, delay in enumerate(delays, start=1):
        base = min(8.0, 2.0 ** (attempt - 1))
        assert 0.8 * base - 1e-9 <= delay <= min(8.0, 1.2 * base) + 1e-9, (attempt, delays)
    assert delays[3] > delays[0] * 4  # it grows
    assert max(delays) <= 8.0
    assert len({round(d, 6) for d in delays[:3]}) == 3  # jittered, not lock-step
    handler = s.handlers[0]
    assert backoff(handler, 1, jitter=lambda: 0.0) == pytest.approx(0.8)
    assert backoff(handler, 1, jitter=lambda: 1.0) == pytest.approx(1.2)
    assert backoff(handler, 3, jitter=lambda: 0.5) == pytest.approx(4.0)
    assert backoff(handler, 5000, jitter=lambda: 0.5) == 8.0  # no overflow on huge counts


async def test_retry_after_from_the_target_overrides_the_backoff(tmp_path: Path) -> None:
    peer = HttpPeer(statuses=[(503, {"Retry-After": "42"}), (429, {"Retry-After": "7"})]).start()
    s = settings(
        tmp_path,
        f"""
[[handlers]]
name = "hook"
type = "webhook"
url = "{peer.url}/in"
secrets = ["{WEBHOOK_SECRET}"]
retry_initial = 1
""",
    )
    store = Store(s.poller.state_path)
    commit(store, s, [make_event(1)])
    clock = FakeClock(time.time())
    disp = dispatcher(store, s, clock=clock)
    try:
        await disp.deliver_due()
        d = row(store, "hook")
        assert d.next_at - clock.now == 42
        clock.advance(41)
        await disp.deliver_due()
        assert len(peer.hits) == 1
        clock.advance(1)
        await disp.deliver_due()
        d = row(store, "hook")
        assert d.attempts == 2 and d.next_at - clock.now == 7
        clock.advance(7)
        assert await disp.deliver_due() == 1
    finally:
        await disp.aclose()
        store.close()
        peer.stop()
    assert len(peer.hits) == 3
    assert len({h.headers["webhook-id"] for h in peer.hits}) == 1


async def test_dead_letter_after_max_attempts_keeps_the_last_error_and_frees_the_queue(
    tmp_path: Path,
) -> None:
    peer = HttpPeer(statuses=[500, 502, 503]).start()
    s = settings(
        tmp_path,
        f"""
[[handlers]]
name = "hook"
type = "webhook"
url = "{peer.url}/in"
secrets = ["{WEBHOOK_SECRET}"]
retry_initial = 0.5
max_attempts = 3
""",
    )
    store = Store(s.poller.state_path)
    first, second = make_event(1), make_event(2)
    commit(store, s, [first, second])
    clock = FakeClock(time.time())
    disp = dispatcher(store, s, clock=clock)
    try:
        for _ in range(3):
            await disp.deliver_due()
            clock.advance(10)
        [dead] = store.deliveries(status=("dead",))
        assert dead.event["id"] == first["id"]
        assert dead.attempts == 3
        assert "HTTP 503" in (dead.last_error or "")
        # the dead letter no longer holds back the next event
        assert [d.event["id"] for d in store.deliveries(status=("done",))] == [second["id"]]
    finally:
        await disp.aclose()
        store.close()
        peer.stop()
    assert [h.headers["webhook-id"] for h in peer.hits] == [first["id"]] * 3 + [second["id"]]


async def test_max_age_dead_letters_once_the_delivery_is_that_old(tmp_path: Path) -> None:
    script = write_script(tmp_path / "fail.sh", 'echo "$BCX_EVENT_ID" >> "$0.log"; exit 1\n')
    s = settings(
        tmp_path,
        f"""
[[handlers]]
name = "run"
type = "script"
command = ["{script}"]
retry_initial = 4
retry_max = 4
max_attempts = 1000
max_age = 10
""",
    )
    store = Store(s.poller.state_path)
    commit(store, s, [make_event(1)])
    clock = FakeClock(time.time())
    disp = dispatcher(store, s, clock=clock)
    seen: list[tuple[float, str]] = []
    try:
        for _ in range(10):
            await disp.deliver_due()
            d = row(store, "run")
            seen.append((clock.now - d.first_at, d.status))
            if d.status == "dead":
                break
            assert d.next_at - d.first_at <= 10 + 1e-6  # never scheduled past max_age
            clock.now = d.next_at
    finally:
        await disp.aclose()
        store.close()
    ages = [a for a, _ in seen]
    statuses = [st for _, st in seen]
    assert statuses[-1] == "dead" and set(statuses[:-1]) == {"pending"}
    # retried for the whole of max_age, and not a retry longer
    assert 10 - 1e-6 <= ages[-1] <= 10.5
    assert all(a < 10 for a in ages[:-1])


class Flaky:
    """A third-party handler that fails with a plain exception (not a HandlerError)."""

    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.got: list[str] = []

    async def deliver(self, event: dict[str, Any]) -> None:
        self.got.append(event["id"])
        if self.failures:
            raise self.failures.pop(0)

    async def aclose(self) -> None:
        return None


async def test_a_plain_exception_from_a_handler_is_retried_not_fatal(tmp_path: Path) -> None:
    hs = HandlerSettings(name="third", type="console", retry_initial=1)
    s = settings(tmp_path, "")
    store = Store(s.poller.state_path)
    handler = Flaky([RuntimeError("boom"), KeyError("missing"), ValueError("bad")])
    store.commit_cycle(
        __import__("poller.store", fromlist=["CycleWrite"]).CycleWrite(
            4242, events=[make_event(1), make_event(2)]
        ),
        lambda _e: ["third"],
    )
    clock = FakeClock(time.time())
    disp = Dispatcher(store, {"third": Target(hs, handler)}, clock=clock)  # type: ignore[arg-type]
    errors = []
    try:
        for _ in range(6):
            await disp.deliver_due()
            pending = store.deliveries(status=("pending",))
            if not pending:
                break
            errors.append(pending[0].last_error)
            clock.advance(100)
    finally:
        store.close()
    assert errors == ["RuntimeError: boom", "KeyError: 'missing'", "ValueError: bad"]
    assert len(handler.got) == 5
    assert disp.delivered == 2 and disp.failed == 3


async def test_410_dead_letters_at_once(tmp_path: Path) -> None:
    peer = HttpPeer(statuses=[410]).start()
    s = settings(
        tmp_path,
        f"""
[[handlers]]
name = "hook"
type = "webhook"
url = "{peer.url}/in"
secrets = ["{WEBHOOK_SECRET}"]
""",
    )
    store = Store(s.poller.state_path)
    commit(store, s, [make_event(1)])
    disp = dispatcher(store, s)
    try:
        await disp.deliver_due()
        [dead] = store.deliveries(status=("dead",))
        assert dead.attempts == 1 and "410" in (dead.last_error or "")
    finally:
        await disp.aclose()
        store.close()
        peer.stop()


async def test_a_secret_quoted_in_a_handler_error_is_never_stored(tmp_path: Path) -> None:
    """A target's error text can quote what it was given (a script echoing its
    environment, a URL with a token): the stored `last_error` masks every secret."""
    from poller import logs

    secret = "s3cr3t-in-an-error-7f1c"
    logs.register_secrets([secret])
    script = write_script(tmp_path / "leaky.sh", f'echo "auth {secret} refused" >&2\nexit 3\n')
    s = settings(
        tmp_path,
        f"""
[[handlers]]
name = "leaky"
type = "script"
command = ["{script}"]
max_attempts = 1
""",
    )
    store = Store(s.poller.state_path)
    commit(store, s, [make_event(1)])
    disp = dispatcher(store, s, clock=FakeClock(time.time()))
    try:
        await disp.deliver_due()
        [dead] = store.deliveries(status=("dead",))
        assert "refused" in (dead.last_error or "")  # the error is kept...
        assert secret not in (dead.last_error or "")  # ...without the secret
        assert logs.MASK in (dead.last_error or "")
    finally:
        await disp.aclose()
        store.close()
