"""Account behaviour seen through the API: summaries, trash, moves, snapshot, timestamps."""

from __future__ import annotations

import re
import time

import httpx

from poller.simulator import (
    Account,
    ManualClock,
    SimulatorApp,
    SimulatorTransport,
    SyncSimulatorTransport,
)
from tests.simulator.conftest import World, make_client

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$")


async def test_adding_a_todo_moves_the_section_summary(
    client: httpx.AsyncClient, account: Account, clock: ManualClock, world: World
) -> None:
    before = (await client.get(f"projects/{world.project}.json")).json()
    clock.advance(30)
    account.create_todo(world.todolist, "Another")
    after = (await client.get(f"projects/{world.project}.json")).json()
    assert after["updated_at"] > before["updated_at"]
    assert after["todolists"]["updated_at"] > before["todolists"]["updated_at"]
    assert after["todolists"]["remaining_count"] == before["todolists"]["remaining_count"] == 1
    assert after["documents"] == before["documents"]  # untouched section stays as it was
    lists = (await client.get(f"projects/{world.project}/todolists.json")).json()
    assert lists[0]["remaining_count"] == 2


async def test_empty_sections_have_null_updated_at(client: httpx.AsyncClient, world: World) -> None:
    empty = (await client.get(f"projects/{world.other_project}.json")).json()
    for section in ("attachments", "calendar_events", "documents", "topics", "todolists"):
        assert empty[section]["updated_at"] is None, section
    assert empty["topics"]["count"] == 0
    assert empty["accesses"]["count"] == 1 and empty["accesses"]["updated_at"] is not None
    full = (await client.get(f"projects/{world.project}.json")).json()
    assert full["topics"]["count"] == 1  # the message
    assert full["attachments"]["count"] == 1
    assert full["calendar_events"]["count"] == 1


async def test_completing_every_todo_completes_the_list(
    client: httpx.AsyncClient, account: Account, world: World
) -> None:
    account.complete_todo(world.todo)
    project = (await client.get(f"projects/{world.project}.json")).json()
    assert project["todolists"]["remaining_count"] == 0
    assert project["todolists"]["completed_count"] == 1
    done = (await client.get(f"projects/{world.project}/todolists/completed.json")).json()
    assert [t["id"] for t in done] == [world.todolist]
    assert (await client.get(f"projects/{world.project}/todolists.json")).json() == []


async def test_trashed_items_404_and_leave_lists(
    client: httpx.AsyncClient, account: Account, world: World
) -> None:
    p = world.project
    account.trash_todo(world.todo)
    account.trash_document(world.document)
    account.trash_upload(world.upload)
    account.trash_calendar_event(world.entry)
    account.trash_message(world.message)
    bodies = []
    for path in (
        f"projects/{p}/todos/{world.todo}.json",
        f"projects/{p}/documents/{world.document}.json",
        f"projects/{p}/uploads/{world.upload}.json",
        f"projects/{p}/calendar_events/{world.entry}.json",
        f"projects/{p}/messages/{world.message}.json",
    ):
        r = await client.get(path)
        assert r.status_code == 404, path
        bodies.append(r.content)
    assert b"" in bodies and b'{"status":"404","error":"Not Found"}' in bodies
    assert (await client.get(f"projects/{p}/todos.json")).json() == []
    assert (await client.get(f"projects/{p}/documents.json")).json() == []
    assert (await client.get("attachments.json")).json() == []
    assert (await client.get(f"projects/{p}/topics.json")).json() == []
    assert (await client.get(f"projects/{p}/calendar_events.json")).json() == []
    trashed = (
        await client.get(f"projects/{p}/todolists/{world.todolist}/todos/trashed.json")
    ).json()
    assert [t["id"] for t in trashed] == [world.todo]
    assert trashed[0]["trashed"] is True


async def test_trashed_list_and_project(
    client: httpx.AsyncClient, account: Account, world: World
) -> None:
    account.trash_todolist(world.todolist)
    assert (
        await client.get(f"projects/{world.project}/todos/{world.todo}.json")
    ).status_code == 404
    trashed = (await client.get("todolists/trashed.json")).json()
    assert [t["id"] for t in trashed] == [world.todolist]
    account.trash_project(world.project)
    assert (await client.get(f"projects/{world.project}.json")).status_code == 404
    ids = [p["id"] for p in (await client.get("projects.json")).json()]
    assert world.project not in ids and world.other_project in ids


async def test_archived_projects(client: httpx.AsyncClient, account: Account, world: World) -> None:
    account.archive_project(world.other_project)
    active = [p["id"] for p in (await client.get("projects.json")).json()]
    archived = (await client.get("projects/archived.json")).json()
    assert world.other_project not in active
    assert [p["id"] for p in archived] == [world.other_project]
    assert archived[0]["archived"] is True
    account.unarchive_project(world.other_project)
    assert (await client.get("projects/archived.json")).json() == []


