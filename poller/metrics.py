"""Prometheus metrics (`bcx_poller_*`) and `/healthz`, when `[metrics] listen` is set.

prometheus-client is an optional dependency (`pip install 'bcx-poller[metrics]'`); without
it the daemon still serves `/healthz` and says why `/metrics` is missing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

prom: Any
try:  # optional dependency
    import prometheus_client as prom
except ImportError:  # pragma: no cover - exercised when the extra is not installed
    prom = None


class Metrics:
    """The daemon's counters and gauges. Safe to call when prometheus-client is absent."""

    def __init__(self) -> None:
        self.enabled = prom is not None
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
            "Share of conditional answers that were 304",
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
        self.last_success = prom.Gauge(
            "bcx_poller_last_success_timestamp_seconds",
            "Last successful poll",
            ["account"],
            registry=r,
        )

    def observe_cycle(
        self, account: int, ok: bool, seconds: float, stats: Any, kinds: list[str]
    ) -> None:
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
            total = sum(stats.by_status.values()) or 1
            self.not_modified_ratio.labels(a).set(stats.not_modified / total)

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
        for name in handlers:
            c = counts.get(name, {})
            self.outbox_depth.labels(name).set(c.get("pending", 0))
            self.dead.labels(name).set(c.get("dead", 0))
            self.oldest_age.labels(name).set(c.get("oldest_pending_age") or 0)

    def render(self) -> bytes:
        if not self.enabled:
            return b"# prometheus-client is not installed: pip install 'bcx-poller[metrics]'\n"
        return bytes(prom.generate_latest(self.registry))


def serve(
    listen: str, metrics: Metrics, health: Callable[[], tuple[bool, dict[str, Any]]]
) -> ThreadingHTTPServer:
    """Serve /metrics and /healthz on `host:port` in a daemon thread; returns the server."""
    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/metrics":
                body, status, ctype = metrics.render(), 200, "text/plain; version=0.0.4"
            elif self.path.split("?")[0] == "/healthz":
                ok, detail = health()
                body = json.dumps({"ok": ok, **detail}).encode()
                status, ctype = (200 if ok else 503), "application/json"
            else:
                body, status, ctype = b"not found\n", 404, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((host.strip("[]") or "127.0.0.1", int(port)), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
