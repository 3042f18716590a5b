"""Idle cost: requests and response bytes of one idle cycle, against a naive full re-list.

    .venv/bin/python bench/idle_cost.py [--inprocess]

Account: 20 projects x 500 to-dos, plus messages (with a comment), documents and
calendar events in every project, served by the simulator on 127.0.0.1. After the first
sync (baseline), nothing changes, and we measure:

* an idle cycle between reconciles (the activity feed only);
* a reconcile cycle where every conditional request answers 304;
* the naive approach: re-list every watched collection in full, every page, without
  validators (what a poller without the feed and without ETags does every cycle).

Target: the idle cycle makes at most 2 requests and under 1 % of the naive requests.
"""

from __future__ import annotations

import argparse
import collections
import re

from _common import REFERENCE, Row, bench, build_account, run, table

# The listings the reconcile reads for the default `watch` (every kind), per project.
PROJECT_LISTINGS = (
    "todolists.json",
    "todolists/completed.json",
    "todos.json",
    "topics.json",
    "documents.json",
    "attachments.json",
    "calendar_events.json",
    "calendar_events/past.json",
)


async def naive_relist(b, project_ids: list[int]) -> tuple[int, int]:
    """Every page of every watched collection, unconditionally: (requests, bytes)."""
    runner = b.runner()
    try:
        client = runner.client
        await client.get_list("/projects.json")
        await client.get_list("/people.json")
        for pid in project_ids:
            for listing in PROJECT_LISTINGS:
                await client.get_list(f"/projects/{pid}/{listing}")
        return client.stats.requests, client.stats.bytes_received
    finally:
        await runner.aclose()


def paths(b, start: int) -> str:
    counts = collections.Counter(
        re.sub(r"\d{3,}", "N", e.path.split("/api/v1", 1)[1]) + (f" {e.status}")
        for e in b.app.log.entries[start:]
    )
    return ", ".join(f"{n} x {p}" for p, n in counts.most_common(5))


async def main() -> bool:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--inprocess", action="store_true", help="SimulatorTransport instead of loopback"
    )
    args = parser.parse_args()
    account = build_account()
    project_ids = sorted(account.projects)
    with bench(account, loopback=not args.inprocess, reconcile_interval=3600) as b:
        base = await b.cycle()
        mark = len(b.app.log)
        idle = await b.cycle(advance=30)
        idle_paths = paths(b, mark)
        mark = len(b.app.log)
        b.poller["reconcile_interval"] = 0  # due now (the poller measures real time)
        recon = await b.cycle(advance=3600)
        recon_paths = paths(b, mark)
        assert recon.report.reconciled and not idle.report.reconciled
        b.app.set_rate_limit(500, 10.0)  # a fresh window for the naive re-list
        naive_req, naive_bytes = await naive_relist(b, project_ids)

    def pct(a: int, b: int) -> str:
        return f"{100 * a / b:.2f} %"

    rows = [
        Row("naive full re-list: requests", str(naive_req), "", "", None),
        Row("naive full re-list: bytes", f"{naive_bytes:,}", "", "", None),
        Row(
            "idle cycle: requests",
            str(idle.requests),
            "<= 2",
            f"{idle.requests / 2:.2f}",
            idle.requests <= 2,
        ),
        Row(
            "idle cycle: requests vs naive",
            pct(idle.requests, naive_req),
            "< 1 %",
            f"{idle.requests / naive_req / 0.01:.2f}",
            idle.requests / naive_req < 0.01,
        ),
        Row(
            "idle cycle: bytes vs naive",
            f"{idle.bytes:,} B = {pct(idle.bytes, naive_bytes)}",
            "",
            "",
            None,
        ),
        Row(
            "reconcile cycle, all 304: requests",
            f"{recon.requests} ({recon.not_modified} x 304)",
            "<= 2",
            f"{recon.requests / 2:.2f}",
            recon.requests <= 2,
        ),
        Row(
            "reconcile cycle: requests vs naive",
            pct(recon.requests, naive_req),
            "< 1 %",
            f"{recon.requests / naive_req / 0.01:.2f}",
            recon.requests / naive_req < 0.01,
        ),
        Row(
            "reconcile cycle: bytes vs naive",
            f"{recon.bytes:,} B = {pct(recon.bytes, naive_bytes)}",
            "",
            "",
            None,
        ),
        Row("first sync (baseline): requests", str(base.requests), "", "", None),
    ]
    spec = ", ".join(f"{k}={v}" for k, v in REFERENCE.items())
    return table(
        f"idle cost ({'in-process' if args.inprocess else 'loopback'}; {spec})",
        rows,
        [f"idle cycle sent: {idle_paths}", f"reconcile cycle sent: {recon_paths}"],
    )


if __name__ == "__main__":
    run(main)