async def test_moved_list_answers_301_from_the_old_project(
    any_client: httpx.AsyncClient, account: Account, world: World
) -> None:
    account.move_todolist(world.todolist, world.other_project)
    old = f"projects/{world.project}/todolists/{world.todolist}.json"
    moved = await any_client.get(old)
    assert moved.status_code == 301
    location = moved.headers["Location"]
    assert location.endswith(
        f"/projects/{world.other_project}/todolists/{world.todolist}.json?moved=true"
    )
    assert moved.headers["Content-Type"].startswith("text/html")
    followed = await any_client.get(old, follow_redirects=True)
    assert followed.status_code == 200
    assert followed.json()["id"] == world.todolist
    todo = await any_client.get(f"projects/{world.project}/todos/{world.todo}.json")
    assert todo.status_code == 301
    new_todo = await any_client.get(f"projects/{world.other_project}/todos/{world.todo}.json")
    assert new_todo.json()["id"] == world.todo
    assert (await any_client.get(f"projects/{world.project}/todos.json")).json() == []


async def test_slugged_people_urls(client: httpx.AsyncClient, world: World) -> None:
    people = (await client.get("people.json")).json()
    jane = next(p for p in people if p["id"] == world.jane)
    assert jane["url"].endswith(f"/people/{world.jane}-jane-doe.json")
    by_slug = await client.get(f"people/{world.jane}-jane-doe.json")
    assert by_slug.status_code == 200
    assert by_slug.json()["assigned_todos"]["count"] == 1
    me = (await client.get("people/me.json")).json()
    assert me["name"] == "Demo Owner"
    assert me["events"]["count"] >= 1


def test_snapshot_tracks_live_state(account: Account, world: World) -> None:
    snap = account.snapshot()
    assert snap[("todo", world.todo)]["content"] == "Design it"
    assert snap[("todo", world.todo)]["assignee_id"] == world.jane
    assert snap[("todo", world.todo)]["due_on"] == "2024-02-01"
    assert ("upload", world.upload) in snap and ("message", world.message) in snap
    comment = account.add_comment("todo", world.todo, "hi")
    account.trash_document(world.document)
    snap = account.snapshot()
    assert snap[("comment", comment)]["parent"] == ("todo", world.todo)
    assert snap[("todo", world.todo)]["comments_count"] == 1
    assert ("document", world.document) not in snap
    account.trash_todolist(world.todolist)
    snap = account.snapshot()
    assert ("todo", world.todo) not in snap and ("comment", comment) not in snap


def test_ids_are_deterministic_per_seed(clock: ManualClock) -> None:
    def build(seed: int) -> list[int]:
        acc = Account(clock=clock, seed=seed)
        project = acc.create_project("x")
        return [acc.owner_id, project, acc.create_todolist(project, "l")]

    assert build(3) == build(3)
    assert build(3) != build(4)
    assert all(i > 100_000_000 for i in build(3))


async def test_timestamps_render_with_milliseconds_and_offset(clock: ManualClock) -> None:
    for offset, suffix in (("-05:00", "-05:00"), ("Z", "Z"), ("+02:00", "+02:00")):
        acc = Account(clock=clock, offset=offset)
        acc.create_project("x")
        clock.advance(0.1234)
        app = SimulatorApp(acc)
        async with make_client("https://bcx.test", SimulatorTransport(app)) as c:
            (project,) = (await c.get("projects.json")).json()
        assert TIMESTAMP.match(project["updated_at"]), project["updated_at"]
        assert project["updated_at"].endswith(suffix)


def test_populate_is_fast_and_serves_fast(clock: ManualClock) -> None:
    acc = Account(clock=clock)
    started = time.perf_counter()
    projects = acc.populate(projects=20, todos_per_project=500, messages=3, documents=2)
    assert time.perf_counter() - started < 2.0
    assert len(projects) == 20
    assert sum(1 for key in acc.snapshot() if key[0] == "todo") == 10_000
    app = SimulatorApp(acc)
    sync_client = httpx.Client(
        transport=SyncSimulatorTransport(app),
        base_url="https://bcx.test/999999999/api/v1/",
        auth=("demo@example.com", "demo"),
        headers={"User-Agent": "bench (b@example.com)"},
    )
    with sync_client as c:
        started = time.perf_counter()
        for page in range(1, 11):
            r = c.get(f"projects/{projects[0]}/todos.json", params={"page": page})
            assert len(r.json()) == 50
        assert time.perf_counter() - started < 1.0


async def test_person_events_have_bucket_but_no_creator(
    client: httpx.AsyncClient, account: Account, world: World
) -> None:
    account.add_comment("todo", world.todo, "from jane", by=world.jane)
    events = (await client.get(f"people/{world.jane}-jane-doe/events.json")).json()
    assert [e["action"] for e in events] == ["commented on"]
    assert "creator" not in events[0] and events[0]["bucket"]["id"] == world.project
