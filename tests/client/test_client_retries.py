"""429 / Retry-After, 5xx and network retries, 401 refresh, redirects."""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import Callable

import httpx
import pytest

from poller.client import BasecampClient, Fetched, Validators, parse_retry_after
from poller.errors import (
    AuthError,
    RateLimited,
    ServerError,
    TransportError,
    UnexpectedStatus,
)
from poller.ratelimit import RateLimiter
from tests.client.fakes import ROOT, FakeTime, account, json_response, make_client

OK = {"id": 1}


def sequence(*answers: httpx.Response | Exception) -> Callable[[httpx.Request], httpx.Response]:
    """Answer with each item in turn, then 200 forever."""
    queue = list(answers)

    def respond(request: httpx.Request) -> httpx.Response:
        if queue:
            item = queue.pop(0)
            if isinstance(item, Exception):
                raise item
            return item
        return json_response(OK)

    return respond


# ---------------------------------------------------------------- 429 / Retry-After


async def test_retry_after_seconds_delays_the_retry() -> None:
    respond = sequence(httpx.Response(429, headers={"Retry-After": "7"}))
    async with make_client(respond) as (client, rec, _t):
        res = await client.get("projects.json")
    assert isinstance(res, Fetched)
    assert len(rec.requests) == 2
    assert rec.times[1] - rec.times[0] == pytest.approx(7.0)
    assert client.stats.rate_limited == 1
    assert client.stats.by_status == {429: 1, 200: 1}


async def test_retry_after_http_date_delays_the_retry() -> None:
    t = FakeTime()
    server_now = 1_800_000_000.0  # the server's Date header is the reference, not our clock
    headers = {
        "Date": email.utils.formatdate(server_now, usegmt=True),
        "Retry-After": email.utils.formatdate(server_now + 12, usegmt=True),
    }
    async with make_client(sequence(httpx.Response(429, headers=headers)), time=t) as (
        client,
        rec,
        _,
    ):
        await client.get("projects.json")
    assert rec.times[1] - rec.times[0] == pytest.approx(12.0)


async def test_retry_after_http_date_without_date_header_uses_wall_clock() -> None:
    t = FakeTime()
    headers = {"Retry-After": email.utils.formatdate(t.wall() + 20, usegmt=True)}
    async with make_client(sequence(httpx.Response(429, headers=headers)), time=t) as (
        client,
        rec,
        _,
    ):
        await client.get("projects.json")
    assert rec.times[1] - rec.times[0] == pytest.approx(20.0)


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "nan", "Mon, 99 Foo 2024"])
async def test_missing_or_garbled_retry_after_uses_default(value: str | None) -> None:
    headers = {} if value is None else {"Retry-After": value}
    async with make_client(sequence(httpx.Response(429, headers=headers))) as (client, rec, _):
        await client.get("projects.json")
    assert rec.times[1] - rec.times[0] == pytest.approx(10.0)


async def test_429_blocks_every_other_request_of_the_account() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/a.json"):
            return httpx.Response(429, headers={"Retry-After": "5"})
        return json_response(OK)

    async with make_client(respond, max_rate_limit_retries=0) as (client, rec, t):
        with pytest.raises(RateLimited):
            await client.get("a.json")
        start = t.now
        await client.get("b.json")
    assert rec.times[-1] - start == pytest.approx(5.0)


async def test_429_shared_limiter_blocks_another_client_of_the_same_account() -> None:
    t = FakeTime()
    limiter = RateLimiter(450, clock=t.clock, sleep=t.sleep)
    respond = sequence(httpx.Response(429, headers={"Retry-After": "9"}))
    async with (
        make_client(respond, time=t, limiter=limiter, max_rate_limit_retries=0) as (a, _, _t),
        make_client(lambda r: json_response(OK), time=t, limiter=limiter) as (b, rec_b, _t2),
    ):
        with pytest.raises(RateLimited):
            await a.get("a.json")
        blocked_at = t.now
        await b.get("b.json")
    assert rec_b.times[0] - blocked_at == pytest.approx(9.0)


async def test_429_retries_are_capped() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "1"})

    async with make_client(respond, max_rate_limit_retries=3) as (client, rec, _):
        with pytest.raises(RateLimited) as info:
            await client.get("projects.json")
    assert len(rec.requests) == 4
    assert info.value.status == 429
    assert info.value.url == f"{ROOT}/projects.json"
    assert client.stats.rate_limited == 4


async def test_overlong_retry_after_blocks_account_and_fails_fast() -> None:
    respond = sequence(httpx.Response(429, headers={"Retry-After": "3600"}))
    async with make_client(respond, max_retry_after=60) as (client, rec, t):
        with pytest.raises(RateLimited):
            await client.get("projects.json")
        assert len(rec.requests) == 1
        assert client.limiter.blocked_until == pytest.approx(t.now + 3600)


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after(" 3 ", now=now) == 3.0
    assert parse_retry_after("1.5", now=now) == 1.5
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after(None, now=now, default=4) == 4
    assert parse_retry_after("garbage", now=now) == 10.0
    assert parse_retry_after("inf", now=now) == 10.0


