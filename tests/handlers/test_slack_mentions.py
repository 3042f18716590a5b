"""`slack` `mention` (issue 14 item 4): the item's assignee / creator / subscribers
@-mentioned, Basecamp person -> stored e-mail address -> Slack user by
`users.lookupByEmail`, cached in memory and in the thread map's file; against the local
Slack Web API stand-in and people stored in a real state database."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handlers.base import HandlerContext
from handlers.slack import SlackHandler
from poller.config import parse_settings
from poller.errors import ConfigError, HandlerError, PermanentHandlerError
from poller.people import StoredPeople
from poller.store import Store
from tests.delivery._support import FakeClock, commit, dispatcher, settings
from tests.handlers._people import ANN, BOB, CAROL, NOMAIL, STRANGER, routed_event, store_people
from tests.handlers._slack_api import Failure, SlackAPI, slack_api

TOKEN = "xoxb-3333-4444-m3ntionT0kenValue"


@pytest.fixture
def api() -> Iterator[SlackAPI]:
    with slack_api(TOKEN) as server:
        yield server


@pytest.fixture
def ctx(tmp_path: Path, context: HandlerContext) -> HandlerContext:
    people: StoredPeople = store_people(tmp_path / "state.db")
    return HandlerContext(name="test", state_dir=context.state_dir, people=people)


def _handler(ctx: HandlerContext, api: SlackAPI, **options: Any) -> SlackHandler:
    options = {"token": TOKEN, "channel": "#bcx", "api_url": api.url, **options}
    return SlackHandler(SlackHandler.Options(**options), ctx)


async def _deliver(handler: SlackHandler, *events: dict[str, Any]) -> None:
    try:
        for event in events:
            await handler.deliver(event)
    finally:
        await handler.aclose()


def _first_lines(api: SlackAPI) -> list[str]:
    return [p["text"].split("\n")[0] for p in api.posts]


async def test_the_assignee_is_mentioned_looked_up_once(ctx: HandlerContext, api: SlackAPI) -> None:
    created = routed_event(kind="todo_created", n=1)
    comment = routed_event(kind="comment_created", n=2)
    await _deliver(_handler(ctx, api, mention="assignee"), created, comment)
    assert _first_lines(api) == [
        "*Jason Fried* created a to-do <https://basecamp.com/999999999/projects/605816632/todos/"
        "223304243|Design it> in *BCX* <@U0ANN>",
        "*Jason Fried* commented on a to-do <https://basecamp.com/999999999/projects/605816632/todos/"
        "223304243|Design it> in *BCX* <@U0ANN>",
    ]
    assert api.posts[1]["thread_ts"] == api.messages[0]["ts"]  # still one thread
    assert api.lookups == ["ann@example.test"]  # two events, one look-up
    [lookup] = [c for c in api.calls if c.method == "users.lookupByEmail"]
    assert lookup.headers["authorization"] == f"Bearer {TOKEN}"
    assert lookup.headers["content-type"] == "application/x-www-form-urlencoded"


async def test_the_slack_user_is_remembered_across_a_restart(
    ctx: HandlerContext, api: SlackAPI
) -> None:
    await _deliver(_handler(ctx, api, mention="assignee"), routed_event(n=1))
    with sqlite3.connect(ctx.state_dir / "slack-threads-test.db") as db:
        rows = db.execute("SELECT handler, email, user_id FROM users").fetchall()
    assert rows == [("test", "ann@example.test", "U0ANN")]
    # a new instance (a restart) over the same state directory asks Slack nothing
    await _deliver(_handler(ctx, api, mention="assignee"), routed_event(n=2))
    assert api.lookups == ["ann@example.test"]
    assert _first_lines(api)[1].endswith(" <@U0ANN>")
    # another handler keeps its own cache
    other = HandlerContext(name="other", state_dir=ctx.state_dir, people=ctx.people)
    await _deliver(_handler(other, api, mention="assignee"), routed_event(n=3))
    assert api.lookups == ["ann@example.test", "ann@example.test"]


async def test_several_roles_each_person_once(ctx: HandlerContext, api: SlackAPI) -> None:
    event = routed_event(assignee=BOB, creator=ANN, subscribers=(ANN, BOB))
    await _deliver(_handler(ctx, api, mention=["assignee", "creator", "subscribers"]), event)
    assert _first_lines(api)[0].endswith(" in *BCX* <@U0BOB> <@U0ANN>")
    assert api.lookups == ["bob@example.test", "ann@example.test"]


async def test_someone_slack_does_not_know_is_posted_without_a_mention_warned_once(
    ctx: HandlerContext, api: SlackAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    events = [routed_event(assignee=CAROL, n=1), routed_event(assignee=CAROL, n=2)]
    await _deliver(_handler(ctx, api, mention="assignee"), *events)
    assert len(api.messages) == 2
    assert all("<@" not in line for line in _first_lines(api))
    assert _first_lines(api)[0].endswith(" in *BCX*")
    assert api.lookups == ["carol@example.test"]  # not found: not asked again this run
    warnings = [r.getMessage() for r in caplog.records if "not mentioned" in r.getMessage()]
    assert warnings == [
        "slack test: not mentioned: Carol Cole (person 103): no Slack user has carol@example.test"
    ]
    with sqlite3.connect(ctx.state_dir / "slack-threads-test.db") as db:
        assert db.execute("SELECT count(*) FROM users").fetchone() == (0,)


async def test_someone_who_joins_slack_later_is_mentioned_an_hour_on(
    ctx: HandlerContext, api: SlackAPI
) -> None:
    handler = _handler(ctx, api, mention="assignee")
    try:
        await handler.deliver(routed_event(assignee=CAROL, n=1))
        api.users["carol@example.test"] = "U0CAROL"  # Carol joins Slack
        await handler.deliver(routed_event(assignee=CAROL, n=2))  # within the hour
        handler._unknown["carol@example.test"] -= 3601  # an hour on
        await handler.deliver(routed_event(assignee=CAROL, n=3))
    finally:
        await handler.aclose()
    assert api.lookups == ["carol@example.test", "carol@example.test"]
    assert [line.endswith("<@U0CAROL>") for line in _first_lines(api)] == [False, False, True]


async def test_a_deactivated_slack_user_is_not_mentioned(
    ctx: HandlerContext, api: SlackAPI
) -> None:
    api.deactivated.add("U0ANN")
    await _deliver(_handler(ctx, api, mention="assignee"), routed_event())
    assert "<@" not in _first_lines(api)[0]


@pytest.mark.parametrize(
    ("assignee", "why"),
    [
        (STRANGER, "not among the people stored for account 999999999"),
        (NOMAIL, "no e-mail address in the stored people"),
    ],
)
async def test_a_person_without_an_address_is_posted_without_a_mention(
    ctx: HandlerContext,
    api: SlackAPI,
    caplog: pytest.LogCaptureFixture,
    assignee: dict[str, Any],
    why: str,
) -> None:
    caplog.set_level(logging.WARNING)
    events = [routed_event(assignee=assignee, n=1), routed_event(assignee=assignee, n=2)]
    await _deliver(_handler(ctx, api, mention="assignee"), *events)
    assert len(api.messages) == 2 and api.lookups == []
    warned = [r.getMessage() for r in caplog.records if "not mentioned" in r.getMessage()]
    assert len(warned) == 1 and why in warned[0]


async def test_an_unassigned_item_mentions_nobody(ctx: HandlerContext, api: SlackAPI) -> None:
    await _deliver(_handler(ctx, api, mention="assignee"), routed_event(assignee=None))
    assert _first_lines(api)[0].endswith(" in *BCX*") and api.lookups == []


async def test_lookup_errors_are_delivery_errors_before_anything_is_posted(
    ctx: HandlerContext, api: SlackAPI
) -> None:
    handler = _handler(ctx, api, mention="assignee")
    try:
        api.failures.append(Failure("ratelimited", 429, {"Retry-After": "20"}))
        with pytest.raises(HandlerError, match=r"users\.lookupByEmail: ratelimited") as limited:
            await handler.deliver(routed_event())
        api.failures.append(Failure("missing_scope"))
        with pytest.raises(PermanentHandlerError) as scope:
            await handler.deliver(routed_event())
        assert api.messages == []
        await handler.deliver(routed_event())  # the retry
    finally:
        await handler.aclose()
    assert not isinstance(limited.value, PermanentHandlerError)
    assert limited.value.retry_after == 20
    assert str(scope.value) == (
        "slack test: users.lookupByEmail: missing_scope (mention needs the bot token scope"
        " users:read.email)"
    )
    assert len(api.messages) == 1 and _first_lines(api)[0].endswith("<@U0ANN>")


async def test_a_wrong_token_is_refused_for_the_lookup_too(
    ctx: HandlerContext, api: SlackAPI
) -> None:
    handler = _handler(ctx, api, mention="assignee", token="xoxb-not-the-right-one")
    with pytest.raises(PermanentHandlerError, match=r"users\.lookupByEmail: invalid_auth$"):
        await _deliver(handler, routed_event())
    assert api.messages == []


def test_preview_says_who_is_mentioned(ctx: HandlerContext, api: SlackAPI) -> None:
    handler = _handler(ctx, api, mention="assignee")
    assert "with the item's assignee @-mentioned" in handler.preview(routed_event())
    assert api.calls == []


# -- configuration ---------------------------------------------------------------------


def _settings(tmp_path: Path, watch: list[str] | None, **options: Any) -> Any:
    handler = {"name": "chat", "type": "slack", **options}
    poller: dict[str, Any] = {"state_path": str(tmp_path / "state.db")}
    if watch is not None:
        poller["watch"] = watch
    return parse_settings({"poller": poller, "handlers": [handler]})


def test_mention_needs_people_watched_and_the_web_api(tmp_path: Path) -> None:
    web = {"token": TOKEN, "channel": "C1"}
    with pytest.raises(ConfigError) as unwatched:
        _settings(tmp_path, ["todos"], mention="assignee", **web)
    assert unwatched.value.field == "handlers[0].mention"
    assert "needs 'people' in [poller] watch" in unwatched.value.reason
    hook = {"webhook_url": "https://hooks.slack.test/services/T/B/x"}
    with pytest.raises(ConfigError, match="mention goes with token"):
        _settings(tmp_path, None, mention="assignee", **hook)
    with pytest.raises(ConfigError, match=r"unknown 'owner'; known: assignee, creator") as bad:
        _settings(tmp_path, None, mention=["assignee", "owner"], **web)
    assert bad.value.field == "handlers[0].mention"
    s = _settings(tmp_path, ["people", "todos"], mention=["creator"], **web)
    assert s.handlers[0].options["mention"] == ["creator"]
    assert TOKEN not in str(unwatched.value) + str(bad.value)
    assert ANN  # the people the other tests mention


# -- through the real Store and Dispatcher ------------------------------------------------


async def test_pipeline_mentions_from_the_people_of_the_state_database(
    tmp_path: Path, api: SlackAPI
) -> None:
    s = settings(
        tmp_path,
        f"""
[[handlers]]
name = "team"
type = "slack"
token = "{TOKEN}"
channel = "#bcx"
api_url = "{api.url}"
mention = "assignee"
""",
    )
    store_people(s.poller.state_path).close()
    store = Store(s.poller.state_path)
    try:
        commit(store, s, [routed_event(n=1), routed_event(kind="comment_created", n=2)])
        d = dispatcher(store, s, clock=FakeClock(time.time() + 1))
        assert await d.deliver_due() == 2
        await d.aclose()
    finally:
        store.close()
    assert [line.endswith(" <@U0ANN>") for line in _first_lines(api)] == [True, True]
    assert api.lookups == ["ann@example.test"]
    assert [m.get("thread_ts") for m in api.messages] == [None, api.messages[0]["ts"]]
