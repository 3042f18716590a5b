"""get_list: the safe pagination loop of API.md §5, and no partial listings."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from poller.client import Listing, NotModified, Validators
from poller.errors import BadResponse, NotFound, ServerError, UnexpectedStatus
from tests.client.fakes import ROOT, json_response, make_client

Row = dict[str, object]


def rows(start: int, count: int) -> list[Row]:
    return [{"id": i} for i in range(start, start + count)]


def paged(
    pages: dict[int, list[Row]], headers: dict[str, str] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    def respond(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", "1"))
        return json_response(pages.get(page, []), headers=headers)

    return respond


async def test_three_pages_with_dedupe_and_page_params() -> None:
    # page 2 repeats the last id of page 1 (the list shifted between requests)
    pages = {1: rows(1, 50), 2: rows(50, 50), 3: rows(100, 7)}
    async with make_client(paged(pages, {"ETag": '"p"'})) as (client, rec, _):
        res = await client.get_list("projects/1/topics.json", params={"sort": "oldest"})
    assert isinstance(res, Listing)
    assert [r["id"] for r in res.items] == list(range(1, 107))
    assert res.pages == 3
    assert res.validators is None  # multi-page: page 1 alone cannot validate it
    assert res.url == f"{ROOT}/projects/1/topics.json?sort=oldest"
    assert rec.urls == [
        f"{ROOT}/projects/1/topics.json?sort=oldest",
        f"{ROOT}/projects/1/topics.json?sort=oldest&page=2",
        f"{ROOT}/projects/1/topics.json?sort=oldest&page=3",
    ]


async def test_dedupe_keeps_first_occurrence() -> None:
    p1 = rows(1, 50)
    p2 = [{"id": 10, "name": "later copy"}, *rows(200, 3)]
    p1[9] = {"id": 10, "name": "first copy"}
    async with make_client(paged({1: p1, 2: p2})) as (client, _, _t):
        res = await client.get_list("topics.json")
    assert isinstance(res, Listing)
    tens = [r for r in res.items if r["id"] == 10]
    assert tens == [{"id": 10, "name": "first copy"}]
    assert len(res.items) == 53


async def test_short_first_page_is_one_page_with_validators() -> None:
    headers = {"Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"}
    async with make_client(paged({1: rows(1, 3)}, headers)) as (client, rec, _):
        res = await client.get_list("todolists.json")
    assert isinstance(res, Listing)
    assert res.pages == 1
    assert res.validators == Validators(None, "Mon, 01 Jan 2024 00:00:00 GMT")
    assert len(rec.requests) == 1
    assert "page" not in rec.requests[0].url.params


async def test_empty_listing() -> None:
    async with make_client(paged({}, {"ETag": '"e"'})) as (client, _, _t):
        res = await client.get_list("todolists.json")
    assert res == Listing(f"{ROOT}/todolists.json", [], 1, Validators('"e"', None))


async def test_exactly_fifty_then_empty_page_has_no_validators() -> None:
    async with make_client(paged({1: rows(1, 50)}, {"ETag": '"e"'})) as (client, rec, _):
        res = await client.get_list("topics.json")
    assert isinstance(res, Listing)
    assert len(res.items) == 50
    assert res.pages == 2
    assert res.validators is None
    assert len(rec.requests) == 2


async def test_endpoint_ignoring_page_stops_on_echo() -> None:
    everyone = rows(1, 50)

    def echo(request: httpx.Request) -> httpx.Response:
        return json_response(everyone, headers={"ETag": '"people"'})

    async with make_client(echo) as (client, rec, _):
        res = await client.get_list("people.json")
    assert isinstance(res, Listing)
    assert len(res.items) == 50
    assert len(rec.requests) == 2
    assert res.pages == 2
    # page 1 was the whole listing, so its validators describe it
    assert res.validators == Validators('"people"', None)


async def test_echo_detected_on_later_page() -> None:
    pages = {1: rows(1, 50), 2: rows(51, 50), 3: rows(51, 50)}
    async with make_client(paged(pages)) as (client, rec, _):
        res = await client.get_list("topics.json")
    assert isinstance(res, Listing)
    assert len(res.items) == 100
    assert len(rec.requests) == 3
    assert res.validators is None


async def test_page_cap_raises_rather_than_returning_incomplete() -> None:
    def endless(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", "1"))
        return json_response(rows(page * 1000, 50))

    async with make_client(endless) as (client, rec, _):
        with pytest.raises(BadResponse, match="page cap reached"):
            await client.get_list("events.json", max_pages=4)
    assert len(rec.requests) == 4


async def test_page_cap_not_hit_when_last_allowed_page_is_short() -> None:
    pages = {1: rows(1, 50), 2: rows(51, 50), 3: rows(101, 1)}
    async with make_client(paged(pages)) as (client, _, _t):
        res = await client.get_list("events.json", max_pages=3)
    assert isinstance(res, Listing)
    assert len(res.items) == 101


async def test_validators_only_on_page_one_and_304_is_not_modified() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        if request.headers.get("if-none-match") == '"same"':
            return httpx.Response(304)
        return json_response(rows(1, 2))

    async with make_client(respond) as (client, rec, _):
        res = await client.get_list("projects.json", validators=Validators('"same"', None))
    assert res == NotModified(f"{ROOT}/projects.json")
    assert len(rec.requests) == 1


async def test_validators_not_sent_on_later_pages() -> None:
    pages = {1: rows(1, 50), 2: rows(51, 50), 3: []}
    async with make_client(paged(pages)) as (client, rec, _):
        await client.get_list(
            "topics.json", validators=Validators('"old"', "Mon, 01 Jan 2024 00:00:00 GMT")
        )
    assert rec.requests[0].headers["if-none-match"] == '"old"'
    for req in rec.requests[1:]:
        assert "if-none-match" not in req.headers
        assert "if-modified-since" not in req.headers


async def test_304_on_a_later_page_is_an_error() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        if "page" in request.url.params:
            return httpx.Response(304)
        return json_response(rows(1, 50))

    async with make_client(respond) as (client, _, _t):
        with pytest.raises(UnexpectedStatus):
            await client.get_list("topics.json")


@pytest.mark.parametrize(
    ("page2", "error"),
    [
        (httpx.Response(500), ServerError),
        (httpx.Response(404), NotFound),
        (httpx.Response(200, text="<html>maintenance</html>"), BadResponse),
        (httpx.Response(200, text='[{"id": 51}, {"id"'), BadResponse),
        (json_response({"id": 51}), BadResponse),
        (json_response([1, 2, 3]), BadResponse),
        (json_response([{"id": 51}, "x"]), BadResponse),
    ],
)
async def test_any_failing_page_raises_no_partial_listing(
    page2: httpx.Response, error: type[Exception]
) -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("page") == "2":
            return page2
        return json_response(rows(1, 50))

    async with make_client(respond, max_retries=1) as (client, _, _t):
        with pytest.raises(error) as info:
            await client.get_list("topics.json")
    assert "page=2" in info.value.url  # type: ignore[attr-defined]


@pytest.mark.parametrize("body", [{"id": 1}, "str", 3, None, [1], [[{"id": 1}]], [{"id": 1}, None]])
async def test_get_list_requires_an_array_of_objects(body: object) -> None:
    async with make_client(lambda r: json_response(body)) as (client, _, _t):
        with pytest.raises(BadResponse):
            await client.get_list("projects.json")


async def test_items_without_usable_id_are_kept() -> None:
    body = [{"name": "no id"}, {"id": None}, {"id": 1}, {"id": 1}, {"id": True}]
    async with make_client(lambda r: json_response(body)) as (client, _, _t):
        res = await client.get_list("groups.json")
    assert isinstance(res, Listing)
    assert res.items == [{"name": "no id"}, {"id": None}, {"id": 1}, {"id": True}]


async def test_max_pages_must_be_positive() -> None:
    async with make_client(lambda r: json_response([])) as (client, _, _t):
        with pytest.raises(ValueError):
            await client.get_list("projects.json", max_pages=0)
