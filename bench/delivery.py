"""Delivery: outbox -> webhook handler -> a local receiver on 127.0.0.1.

    .venv/bin/python bench/delivery.py [--backlog 10000] [--rate 50] [--seconds 20]

1. backlog: `--backlog` events are committed to the outbox (one delivery row each for
   a `webhook` handler), then `Dispatcher.drain()` delivers them: events per second.
2. latency: events are committed one at a time at `--rate` per second while the
   dispatcher runs (`Dispatcher.run`, woken by `notify()` as the daemon does); latency is
   the delivery row's `done_at` (after the 2xx) minus the event's commit time.

The receiver (bench/_receiver.py) is a separate process answering 204 at once.
Target: at least 500 events/s; p99 under 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import Row, quiet_logs, table

from poller.config import parse_settings
from poller.dispatch import Dispatcher, build_targets
from poller.events import sample_event
from poller.routing import router
from poller.store import CycleWrite, Store

SECRET = "whsec_" + "YmVuY2htYXJrLXNlY3JldC1rZXktMzItYnl0ZXMhIQ=="
ACCOUNT_ID = 999_999_999


def make_event(n: int) -> dict:
    event = sample_event(ACCOUNT_ID)
    event["id"] = f"bcx_bench_{n:08d}"
    event["summary"] = f"{event['summary']} #{n}"
    return event


def commit(store: Store, route, events: list[dict]) -> None:
    store.commit_cycle(CycleWrite(account_id=ACCOUNT_ID, events=events), route)


async def main(args: argparse.Namespace, url: str, tmp: Path) -> bool:
    settings = parse_settings(
        {
            "poller": {"state_path": str(tmp / "state.db")},
            "accounts": [],
            "handlers": [{"name": "hook", "type": "webhook", "url": url, "secrets": [SECRET]}],
        }
    )
    store = Store(settings.poller.state_path)
    route = router(settings.handlers)
    dispatcher = Dispatcher(store, build_targets(settings.handlers, tmp))
    try:
        # 1. backlog
        for start in range(0, args.backlog, 1000):
            stop = min(args.backlog, start + 1000)
            commit(store, route, [make_event(n) for n in range(start, stop)])
        started = time.perf_counter()
        delivered = await dispatcher.drain(0)
        backlog_s = time.perf_counter() - started
        rate = delivered / backlog_s

        # 2. latency at a steady rate
        stop_event = asyncio.Event()
        runner = asyncio.create_task(dispatcher.run(stop_event))
        total = int(args.rate * args.seconds)
        t0 = time.perf_counter()
        for i in range(total):
            due = t0 + i / args.rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            commit(store, route, [make_event(args.backlog + i)])
            dispatcher.notify()
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline:
            pending = store.delivery_counts().get("hook", {}).get("pending", 0)
            if not pending:
                break
            await asyncio.sleep(0.05)
        stop_event.set()
        await runner
        rows = store._query(
            "SELECT d.done_at - o.detected_ts AS lat FROM deliveries d JOIN outbox o"
            " ON o.seq = d.seq WHERE o.id >= ? AND d.status = 'done' ORDER BY lat",
            (f"bcx_bench_{args.backlog:08d}",),
        )
        lats = [float(r["lat"]) for r in rows]
        failed = dispatcher.failed
    finally:
        await dispatcher.aclose()
        store.close()

    def pct(q: float) -> float:
        return lats[min(len(lats) - 1, int(q * len(lats)))] if lats else float("nan")

    p99 = pct(0.99)
    out = [
        Row(
            f"backlog of {args.backlog:,}: events/s",
            f"{rate:,.0f} ({backlog_s:.1f} s)",
            ">= 500/s",
            f"{rate / 500:.2f}",
            rate >= 500,
        ),
        Row(
            f"latency at {args.rate:g}/s: p99",
            f"{p99 * 1000:.1f} ms",
            "< 1 s",
            f"{p99:.3f}",
            p99 < 1.0 and len(lats) == total,
        ),
        Row(
            "latency p50 / p90 / max",
            f"{pct(0.5) * 1000:.1f} / {pct(0.9) * 1000:.1f} / {lats[-1] * 1000:.1f} ms",
            "",
            "",
            None,
        ),
        Row(
            "delivered at steady rate / failed", f"{len(lats)} of {total} / {failed}", "", "", None
        ),
    ]
    return table("delivery (webhook handler -> local receiver on 127.0.0.1)", out)


def entry() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    quiet_logs()
    with tempfile.TemporaryDirectory(prefix="bcx-bench-delivery-") as tmp:
        port_file = Path(tmp) / "port"
        receiver = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("_receiver.py")), str(port_file)]
        )
        try:
            for _ in range(100):
                if port_file.exists() and port_file.read_text():
                    break
                time.sleep(0.05)
            url = f"http://127.0.0.1:{port_file.read_text()}/hook"
            ok = asyncio.run(main(args, url, Path(tmp)))
        finally:
            receiver.terminate()
            receiver.wait(timeout=10)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(entry())
