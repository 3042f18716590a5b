"""Payload shapes follow the documented examples, quirks included."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from poller.simulator import Account
from tests.simulator.conftest import World

# shared/ lies beside the checkout (the repo root is parents[2])
EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "basecamp2" / "examples"


def _example_keys(name: str) -> set[str]:
    if not EXAMPLES.is_dir():
        pytest.skip("the documented example payloads are not available here")
    data = json.loads((EXAMPLES / name).read_text())
    return set((data[0] if isinstance(data, list) else data).keys())


async def test_open_todo_quirks(client: httpx.AsyncClient, account: Account, world: World) -> None:
    unassigned = account.create_todo(world.todolist, "Nobody's")
    todos = (await client.get(f"projects/{world.project}/todos.json")).json()
    by_id = {t["id"]: t for t in todos}
    open_todo = by_id[unassigned]
    assert open_todo["completed_at"] is False
    assert open_todo["completed"] is False
    assert open_todo["assignee"] == {}
    assert open_todo["due_at"] is None and open_todo["due_on"] is None
    assert open_todo["todolist_id"] == world.todolist
    assert open_todo["todolist"]["id"] == world.todolist
    assert open_todo["todolist"]["name"] == "Launch list"
    assigned = by_id[world.todo]
    assert assigned["assignee"] == {"id": world.jane, "type": "Person", "name": "Jane Doe"}
    assert assigned["due_on"] == assigned["due_at"] == "2024-02-01"
    assert "bucket" not in assigned


async def test_completed_todo_has_completer(
    client: httpx.AsyncClient, account: Account, world: World
) -> None:
    account.complete_todo(world.todo, by=world.jane)
    todo = (await client.get(f"projects/{world.project}/todos/{world.todo}.json")).json()
    assert isinstance(todo["completed_at"], str)
    assert todo["completer"] == {"id": world.jane, "name": "Jane Doe"}
    assert {"comments", "subscribers", "attachments"} <= set(todo)
    done = (await client.get(f"projects/{world.project}/todos/completed.json")).json()
    assert [t["id"] for t in done] == [world.todo]
    assert (await client.get(f"projects/{world.project}/todos/remaining.json")).json() == []
    account.uncomplete_todo(world.todo)
    again = (await client.get(f"projects/{world.project}/todos/{world.todo}.json")).json()
    assert again["completed_at"] is False and "completer" not in again


async def test_todolist_single_embeds_todos(
    client: httpx.AsyncClient, account: Account, world: World
) -> None:
    done = account.create_todo(world.todolist, "Done one")
    account.complete_todo(done)
    gone = account.create_todo(world.todolist, "Gone one")
    account.trash_todo(gone)
    account.add_comment("todolist", world.todolist, "+1")
    body = (await client.get(f"projects/{world.project}/todolists/{world.todolist}.json")).json()
    assert set(body["todos"]) == {"remaining", "completed", "trashed"}
    assert [t["id"] for t in body["todos"]["remaining"]] == [world.todo]
    assert [t["id"] for t in body["todos"]["completed"]] == [done]
    assert [t["id"] for t in body["todos"]["trashed"]] == [gone]
    assert body["todos"]["completed"][0]["completer"]["name"] == "Demo Owner"
    assert [c["content"] for c in body["comments"]] == ["+1"]
    assert body["subscribers"] == [{"id": account.owner_id, "name": "Demo Owner"}]
    assert body["completed_count"] == 1 and body["remaining_count"] == 1
    slim = await client.get(
        f"projects/{world.project}/todolists/{world.todolist}.json",
        params={"exclude_todos": "true"},
    )
    assert "todos" not in slim.json()


async def test_account_wide_lists_carry_bucket(client: httpx.AsyncClient, world: World) -> None:
    for path in ("todolists.json", "topics.json", "documents.json", "events.json"):
        items = (await client.get(path)).json()
        assert items, path
        assert all(i["bucket"]["id"] == world.project for i in items if "eventable" not in i)
        assert all(i["bucket"]["type"] == "Project" for i in items), path
    for path in (
        f"projects/{world.project}/todolists.json",
        f"projects/{world.project}/topics.json",
        f"projects/{world.project}/documents.json",
    ):
        assert all("bucket" not in i for i in (await client.get(path)).json()), path


async def test_topics_shape(client: httpx.AsyncClient, account: Account, world: World) -> None:
    account.add_comment("upload", world.upload, "Nice logo", by=world.jane)
    topics = (await client.get("topics.json")).json()
    assert len(topics) == 2
    newest = topics[0]
    assert newest["topicable"]["type"] == "Upload"
    assert newest["attachments"] == 1  # an integer count, not a list
    assert newest["excerpt"] == "Nice logo"
    assert newest["last_updater"] == {"id": world.jane, "name": "Jane Doe"}
    message_topic = topics[1]
    assert message_topic["id"] == world.message == message_topic["topicable"]["id"]
    assert message_topic["title"] == "Welcome!"
    assert set(message_topic) >= _example_keys("topics.json")


@pytest.mark.parametrize(
    ("example", "path"),
    [
        ("project.json", "projects/{p}.json"),
        ("projects.json", "projects.json"),
        ("todo.json", "projects/{p}/todos/{todo}.json"),
        ("todos.json", "projects/{p}/todos.json"),
        ("todolist.json", "projects/{p}/todolists/{list}.json"),
        ("todolists.json", "todolists.json"),
        ("message.json", "projects/{p}/messages/{message}.json"),
        ("document.json", "projects/{p}/documents/{document}.json"),
        ("documents.json", "documents.json"),
        ("upload.json", "projects/{p}/uploads/{upload}.json"),
        ("attachments.json", "attachments.json"),
        ("calendar_event.json", "projects/{p}/calendar_events/{entry}.json"),
        ("calendar_events.json", "projects/{p}/calendar_events.json"),
        ("people.json", "people.json"),
        ("person.json", "people/me.json"),
        ("accesses.json", "projects/{p}/accesses.json"),
        ("events.json", "projects/{p}/events.json"),
    ],
)
async def test_payload_has_every_example_key(
    client: httpx.AsyncClient, world: World, example: str, path: str
) -> None:
    url = path.format(
        p=world.project,
        todo=world.todo,
        list=world.todolist,
        message=world.message,
        document=world.document,
        upload=world.upload,
        entry=world.entry,
    )
    data = (await client.get(url)).json()
    item = data[0] if isinstance(data, list) else data
    missing = _example_keys(example) - set(item)
    if example == "events.json":
        missing -= {"attachments", "excerpt", "raw_excerpt"}  # only on comment events
    if example == "calendar_events.json":
        missing -= {"recurring"}  # the simulator has no recurring entries
    assert not missing, f"{url} lacks {sorted(missing)}"


async def test_attachment_shapes(client: httpx.AsyncClient, world: World) -> None:
    (attachment,) = (await client.get(f"projects/{world.project}/attachments.json")).json()
    assert attachment["name"] == "logo.png"
    assert attachment["content_type"] == "image/png"
    assert attachment["attachable"]["type"] == "Upload"
    assert attachment["attachable"]["id"] == world.upload
    single = await client.get(f"projects/{world.project}/attachments/{attachment['id']}.json")
    assert single.json() == attachment
    upload = (await client.get(f"projects/{world.project}/uploads/{world.upload}.json")).json()
    assert upload["attachments"][0]["key"] == attachment["key"]


async def test_calendar_upcoming_and_past(
    client: httpx.AsyncClient, account: Account, world: World
) -> None:
    past = account.create_calendar_event(world.project, "Kick-off", "2023-12-01")
    timed = account.create_calendar_event(
        world.project, "Standup", "2024-02-01T09:00:00-05:00", "2024-02-01T09:15:00-05:00"
    )
    upcoming = (await client.get(f"projects/{world.project}/calendar_events.json")).json()
    assert [e["id"] for e in upcoming] == [timed, world.entry]
    assert upcoming[0]["all_day"] is False
    assert upcoming[0]["starts_at"] == "2024-02-01T09:00:00.000-05:00"
    assert upcoming[1]["all_day"] is True and upcoming[1]["starts_at"] == "2024-03-01"
    gone = (await client.get(f"projects/{world.project}/calendar_events/past.json")).json()
    assert [e["id"] for e in gone] == [past]
