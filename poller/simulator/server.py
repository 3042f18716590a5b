"""Serve a `SimulatorApp` over loopback HTTP with the standard library.

    with serve(app) as base_url:               # http://127.0.0.1:<free port>
        root = account_base_url(base_url, account.account_id)

The server runs `ThreadingHTTPServer` (HTTP/1.1, keep-alive) in a background thread.
Faults: `delay` sleeps in the handler thread; `hang` holds the connection open without an
answer until the server shuts down; `disconnect` closes the socket without an answer.

`main(argv)` / `run(...)` start a demo account for humans (`bcx-poller simulate`).
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TextIO
from urllib.parse import parse_qsl, unquote, urlsplit

from poller.simulator.api import DEMO_PASSWORD, DEMO_USERNAME, SimulatorApp
from poller.simulator.populate import demo_account


def account_base_url(base_url: str, account_id: int) -> str:
    """`{base}/{account_id}/api/v1`: the API root a client is configured with."""
    return f"{base_url.rstrip('/')}/{account_id}/api/v1"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: SimulatorApp) -> None:
        self.app = app
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
def serve(app: SimulatorApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` on `host:port` (0 = a free port) in a thread; yield the base URL.

    On exit the server stops, hanging requests are released (their connections close
    without an answer) and the socket is closed.
    """
    server = _Server((host, port), app)
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


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m poller.simulator [--host H] [--port N] [--account-id ID]`; returns 0."""
    parser = argparse.ArgumentParser(description="Run the Basecamp 2 simulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--account-id", type=int, default=999_999_999)
    args = parser.parse_args(argv)
    run(args.port, args.host, account_id=args.account_id)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
