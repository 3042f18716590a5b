"""Several projects of a first sync or full re-list in flight (`poll._relist`): the next
`max_in_flight` projects are fetched (their own GET, their section listings) while the
first one not done is diffed and committed. Over loopback to the real simulator, into
a real SQLite file:

* projects overlap, are committed one by one in their order, and no more than
  `1 + max_in_flight` are held at once (one at a time with `max_in_flight = 1`);
* the account's limiter keeps its budget in every window with several projects in
  flight, and a 429 with Retry-After holds back the requests of every project;
* an interrupt (a task cancelled, a failing GET in a project fetched ahead) leaves the
  projects not committed pending: the next run fetches only those, re-emits nothing in
  baseline mode, gives each record exactly one `*_created` in emit mode, and a failing
  listing never makes a false delete.

The SIGKILL / SIGTERM of a real `bcx-poller` half-way is tests/detection/test_streaming.py
(with the default `max_in_flight = 4` its later projects are in flight at the kill; the
last test here checks that they are).

As in tests/client/test_in_flight.py, overlap is read from the simulator's log: a
request delayed by a fault answers `delay` after it is logged.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from typing import Any

import pytest

from poller.accounts import open_account, run_cycle
from poller.config import parse_settings
from poller.ratelimit import RateLimiter
from poller.routing import router
from poller.simulator import LoggedRequest
from poller.store import Store
from tests.client.test_in_flight import most_started_within
from tests.conftest import Harness

PROJECT_DOC = r"/projects/\d+\.json$"
SECTION_LISTINGS = (
    r"/projects/\d+/(todolists|todos|topics|documents|attachments|calendar_events)"
    r"(/completed|/past)?\.json$"
)


def build(sim: Harness, projects: int, todos: int = 3) -> list[int]:
    a = sim.account
    out = []
    for n in range(projects):
        p = a.create_project(f"Project {n}")
        tl = a.create_todolist(p, f"List {n}")
        for m in range(todos):
            a.create_todo(tl, f"Todo {n}.{m}")
        a.create_document(p, f"Doc {n}", "text")
        out.append(p)
    return sorted(out)


def project_of(entry: LoggedRequest) -> int | None:
    found = re.search(r"/projects/(\d+)[/.]", entry.path)
    return int(found.group(1)) if found else None


def projects_requested(sim: Harness) -> set[int]:
    return {p for p in map(project_of, sim.app.log.entries) if p is not None}


def pending(sim: Harness) -> list[int]:
    relist = sim.store.account(sim.account.account_id).relist()
    return relist.projects if relist is not None else []


def todo_ids(sim: Harness) -> set[int]:
    return set(sim.store.records(sim.account.account_id, "Todo"))


def watch_commits(
    sim: Harness, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[list[int] | None, set[int]]]:
    """Every commit of the store: the projects still pending after it, and the projects
    any request had been sent for by then."""
    seen: list[tuple[list[int] | None, set[int]]] = []
    original = Store.commit_cycle

    def commit_cycle(self: Store, write: Any, route: Any) -> list[int]:
        relist = getattr(write, "relist", None)
        seen.append((list(relist.projects) if relist else None, projects_requested(sim)))
        return original(self, write, route)

    monkeypatch.setattr(Store, "commit_cycle", commit_cycle)
    return seen


@pytest.mark.parametrize("max_in_flight", [1, 4])
async def test_projects_overlap_commit_in_order_and_are_bounded(
    sim: Harness, monkeypatch: pytest.MonkeyPatch, max_in_flight: int
) -> None:
    sim.overrides["max_in_flight"] = max_in_flight
    projects = build(sim, 8)
    sim.app.faults.add(PROJECT_DOC, None, delay=0.15)
    sim.app.faults.add(SECTION_LISTINGS, None, delay=0.05)
    commits = watch_commits(sim, monkeypatch)
    report = await sim.cycle()
    assert report is not None and report.baseline, sim.last_runner.last_error

    # the re-list's commits: the projects listing, then one per project in their order
    relisted = [(rest, asked) for rest, asked in commits if rest is not None]
    assert [rest for rest, _ in relisted] == [projects] + [
        projects[n + 1 :] for n in range(len(projects))
    ]
    # bounded: when project n commits, requests went out for projects[: n + 1 + ahead]
    # at most (one at a time: only for those already done and this one)
    ahead = max_in_flight if max_in_flight > 1 else 0
    for n, (_, asked) in enumerate(relisted[1:]):
        assert asked <= set(projects[: n + 1 + ahead]), (n, asked)
    docs = sim.app.log.matching(PROJECT_DOC)
    if max_in_flight == 1:
        assert most_started_within(docs, 0.15) == 1
    else:
        # the project documents of several projects were in flight together
        assert most_started_within(docs, 0.15) == max_in_flight
    assert len(todo_ids(sim)) == 3 * len(projects)
    assert sim.new_events() == []


async def test_the_limiter_keeps_its_budget_with_several_projects_in_flight(
    sim: Harness,
) -> None:
    """A limiter of 10 requests per 1 s window (Basecamp's is 500 per 10 s; the same
    sliding window, shorter so the test is fast) over a first sync of 4 projects (~40
    requests): never 11 within a window, and several projects overlapping."""
    projects = build(sim, 4)
    settings = parse_settings(sim.config(max_in_flight=4))
    runner = open_account(settings.accounts[0], store=sim.store)
    runner.client.limiter = RateLimiter(10, 1.0)
    try:
        report = await run_cycle(runner, sim.store, settings.poller, router(settings.handlers))
    finally:
        await runner.aclose()
    assert report is not None, runner.last_error
    entries = sim.app.log.entries
    times = sorted(e.at for e in entries)
    assert len(times) > 30
    # any 11 consecutive requests span at least the window (less a margin for the trip
    # from the client's grant to the server's log)
    spans = [times[i + 10] - times[i] for i in range(len(times) - 10)]
    assert min(spans) >= 1.0 - 0.1, spans
    assert all(e.status == 200 for e in entries)
    # the budget, not the requests' order, set the pace: each window's ten went at once
    assert most_started_within(entries, 0.5) == 10
    # and requests of different projects were interleaved
    order = [p for p in map(project_of, sorted(entries, key=lambda e: e.at)) if p]
    assert order != sorted(order)
    assert len(todo_ids(sim)) == 3 * len(projects)


async def test_a_429_holds_back_the_requests_of_every_project(sim: Harness) -> None:
    projects = build(sim, 6)
    throttled_path = rf"/projects/{projects[1]}/todos\.json$"
    # project 2's to-dos listing: 429 + Retry-After 1, answered 0.2 s after it is logged;
    # every other request of a section or project answers 0.3 s late, so four requests
    # (of several projects) are on the wire when the 429 comes back and the others wait
    sim.app.faults.add(throttled_path, 429, retry_after=1, delay=0.2, times=1)
    sim.app.faults.add(SECTION_LISTINGS, None, delay=0.3)
    sim.app.faults.add(PROJECT_DOC, None, delay=0.3)
    report = await sim.cycle()
    assert report is not None, sim.last_runner.last_error
    log = sim.app.log.entries
    (throttled,) = [e for e in log if e.status == 429]
    answered = throttled.at + 0.2
    gate = answered + 1.0
    on_the_wire = [e for e in log if e is not throttled and throttled.at - 0.3 < e.at <= answered]
    after = [e for e in log if e.at > answered]
    # requests of other projects were in flight with it, and answered normally ...
    assert {project_of(e) for e in on_the_wire} - {projects[1]}
    assert all(e.status == 200 for e in on_the_wire)
    # ... and nothing of the account went out while the gate was shut
    assert [e for e in after if e.at < gate] == []
    # projects under way at the 429 (their own GET had gone) had requests held back:
    # not only the throttled project's requests waited for the gate
    under_way = {project_of(e) for e in log if e.at <= answered} - {None}
    held = {project_of(e) for e in after} & under_way
    assert held - {projects[1]}, (held, under_way)
    assert all(e.status == 200 for e in after)
    assert len(todo_ids(sim)) == 3 * len(projects)
    assert sim.new_events() == []


async def _wait_for(check: Any, limit: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


@pytest.mark.parametrize("mode", ["baseline", "emit"])
async def test_a_concurrent_first_sync_cancelled_half_way_resumes_with_the_projects_not_done(
    sim: Harness, mode: str
) -> None:
    """The cycle's task cancelled (as the daemon's shutdown does) while project 4's
    listing hangs and projects 5.. are fetched ahead of it."""
    sim.overrides["first_sync"] = mode
    projects = build(sim, 10)
    sim.app.faults.add(rf"/projects/{projects[3]}/todolists\.json", None, hang=True)
    task = asyncio.ensure_future(sim.cycle())
    await _wait_for(lambda: pending(sim) == projects[3:] and projects[4] in projects_requested(sim))
    await asyncio.sleep(0.2)  # let the projects fetched ahead get their answers
    fetched_ahead = projects_requested(sim) & set(projects[4:])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fetched_ahead, "no project was in flight ahead of the one hanging"
    # nothing of a project fetched ahead was committed: pending from the hanging one on
    assert pending(sim) == projects[3:]
    stored = {t for t, rec in sim.account.todos.items() if rec.project_id in projects[:3]}
    assert todo_ids(sim) == stored
    events_then = sim.events()

    sim.app.faults.clear()
    sim.app.log.clear()
    report = await sim.cycle()
    assert report is not None and report.baseline, sim.last_runner.last_error
    assert projects_requested(sim) == set(projects[3:])
    assert pending(sim) == []
    events = sim.events()
    if mode == "baseline":
        assert events == [] and events_then == []
    else:
        created = Counter((e["kind"], e["recording"]["id"]) for e in events)
        assert all(n == 1 for n in created.values()), created
        todos = todo_ids(sim)
        assert len(todos) == 3 * len(projects)
        assert {rid for (kind, rid) in created if kind == "todo_created"} == todos
    await sim.cycle(advance=4000)
    assert sim.events() == events


async def test_a_failing_listing_of_a_project_fetched_ahead_fails_only_from_it_on(
    sim: Harness,
) -> None:
    """A full re-list (every section) with silent changes on both sides of the cut; the
    to-dos listing of project 5 fails (cut JSON, not retried) while projects 1-4 are
    diffed and committed: those commit, nothing is trashed, project 5 on stays pending,
    and the next cycle gives its change once."""
    sim.overrides["reconcile_interval"] = 0  # every cycle re-lists
    sim.overrides["full_recheck_interval"] = 0  # every section, no validators
    projects = build(sim, 8)
    assert await sim.cycle() is not None
    sim.new_events()
    a = sim.account
    before = next(t for t in a.todos.values() if t.project_id == projects[1]).id
    after = next(t for t in a.todos.values() if t.project_id == projects[6]).id
    a.complete_todo(before, silent=True)
    a.complete_todo(after, silent=True)
    sim.app.faults.add(rf"/projects/{projects[4]}/todos\.json$", "truncated")
    sim.app.faults.add(PROJECT_DOC, None, delay=0.05)
    assert await sim.cycle() is None
    assert "BadResponse" in (sim.last_runner.last_error or "")
    first = [(e["kind"], e["recording"]["id"]) for e in sim.new_events()]
    assert first == [("todo_completed", before)]
    assert pending(sim) == projects[4:]
    assert len(todo_ids(sim)) == 3 * len(projects)  # nothing deleted

    sim.app.faults.clear()
    sim.app.log.clear()
    assert await sim.cycle() is not None, sim.last_runner.last_error
    assert set(projects[:4]).isdisjoint(project_of(e) for e in sim.app.log.matching(PROJECT_DOC))
    second = [(e["kind"], e["recording"]["id"]) for e in sim.new_events()]
    assert second == [("todo_completed", after)]
    assert pending(sim) == []
    await sim.cycle()
    assert sim.new_events() == []
