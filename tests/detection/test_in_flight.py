"""Several requests in flight change nothing that is detected (`[poller] max_in_flight`).

Over loopback to the real simulator, into real SQLite files:

* the model-based random walks (tests/detection/test_model_based.py, its oracle checked
  at every poll) give the very same events — ids, kinds, changes, times, sources, in
  the same outbox order — one request at a time and four at once;
* within a project's re-list the single GETs of listed items (comments moved) and the
  404 checks (items a complete listing lacks) overlap, while the pages of one listing
  are still read one after the other, each only once the previous one answered.

As in tests/client/test_in_flight.py, overlap is read from the simulator's log: a
request delayed by a fault answers `delay` after it is logged, so two requests logged
less than `delay` apart were in flight together.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from poller.simulator import LoggedRequest
from tests.client.test_in_flight import most_started_within
from tests.conftest import Harness
from tests.detection.test_model_based import walk as model_walk

TODO_GET = r"/projects/\d+/todos/\d+\.json$"
TODO_PAGES = r"/projects/\d+/todos\.json$"


def when(event: dict[str, Any]) -> str | None:
    """The event's time when Basecamp gave it (the simulator's clock is in 2024); a change
    no payload dates (a silent trash) takes the poller's clock, which no run repeats."""
    created: str = event["created_at"]
    return created if created.startswith("2024-") else None


async def walk(seed: int, tmp: Path, max_in_flight: int) -> list[tuple[Any, ...]]:
    """test_model_based's random walk (its oracle checked at every poll) at this
    `max_in_flight`; every event it committed, in outbox order."""
    _checked, events = await model_walk(
        seed, tmp, 8, most=10, overrides={"max_in_flight": max_in_flight}
    )
    return [(e["id"], e["kind"], e["changes"], when(e), e["source"], e["creator"]) for e in events]


@pytest.mark.parametrize("seed", range(3))
async def test_the_same_events_one_request_at_a_time_and_four_at_once(
    seed: int, tmp_path: Path
) -> None:
    one = await walk(seed, tmp_path / "one", max_in_flight=1)
    four = await walk(seed, tmp_path / "four", max_in_flight=4)
    assert len(one) > 20  # the walk did produce events to compare
    assert four == one


def pages(entries: list[LoggedRequest]) -> list[str | None]:
    return [e.query.get("page") for e in entries]


async def test_a_relist_overlaps_its_item_gets_and_keeps_a_listing_in_page_order(
    sim: Harness,
) -> None:
    a = sim.account
    project = a.create_project("Launch")
    todolist = a.create_todolist(project, "Everything")
    todos = [a.create_todo(todolist, f"To-do {n}") for n in range(120)]  # 3 pages
    assert await sim.cycle() is not None
    assert sim.new_events() == []
    # spread over the listing: the GETs overlap although other to-dos lie between them
    commented, trashed = todos[::24], todos[10::24]
    comments = [a.add_comment("todo", t, f"Note {t}", silent=True) for t in commented]
    for t in trashed:
        a.trash_todo(t, silent=True)
    sim.app.log.clear()
    sim.app.faults.add(TODO_GET, None, delay=0.3)
    sim.app.faults.add(TODO_PAGES, None, delay=0.2)
    assert await sim.cycle() is not None, sim.last_runner.last_error

    events = sim.new_events()
    assert sorted(
        (e["kind"], e["recording"]["id"], (e["details"].get("comment") or {}).get("id"))
        for e in events
    ) == sorted(
        [("comment_created", t, c) for t, c in zip(commented, comments, strict=True)]
        + [("todo_trashed", t, None) for t in trashed]
    )
    # the single GETs (comments moved, then the listing lacks five): four at once
    gets = sim.app.log.matching(TODO_GET)
    assert {int(e.path.rsplit("/", 1)[1].removesuffix(".json")) for e in gets} >= set(
        commented + trashed
    )
    assert most_started_within(gets, 0.3) == 4
    # the listing's pages: in order, each requested only after the previous answered
    listing = sim.app.log.matching(TODO_PAGES)
    assert pages(listing) == [None, "2", "3"]
    assert all(b.at - a.at >= 0.2 for a, b in itertools.pairwise(listing))
    # and a repeat re-list finds nothing more
    assert await sim.cycle() is not None
    assert sim.new_events() == []


SECTION_LISTINGS = (
    r"/projects/\d+/(todolists|todos|topics|documents|attachments|calendar_events)"
    r"(/completed|/past)?\.json$"
)


async def test_a_projects_section_listings_overlap_each_in_page_order(sim: Harness) -> None:
    a = sim.account
    project = a.create_project("Launch")
    todolist = a.create_todolist(project, "Everything")
    todos = [a.create_todo(todolist, f"To-do {n}") for n in range(120)]  # 3 pages
    doc = a.create_document(project, "Plan", "Text")
    sim.app.faults.add(SECTION_LISTINGS, None, delay=0.2)
    assert await sim.cycle() is not None, sim.last_runner.last_error  # the first sync
    listings = sim.app.log.matching(SECTION_LISTINGS)
    # the eight listings of the project's sections are started together, four at once
    # (each answers 0.2 s after it is logged) ...
    assert len({e.path for e in listings}) == 8
    assert most_started_within(listings, 0.2) == 4
    # ... while each listing's pages go one after the other
    todo_pages = [e for e in listings if e.path.endswith("/todos.json")]
    assert pages(todo_pages) == [None, "2", "3"]
    assert all(b.at - a.at >= 0.2 for a, b in itertools.pairwise(todo_pages))
    # and what was listed is all recorded, the same as one request at a time
    stored = sim.store.records(a.account_id, "Todo")
    assert sorted(stored) == sorted(todos)
    assert doc in sim.store.records(a.account_id, "Document")
