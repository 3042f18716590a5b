"""Several requests of one account in flight (`[poller] max_in_flight`), over loopback to
the real simulator, through the real cycle (`run_cycle`): the requests of a targeted
refetch overlap, never more than `max_in_flight` at once; the rate limiter still lets no
more than the account's budget through in any 10 s window; a 429 with Retry-After holds
back every sibling request of the account, not only the one that got it.

Nothing here measures speed (bench/ does): the assertions are on the simulator's log of
when each request reached it. A fault `delay` answers a request that long after the log
records it, so a request that starts less than `delay` after another one started was
sent while the other was still unanswered: that is overlap, whatever the machine's speed.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from poller.accounts import open_account, run_cycle
from poller.config import parse_settings
from poller.poll import CycleReport
from poller.routing import router
from poller.simulator import LoggedRequest
from tests.conftest import Harness

TODO_GET = r"/projects/\d+/todos/\d+\.json$"


async def completed_in_separate_lists(sim: Harness, count: int) -> list[int]:
    """`count` to-dos, each alone in its list (so each is one GET, never a list burst),
    recorded by a baseline; then each is completed: the next cycle's targeted refetch
    is `count` independent to-do GETs."""
    a = sim.account
    ann = a.add_person("Ann Able", "ann@example.com")
    project = a.create_project("Launch")
    todos = [
        a.create_todo(a.create_todolist(project, f"List {n}"), f"To-do {n}") for n in range(count)
    ]
    sim.overrides["reconcile_interval"] = 3600  # no re-list in the measured cycle
    report = await sim.cycle()
    assert report is not None and report.baseline
    assert sim.new_events() == []
    for todo in todos:
        a.complete_todo(todo, by=ann)
    sim.app.log.clear()
    return todos


def most_started_within(entries: list[LoggedRequest], seconds: float) -> int:
    """The most requests that reached the server within `seconds` of each other."""
    times = sorted(e.at for e in entries)
    return max(sum(1 for t in times if start <= t < start + seconds) for start in times)


def completed(events: list[dict[str, Any]]) -> list[int]:
    return sorted(e["recording"]["id"] for e in events if e["kind"] == "todo_completed")


@pytest.mark.parametrize("max_in_flight", [1, 4])
async def test_the_targeted_gets_overlap_up_to_max_in_flight(
    sim: Harness, max_in_flight: int
) -> None:
    todos = await completed_in_separate_lists(sim, 8)
    sim.overrides["max_in_flight"] = max_in_flight
    sim.app.faults.add(TODO_GET, None, delay=0.3)
    assert await sim.cycle() is not None, sim.last_runner.last_error
    gets = sim.app.log.matching(TODO_GET)
    assert len(gets) == 8 and all(e.status == 200 for e in gets)
    # each answer comes 0.3 s after its request is logged: requests logged less than
    # 0.3 s apart were in flight together. One at a time, never; at 4, four at once and
    # never a fifth.
    assert most_started_within(gets, 0.3) == max_in_flight
    assert completed(sim.new_events()) == sorted(todos)


async def test_a_429_holds_back_every_sibling_until_retry_after(sim: Harness) -> None:
    todos = await completed_in_separate_lists(sim, 8)
    # the first to-do GET that arrives: 429 + Retry-After: 1, answered 0.2 s after it is
    # logged; the others answer 0.5 s late, so the four first GETs are all in flight when
    # the 429 comes back, and the next ones are waiting for a slot
    sim.app.faults.add(TODO_GET, 429, retry_after=1, delay=0.2, times=1)
    sim.app.faults.add(TODO_GET, None, delay=0.5)
    assert await sim.cycle() is not None, sim.last_runner.last_error
    log = sim.app.log.entries
    (throttled,) = [e for e in log if e.status == 429]
    answered = throttled.at + 0.2  # the 429 left the server no earlier than this
    gate = answered + 1.0  # so the client's gate opened no earlier than this
    siblings = [e for e in log if e is not throttled and throttled.at <= e.at <= answered]
    after = [e for e in log if e.at > answered]
    # three siblings were already on the wire with it (they answer normally) ...
    assert len(siblings) == 3 and all(e.status == 200 for e in siblings)
    # ... and nothing of the account went out while the gate was shut: not the retry, not
    # the siblings that had been waiting for a slot
    assert [e for e in after if e.at < gate] == []
    assert len([e for e in after if re.search(TODO_GET, e.path)]) == 5
    assert all(e.status == 200 for e in after)
    assert completed(sim.new_events()) == sorted(todos)


@pytest.mark.slow
async def test_the_limiter_keeps_the_budget_in_every_10s_window_with_requests_in_flight(
    sim: Harness,
) -> None:
    """rate_limit = 3 per 10 s and five to-do GETs at max_in_flight 4 after the feed's
    page: three requests, then the other three ten seconds later, never four within 10 s
    (takes ~10 s: the window is the account's real one)."""
    todos = await completed_in_separate_lists(sim, 5)
    config = sim.config(max_in_flight=4)
    config["accounts"][0]["rate_limit"] = 3
    settings = parse_settings(config)
    runner = open_account(settings.accounts[0], store=sim.store)
    try:
        report: CycleReport | None = await run_cycle(
            runner, sim.store, settings.poller, router(settings.handlers)
        )
    finally:
        await runner.aclose()
    assert report is not None, runner.last_error
    times = sorted(e.at for e in sim.app.log.entries)
    assert len(times) == 6  # the feed page and five to-dos
    # any 4 consecutive requests span at least the 10 s window (less a margin for the
    # trip from the client's grant to the server's log)
    spans = [times[i + 3] - times[i] for i in range(len(times) - 3)]
    assert min(spans) >= 10.0 - 0.25, spans
    # and the limiter did not serialise them: three went together, twice
    assert most_started_within(sim.app.log.entries, 1.0) == 3
    assert runner.client.stats.requests == 6
    assert completed(sim.new_events()) == sorted(todos)


async def test_one_failing_get_among_siblings_fails_the_cycle_and_commits_nothing(
    sim: Harness,
) -> None:
    todos = await completed_in_separate_lists(sim, 8)
    account = sim.account.account_id
    cursor = sim.store.account(account).cursor
    sim.app.faults.add(TODO_GET, None, delay=0.3, times=3)
    sim.app.faults.add(TODO_GET, "truncated", times=1)  # the 4th to arrive: cut JSON
    assert await sim.cycle() is None
    assert "BadResponse" in (sim.last_runner.last_error or "")
    assert sim.store.account(account).cursor == cursor
    assert sim.new_events() == []
    # the next cycle reads it all again: every change exactly once
    assert await sim.cycle() is not None, sim.last_runner.last_error
    assert completed(sim.new_events()) == sorted(todos)
    assert await sim.cycle() is not None
    assert sim.new_events() == []


async def test_a_request_granted_before_a_429_waits_for_the_gate_before_it_is_sent(
    sim: Harness,
) -> None:
    """Two GETs in flight on a pool of one connection: the second is granted by the
    limiter at once, then waits for the pooled connection while the first is answered
    429 + Retry-After: 1. It must not go out when the connection frees (just after the
    429), but once the gate opens: the gate is checked again right before sending."""
    import httpx

    from poller.client import BasecampClient

    settings = parse_settings(sim.config())
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=1), follow_redirects=False)
    client = BasecampClient(settings.accounts[0], http, max_in_flight=2)
    sim.app.faults.add(r"/people\.json$", 429, retry_after=1, delay=0.2, times=1)
    try:
        import asyncio

        first = asyncio.ensure_future(client.get("/people.json"))
        await asyncio.sleep(0.05)  # the first holds the connection
        second = await client.get("/projects.json")
        await first
    finally:
        await http.aclose()
    log = sim.app.log.entries
    (throttled,) = [e for e in log if e.status == 429]
    after = [e for e in log if e.at > throttled.at]
    # the second GET and the first's retry: both after the gate opened
    assert len(after) == 2
    assert all(e.at >= throttled.at + 0.2 + 1.0 - 0.05 for e in after), [
        (e.path, round(e.at - throttled.at, 3)) for e in after
    ]
    assert not isinstance(second, type(None))
    assert client.stats.requests == 3  # the attempt held back was not counted as sent


