"""Serve a `SimulatorApp` over loopback HTTP with the standard library.

    with serve(app) as base_url:               # http://127.0.0.1:<free port>
        root = account_base_url(base_url, account.account_id)

The server runs `ThreadingHTTPServer` (HTTP/1.1, keep-alive) in a background thread.
Faults: `delay` sleeps in the handler thread; `hang` holds the connection open without an
answer until the server shuts down; `disconnect` closes the socket without an answer.

`latency` (seconds, `serve(app, latency=0.05)`) is waited before each request is handled:
an ocean between poller and Basecamp, without the simulator's lock held meanwhile.

`main(argv)` / `run(...)` start a demo account for humans (`bcx-poller simulate`). For
benchmarks that want the simulator in its own process (its CPU off the poller's GIL):

    python -m poller.simulator --port 0 --populate '{"projects": 20, ...}' --manual-clock \
        --latency-ms 100 --control

builds the account with `Account.populate(**spec)`, prints one JSON line
`{"base_url": ..., "account_id": ...}`, then answers JSON commands read from stdin, one
per line (`_control`), until stdin closes.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO
from urllib.parse import parse_qsl, unquote, urlsplit

from poller.simulator.account import Account
from poller.simulator.api import DEMO_PASSWORD, DEMO_USERNAME, SimulatorApp
from poller.simulator.clock import ManualClock
from poller.simulator.populate import demo_account


def account_base_url(base_url: str, account_id: int) -> str:
    """`{base}/{account_id}/api/v1`: the API root a client is configured with."""
    return f"{base_url.rstrip('/')}/{account_id}/api/v1"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: SimulatorApp, latency: float = 0.0) -> None:
        self.app = app
        self.latency = latency
        self.stopping = threading.Event()
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes: without TCP_NODELAY, Nagle plus the
        # peer's delayed ACK add ~40 ms to every response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self) -> None:
        split = urlsplit(self.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        app = self.server.app
        if self.server.latency and self.server.stopping.wait(self.server.latency):
            self.close_connection = True  # shutting down during the wait: no answer
            return
        response = app.handle(
            self.command,
            unquote(split.path),
            query,
            dict(self.headers.items()),
            base_url=f"http://{host}",
        )
        stopping = self.server.stopping
        if response.hang:
            stopping.wait()
        elif response.delay:
            stopping.wait(response.delay)
        if response.hang or response.disconnect or stopping.is_set():
            self.close_connection = True
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.body and self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the app's request log records everything."""


@contextmanager
def serve(
    app: SimulatorApp, host: str = "127.0.0.1", port: int = 0, *, latency: float = 0.0
) -> Iterator[str]:
    """Serve `app` on `host:port` (0 = a free port) in a thread; yield the base URL.
    `latency`: seconds waited before handling each request.

    On exit the server stops, hanging requests are released (their connections close
    without an answer) and the socket is closed.
    """
    server = _Server((host, port), app, latency)
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="bcx-simulator", daemon=True
    )
    thread.start()
    bound_host, bound_port = server.server_address[:2]
    try:
        yield f"http://{bound_host!s}:{bound_port}"
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def run(
    port: int = 8000,
    host: str = "127.0.0.1",
    *,
    account_id: int = 999_999_999,
    out: TextIO = sys.stdout,
    stop: threading.Event | None = None,
) -> None:
    """Serve a demo-populated account until Ctrl-C (or until `stop` is set)."""
    account = demo_account(account_id)
    app = SimulatorApp(account, users={DEMO_USERNAME: DEMO_PASSWORD})
    with serve(app, host, port) as base_url:
        print(f"Basecamp 2 simulator listening on {base_url}", file=out)
        print(f"  account id : {account.account_id}", file=out)
        print(f"  API root   : {account_base_url(base_url, account.account_id)}", file=out)
        print(f"  Basic auth : {DEMO_USERNAME} / {DEMO_PASSWORD}", file=out)
        print(
            f"  OAuth      : client_id={app.launchpad.client_id} "
            f"client_secret={app.launchpad.client_secret} "
            f"(token endpoint {base_url}/authorization/token)",
            file=out,
        )
        print("Press Ctrl-C to stop.", file=out, flush=True)
        try:
            (stop or threading.Event()).wait()
        except KeyboardInterrupt:
            print("stopped", file=out)


