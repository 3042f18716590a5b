"""Shared fakes for the client tests: a fake clock, an account, a MockTransport router."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx

from poller.client import Auth, BasecampClient
from poller.config import AccountSettings

PASSWORD = "hunter2-PASSWORD-do-not-leak"
TOKEN = "tok-SECRET-do-not-leak-42"
ROOT = "https://basecamp.com/999/api/v1"


class FakeTime:
    """A monotonic clock that only moves when someone sleeps on it."""

    def __init__(self, start: float = 1000.0, wall: float = 1_700_000_000.0) -> None:
        self.now = start
        self.wall_start = wall
        self.start = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.wall_start + (self.now - self.start)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


def account(**overrides: Any) -> AccountSettings:
    data: dict[str, Any] = {
        "id": 999,
        "user_agent": "bcx-poller tests (ops@example.com)",
        "username": "alice@example.com",
        "password": PASSWORD,
    }
    data.update(overrides)
    if "token" in overrides or "oauth" in overrides:
        data.pop("password", None)
        data.pop("username", None)
    return AccountSettings(**data)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(data).encode(),
        headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})},
    )


class Recorder:
    """A MockTransport handler that records every request and answers via `respond`."""

    def __init__(self, respond: Callable[[httpx.Request], httpx.Response], time: FakeTime) -> None:
        self.respond = respond
        self.time = time
        self.requests: list[httpx.Request] = []
        self.times: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.times.append(self.time.now)
        return self.respond(request)

    @property
    def urls(self) -> list[str]:
        return [str(r.url) for r in self.requests]


@asynccontextmanager
async def make_client(
    respond: Callable[[httpx.Request], httpx.Response],
    *,
    time: FakeTime | None = None,
    acct: AccountSettings | None = None,
    auth: Auth | None = None,
    **kwargs: Any,
) -> AsyncIterator[tuple[BasecampClient, Recorder, FakeTime]]:
    t = time or FakeTime()
    rec = Recorder(respond, t)
    async with httpx.AsyncClient(transport=httpx.MockTransport(rec)) as http:
        kwargs.setdefault("jitter", lambda: 1.0)
        client = BasecampClient(
            acct or account(),
            http,
            auth=auth,
            sleep=t.sleep,
            clock=t.clock,
            wall_clock=t.wall,
            **kwargs,
        )
        yield client, rec, t
