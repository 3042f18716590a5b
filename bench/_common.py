"""Shared plumbing of the benchmarks: a simulated account, a poller pointed at it, tables.

Everything runs against `poller.simulator` on 127.0.0.1 (or in-process with
`SimulatorTransport` where a script says so); nothing leaves the machine.

Options a script adds with `sim_options(parser)` and applies with `use_sim_options(args)`:

  --sim-process     the simulator runs in its own process (`python -m poller.simulator
                    --populate SPEC --control`): its CPU is off the poller's GIL. The
                    account is built there; `build_account()` then returns a
                    `RemoteAccount`, which forwards the few reads and mutations the
                    benchmarks make over the simulator's stdin/stdout.
  --latency-ms N    the simulator waits N ms before handling each request (loopback only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
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


@dataclass
class SimOptions:
    process: bool = False  # the simulator in its own process
    latency_ms: float = 0.0  # waited by the simulator before each request


SIM = SimOptions()


def sim_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sim-process", action="store_true", help="run the simulator in its own process"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="added by the simulator to every answer"
    )


def use_sim_options(args: argparse.Namespace) -> None:
    SIM.process = bool(args.sim_process)
    SIM.latency_ms = float(args.latency_ms)


def sim_label() -> str:
    parts = ["simulator in its own process" if SIM.process else "simulator in-process"]
    if SIM.latency_ms:
        parts.append(f"+{SIM.latency_ms:g} ms per answer")
    return ", ".join(parts)


class RemoteAccount:
    """The reference account built and served by `python -m poller.simulator` in its own
    process; the benchmarks' reads and mutations go over its control channel."""

    def __init__(
        self,
        spec: dict[str, Any],
        *,
        rate_limit: int = 500,
        rate_window: float = 10.0,
        latency_ms: float = 0.0,
    ) -> None:
        cmd = [
            sys.executable,
            "-m",
            "poller.simulator",
            "--port",
            "0",
            "--account-id",
            str(ACCOUNT_ID),
            "--populate",
            json.dumps(spec),
            "--manual-clock",
            "--control",
            "--rate-limit",
            str(rate_limit),
            "--rate-window",
            str(rate_window),
            "--latency-ms",
            str(latency_ms),
        ]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        hello = json.loads(self._line())
        self.base_url: str = hello["base_url"]
        self.account_id: int = hello["account_id"]
        self.clock = SimpleNamespace(advance=lambda seconds: self._do("advance", seconds=seconds))
        self.app = RemoteApp(self)
        self._todos: dict[int, Any] | None = None  # fetched once, until the next mutation

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the simulator process exited ({self.proc.poll()})")
        return line

    def _do(self, op: str, **fields: Any) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self._line())
        if "error" in reply:
            raise RuntimeError(f"simulator: {op}: {reply['error']}")
        return reply["ok"]

    def __getattr__(self, method: str) -> Any:
        """`account.update_todo(...)` and the other mutations, run in the simulator."""
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args: Any, **kwargs: Any) -> Any:
            self._todos = None
            return self._do("call", method=method, args=args, kwargs=kwargs)

        return call

    @property
    def todos(self) -> dict[int, Any]:
        if self._todos is None:
            found = self._do("todos")
            self._todos = {tid: SimpleNamespace(todolist_id=lid) for tid, lid in found}
        return self._todos

    @property
    def projects(self) -> dict[int, Any]:
        return {pid: SimpleNamespace(id=pid) for pid in self._do("projects")}

    def cpu_seconds(self) -> float:
        return float(self._do("cpu"))

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class RemoteApp:
    """What the benchmarks use of `SimulatorApp`, for a `RemoteAccount`."""

    def __init__(self, account: RemoteAccount) -> None:
        self._account = account
        self.log = RemoteLog(account)

    def set_rate_limit(self, limit: int, window: float = 10.0) -> None:
        self._account._do("set_rate_limit", limit=limit, window=window)