# ---------------------------------------------------------------- 5xx and network


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_retried_with_capped_backoff_then_server_error(status: int) -> None:
    async with make_client(
        lambda r: httpx.Response(status), max_retries=4, backoff_base=0.5, backoff_max=3
    ) as (client, rec, t):
        with pytest.raises(ServerError) as info:
            await client.get("projects.json")
    assert len(rec.requests) == 5
    assert t.sleeps == [0.5, 1.0, 2.0, 3.0]  # jitter() == 1.0 in tests: the full ceiling
    assert info.value.status == status
    assert info.value.url == f"{ROOT}/projects.json"
    assert client.stats.retries == 4


async def test_full_jitter_scales_the_delay() -> None:
    async with make_client(
        sequence(httpx.Response(503), httpx.Response(503)), jitter=lambda: 0.25
    ) as (client, _, t):
        await client.get("projects.json")
    assert t.sleeps == [0.125, 0.25]


async def test_5xx_then_success() -> None:
    async with make_client(sequence(httpx.Response(502), httpx.Response(500))) as (
        client,
        rec,
        _,
    ):
        res = await client.get("projects.json")
    assert isinstance(res, Fetched)
    assert len(rec.requests) == 3
    assert client.stats.retries == 2


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectTimeout("connect timed out"),
        httpx.ReadTimeout("read timed out"),
        httpx.PoolTimeout("pool timed out"),
        httpx.ConnectError("connection refused"),
        httpx.ReadError("connection reset"),
        httpx.RemoteProtocolError("server disconnected"),
    ],
)
async def test_network_trouble_retried_then_transport_error(exc: Exception) -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        raise exc

    async with make_client(respond, max_retries=2) as (client, rec, t):
        with pytest.raises(TransportError) as info:
            await client.get("projects.json")
    assert len(rec.requests) == 3
    assert len(t.sleeps) == 2
    assert info.value.url == f"{ROOT}/projects.json"
    assert info.value.__cause__ is None


async def test_transient_timeout_recovers() -> None:
    async with make_client(sequence(httpx.ReadTimeout("slow"))) as (client, rec, _):
        res = await client.get("projects.json")
    assert isinstance(res, Fetched)
    assert len(rec.requests) == 2


async def test_failures_and_5xx_share_one_retry_budget() -> None:
    respond = sequence(
        httpx.ReadTimeout("slow"), httpx.Response(503), httpx.ConnectError("x"), httpx.Response(500)
    )
    async with make_client(respond, max_retries=3) as (client, rec, _):
        with pytest.raises(ServerError):
            await client.get("projects.json")
    assert len(rec.requests) == 4


async def test_timeout_passed_per_request() -> None:
    seen: list[dict[str, float | None]] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return json_response(OK)

    async with make_client(respond, acct=account(timeout=7.5)) as (client, _, _t):
        await client.get("projects.json")
    assert seen[0]["read"] == 7.5
    assert seen[0]["connect"] == 7.5


# ---------------------------------------------------------------- auth


class Refreshing:
    def __init__(self, results: list[bool]) -> None:
        self.results = results
        self.calls = 0
        self.token = "old"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def refresh(self) -> bool:
        self.calls += 1
        ok = self.results.pop(0) if self.results else False
        if ok:
            self.token = f"new{self.calls}"
        return ok


async def test_401_refreshes_once_and_retries_with_new_token() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == "Bearer old":
            return httpx.Response(401)
        return json_response(OK)

    auth = Refreshing([True])
    async with make_client(respond, auth=auth) as (client, rec, _):
        res = await client.get("projects.json")
    assert isinstance(res, Fetched)
    assert auth.calls == 1
    assert [r.headers["Authorization"] for r in rec.requests] == ["Bearer old", "Bearer new1"]


async def test_401_after_refresh_is_auth_error_without_second_refresh() -> None:
    auth = Refreshing([True, True])
    async with make_client(lambda r: httpx.Response(401), auth=auth) as (client, rec, _):
        with pytest.raises(AuthError) as info:
            await client.get("projects.json")
    assert auth.calls == 1
    assert len(rec.requests) == 2
    assert info.value.status == 401


async def test_401_without_refresh_is_auth_error() -> None:
    async with make_client(lambda r: httpx.Response(401)) as (client, rec, _):
        with pytest.raises(AuthError):
            await client.get("projects.json")
    assert len(rec.requests) == 1


async def test_403_is_auth_error_without_refresh() -> None:
    auth = Refreshing([True])
    async with make_client(lambda r: httpx.Response(403), auth=auth) as (client, _, _t):
        with pytest.raises(AuthError) as info:
            await client.get("projects.json")
    assert auth.calls == 0
    assert info.value.status == 403


