"""Outbox -> handlers: at least once per handler, in detection order, with retries.

Each (event, handler) pair has a delivery row, written in the same transaction as the
event. Each handler has its own worker (in `run` and `drain`), so a slow or failing
handler never holds back another; within one handler, a failing event holds back the later
ones (order is kept). Any exception a handler raises is a failed attempt: `HandlerError`
and third-party errors alike are retried with capped exponential backoff and +-20 %
jitter (or the target's `Retry-After`), `PermanentHandlerError` dead-letters at once.
Retries go on until `max_attempts` attempts were made or the delivery is `max_age`
seconds old (the last retry is scheduled no later than that; a `Retry-After` reaching
past it dead-letters now); the row then becomes a dead letter that keeps its last error.
A crash mid-delivery leaves the row pending: it is sent again after restart, with the same
event id, so receivers can de-duplicate.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from handlers.base import Handler, HandlerContext
from handlers.registry import handler_class, validate_handler_settings
from poller.config import HandlerSettings
from poller.errors import ConfigError, HandlerError, PermanentHandlerError
from poller.logs import mask_text
from poller.store import Delivery, Store

log = structlog.get_logger(__name__)


@dataclass
class Target:
    """A configured handler: its settings and its live instance."""

    settings: HandlerSettings
    handler: Handler

    @property
    def name(self) -> str:
        return self.settings.name


def build_targets(
    handlers: tuple[HandlerSettings, ...], state_dir: Path, *, state_path: Path | None = None
) -> dict[str, Target]:
    """Instantiate every configured handler (options were validated with the config).
    `state_path`: the state database, whose stored people handlers may look up
    (`HandlerContext.people`, read-only); None: no people to look up."""
    people = None
    if state_path is not None:
        from poller.people import StoredPeople

        people = StoredPeople(state_path)
    out: dict[str, Target] = {}
    for index, hs in enumerate(handlers):
        cls = handler_class(hs.type, field=f"handlers[{index}].type")
        options = validate_handler_settings(hs, field=f"handlers[{index}]")
        context = HandlerContext(name=hs.name, state_dir=state_dir, people=people)
        out[hs.name] = Target(hs, cls(options, context))
    for index, target in enumerate(out.values()):
        start = getattr(target.handler, "start", None)  # optional: see handlers/base.py
        if start is not None:
            try:
                start(target.settings)
            except ConfigError as exc:
                raise ConfigError(f"handlers[{index}].{exc.field}", exc.reason) from None
    return out


def backoff(
    settings: HandlerSettings, attempts: int, jitter: Callable[[], float] = random.random
) -> float:
    """Delay before retry number `attempts` (1 = first retry): initial * 2^(n-1), capped,
    with +-20 % jitter so many failing deliveries do not retry in lock-step."""
    exponent = min(max(0, attempts - 1), 64)  # 2**64 * anything > retry_max; no overflow
    base = min(settings.retry_max, settings.retry_initial * (2.0**exponent))
    return float(min(settings.retry_max, base * (0.8 + 0.4 * jitter())))


class Dispatcher:
    """Delivers due rows of the outbox to each handler."""

    def __init__(
        self,
        store: Store,
        targets: Mapping[str, Target],
        *,
        clock: Callable[[], float] = time.time,
        batch: int = 200,
    ) -> None:
        self.store = store
        self.targets = dict(targets)
        self.clock = clock
        self.batch = batch
        self._wake = asyncio.Event()
        self._wakes: dict[str, asyncio.Event] = {}
        self.delivered = 0
        self.failed = 0

    def notify(self) -> None:
        """New events were committed: wake the workers."""
        self._wake.set()
        for wake in self._wakes.values():
            wake.set()

    async def deliver_due(self) -> int:
        """One pass: every handler delivers what is due now, concurrently (then lets
        digests flush). Returns the number of successful deliveries."""
        results = await asyncio.gather(*(self._pass(t) for t in self.targets.values()))
        return sum(results)

    async def flush(self, force: bool = False) -> None:
        """Let handlers that batch (email digests) send what has waited long enough."""
        await asyncio.gather(*(self._flush(t, force) for t in self.targets.values()))

    async def _flush(self, target: Target, force: bool = False) -> None:
        flush = getattr(target.handler, "flush", None)
        if flush is None:
            return
        try:
            await flush(force=force)
        except Exception as exc:  # the spool stays; the next pass tries again
            log.warning("handler_flush_failed", handler=target.name, error=str(exc))

    async def _pass(self, target: Target, stop: asyncio.Event | None = None) -> int:
        done = await self._run_handler(target, stop)
        await self._flush(target)
        return done

    async def _run_handler(self, target: Target, stop: asyncio.Event | None = None) -> int:
        done = 0
        while True:
            due = self.store.due_deliveries(target.name, self.clock(), limit=self.batch)
            if not due:
                return done
            for delivery in due:
                if stop is not None and stop.is_set():
                    return done
                if not await self._attempt(target, delivery):
                    return done  # keep order: later events wait for this one
                done += 1

    async def _attempt(self, target: Target, delivery: Delivery) -> bool:
        bound = log.bind(
            handler=target.name, event_id=delivery.event.get("id"), kind=delivery.event.get("kind")
        )
        try:
            await target.handler.deliver(delivery.event)
        except PermanentHandlerError as exc:
            # a handler's error may quote what it was given: never store a secret
            self.store.mark_failed(target.name, delivery.seq, mask_text(f"permanent: {exc}"), None)
            self.failed += 1
            bound.warning("delivery_dead", error=str(exc), attempts=delivery.attempts + 1)
            return True  # dead-lettered: the next event may go
        except Exception as exc:  # any handler failure is retried; the handler may be third-party
            self.failed += 1
            attempts = delivery.attempts + 1
            now = self.clock()
            error = mask_text(
                str(exc) if isinstance(exc, HandlerError) else f"{type(exc).__name__}: {exc}"
            )
            settings = target.settings
            retry_after = exc.retry_after if isinstance(exc, HandlerError) else None
            deadline = delivery.first_at + settings.max_age
            if retry_after is not None:
                next_at = now + retry_after
            else:
                next_at = min(now + backoff(settings, attempts), deadline)
            if attempts >= settings.max_attempts or now >= deadline or next_at > deadline:
                self.store.mark_failed(target.name, delivery.seq, error, None)
                bound.warning("delivery_dead", error=error, attempts=attempts)
                return True
            self.store.mark_failed(target.name, delivery.seq, error, next_at)
            bound.info(
                "delivery_retry", error=error, attempts=attempts, retry_in=round(next_at - now, 2)
            )
            return False
        self.store.mark_done(target.name, delivery.seq)
        self.delivered += 1
        bound.debug("delivered")
        return True

    def next_due(self) -> float | None:
        times = [t for t in (self.store.next_due_at(n) for n in self.targets) if t is not None]
        return min(times) if times else None

    async def drain(self, within: float) -> int:
        """Deliver until nothing pending falls due within `within` seconds; each handler
        on its own, so one handler's slow delivery never postpones another's retries."""
        deadline = self.clock() + within

        async def one(target: Target) -> int:
            total = 0
            while True:
                total += await self._pass(target)
                nxt = self.store.next_due_at(target.name)
                if nxt is None or nxt > deadline:
                    return total
                await asyncio.sleep(max(0.01, min(nxt, deadline) - self.clock()))

        return sum(await asyncio.gather(*(one(t) for t in self.targets.values())))

    async def run(self, stop: asyncio.Event, idle: float = 1.0) -> None:
        """Deliver continuously until `stop` is set: one worker per handler, each sleeping
        until woken (`notify`) or its next due time (at most `idle`, so digests flush).
        `self.targets` may be replaced while running (reload): workers follow it. On
        `stop`, deliveries in flight finish; the rest stay pending."""
        workers: dict[str, asyncio.Task[None]] = {}
        try:
            while not stop.is_set():
                self._wake.clear()
                for name in self.targets:
                    if name not in workers or workers[name].done():
                        self._wakes[name] = asyncio.Event()
                        workers[name] = asyncio.create_task(
                            self._worker(name, stop, self._wakes[name], idle),
                            name=f"dispatch:{name}",
                        )
                for name in [n for n, t in workers.items() if t.done()]:
                    del workers[name]
                    if name not in self.targets:
                        self._wakes.pop(name, None)
                await _wait_any(self._wake, stop, seconds=idle)
            for wake in self._wakes.values():
                wake.set()
            await asyncio.gather(*workers.values(), return_exceptions=True)
        except asyncio.CancelledError:
            for task in workers.values():
                task.cancel()
            await asyncio.gather(*workers.values(), return_exceptions=True)
            raise
        finally:
            self._wakes.clear()

    async def _worker(
        self, name: str, stop: asyncio.Event, wake: asyncio.Event, idle: float
    ) -> None:
        while not stop.is_set():
            target = self.targets.get(name)
            if target is None:  # removed by a reload
                return
            wake.clear()
            try:
                await self._pass(target, stop)
                nxt = self.store.next_due_at(name)
            except Exception as exc:  # e.g. the database is locked: log, wait, go on
                log.error("dispatch_failed", handler=name, error=f"{type(exc).__name__}: {exc}")
                nxt = self.clock() + idle
            wait = idle if nxt is None else max(0.01, min(idle, nxt - self.clock()))
            await _wait_any(wake, stop, seconds=wait)

    async def aclose(self) -> None:
        for target in self.targets.values():
            try:
                await target.handler.aclose()
            except Exception as exc:  # closing must not stop the others from closing
                log.warning("handler_close_failed", handler=target.name, error=str(exc))


async def _wait_any(*events: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


def describe(delivery: Delivery) -> dict[str, Any]:
    """A delivery as `deliveries` shows it: no payload secrets, just what identifies it."""
    ev = delivery.event
    return {
        "handler": delivery.handler,
        "event_id": ev.get("id"),
        "kind": ev.get("kind"),
        "account_id": ev.get("account_id"),
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_at": delivery.next_at,
        "last_error": delivery.last_error,
    }
