"""Personal routing of the `email` handler (issue 14 item 4): `to = "assignee" | "creator" |
"subscribers" | [addresses]`, resolved from the people stored in a real state database,
delivered to a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from handlers.base import HandlerContext
from handlers.email import EmailHandler
from poller.config import parse_settings
from poller.errors import ConfigError, HandlerError, PermanentHandlerError
from poller.people import StoredPeople
from poller.store import Store
from tests.conftest import Harness
from tests.delivery._support import FakeClock, commit, cycle, dispatcher, settings, sim_settings
from tests.handlers._people import (
    ANN,
    BOB,
    CAROL,
    GONE,
    NOMAIL,
    STRANGER,
    routed_event,
    store_people,
)
from tests.handlers._smtp import smtp_server

FROM = "bcx-poller <bot@example.test>"


@pytest.fixture
def people(tmp_path: Path) -> StoredPeople:
    return store_people(tmp_path / "state.db")


def _handler(context: HandlerContext, port: int, to: Any) -> EmailHandler:
    options = EmailHandler.Options(
        host="127.0.0.1", port=port, security="none", from_addr=FROM, to=to
    )
    return EmailHandler(options, context)


async def _send(
    context: HandlerContext, people: StoredPeople, to: Any, *events: dict[str, Any]
) -> list[tuple[str, list[str]]]:
    ctx = HandlerContext(name=context.name, state_dir=context.state_dir, people=people)
    with smtp_server() as (box, port):
        handler = _handler(ctx, port, to)
        try:
            for event in events:
                await handler.deliver(event)
        finally:
            await handler.aclose()
    return box.envelopes


async def test_to_the_assignee_at_the_stored_address(
    context: HandlerContext, people: StoredPeople
) -> None:
    with smtp_server() as (box, port):
        ctx = HandlerContext(name="test", state_dir=context.state_dir, people=people)
        handler = _handler(ctx, port, "assignee")
        await handler.deliver(routed_event())
    assert box.envelopes == [("bot@example.test", ["ann@example.test"])]
    [msg] = box.messages
    assert msg["To"] == "Ann Able <ann@example.test>"
    assert msg["Subject"] == "[BCX] Jason Fried completed a to-do: Design it"


async def test_to_the_creator(context: HandlerContext, people: StoredPeople) -> None:
    envelopes = await _send(context, people, ["creator"], routed_event())
    assert envelopes == [("bot@example.test", ["bob@example.test"])]


async def test_to_the_subscribers_each_once(context: HandlerContext, people: StoredPeople) -> None:
    event = routed_event(subscribers=(ANN, BOB, CAROL, ANN))
    envelopes = await _send(context, people, ["subscribers", "assignee"], event)
    assert envelopes == [
        ("bot@example.test", ["ann@example.test", "bob@example.test", "carol@example.test"])
    ]


async def test_a_list_mixes_addresses_and_people(
    context: HandlerContext, people: StoredPeople
) -> None:
    to = ["ops@example.test", "assignee", "creator", "ANN@example.test"]
    envelopes = await _send(context, people, to, routed_event())
    # fixed addresses first; Ann's stored address is the one given already (any case)
    assert envelopes == [
        ("bot@example.test", ["ops@example.test", "ANN@example.test", "bob@example.test"])
    ]


async def test_a_comment_goes_to_the_assignee_of_the_item_it_is_on(
    context: HandlerContext, people: StoredPeople
) -> None:
    event = routed_event(kind="comment_created", assignee=CAROL)
    envelopes = await _send(context, people, "assignee", event)
    assert envelopes == [("bot@example.test", ["carol@example.test"])]


@pytest.mark.parametrize(
    ("assignee", "reason"),
    [
        (
            STRANGER,
            "the assignee Sam Stranger (person 999): not among the people stored for account"
            " 999999999",
        ),
        (NOMAIL, "the assignee Nick No-Mail (person 104): no e-mail address in the stored people"),
        (GONE, "the assignee Gina Gone (person 105): removed from account 999999999"),
    ],
)
async def test_an_assignee_who_cannot_be_reached_is_a_permanent_error_saying_why(
    context: HandlerContext, people: StoredPeople, assignee: dict[str, Any], reason: str
) -> None:
    with pytest.raises(PermanentHandlerError) as info:
        await _send(context, people, "assignee", routed_event(assignee=assignee))
    assert str(info.value).startswith(f"email test: no recipient: {reason}")


async def test_someone_unreachable_among_others_is_left_out_with_a_warning(
    context: HandlerContext, people: StoredPeople, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    event = routed_event(subscribers=(ANN, STRANGER, CAROL))
    envelopes = await _send(context, people, "subscribers", event)
    assert envelopes == [("bot@example.test", ["ann@example.test", "carol@example.test"])]
    assert "not sent to a subscriber Sam Stranger (person 999)" in caplog.text


async def test_an_item_that_names_nobody_sends_nothing(
    context: HandlerContext, people: StoredPeople
) -> None:
    unassigned = routed_event(assignee=None)
    unassigned["details"]["record"]["assignee"] = {}  # Basecamp's "nobody"
    no_details = {**routed_event(), "details": {}}
    assert await _send(context, people, "assignee", unassigned, no_details) == []


async def test_the_assignee_a_change_names_when_the_record_does_not(
    context: HandlerContext, people: StoredPeople
) -> None:
    event = {**routed_event(), "details": {}, "kind": "todo_assignment_changed"}
    event["changes"] = {"assignee": [None, {"id": BOB["id"], "name": BOB["name"]}]}
    envelopes = await _send(context, people, "assignee", event)
    assert envelopes == [("bot@example.test", ["bob@example.test"])]


async def test_without_a_state_database_routing_says_so(context: HandlerContext) -> None:
    with smtp_server() as (box, port):
        handler = _handler(context, port, "assignee")  # context.people is None
        with pytest.raises(PermanentHandlerError, match=r"no stored people to look up"):
            await handler.deliver(routed_event())
    assert box.messages == []


async def test_an_unreadable_state_database_is_retried(
    context: HandlerContext, tmp_path: Path
) -> None:
    missing = StoredPeople(tmp_path / "nowhere" / "state.db")
    with pytest.raises(HandlerError, match="cannot read the stored people") as info:
        await _send(context, missing, "assignee", routed_event())
    assert not isinstance(info.value, PermanentHandlerError)


def test_the_lookup_is_read_only(people: StoredPeople) -> None:
    person = people.person(999999999, ANN["id"])
    assert person is not None and person.email == "ann@example.test"
    conn = people._open()
    with pytest.raises(Exception, match="readonly"):
        conn.execute("DELETE FROM records")


def test_preview_says_who_it_goes_to(context: HandlerContext) -> None:
    handler = _handler(context, 25, ["ops@example.test", "assignee"])
    text = handler.preview(routed_event())
    assert "to the assignee of the item too, resolved from the stored people" in text
    assert "To: ops@example.test" in text


# -- configuration ---------------------------------------------------------------------


def _settings(tmp_path: Path, watch: list[str] | None, **options: Any) -> Any:
    handler = {"name": "mail", "type": "email", "host": "127.0.0.1", "from_addr": FROM}
    poller: dict[str, Any] = {"state_path": str(tmp_path / "state.db")}
    if watch is not None:
        poller["watch"] = watch
    return parse_settings({"poller": poller, "handlers": [{**handler, **options}]})


def test_routing_needs_people_watched(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _settings(tmp_path, ["projects", "todos"], to=["ops@example.test", "assignee"])
    assert info.value.field == "handlers[0].to"
    assert "needs 'people' in [poller] watch" in info.value.reason
    _settings(tmp_path, ["people", "todos"], to="assignee")
    _settings(tmp_path, None, to="subscribers")  # watch left out: everything
    _settings(tmp_path, ["todos"], to=["ops@example.test"])  # fixed addresses need nothing


def test_to_words_and_addresses_are_checked(tmp_path: Path) -> None:
    s = _settings(tmp_path, None, to="assignee")
    assert s.handlers[0].options["to"] == "assignee"
    with pytest.raises(ConfigError, match=r"'asignee' is not an e-mail address") as info:
        _settings(tmp_path, None, to=["asignee"])
    assert info.value.field == "handlers[0].to"
    with pytest.raises(ConfigError, match=r"sends one mail per event: .* digest_minutes"):
        _settings(tmp_path, None, to=["creator"], digest_minutes=5)


# -- through the real Store and Dispatcher ------------------------------------------------


async def test_pipeline_mails_the_assignee_and_dead_letters_an_unknown_one(
    tmp_path: Path,
) -> None:
    with smtp_server() as (box, port):
        s = settings(
            tmp_path,
            f"""
