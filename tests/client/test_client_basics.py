"""BasecampClient: URLs, headers, auth, conditional GETs, body validation."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest

from poller.client import (
    Auth,
    BasecampClient,
    BasicAuth,
    BearerAuth,
    Fetched,
    NotModified,
    Validators,
    auth_from_account,
)
from poller.errors import BadResponse, ConfigError, NotFound, UnexpectedStatus
from tests.client.fakes import PASSWORD, ROOT, TOKEN, account, json_response, make_client

PROJECT = {"id": 1, "name": "Launch"}


def ok(request: httpx.Request) -> httpx.Response:
    return json_response(
        PROJECT, headers={"ETag": '"abc"', "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"}
    )


async def test_user_agent_and_basic_auth_on_every_request() -> None:
    async with make_client(ok) as (client, rec, _):
        await client.get("projects/1.json")
        await client.get("/projects/2.json")
    assert len(rec.requests) == 2
    expected = "Basic " + base64.b64encode(f"alice@example.com:{PASSWORD}".encode()).decode()
    for req in rec.requests:
        assert req.headers["User-Agent"] == "bcx-poller tests (ops@example.com)"
        assert req.headers["Authorization"] == expected
    assert rec.urls == [f"{ROOT}/projects/1.json", f"{ROOT}/projects/2.json"]


async def test_bearer_token_from_account() -> None:
    async with make_client(ok, acct=account(token=TOKEN)) as (client, rec, _):
        await client.get("projects/1.json")
    assert rec.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert isinstance(client.auth, BearerAuth)


async def test_custom_auth_is_used() -> None:
    class Custom:
        def headers(self) -> dict[str, str]:
            return {"Authorization": "Bearer custom"}

        async def refresh(self) -> bool:
            return False

    custom = Custom()
    assert isinstance(custom, Auth)
    async with make_client(ok, auth=custom) as (client, rec, _):
        await client.get("projects/1.json")
    assert rec.requests[0].headers["Authorization"] == "Bearer custom"


def test_auth_from_account() -> None:
    assert isinstance(auth_from_account(account()), BasicAuth)
    assert isinstance(auth_from_account(account(token=TOKEN)), BearerAuth)
    oauth = account(oauth={"client_id": "cid", "client_secret": "cs", "refresh_token": "rt"})
    with pytest.raises(ConfigError):
        auth_from_account(oauth)


async def test_since_plus_is_percent_encoded_on_the_wire() -> None:
    async with make_client(lambda r: json_response([])) as (client, rec, _):
        await client.get("events.json", params={"since": "2024-05-01T10:00:00.000+02:00"})
    raw = rec.requests[0].url.raw_path.decode()
    assert "%2B02%3A00" in raw or "%2B02:00" in raw
    assert "+" not in raw
    assert rec.requests[0].url.params["since"] == "2024-05-01T10:00:00.000+02:00"


async def test_full_urls_used_as_given_and_params_merged_with_their_query() -> None:
    url = "https://basecamp.com/999/api/v1/projects/2937644-explore/todolists/5.json?moved=true"
    async with make_client(ok) as (client, rec, _):
        res = await client.get(url, params={"x": "1", "skip": None})
    assert isinstance(res, Fetched)
    assert rec.urls == [url + "&x=1"]


@pytest.mark.parametrize(
    "bad",
    [
        "projects",
        "projects.xml",
        "projects?format=.json",
        "projects.json.html",
        "ftp://x/y.json",
        "",
    ],
)
async def test_refuses_paths_not_ending_in_json(bad: str) -> None:
    async with make_client(ok) as (client, rec, _):
        with pytest.raises(ValueError):
            await client.get(bad)
        with pytest.raises(ValueError):
            await client.get_list(bad)
    assert rec.requests == []


async def test_json_path_with_query_string_is_fine() -> None:
    async with make_client(ok) as (client, rec, _):
        await client.get("projects/1.json?foo=bar")
    assert rec.urls == [f"{ROOT}/projects/1.json?foo=bar"]


async def test_fetched_carries_response_validators_and_status() -> None:
    async with make_client(ok) as (client, _, _t):
        res = await client.get("projects/1.json")
    assert res == Fetched(
        url=f"{ROOT}/projects/1.json",
        data=PROJECT,
        validators=Validators(etag='"abc"', last_modified="Mon, 01 Jan 2024 00:00:00 GMT"),
        status=200,
    )


async def test_missing_validators_are_none() -> None:
    async with make_client(lambda r: json_response(PROJECT)) as (client, _, _t):
        res = await client.get("projects/1.json")
    assert isinstance(res, Fetched)
    assert res.validators == Validators(etag=None, last_modified=None)
    assert not res.validators


@pytest.mark.parametrize(
    ("validators", "expected"),
    [
        (
            Validators(etag='"e1"', last_modified="Tue, 02 Jan 2024 00:00:00 GMT"),
            {"if-none-match": '"e1"', "if-modified-since": "Tue, 02 Jan 2024 00:00:00 GMT"},
        ),
        (Validators(etag='"e1"', last_modified=None), {"if-none-match": '"e1"'}),
        (
            Validators(etag=None, last_modified="Tue, 02 Jan 2024 00:00:00 GMT"),
            {"if-modified-since": "Tue, 02 Jan 2024 00:00:00 GMT"},
        ),
        (Validators(), {}),
    ],
)
async def test_conditional_headers_sent_and_304_is_not_modified(
    validators: Validators, expected: dict[str, str]
) -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        if "if-none-match" in request.headers or "if-modified-since" in request.headers:
            return httpx.Response(304)
        return json_response(PROJECT)

    async with make_client(respond) as (client, rec, _):
        res = await client.get("projects/1.json", validators=validators)
    sent = {
        k: v
        for k, v in rec.requests[0].headers.items()
        if k in ("if-none-match", "if-modified-since")
    }
    assert sent == expected
    if expected:
        assert res == NotModified(url=f"{ROOT}/projects/1.json")
        assert client.stats.not_modified == 1
    else:
        assert isinstance(res, Fetched)


async def test_client_never_stores_validators() -> None:
    async with make_client(ok) as (client, rec, _):
        await client.get("projects/1.json")
        await client.get("projects/1.json")
    assert "if-none-match" not in rec.requests[1].headers
    assert "if-modified-since" not in rec.requests[1].headers


@pytest.mark.parametrize(
    "body",
    [
        b"<!DOCTYPE html><html><body>Oops</body></html>",
        b'{"id": 1, "name": "trunc',
        b"",
        b"   ",
        b'{"name": "caf\xe9"}',  # latin-1, not UTF-8
        b'"just a string"',
        b"42",
        b"null",
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
async def test_malformed_bodies_are_bad_response(body: bytes) -> None:
    async with make_client(lambda r: httpx.Response(200, content=body)) as (client, _, _t):
        with pytest.raises(BadResponse) as info:
            await client.get("projects/1.json")
    assert info.value.url == f"{ROOT}/projects/1.json"
    assert f"{ROOT}/projects/1.json" in str(info.value)


async def test_get_accepts_arrays() -> None:
    async with make_client(lambda r: json_response([1, 2])) as (client, _, _t):
        res = await client.get("projects.json")
    assert isinstance(res, Fetched)
    assert res.data == [1, 2]


class Chunks(httpx.AsyncByteStream):
    """A body streamed in chunks without Content-Length."""

    def __init__(self, body: bytes, size: int = 100) -> None:
        self.body = body
        self.size = size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self.body), self.size):
            yield self.body[i : i + self.size]


BIG = b"[" + b"1," * 600 + b"1]"


async def test_body_cap_by_content_length() -> None:
    async with make_client(lambda r: httpx.Response(200, content=BIG), max_body_bytes=1000) as (
        client,
        _,
        _t,
    ):
        with pytest.raises(BadResponse, match="cap"):
            await client.get("projects.json")


async def test_body_cap_while_streaming() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Chunks(BIG))

    async with make_client(respond, max_body_bytes=1000) as (client, _, _t):
        with pytest.raises(BadResponse, match="cap"):
            await client.get("projects.json")
        assert client.stats.bytes_received <= 1100
    async with make_client(respond, max_body_bytes=len(BIG)) as (client, _, _t):
        res = await client.get("projects.json")
        assert isinstance(res, Fetched)


@pytest.mark.parametrize("status", [400, 402, 405, 410, 415, 418, 422, 501, 507])
async def test_other_statuses_are_unexpected(status: int) -> None:
    async with make_client(lambda r: httpx.Response(status, json={"a": 1})) as (client, rec, _):
        with pytest.raises(UnexpectedStatus) as info:
            await client.get("projects/1.json")
    assert info.value.status == status
    assert info.value.url == f"{ROOT}/projects/1.json"
    assert len(rec.requests) == 1


async def test_404_is_not_found() -> None:
    async with make_client(lambda r: httpx.Response(404, text="")) as (client, _, _t):
        with pytest.raises(NotFound) as info:
            await client.get("projects/1/todos/5.json")
    assert info.value.status == 404


async def test_stats_count_requests_statuses_and_bytes() -> None:
    calls = iter([json_response(PROJECT), httpx.Response(304), httpx.Response(404)])
    async with make_client(lambda r: next(calls)) as (client, _, _t):
        await client.get("projects/1.json")
        await client.get("projects/1.json", validators=Validators(etag='"x"'))
        with pytest.raises(NotFound):
            await client.get("projects/1.json")
    s = client.stats
    assert s.requests == 3
    assert s.by_status == {200: 1, 304: 1, 404: 1}
    assert s.not_modified == 1
    assert s.bytes_received == len(json_response(PROJECT).content)
    assert s.bytes == s.bytes_received


async def test_client_does_not_close_injected_http() -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(ok)) as http:
        client = BasecampClient(account(), http)
        await client.get("projects/1.json")
        assert not http.is_closed


async def test_query_value_with_a_url_in_a_relative_path_is_fine() -> None:
    async with make_client(ok) as (client, rec, _):
        await client.get("search.json?next=https://example.com/x")
    assert rec.requests[0].url.path == "/999/api/v1/search.json"
    assert rec.requests[0].url.params["next"] == "https://example.com/x"