class RemoteLog:
    def __init__(self, account: RemoteAccount) -> None:
        self._account = account

    def __len__(self) -> int:
        return int(self._account._do("log")["count"])

    @property
    def entries(self) -> list[Any]:
        statuses = self._account._do("log", statuses=True)["statuses"]
        return [SimpleNamespace(status=status) for status in statuses]


def build_account(
    scale: int = 1, clock: ManualClock | None = None, *, local: bool = False, **overrides: Any
) -> Any:
    """The reference account; `scale` multiplies the to-dos per project. With
    `--sim-process` (and not `local`), a `RemoteAccount` built in the simulator's process."""
    spec = dict(REFERENCE, **overrides)
    spec["todos_per_project"] = spec["todos_per_project"] * scale
    if SIM.process and not local:
        return spec  # built by `bench()`, which knows the simulator's rate limit
    account = Account(ACCOUNT_ID, clock=clock or ManualClock())
    account.populate(**spec)
    return account


@dataclass
class Bench:
    """One simulated account and one poller (state in a temporary directory)."""

    account: Any  # Account, or RemoteAccount with --sim-process
    app: Any  # SimulatorApp, or RemoteApp
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
        if isinstance(clock, ManualClock) or isinstance(self.account, RemoteAccount):
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
    account: Any,
    *,
    loopback: bool = True,
    rate_limit: int = 500,
    rate_window: float = 10.0,
    client_rate_limit: int = 500,
    **poller: Any,
) -> Iterator[Bench]:
    """A poller on `account`, served over loopback HTTP (default) or in-process. An
    `account` given as a populate spec (`build_account` with `--sim-process`) is built and
    served by a simulator process of its own, stopped on exit."""
    if isinstance(account, dict):
        if not loopback:
            raise ValueError("--sim-process serves over loopback only")
        remote = RemoteAccount(
            account, rate_limit=rate_limit, rate_window=rate_window, latency_ms=SIM.latency_ms
        )
        with tempfile.TemporaryDirectory(prefix="bcx-bench-") as tmp:
            b = Bench(remote, remote.app, remote.base_url, Path(tmp), None, poller)
            b.rate_limit = client_rate_limit
            try:
                yield b
            finally:
                b.close()
                remote.close()
        return
    app = SimulatorApp(account, rate_limit=rate_limit, rate_window=rate_window)
    with tempfile.TemporaryDirectory(prefix="bcx-bench-") as tmp:
        if loopback:
            with serve(app, latency=SIM.latency_ms / 1000) as base_url:
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


# -- requests in flight ------------------------------------------------------------------


@dataclass
class InFlight:
    """Every attempt the poller's clients sent: (start, end) on `time.perf_counter()`,
    from the grant to the body read (`BasecampClient._attempt`)."""

    spans: list[tuple[float, float]] = field(default_factory=list)

    def mean(self, start: float, end: float) -> float:
        """Mean number of attempts in flight between `start` and `end`."""
        busy = sum(max(0.0, min(b, end) - max(a, start)) for a, b in self.spans)
        return busy / (end - start) if end > start else 0.0

    def median_ms(self, start: float, end: float) -> float:
        times = sorted(b - a for a, b in self.spans if start <= a < end)
        return times[len(times) // 2] * 1000 if times else 0.0


@contextmanager
def track_in_flight() -> Iterator[InFlight]:
    """Record the span of every request the poller sends while inside (a bench-local
    wrapper around `BasecampClient._attempt`; the client itself is unchanged)."""
    from poller.client import BasecampClient

    tracked = InFlight()
    original = BasecampClient._attempt

    async def attempt(self: BasecampClient, url: Any, conditional: Any) -> Any:
        started = time.perf_counter()
        try:
            return await original(self, url, conditional)
        finally:
            tracked.spans.append((started, time.perf_counter()))

    BasecampClient._attempt = attempt  # type: ignore[method-assign]
    try:
        yield tracked
    finally:
        BasecampClient._attempt = original  # type: ignore[method-assign]


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
