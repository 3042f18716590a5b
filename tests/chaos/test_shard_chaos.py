"""Chaos over shards and buses (issue 13 item 4): three shard daemons, thirty simulated
accounts, changes for CHAOS_SECONDS (40 s by default), one shard killed with SIGKILL and
restarted every few seconds. Afterwards every change the simulators made is on both buses
exactly once (counted by event id), nothing else is, each account was asked only by the
shard that owns it, and requeuing every delivery adds nothing to either bus.

Oracle: every change is made with activity (a to-do added, a to-do edited, a comment), so
each `SimChange` maps to exactly one event whose `details.activity.id` is the change's
`activity_id`; an event on a bus without such a change would be an invented one.

Who asked: each shard's config names it in its User-Agent (the configs differ only
there), and every simulator's request log records the User-Agent of each request.

`BCX_CHAOS_SECONDS=600 pytest tests/chaos` runs a longer soak; CI runs the 40 s one.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from poller.shards import shard_of
from poller.store import Store
from tests.brokers._servers import STREAM, NatsServer, RedisServer
from tests.daemon._support import USER_AGENT, Sim, simulators
from tests.delivery._support import handlers_toml
from tests.shards._support import cli, spread_ids

SHARDS = 3
CHAOS_SECONDS = float(os.environ.get("BCX_CHAOS_SECONDS", "40"))
RETRIES = {"retry_initial": 0.05, "retry_max": 0.5, "max_attempts": 100, "timeout": 2}


def agent(shard: int) -> str:
    return f"bcx-poller chaos shard-{shard} (ops@example.com)"


def write_configs(tmp: Path, sims: list[Sim], nats: NatsServer, redis: RedisServer) -> list[Path]:
    handlers = handlers_toml(
        [
            {"name": "nats", "type": "nats", "servers": [nats.url], "stream": STREAM, **RETRIES},
            {"name": "redis", "type": "redis_stream", "url": redis.url, **RETRIES},
        ]
    )
    out = []
    for shard in range(SHARDS):
        accounts = [s.account_toml().replace(USER_AGENT, agent(shard)) for s in sims]
        text = "\n".join(
            [
                "[poller]",
                f"shards = {SHARDS}",
                f'state_path = "{tmp / "{shard}" / "state.db"}"',
                "interval = 0.5",
                "reconcile_interval = 0",
                "jitter = 0.1",
                "cycle_timeout = 10",
                "",
                *accounts,
                handlers,
            ]
        )
        path = tmp / f"shard-{shard}.toml"
        path.write_text(text + "\n")
        path.chmod(0o600)
        out.append(path)
    return out


class Shard:
    def __init__(self, k: int, config: Path, logs: Path) -> None:
        self.k, self.config, self.logs = k, config, logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        with (self.logs / f"shard-{self.k}.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "poller",
                    "run",
                    "-c",
                    str(self.config),
                    "--shard",
                    str(self.k),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={k: v for k, v in os.environ.items() if not k.startswith("BCX_POLLER_")},
            )

    def kill(self) -> None:
        assert self.proc is not None
        assert self.proc.poll() is None, f"shard {self.k} died on its own: {self.tail()}"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None
        self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def tail(self) -> str:
        return (self.logs / f"shard-{self.k}.log").read_text(errors="replace")[-3000:]


def past_first_sync(sim: Sim) -> bool:
    """The account's feed was asked with `since`: its first sync is committed."""
    return any(e.path.endswith("/events.json") and "since" in e.query for e in sim.app.log.entries)


def change(rng: random.Random, sim: Sim, lists: dict[int, int], n: int) -> None:
    a = sim.account
    todos = sorted(t.id for t in a.todos.values() if a.is_live(t))
    op = rng.choice(["create", "create", "edit", "comment"])
    if op == "create" or not todos:
        a.create_todo(lists[sim.id], f"Chaos {n}")
    elif op == "edit":
        a.update_todo(rng.choice(todos), content=f"Edited {n}")
    else:
        a.add_comment("todo", rng.choice(todos), f"Comment {n}")


def on_buses(nats: NatsServer, redis: RedisServer) -> tuple[list[dict[str, Any]], list[Any]]:
    import json

    return nats.messages(), [json.loads(f["event"]) | {"_id": f["id"]} for f in redis.entries()]


