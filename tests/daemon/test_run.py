"""`bcx-poller run`: ready and watchdog over a test NOTIFY_SOCKET, events delivered,
/metrics and /healthz scraped, JSON logs bound to the account with secrets masked,
SIGTERM exits 0 within the deadline."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from tests.daemon._support import (
    Daemon,
    NotifySocket,
    free_port,
    http_get,
    jsonl_handler,
    read_jsonl,
    running,
    sample,
    scrape,
    simulators,
    wait_until,
    write_config,
)


def test_run_is_ready_pings_the_watchdog_delivers_serves_metrics_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    out = tmp_path / "events.jsonl"
    port = free_port()
    notify = NotifySocket(tmp_path)
    with simulators(1001001) as (sim,):
        _list, todos = sim.seed()
        config = write_config(
            tmp_path / "config.toml", [sim], jsonl_handler("file", out), metrics_port=port
        )
        env = {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "300000"}
        try:
            with running(Daemon(config, env=env, shutdown_timeout=5)) as daemon:
                # READY=1 once started, then WATCHDOG=1 every 0.15 s (half of WATCHDOG_USEC)
                wait_until(lambda: notify.times("READY=1"), 20, "READY=1")
                ready = notify.times("READY=1")[0]
                wait_until(
                    lambda: len([t for t in notify.times("WATCHDOG=1") if t > ready]) >= 5,
                    5,
                    "five WATCHDOG=1 pings",
                )
                pings = [t for t in notify.times("WATCHDOG=1") if t > ready]
                gaps = [b - a for a, b in itertools.pairwise(pings)]
                assert max(gaps) < 0.3 * 2, gaps  # well inside WATCHDOG_USEC

                # the baseline cycle, then healthy
                daemon.wait_logged("cycle_committed", within=10, baseline=True)
                wait_until(
                    lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, 5, "healthz"
                )
                _status, body = http_get(f"http://127.0.0.1:{port}/healthz")
                health = json.loads(body)
                assert health["ok"] is True and health["stale_accounts"] == []
                assert health["accounts"][str(sim.id)]["ok"] is True

                # changes in Basecamp become events delivered to the handler
                sim.account.complete_todo(todos[0])
                sim.account.add_comment("todo", todos[1], "On it")
                wait_until(lambda: len(read_jsonl(out)) >= 2, 10, "two events in the file")
                kinds = sorted(e["kind"] for e in read_jsonl(out))
                assert kinds == ["comment_created", "todo_completed"]

                # STATUS= carries a one-line summary
                wait_until(
                    lambda: any("1 accounts (0 failing)" in s for s in notify.statuses()),
                    5,
                    "a STATUS= summary",
                )

                # /metrics: cycles, durations, requests by status, 304 ratio, events by
                # kind, outbox and dead letters per handler, last success per account
                m = scrape(port)
                a = str(sim.id)
                assert (sample(m, "bcx_poller_cycles_total", account=a, result="ok") or 0) >= 2
                assert (sample(m, "bcx_poller_cycle_duration_seconds_count", account=a) or 0) >= 2
                assert (sample(m, "bcx_poller_requests_total", account=a, status="200") or 0) > 0
                assert (sample(m, "bcx_poller_requests_total", account=a, status="304") or 0) > 0
                ratio = sample(m, "bcx_poller_not_modified_ratio", account=a)
                assert ratio is not None and 0 < ratio < 1
                assert sample(m, "bcx_poller_events_total", kind="todo_completed") == 1
                assert sample(m, "bcx_poller_events_total", kind="comment_created") == 1
                assert sample(m, "bcx_poller_outbox_pending", handler="file") == 0
                assert sample(m, "bcx_poller_outbox_oldest_age_seconds", handler="file") == 0
                assert sample(m, "bcx_poller_dead_letters", handler="file") == 0
                last = sample(m, "bcx_poller_last_success_timestamp_seconds", account=a)
                assert last is not None and last > 0
                assert http_get(f"http://127.0.0.1:{port}/nope")[0] == 404

                # SIGTERM: STOPPING=1, exit 0 well within the deadline
                code, took = daemon.stop()
                assert code == 0, daemon.raw_log()[-2000:]
                assert took < 5, took
                wait_until(lambda: notify.times("STOPPING=1"), 2, "STOPPING=1")
                assert daemon.logged("daemon_stopped")

                # logs: JSON lines, cycle lines bound to the account, no secret anywhere
                logs = daemon.logs()
                assert all(line["event"] != "<not json>" for line in logs), daemon.raw_log()
                committed = [line for line in logs if line["event"] == "cycle_committed"]
                assert committed and all(line["account"] == sim.id for line in committed)
                assert sim.password not in daemon.raw_log()
        finally:
            notify.close()
    # delivered once each, no duplicates
    ids = [e["id"] for e in read_jsonl(out)]
    assert len(ids) == len(set(ids)) == 2


def test_without_notify_socket_and_with_a_bad_metrics_address(tmp_path: Path) -> None:
    """No NOTIFY_SOCKET: runs all the same. A listen address in use: exits 1, says why."""
    with simulators(1001002) as (sim,):
        sim.seed()
        busy = free_port()
        import socket

        with socket.socket() as holder:
            holder.bind(("127.0.0.1", busy))
            holder.listen()
            config = write_config(
                tmp_path / "config.toml",
                [sim],
                jsonl_handler("file", tmp_path / "e.jsonl"),
                metrics_port=busy,
            )
            with running(Daemon(config)) as daemon:
                assert daemon.proc is not None
                code = daemon.proc.wait(timeout=20)
                assert code == 1
                assert "cannot listen" in daemon.raw_log()
        config = write_config(
            tmp_path / "config.toml", [sim], jsonl_handler("file", tmp_path / "e.jsonl")
        )
        with running(Daemon(config)) as daemon:
            daemon.wait_logged("cycle_committed", within=15)
            code, _took = daemon.stop()
            assert code == 0


def test_run_with_a_bad_config_exits_2_at_once(tmp_path: Path) -> None:
    """Exit status 2 is what the unit's RestartPreventExitStatus= does not restart."""
    from tests.daemon._support import run_cli

    bad = tmp_path / "bad.toml"
    bad.write_text("[poller]\ninterval = 0\n")
    result = run_cli("run", "--config", str(bad), timeout=30)
    assert result.returncode == 2
    assert "poller.interval" in result.stderr
