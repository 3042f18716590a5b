"""The activity feed: ordering, `since` parsing and filtering, paging, silent changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import httpx

from poller.simulator import Account, ManualClock
from tests.simulator.conftest import World


async def test_newest_first_with_bucket_and_creator(
    any_client: httpx.AsyncClient, world: World
) -> None:
    events = (await any_client.get("events.json")).json()
    stamps = [e["created_at"] for e in events]
    assert stamps == sorted(stamps, reverse=True)
    assert events[0]["eventable"]["type"] == "CalendarEvent"
    assert events[-1]["action"] == "created the project"
    for event in events:
        assert set(event["creator"]) == {"id", "name", "avatar_url", "fullsize_avatar_url"}
        assert event["bucket"]["type"] == "Project"
        assert event["url"] == event["eventable"]["url"]
    project_events = (await any_client.get(f"projects/{world.project}/events.json")).json()
    assert project_events and all("bucket" not in e for e in project_events)


async def test_since_filters_strictly_after_with_encoded_offsets(
    any_client: httpx.AsyncClient, account: Account, clock: ManualClock, world: World
) -> None:
    newest = (await any_client.get("events.json")).json()[0]["created_at"]
    # The cursor itself: nothing newer yet, so [] (strictly after).
    assert (await any_client.get("events.json", params={"since": newest})).json() == []
    clock.advance(0.25)
    account.complete_todo(world.todo)
    # the same instant written with a '+' offset, which httpx encodes as %2B
    instant = datetime.fromisoformat(newest).astimezone(timezone(timedelta(hours=2)))
    plus = instant.isoformat(timespec="milliseconds")
    assert "+02:00" in plus
    fresh = (await any_client.get("events.json", params={"since": plus})).json()
    assert [e["action"] for e in fresh] == ["completed a to-do"]
    assert fresh[0]["eventable"]["id"] == world.todo
    zulu = instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    assert len((await any_client.get("events.json", params={"since": zulu})).json()) == 1
    whole_seconds = instant.strftime("%Y-%m-%dT%H:%M:%S%z")  # no fraction, +0200
    assert len((await any_client.get("events.json", params={"since": whole_seconds})).json()) == 1


async def test_unencoded_plus_is_rejected(any_client: httpx.AsyncClient, world: World) -> None:
    # A client that concatenates the query string sends a raw '+', which decodes as ' '.
    raw = await any_client.get("events.json?since=2024-01-15T13:00:00+01:00")
    assert raw.status_code == 400
    assert "%2B" in raw.json()["error"]
    encoded = await any_client.get("events.json?since=2024-01-15T13:00:00%2B01:00")
    assert encoded.status_code == 200


async def test_feed_pages_of_fifty(
    any_client: httpx.AsyncClient, account: Account, clock: ManualClock, world: World
) -> None:
    baseline = (await any_client.get("events.json")).json()[0]["created_at"]
    clock.advance(1)
    for i in range(120):
        account.create_todo(world.todolist, f"bulk {i}")
        clock.advance(0.001)
    pages = []
    for page in (1, 2, 3, 4):
        r = await any_client.get("events.json", params={"since": baseline, "page": page})
        pages.append(r.json())
    assert [len(p) for p in pages] == [50, 50, 20, 0]
    targets = [e["target"] for p in pages for e in p]
    assert targets == [f"bulk {i}" for i in reversed(range(120))]


async def test_silent_mutations_leave_no_event(
    client: httpx.AsyncClient, account: Account, clock: ManualClock, world: World
) -> None:
    since = (await client.get("events.json")).json()[0]["created_at"]
    clock.advance(1)
    account.trash_todo(world.todo, silent=True)
    account.create_todo(world.todolist, "quiet one", silent=True)
    account.archive_project(world.other_project, silent=True)
    assert (await client.get("events.json", params={"since": since})).json() == []
    # ...but the state did change
    todos = (await client.get(f"projects/{world.project}/todos.json")).json()
    assert [t["content"] for t in todos] == ["quiet one"]
    account.trash_document(world.document)
    noisy = (await client.get("events.json", params={"since": since})).json()
    assert [e["action"] for e in noisy] == ["deleted a document"]


async def test_comment_event_shape(
    client: httpx.AsyncClient, account: Account, clock: ManualClock, world: World
) -> None:
    since = (await client.get("events.json")).json()[0]["created_at"]
    clock.advance(1)
    comment = account.add_comment(
        "calendar_event", world.entry, "I'll be there! <b>", by=world.jane
    )
    (event,) = (await client.get("events.json", params={"since": since})).json()
    assert event["action"] == "commented on"
    assert event["target"] == "Launch day"
    assert event["attachments"] == []
    assert event["excerpt"] == "I&#39;ll be there! &lt;b&gt;"
    assert event["raw_excerpt"] == event["excerpt"]
    assert event["html_url"].endswith(f"/calendar_events/{world.entry}#comment_{comment}")
    assert event["creator"]["name"] == "Jane Doe"
    assert event["eventable"] == {
        "id": world.entry,
        "type": "CalendarEvent",
        "url": f"https://bcx.test/999999999/api/v1/projects/{world.project}/calendar_events/{world.entry}.json",
        "app_url": f"https://bcx.test/999999999/projects/{world.project}/calendar_events/{world.entry}",
    }


async def test_action_markup_and_summary(client: httpx.AsyncClient, world: World) -> None:
    events = (await client.get("events.json")).json()
    created_list = next(e for e in events if e["eventable"]["type"] == "Todolist")
    assert created_list["action"] == "created a to-do list<span>:</span>"
    assert created_list["summary"] == "created a to-do list: Launch list"


async def test_trashed_project_events_leave_the_global_feed(
    client: httpx.AsyncClient, account: Account, world: World
) -> None:
    account.trash_project(world.project, silent=True)
    events = (await client.get("events.json")).json()
    assert events and all(e["bucket"]["id"] != world.project for e in events)
    assert (await client.get(f"projects/{world.project}/events.json")).status_code == 404
