"""`bcx-poller once / check / status` as real subprocesses against the loopback simulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import Harness


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "poller", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def jsonl_handler(path: Path) -> str:
    return f'\n[[handlers]]\nname = "file"\ntype = "jsonl"\npath = "{path}"\n'


def lines(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_once_delivers_each_change_once_and_rerunning_never_re_emits(sim: Harness) -> None:
    out = sim.tmp / "events.jsonl"
    p = sim.account.create_project("Ops")
    tl = sim.account.create_todolist(p, "List")
    todo = sim.account.create_todo(tl, "Rotate keys")
    sim.account.create_todo(tl, "Keep the list open")
    config = sim.write_config(jsonl_handler(out))
    first = run("once", "--config", str(config), "--deliver-timeout", "5")
    assert first.returncode == 0, first.stderr
    assert "baseline recorded" in first.stderr
    assert '"first_sync_progress"' in first.stderr  # a long first sync shows progress
    assert lines(out) == []
    sim.clock.advance(60)
    sim.account.complete_todo(todo)
    second = run("once", "--config", str(config), "--deliver-timeout", "5")
    assert second.returncode == 0, second.stderr
    got = lines(out)
    assert [e["kind"] for e in got] == ["todo_completed"]
    for _ in range(2):
        sim.clock.advance(60)
        again = run("once", "--config", str(config), "--deliver-timeout", "5")
        assert again.returncode == 0, again.stderr
    assert lines(out) == got
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert oct((sim.tmp / "state.db").stat().st_mode & 0o777) == "0o600"


def test_once_exits_1_when_an_account_cannot_be_polled_and_keeps_its_state(sim: Harness) -> None:
    config = sim.write_config()
    assert run("once", "--config", str(config)).returncode == 0
    cursor = sim.store.account(sim.account.account_id).cursor
    sim.app.faults.add(r".*", 503)
    failed = run("once", "--config", str(config), "--deliver-timeout", "0")
    assert failed.returncode == 1
    assert "FAILED" in failed.stderr and "ServerError" in failed.stderr
    assert sim.store.account(sim.account.account_id).cursor == cursor
    status = run("status", "--config", str(config), "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["accounts"][0]["last_error"].startswith("ServerError")
    assert data["accounts"][0]["cursor"] == cursor


def test_once_with_bad_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[poller]\ninterval = -1\n")
    result = run("once", "--config", str(bad))
    assert result.returncode == 2
    assert "poller.interval" in result.stderr


def test_check_online_reports_who_and_fails_on_401(sim: Harness) -> None:
    config = sim.write_config()
    ok = run("check", "--online", "--config", str(config))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "authenticated as Demo Owner" in ok.stdout
    bad = Path(str(config)).read_text().replace('password = "demo"', 'password = "wrong-secret"')
    config.write_text(bad)
    refused = run("check", "--online", "--config", str(config))
    assert refused.returncode == 1
    assert "AuthError" in refused.stdout
    assert "wrong-secret" not in refused.stdout + refused.stderr
