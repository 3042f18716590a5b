"""First sync and catch-up: wall time against the rate-limit floor.

    .venv/bin/python bench/first_sync.py [--changes 5000] [--nodelay]
                                         [--sim-process] [--latency-ms 100]
                                         [--max-in-flight N]

The simulator on 127.0.0.1 enforces Basecamp's 500 requests / 10 s (429 beyond); the
poller runs with its default `rate_limit` (450 per 10 s). The floor of a run is its
requests / 50 per second: no client can go faster without 429s.

1. first sync (baseline) of the reference account (20 projects x 500 to-dos, ...);
2. catch-up: `--changes` distinct to-dos edited while the poller was away (one feed
   activity each), worked through in slices of `max_activities` (one committed slice per
   cycle) until every change has its event; its figures sum those cycles.

Also: per-request latency over loopback vs in-process (`SimulatorTransport`), small
and large answers, to show how much of the wall time is the simulator's HTTP server.
`--nodelay` sets TCP_NODELAY on the simulator's sockets (a bench-local experiment).
`--sim-process` runs the simulator in its own process (its CPU then shows in its own row);
`--latency-ms N` makes the simulator wait N ms before each answer (see `_common`).
`--max-in-flight N` sets `[poller] max_in_flight` (default: the poller's, 4). The rows
"mean requests in flight" and "median request ms" (grant to body read, as the poller saw
it) say how much of the wall time is the bound of N requests in flight (Little's law: N
requests of R seconds each go at most N / R per second) and how much is R itself (the
added latency plus the simulator's and the poller's CPU on a shared machine).
Target: within 1.25x of the floor, zero 429s.
"""

from __future__ import annotations

import argparse
import os
import time

from _common import (
    SIM,
    Cycle,
    RemoteAccount,
    Row,
    bench,
    build_account,
    run,
    sim_label,
    sim_options,
    table,
    track_in_flight,
    use_sim_options,
)


