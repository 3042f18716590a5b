"""`bcx-poller reshard --to N` with real shard files and real subprocesses: 3 -> 4 shards
with deliveries still pending and fresh changes after it, nothing lost and nothing
re-emitted (event ids counted in two handlers' jsonl files); refused while a daemon holds a
shard's lock; and every table of the state database is one reshard knows how to move."""

from __future__ import annotations

import sqlite3
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from poller.reshard import BY_EVENT, KNOWN_TABLES, OUTBOX, PER_ACCOUNT, PER_FILE
from poller.shards import shard_of
from poller.store import Store
from tests.daemon._support import Daemon, Sim, jsonl_handler, read_jsonl, running, simulators
from tests.shards._support import (
    accounts_in,
    cli,
    delivery_rows,
    outbox_ids,
    sharded_config,
    spread_ids,
)


def test_every_table_of_the_state_database_is_one_reshard_moves(tmp_path: Path) -> None:
    """A new per-account table (a migration) must be taught to reshard: this fails until
    it is named in poller/reshard.py, and reshard itself refuses a file with an unknown
    table."""
    store = Store(tmp_path / "state.db")
    store.claim_shard(0, 1)
    try:
        tables = {
            r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        columns = {t: {r[1] for r in store.conn.execute(f"PRAGMA table_info({t})")} for t in tables}
    finally:
        store.close()
    assert tables - {"sqlite_sequence"} <= KNOWN_TABLES, sorted(tables - KNOWN_TABLES)
    keyed = {t for t, cols in columns.items() if "account_id" in cols}
    assert keyed == {*PER_ACCOUNT, OUTBOX}, "a table keyed by account_id that reshard ignores"
    assert "seq" in columns[BY_EVENT]  # deliveries follow their event
    assert not (set(PER_FILE) & keyed)


def _configs(tmp: Path, sims: list[Sim], shards: int) -> Path:
    handlers = jsonl_handler("archive", tmp / "archive.jsonl") + (
        # its directory does not exist yet: every delivery to it fails and stays pending
        jsonl_handler("late", tmp / "late" / "events.jsonl") + "retry_initial = 0.2\n"
        "retry_max = 0.5\n"
    )
    return sharded_config(
        tmp / "config.toml",
        sims,
        shards=shards,
        handlers=handlers,
        extra_poller='first_sync = "emit"',
    )


def _once_all(config: Path, shards: int, deliver: float) -> None:
    """`once` of every shard, all at once (one process per shard, as deployed)."""
    with ThreadPoolExecutor(shards) as pool:
        runs = pool.map(
            lambda k: cli(
                "once", "-c", str(config), "--shard", str(k), "--deliver-timeout", str(deliver)
            ),
            range(shards),
        )
        for shard, done in enumerate(runs):
            assert done.returncode == 0, (shard, done.stderr[-3000:])


def _all_outbox(tmp: Path, shards: int) -> Counter[str]:
    return Counter(i for k in range(shards) for i in outbox_ids(tmp / str(k) / "state.db"))


def test_reshard_3_to_4_loses_nothing_and_emits_nothing_twice(tmp_path: Path) -> None:
    ids = spread_ids(3, 2, moving_to=4)
    with simulators(*ids) as sims:
        todos = {}
        for sim in sims:
            _list, todos[sim.id] = sim.seed()
        config = _configs(tmp_path, sims, 3)
        _once_all(config, 3, deliver=0.5)  # first sync: *_created, "late" left pending

        before = _all_outbox(tmp_path, 3)
        assert before and max(before.values()) == 1
        pending = [r for k in range(3) for r in delivery_rows(tmp_path / str(k) / "state.db")]
        assert {s for h, _i, s in pending if h == "late"} == {"pending"}
        assert {s for h, _i, s in pending if h == "archive"} == {"done"}

        # a daemon holds shard 1's lock: reshard refuses and changes nothing
        with running(Daemon(config, env={"BCX_POLLER_SHARD": "1"})) as daemon:
            daemon.wait_logged("daemon_started", within=20)
            assert daemon.proc is not None
            refused = cli("reshard", "-c", str(config), "--to", "4")
            assert refused.returncode == 1, refused.stdout + refused.stderr
            assert f"in use by process {daemon.proc.pid}" in refused.stderr
            assert "1/state.db" in refused.stderr
            assert daemon.stop()[0] == 0
        assert not (tmp_path / "3" / "state.db").exists()
        assert not list(tmp_path.glob("*/*.reshard-new"))

        dry = cli("reshard", "-c", str(config), "--to", "4", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        moving = {i for i in ids if shard_of(i, 3) != shard_of(i, 4)}
        assert f"{len(ids) - len(moving)} stay, {len(moving)} move" in dry.stdout
        assert not (tmp_path / "3" / "state.db").exists()

        moved = cli("reshard", "-c", str(config), "--to", "4")
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert "shards = 4" in moved.stdout  # the config change to make
        assert len(list(tmp_path.glob("*/state.db.pre-reshard-*"))) == 3

        # the old count no longer opens the new files
        old = cli("status", "-c", str(config), "--shard", "0")
        assert old.returncode == 2 and "belongs to shard 0 of 4" in old.stderr

        # every account lives in its new shard's file only; every event and delivery moved
        for k in range(4):
            state = tmp_path / str(k) / "state.db"
            assert accounts_in(state) == {i for i in ids if shard_of(i, 4) == k}, k
        assert _all_outbox(tmp_path, 4) == before
        after_rows = [r for k in range(4) for r in delivery_rows(tmp_path / str(k) / "state.db")]
        assert sorted(after_rows) == sorted(pending)

        # fresh changes, the new config, the "late" target reachable again
        for sim in sims:
            sim.account.complete_todo(todos[sim.id][0])
        config = _configs(tmp_path, sims, 4)
        (tmp_path / "late").mkdir()
        _once_all(config, 4, deliver=5)

        archive = Counter(e["id"] for e in read_jsonl(tmp_path / "archive.jsonl"))
        late = Counter(e["id"] for e in read_jsonl(tmp_path / "late" / "events.jsonl"))
        outbox = _all_outbox(tmp_path, 4)
        assert max(archive.values()) == 1, "an event was delivered twice"
        assert max(late.values()) == 1, "an event was delivered twice"
        assert max(outbox.values()) == 1, "an event is in two shard files"
        assert set(archive) == set(late) == set(outbox)  # nothing lost, nothing extra
        fresh = set(outbox) - set(before)
        completed = [
            e
            for e in read_jsonl(tmp_path / "archive.jsonl")
            if e["id"] in fresh and e["kind"] == "todo_completed"
        ]
        assert sorted(e["account_id"] for e in completed) == sorted(ids)
        # no account was synced afresh: the only new events are the completions
        assert {e["kind"] for e in read_jsonl(tmp_path / "archive.jsonl") if e["id"] in fresh} <= {
            "todo_completed",
            "todolist_changed",
        }

        # and again: nothing new
        _once_all(config, 4, deliver=0)
        assert _all_outbox(tmp_path, 4) == outbox


def test_reshard_needs_shard_in_the_new_path_and_refuses_to_overwrite(tmp_path: Path) -> None:
    ids = spread_ids(1, 2)
    with simulators(*ids) as sims:
        single = sharded_config(
            tmp_path / "config.toml", sims, shards=1, state=str(tmp_path / "state.db")
        )
        assert cli("once", "-c", str(single), "--deliver-timeout", "0").returncode == 0
        no_placeholder = cli("reshard", "-c", str(single), "--to", "2")
        assert no_placeholder.returncode == 2
        assert "--state-path" in no_placeholder.stderr and "{shard}" in no_placeholder.stderr
        (tmp_path / "s-1.db").write_text("something else")
        template = str(tmp_path / "s-{shard}.db")
        busy = cli("reshard", "-c", str(single), "--to", "2", "--state-path", template)
        assert busy.returncode == 1 and "s-1.db exists" in busy.stderr
        (tmp_path / "s-1.db").unlink()
        done = cli("reshard", "-c", str(single), "--to", "2", "--state-path", template)
        assert done.returncode == 0, done.stderr
        assert f'state_path = "{template}"' in done.stdout and "shards = 2" in done.stdout
        assert not (tmp_path / "state.db").exists()  # kept aside as .pre-reshard-*
        assert accounts_in(tmp_path / "s-0.db") | accounts_in(tmp_path / "s-1.db") == set(ids)
        with sqlite3.connect(tmp_path / "s-1.db") as conn:
            assert dict(conn.execute("SELECT key, value FROM shard_meta")) == {
                "shard": 1,
                "shards": 2,
            }