async def test_a_free_slot_goes_to_the_waiting_request_of_the_lowest_priority(
    sim: Harness,
) -> None:
    """One slot: while a GET holds it, GETs of priority 3, 2, 1 queue up (in that order);
    they go out 1, 2, 3 (a re-list's oldest project first). Equal priorities: in order."""
    import asyncio

    from poller.accounts import http_client
    from poller.client import BasecampClient, request_priority

    settings = parse_settings(sim.config())
    http = http_client()
    client = BasecampClient(settings.accounts[0], http, max_in_flight=1)
    sim.app.faults.add(r"/people\.json$", None, delay=0.3, times=1)

    def get(path: str, priority: int) -> asyncio.Task[Any]:
        token = request_priority.set(priority)
        try:
            return asyncio.ensure_future(client.get(path))
        finally:
            request_priority.reset(token)

    try:
        holder = get("/people.json", 0)
        await asyncio.sleep(0.1)  # it holds the one slot
        queued = [
            get("/projects.json", 3),
            get("/projects/archived.json", 2),
            get("/events.json", 1),
            get("/people/me.json", 2),
        ]
        await asyncio.gather(holder, *queued)
    finally:
        await http.aclose()
    paths = [e.path.rsplit("/api/v1", 1)[-1] for e in sim.app.log.entries]
    assert paths == [
        "/people.json",
        "/events.json",
        "/projects/archived.json",
        "/people/me.json",
        "/projects.json",
    ]