# ---------------------------------------------------------------- redirects


async def test_same_host_redirect_followed_keeping_auth_and_reporting_final_url() -> None:
    moved = f"{ROOT}/projects/2/todolists/5.json?moved=true"

    def respond(request: httpx.Request) -> httpx.Response:
        if "/projects/1/" in request.url.path:
            return httpx.Response(301, headers={"Location": moved}, text="<html>moved</html>")
        return json_response({"id": 5}, headers={"ETag": '"new"'})

    async with make_client(respond) as (client, rec, _):
        res = await client.get("projects/1/todolists/5.json", validators=Validators('"old"', None))
    assert isinstance(res, Fetched)
    assert res.url == moved
    assert res.validators.etag == '"new"'
    assert rec.urls == [f"{ROOT}/projects/1/todolists/5.json", moved]
    assert rec.requests[1].headers["Authorization"].startswith("Basic ")
    # validators belonged to the old URL; the new one is asked afresh
    assert "if-none-match" not in rec.requests[1].headers


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_relative_location_and_each_redirect_status(status: int) -> None:
    respond = sequence(httpx.Response(status, headers={"Location": "/999/api/v1/x.json"}))
    async with make_client(respond) as (client, rec, _):
        res = await client.get("projects.json")
    assert isinstance(res, Fetched)
    assert res.url == "https://basecamp.com/999/api/v1/x.json"
    assert len(rec.requests) == 2


@pytest.mark.parametrize(
    "location",
    [
        "https://evil.example/999/api/v1/projects.json",
        "http://basecamp.com/999/api/v1/projects.json",  # scheme downgrade
        "https://basecamp.com:8443/999/api/v1/projects.json",
        "//evil.example/x.json",
    ],
)
async def test_cross_host_redirect_refused(location: str) -> None:
    respond = sequence(httpx.Response(302, headers={"Location": location}))
    async with make_client(respond) as (client, rec, _):
        with pytest.raises(UnexpectedStatus) as info:
            await client.get("projects.json")
    assert len(rec.requests) == 1  # never sent anything (credentials!) to the other host
    assert info.value.status == 302


async def test_redirect_hops_capped_at_three() -> None:
    def chain(n: int) -> Callable[[httpx.Request], httpx.Response]:
        def respond(request: httpx.Request) -> httpx.Response:
            hop = int(request.url.params.get("hop", "0"))
            if hop < n:
                return httpx.Response(
                    302, headers={"Location": f"{ROOT}/projects.json?hop={hop + 1}"}
                )
            return json_response(OK)

        return respond

    async with make_client(chain(3)) as (client, rec, _):
        res = await client.get("projects.json")
    assert isinstance(res, Fetched)
    assert len(rec.requests) == 4
    async with make_client(chain(4)) as (client, rec, _):
        with pytest.raises(UnexpectedStatus, match="too many redirects"):
            await client.get("projects.json")
    assert len(rec.requests) == 4


async def test_redirect_without_location() -> None:
    async with make_client(lambda r: httpx.Response(301)) as (client, _, _t):
        with pytest.raises(UnexpectedStatus):
            await client.get("projects.json")


async def test_redirect_in_get_list_page_one_reports_final_url() -> None:
    moved = f"{ROOT}/projects/2/todolists.json?moved=true"

    def respond(request: httpx.Request) -> httpx.Response:
        if "/projects/1/" in request.url.path:
            return httpx.Response(301, headers={"Location": moved})
        return json_response([{"id": 1}])

    async with make_client(respond) as (client, _, _t):
        res = await client.get_list("projects/1/todolists.json")
    assert res.url == moved


async def test_client_is_constructible_with_defaults() -> None:
    async with httpx.AsyncClient() as http:
        client = BasecampClient(account(rate_limit=100), http)
    assert client.limiter.limit == 100
    assert client.limiter.window == 10.0


async def test_redirect_location_userinfo_is_dropped() -> None:
    location = "https://mallory:pw@basecamp.com/999/api/v1/x.json"
    respond = sequence(httpx.Response(301, headers={"Location": location}))
    async with make_client(respond) as (client, rec, _):
        res = await client.get("projects.json")
    assert isinstance(res, Fetched)
    assert res.url == "https://basecamp.com/999/api/v1/x.json"
    assert rec.requests[1].url.userinfo == b""


async def test_concurrent_requests_respect_the_account_limit() -> None:
    async with make_client(lambda r: json_response(OK), acct=account(rate_limit=3)) as (
        client,
        rec,
        _,
    ):
        await asyncio.gather(*(client.get(f"projects/{i}.json") for i in range(8)))
    times = sorted(rec.times)
    assert len(times) == 8
    for i in range(len(times) - 3):
        assert times[i + 3] - times[i] >= 10.0 - 1e-9