def _control(app: SimulatorApp, account: Account, lines: Iterable[str], out: TextIO) -> None:
    """Answer one JSON command per line with one JSON line: `{"ok": result}` or
    `{"error": "..."}`. Commands (`op`):

    advance {seconds}                 move the manual clock
    call {method, args, kwargs}       a public mutation of the account (`update_todo`, ...)
    set_rate_limit {limit, window}    the 429 rule (forgets the requests counted)
    todos                             [[todo id, its list id], ...]
    projects                          project ids
    log {statuses?}                   {"count": requests logged, "statuses": [...] if asked}
    cpu                               CPU seconds this process has used
    """
    for line in lines:
        if not line.strip():
            continue
        try:
            cmd = json.loads(line)
            op = cmd["op"]
            result: Any = None
            if op == "advance":
                clock = account.clock
                if not isinstance(clock, ManualClock):
                    raise ValueError("advance needs --manual-clock")
                clock.advance(float(cmd["seconds"]))
            elif op == "call":
                method = str(cmd["method"])
                if method.startswith("_") or not callable(getattr(account, method, None)):
                    raise ValueError(f"no account method {method!r}")
                result = getattr(account, method)(*cmd.get("args", []), **cmd.get("kwargs", {}))
                json.dumps(result)  # only what travels as JSON comes back
            elif op == "set_rate_limit":
                app.set_rate_limit(int(cmd["limit"]), float(cmd.get("window", 10.0)))
            elif op == "todos":
                result = [[t.id, t.todolist_id] for t in account.todos.values()]
            elif op == "projects":
                result = list(account.projects)
            elif op == "log":
                result = {"count": len(app.log)}
                if cmd.get("statuses"):
                    result["statuses"] = app.log.statuses()
            elif op == "cpu":
                result = time.process_time()
            else:
                raise ValueError(f"unknown op {op!r}")
            reply: dict[str, Any] = {"ok": result}
        except Exception as exc:  # the command's fault (bad id, bad op): say so, go on
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), file=out, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m poller.simulator [--host H] [--port N] [--account-id ID] [...]`; returns 0."""
    parser = argparse.ArgumentParser(description="Run the Basecamp 2 simulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: a free port")
    parser.add_argument("--account-id", type=int, default=999_999_999)
    parser.add_argument(
        "--populate",
        metavar="JSON",
        help="build the account with Account.populate(**JSON) instead of the demo account",
    )
    parser.add_argument("--seed", type=int, default=0, help="id seed of a --populate account")
    parser.add_argument(
        "--manual-clock", action="store_true", help="time stands still until `advance`"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="wait this long before each answer"
    )
    parser.add_argument("--rate-limit", type=int, default=500, help="requests per window")
    parser.add_argument("--rate-window", type=float, default=10.0, help="seconds")
    parser.add_argument(
        "--control",
        action="store_true",
        help="print the base URL as JSON, then answer JSON commands on stdin until it closes",
    )
    args = parser.parse_args(argv)
    plain = (
        args.populate is None
        and not args.manual_clock
        and not args.control
        and args.latency_ms == 0
        and (args.rate_limit, args.rate_window) == (500, 10.0)
    )
    if plain:
        run(args.port, args.host, account_id=args.account_id)
        return 0
    if args.populate is not None:
        clock = ManualClock() if args.manual_clock else None
        account = Account(args.account_id, clock=clock, seed=args.seed)
        account.populate(**json.loads(args.populate))
    else:
        account = demo_account(args.account_id)
        if args.manual_clock:
            parser.error("--manual-clock needs --populate")
    app = SimulatorApp(
        account,
        users={DEMO_USERNAME: DEMO_PASSWORD},
        rate_limit=args.rate_limit,
        rate_window=args.rate_window,
    )
    with serve(app, args.host, args.port, latency=args.latency_ms / 1000) as base_url:
        if args.control:
            print(json.dumps({"base_url": base_url, "account_id": account.account_id}))
            sys.stdout.flush()
            _control(app, account, sys.stdin, sys.stdout)
            return 0
        print(f"Basecamp 2 simulator listening on {base_url} (Ctrl-C stops)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
