"""BasecampClient against the simulator over real loopback HTTP (poller.simulator.serve).

The simulator's rate-limit clock and the client's clock/sleep are the same fake clock,
so Retry-After waits are measured without really waiting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest

from poller.client import BasecampClient, Fetched, Listing, NotModified
from poller.config import AccountSettings
from poller.errors import NotFound
from poller.simulator import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    Account,
    ManualClock,
    SimulatorApp,
    account_base_url,
    serve,
)
from tests.client.fakes import FakeTime

ACCOUNT_ID = 999_999_999


@dataclass
class Sim:
    account: Account
    clock: ManualClock
    app: SimulatorApp
    time: FakeTime
    base_url: str

    @property
    def settings(self) -> AccountSettings:
        return AccountSettings(
            id=ACCOUNT_ID,
            base_url=account_base_url(self.base_url, ACCOUNT_ID),
            user_agent="bcx-poller client tests (ops@example.com)",
            username=DEMO_USERNAME,
            password=DEMO_PASSWORD,
        )

    @asynccontextmanager
    async def client(self) -> AsyncIterator[BasecampClient]:
        async with httpx.AsyncClient(timeout=5.0) as http:
            yield BasecampClient(
                self.settings,
                http,
                sleep=self.time.sleep,
                clock=self.time.clock,
                wall_clock=self.time.wall,
                jitter=lambda: 1.0,
            )


@pytest.fixture
def sim() -> Iterator[Sim]:
    clock = ManualClock()
    account = Account(ACCOUNT_ID, clock=clock, seed=3)
    fake = FakeTime()
    app = SimulatorApp(account, monotonic=fake.clock)
    with serve(app) as base_url:
        yield Sim(account, clock, app, fake, base_url)


async def test_validators_round_trip_and_304(sim: Sim) -> None:
    project = sim.account.create_project("Launch", "Site launch")
    async with sim.client() as client:
        first = await client.get(f"projects/{project}.json")
        assert isinstance(first, Fetched)
        assert first.data["id"] == project
        assert first.validators.etag and first.validators.last_modified
        again = await client.get(f"projects/{project}.json", validators=first.validators)
        assert isinstance(again, NotModified)
        sim.clock.advance(5)
        sim.account.update_project(project, name="Launch v2")
        changed = await client.get(f"projects/{project}.json", validators=first.validators)
        assert isinstance(changed, Fetched)
        assert changed.data["name"] == "Launch v2"
        assert changed.validators != first.validators
    assert client.stats.not_modified == 1
    sent = [r for r in sim.app.log if r.path.endswith(f"/projects/{project}.json")]
    assert sent[0].if_none_match is None
    assert sent[1].if_none_match == first.validators.etag


async def test_listing_with_last_modified_only_revalidates(sim: Sim) -> None:
    project = sim.account.create_project("Launch")
    sim.account.create_todolist(project, "A")
    async with sim.client() as client:
        first = await client.get_list(f"projects/{project}/todolists.json")
        assert isinstance(first, Listing)
        assert first.pages == 1
        assert first.validators is not None
        assert first.validators.etag is None
        assert first.validators.last_modified
        again = await client.get_list(
            f"projects/{project}/todolists.json", validators=first.validators
        )
    assert isinstance(again, NotModified)


async def test_pagination_over_three_pages(sim: Sim) -> None:
    sim.account.populate(projects=1, todos_per_project=120, todos_per_list=200, messages=0)
    projects = await _projects(sim)
    pid = projects[0]["id"]
    async with sim.client() as client:
        lists = await client.get_list(f"projects/{pid}/todolists.json")
        assert isinstance(lists, Listing)
        lid = lists.items[0]["id"]
        todos = await client.get_list(f"projects/{pid}/todolists/{lid}/todos.json")
    assert isinstance(todos, Listing)
    assert todos.pages == 3
    assert len(todos.items) == 120
    assert len({t["id"] for t in todos.items}) == 120
    assert todos.validators is None
    pages = [r.query.get("page") for r in sim.app.log if r.path.endswith(f"/{lid}/todos.json")]
    assert pages == [None, "2", "3"]


async def test_projects_listing_that_ignores_page_stops_on_echo(sim: Sim) -> None:
    sim.account.populate(
        projects=50, todos_per_project=0, messages=0, documents=0, calendar_events=0, people=1
    )
    async with sim.client() as client:
        listing = await client.get_list("projects.json")
    assert isinstance(listing, Listing)
    assert len(listing.items) == 50
    assert listing.pages == 2  # page 2 echoed page 1
    assert listing.validators is not None and listing.validators.etag


async def test_429_retry_after_is_obeyed_and_retried(sim: Sim) -> None:
    project = sim.account.create_project("Launch")
    sim.app.faults.add(r"projects\.json$", 429, retry_after=3, times=2)
    async with sim.client() as client:
        listing = await client.get_list("projects.json")
    assert isinstance(listing, Listing)
    assert [p["id"] for p in listing.items] == [project]
    log = [r for r in sim.app.log if r.path.endswith("/projects.json")]
    assert [r.status for r in log] == [429, 429, 200]
    assert log[1].at - log[0].at >= 3.0
    assert log[2].at - log[1].at >= 3.0
    assert client.stats.rate_limited == 2


async def test_server_rate_window_429s_are_waited_out(sim: Sim) -> None:
    sim.account.create_project("Launch")
    sim.app.set_rate_limit(3, window=10.0)
    async with sim.client() as client:
        for _ in range(7):
            assert isinstance(await client.get("projects.json"), Fetched)
    answered = [r for r in sim.app.log if r.status == 200]
    assert len(answered) == 7
    assert client.stats.rate_limited >= 1
    times = sorted(r.at for r in answered)
    for i in range(len(times) - 3):
        assert times[i + 3] - times[i] >= 10.0 - 1e-9


async def test_moved_item_redirect_reports_the_new_url(sim: Sim) -> None:
    a = sim.account.create_project("A")
    b = sim.account.create_project("B")
    lid = sim.account.create_todolist(a, "Moving list")
    sim.account.move_todolist(lid, b)
    async with sim.client() as client:
        res = await client.get(f"projects/{a}/todolists/{lid}.json")
    assert isinstance(res, Fetched)
    assert f"/projects/{b}/todolists/{lid}.json" in res.url
    assert "moved=true" in res.url
    assert res.data["id"] == lid


async def test_trashed_item_is_not_found(sim: Sim) -> None:
    project = sim.account.create_project("Launch")
    lid = sim.account.create_todolist(project, "Gone soon")
    sim.account.trash_todolist(lid)
    async with sim.client() as client:
        with pytest.raises(NotFound):
            await client.get(f"projects/{project}/todolists/{lid}.json")


async def _projects(sim: Sim) -> list[dict[str, object]]:
    async with sim.client() as client:
        listing = await client.get_list("projects.json")
    assert isinstance(listing, Listing)
    return listing.items
