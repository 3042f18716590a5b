"""Fixtures: a small account on a manual clock, its app, and httpx clients that reach it
either in-process (SimulatorTransport) or over loopback HTTP (serve)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from poller.simulator import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    Account,
    ManualClock,
    SimulatorApp,
    SimulatorTransport,
    account_base_url,
    serve,
)

UA = "bcx-poller-tests (ops@example.com)"
ACCOUNT_ID = 999_999_999


@dataclass
class World:
    """Ids of the things the `account` fixture creates."""

    jane: int
    project: int
    other_project: int
    todolist: int
    todo: int
    message: int
    document: int
    upload: int
    entry: int


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def account(clock: ManualClock) -> Account:
    return Account(ACCOUNT_ID, clock=clock, seed=7)


@pytest.fixture
def world(account: Account, clock: ManualClock) -> World:
    jane = account.add_person("Jane Doe", "jane@example.com")
    project = account.create_project("Launch", "Site launch")
    other = account.create_project("Ops")
    account.grant_access(project, jane)
    clock.advance(1)
    todolist = account.create_todolist(project, "Launch list", "What we need")
    todo = account.create_todo(todolist, "Design it", assignee=jane, due_on="2024-02-01")
    message = account.create_message(project, "Welcome!", "Hello there")
    document = account.create_document(project, "Manifesto", "Do this")
    upload = account.create_upload(project, "Logo", "logo.png", content_type="image/png")
    entry = account.create_calendar_event(project, "Launch day", "2024-03-01")
    clock.advance(1)
    return World(jane, project, other, todolist, todo, message, document, upload, entry)


@pytest.fixture
def app(account: Account) -> SimulatorApp:
    return SimulatorApp(account)


def make_client(base: str, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=account_base_url(base, ACCOUNT_ID) + "/",
        transport=transport,
        auth=(DEMO_USERNAME, DEMO_PASSWORD),
        headers={"User-Agent": UA},
        timeout=5.0,
    )


@pytest.fixture
async def client(app: SimulatorApp) -> AsyncIterator[httpx.AsyncClient]:
    """In-process client (no sockets)."""
    async with make_client("https://bcx.test", SimulatorTransport(app)) as c:
        yield c


@pytest.fixture(params=["transport", "loopback"])
async def any_client(
    request: pytest.FixtureRequest, app: SimulatorApp
) -> AsyncIterator[httpx.AsyncClient]:
    """The same tests through the in-process transport and over real loopback HTTP."""
    if request.param == "transport":
        async with make_client("https://bcx.test", SimulatorTransport(app)) as c:
            yield c
    else:
        with serve(app) as base:
            async with make_client(base) as c:
                yield c
