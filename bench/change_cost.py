"""Cost grows with change, not with size: requests to detect C changed items.

    .venv/bin/python bench/change_cost.py [--inprocess | --sim-process] [--latency-ms N]

The reference account (20 projects x 500 to-dos, messages, documents, calendar events)
at 1x and at 4x the to-dos, on the loopback simulator. After the first sync, C distinct
to-dos spread over every project are edited (each leaves one activity in the feed), then
one cycle runs (between reconciles) and we count its requests, for C = 1, 10, 100.

Targets: the requests for a given C stay within 5 % between 1x and 4x, and are close to
C/50 + a constant (the feed's pages).
"""

from __future__ import annotations

import argparse
import math

from _common import Row, bench, build_account, run, sim_label, sim_options, table, use_sim_options

CHANGES = (1, 10, 100)


def pick_todos(account, count: int, salt: int) -> list[int]:
    """`count` distinct to-dos, spread evenly over the account."""
    ids = sorted(account.todos)
    step = max(1, len(ids) // count)
    return [ids[(i * step + salt) % len(ids)] for i in range(count)]


def pick_clustered(account, count: int, salt: int) -> list[int]:
    """`count` distinct to-dos filling whole lists (a burst: a triage, a bulk edit)."""
    by_list: dict[int, list[int]] = {}
    for tid in sorted(account.todos):
        by_list.setdefault(account.todos[tid].todolist_id, []).append(tid)
    lists = sorted(by_list)
    out: list[int] = []
    for n in range(len(lists)):
        out.extend(by_list[lists[(n + salt * 7) % len(lists)]])
        if len(out) >= count:
            return out[:count]
    return out


async def measure(scale: int, loopback: bool, picker=pick_todos) -> dict[int, tuple[int, int, int]]:
    """C -> (requests, events, bytes) of the cycle that detects C changes."""
    out: dict[int, tuple[int, int, int]] = {}
    with bench(build_account(scale), loopback=loopback, reconcile_interval=3600) as b:
        account = b.account
        await b.cycle()
        await b.cycle()  # settle: one idle cycle after the baseline
        for n, count in enumerate(CHANGES):
            for todo in picker(account, count, salt=n + 1):
                account.update_todo(todo, content=f"edited in round {n} #{todo}")
            b.app.set_rate_limit(500, 10.0)  # each round starts with a fresh window
            c = await b.cycle()
            assert not c.report.reconciled
            out[count] = (c.requests, c.report.events, c.bytes)
    return out


async def main() -> bool:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inprocess", action="store_true", help="SimulatorTransport")
    sim_options(parser)
    args = parser.parse_args()
    if args.inprocess and args.sim_process:
        parser.error("--inprocess and --sim-process exclude each other")
    use_sim_options(args)
    one = await measure(1, not args.inprocess)
    four = await measure(4, not args.inprocess)
    rows: list[Row] = []
    for count in CHANGES:
        r1, e1, _ = one[count]
        r4, e4, _ = four[count]
        spread = abs(r4 - r1) / r1
        rows.append(
            Row(
                f"C={count}: requests 1x / 4x (events)",
                f"{r1} / {r4} ({e1} / {e4})",
                "4x within 5 % of 1x",
                f"{r4 / r1:.3f}",
                spread <= 0.05,
            )
        )
    for count in CHANGES:
        r1 = one[count][0]
        ideal = math.ceil(count / 50) + 1  # feed pages + a constant of 1
        rows.append(
            Row(
                f"C={count}: requests vs C/50 + const",
                f"{r1}",
                f"~{ideal} (ceil(C/50) + 1)",
                f"{r1 / ideal:.2f}",
                r1 <= 1.25 * ideal,
            )
        )
    burst = await measure(1, not args.inprocess, pick_clustered)
    burst4 = await measure(4, not args.inprocess, pick_clustered)
    for count in CHANGES:
        r1, r4 = burst[count][0], burst4[count][0]
        # feed pages (a full last page needs one more, empty) + one GET per list of 50
        ideal = math.ceil((count + 1) / 50) + math.ceil(count / 50)
        rows.append(
            Row(
                f"burst C={count} (whole lists): 1x / 4x",
                f"{r1} / {r4} ({burst[count][1]} events)",
                f"~{ideal} (feed pages + lists), 4x within 5 %",
                f"{r1 / ideal:.2f}",
                r1 <= 1.25 * ideal and abs(r4 - r1) / r1 <= 0.05,
            )
        )
    r_1, r_100 = one[1][0], one[100][0]
    slope = (r_100 - r_1) / 99
    rows.append(Row("marginal requests per changed item", f"{slope:.3f}", "~0.02 (1/50)", "", None))
    both = f"{one[100][2]:,} / {four[100][2]:,}"
    rows.append(Row("bytes for C=100, 1x / 4x", both, "", "", None))
    return table(
        f"change cost ({'in-process' if args.inprocess else 'loopback, ' + sim_label()})",
        rows,
        [
            "a change = one edited to-do (one feed activity); reconcile not due",
            "spread: C to-dos over every list; burst: C to-dos filling whole lists",
        ],
    )


if __name__ == "__main__":
    run(main)
