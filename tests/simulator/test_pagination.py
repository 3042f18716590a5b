"""Paginated listings render only the page asked for (issue 12 item 6), and answer exactly
what slicing the whole rendered collection answered before: same bytes, page by page."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from poller.simulator import Account, ManualClock, SimulatorApp, SimulatorTransport
from poller.simulator.render import Renderer
from tests.simulator.conftest import ACCOUNT_ID, make_client

BASE = "https://bcx.test"


@pytest.fixture
def busy() -> Account:
    """More than two pages of to-dos, feed events, topics and documents."""
    clock = ManualClock()
    account = Account(ACCOUNT_ID, clock=clock, seed=11)
    account.populate(
        projects=2, todos_per_project=130, messages=60, documents=60, people=3, events=True
    )
    for todo in list(account.todos.values())[:40]:
        clock.advance(1)
        if todo.completed_at is None:
            account.complete_todo(todo.id)
    return account


def full_rendering(account: Account, path: str) -> list[Any]:
    """What the endpoint lists, every item rendered, in the API's order: the old way
    (the whole collection, then a slice), written out here independently of the routes."""
    r = Renderer(account, BASE)
    project = account.live_projects()[0]
    docs = [d for p in account.live_projects() for d in account.project_items(p, "document")]
    pairs = [pair for p in account.live_projects() for pair in account.live_topics(p)]
    pairs.sort(key=lambda pair: (pair[1].updated_at, pair[0].id), reverse=True)
    build: dict[str, Callable[[], list[Any]]] = {
        "events.json": lambda: [r.event(e, bucket=True) for e in account.feed(None, None)],
        f"projects/{project.id}/events.json": lambda: [
            r.event(e) for e in account.feed(project, None)
        ],
        f"projects/{project.id}/todos.json": lambda: [
            r.todo(t) for t in account.project_todos(project, "all")
        ],
        "documents.json": lambda: [
            r.document(d, bucket=True)
            for d in sorted(docs, key=lambda d: (d.updated_at, d.id), reverse=True)
        ],
        "topics.json": lambda: [r.topic(t, item, bucket=True) for t, item in pairs],
    }
    return build[path]()


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def paths(account: Account) -> list[str]:
    pid = account.live_projects()[0].id
    return [
        "events.json",
        f"projects/{pid}/events.json",
        f"projects/{pid}/todos.json",
        "documents.json",
        "topics.json",
    ]


async def test_each_page_is_the_slice_of_the_full_rendering(busy: Account) -> None:
    app = SimulatorApp(busy)
    async with make_client(BASE, SimulatorTransport(app)) as client:
        for path in paths(busy):
            whole = full_rendering(busy, path)
            assert len(whole) > 100, path  # page 3 exists: the slices are not trivial
            for page in (1, 2, 3):
                reply = await client.get(path, params={"page": page})
                assert reply.status_code == 200, path
                expected = whole[(page - 1) * 50 : page * 50]
                assert reply.content == dumps(expected), f"{path} page {page}"
            past = await client.get(path, params={"page": len(whole) // 50 + 2})
            assert past.json() == []


async def test_a_feed_page_renders_fifty_events_not_the_whole_feed(
    busy: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = 0
    original = Renderer.event

    def counting(self: Renderer, event: Any, *, bucket: bool = False) -> Any:
        nonlocal rendered
        rendered += 1
        return original(self, event, bucket=bucket)

    monkeypatch.setattr(Renderer, "event", counting)
    total = len(busy.feed(None, None))
    assert total > 150
    app = SimulatorApp(busy)
    async with make_client(BASE, SimulatorTransport(app)) as client:
        reply = await client.get("events.json", params={"page": 2})
    assert len(reply.json()) == 50
    assert rendered == 50


async def test_a_conditional_page_still_answers_304(busy: Account) -> None:
    """The validators are computed from the page's bytes, as before."""
    app = SimulatorApp(busy)
    pid = busy.live_projects()[0].id
    async with make_client(BASE, SimulatorTransport(app)) as client:
        first = await client.get(f"projects/{pid}/todos.json", params={"page": 2})
        again = await client.get(
            f"projects/{pid}/todos.json",
            params={"page": 2},
            headers={"If-None-Match": first.headers["ETag"]},
        )
    assert first.status_code == 200
    assert again.status_code == 304
