"""Static shards through the real command line: the config rule for `state_path`, `--shard`
checks, the shard claim each state file records, each shard polling only its own accounts
(the simulators' request logs), `status --all-shards`, and one owner per shard."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from poller.shards import shard_of
from poller.store import CycleWrite, Store
from tests.daemon._support import Daemon, jsonl_handler, running, simulators
from tests.shards._support import accounts_in, cli, sharded_config, spread_ids

ARCHIVE = "archive"


def test_several_shards_sharing_one_state_file_is_a_config_error(tmp_path: Path) -> None:
    with simulators(*spread_ids(2, 1)) as sims:
        config = sharded_config(
            tmp_path / "config.toml", sims, shards=2, state=str(tmp_path / "state.db")
        )
        done = cli("check", "-c", str(config))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "poller.state_path" in done.stderr and "{shard}" in done.stderr
    assert "two shards cannot share one file" in done.stderr


def test_shard_out_of_range_or_missing_exits_2(tmp_path: Path) -> None:
    with simulators(*spread_ids(3, 1)) as sims:
        config = sharded_config(tmp_path / "config.toml", sims, shards=3)
        out_of_range = cli("once", "-c", str(config), "--shard", "3")
        missing = cli("status", "-c", str(config))
        not_a_shard = cli("status", "-c", str(config), "--shard", "two")
    assert out_of_range.returncode == 2
    assert "--shard: shard 3 is out of range: poller.shards = 3, so 0..2" in out_of_range.stderr
    assert missing.returncode == 2 and "--shard 0..2" in missing.stderr
    assert not_a_shard.returncode == 2 and "'two' is not a shard" in not_a_shard.stderr
    assert not list(tmp_path.glob("*/state.db"))  # nothing was polled or created


def test_each_shard_polls_only_its_own_accounts(tmp_path: Path) -> None:
    ids = spread_ids(3, 2)
    with simulators(*ids) as sims:
        for sim in sims:
            sim.seed()
        config = sharded_config(
            tmp_path / "config.toml",
            sims,
            shards=3,
            handlers=jsonl_handler(ARCHIVE, tmp_path / "archive.jsonl"),
        )
        for shard in range(3):
            before = {s.id: s.requests() for s in sims}
            done = cli("once", "-c", str(config), "--shard", str(shard), "--deliver-timeout", "0")
            assert done.returncode == 0, done.stderr[-2000:]
            asked = {s.id for s in sims if s.requests() > before[s.id]}
            # the simulators' request logs: only this shard's accounts were asked anything
            assert asked == {i for i in ids if shard_of(i, 3) == shard}, shard
            assert len(asked) == 2
        # each state file holds its own accounts only, and says whose it is
        for shard in range(3):
            state = tmp_path / str(shard) / "state.db"
            assert accounts_in(state) == {i for i in ids if shard_of(i, 3) == shard}
            with sqlite3.connect(state) as conn:
                meta = dict(conn.execute("SELECT key, value FROM shard_meta").fetchall())
            assert meta == {"shard": shard, "shards": 3}

        # backfill too reads only its shard's accounts
        before = {s.id: s.requests() for s in sims}
        back = cli("backfill", "-c", str(config), "--shard", "2", "--since", "1h", "--dry-run")
        assert back.returncode == 0, back.stderr[-2000:]
        mine = {i for i in ids if shard_of(i, 3) == 2}
        assert set(map(int, re.findall(r"account acct-(\d+):", back.stdout))) == mine
        assert {s.id for s in sims if s.requests() > before[s.id]} == mine

        one = cli("status", "-c", str(config), "--shard", "1", "--json")
        assert one.returncode == 0, one.stderr
        assert {a["account_id"] for a in json.loads(one.stdout)["accounts"]} == {
            i for i in ids if shard_of(i, 3) == 1
        }
        every = cli("status", "-c", str(config), "--all-shards", "--json")
        assert every.returncode == 0, every.stderr
        data = json.loads(every.stdout)
        assert [s["shard"] for s in data["shards"]] == [0, 1, 2]
        assert data["total"]["accounts"] == len(ids) and data["total"]["states"] == {"ok": 6}
        assert data["total"]["outbox"] == sum(s["outbox"] for s in data["shards"])
        text = cli("status", "-c", str(config), "--all-shards")
        assert text.returncode == 0
        assert "== shard 2 of 3" in text.stdout and "== total over 3 shards" in text.stdout
        assert "6 account(s) (6 ok)" in text.stdout


def test_a_state_file_of_another_shard_count_exits_2_naming_both(tmp_path: Path) -> None:
    ids = spread_ids(3, 1)
    with simulators(*ids) as sims:
        three = sharded_config(tmp_path / "config.toml", sims, shards=3)
        done = cli("once", "-c", str(three), "--shard", "0", "--deliver-timeout", "0")
        assert done.returncode == 0, done.stderr[-2000:]
        two = sharded_config(tmp_path / "config.toml", sims, shards=2)
        for command in (["once", "--deliver-timeout", "0"], ["status"], ["events"]):
            refused = cli(command[0], "-c", str(two), "--shard", "0", *command[1:])
            assert refused.returncode == 2, (command, refused.stderr[-2000:])
            assert "belongs to shard 0 of 3, but this process is shard 0 of 2" in refused.stderr
            assert "poller.shards = 3" in refused.stderr  # what to set back
        # `run` too, before it polls anything
        daemon = Daemon(two, env={"BCX_POLLER_SHARD": "0"}).start()
        assert daemon.proc is not None
        assert daemon.proc.wait(timeout=30) == 2
        assert "belongs to shard 0 of 3" in daemon.raw_log()


def test_a_state_file_from_before_shards_is_shard_0_of_1(tmp_path: Path) -> None:
    legacy = tmp_path / "0" / "state.db"
    store = Store(legacy)  # as an older version left it: state, no shard claim
    store.commit_cycle(
        CycleWrite(account_id=7_000_001, cursor="x", cursor_changed=True), lambda e: ()
    )
    store.close()
    with simulators(*spread_ids(2, 1)) as sims:
        one = sharded_config(tmp_path / "config.toml", sims, shards=1)
        assert cli("status", "-c", str(one)).returncode == 0  # adopted as it is
        two = sharded_config(tmp_path / "config.toml", sims, shards=2)
        refused = cli("status", "-c", str(two), "--shard", "0")
    assert refused.returncode == 2
    assert "belongs to shard 0 of 1, but this process is shard 0 of 2" in refused.stderr


def test_two_processes_on_one_shard_the_second_refuses(tmp_path: Path) -> None:
    ids = spread_ids(2, 2)
    with simulators(*ids) as sims:
        config = sharded_config(
            tmp_path / "config.toml",
            sims,
            shards=2,
            handlers=jsonl_handler(ARCHIVE, tmp_path / "archive.jsonl"),
        )
        # the pod name form of $BCX_POLLER_SHARD, as the Kubernetes example passes it
        with running(Daemon(config, env={"BCX_POLLER_SHARD": "bcx-poller-1"})) as first:
            started = first.wait_logged("daemon_started", within=20)
            assert started["accounts"] == 2
            first.wait_logged("cycle_committed", within=20)
            before = {s.id: s.requests() for s in sims}
            assert first.proc is not None
            second = Daemon(config, env={"BCX_POLLER_SHARD": "1"}).start()
            assert second.proc is not None
            assert second.proc.wait(timeout=30) == 1
            assert f"in use by process {first.proc.pid}" in second.raw_log()
            once = cli("once", "-c", str(config), "--shard", "1")
            assert once.returncode == 1 and f"process {first.proc.pid}" in once.stderr
            # the other shard is free, and polls only its own accounts
            other = cli("once", "-c", str(config), "--shard", "0", "--deliver-timeout", "0")
            assert other.returncode == 0, other.stderr[-2000:]
            mine = {i for i in ids if shard_of(i, 2) == 0}
            grew = {s.id for s in sims if s.requests() > before[s.id]}
            assert mine <= grew  # shard 0's accounts were polled by `once`
            first.assert_alive()
        # the daemon's accounts were shard 1's
        assert accounts_in(tmp_path / "1" / "state.db") == {i for i in ids if shard_of(i, 2) == 1}
    assert re.search(r"state file \S+/1/state.db is in use", second.raw_log())
