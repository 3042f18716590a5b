"""Two accounts, each on its own simulated Basecamp: an auth failure on one and an outage
of the other never stop the flow of the healthy one; the outage's changes arrive after it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.daemon._support import (
    Daemon,
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


def _kinds_of(path: Path, account: int) -> list[str]:
    return [e["kind"] for e in read_jsonl(path) if e["account_id"] == account]


def test_one_accounts_auth_failure_and_the_others_outage_are_independent(
    tmp_path: Path,
) -> None:
    out = tmp_path / "events.jsonl"
    port = free_port()
    with simulators(1001001, 2002002) as (a, b):
        _la, todos_a = a.seed()
        _lb, todos_b = b.seed()
        config = write_config(
            tmp_path / "config.toml",
            [a, b],
            jsonl_handler("file", out),
            metrics_port=port,
            cycle_timeout=2,
        )
        with running(Daemon(config, shutdown_timeout=3)) as daemon:
            for sim in (a, b):
                daemon.wait_logged("cycle_committed", within=20, account=sim.id, baseline=True)

            # B's credentials are revoked: every request is a 401 from now on
            b.app.faults.add(r".*", 401)
            daemon.wait_logged("cycle_failed", within=5, account=b.id)
            failures_b = len(daemon.logged("cycle_failed", account=b.id))
            b.account.complete_todo(todos_b[0])  # cannot be seen while B is refused

            # A keeps flowing
            a.account.complete_todo(todos_a[0])
            wait_until(lambda: _kinds_of(out, a.id) == ["todo_completed"], 10, "A's event")
            assert "AuthError" in daemon.logged("cycle_failed", account=b.id)[-1]["error"]
            wait_until(  # and B is still tried, every interval
                lambda: len(daemon.logged("cycle_failed", account=b.id)) > failures_b + 1,
                5,
                "B's next cycles",
            )

            # /healthz names B as stale once it has missed 3 intervals; A is fine
            def unhealthy() -> dict[str, object] | None:
                status, body = http_get(f"http://127.0.0.1:{port}/healthz")
                return json.loads(body) if status == 503 else None

            health = wait_until(unhealthy, 5, "/healthz to report B")
            assert health["stale_accounts"] == [b.id]
            assert health["accounts"][str(a.id)]["ok"] is True
            assert "AuthError" in health["accounts"][str(b.id)]["last_error"]

            # now A has an outage (5xx and dropped connections) while B is still refused
            a.app.faults.add(r".*", 503)
            daemon.wait_logged("cycle_failed", within=10, account=a.id)
            a.account.add_comment("todo", todos_a[1], "during the outage")
            a.account.complete_todo(todos_a[2])
            daemon.assert_alive()
            assert _kinds_of(out, a.id) == ["todo_completed"]

            # the outage ends: what happened during it is delivered, each change once
            a.app.faults.clear()
            wait_until(
                lambda: (
                    sorted(_kinds_of(out, a.id))
                    == ["comment_created", "todo_completed", "todo_completed"]
                ),
                15,
                "A's outage changes",
            )

            # B's credentials work again: its change arrives too
            b.app.faults.clear()
            wait_until(lambda: _kinds_of(out, b.id) == ["todo_completed"], 10, "B's event")

            m = scrape(port)
            assert (sample(m, "bcx_poller_cycles_total", account=str(a.id), result="ok") or 0) > 2
            assert (
                sample(m, "bcx_poller_cycles_total", account=str(a.id), result="error") or 0
            ) >= 1
            assert (
                sample(m, "bcx_poller_cycles_total", account=str(b.id), result="error") or 0
            ) >= 2
            assert (
                sample(m, "bcx_poller_requests_total", account=str(b.id), status="401") or 0
            ) >= 2
            assert (
                sample(m, "bcx_poller_requests_total", account=str(a.id), status="503") or 0
            ) >= 1
            assert sample(m, "bcx_poller_events_total", kind="todo_completed") == 3
            wait_until(
                lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, 5, "healthy again"
            )

            code, took = daemon.stop()
            assert code == 0 and took < 3 + 2

    ids = [e["id"] for e in read_jsonl(out)]
    assert len(ids) == len(set(ids)) == 4
