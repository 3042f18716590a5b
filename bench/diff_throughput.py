"""Diff and commit throughput: records per second through decode + diff + commit, against
what SQLite and JSON alone allow for the same rows in the same run.

    .venv/bin/python bench/diff_throughput.py [--records 100000] [--projects 20]

No HTTP: this measures the poller's own pipeline for the big cycles (a first sync in emit
mode, a full re-list). Pages of 50 to-dos shaped like the simulator's `todos.json` rows
are made per project (not timed), then each project is one step as a re-list runs it:
decode the page bytes (the client's decoder), parse, `Detector.preload` / `prefetch` /
`observe`, `to_write()` and `Store.commit_cycle` (records + outbox + one delivery row per
event), one transaction per project, under `relaxed_gc()` as `poll_account` runs a re-list.
Three passes over the same account:

* "new": every to-do seen for the first time (a `todo_created` event each, as with
  `first_sync = "emit"`);
* "changed": every to-do edited (content and `updated_at`): a record rewritten and a
  `todo_content_changed` event each;
* "unchanged": the same pages again (a quiet re-list): nothing written.

The limit of each pass is measured in the same run, per project as well, on a second
database with the same schema and pragmas (WAL, synchronous=FULL): `json.loads` of the
same page bytes plus the SQLite writes of the very rows the poller wrote (read back from
its database beforehand, not timed), with `executemany` in one transaction: records
(upserted), outbox rows and delivery rows. For "unchanged" nothing is written: the limit
is `json.loads` plus reading the project's stored rows back (`SELECT *`).

Targets (issue 12): >= 20,000 records/s new, >= 15,000/s changed, >= 60,000/s unchanged.
Peak RSS of the process is shown for information (bench/memory.py has the memory target).
"""

from __future__ import annotations

import argparse
import gc
import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import Row, peak_rss_mb, quiet_logs, table

from poller.client import _decode_json
from poller.detect import Detector, relaxed_gc
from poller.payloads import parse
from poller.store import Store

ACCOUNT_ID = 999_999_999
BASE = f"http://127.0.0.1:1/{ACCOUNT_ID}/api/v1"
PAGE = 50
TARGETS = {"new": 20_000, "changed": 15_000, "unchanged": 60_000}


def todo(n: int, pid: int, round_: int) -> tuple[int, dict[str, Any]]:
    """(project id, to-do row) like `GET /projects/{p}/todos.json` returns."""
    tid = 10_000_000 + n
    list_id = 5_000 + n // 50
    updated = f"2026-01-{1 + round_:02d}T10:{(n // 60) % 60:02d}:{n % 60:02d}.000-05:00"
    return (
        pid,
        {
            "id": tid,
            "todolist_id": list_id,
            "position": n % 50 + 1,
            "content": f"Design review ship #{n}" + (f" (edit {round_})" if round_ else ""),
            "due_at": None,
            "due_on": None,
            "created_at": "2026-01-01T09:00:00.000-05:00",
            "updated_at": updated,
            "completed_at": False,
            "comments_count": 0,
            "private": False,
            "trashed": False,
            "creator": {
                "id": 42,
                "name": "Demo Owner",
                "avatar_url": "https://example.com/a.png",
                "fullsize_avatar_url": "https://example.com/f.png",
            },
            "assignee": {"id": 43, "type": "Person", "name": "Jane Doe"} if n % 4 == 0 else {},
            "completed": False,
            "url": f"{BASE}/projects/{pid}/todos/{tid}.json",
            "app_url": f"https://basecamp.com/{ACCOUNT_ID}/projects/{pid}/todos/{tid}",
        },
    )


def project_pages(pid: int, index: int, per_project: int, round_: int) -> list[bytes]:
    """The JSON pages of one project's `todos.json` (as Basecamp sends them)."""
    first = index * per_project
    items = [todo(n, pid, round_)[1] for n in range(first, first + per_project)]
    return [json.dumps(items[i : i + PAGE]).encode() for i in range(0, len(items), PAGE)]


def projects_of(projects: int) -> list[int]:
    return [1_000 + p for p in range(projects)]


def one_pass(store: Store, count: int, projects: int, round_: int) -> dict[str, float]:
    """The poller's side: one re-list step per project."""
    per_project = count // projects
    spent = {"diff": 0.0, "commit": 0.0, "cpu": 0.0}
    events = added = rewritten = 0
    for index, pid in enumerate(projects_of(projects)):
        pages = project_pages(pid, index, per_project, round_)
        url = f"{BASE}/projects/{pid}/todos.json"
        c0 = time.process_time()
        t0 = time.perf_counter()
        detector = Detector(store, ACCOUNT_ID, emit=True)
        detector.preload("Todo", pid)  # as the re-lists do: one query per project
        listed = {}
        for body in pages:
            for item in _decode_json(body, url):
                rec = parse("Todo", item, url, pid)
                listed.setdefault(rec.id, rec)
        detector.prefetch("Todo", listed)
        for rec in listed.values():
            detector.observe(rec)
        write = detector.to_write()
        t1 = time.perf_counter()
        done = store.commit_cycle(write, lambda _event: ["hook"])
        t2 = time.perf_counter()
        spent["cpu"] += time.process_time() - c0
        spent["diff"] += t1 - t0
        spent["commit"] += t2 - t1
        events += len(write.events)
        rewritten += len(write.records)
        added += len(done)
        del write, detector, listed, pages
    return {**spent, "events": events, "added": added, "rewritten": rewritten}


