"""Diff and commit throughput: records per second through diff + state + outbox commit.

    .venv/bin/python bench/diff_throughput.py [--records 100000]

No HTTP: this measures the poller's own pipeline for one big cycle. Raw to-dos shaped
like the simulator's `todos.json` rows (20 projects) are generated on the fly, then:

* pass 1, "new": parse -> `Detector.observe` (a `todo_created` event each, as with
  `first_sync = "emit"`) -> `Store.commit_cycle` (records + outbox + one delivery row);
* pass 2, "changed": every record edited: parse -> diff against the stored version
  (read back one by one, as a reconcile does) -> commit (records + events + deliveries);
* pass 3, "unchanged": the same rows again (a quiet reconcile): parse -> diff -> commit.

Peak RSS is the process's (ru_maxrss), with the baseline before pass 1 shown apart.
Target: at least 50,000 records/s and under 200 MB.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import Row, peak_rss_mb, quiet_logs, table

from poller.detect import Detector
from poller.payloads import parse
from poller.store import Store

ACCOUNT_ID = 999_999_999
BASE = f"http://127.0.0.1:1/{ACCOUNT_ID}/api/v1"


def raw_todos(count: int, round_: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """(project id, to-do row) like `GET /projects/{p}/todos.json` returns."""
    for n in range(count):
        pid = 1_000 + n % 20
        tid = 10_000_000 + n
        list_id = 5_000 + n // 50
        updated = f"2026-01-{1 + round_:02d}T10:{(n // 60) % 60:02d}:{n % 60:02d}.000-05:00"
        yield (
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


def one_pass(store: Store, count: int, round_: int) -> dict[str, float]:
    detector = Detector(store, ACCOUNT_ID, emit=True)
    t0 = time.perf_counter()
    detector.preload("Todo")  # as the re-lists do: one query, not one per record
    for pid, item in raw_todos(count, round_):
        record = parse("Todo", item, f"{BASE}/projects/{pid}/todos.json", pid)
        detector.observe(record)
    t1 = time.perf_counter()
    write = detector.to_write()
    rewritten = len(write.records)
    added = store.commit_cycle(write, lambda _event: ["hook"])
    t2 = time.perf_counter()
    events = len(write.events)
    del write, detector
    gc.collect()
    return {
        "diff": t1 - t0,
        "commit": t2 - t1,
        "events": events,
        "added": len(added),
        "rewritten": rewritten,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    quiet_logs()
    count = args.records
    before = peak_rss_mb()
    with tempfile.TemporaryDirectory(prefix="bcx-bench-diff-") as tmp:
        store = Store(Path(tmp) / "state.db")
        first = one_pass(store, count, 0)
        second = one_pass(store, count, 1)
        third = one_pass(store, count, 1)
        size = (Path(tmp) / "state.db").stat().st_size + (Path(tmp) / "state.db-wal").stat().st_size
        store.close()
    peak = peak_rss_mb()
    rows = []
    for name, p in (("new", first), ("changed", second), ("unchanged", third)):
        total = p["diff"] + p["commit"]
        rate = count / total
        if name == "unchanged":
            rows.append(
                Row("pass 'unchanged': records rewritten", f"{p['rewritten']:,}", "", "", None)
            )
        rows.append(
            Row(
                f"pass '{name}': records/s (diff + commit)",
                f"{rate:,.0f} ({total:.1f} s)",
                ">= 50,000/s",
                f"{rate / 50_000:.2f}",
                rate >= 50_000,
            )
        )
        rows.append(
            Row(
                f"pass '{name}': parse+diff / commit",
                f"{p['diff']:.1f} s / {p['commit']:.1f} s ({p['added']:,.0f} events)",
                "",
                "",
                None,
            )
        )
    rows.append(
        Row(
            "peak RSS",
            f"{peak:.0f} MB (before: {before:.0f})",
            "< 200 MB",
            f"{peak / 200:.2f}",
            peak < 200,
        )
    )
    rows.append(Row("state database after both passes", f"{size / 1e6:.0f} MB", "", "", None))
    ok = table(f"diff and commit throughput ({count:,} records)", rows)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
