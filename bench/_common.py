"""Shared plumbing of the benchmarks: a simulated account, a poller pointed at it, tables.

Everything runs against `poller.simulator` on 127.0.0.1 (or in-process with
`SimulatorTransport` where a script says so); nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from poller.accounts import AccountRunner, open_account, run_cycle
from poller.config import Settings, parse_settings
from poller.poll import CycleReport
from poller.routing import router
from poller.simulator import (
    Account,
    ManualClock,
    SimulatorApp,
    SimulatorTransport,
    account_base_url,
    serve,
)
from poller.store import Store

USER_AGENT = "bcx-poller bench (ops@example.com)"
ACCOUNT_ID = 999_999_999

# The reference account: 20 projects x 500 to-dos, plus messages, documents and
# calendar events in every project.
REFERENCE = dict(
    projects=20,
    todos_per_project=500,
    messages=10,
    documents=5,
    calendar_events=5,
    comments_per_message=1,
    people=5,
)


def quiet_logs() -> None:
    """Benchmarks print tables, not one log line per cycle."""
    import logging

    import structlog

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        cache_logger_on_first_use=False,
    )


def build_account(scale: int = 1, clock: ManualClock | None = None, **overrides: Any) -> Account:
    """The reference account; `scale` multiplies the to-dos per project."""
    spec = dict(REFERENCE, **overrides)
    spec["todos_per_project"] = spec["todos_per_project"] * scale
    account = Account(ACCOUNT_ID, clock=clock or ManualClock())
    account.populate(**spec)
    return account


@dataclass
class Bench:
    """One simulated account and one poller (state in a temporary directory)."""

    account: Account
    app: SimulatorApp
    base_url: str
    tmp: Path
    transport: httpx.AsyncBaseTransport | None = None
    poller: dict[str, Any] = field(default_factory=dict)
    rate_limit: int = 500
    _store: Store | None = None

    def config(self) -> dict[str, Any]:
        return {
            "poller": {"state_path": str(self.tmp / "state.db"), **self.poller},
            "accounts": [
                {
                    "id": self.account.account_id,
                    "base_url": account_base_url(self.base_url, self.account.account_id),
                    "user_agent": USER_AGENT,
                    "username": "demo@example.com",
                    "password": "demo",
                    "rate_limit": self.rate_limit,
                }
            ],
        }

    @property
    def settings(self) -> Settings:
        return parse_settings(self.config())

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.tmp / "state.db")
        return self._store

    def runner(self) -> AccountRunner:
        return open_account(self.settings.accounts[0], transport=self.transport, store=self.store)

    async def cycle(self, advance: float = 30.0, runner: AccountRunner | None = None) -> Cycle:
        """Advance the simulator's clock, run one cycle; requests/bytes as the client saw."""
        clock = self.account.clock
        if isinstance(clock, ManualClock):
            clock.advance(advance)
        settings = self.settings
        own = runner is None
        run = runner or self.runner()
        stats = run.client.stats
        before = (stats.requests, stats.bytes_received, stats.not_modified, stats.rate_limited)
        log_before = len(self.app.log)
        started = time.perf_counter()
        try:
            report = await run_cycle(run, self.store, settings.poller, router(settings.handlers))
        finally:
            if own:
                await run.aclose()
        if report is None:
            raise RuntimeError(f"cycle failed: {run.last_error}")
        return Cycle(
            report=report,
            requests=stats.requests - before[0],
            bytes=stats.bytes_received - before[1],
            not_modified=stats.not_modified - before[2],
            rate_limited=stats.rate_limited - before[3],
            seconds=time.perf_counter() - started,
            server_requests=len(self.app.log) - log_before,
        )

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


@dataclass
class Cycle:
    report: CycleReport
    requests: int
    bytes: int
    not_modified: int
    rate_limited: int
    seconds: float
    server_requests: int


@contextmanager
def bench(
    account: Account,
    *,
    loopback: bool = True,
    rate_limit: int = 500,
    rate_window: float = 10.0,
    client_rate_limit: int = 500,
    **poller: Any,
) -> Iterator[Bench]:
    """A poller on `account`, served over loopback HTTP (default) or in-process."""
    app = SimulatorApp(account, rate_limit=rate_limit, rate_window=rate_window)
    with tempfile.TemporaryDirectory(prefix="bcx-bench-") as tmp:
        if loopback:
            with serve(app) as base_url:
                b = Bench(account, app, base_url, Path(tmp), None, poller, client_rate_limit)
                try:
                    yield b
                finally:
                    b.close()
        else:
            b = Bench(
                account,
                app,
                "http://127.0.0.1:1",
                Path(tmp),
                SimulatorTransport(app),
                poller,
                client_rate_limit,
            )
            try:
                yield b
            finally:
                b.close()


# -- reporting ---------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{cpu}, {os.cpu_count()} CPUs{mem}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def peak_rss_mb() -> float:
    """This process's peak RSS (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Row:
    figure: str
    value: str
    target: str
    ratio: str
    ok: bool | None  # None: informational


def table(title: str, rows: list[Row], notes: list[str] | None = None) -> bool:
    """Print the benchmark's table; returns True when every checked row passed."""
    head = ("figure", "measured", "target", "ratio", "")
    cells = [head] + [
        (r.figure, r.value, r.target, r.ratio, "" if r.ok is None else ("PASS" if r.ok else "MISS"))
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    print(f"\n== {title}")
    print(f"   machine: {machine()}")
    for n, c in enumerate(cells):
        print("   " + "  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
        if n == 0:
            print("   " + "  ".join("-" * w for w in widths))
    for note in notes or []:
        print(f"   note: {note}")
    sys.stdout.flush()
    return all(r.ok is not False for r in rows)


def run(main: Any) -> None:
    """`asyncio.run(main())`; exit status 0 when every target passed, 1 otherwise."""
    quiet_logs()
    ok = asyncio.run(main())
    raise SystemExit(0 if ok else 1)
