"""Two accounts, each on its own simulated Basecamp: an auth failure on one and an outage
of the other never stop the flow of the healthy one; the outage's changes arrive after it."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.daemon._support import (
    Daemon,
    free_port,
    http_get,
    jsonl_handler,
    read_jsonl,
    run_cli,
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
            wait_until(  # and B is still tried, less and less often
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

            # B's credentials work again: after a reload (which ends its backoff) its
            # change arrives too
            b.app.faults.clear()
            daemon.signal(signal.SIGHUP)
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


def test_an_account_refused_backs_off_and_status_names_the_reason(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    port = free_port()
    with simulators(1001001, 2002002) as (a, b):
        a.seed()
        _lb, todos_b = b.seed()
        config = write_config(
            tmp_path / "config.toml", [a, b], jsonl_handler("file", out), metrics_port=port
        )
        with running(Daemon(config, shutdown_timeout=3)) as daemon:
            for sim in (a, b):
                daemon.wait_logged("cycle_committed", within=20, account=sim.id, baseline=True)
            b.app.faults.add(r".*", 401)  # a wrong password, from now on
            daemon.wait_logged("account_backoff", within=15, account=b.id, retry_in=4.0)
            waits = [line["retry_in"] for line in daemon.logged("account_backoff", account=b.id)]
            assert waits == [1.0, 2.0, 4.0]  # interval 0.5 s, doubling (capped at 15 min)
            assert daemon.logged("account_backoff")[-1]["reason"] == (
                "unauthorized: check the password or token"
            )
            # while B waits its 4 s, A keeps its 0.5 s interval and B is not asked at all
            b_requests, a_requests = b.requests(), a.requests()
            time.sleep(2.5)
            assert b.requests() == b_requests
            assert a.requests() >= a_requests + 3  # an idle cycle is one request

            status = run_cli("status", "--json", "--config", str(config))
            assert status.returncode == 0, status.stderr
            accounts = {x["account_id"]: x for x in json.loads(status.stdout)["accounts"]}
            assert accounts[a.id]["state"] == "ok" and accounts[a.id]["last_error"] is None
            assert accounts[b.id]["state"] == "failing"
            assert accounts[b.id]["last_error"].startswith(
                "unauthorized: check the password or token (AuthError: 401"
            )
            table = run_cli("status", "--config", str(config)).stdout
            assert "failing" in table and "unauthorized: check the password" in table
            m = scrape(port)
            assert (
                sample(m, "bcx_poller_account_failing", account=str(b.id), reason="unauthorized")
                == 1
            )
            assert (
                sample(m, "bcx_poller_account_failing", account=str(a.id), reason="unauthorized")
                is None
            )
            assert (sample(m, "bcx_poller_account_backoff_seconds", account=str(b.id)) or 0) >= 4

            # the password is fixed and the daemon reloaded: B is asked again at once
            b.app.faults.clear()
            b.account.complete_todo(todos_b[0])
            daemon.signal(signal.SIGHUP)
            assert daemon.wait_logged("reloaded", within=5)["backoff_reset"] == [b.id]
            daemon.wait_logged("account_recovered", within=5, account=b.id)
            wait_until(lambda: _kinds_of(out, b.id) == ["todo_completed"], 10, "B's event")
            m = scrape(port)
            assert (
                sample(m, "bcx_poller_account_failing", account=str(b.id), reason="unauthorized")
                is None
            )
            assert sample(m, "bcx_poller_account_backoff_seconds", account=str(b.id)) == 0
            code, _took = daemon.stop()
            assert code == 0


def test_which_failures_back_off_and_how_long() -> None:
    from poller.accounts import account_failure
    from poller.daemon import MAX_BACKOFF, backoff_delay
    from poller.errors import AuthError, NotFound, ServerError

    root = "https://basecamp.com/1/api/v1"
    assert str(account_failure(AuthError("x", url=root + "/events.json", status=401))) == (
        "unauthorized: check the password or token"
    )
    assert account_failure(AuthError("x", status=403)).code == "forbidden"  # type: ignore[union-attr]
    assert account_failure(NotFound("x", url=root + "/events.json?since=2024")).code == (  # type: ignore[union-attr]
        "not_found"
    )
    assert account_failure(NotFound("x", url=root + "/projects/1/todos/2.json")) is None
    assert account_failure(ServerError("x", url=root + "/events.json", status=503)) is None
    assert [backoff_delay(30, n) for n in (1, 2, 3, 4, 5, 6)] == [60, 120, 240, 480, 900, 900]
    assert backoff_delay(30, 10_000) == MAX_BACKOFF == 900
