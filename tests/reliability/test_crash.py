"""Promise 1, crash safety: `bcx-poller run` killed with SIGKILL at 50 random points
(mid-pagination, mid-commit, mid-delivery) loses nothing, invents nothing, and keeps the
database intact. One long test, bounded: 50 kills at 0.05-0.6 s after start-up, then a
clean `once` that drains what is left."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.reliability.conftest import (
    Rel,
    keep_output,
    read_jsonl,
    recorder,
    run_cli,
)

KILLS = 50
SEED = int(os.environ.get("BCX_CRASH_SEED", "20240115"))


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path, timeout=30)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def key(event: dict[str, Any]) -> tuple[Any, ...]:
    """What one real change is: its kind, the item, and the comment for comment events."""
    comment = (event.get("details") or {}).get("comment") or {}
    return (event["kind"], event["recording"]["id"], comment.get("id"))


class World:
    """The simulator side: makes changes and remembers the events they must give."""

    def __init__(self, rel: Rel, rng: random.Random) -> None:
        a = rel.account
        self.rel, self.a, self.rng = rel, a, rng
        self.project = a.create_project("Crash", "kill -9 target")
        self.list = a.create_todolist(self.project, "Many")
        # 60 to-dos: the list re-list needs two pages
        self.open_todos = [a.create_todo(self.list, f"Seed {n}") for n in range(60)]
        self.docs = [a.create_document(self.project, f"Doc {n}", "v1") for n in range(25)]
        self.edited: set[int] = set()
        self.trashed: set[int] = set()
        self.expected: set[tuple[Any, ...]] = set()

    def mutate(self) -> None:
        a, rng = self.a, self.rng
        self.rel.clock.advance(rng.uniform(1, 20))
        choice = rng.choice(["todo", "quiet_todo", "complete", "comment", "edit", "trash", "msg"])
        if choice in ("todo", "quiet_todo"):
            tid = a.create_todo(self.list, f"New {rng.random():.6f}", silent=choice != "todo")
            self.expected.add(("todo_created", tid, None))
        elif choice == "complete" and self.open_todos:
            tid = self.open_todos.pop(rng.randrange(len(self.open_todos)))
            a.complete_todo(tid)
            self.expected.add(("todo_completed", tid, None))
        elif choice == "comment" and self.open_todos:
            tid = rng.choice(self.open_todos)
            cid = a.add_comment("todo", tid, f"Note {rng.random():.6f}")
            self.expected.add(("comment_created", tid, cid))
        elif choice == "edit":
            free = [d for d in self.docs if d not in self.edited and d not in self.trashed]
            if free:
                doc = rng.choice(free)
                self.edited.add(doc)
                a.update_document(doc, content=f"v2 {rng.random():.6f}")
                self.expected.add(("document_changed", doc, None))
        elif choice == "trash":
            free = [d for d in self.docs if d not in self.trashed]
            if free:
                doc = rng.choice(free)
                self.trashed.add(doc)
                a.trash_document(doc, silent=True)  # no feed entry: only the re-list sees it
                self.expected.add(("document_trashed", doc, None))
        else:
            mid = a.create_message(self.project, f"Msg {rng.random():.6f}", "hello")
            self.expected.add(("message_created", mid, None))


def wait_started(log: Path, proc: subprocess.Popen[bytes], limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if b"daemon_started" in log.read_bytes():
            return
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited early: {log.read_text()}")
        time.sleep(0.01)
    raise AssertionError("daemon did not start")


def test_kill_9_at_random_points_loses_and_invents_nothing(rel: Rel) -> None:
    rng = random.Random(SEED)
    world = World(rel, rng)
    jsonl = rel.tmp / "events.jsonl"
    script_out = rel.tmp / "script.jsonl"
    rel.handlers = [
        {"name": "file", "type": "jsonl", "path": str(jsonl)},
        {
            "name": "hook",
            "type": "script",
            "command": [sys.executable, "-I", "-S", str(recorder(rel.tmp)), str(script_out)],
            "timeout": 10,
            "retry_initial": 0.05,
            "retry_max": 0.2,
        },
    ]
    config = rel.write_config(interval=0.2, jitter=0.0, cycle_timeout=20, feed_overlap=900)
    first = run_cli("once", "--config", str(config), "--deliver-timeout", "0")
    assert first.returncode == 0, first.stderr

    started = time.monotonic()
    for n in range(KILLS):
        for _ in range(rng.randint(1, 4)):
            world.mutate()
        log = rel.tmp / f"run-{n}.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "poller", "run", "--config", str(config)],
                stdout=err,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_started(log, proc)
                delay = rng.uniform(0.05, 0.6)
                if rng.random() < 0.5:  # a change while the daemon is mid-cycle
                    time.sleep(delay / 2)
                    world.mutate()
                    time.sleep(delay / 2)
                else:
                    time.sleep(delay)
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
        keep_output(f"run #{n} (killed)", log.read_text(errors="replace"))
        assert integrity(rel.state_path) == "ok", f"after kill #{n}"
    assert time.monotonic() - started < 150, "the crash loop must stay bounded"

    # a clean run: the changes still undetected are found, everything pending delivered
    rel.clock.advance(30)
    final = run_cli("once", "--config", str(config), "--deliver-timeout", "20")
    assert final.returncode == 0, final.stderr
    assert integrity(rel.state_path) == "ok"

    outbox = rel.events()
    outbox_keys = [key(e) for e in outbox]
    # exactly once in the outbox (a crash never commits half a cycle, nor one twice)
    assert len(outbox_keys) == len(set(outbox_keys)), "a change was recorded twice"
    assert set(outbox_keys) == world.expected, (
        f"missing {sorted(world.expected - set(outbox_keys))[:5]},"
        f" invented {sorted(set(outbox_keys) - world.expected)[:5]}"
    )
    ids = {key(e): e["id"] for e in outbox}

    lines, broken = read_jsonl(jsonl)
    assert broken <= KILLS  # only a kill mid-write may leave a cut line
    scripted = [r["event"] for r in read_jsonl(script_out)[0]]
    for name, delivered in (("jsonl", lines), ("script", scripted)):
        got = {key(e) for e in delivered}
        assert got == world.expected, f"{name}: missing {sorted(world.expected - got)[:5]}"
        for e in delivered:  # a duplicate delivery carries the same event id
            assert e["id"] == ids[key(e)], name
    assert not [e for e in outbox if e["kind"].endswith("_trashed")] or all(
        e["recording"]["id"] in world.trashed for e in outbox if e["kind"].endswith("_trashed")
    )
    pending = rel.store.deliveries(status=("pending", "dead"))
    assert pending == [], [(d.handler, d.status, d.last_error) for d in pending]
    assert oct(rel.state_path.stat().st_mode & 0o777) == "0o600"
    assert oct(jsonl.stat().st_mode & 0o777) == "0o600"
