"""The nats and redis_stream handlers against real servers (issue 13 item 4), through the
real dispatch path: `bcx-poller once` (a subprocess) polling the loopback simulator, or the
Dispatcher in-process where a crash has to land between two statements.

Each test creates to-dos in the simulator and polls with `first_sync = "emit"`; the
handlers take only `todo_created`, so the events each test expects are the outbox's
`todo_created` events, in detection order. Every count on a bus is by event id.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from handlers._brokers import human_seconds, retry_span
from poller.config import HandlerSettings
from poller.dispatch import Dispatcher, build_targets
from poller.errors import ConfigError
from tests.brokers._servers import STREAM, NatsServer, RedisServer
from tests.conftest import Harness
from tests.delivery._support import cycle, handlers_toml, run_cli, sim_settings

# Quick retries, enough attempts that nothing dead-letters while a broker is down; the
# longest retry span is then 98 x 0.1 s + 0.06 s + 100 attempts x the 2 s timeout, ~210 s.
FAST = {"retry_initial": 0.05, "retry_max": 0.1, "max_attempts": 100, "timeout": 2}
ONLY = {"kinds": ["todo_created"]}
WINDOW = 3600.0  # the stream's duplicate window: longer than that span


def nats_handler(server: NatsServer, **extra: Any) -> dict[str, Any]:
    return {
        "name": "nats",
        "type": "nats",
        "servers": [server.url],
        "stream": STREAM,
        **FAST,
        **ONLY,
        **extra,
    }


def redis_handler(server: RedisServer, **extra: Any) -> dict[str, Any]:
    return {"name": "redis", "type": "redis_stream", "url": server.url, **FAST, **ONLY, **extra}


def setup(sim: Harness, handlers: list[dict[str, Any]], todos: int) -> Path:
    a = sim.account
    tl = a.create_todolist(a.create_project("Ops"), "List")
    for i in range(todos):
        a.create_todo(tl, f"Task {i}")
    return sim.write_config(handlers_toml(handlers), first_sync="emit")


def todo_ids(sim: Harness) -> list[str]:
    return [e["id"] for e in sim.events() if e["kind"] == "todo_created"]


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def pending(sim: Harness) -> list[Any]:
    """Pending and dead deliveries, read from the state file."""
    return list(sim.store.deliveries(status=("pending", "dead")))


def bcx_poller(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The installed `bcx-poller` console script, as an operator runs it."""
    script = Path(sys.executable).with_name("bcx-poller")
    return subprocess.run(
        [str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "BCX_POLLER_CONFIG": ""},
        check=False,
    )


def on_the_buses(nats: NatsServer, redis: RedisServer) -> tuple[list[str], list[str]]:
    """The event ids on each bus, in bus order."""
    messages = nats.messages()
    for m in messages:  # the header and the body agree, and the subject is templated
        assert m["msg_id"] == m["event"]["id"]
        assert m["subject"] == f"bcx.{m['event']['account_id']}.todo_created"
    entries = redis.entries()
    for e in entries:
        assert json.loads(e["event"])["id"] == e["id"] and e["kind"] == "todo_created"
    return [m["msg_id"] for m in messages], [e["id"] for e in entries]


def test_brokers_down_then_up_events_wait_then_arrive_once_each_in_order(
    sim: Harness, tmp_path: Path
) -> None:
    nats = NatsServer(tmp_path / "nats").start()
    nats.add_stream(WINDOW)
    nats.stop()  # down, with its stream on disk
    redis = RedisServer(tmp_path / "redis")  # down: not started yet
    try:
        config = setup(sim, [nats_handler(nats), redis_handler(redis)], todos=12)
        down = ok(run_cli("once", "-c", str(config), "--deliver-timeout", "0.5"))
        # start-up went on without the brokers: the check waits for the first connection
        assert "nats_start_check_deferred" in down.stderr
        assert "redis_stream_start_check_deferred" in down.stderr
        ids = todo_ids(sim)
        assert len(ids) == 12
        waiting = pending(sim)
        assert len(waiting) == 24 and {d.status for d in waiting} == {"pending"}
        errors = {d.handler: d.last_error for d in waiting if d.attempts}
        assert "cannot connect to nats://127.0.0.1:" in errors["nats"]
        assert "cannot reach redis://127.0.0.1:" in errors["redis"]

        nats.start()
        redis.start()
        up = ok(run_cli("once", "-c", str(config), "--deliver-timeout", "10"))
        assert "24 delivered, 0 dead letter(s), 0 still pending" in up.stderr
        assert pending(sim) == []
        on_nats, on_redis = on_the_buses(nats, redis)
        assert on_nats == ids  # each once, the same ids, in detection order
        assert on_redis == ids
    finally:
        nats.stop()
        redis.stop()


