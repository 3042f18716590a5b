"""Peak memory of a first sync: does it stay flat as the account grows?

    .venv/bin/python bench/memory.py [--sizes 25000,100000,400000] [--modes baseline,emit]
                                     [--per-project 500]

Each run is a first sync of a fresh account of N to-dos (N / `--per-project` projects of
the reference shape: to-do lists of 50, 10 messages with a comment, 5 documents and 5
calendar events per project, 5 people) in baseline or emit mode (`first_sync`). Every run
is a fresh interpreter (`memory.py --one N MODE`), so nothing of an earlier run stays in
the heap; the simulator is a process of its own (`--sim-process` in `_common`), so its
account (which grows with N by design) is not counted. The figure is the poller process's
peak RSS (`ru_maxrss` of RUSAGE_SELF, read by the run itself at the end and printed as
JSON), with its RSS before the sync (imports, harness) shown beside it.

Memory, not time, is measured here: the simulator and the client allow far more than
Basecamp's 500 requests / 10 s (a 400k account would otherwise take ~6 minutes of
rate-limit waits). A 400k run still takes a few minutes of building and syncing on this
machine: leave it out with `--sizes` when time is short.

Targets (issue 12): 100k within 1.25x of 25k ("flat") and under 150 MB at 100k, in both
modes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import SIM, Row, bench, build_account, peak_rss_mb, quiet_logs, table

FAST = 1_000_000  # requests per 10 s: rate limits out of the way (see the docstring)


async def one(todos: int, mode: str, per_project: int) -> dict[str, float]:
    SIM.process = True
    projects = max(1, todos // per_project)
    before_build = peak_rss_mb()
    account = build_account(projects=projects, todos_per_project=per_project)
    with bench(account, rate_limit=FAST, first_sync=mode) as b:
        runner = b.runner()
        runner.client.limiter.limit = FAST
        try:
            before = peak_rss_mb()
            started = time.perf_counter()
            c = await b.cycle(runner=runner)
            seconds = time.perf_counter() - started
        finally:
            await runner.aclose()
        records = b.store.count_records(b.account.account_id)
        events = b.store.outbox_count()
    return {
        "todos": projects * per_project,
        "projects": projects,
        "peak_mb": peak_rss_mb(),
        "before_mb": before,
        "start_mb": before_build,
        "seconds": seconds,
        "requests": c.requests,
        "records": records,
        "events": events,
    }


def child(todos: int, mode: str, per_project: int) -> dict[str, float]:
    """One run in a fresh interpreter; its JSON line is the last of its stdout."""
    proc = subprocess.run(
        [
            sys.executable,
            str(Path(__file__)),
            "--one",
            str(todos),
            mode,
            "--per-project",
            str(per_project),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"run {todos} {mode} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="25000,100000,400000", help="to-dos, comma separated")
    parser.add_argument("--modes", default="baseline,emit")
    parser.add_argument("--per-project", type=int, default=500)
    parser.add_argument("--one", nargs=2, metavar=("TODOS", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        quiet_logs()
        out = asyncio.run(one(int(args.one[0]), args.one[1], args.per_project))
        print(json.dumps(out))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    rows: list[Row] = []
    for mode in modes:
        got: dict[int, dict[str, float]] = {}
        for size in sizes:
            r = child(size, mode, args.per_project)
            got[size] = r
            print(
                f"   {mode} {size:,} to-dos: peak {r['peak_mb']:.0f} MB"
                f" (before the sync {r['before_mb']:.0f}), {r['seconds']:.1f} s,"
                f" {r['requests']:,.0f} requests, {r['records']:,.0f} records,"
                f" {r['events']:,.0f} events",
                flush=True,
            )
            under = size != 100_000 or r["peak_mb"] < 150
            rows.append(
                Row(
                    f"{mode}: peak RSS, {size:,} to-dos ({r['projects']:.0f} projects)",
                    f"{r['peak_mb']:.0f} MB (before the sync {r['before_mb']:.0f};"
                    f" {r['seconds']:.0f} s)",
                    "< 150 MB" if size == 100_000 else "",
                    f"{r['peak_mb'] / 150:.2f}" if size == 100_000 else "",
                    under if size == 100_000 else None,
                )
            )
        small = min(got)
        for size in sorted(got):
            if size == small:
                continue
            ratio = got[size]["peak_mb"] / got[small]["peak_mb"]
            rows.append(
                Row(
                    f"{mode}: {size:,} vs {small:,} to-dos",
                    f"{ratio:.2f}x",
                    "<= 1.25x",
                    f"{ratio / 1.25:.2f}",
                    ratio <= 1.25,
                )
            )
    ok = table(
        "peak RSS of a first sync (fresh process per run, simulator in its own process)",
        rows,
        [f"{args.per_project} to-dos per project; rate limits lifted (memory, not time)"],
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
