"""When each account's first cycle runs after a start or restart (`daemon.first_runs`)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from poller.daemon import first_runs
from tests.daemon._support import Daemon, run_cli, running, simulators, write_config

NOW = 1_000_000.0


def test_a_fresh_start_spreads_the_accounts_over_one_interval_in_id_order() -> None:
    got = first_runs({3: None, 1: None, 2: None, 4: None}, 30, NOW)
    assert got == {1: 0.0, 2: 7.5, 3: 15.0, 4: 22.5}


def test_after_a_restart_the_most_overdue_go_first_and_none_runs_before_it_is_due() -> None:
    # 1 was polled 2 s ago, 2 was due 20 s ago (missed during the outage), 3 never polled
    last = {1: NOW - 2, 2: NOW - 50, 3: None}
    got = first_runs(last, 30, NOW)
    assert got[3] == 0.0  # never polled: first of all
    assert got[2] == 10.0  # overdue: the next slot, not its turn in config order
    assert got[1] == 28.0  # keeps its rhythm: due 28 s from now, not earlier
    assert all(0 <= v <= 30 for v in got.values())


def test_a_clock_far_behind_the_last_attempt_waits_at_most_one_interval() -> None:
    assert first_runs({7: NOW + 86_400}, 30, NOW) == {7: 30}


def test_a_thousand_overdue_accounts_still_get_distinct_slots() -> None:
    got = first_runs({aid: NOW - 600 for aid in range(1000)}, 30, NOW)
    assert sorted(got.values()) == [30 * i / 1000 for i in range(1000)]


def test_a_restarted_daemon_polls_the_overdue_account_first(tmp_path: Path) -> None:
    """Config order [B, A]; B was polled a moment ago, A long ago: the daemon's first
    cycle is A's, at once, and B waits for its turn (its interval since its last poll).
    Before, B (first in the config) went at once and A waited half an interval."""
    with simulators(3003003, 4004004) as (a, b):
        a.seed()
        b.seed()
        config = write_config(tmp_path / "config.toml", [b, a], "", interval=20)
        done = run_cli("once", "-c", str(config))
        assert done.returncode == 0, done.stderr[-2000:]
        now = time.time()
        with sqlite3.connect(tmp_path / "state.db") as db:
            for aid, at in ((a.id, now - 100), (b.id, now)):
                db.execute(
                    "UPDATE accounts SET last_attempt_at = ? WHERE account_id = ?", (at, aid)
                )
        with running(Daemon(config, shutdown_timeout=3)) as daemon:
            daemon.wait_logged("cycle_committed", within=10, account=a.id)
            time.sleep(2)
            assert daemon.logged("cycle_committed", account=b.id) == []
