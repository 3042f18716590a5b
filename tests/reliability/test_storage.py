"""Promise 6, storage faults: a database locked by another process is waited for, then
reported clearly, without corruption; a disk that fills up during the commit fails the
cycle with its state unchanged, and the next cycle after space returns commits it all.

Disk full is simulated with SQLite's `PRAGMA max_page_count` on the poller's own
connection (portable, needs no root); the effect on SQLite is the same SQLITE_FULL a
full filesystem gives."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from typing import Any

from poller.store import Store
from tests.reliability.conftest import Rel, run_cli

LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


def hold_lock(rel: Rel, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(rel.state_path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def integrity(rel: Rel) -> str:
    conn = sqlite3.connect(rel.state_path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def state(rel: Rel) -> tuple[Any, ...]:
    db = rel.store.conn
    st = rel.store.account(rel.account.account_id)
    return (
        st.cursor,
        st.last_success_at,
        rel.store.outbox_count(),
        db.execute("SELECT count(*), total(length(data)) FROM records").fetchone(),
        db.execute("SELECT count(*) FROM validators").fetchone(),
    )


async def test_locked_database_waits_then_fails_clearly_without_corruption(rel: Rel) -> None:
    rel._store = Store(rel.state_path, busy_timeout=0.5)
    a = rel.account
    tl = a.create_todolist(a.create_project("P"), "L")
    todo, _open = a.create_todo(tl, "T"), a.create_todo(tl, "keeps the list open")
    assert await rel.cycle() is not None
    a.complete_todo(todo)
    before = state(rel)
    locker = hold_lock(rel, 3)
    try:
        started = time.monotonic()
        assert await rel.cycle() is None
        assert time.monotonic() - started >= 0.5  # it waited for the lock first
        error = rel.last_runner.last_error or ""
        assert "StateError" in error and "locked" in error, error
    finally:
        locker.communicate(timeout=10)
    assert state(rel) == before
    assert integrity(rel) == "ok"
    assert await rel.cycle() is not None
    assert [e["kind"] for e in rel.events()] == ["todo_completed"]


def test_cli_waits_for_a_briefly_locked_database(rel: Rel) -> None:
    config = rel.write_config()
    assert run_cli("once", "--config", str(config), "--deliver-timeout", "0").returncode == 0
    locker = hold_lock(rel, 1.5)
    try:
        started = time.monotonic()
        result = run_cli("once", "--config", str(config), "--deliver-timeout", "0")
        assert result.returncode == 0, result.stderr
    finally:
        locker.communicate(timeout=10)
    assert time.monotonic() - started >= 1.0
    assert integrity(rel) == "ok"


async def test_disk_full_during_commit_fails_cleanly_and_recovers(rel: Rel) -> None:
    a = rel.account
    tl = a.create_todolist(a.create_project("P"), "L")
    assert await rel.cycle() is not None
    created = {a.create_todo(tl, f"Bulk {n} " + "x" * 400) for n in range(75)}
    before = state(rel)
    db = rel.store.conn
    pages = int(db.execute("PRAGMA page_count").fetchone()[0])
    db.execute(f"PRAGMA max_page_count = {pages}")  # the "disk" is full now
    assert await rel.cycle() is None
    error = rel.last_runner.last_error or ""
    assert "StateError" in error and "full" in error, error
    assert state(rel) == before
    assert integrity(rel) == "ok"
    db.execute("PRAGMA max_page_count = 1073741823")  # space is back
    assert await rel.cycle() is not None
    events = rel.events()
    assert {e["recording"]["id"] for e in events} == created
    assert {e["kind"] for e in events} == {"todo_created"}
    assert integrity(rel) == "ok"
