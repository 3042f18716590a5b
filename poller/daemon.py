"""`bcx-poller run`: the long-running daemon.

APScheduler 3.x `AsyncIOScheduler` runs one polling job per account on `poller.interval`
(with jitter, `max_instances=1`, `coalesce=True`); the dispatcher delivers continuously.
Accounts are independent: one account's failure is logged and noted in its status, the
others keep polling.

Signals: SIGTERM/SIGINT pause the scheduler, let in-flight cycles and deliveries finish
within `shutdown_timeout` (a cycle cut short commits nothing: its commit is one
transaction at its very end), then exit 0. SIGHUP reloads the configuration; a bad new
configuration is logged and the old one stays.

systemd: READY=1 once the first jobs are scheduled, WATCHDOG=1 at half `WATCHDOG_USEC`,
STATUS= one line (last cycle, lag, outbox), STOPPING=1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from poller import systemd
from poller.accounts import AccountRunner, open_account, run_cycle
from poller.config import AccountSettings, Settings, load_settings
from poller.dispatch import Dispatcher, Target, build_targets
from poller.errors import ConfigError, PollerError
from poller.metrics import Metrics
from poller.metrics import serve as serve_metrics
from poller.routing import router
from poller.store import Store

log = structlog.get_logger(__name__)

TransportFactory = Callable[[AccountSettings], httpx.AsyncBaseTransport | None]


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
        self.store = Store(settings.poller.state_path)
        self.metrics = Metrics()
        self.runners: dict[int, AccountRunner] = {}
        self.inflight: set[asyncio.Task[Any]] = set()
        self.stop_event = asyncio.Event()
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.targets: dict[str, Target] = {}
        self.dispatcher = Dispatcher(self.store, {})
        self.route = router(())
        self.started = time.time()
        self._metrics_server: Any = None
        self._last_status = ""
        self._background: set[asyncio.Future[Any]] = set()

    def _spawn(self, coro: Any) -> None:
        """Run `coro` in the background, keeping a reference until it is done."""
        fut = asyncio.ensure_future(coro)
        self._background.add(fut)
        fut.add_done_callback(self._background.discard)

    # -- lifecycle ------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload()))
        self._apply(self.settings, first=True)
        self.scheduler.start()
        if self.settings.metrics.listen:
            self._metrics_server = serve_metrics(
                self.settings.metrics.listen, self.metrics, self.health
            )
        dispatcher_stop = asyncio.Event()
        dispatch_task = asyncio.create_task(self._dispatch_loop(dispatcher_stop))
        watchdog_task = asyncio.create_task(self._watchdog())
        systemd.notify("READY=1\nSTATUS=started")
        log.info("daemon_started", accounts=len(self.runners), handlers=len(self.targets))
        await self.stop_event.wait()

        systemd.notify("STOPPING=1")
        log.info("daemon_stopping", inflight=len(self.inflight))
        self.scheduler.pause()
        deadline = time.monotonic() + self.shutdown_timeout
        if self.inflight:
            _done, pending = await asyncio.wait(set(self.inflight), timeout=self.shutdown_timeout)
            for task in pending:  # abandoned before their commit: nothing partial is written
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        dispatcher_stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(dispatch_task, max(0.1, deadline - time.monotonic()))
        watchdog_task.cancel()
        await asyncio.gather(watchdog_task, return_exceptions=True)
        self.scheduler.shutdown(wait=False)
        await self._close_runners(list(self.runners))
        await self.dispatcher.aclose()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self.store.close()
        log.info("daemon_stopped")
        return 0

    async def _dispatch_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.dispatcher.run(stop)
            except PollerError as exc:  # e.g. the database is locked: log, wait, go on
                log.error("dispatch_failed", error=str(exc))
                await asyncio.sleep(1)

    async def _watchdog(self) -> None:
        interval = systemd.watchdog_interval()
        while True:
            await asyncio.sleep(interval or 5.0)
            status = self.status_line()
            if interval:
                systemd.notify("WATCHDOG=1")
            if status != self._last_status:
                systemd.notify(f"STATUS={status}")
                self._last_status = status
            with contextlib.suppress(PollerError):
                self.metrics.observe_outbox(self.store.delivery_counts(), list(self.targets))

    # -- configuration --------------------------------------------------------------

    def _apply(self, settings: Settings, *, first: bool = False) -> None:
        """Make the running jobs and handlers match `settings`."""
        old = {a.id: a for a in self.settings.accounts} if not first else {}
        new = {a.id: a for a in settings.accounts}
        for aid in set(old) - set(new):
            with contextlib.suppress(Exception):
                self.scheduler.remove_job(f"account:{aid}")
            runner = self.runners.pop(aid, None)
            if runner is not None:
                self._spawn(runner.aclose())
        for aid, account in new.items():
            if aid in old and old[aid] == account and settings.poller == self.settings.poller:
                continue
            runner = self.runners.pop(aid, None)
            if runner is not None:
                self._spawn(runner.aclose())
            self.runners[aid] = open_account(
                account, transport=self.transport_factory(account), store=self.store
            )
            interval = settings.poller.interval
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
                next_run_time=_now(),
                replace_existing=True,
            )
        if first or settings.handlers != self.settings.handlers:
            old_targets = self.targets
            self.targets = build_targets(settings.handlers, settings.poller.state_path.parent)
            self.dispatcher.targets = self.targets
            if not first:  # a delivery caught mid-flight fails and is retried by the new one
                self._spawn(_close_targets(old_targets))
        self.route = router(settings.handlers)
        self.settings = settings

    async def reload(self) -> None:
        """SIGHUP: re-read the config file; keep the old one if the new one is bad."""
        if self.config_path is None:
            log.warning("reload_ignored", reason="no configuration file")
            return
        try:
            new = load_settings(self.config_path)
            if new.poller.state_path != self.settings.poller.state_path:
                raise ConfigError("poller.state_path", "cannot change while running; restart")
            self._apply(new)
        except (ConfigError, PollerError) as exc:
            log.error("reload_rejected", error=str(exc))
            return
        log.info("reloaded", accounts=len(self.runners), handlers=len(self.targets))

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
        task = asyncio.current_task()
        assert task is not None
        self.inflight.add(task)
        before = dict(runner.client.stats.by_status)
        limited = runner.client.stats.rate_limited
        started = time.monotonic()
        try:
            report = await run_cycle(
                runner,
                self.store,
                self.settings.poller,
                self.route,
                on_commit=self.dispatcher.notify,
            )
        finally:
            self.inflight.discard(task)
        stats = runner.client.stats
        delta = {
            s: n - before.get(s, 0) for s, n in stats.by_status.items() if n - before.get(s, 0)
        }
        self.metrics.observe_requests(account_id, delta, stats.rate_limited - limited)
        self.metrics.observe_cycle(
            account_id, report is not None, time.monotonic() - started, stats, []
        )

    # -- status ---------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy when every account polled successfully within 3 intervals."""
        now = time.time()
        limit = 3 * self.settings.poller.interval
        stale = []
        for aid in self.runners:
            st = self.store.account(aid)
            last = st.last_success_at
            if (last is None and now - self.started > limit) or (
                last is not None and now - last > limit
            ):
                stale.append(aid)
        return (not stale, {"stale_accounts": stale, "accounts": len(self.runners)})

    def status_line(self) -> str:
        lags = []
        for aid in self.runners:
            last = self.store.account(aid).last_success_at
            if last is not None:
                lags.append(time.time() - last)
        counts = self.store.delivery_counts()
        pending = sum(c.get("pending", 0) for c in counts.values())
        dead = sum(c.get("dead", 0) for c in counts.values())
        lag = f"{max(lags):.0f}s" if lags else "n/a"
        return f"{len(self.runners)} accounts, max lag {lag}, outbox {pending} pending, {dead} dead"


async def _close_targets(targets: dict[str, Target]) -> None:
    for target in targets.values():
        with contextlib.suppress(Exception):
            await target.handler.aclose()


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def cmd_run(args: argparse.Namespace) -> int:
    from poller.cli import _settings
    from poller.config import config_path

    settings = _settings(args)
    daemon_path = config_path(args.config)

    async def main() -> int:
        daemon = Daemon(settings, config_path=daemon_path, shutdown_timeout=args.shutdown_timeout)
        return await daemon.run()

    return asyncio.run(main())


def register(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add("run", "run the daemon (poll on schedule, deliver continuously)", cmd_run)
    p.add_argument(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        help="seconds to let in-flight work finish on SIGTERM (default 30)",
    )