async def latency(loopback: bool) -> tuple[float, float]:
    """Median ms of a small GET (the feed) and of a full todos.json page."""
    account = build_account(projects=1, local=not loopback)
    with bench(account, loopback=loopback) as b:
        pid = next(iter(b.account.projects))
        runner = b.runner()
        try:
            client = runner.client
            out = []
            for path in ("/events.json", f"/projects/{pid}/todos.json"):
                times = []
                for _ in range(60):
                    started = time.perf_counter()
                    await client.get(path)
                    times.append(time.perf_counter() - started)
                out.append(sorted(times)[len(times) // 2] * 1000)
            return out[0], out[1]
        finally:
            await runner.aclose()


async def main() -> bool:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=5000)
    parser.add_argument("--nodelay", action="store_true", help="TCP_NODELAY on the simulator")
    parser.add_argument(
        "--max-in-flight", type=int, default=None, help="[poller] max_in_flight (default 4)"
    )
    sim_options(parser)
    args = parser.parse_args()
    use_sim_options(args)
    if args.nodelay:
        from poller.simulator import server

        server._Handler.disable_nagle_algorithm = True

    load_before = os.getloadavg()[0]
    poller = {} if args.max_in_flight is None else {"max_in_flight": args.max_in_flight}
    in_flight = args.max_in_flight or 4
    with (
        bench(build_account(), client_rate_limit=450, reconcile_interval=3600, **poller) as b,
        track_in_flight() as tracked,
    ):
        account = b.account
        cpu = process_cpu()
        sim_cpu = account.cpu_seconds() if isinstance(account, RemoteAccount) else None
        first_span = [time.perf_counter(), 0.0]
        base = await b.cycle()
        first_span[1] = time.perf_counter()
        b.app.set_rate_limit(500, 10.0)
        await b.cycle()  # one idle cycle: the cursor is now current
        ids = sorted(account.todos)
        step = max(1, len(ids) // args.changes)
        edited = [ids[(i * step) % len(ids)] for i in range(args.changes)]
        for n, todo in enumerate(edited):
            account.update_todo(todo, content=f"catch-up edit #{n}")
        b.app.set_rate_limit(500, 10.0)
        # The backlog is worked through in slices of `max_activities` (2,000 by default),
        # one committed slice per cycle: the catch-up is every cycle until it is done.
        # One runner for every slice, as the daemon keeps one per account: its rate
        # limiter remembers the previous slice's requests (a fresh one per cycle would not).
        runner = b.runner()
        catch_span = [time.perf_counter(), 0.0]
        try:
            slices = [await b.cycle(runner=runner)]
            while sum(c.report.events for c in slices) < args.changes and slices[-1].report.events:
                slices.append(await b.cycle(runner=runner))
        finally:
            await runner.aclose()
        catch_span[1] = time.perf_counter()
        spans = {"first sync": first_span, "catch-up": catch_span}
        flight = {
            name: (tracked.mean(*span), tracked.median_ms(*span)) for name, span in spans.items()
        }
        catch = Cycle(
            report=slices[-1].report,
            requests=sum(c.requests for c in slices),
            bytes=sum(c.bytes for c in slices),
            not_modified=sum(c.not_modified for c in slices),
            rate_limited=sum(c.rate_limited for c in slices),
            seconds=sum(c.seconds for c in slices),
            server_requests=sum(c.server_requests for c in slices),
        )
        server_429 = sum(1 for e in b.app.log.entries if e.status == 429)
        cpu = process_cpu() - cpu
        if isinstance(account, RemoteAccount):
            sim_cpu = account.cpu_seconds() - (sim_cpu or 0.0)
    load_after = os.getloadavg()[0]
    small_lb, big_lb = await latency(True)
    small_ip, big_ip = await latency(False)

    rows = []
    caught = f"catch-up of {args.changes} changes, {len(slices)} cycles"
    for name, c in (("first sync", base), (caught, catch)):
        floor = c.requests / 50
        ratio = c.seconds / floor
        rows.append(
            Row(
                f"{name}: wall time ({c.requests} req)",
                f"{c.seconds:.1f} s (floor {floor:.1f} s)",
                "<= 1.25x floor",
                f"{ratio:.2f}",
                ratio <= 1.25,
            )
        )
        rows.append(Row(f"{name}: 429s", str(c.rate_limited), "0", "", c.rate_limited == 0))
    for name, (mean, median) in flight.items():
        rows.append(
            Row(
                f"{name}: mean requests in flight / median request ms",
                f"{mean:.2f} of {in_flight} / {median:.0f} ms",
                "",
                "",
                None,
            )
        )
    emitted = " + ".join(str(c.report.events) for c in slices)
    rows.append(Row("catch-up: events emitted per cycle", emitted, "", "", None))
    own = "poller + simulator" if sim_cpu is None else "poller"
    rows.append(Row(f"CPU s, both syncs: {own} process", f"{cpu:.1f}", "", "", None))
    if sim_cpu is not None:
        rows.append(Row("CPU s, both syncs: simulator process", f"{sim_cpu:.1f}", "", "", None))
    rows.append(Row("429s seen by the simulator (whole run)", str(server_429), "0", "", None))
    rows.append(
        Row(
            "median GET ms, small: loopback / in-process",
            f"{small_lb:.2f} / {small_ip:.2f}",
            "",
            "",
            None,
        )
    )
    rows.append(
        Row(
            "median GET ms, 50 to-dos: loopback / in-process",
            f"{big_lb:.2f} / {big_ip:.2f}",
            "",
            "",
            None,
        )
    )
    return table(
        f"first sync and catch-up (loopback, {sim_label()}"
        + (", TCP_NODELAY" if args.nodelay else "")
        + ")",
        rows,
        [
            f"client rate_limit 450 / 10 s (default), simulator 500 / 10 s,"
            f" max_in_flight {in_flight}",
            f"load average (1 min) {load_before:.2f} before the syncs, {load_after:.2f} after,"
            f" on {os.cpu_count()} CPUs",
            "latency rows: the first GETs with "
            + (f"+{SIM.latency_ms:g} ms; " if SIM.latency_ms else "")
            + ("loopback to the simulator process" if SIM.process else "loopback in-process"),
        ],
    )


def process_cpu() -> float:
    """CPU seconds of this process (the poller; with the simulator unless --sim-process)."""
    return time.process_time()


if __name__ == "__main__":
    run(main)