def test_three_shards_killed_at_random_deliver_every_change_once_to_both_buses(
    tmp_path: Path,
) -> None:
    rng = random.Random(1313)
    nats = NatsServer(tmp_path / "nats").start()
    redis = RedisServer(tmp_path / "redis").start()
    shards: list[Shard] = []
    try:
        nats.add_stream(duplicate_window=3600)
        with simulators(*spread_ids(SHARDS, 10)) as sims:
            lists = {s.id: s.seed()[0] for s in sims}
            shards = [
                Shard(k, cfg, tmp_path)
                for k, cfg in enumerate(write_configs(tmp_path, sims, nats, redis))
            ]
            for s in shards:
                s.start()
            deadline = time.monotonic() + 60
            while not all(past_first_sync(s) for s in sims):
                assert time.monotonic() < deadline, [s.tail() for s in shards]
                time.sleep(0.2)
            marks = {s.id: len(s.account.changes) for s in sims}

            # -- chaos ---------------------------------------------------------------
            end = time.monotonic() + CHAOS_SECONDS
            next_kill = time.monotonic() + rng.uniform(2, 5)
            down: list[tuple[float, Shard]] = []
            n = 0
            while time.monotonic() < end:
                n += 1
                change(rng, rng.choice(sims), lists, n)
                now = time.monotonic()
                if now >= next_kill:
                    victim = rng.choice([s for s in shards if s.proc is not None])
                    victim.kill()
                    down.append((now + rng.uniform(0.2, 2.0), victim))
                    next_kill = now + rng.uniform(2, 5)
                for item in [d for d in down if d[0] <= now]:
                    down.remove(item)
                    item[1].start()
                time.sleep(rng.uniform(0.02, 0.15))
            for _, victim in down:
                victim.start()

            made = {
                c.activity_id: (s.id, c)
                for s in sims
                for c in s.account.changes[marks[s.id] :]
                if c.activity_id is not None
            }
            assert len(made) == n and n > 100, (len(made), n)
            assert sum(s.kills for s in shards) >= CHAOS_SECONDS / 6

            # -- everything arrives: both buses, each activity once -----------------------
            deadline = time.monotonic() + 90
            while True:
                msgs, entries = on_buses(nats, redis)
                if len(msgs) >= len(made) and len(entries) >= len(made):
                    break
                assert time.monotonic() < deadline, (
                    f"{len(msgs)} on NATS, {len(entries)} on Redis, {len(made)} made",
                    [s.tail() for s in shards],
                )
                time.sleep(0.5)
            time.sleep(2)  # a straggler (a second copy) would land now
            msgs, entries = on_buses(nats, redis)
            for name, events, ids in (
                ("nats", [m["event"] for m in msgs], [m["msg_id"] for m in msgs]),
                ("redis", entries, [e["_id"] for e in entries]),
            ):
                dupes = {i: c for i, c in Counter(ids).items() if c > 1}
                assert not dupes, (name, dupes)
                assert ids == [e["id"] for e in events], name
                acts = Counter((e["details"].get("activity") or {}).get("id") for e in events)
                invented = set(acts) - set(made)
                strays = [
                    (e["kind"], e["source"], e["recording"]["id"], e["changes"])
                    for e in events
                    if (e["details"].get("activity") or {}).get("id") not in made
                ]
                assert not invented, (name, strays[:10])
                assert set(acts) == set(made), (name, "lost", set(made) - set(acts))
                assert max(acts.values()) == 1, name
                for e in events:
                    aid, _c = made[e["details"]["activity"]["id"]]
                    assert e["account_id"] == aid
            assert {m["msg_id"] for m in msgs} == {e["_id"] for e in entries}

            # -- ownership: the request logs name only the owning shard -------------------
            for sim in sims:
                agents = {e.user_agent for e in sim.app.log.entries}
                assert agents == {agent(shard_of(sim.id, SHARDS))}, (sim.id, agents)

            # -- requeue every delivery: nothing more on either bus ----------------------
            for s in shards:
                s.stop()
            requeued = 0
            for k in range(SHARDS):
                store = Store(tmp_path / str(k) / "state.db")
                try:
                    requeued += store.requeue()
                finally:
                    store.close()
            assert requeued == 2 * len(made)
            for k, s in enumerate(shards):
                done = cli("once", "-c", str(s.config), "--shard", str(k), timeout=120)
                assert done.returncode == 0, done.stderr[-2000:]
            after_msgs, after_entries = on_buses(nats, redis)
            assert len(after_msgs) == len(msgs) and len(after_entries) == len(entries)
            for k in range(SHARDS):
                store = Store(tmp_path / str(k) / "state.db")
                try:
                    left = list(store.deliveries(status=("pending", "dead")))
                finally:
                    store.close()
                assert left == [], (k, left[:3])
    finally:
        for s in shards:
            s.stop()
        nats.stop()
        redis.stop()