def limit_pass(
    store: Store, limit_db: sqlite3.Connection, count: int, projects: int, round_: int, name: str
) -> tuple[float, float]:
    """Seconds (wall, CPU) that json.loads + SQLite alone take for the rows the poller
    just wrote."""
    per_project = count // projects
    total = cpu = 0.0
    src = store.conn
    for index, pid in enumerate(projects_of(projects)):
        pages = project_pages(pid, index, per_project, round_)
        records = src.execute(
            "SELECT account_id, type, id, project_id, parent_type, parent_id, updated_at,"
            " state, data FROM records WHERE account_id = ? AND type = 'Todo' AND project_id = ?",
            (ACCOUNT_ID, pid),
        ).fetchall()
        outbox = src.execute(
            "SELECT seq, id, account_id, kind, project_id, private, created_at, detected_at,"
            " detected_ts, payload FROM outbox WHERE project_id = ? AND kind = ?",
            (pid, "todo_created" if name == "new" else "todo_content_changed"),
        ).fetchall()
        seqs = [row[0] for row in outbox]
        deliveries = [("hook", seq, "pending", 0, 0.0, 0.0) for seq in seqs]
        c0 = time.process_time()
        t0 = time.perf_counter()
        for body in pages:
            json.loads(body)
        if name == "unchanged":
            limit_db.execute(
                "SELECT * FROM records WHERE account_id = ? AND type = 'Todo' AND project_id = ?",
                (ACCOUNT_ID, pid),
            ).fetchall()
        else:
            limit_db.execute("BEGIN IMMEDIATE")
            limit_db.executemany(
                "INSERT INTO records (account_id, type, id, project_id, parent_type, parent_id,"
                " updated_at, state, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(account_id, type, id) DO UPDATE SET updated_at = excluded.updated_at,"
                " state = excluded.state, data = excluded.data",
                records,
            )
            limit_db.executemany(
                "INSERT INTO outbox (seq, id, account_id, kind, project_id, private, created_at,"
                " detected_at, detected_ts, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                outbox,
            )
            limit_db.executemany(
                "INSERT INTO deliveries (handler, seq, status, attempts, next_at, first_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                deliveries,
            )
            limit_db.execute("COMMIT")
        total += time.perf_counter() - t0
        cpu += time.process_time() - c0
        del pages, records, outbox, deliveries
    return total, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--projects", type=int, default=20)
    args = parser.parse_args()
    quiet_logs()
    count = args.records - args.records % args.projects
    before = peak_rss_mb()
    passes: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bcx-bench-diff-") as tmp:
        store = Store(Path(tmp) / "state.db")
        Store(Path(tmp) / "limit.db").close()  # the same schema, then plain sqlite3
        limit_db = sqlite3.connect(Path(tmp) / "limit.db", isolation_level=None)
        limit_db.execute("PRAGMA journal_mode = WAL")
        limit_db.execute("PRAGMA synchronous = FULL")
        limit_db.execute("PRAGMA foreign_keys = ON")
        for name, round_ in (("new", 0), ("changed", 1), ("unchanged", 1)):
            gc.collect()
            with relaxed_gc():  # as `poll_account` runs a re-list
                passes[name] = one_pass(store, count, args.projects, round_)
            gc.collect()
            passes[name]["limit"], passes[name]["limit_cpu"] = limit_pass(
                store, limit_db, count, args.projects, round_, name
            )
        size = sum(p.stat().st_size for p in Path(tmp).glob("state.db*"))
        limit_db.close()
        store.close()
    peak = peak_rss_mb()
    rows = []
    for name, p in passes.items():
        total = p["diff"] + p["commit"]
        rate = count / total
        limit = count / p["limit"]
        if name == "unchanged":
            rows.append(
                Row("pass 'unchanged': records rewritten", f"{p['rewritten']:,.0f}", "0", "", None)
            )
        target = TARGETS[name]
        rows.append(
            Row(
                f"pass '{name}': records/s (decode + diff + commit)",
                f"{rate:,.0f} ({total:.1f} s)",
                f">= {target:,}/s",
                f"{rate / target:.2f}",
                rate >= target,
            )
        )
        rows.append(
            Row(
                f"pass '{name}': SQLite + JSON limit, same rows",
                f"{limit:,.0f}/s ({p['limit']:.1f} s): poller at {rate / limit:.0%} of it",
                "",
                "",
                None,
            )
        )
        cpu_rate, cpu_limit = count / p["cpu"], count / p["limit_cpu"]
        rows.append(
            Row(
                f"pass '{name}': by CPU time, poller / limit",
                f"{cpu_rate:,.0f}/s / {cpu_limit:,.0f}/s ({cpu_rate / cpu_limit:.0%})",
                "",
                "",
                None,
            )
        )
        rows.append(
            Row(
                f"pass '{name}': decode+diff / commit",
                f"{p['diff']:.1f} s / {p['commit']:.1f} s ({p['added']:,.0f} events)",
                "",
                "",
                None,
            )
        )
    rows.append(Row("peak RSS", f"{peak:.0f} MB (before: {before:.0f})", "", "", None))
    rows.append(Row("state database after the passes", f"{size / 1e6:.0f} MB", "", "", None))
    ok = table(
        f"diff and commit throughput ({count:,} records, {args.projects} projects,"
        " one commit per project)",
        rows,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
