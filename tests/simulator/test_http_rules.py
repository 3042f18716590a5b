"""The API's request rules, through the in-process transport and over loopback HTTP."""

from __future__ import annotations

import httpx

from poller.simulator import Account, ManualClock, SimulatorApp, SimulatorTransport
from tests.simulator.conftest import UA, World, make_client


async def test_missing_user_agent_is_400(any_client: httpx.AsyncClient, world: World) -> None:
    # httpx always sends its own User-Agent unless the header is removed explicitly.
    request = any_client.build_request("GET", "projects.json")
    del request.headers["User-Agent"]
    response = await any_client.send(request)
    assert response.status_code == 400
    ok = await any_client.get("projects.json")
    assert ok.status_code == 200


async def test_bad_credentials_are_401(any_client: httpx.AsyncClient, world: World) -> None:
    wrong = await any_client.get("projects.json", auth=("demo@example.com", "nope"))
    assert wrong.status_code == 401
    none = await any_client.get("projects.json", auth=None, headers={"Authorization": ""})
    assert none.status_code == 401
    bearer = await any_client.get(
        "projects.json", auth=None, headers={"Authorization": "Bearer unknown"}
    )
    assert bearer.status_code == 401


async def test_bearer_token_revocation(app: SimulatorApp, client: httpx.AsyncClient) -> None:
    app.credentials.add_token("tok-1")
    headers = {"Authorization": "Bearer tok-1"}
    assert (await client.get("people/me.json", auth=None, headers=headers)).status_code == 200
    app.credentials.revoke_token("tok-1")
    assert (await client.get("people/me.json", auth=None, headers=headers)).status_code == 401


async def test_token_expiry_follows_the_account_clock(
    app: SimulatorApp, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    app.credentials.add_token("short", expires_in=60)
    headers = {"Authorization": "Bearer short"}
    assert (await client.get("projects.json", auth=None, headers=headers)).status_code == 200
    clock.advance(61)
    assert (await client.get("projects.json", auth=None, headers=headers)).status_code == 401


async def test_non_json_path_is_415(any_client: httpx.AsyncClient, world: World) -> None:
    response = await any_client.get("projects.xml")
    assert response.status_code == 415
    assert (await any_client.get("projects")).status_code == 415


async def test_unknown_path_and_other_account_are_404(
    any_client: httpx.AsyncClient, world: World
) -> None:
    assert (await any_client.get("nonsense.json")).status_code == 404
    other = await any_client.get("/1234/api/v1/projects.json")
    assert other.status_code == 404


async def test_etag_then_304_on_single_resource(
    any_client: httpx.AsyncClient, world: World, account: Account, clock: ManualClock
) -> None:
    path = f"projects/{world.project}.json"
    first = await any_client.get(path)
    assert first.status_code == 200
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert etag.startswith('"') and etag.endswith('"')
    again = await any_client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    by_date = await any_client.get(path, headers={"If-Modified-Since": modified})
    assert by_date.status_code == 304
    clock.advance(5)
    account.create_todo(world.todolist, "New one")
    changed = await any_client.get(path, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    changed_by_date = await any_client.get(path, headers={"If-Modified-Since": modified})
    assert changed_by_date.status_code == 200


async def test_last_modified_moves_even_within_the_same_second(
    client: httpx.AsyncClient, world: World, account: Account
) -> None:
    path = f"projects/{world.project}/todolists.json"
    first = await client.get(path)
    modified = first.headers["Last-Modified"]
    account.update_todolist(world.todolist, name="Renamed")  # clock did not move
    second = await client.get(path, headers={"If-Modified-Since": modified})
    assert second.status_code == 200
    assert second.json()[0]["name"] == "Renamed"
    third = await client.get(path, headers={"If-Modified-Since": second.headers["Last-Modified"]})
    assert third.status_code == 304


async def test_validator_mix_per_endpoint(client: httpx.AsyncClient, world: World) -> None:
    both = await client.get(f"projects/{world.project}/todos/{world.todo}.json")
    assert "ETag" in both.headers and "Last-Modified" in both.headers
    etag_only = await client.get("projects.json")
    assert "ETag" in etag_only.headers and "Last-Modified" not in etag_only.headers
    people = await client.get("people.json")
    assert "ETag" in people.headers and "Last-Modified" not in people.headers
    lm_only = await client.get("todolists.json")
    assert "Last-Modified" in lm_only.headers and "ETag" not in lm_only.headers
    accesses = await client.get(f"projects/{world.project}/accesses.json")
    assert "Last-Modified" in accesses.headers and "ETag" not in accesses.headers
    assert both.headers["Cache-Control"] == "max-age=0, private, must-revalidate"


async def test_pagination_over_three_pages(
    any_client: httpx.AsyncClient, account: Account, world: World
) -> None:
    big = account.create_todolist(world.project, "Big")
    made = [account.create_todo(big, f"todo {i}") for i in range(120)]
    seen: list[int] = []
    sizes = []
    for page in (1, 2, 3, 4):
        r = await any_client.get(
            f"projects/{world.project}/todolists/{big}/todos.json", params={"page": page}
        )
        assert r.status_code == 200
        sizes.append(len(r.json()))
        seen.extend(item["id"] for item in r.json())
    assert sizes == [50, 50, 20, 0]
    assert seen == made


async def test_projects_and_people_ignore_page(
    any_client: httpx.AsyncClient, account: Account
) -> None:
    for i in range(60):
        account.create_project(f"P{i}", silent=True)
        account.add_person(f"Person {i}")
    one = (await any_client.get("projects.json")).json()
    two = (await any_client.get("projects.json", params={"page": 2})).json()
    assert len(one) == 60
    assert one == two
    people_two = (await any_client.get("people.json", params={"page": 2})).json()
    assert len(people_two) == 61  # the owner too


async def test_rate_limit_429_with_retry_after(account: Account, world: World) -> None:
    now = [100.0]
    app = SimulatorApp(account, rate_limit=3, rate_window=10, monotonic=lambda: now[0])
    async with make_client("https://bcx.test", SimulatorTransport(app)) as c:
        first = await c.get("projects.json")
        etag = first.headers["ETag"]
        # a 304 counts against the limit too
        assert (await c.get("projects.json", headers={"If-None-Match": etag})).status_code == 304
        now[0] += 4
        assert (await c.get("projects.json")).status_code == 200
        limited = await c.get("projects.json")
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "6"
        now[0] += 6
        assert (await c.get("projects.json")).status_code == 200
    assert [e.status for e in app.log] == [200, 304, 200, 429, 200]


async def test_request_log_records_headers_but_not_credentials(
    app: SimulatorApp, any_client: httpx.AsyncClient, world: World
) -> None:
    await any_client.get("projects.json", headers={"If-None-Match": '"abc"'})
    await any_client.get("events.json", params={"since": "2024-01-01T00:00:00+01:00"})
    first, second = app.log.entries
    assert first.user_agent == UA
    assert first.if_none_match == '"abc"'
    assert first.auth_scheme == "Basic"
    assert first.status == 200
    assert "demo" not in repr(first)
    assert second.path.endswith("/events.json")
    assert second.query == {"since": "2024-01-01T00:00:00+01:00"}
    assert second.at >= first.at
    assert len(app.log.matching(r"events\.json$", status=200)) == 1


async def test_writes_are_refused(any_client: httpx.AsyncClient) -> None:
    response = await any_client.post("projects.json", json={"name": "x"})
    assert response.status_code == 405
