"""`bcx-poller run`: the long-running daemon.

APScheduler 3.x `AsyncIOScheduler` runs one polling job per account on `poller.interval`
(with jitter, `max_instances=1`, `coalesce=True`); the dispatcher delivers continuously.
Accounts are independent: one account's failure is logged and noted in its status, the
others keep polling.

Signals: the first SIGTERM/SIGINT pauses the scheduler and lets in-flight cycles and
deliveries finish within `shutdown_timeout` (a cycle cut short commits nothing: its commit
is one transaction at its very end), then exits 0; on a terminal it says so. A second one
stops now: in-flight work is cancelled (nothing half-committed, undelivered events stay
queued) and the exit status is 128 + the signal (130 for SIGINT, 143 for SIGTERM). The
stop flag is set before anything that can fail (a log line to a closed pipe). SIGHUP
reloads the configuration; a bad new configuration is logged and the old one stays.

Backoff: an account whose cycle fails for a lasting reason (401/403, a 404 of the account:
`accounts.account_failure`) is not asked again for `interval * 2**n` seconds after its
n-th such failure in a row, at most `MAX_BACKOFF` (15 min); a success or a reload (SIGHUP)
resets it. Other failures (5xx, timeouts) are retried at the next interval. Other
accounts are never affected.

systemd: READY=1 once the first jobs are scheduled, WATCHDOG=1 at half `WATCHDOG_USEC`,
STATUS= one line (last cycle, lag, outbox), STOPPING=1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from poller import logs, systemd
from poller.accounts import AccountFailure, AccountRunner, http_client, open_account, run_cycle
from poller.config import AccountSettings, Settings, load_settings
from poller.dispatch import Dispatcher, Target, build_targets
from poller.errors import ConfigError, PollerError
from poller.metrics import Metrics
from poller.metrics import serve as serve_metrics
from poller.routing import router
from poller.shards import for_shard, open_store

log = structlog.get_logger(__name__)

# Cycles running at once (each is a few sequential requests): enough to keep a thousand
# accounts on a 30 s interval busy, few enough to stay inside the shared connection pool.
MAX_CONCURRENT_CYCLES = 32

# The longest an account failing for a lasting reason waits between attempts.
MAX_BACKOFF = 900.0

TransportFactory = Callable[[AccountSettings], httpx.AsyncBaseTransport | None]


@dataclass(frozen=True)
class Backoff:
    """An account failing for a lasting reason: `failures` in a row, next try `until`."""

    failures: int
    until: float  # time.monotonic()
    failure: AccountFailure


def backoff_delay(interval: float, failures: int) -> float:
    """Seconds to wait after the `failures`-th lasting failure in a row."""
    return float(min(MAX_BACKOFF, interval * 2 ** min(failures, 30)))


def first_runs(last: dict[int, float | None], interval: float, now: float) -> dict[int, float]:
    """Seconds from `now` to each starting account's first cycle.

    Spread over one interval (slots 0, i/n, 2i/n, ...: a thousand accounts starting at
    once would all ask for connections at once), the most overdue first (by when their
    last cycle was tried; never tried: first of all), and none before it is due: after a
    restart, an account polled a moment ago keeps its rhythm, one due during the outage
    goes first instead of waiting for its turn in config order (which cost up to twice
    the interval plus the outage, bench/shards.py)."""

    def due(aid: int) -> float:
        at = last[aid]
        return float("-inf") if at is None else at + interval

    order = sorted(last, key=lambda aid: (due(aid), aid))
    out: dict[int, float] = {}
    for index, aid in enumerate(order):
        slot = interval * index / len(order)
        out[aid] = min(interval, max(slot, due(aid) - now))
    return out


class Daemon:
    """One process, many accounts."""

    def __init__(
        self,
        settings: Settings,
        *,
        config_path: Path | None = None,
        transport_factory: TransportFactory | None = None,
        shutdown_timeout: float = 30.0,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self.transport_factory = transport_factory or (lambda _a: None)
        self.shutdown_timeout = shutdown_timeout
        self.store = open_store(settings)  # this shard's file, its shard claim checked
        self.http = http_client()  # shared by every account on the default transport
        self._cycle_slots = asyncio.Semaphore(MAX_CONCURRENT_CYCLES)
        self.metrics = Metrics(wanted=bool(settings.metrics.listen))
        self.runners: dict[int, AccountRunner] = {}
        self.inflight: set[asyncio.Task[Any]] = set()
        self.stop_event = asyncio.Event()
        self.forced = asyncio.Event()  # a second stop signal: stop now
        self.exit_code = 0
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.targets: dict[str, Target] = {}
        self.dispatcher = Dispatcher(self.store, {})
        self.route = router(())
        self.started = time.time()
        self._metrics_server: Any = None
        self._last_status = ""
        self._background: set[asyncio.Future[Any]] = set()
        self._cycle_tasks: dict[int, asyncio.Task[Any]] = {}
        self._added_at: dict[int, float] = {}
        self.backoff: dict[int, Backoff] = {}

    def _spawn(self, coro: Any) -> None:
        """Run `coro` in the background, keeping a reference until it is done."""
        fut = asyncio.ensure_future(coro)
        self._background.add(fut)
        fut.add_done_callback(self._background.discard)

    # -- lifecycle ------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)
        try:
            self._apply(self.settings, first=True)
            if self.settings.metrics.listen:
                self._metrics_server = serve_metrics(
                    self.settings.metrics.listen, self.metrics, self.health, self.refresh_metrics
                )
                host, port = self._metrics_server.server_address[:2]
                log.info("metrics_listening", address=f"{host}:{port}")
                if not self.metrics.enabled:
                    log.error("metrics_unavailable", reason="prometheus-client is not installed")
        except BaseException:
            self._remove_signal_handlers(loop)
            await self._close_runners(list(self.runners))
            await self.dispatcher.aclose()
            await self.http.aclose()
            self.store.close()
            raise
        self.scheduler.start()
        dispatcher_stop = asyncio.Event()
        dispatch_task = asyncio.create_task(self._dispatch_loop(dispatcher_stop))
        watchdog_task = asyncio.create_task(self._watchdog())
        systemd.notify("READY=1\nSTATUS=" + self.status_line(), timeout=1.0)
        log.info("daemon_started", accounts=len(self.runners), handlers=len(self.targets))
        await self.stop_event.wait()

        # Stop: no new cycles; in-flight cycles and the dispatcher get until the deadline,
        # then whatever is left is cancelled. A cancelled cycle commits nothing (its commit
        # is one transaction at its very end); a cancelled delivery stays pending and is
        # delivered again after the restart, with the same event id.
        deadline = time.monotonic() + self.shutdown_timeout
        systemd.notify("STOPPING=1\nSTATUS=stopping")
        log.info("daemon_stopping", inflight=len(self.inflight), timeout=self.shutdown_timeout)
        self.scheduler.pause()
        await self._wait_unless_forced(set(self.inflight), deadline)
        dispatcher_stop.set()
        await self._wait_unless_forced({dispatch_task}, deadline)
        leftover = [t for t in (*self.inflight, dispatch_task) if not t.done()]
        if leftover:
            if self.forced.is_set():
                log.warning("stopping_now", abandoned=len(leftover))
            else:
                log.warning("shutdown_deadline_reached", abandoned=len(leftover))
            for task in leftover:
                task.cancel()
            await asyncio.wait(leftover, timeout=self._grace(deadline))
        watchdog_task.cancel()
        await asyncio.gather(watchdog_task, return_exceptions=True)
        self.scheduler.shutdown(wait=False)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        closing = asyncio.ensure_future(self._close_all())
        await asyncio.wait({closing}, timeout=self._grace(deadline))
        if not closing.done():
            closing.cancel()
            log.warning("close_timed_out")
        background = [f for f in self._background if not f.done()]
        for fut in background:
            fut.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        self._remove_signal_handlers(loop)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.http.aclose(), timeout=1.0)
        self.store.close()
        log.info("daemon_stopped", exit_code=self.exit_code)
        return self.exit_code

    def _grace(self, deadline: float) -> float:
        """How long cancelled work gets to unwind: a second after a second signal, else
        what is left of the deadline (at least a second)."""
        return 1.0 if self.forced.is_set() else max(1.0, _left(deadline))

    async def _wait_unless_forced(self, tasks: set[asyncio.Task[Any]], deadline: float) -> None:
        """Wait for `tasks` until the deadline, or until a second stop signal."""
        pending = {t for t in tasks if not t.done()}
        if not pending:
            return
        forced = asyncio.ensure_future(self.forced.wait())
        try:
            while pending and not self.forced.is_set() and _left(deadline) > 0:
                done, _ = await asyncio.wait(
                    {*pending, forced},
                    timeout=_left(deadline),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                pending -= done
        finally:
            forced.cancel()
            await asyncio.gather(forced, return_exceptions=True)

    async def _close_all(self) -> None:
        await self._close_runners(list(self.runners))
        await self.dispatcher.aclose()

    def _on_stop_signal(self, sig: int) -> None:
        # The flags first: everything after this line may fail (a log line to a closed
        # pipe), and the daemon must stop whatever happens to it.
        again = self.stop_event.is_set()
        self.stop_event.set()
        if again:
            self._stop_now(sig)
            return
        name = signal.Signals(sig).name
        _tell_terminal(
            f"bcx-poller: {name}: stopping; letting {len(self.inflight)} cycle(s) and the"
            f" deliveries in flight finish (at most {self.shutdown_timeout:g}s)."
            " Press Ctrl-C again to stop now."
        )
        log.info("signal_received", signal=name, action="graceful stop")

    def _stop_now(self, sig: int) -> None:
        """A second stop signal: cancel what is in flight and exit 128 + signal. A cancelled
        cycle commits nothing, a cancelled delivery stays pending; if the cancellation
        itself does not finish within 5 s, the process exits regardless (the database is
        transactional: whatever was not committed simply did not happen)."""
        if self.forced.is_set():
            return
        code = 128 + int(sig)
        self.exit_code = code
        self.forced.set()
        timer = threading.Timer(5.0, os._exit, args=(code,))
        timer.daemon = True
        timer.start()
        name = signal.Signals(sig).name
        _tell_terminal(f"bcx-poller: {name} again: stopping now.")
        log.warning("signal_received", signal=name, action="stop now", exit_code=code)

    def _on_reload_signal(self) -> None:
        if self.stop_event.is_set():
            return
        self._spawn(self.reload())

    @staticmethod
    def _remove_signal_handlers(loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)

    async def _dispatch_loop(self, stop: asyncio.Event) -> None:
        """The dispatcher, kept alive: an error in one pass is logged and the loop goes on
        (a dead dispatcher would silently stop every delivery while polling continues)."""
        while not stop.is_set():
            try:
                await self.dispatcher.run(stop)
            except PollerError as exc:  # e.g. the database is locked: log, wait, go on
                log.error("dispatch_failed", error=str(exc))
            except Exception as exc:  # a bug, or a third-party handler misbehaving
                log.exception("dispatch_crashed", error=f"{type(exc).__name__}: {exc}")
            else:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async def _watchdog(self) -> None:
        """WATCHDOG=1 every half `WATCHDOG_USEC` from the event loop (so a stuck loop stops
        the pings and systemd restarts us), and STATUS= whenever the summary changes."""
        interval = systemd.watchdog_interval()
        while True:
            if interval:
                systemd.notify("WATCHDOG=1")
            try:
                status = self.status_line()
            except PollerError as exc:  # the state is busy: keep pinging regardless
                status = f"status unavailable: {exc}"
            if status != self._last_status:
                systemd.notify(f"STATUS={status}")
                self._last_status = status
            await asyncio.sleep(min(interval or 5.0, 5.0))

    # -- configuration --------------------------------------------------------------

    def _apply(self, settings: Settings, *, first: bool = False) -> None:
        """Make the running jobs and handlers match `settings`.

        Everything that can fail (handlers, routing) is built before anything running is
        touched, so a configuration that cannot be applied leaves the old one in place.
        """
        handlers_changed = first or settings.handlers != self.settings.handlers
        targets = (
            build_targets(
                settings.handlers,
                settings.poller.state_path.parent,
                state_path=settings.poller.state_path,
            )
            if handlers_changed
            else self.targets
        )
        route = router(settings.handlers)
        old = {a.id: a for a in self.settings.accounts} if not first else {}
        new = {a.id: a for a in settings.accounts}
        poller_changed = first or settings.poller != self.settings.poller
        for aid in set(old) - set(new):
            with contextlib.suppress(Exception):
                self.scheduler.remove_job(f"account:{aid}")
            self._retire(aid, self.runners.pop(aid, None))
            self._added_at.pop(aid, None)
            self.backoff.pop(aid, None)
            self.metrics.forget_account(aid)
            log.info("account_removed", account=aid)
        starting = [
            aid
            for aid, account in new.items()
            if not (aid in old and old[aid] == account and not poller_changed)
        ]
        interval = settings.poller.interval
        first_in = first_runs(
            {aid: self.store.account(aid).last_attempt_at for aid in starting},
            interval,
            time.time(),
        )
        for aid in starting:
            account = new[aid]
            self._retire(aid, self.runners.pop(aid, None))
            transport = self.transport_factory(account)
            self.runners[aid] = open_account(
                account,
                transport=transport,
                store=self.store,
                # one connection pool for every account on the default transport: they
                # all talk to basecamp.com, and 1,000 clients would cost 1,000 pools
                http=self.http if transport is None else None,
            )
            self._added_at.setdefault(aid, time.time())
            self.scheduler.add_job(
                self._poll,
                "interval",
                seconds=interval,
                jitter=interval * settings.poller.jitter or None,
                args=[aid],
                id=f"account:{aid}",
                name=f"poll account {aid}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(interval)),
                next_run_time=_now() + timedelta(seconds=first_in[aid]),
                replace_existing=True,
            )
            if not first:
                log.info("account_scheduled", account=aid, changed=aid in old)
        if handlers_changed:
            old_targets = self.targets
            self.targets = targets
            self.dispatcher.targets = dict(targets)
            self.dispatcher.notify()
            if not first:  # a delivery caught mid-flight fails and is retried by the new one
                self._spawn(_close_targets(old_targets))
        self.route = route
        if not first and settings.metrics.listen != self.settings.metrics.listen:
            log.warning("metrics_listen_unchanged", reason="metrics.listen needs a restart")
            settings = settings.model_copy(update={"metrics": self.settings.metrics})
        self.settings = settings

    def _retire(self, account_id: int, runner: AccountRunner | None) -> None:
        """Close a replaced account's HTTP client once its in-flight cycle (if any) ends."""
        if runner is None:
            return
        task = self._cycle_tasks.get(account_id)

        async def close() -> None:
            if task is not None and not task.done():
                await asyncio.wait({task})
            await runner.aclose()

        self._spawn(close())

    async def reload(self) -> None:
        """SIGHUP: re-read the config file; keep the old one if the new one is bad."""
        if self.config_path is None:
            log.warning("reload_ignored", reason="no configuration file")
            return
        try:
            new = load_settings(self.config_path)
            if new.poller.shards != self.settings.poller.shards:
                raise ConfigError(
                    "poller.shards", "cannot change while running; stop, reshard, restart"
                )
            new = for_shard(new, self.settings._shard)  # this shard's accounts only
            if new.poller.state_path != self.settings.poller.state_path:
                raise ConfigError("poller.state_path", "cannot change while running; restart")
            from poller.cli import _secret_values

            logs.register_secrets(_secret_values(new))
            from handlers.format import set_timezone

            set_timezone(new.poller.timezone)
            self._apply(new)
        except PollerError as exc:
            log.error("reload_rejected", error=str(exc), kept="the running configuration")
            systemd.notify("STATUS=reload rejected: " + str(exc).splitlines()[0][:200])
            return
        except Exception as exc:  # never let a reload take the daemon down
            log.exception("reload_rejected", error=f"{type(exc).__name__}: {exc}")
            return
        # the operator may have fixed what they were failing for: ask again now (the
        # accounts stay marked failing until they succeed)
        reset = sorted(aid for aid, held in self.backoff.items() if held.failures)
        for aid in reset:
            self.backoff[aid] = Backoff(0, 0.0, self.backoff[aid].failure)
            self.metrics.observe_backoff(aid, 0.0)
        log.info(
            "reloaded",
            accounts=len(self.runners),
            handlers=len(self.targets),
            backoff_reset=reset,
        )

    async def _close_runners(self, ids: list[int]) -> None:
        for aid in ids:
            runner = self.runners.pop(aid, None)
            if runner is not None:
                await runner.aclose()

    # -- the job --------------------------------------------------------------------

    async def _poll(self, account_id: int) -> None:
        if self.stop_event.is_set():
            return
        runner = self.runners.get(account_id)
        if runner is None:
            return
        held = self.backoff.get(account_id)
        if held is not None and time.monotonic() < held.until:
            log.debug(
                "account_backing_off",
                account=account_id,
                reason=str(held.failure),
                retry_in=round(held.until - time.monotonic(), 1),
            )
            return
        task = asyncio.current_task()
        assert task is not None
        self.inflight.add(task)
        self._cycle_tasks[account_id] = task
        before = dict(runner.client.stats.by_status)
        limited = runner.client.stats.rate_limited
        started = time.monotonic()
        kinds: list[str] = []
        route = self.route

        def counting_route(event: dict[str, Any]) -> Iterable[str]:
            # called by the commit for each event it adds to the outbox
            kinds.append(str(event.get("kind")))
            return route(event)

        try:
            # At most MAX_CONCURRENT_CYCLES cycles talk to Basecamp at once; the others
            # wait here, before their deadline starts, instead of timing out mid-cycle on
            # a connection pool that a thousand accounts would share.
            async with self._cycle_slots:
                if self.stop_event.is_set():
                    return
                with structlog.contextvars.bound_contextvars(account=account_id):
                    report = await run_cycle(
                        runner,
                        self.store,
                        self.settings.poller,
                        counting_route,
                        on_commit=self.dispatcher.notify,
                    )
        except asyncio.CancelledError:
            log.warning("cycle_abandoned", account=account_id, reason="shutdown deadline")
            return
        finally:
            self.inflight.discard(task)
            if self._cycle_tasks.get(account_id) is task:
                del self._cycle_tasks[account_id]
        stats = runner.client.stats
        delta = {
            s: n - before.get(s, 0) for s, n in stats.by_status.items() if n - before.get(s, 0)
        }
        self._after_cycle(account_id, runner, ok=report is not None)
        self.metrics.observe_requests(account_id, delta, stats.rate_limited - limited)
        self.metrics.observe_cycle(
            account_id,
            report is not None,
            time.monotonic() - started,
            stats,
            kinds if report is not None else [],
        )

    def _after_cycle(self, account_id: int, runner: AccountRunner, *, ok: bool) -> None:
        """Back an account off after a lasting failure; forget it after a success."""
        if ok:
            if self.backoff.pop(account_id, None) is not None:
                log.info("account_recovered", account=account_id)
            self.metrics.observe_failure(account_id, None, 0.0)
            return
        failure = runner.failure
        if failure is None:  # worth retrying at the next interval
            return
        held = self.backoff.get(account_id)
        failures = (held.failures if held is not None else 0) + 1
        delay = backoff_delay(self.settings.poller.interval, failures)
        self.backoff[account_id] = Backoff(failures, time.monotonic() + delay, failure)
        log.warning(
            "account_backoff",
            account=account_id,
            reason=str(failure),
            failures=failures,
            retry_in=round(delay, 1),
        )
        self.metrics.observe_failure(account_id, failure.code, delay)

    # -- status ---------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy when every account polled successfully within the last 3 intervals (an
        account added less than 3 intervals ago gets that long for its first success).
        Called from the metrics server's thread."""
        now = time.time()
        limit = 3 * self.settings.poller.interval
        stale: list[int] = []
        accounts: dict[str, Any] = {}
        for aid in list(self.runners):
            st = self.store.account(aid)
            last = st.last_success_at
            since = last if last is not None else self._added_at.get(aid, self.started)
            ok = now - since <= limit
            if not ok:
                stale.append(aid)
            accounts[str(aid)] = {
                "ok": ok,
                "last_success_age": None if last is None else round(now - last, 1),
                "last_error": st.last_error,
            }
        return (not stale, {"stale_accounts": stale, "accounts": accounts})

    def refresh_metrics(self) -> None:
        """Gauges read from the state: outbox per handler, last success per account."""
        self.metrics.observe_outbox(self.store.delivery_counts(), list(self.targets))
        for aid in list(self.runners):
            self.metrics.observe_last_success(aid, self.store.account(aid).last_success_at)

    def status_line(self) -> str:
        lags = []
        failing = 0
        for aid in list(self.runners):
            st = self.store.account(aid)
            if st.last_success_at is not None:
                lags.append(time.time() - st.last_success_at)
            if st.last_error:
                failing += 1
        counts = self.store.delivery_counts()
        pending = sum(c.get("pending", 0) for c in counts.values())
        dead = sum(c.get("dead", 0) for c in counts.values())
        lag = f"{max(lags):.0f}s" if lags else "n/a"
        return (
            f"{len(self.runners)} accounts ({failing} failing), max lag {lag},"
            f" outbox {pending} pending, {dead} dead"
        )


def _tell_terminal(text: str) -> None:
    """A line for a person at a terminal (stderr is a TTY); nothing otherwise, never raises."""
    try:
        if sys.stderr.isatty():
            print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        return


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


async def _close_targets(targets: dict[str, Target]) -> None:
    for target in targets.values():
        with contextlib.suppress(Exception):
            await target.handler.aclose()


def _now() -> datetime:
    return datetime.now(UTC)


def cmd_run(args: argparse.Namespace) -> int:
    from poller.cli import _settings
    from poller.config import config_path
    from poller.lock import state_lock

    settings = _settings(args)
    daemon_path = config_path(args.config)

    async def main() -> int:
        daemon = Daemon(settings, config_path=daemon_path, shutdown_timeout=args.shutdown_timeout)
        return await daemon.run()

    with state_lock(settings.poller.state_path):  # one owner per state file
        return asyncio.run(main())
