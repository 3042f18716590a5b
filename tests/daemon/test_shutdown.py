"""SIGTERM with work in flight: exit 0 within --shutdown-timeout, nothing partial
committed, nothing lost (what was in flight is delivered after the restart)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

from poller.store import Store
from tests.daemon._support import (
    Daemon,
    jsonl_handler,
    read_jsonl,
    run_cli,
    running,
    simulators,
    wait_until,
    write_config,
)


def cycles(state: Path, account: int) -> int:
    """Cycles the account committed, from the state (idle cycles log at debug only)."""
    store = Store(state)
    try:
        return store.account(account).cycles
    finally:
        store.close()


GATED = textwrap.dedent(
    """
    import json, os, pathlib, sys, time
    out, gate = sys.argv[1], sys.argv[2]
    event = json.load(sys.stdin)
    pathlib.Path(out + ".started").write_text(event["id"])
    while os.path.exists(gate):
        time.sleep(0.05)
    with open(out, "a") as f:
        f.write(event["id"] + "\\n")
    """
)


def test_a_delivery_in_flight_is_abandoned_at_the_deadline_and_delivered_after_restart(
    tmp_path: Path,
) -> None:
    script, out, gate = tmp_path / "deliver.py", tmp_path / "delivered.txt", tmp_path / "gate"
    script.write_text(GATED)
    gate.touch()
    handler = (
        '[[handlers]]\nname = "hook"\ntype = "script"\n'
        f'command = ["{sys.executable}", "{script}", "{out}", "{gate}"]\ntimeout = 120\n'
    )
    with simulators(1001001) as (sim,):
        _l, todos = sim.seed()
        config = write_config(tmp_path / "config.toml", [sim], handler)
        with running(Daemon(config, shutdown_timeout=2)) as daemon:
            daemon.wait_logged("cycle_committed", within=20, baseline=True)
            sim.account.complete_todo(todos[0])
            started = Path(str(out) + ".started")
            wait_until(started.exists, 10, "the delivery to start")
            in_flight = started.read_text()

            code, took = daemon.stop()
            assert code == 0, daemon.raw_log()[-2000:]
            assert took < 2 + 2, took  # the deadline, plus interpreter shutdown
            assert daemon.logged("shutdown_deadline_reached")
        assert not out.exists()

        pending = run_cli("deliveries", "--json", "--config", str(config))
        assert pending.returncode == 0, pending.stderr
        rows = json.loads(pending.stdout)
        assert [(r["event_id"], r["status"]) for r in rows] == [(in_flight, "pending")]

        # restart with the receiver working again: delivered, same event id, once
        gate.unlink()
        with running(Daemon(config, shutdown_timeout=2)) as daemon:
            wait_until(out.exists, 15, "the redelivery")
            polled = cycles(tmp_path / "state.db", sim.id)
            wait_until(lambda: cycles(tmp_path / "state.db", sim.id) > polled, 10, "a cycle")
            code, _took = daemon.stop()
            assert code == 0
        assert out.read_text().split() == [in_flight]


def test_a_cycle_in_flight_is_abandoned_without_committing_and_redone_after_restart(
    tmp_path: Path,
) -> None:
    out = tmp_path / "events.jsonl"
    with simulators(1001001) as (sim,):
        _l, todos = sim.seed()
        config = write_config(tmp_path / "config.toml", [sim], jsonl_handler("file", out))
        with running(Daemon(config, shutdown_timeout=1.5)) as daemon:
            daemon.wait_logged("cycle_committed", within=20, baseline=True)
            # the next cycle gets stuck half-way: the feed answers, a refetch never does
            sim.app.faults.add(r"/todos/\d+\.json$", None, hang=True)
            sim.account.complete_todo(todos[0])
            wait_until(
                lambda: any(r.path.endswith(f"/todos/{todos[0]}.json") for r in sim.app.log),
                10,
                "the cycle to reach the hanging request",
            )
            cycles_before = cycles(tmp_path / "state.db", sim.id)
            code, took = daemon.stop()
            assert code == 0, daemon.raw_log()[-2000:]
            assert took < 1.5 + 2, took
            assert daemon.logged("cycle_abandoned", account=sim.id)
            assert cycles(tmp_path / "state.db", sim.id) == cycles_before

        store = Store(tmp_path / "state.db")
        try:
            assert store.events(limit=100) == []  # nothing partial: no event, no delivery
            assert store.outbox_count() == 0
        finally:
            store.close()
        assert read_jsonl(out) == []

        sim.app.faults.clear()
        with running(Daemon(config, shutdown_timeout=2)) as daemon:
            wait_until(lambda: read_jsonl(out), 15, "the change after the restart")
            code, _took = daemon.stop()
            assert code == 0
        assert [e["kind"] for e in read_jsonl(out)] == ["todo_completed"]