def test_requeuing_every_delivery_adds_nothing_to_either_bus(
    sim: Harness, nats_server: NatsServer, redis_server: RedisServer
) -> None:
    nats_server.add_stream(WINDOW)
    config = setup(sim, [nats_handler(nats_server), redis_handler(redis_server)], todos=3)
    ok(run_cli("once", "-c", str(config), "--deliver-timeout", "10"))
    ids = todo_ids(sim)
    assert on_the_buses(nats_server, redis_server) == (ids, ids)
    # every delivery of every event back to pending: the command for one event, the
    # store's same call (what `redeliver` runs) for the rest
    done = ok(run_cli("redeliver", "-c", str(config), "--event", ids[0]))
    assert done.stdout.strip() == "requeued 2 deliveries"
    assert sim.store.requeue(handlers=["nats", "redis"]) == 6
    assert len(pending(sim)) == 6
    again = ok(run_cli("once", "-c", str(config), "--deliver-timeout", "10"))
    assert "6 delivered, 0 dead letter(s), 0 still pending" in again.stderr
    # each was published again, and each bus dropped it by its id
    assert again.stderr.count("nats_duplicate_acknowledged") == 3
    assert again.stderr.count("redis_stream_duplicate_skipped") == 3
    assert on_the_buses(nats_server, redis_server) == (ids, ids)


class Crash(BaseException):
    """The process dying between the publish and marking the delivery done."""


async def test_a_crash_after_publish_before_the_row_is_marked_gives_no_second_copy(
    sim: Harness,
    nats_server: NatsServer,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nats_server.add_stream(WINDOW)
    handlers = [nats_handler(nats_server), redis_handler(redis_server)]
    a = sim.account
    tl = a.create_todolist(a.create_project("Ops"), "List")
    for i in range(4):
        a.create_todo(tl, f"Task {i}")
    s = sim_settings(sim, handlers, first_sync="emit")
    await cycle(sim, s)
    ids = todo_ids(sim)
    assert len(ids) == 4

    # First life: each handler publishes its first event, then the process "dies" before
    # the delivery row is marked done.
    store = sim.store
    real_mark_done = store.mark_done

    def die(handler: str, seq: int) -> None:
        raise Crash(handler)

    monkeypatch.setattr(store, "mark_done", die)
    for name in ("nats", "redis"):
        dispatcher = Dispatcher(store, build_targets(s.handlers, sim.tmp))
        target = dispatcher.targets[name]
        try:
            with pytest.raises(Crash):
                await dispatcher._run_handler(target)
        finally:
            await dispatcher.aclose()
    assert on_the_buses(nats_server, redis_server) == (ids[:1], ids[:1])
    assert len(store.deliveries(status=("pending",))) == 8  # nothing was marked

    # Second life: everything pending goes again, the first event with the same id.
    monkeypatch.setattr(store, "mark_done", real_mark_done)
    dispatcher = Dispatcher(store, build_targets(s.handlers, sim.tmp))
    try:
        assert await dispatcher.drain(10) == 8
    finally:
        await dispatcher.aclose()
    assert store.deliveries(status=("pending",)) == []
    assert on_the_buses(nats_server, redis_server) == (ids, ids)


def test_a_duplicate_window_shorter_than_the_retry_span_refuses_to_start(
    sim: Harness, nats_server: NatsServer, redis_server: RedisServer
) -> None:
    nats_server.add_stream(120)  # two minutes: JetStream's default
    defaults = {"retry_initial": 5, "retry_max": 900, "max_attempts": 20, "timeout": 5}
    handler = {**nats_handler(nats_server), **defaults}
    config = setup(sim, [handler], todos=2)
    need = human_seconds(retry_span(HandlerSettings(name="n", type="nats", **defaults), 5))
    assert need == "3h12m10s"
    for command in ("once", "run"):
        refused = bcx_poller(command, "-c", str(config))
        assert refused.returncode == 2, refused.stderr
        assert (
            f"configuration error: handlers[0].stream: stream 'BCX' has a duplicate_window"
            f" of 2m, shorter than this handler's longest retry span {need}"
        ) in refused.stderr
        assert f"--dupe-window {need}" in refused.stderr
    assert sim.events() == []  # refused before polling: nothing detected, nothing queued
    assert nats_server.messages() == []

    # redis_stream: its own dedupe_ttl is the window (checked without the server)
    short = {**redis_handler(redis_server), **defaults, "dedupe_ttl": 3600}
    config = sim.write_config(handlers_toml([short]), first_sync="emit")
    refused = bcx_poller("once", "-c", str(config))
    assert refused.returncode == 2
    assert (
        "configuration error: handlers[0].dedupe_ttl: 3600 s (1h) is shorter than this"
        f" handler's longest retry span {need}"
    ) in refused.stderr

    # a missing stream refuses too
    missing = {**handler, "stream": "NOPE"}
    with pytest.raises(ConfigError) as info:
        build_targets(sim_settings(sim, [missing]).handlers, sim.tmp)
    assert info.value.field == "handlers[0].stream"
    assert info.value.reason.startswith("stream 'NOPE' does not exist on nats://127.0.0.1:")
