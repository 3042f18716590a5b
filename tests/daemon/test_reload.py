"""SIGHUP: accounts and handlers added, changed and removed without losing state; a bad
new configuration is rejected with a log line and the running one stays."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.daemon._support import (
    Daemon,
    jsonl_handler,
    read_jsonl,
    running,
    simulators,
    wait_until,
    write_config,
)


def test_sighup_reloads_accounts_and_handlers_and_rejects_a_bad_config(tmp_path: Path) -> None:
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    path = tmp_path / "config.toml"
    with simulators(1001001, 2002002) as (a, b):
        _la, todos_a = a.seed()
        _lb, todos_b = b.seed()
        write_config(path, [a], jsonl_handler("first", first))
        with running(Daemon(path, shutdown_timeout=3)) as daemon:
            daemon.wait_logged("cycle_committed", within=20, account=a.id, baseline=True)
            a.account.complete_todo(todos_a[0])
            wait_until(lambda: len(read_jsonl(first)) == 1, 10, "A's first event")
            assert b.requests() == 0

            # add account B and a second handler
            write_config(
                path, [a, b], jsonl_handler("first", first) + jsonl_handler("second", second)
            )
            daemon.signal(signal.SIGHUP)
            daemon.wait_logged("reloaded", within=5)
            daemon.wait_logged("cycle_committed", within=10, account=b.id, baseline=True)
            b.account.complete_todo(todos_b[0])
            a.account.complete_todo(todos_a[1])
            wait_until(lambda: len(read_jsonl(second)) == 2, 10, "both events to the new handler")
            wait_until(lambda: len(read_jsonl(first)) == 3, 10, "both events to the old handler")
            # A's state survived the reload: no second baseline, nothing re-emitted
            assert len(daemon.logged("cycle_committed", account=a.id, baseline=True)) == 1
            assert len({e["id"] for e in read_jsonl(first)}) == 3

            # a bad configuration is rejected and the running one stays
            path.write_text(path.read_text().replace("interval = 0.5", "interval = -1"))
            daemon.signal(signal.SIGHUP)
            rejected = daemon.wait_logged("reload_rejected", within=5)
            assert "interval" in rejected["error"]
            a.account.add_comment("todo", todos_a[2], "still flowing")
            wait_until(lambda: len(read_jsonl(second)) == 3, 10, "an event after the rejection")
            daemon.assert_alive()

            # a handler that cannot be built is rejected too (nothing half-applied)
            write_config(
                path,
                [a],
                jsonl_handler("first", first)
                + '[[handlers]]\nname = "broken"\ntype = "no-such-type"\n',
            )
            daemon.signal(signal.SIGHUP)
            wait_until(lambda: len(daemon.logged("reload_rejected")) == 2, 5, "2nd rejection")
            requests_b = b.requests()
            time.sleep(1.0)
            assert b.requests() > requests_b, "B must still be polled: the old config stays"

            # remove account B and the second handler
            write_config(path, [a], jsonl_handler("first", first))
            daemon.signal(signal.SIGHUP)
            wait_until(lambda: len(daemon.logged("reloaded")) == 2, 5, "the second reload")
            time.sleep(0.5)  # a cycle of B in flight at the reload may still finish
            requests_b = b.requests()
            b.account.complete_todo(todos_b[1])
            a.account.complete_todo(todos_a[2])
            wait_until(
                lambda: (
                    [(e["account_id"], e["kind"]) for e in read_jsonl(first)].count(
                        (a.id, "todo_completed")
                    )
                    == 3
                ),
                10,
                "A's event after removing B",
            )
            time.sleep(1.0)
            assert b.requests() == requests_b, "B is no longer polled"
            assert len(read_jsonl(second)) == 3, "the removed handler gets nothing more"
            assert [e["account_id"] for e in read_jsonl(first)].count(b.id) == 1

            code, _took = daemon.stop()
            assert code == 0
