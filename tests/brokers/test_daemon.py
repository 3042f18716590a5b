"""`bcx-poller run` with both broker handlers while the brokers go away and come back: the
long-lived process loses its connections, keeps the events in the outbox, reconnects, and
each event arrives once on each bus, in detection order."""

from __future__ import annotations

from pathlib import Path

from poller.store import Store
from tests.brokers._servers import STREAM, NatsServer, RedisServer
from tests.daemon._support import Daemon, running, simulators, wait_until, write_config

FAST = "retry_initial = 0.05\nretry_max = 0.2\nmax_attempts = 1000\ntimeout = 2\n"


def handlers(nats: NatsServer, redis: RedisServer) -> str:
    return (
        f'[[handlers]]\nname = "nats"\ntype = "nats"\nservers = ["{nats.url}"]\n'
        f'stream = "{STREAM}"\nkinds = ["todo_created"]\n{FAST}\n'
        f'[[handlers]]\nname = "redis"\ntype = "redis_stream"\nurl = "{redis.url}"\n'
        f'kinds = ["todo_created"]\n{FAST}'
    )


def test_the_daemon_rides_out_both_brokers_going_away_and_coming_back(
    tmp_path: Path, nats_server: NatsServer, redis_server: RedisServer
) -> None:
    nats_server.add_stream(duplicate_window=3 * 3600)  # the span here: ~37 min
    with simulators(1001301) as (sim,):
        todolist, _todos = sim.seed()
        config = write_config(tmp_path / "config.toml", [sim], handlers(nats_server, redis_server))
        store = Store(tmp_path / "state.db")
        try:
            with running(Daemon(config)) as daemon:
                daemon.wait_logged("cycle_committed", within=20, baseline=True)

                def on_both(n: int) -> bool:
                    return len(nats_server.messages()) >= n and len(redis_server.entries()) >= n

                for i in range(3):
                    sim.account.create_todo(todolist, f"Before {i}")
                wait_until(lambda: on_both(3), 20, "three events on both buses")

                nats_server.stop()
                redis_server.stop()
                for i in range(4):
                    sim.account.create_todo(todolist, f"While down {i}")
                for name in ("nats", "redis"):  # queued, and failing while the bus is away
                    daemon.wait_logged("delivery_retry", within=20, handler=name)

                nats_server.start()
                redis_server.start()
                wait_until(lambda: on_both(7), 30, "seven events on both buses")
                code, _took = daemon.stop()
                assert code == 0, daemon.raw_log()[-3000:]
        finally:
            ids = [e["id"] for e in store.events(limit=1000) if e["kind"] == "todo_created"]
            store.close()
    assert len(ids) == 7
    assert [m["msg_id"] for m in nats_server.messages()] == ids
    assert [e["id"] for e in redis_server.entries()] == ids
