"""Each injected fault kind, its `times` budget, and timing faults."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from poller.simulator import FAULT_KINDS, SimulatorApp, SimulatorTransport
from tests.simulator.conftest import World, make_client


async def test_status_fault_for_n_requests_then_normal(
    app: SimulatorApp, any_client: httpx.AsyncClient, world: World
) -> None:
    app.faults.add(r"/projects\.json$", 503, times=2)
    statuses = [(await any_client.get("projects.json")).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert len(app.faults) == 0
    # other paths were never affected
    assert (await any_client.get("people.json")).status_code == 200


@pytest.mark.parametrize("retry_after", [7, "Wed, 21 Oct 2015 07:28:00 GMT"])
async def test_429_fault_carries_retry_after(
    app: SimulatorApp, client: httpx.AsyncClient, retry_after: int | str
) -> None:
    app.faults.add("events", 429, retry_after=retry_after, times=1)
    response = await client.get("events.json")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == str(retry_after)
    assert (await client.get("events.json")).status_code == 200


async def test_callable_matcher(app: SimulatorApp, client: httpx.AsyncClient) -> None:
    app.faults.add(lambda req: req.query.get("page") == "2", 500)
    assert (await client.get("events.json", params={"page": 1})).status_code == 200
    assert (await client.get("events.json", params={"page": 2})).status_code == 500


async def test_html_instead_of_json(
    app: SimulatorApp, client: httpx.AsyncClient, world: World
) -> None:
    app.faults.add("projects", "html", times=1)
    response = await client.get("projects.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        response.json()


async def test_truncated_json(app: SimulatorApp, client: httpx.AsyncClient, world: World) -> None:
    whole = (await client.get("projects.json")).content
    app.faults.add("projects", "truncated", times=1)
    cut = await client.get("projects.json")
    assert cut.status_code == 200
    assert whole.startswith(cut.content) and len(cut.content) < len(whole)
    with pytest.raises(json.JSONDecodeError):
        cut.json()


async def test_object_where_a_list_belongs(
    app: SimulatorApp, client: httpx.AsyncClient, world: World
) -> None:
    app.faults.add("todolists", "object", times=1)
    assert (await client.get("todolists.json")).json() == {}


async def test_wrong_types(app: SimulatorApp, client: httpx.AsyncClient, world: World) -> None:
    app.faults.add("projects", "wrong_types", times=1)
    (first, *_) = (await client.get("projects.json")).json()
    assert isinstance(first["id"], str)
    assert isinstance(first["updated_at"], int)


async def test_invalid_utf8(app: SimulatorApp, client: httpx.AsyncClient, world: World) -> None:
    app.faults.add("projects", "invalid_utf8", times=1)
    body = (await client.get("projects.json")).content
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")


async def test_huge_body(app: SimulatorApp, client: httpx.AsyncClient) -> None:
    app.faults.add("people", "huge", size=2_000_000, times=1)
    response = await client.get("people.json")
    assert response.status_code == 200
    assert len(response.content) >= 1_900_000
    assert isinstance(response.json(), list)


async def test_empty_body(app: SimulatorApp, client: httpx.AsyncClient) -> None:
    app.faults.add("people", "empty", times=1)
    response = await client.get("people.json")
    assert response.status_code == 200 and response.content == b""


async def test_stale_304_hides_a_change(
    app: SimulatorApp, client: httpx.AsyncClient, world: World
) -> None:
    path = f"projects/{world.project}.json"
    etag = (await client.get(path)).headers["ETag"]
    app.account.update_project(world.project, name="Changed")
    app.faults.add("projects", "stale_304", times=1)
    assert (await client.get(path, headers={"If-None-Match": etag})).status_code == 304
    assert (await client.get(path, headers={"If-None-Match": etag})).status_code == 200


async def test_etag_churn(app: SimulatorApp, client: httpx.AsyncClient, world: World) -> None:
    app.faults.add("projects", "etag_churn", times=2)
    a = await client.get("projects.json")
    b = await client.get("projects.json", headers={"If-None-Match": a.headers["ETag"]})
    assert b.status_code == 200
    assert a.headers["ETag"] != b.headers["ETag"]
    assert a.content == b.content


async def test_disconnect(app: SimulatorApp, any_client: httpx.AsyncClient) -> None:
    app.faults.add("people", "disconnect", times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        await any_client.get("people.json")
    assert (await any_client.get("people.json")).status_code == 200


async def test_delay_is_honoured(app: SimulatorApp, any_client: httpx.AsyncClient) -> None:
    app.faults.add("people", None, delay=0.3, times=1)
    started = time.monotonic()
    response = await any_client.get("people.json")
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


async def test_hang_until_client_timeout(app: SimulatorApp, any_client: httpx.AsyncClient) -> None:
    app.faults.add("people", None, hang=True, times=1)
    with pytest.raises(httpx.ReadTimeout):
        await any_client.get("people.json", timeout=0.3)
    assert (await any_client.get("people.json")).status_code == 200


async def test_delay_longer_than_read_timeout(app: SimulatorApp) -> None:
    app.faults.add("people", 503, delay=5, times=1)
    async with make_client("https://bcx.test", SimulatorTransport(app)) as c:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await c.get("people.json", timeout=0.2)
        assert time.monotonic() - started < 1


def test_unknown_kind_and_empty_fault_are_refused(app: SimulatorApp) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        app.faults.add("x", "gremlins")
    with pytest.raises(ValueError):
        app.faults.add("x")
    assert "truncated" in FAULT_KINDS
