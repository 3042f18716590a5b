"""Prometheus metrics (`bcx_poller_*`) and `/healthz`, when `[metrics] listen` is set.

prometheus-client is a plain dependency, imported only when metrics are served. Should it
be missing all the same (a broken install), `/metrics` answers 503 saying so — never 200
with no metric — and `/healthz` still works.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

from poller.errors import ConfigError, PollerError

log = structlog.get_logger(__name__)


def _prometheus() -> Any:
    """prometheus_client, imported only when metrics are served (it is optional, and an
    idle daemon should not carry it)."""
    try:
        import prometheus_client
    except ImportError:  # a broken install: /metrics answers 503 and says why
        return None
    return prometheus_client


class Metrics:
    """The daemon's counters and gauges. Every call is a no-op when metrics are not
    served (`wanted=False`) or prometheus-client is absent."""

    def __init__(self, wanted: bool = True) -> None:
        prom = _prometheus() if wanted else None
        self.enabled = prom is not None
        self.prom: Any = prom
        if prom is None:
            return
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.cycles = prom.Counter(
            "bcx_poller_cycles", "Poll cycles", ["account", "result"], registry=r
        )
        self.cycle_seconds = prom.Histogram(
            "bcx_poller_cycle_duration_seconds", "Cycle duration", ["account"], registry=r
        )
        self.requests = prom.Counter(
            "bcx_poller_requests",
            "Requests to Basecamp by status",
            ["account", "status"],
            registry=r,
        )
        self.not_modified_ratio = prom.Gauge(
            "bcx_poller_not_modified_ratio",
            "Share of the account's answers that were 304 Not Modified (since start)",
            ["account"],
            registry=r,
        )
        self.rate_limited = prom.Counter(
            "bcx_poller_rate_limited", "429 answers received", ["account"], registry=r
        )
        self.events = prom.Counter(
            "bcx_poller_events", "Events emitted by kind", ["kind"], registry=r
        )
        self.outbox_depth = prom.Gauge(
            "bcx_poller_outbox_pending", "Pending deliveries", ["handler"], registry=r
        )
        self.oldest_age = prom.Gauge(
            "bcx_poller_outbox_oldest_age_seconds",
            "Age of the oldest pending delivery",
            ["handler"],
            registry=r,
        )
        self.dead = prom.Gauge(
            "bcx_poller_dead_letters", "Dead deliveries", ["handler"], registry=r
        )
        self.failing = prom.Gauge(
            "bcx_poller_account_failing",
            "1 while the account fails for a lasting reason (unauthorized, forbidden, not_found)",
            ["account", "reason"],
            registry=r,
        )
        self.backoff = prom.Gauge(
            "bcx_poller_account_backoff_seconds",
            "Seconds the account waits before its next attempt (0 = its interval)",
            ["account"],
            registry=r,
        )
        self._failing: dict[str, str] = {}
        self.last_success = prom.Gauge(
            "bcx_poller_last_success_timestamp_seconds",
            "Last successful poll",
            ["account"],
            registry=r,
        )

    def observe_cycle(
        self, account: int, ok: bool, seconds: float, stats: Any, kinds: list[str]
    ) -> None:
        """One finished cycle; `kinds` are the kinds of the events it added to the outbox."""
        if not self.enabled:
            return
        a = str(account)
        self.cycles.labels(a, "ok" if ok else "error").inc()
        self.cycle_seconds.labels(a).observe(seconds)
        if ok:
            self.last_success.labels(a).set(time.time())
        for kind in kinds:
            self.events.labels(kind).inc()
        if stats is not None:
            total = sum(stats.by_status.values())
            if total:
                self.not_modified_ratio.labels(a).set(stats.not_modified / total)

    def observe_last_success(self, account: int, at: float | None) -> None:
        """The last successful poll as recorded in the state (survives restarts)."""
        if self.enabled and at is not None:
            self.last_success.labels(str(account)).set(at)

    def observe_failure(self, account: int, reason: str | None, backoff: float) -> None:
        """The account fails for `reason` (None: it does not) and waits `backoff` s."""
        if not self.enabled:
            return
        a = str(account)
        old = self._failing.pop(a, None)
        if old is not None and old != reason:
            with contextlib.suppress(KeyError):
                self.failing.remove(a, old)
        if reason is not None:
            self._failing[a] = reason
            self.failing.labels(a, reason).set(1)
        self.backoff.labels(a).set(backoff)

    def observe_backoff(self, account: int, backoff: float) -> None:
        if self.enabled:
            self.backoff.labels(str(account)).set(backoff)

    def forget_account(self, account: int) -> None:
        """An account removed by a reload: drop its per-account series."""
        if not self.enabled:
            return
        a = str(account)
        for metric in (
            self.cycle_seconds,
            self.not_modified_ratio,
            self.last_success,
            self.backoff,
        ):
            with contextlib.suppress(KeyError):
                metric.remove(a)
        reason = self._failing.pop(a, None)
        if reason is not None:
            with contextlib.suppress(KeyError):
                self.failing.remove(a, reason)

    def observe_requests(self, account: int, delta: dict[int, int], rate_limited: int) -> None:
        if not self.enabled:
            return
        for status, n in delta.items():
            self.requests.labels(str(account), str(status)).inc(n)
        if rate_limited:
            self.rate_limited.labels(str(account)).inc(rate_limited)

    def observe_outbox(self, counts: dict[str, dict[str, Any]], handlers: list[str]) -> None:
        if not self.enabled:
            return
        for gauge in (self.outbox_depth, self.dead, self.oldest_age):
            gauge.clear()  # handlers removed by a reload disappear
        for name in handlers:
            c = counts.get(name, {})
            self.outbox_depth.labels(name).set(c.get("pending", 0))
            self.dead.labels(name).set(c.get("dead", 0))
            self.oldest_age.labels(name).set(c.get("oldest_pending_age") or 0)

    MISSING = b"prometheus-client is not installed (pip install prometheus-client)\n"

    def render(self) -> bytes:
        if not self.enabled:
            return self.MISSING
        return bytes(self.prom.generate_latest(self.registry))


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` (127.0.0.1) -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not sep or not 0 <= number <= 65535:
        raise ConfigError("metrics.listen", f"expected host:port, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", number


def serve(
    listen: str,
    metrics: Metrics,
    health: Callable[[], tuple[bool, dict[str, Any]]],
    refresh: Callable[[], None] | None = None,
) -> ThreadingHTTPServer:
    """Serve /metrics and /healthz on `host:port` in a daemon thread; returns the server.

    `refresh` is called (in the server's thread) before each /metrics answer, so gauges
    read from the state (outbox depth, last success) are current when scraped.
    """
    host, port = parse_listen(listen)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            try:
                if path == "/metrics" and not metrics.enabled:  # never 200 with no metric
                    body, status, ctype = metrics.MISSING, 503, "text/plain"
                elif path == "/metrics":
                    if refresh is not None:
                        refresh()
                    body, status, ctype = metrics.render(), 200, "text/plain; version=0.0.4"
                elif path == "/healthz":
                    ok, detail = health()
                    body = json.dumps({"ok": ok, **detail}).encode()
                    status, ctype = (200 if ok else 503), "application/json"
                else:
                    body, status, ctype = b"not found\n", 404, "text/plain"
            except Exception as exc:  # e.g. the state database is busy: answer, log, go on
                log.warning("metrics_request_failed", path=path, error=str(exc))
                body = json.dumps({"ok": False, "error": str(exc)}).encode()
                status, ctype = 503, "application/json"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    try:
        server = Server((host, port), Handler)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise PollerError(f"metrics.listen: cannot listen on {listen}: {reason}") from exc
    threading.Thread(target=server.serve_forever, args=(0.1,), name="metrics", daemon=True).start()
    return server
