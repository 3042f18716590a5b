"""Serve a `SimulatorApp` in-process to httpx clients, without sockets.

    transport = SimulatorTransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="https://basecamp.com") as c:
        await c.get("/999999999/api/v1/projects.json", auth=(...), headers={...})

The request's scheme and host become the base of payload URLs. Query strings are decoded
the way a server decodes them (`+` becomes a space). Faults: `delay` sleeps
(`asyncio.sleep` / `time.sleep`) but never longer than the request's read timeout, after
which `httpx.ReadTimeout` is raised, as a real connection would; `hang` waits for the
read timeout (forever if there is none); `disconnect` raises `httpx.RemoteProtocolError`.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qsl

import httpx

from poller.simulator.api import SimResponse, SimulatorApp


def _call(app: SimulatorApp, request: httpx.Request) -> SimResponse:
    query = dict(parse_qsl(request.url.query.decode("ascii"), keep_blank_values=True))
    base = f"{request.url.scheme}://{request.url.netloc.decode('ascii')}"
    return app.handle(request.method, request.url.path, query, dict(request.headers), base_url=base)


def _wait_time(response: SimResponse, request: httpx.Request) -> tuple[float | None, bool]:
    """(seconds to wait or None for forever, whether the wait ends in a read timeout)."""
    timeouts = request.extensions.get("timeout") or {}
    read = timeouts.get("read")
    if response.hang:
        return read, True
    if read is not None and response.delay > read:
        return read, True
    return response.delay, False


def _to_httpx(response: SimResponse, request: httpx.Request) -> httpx.Response:
    if response.disconnect:
        raise httpx.RemoteProtocolError(
            "Server disconnected without sending a response.", request=request
        )
    return httpx.Response(
        response.status, headers=response.headers, content=response.body, request=request
    )


class SimulatorTransport(httpx.AsyncBaseTransport):
    """`httpx.AsyncClient(transport=SimulatorTransport(app))`."""

    def __init__(self, app: SimulatorApp) -> None:
        self.app = app

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        response = _call(self.app, request)
        wait, times_out = _wait_time(response, request)
        if wait is None:
            await asyncio.Event().wait()  # hang with no timeout: until cancelled
        elif wait > 0:
            await asyncio.sleep(wait)
        if times_out:
            raise httpx.ReadTimeout("simulated read timeout", request=request)
        return _to_httpx(response, request)


class SyncSimulatorTransport(httpx.BaseTransport):
    """`httpx.Client(transport=SyncSimulatorTransport(app))`. A hang without a read
    timeout is refused (it would block the test forever)."""

    def __init__(self, app: SimulatorApp) -> None:
        self.app = app

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        response = _call(self.app, request)
        wait, times_out = _wait_time(response, request)
        if wait is None:
            raise RuntimeError("hang fault with no read timeout would block forever")
        if wait > 0:
            time.sleep(wait)
        if times_out:
            raise httpx.ReadTimeout("simulated read timeout", request=request)
        return _to_httpx(response, request)
