"""Shared plumbing of the event-bus handlers (`nats`, `redis_stream`).

* `retry_span`: the longest time between the first and the last publish of one event by a
  handler, from the dispatcher's retry policy (`poller.dispatch.backoff` at its highest
  jitter, `max_attempts`, `max_age`) and the handler's own per-attempt timeout. A bus's
  de-duplication window (JetStream's `duplicate_window`, the Redis handler's `dedupe_ttl`)
  must be at least this long, or a retry could add a second copy.
* `render_name`: the subject / stream-key template (`{account_id}`, `{kind}`,
  `{project_id}`), checked at config time so an unknown placeholder is a config error.
* `in_worker_thread`: run a coroutine to completion in a worker thread with its own event
  loop, so a synchronous start-up check (`start`) can talk to a broker while the daemon's
  loop is running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import string
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from poller.config import HandlerSettings

T = TypeVar("T")
PLACEHOLDERS = ("account_id", "kind", "project_id")


def retry_span(settings: HandlerSettings, attempt_timeout: float) -> float:
    """Seconds from the start of an event's first attempt to the end of its last one, at
    worst: the dispatcher's delays at +20 % jitter for `max_attempts - 1` retries plus each
    attempt's `attempt_timeout`, but the last retry is scheduled no later than `max_age`
    after the delivery row was written (so `max_age` + one attempt bounds it)."""
    from poller.dispatch import backoff

    retries = settings.max_attempts - 1
    total = 0.0
    n = 1
    while n <= retries:
        delay = backoff(settings, n, jitter=lambda: 1.0)
        if delay >= settings.retry_max:  # capped from here on: the rest at once
            total += (retries - n + 1) * (settings.retry_max + attempt_timeout)
            break
        total += delay + attempt_timeout
        if total >= settings.max_age:
            break
        n += 1
    return min(total, settings.max_age) + attempt_timeout


def human_seconds(seconds: float) -> str:
    """`11430.0` -> `3h10m30s`; what `nats stream edit --dupe-window` also accepts."""
    whole = int(-(-seconds // 1))  # round up: a window must not fall short by a fraction
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    out = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return out + (f"{secs}s" if secs or not out else "")


def check_template(value: str) -> str:
    """A subject / stream template: literal text and `{account_id}`, `{kind}`,
    `{project_id}` only (no attribute access, no format specs)."""
    if not value.strip():
        raise ValueError("must not be empty")
    try:
        parsed = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise ValueError(f"is not a valid template: {exc}") from None
    for _text, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in PLACEHOLDERS or spec or conversion:
            raise ValueError(
                f"unknown placeholder {{{field}}}; known: "
                + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
            )
    return value


def render_name(template: str, event: dict[str, Any]) -> str:
    """The subject / stream key of `event` (`project_id` is `none` without a project)."""
    project = event.get("project") or {}
    return template.format(
        account_id=event.get("account_id"),
        kind=event.get("kind"),
        project_id=project.get("id") if project.get("id") is not None else "none",
    )


def in_worker_thread(coro: Coroutine[Any, Any, T], timeout: float) -> T:
    """Run `coro` in a new event loop in a worker thread, waiting at most `timeout`
    seconds (plus a second for the loop to close)."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bcx-broker-check") as ex:
        future = ex.submit(asyncio.run, asyncio.wait_for(coro, timeout))
        return future.result(timeout + 1.0)