[[handlers]]
name = "mail"
type = "email"
host = "127.0.0.1"
port = {port}
security = "none"
from_addr = "{FROM}"
to = "assignee"
""",
        )
        store_people(s.poller.state_path).close()
        store = Store(s.poller.state_path)
        try:
            events = [routed_event(n=1), routed_event(assignee=STRANGER, n=2)]
            commit(store, s, events)
            d = dispatcher(store, s, clock=FakeClock(time.time() + 1))
            assert await d.deliver_due() == 2
            await d.aclose()
            dead = store.deliveries(status=("dead",))
        finally:
            store.close()
    assert box.envelopes == [("bot@example.test", ["ann@example.test"])]
    assert [x.event["id"] for x in dead] == [events[1]["id"]]
    assert dead[0].last_error == (
        "permanent: email mail: no recipient: the assignee Sam Stranger (person 999): not among"
        " the people stored for account 999999999 (is `people` in [poller] watch? a new person"
        " is stored at the next re-list)"
    )


# -- end to end: the simulator's people, a real poll, the real SMTP server ------------------


async def test_from_a_real_poll_to_the_assignee_and_the_subscribers(sim: Harness) -> None:
    a = sim.account
    ann = a.add_person("Ann Able", "ann@example.test")
    bob = a.add_person("Bob Baker", "bob@example.test")
    chores = a.create_todolist(a.create_project("Garden"), "Chores")
    boss, owner = a.people[a.owner_id].name, a.people[a.owner_id].email_address

    with smtp_server() as (box, port):

        def mail(name: str, to: Any) -> dict[str, Any]:
            return {
                "name": name,
                "type": "email",
                "host": "127.0.0.1",
                "port": port,
                "security": "none",
                "from_addr": FROM,
                "to": to,
                "kinds": ["todo_created", "comment_created"],
            }

        s = sim_settings(sim, [mail("assignee", "assignee"), mail("subscribers", ["subscribers"])])
        await cycle(sim, s)  # the baseline stores the people
        todo = a.create_todo(chores, "Water the plants", assignee=ann)
        a.add_comment("todo", todo, "Tomorrow morning", by=bob)
        await cycle(sim, s)
        d = dispatcher(sim.store, s)
        try:
            await d.drain(within=1)
        finally:
            await d.aclose()
    assert sim.store.deliveries() == []  # nothing pending, nothing dead
    got = sorted((m["Subject"], m["To"]) for m in box.messages)
    assert got == [
        (
            "[Garden] Bob Baker commented on a to-do: Water the plants",
            "Ann Able <ann@example.test>",
        ),
        (
            "[Garden] Bob Baker commented on a to-do: Water the plants",
            f"{boss} <{owner}>, Bob Baker <bob@example.test>",
        ),
        (f"[Garden] {boss} created a to-do: Water the plants", "Ann Able <ann@example.test>"),
        (
            f"[Garden] {boss} created a to-do: Water the plants",
            f"{boss} <{owner}>, Bob Baker <bob@example.test>",
        ),
    ]
