"""Outbox -> handlers: at least once per handler, in detection order, with retries.

Each (event, handler) pair has a delivery row, written in the same transaction as the
event. Each handler has its own worker, so a slow or failing handler never holds back
another; within one handler, a failing event holds back the later ones (order is kept).
A failure is retried with capped exponential backoff and jitter (or the target's
`Retry-After`), until `max_attempts` or `max_age`, then the row becomes a dead letter that
keeps its last error. A crash mid-delivery leaves the row pending: it is sent again after
restart, with the same event id, so receivers can de-duplicate.
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
from poller.errors import HandlerError, PermanentHandlerError
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


def build_targets(handlers: tuple[HandlerSettings, ...], state_dir: Path) -> dict[str, Target]:
    """Instantiate every configured handler (options were validated with the config)."""
    out: dict[str, Target] = {}
    for index, hs in enumerate(handlers):
        cls = handler_class(hs.type, field=f"handlers[{index}].type")
        options = validate_handler_settings(hs, field=f"handlers[{index}]")
        out[hs.name] = Target(hs, cls(options, HandlerContext(name=hs.name, state_dir=state_dir)))
    return out


def backoff(
    settings: HandlerSettings, attempts: int, jitter: Callable[[], float] = random.random
) -> float:
    """Delay before retry number `attempts` (1 = first retry): initial * 2^(n-1), capped,
    with +-20 % jitter so many failing deliveries do not retry in lock-step."""
    base = min(settings.retry_max, settings.retry_initial * (2 ** max(0, attempts - 1)))
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
        self.delivered = 0
        self.failed = 0

    def notify(self) -> None:
        """New events were committed: wake the workers."""
        self._wake.set()

    async def deliver_due(self) -> int:
        """One pass: every handler delivers what is due now, concurrently. Returns the
        number of successful deliveries."""
        results = await asyncio.gather(*(self._run_handler(t) for t in self.targets.values()))
        await self.flush()
        return sum(results)

    async def flush(self, force: bool = False) -> None:
        """Let handlers that batch (email digests) send what has waited long enough."""
        for target in self.targets.values():
            flush = getattr(target.handler, "flush", None)
            if flush is None:
                continue
            try:
                await flush(force=force)
            except Exception as exc:  # the spool stays; the next pass tries again
                log.warning("handler_flush_failed", handler=target.name, error=str(exc))

    async def _run_handler(self, target: Target) -> int:
        done = 0
        while True:
            due = self.store.due_deliveries(target.name, self.clock(), limit=self.batch)
            if not due:
                return done
            for delivery in due:
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
            self.store.mark_failed(target.name, delivery.seq, f"permanent: {exc}", None)
            self.failed += 1
            bound.warning("delivery_dead", error=str(exc), attempts=delivery.attempts + 1)
            return True  # dead-lettered: the next event may go
        except Exception as exc:  # any handler failure is retried; the handler may be third-party
            self.failed += 1
            attempts = delivery.attempts + 1
            now = self.clock()
            error = str(exc) if isinstance(exc, HandlerError) else f"{type(exc).__name__}: {exc}"
            retry_after = exc.retry_after if isinstance(exc, HandlerError) else None
            delay = retry_after if retry_after is not None else backoff(target.settings, attempts)
            settings = target.settings
            if (
                attempts >= settings.max_attempts
                or now + delay - delivery.first_at > settings.max_age
            ):
                self.store.mark_failed(target.name, delivery.seq, error, None)
                bound.warning("delivery_dead", error=error, attempts=attempts)
                return True
            self.store.mark_failed(target.name, delivery.seq, error, now + delay)
            bound.info("delivery_retry", error=error, attempts=attempts, retry_in=round(delay, 2))
            return False
        self.store.mark_done(target.name, delivery.seq)
        self.delivered += 1
        bound.debug("delivered")
        return True

    def next_due(self) -> float | None:
        times = [t for t in (self.store.next_due_at(n) for n in self.targets) if t is not None]
        return min(times) if times else None

    async def drain(self, within: float) -> int:
        """Deliver until nothing pending falls due within `within` seconds."""
        deadline = self.clock() + within
        total = 0
        while True:
            total += await self.deliver_due()
            nxt = self.next_due()
            if nxt is None or nxt > deadline:
                return total
            await asyncio.sleep(max(0.01, min(nxt, deadline) - self.clock()))

    async def run(self, stop: asyncio.Event, idle: float = 1.0) -> None:
        """Deliver continuously until `stop` is set; sleeps until woken or the next due time."""
        while not stop.is_set():
            self._wake.clear()
            await self.deliver_due()
            nxt = self.next_due()
            wait = idle if nxt is None else max(0.01, min(idle, nxt - self.clock()))
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()

    async def aclose(self) -> None:
        for target in self.targets.values():
            try:
                await target.handler.aclose()
            except Exception as exc:  # closing must not stop the others from closing
                log.warning("handler_close_failed", handler=target.name, error=str(exc))


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
