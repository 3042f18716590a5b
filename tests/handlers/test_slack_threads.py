"""The `slack` handler's Web API mode: one thread per Basecamp item, against a local
stand-in for the Slack Web API (tests/handlers/_slack_api.py) and a real SQLite thread map."""

from __future__ import annotations

import json
import logging
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from handlers.base import HandlerContext
from handlers.registry import validate_handler_settings
from handlers.slack import SlackHandler
from poller.config import HandlerSettings
from poller.errors import ConfigError, HandlerError, PermanentHandlerError
from poller.events import sample_event
from poller.store import Store
from tests.delivery._support import FakeClock, commit, dispatcher, settings
from tests.handlers._slack_api import Failure, SlackAPI, slack_api

TOKEN = "xoxb-1111-2222-s3cretT0kenValue"


@pytest.fixture
def api() -> Iterator[SlackAPI]:
    with slack_api(TOKEN) as server:
        yield server


def _handler(context: HandlerContext, api: SlackAPI, **options: Any) -> SlackHandler:
    options = {"token": TOKEN, "channel": "#bcx", "api_url": api.url, **options}
    return SlackHandler(SlackHandler.Options(**options), context)


def _event(kind: str = "todo_completed", rid: int = 223304243, **changes: Any) -> dict[str, Any]:
    event = sample_event()
    event["kind"] = kind
    event["recording"] = {**event["recording"], "id": rid, "title": f"Item {rid}"}
    event["id"] = f"bcx_{kind}_{rid}_{len(changes)}"
    if changes:
        event["changes"] = changes
    return event


async def _deliver(handler: SlackHandler, *events: dict[str, Any]) -> None:
    try:
        for event in events:
            await handler.deliver(event)
    finally:
        await handler.aclose()


async def test_first_event_posts_a_parent_later_ones_reply_in_its_thread(
    context: HandlerContext, api: SlackAPI
) -> None:
    first = _event("todo_created")
    comment = _event("comment_created")
    comment["changes"] = {"comment": [None, {"content": "Ship it on Friday"}]}
    done = _event("todo_completed")
    await _deliver(_handler(context, api), first, comment, done)

    parent, reply1, reply2 = api.posts
    call = api.calls[0]
    assert call.method == "chat.postMessage"
    assert call.headers["authorization"] == f"Bearer {TOKEN}"
    assert call.headers["content-type"].startswith("application/json")
    assert parent["channel"] == "#bcx"
    assert "thread_ts" not in parent
    assert "reply_broadcast" not in parent
    assert parent["text"].startswith("*Jason Fried* ")
    assert "|Item 223304243>" in parent["text"]
    parent_ts = api.messages[0]["ts"]
    for reply in (reply1, reply2):
        assert reply["thread_ts"] == parent_ts
        assert reply["channel"] == "C0BCX"  # the id Slack answered for "#bcx"
        assert "reply_broadcast" not in reply
    # the reply has the same text as a parent would: the full message, changes included
    handler = _handler(context, api)
    try:
        assert reply1["text"] == handler.message(comment)["text"]
    finally:
        await handler.aclose()
    assert [m.get("thread_ts") for m in api.messages] == [None, parent_ts, parent_ts]


async def test_another_item_or_account_gets_its_own_thread(
    context: HandlerContext, api: SlackAPI
) -> None:
    a1, b1, a2, b2 = _event(rid=1), _event(rid=2), _event(rid=1), _event(rid=2)
    other_account = {**_event(rid=1), "account_id": 111}
    other_type = _event(rid=1)
    other_type["recording"] = {**other_type["recording"], "type": "Message"}
    await _deliver(_handler(context, api), a1, b1, a2, b2, other_account, other_type)
    ts = [m["ts"] for m in api.messages]
    threads = [m.get("thread_ts") for m in api.messages]
    assert threads == [None, None, ts[0], ts[1], None, None]
    assert len(set(ts)) == 6


async def test_reply_broadcast_only_for_the_kinds_listed(
    context: HandlerContext, api: SlackAPI
) -> None:
    events = [
        _event("todo_created"),
        _event("comment_created"),
        _event("todo_completed"),
        _event("todo_due_date_changed"),
        _event("todo_trashed"),
    ]
    handler = _handler(context, api, reply_broadcast=["todo_completed", "*_trashed"])
    await _deliver(handler, *events)
    broadcast = [p.get("reply_broadcast") for p in api.posts]
    assert broadcast == [None, None, True, None, True]
    assert all(p["thread_ts"] == api.messages[0]["ts"] for p in api.posts[1:])


async def test_a_parent_of_a_broadcast_kind_is_a_plain_parent(
    context: HandlerContext, api: SlackAPI
) -> None:
    await _deliver(_handler(context, api, reply_broadcast=["*"]), _event("todo_completed"))
    [parent] = api.posts
    assert "reply_broadcast" not in parent and "thread_ts" not in parent


async def test_threads_survive_a_restart(context: HandlerContext, api: SlackAPI) -> None:
    await _deliver(_handler(context, api), _event("todo_created"))
    parent_ts = api.messages[0]["ts"]
    path = context.state_dir / "slack-threads-test.db"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT handler, channel, account_id, recording_id, ts FROM threads")
        assert rows.fetchall() == [("test", "#bcx", "999999999", "223304243", parent_ts)]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)

    # a new instance, as after a restart: same state directory, same handler name
    await _deliver(_handler(context, api), _event("comment_created"), _event("todo_trashed"))
    assert [m.get("thread_ts") for m in api.messages] == [None, parent_ts, parent_ts]

    # another handler (its own name) or another channel has threads of its own
    other = HandlerContext(name="other", state_dir=context.state_dir)
    await _deliver(_handler(other, api), _event("todo_completed"))
    await _deliver(_handler(context, api, channel="C0OTHER"), _event("todo_completed"))
    assert [m.get("thread_ts") for m in api.messages[3:]] == [None, None]
    assert (context.state_dir / "slack-threads-other.db").exists()


async def test_a_thread_whose_parent_was_deleted_starts_again(
    context: HandlerContext, api: SlackAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    await _deliver(_handler(context, api), _event("todo_created"), _event("comment_created"))
    old_parent = api.messages[0]["ts"]
    api.delete(old_parent)  # someone deleted the parent in Slack

    handler = _handler(context, api, reply_broadcast=["todo_completed"])
    await _deliver(handler, _event("todo_completed"), _event("todo_due_date_changed"))
    # the reply was refused (thread_not_found), then posted as a new parent, which is
    # the item's thread from then on
    refused, new_parent, reply = api.posts[2:]
    assert refused["thread_ts"] == old_parent and refused["reply_broadcast"] is True
    assert "thread_ts" not in new_parent and "reply_broadcast" not in new_parent
    assert new_parent["channel"] == "#bcx" and new_parent["text"] == refused["text"]
    new_ts = api.messages[1]["ts"]  # [old reply, new parent, reply]
    assert reply["thread_ts"] == new_ts
    assert [m.get("thread_ts") for m in api.messages] == [old_parent, None, new_ts]
    assert _rows(context)[0][6] == new_ts
    assert "is gone (thread_not_found): posting a new parent" in caplog.text

    # after a restart too
    await _deliver(_handler(context, api), _event("todo_trashed"))
    assert api.messages[-1]["thread_ts"] == new_ts


async def test_a_deleted_parent_whose_new_parent_fails_is_retried(
    context: HandlerContext, api: SlackAPI
) -> None:
    await _deliver(_handler(context, api), _event("todo_created"))
    old_parent = api.messages[0]["ts"]
    api.delete(old_parent)
    handler = _handler(context, api)
    try:
        api.failures += [Failure("thread_not_found"), Failure("ratelimited", 429)]
        with pytest.raises(HandlerError, match="rate limited"):
            await handler.deliver(_event("todo_completed"))
        assert _rows(context)[0][6] == old_parent  # nothing posted: the map is as it was
        await handler.deliver(_event("todo_completed"))  # the retry: a new parent
    finally:
        await handler.aclose()
    assert [m.get("thread_ts") for m in api.messages] == [None]
    assert _rows(context)[0][6] == api.messages[0]["ts"] != old_parent


async def test_an_event_without_an_item_is_a_top_level_message(
    context: HandlerContext, api: SlackAPI
) -> None:
    bare = {**_event(), "recording": {}}
    await _deliver(_handler(context, api), bare, bare)
    assert [m.get("thread_ts") for m in api.messages] == [None, None]


@pytest.mark.parametrize(
    ("failure", "retry_after"),
    [
        (Failure("ratelimited", 429, {"Retry-After": "30"}), 30),
        (Failure(None, 429, {"Retry-After": "12"}), 12),
        (Failure("ratelimited", 200, {"Retry-After": "7"}), 7),
        (Failure("rate_limited", 200), None),
    ],
)
async def test_rate_limits_are_retried_after_retry_after(
    context: HandlerContext, api: SlackAPI, failure: Failure, retry_after: float | None
) -> None:
    handler = _handler(context, api)
    try:
        await handler.deliver(_event("todo_created"))
        api.failures.append(failure)
        with pytest.raises(HandlerError, match="rate limited") as info:
            await handler.deliver(_event("comment_created"))
        await handler.deliver(_event("comment_created"))  # the retry
    finally:
        await handler.aclose()
    assert not isinstance(info.value, PermanentHandlerError)
    assert info.value.retry_after == retry_after
    assert len(api.posts) == 3
    assert [m.get("thread_ts") for m in api.messages] == [None, api.messages[0]["ts"]]


async def test_rate_limited_parent_is_posted_once(context: HandlerContext, api: SlackAPI) -> None:
    api.failures.append(Failure("ratelimited", 429, {"Retry-After": "1"}))
    handler = _handler(context, api)
    try:
        with pytest.raises(HandlerError):
            await handler.deliver(_event("todo_created"))
        await handler.deliver(_event("todo_created"))
        await handler.deliver(_event("todo_completed"))
    finally:
        await handler.aclose()
    assert [m.get("thread_ts") for m in api.messages] == [None, api.messages[0]["ts"]]


@pytest.mark.parametrize(
    "error",
    ["channel_not_found", "not_in_channel", "invalid_auth", "account_inactive", "token_revoked"],
)
async def test_errors_no_retry_can_cure_are_permanent(
    context: HandlerContext, api: SlackAPI, error: str
) -> None:
    api.failures.append(Failure(error))
    handler = _handler(context, api)
    try:
        with pytest.raises(PermanentHandlerError) as info:
            await handler.deliver(_event())
    finally:
        await handler.aclose()
    assert str(info.value) == f"slack test: {error}"
    assert not (context.state_dir / "slack-threads-test.db").exists() or not _rows(context)


def _rows(context: HandlerContext) -> list[Any]:
    with sqlite3.connect(context.state_dir / "slack-threads-test.db") as db:
        return db.execute("SELECT * FROM threads").fetchall()


async def test_a_wrong_token_or_channel_is_refused_by_slack_for_good(
    context: HandlerContext, api: SlackAPI
) -> None:
    wrong = _handler(context, api, token="xoxb-not-the-right-one")
    with pytest.raises(PermanentHandlerError, match=r"invalid_auth$"):
        await _deliver(wrong, _event())
    nowhere = _handler(context, api, channel="#nowhere")
    with pytest.raises(PermanentHandlerError, match=r"channel_not_found$"):
        await _deliver(nowhere, _event())
    assert api.messages == []


async def test_other_slack_errors_are_retried_with_their_text(
    context: HandlerContext, api: SlackAPI
) -> None:
    api.failures.append(Failure("internal_error"))
    api.failures.append(Failure("service_unavailable", 503, {"Retry-After": "5"}))
    handler = _handler(context, api)
    try:
        with pytest.raises(HandlerError) as first:
            await handler.deliver(_event())
        with pytest.raises(HandlerError) as second:
            await handler.deliver(_event())
        await handler.deliver(_event())
    finally:
        await handler.aclose()
    assert not isinstance(first.value, PermanentHandlerError)
    assert str(first.value) == "slack test: internal_error"
    assert not isinstance(second.value, PermanentHandlerError)
    assert "HTTP 503" in str(second.value) and second.value.retry_after == 5
    assert len(api.messages) == 1


async def test_an_unusable_thread_map_fails_before_posting(tmp_path: Path, api: SlackAPI) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    handler = _handler(HandlerContext(name="test", state_dir=not_a_dir), api)
    with pytest.raises(HandlerError, match="thread map") as info:
        await _deliver(handler, _event())
    assert not isinstance(info.value, PermanentHandlerError)
    assert api.calls == []


async def test_probe_calls_auth_test(context: HandlerContext, api: SlackAPI) -> None:
    handler = _handler(context, api)
    try:
        said = await handler.probe()
    finally:
        await handler.aclose()
    assert said == f"token accepted by {api.url}: bcx-bot in Acme, posted nothing"
    assert [c.method for c in api.calls] == ["auth.test"]
    wrong = _handler(context, api, token="xoxb-wrong")
    try:
        with pytest.raises(HandlerError, match=r"auth\.test: invalid_auth"):
            await wrong.probe()
    finally:
        await wrong.aclose()
    assert api.messages == []


def test_preview_shows_the_parent_without_the_token(context: HandlerContext) -> None:
    handler = SlackHandler(
        SlackHandler.Options(token=TOKEN, channel="C0BCX", api_url="http://127.0.0.1:9/api"),
        context,
    )
    text = handler.preview(sample_event())
    assert text.startswith("POST http://127.0.0.1:9/api/chat.postMessage\n")
    assert "authorization: Bearer <the token>" in text
    assert TOKEN not in text
    payload = json.loads(text.split("\n\n")[1])
    assert payload["channel"] == "C0BCX" and "thread_ts" not in payload
    assert payload["text"].startswith("*Jason Fried* completed a to-do <")


# -- configuration ---------------------------------------------------------------------


def _config(**options: Any) -> Any:
    hs = HandlerSettings(name="h", type="slack", **options)
    return validate_handler_settings(hs, field="handlers[0]")


def test_exactly_one_of_webhook_url_and_token() -> None:
    with pytest.raises(ConfigError, match=r"webhook_url or token is required") as neither:
        _config(channel="C0BCX")
    with pytest.raises(ConfigError, match=r"either webhook_url .* or token .*not both") as both:
        _config(webhook_url="https://hooks.slack.test/services/T/B/x", token=TOKEN, channel="C1")
    assert neither.value.field == both.value.field == "handlers[0]"
    assert TOKEN not in str(both.value)
    with pytest.raises(ConfigError, match=r"give only one of token, token_env"):
        _config(token=TOKEN, token_env="SLACK_TOKEN", channel="C1")


def test_channel_goes_with_token_only() -> None:
    with pytest.raises(ConfigError, match="channel is required with token"):
        _config(token=TOKEN)
    with pytest.raises(ConfigError, match="channel goes with token"):
        _config(webhook_url="https://hooks.slack.test/services/T/B/x", channel="C1")
    with pytest.raises(ConfigError, match="reply_broadcast goes with token"):
        _config(webhook_url="https://hooks.slack.test/services/T/B/x", reply_broadcast=["*"])
    with pytest.raises(ConfigError, match=r"handlers\[0\]\.api_url: must be an http"):
        _config(token=TOKEN, channel="C1", api_url="ftp://slack.test/api")
    with pytest.raises(ConfigError, match=r"handlers\[0\]\.token: must be one word") as bad:
        _config(token="xoxb-with a-space", channel="C1")
    assert "a-space" not in str(bad.value)


def test_token_from_env_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BCX_TEST_SLACK_TOKEN", TOKEN)
    from_env = _config(token_env="BCX_TEST_SLACK_TOKEN", channel="C1")
    assert from_env.token.get_secret_value() == TOKEN
    secret = tmp_path / "slack-token"
    secret.write_text(TOKEN + "\n")
    from_file = _config(token_file=str(secret), channel="C1")
    assert from_file.token.get_secret_value() == TOKEN
    assert from_file.api_url == "https://slack.com/api"
    hs = HandlerSettings(name="h", type="slack", token=TOKEN, channel="C1")
    for text in (repr(hs), str(hs), repr(from_file), str(from_file)):
        assert TOKEN not in text
    with pytest.raises(ValidationError) as unset:
        SlackHandler.Options(token_env="BCX_TEST_UNSET_VARIABLE", channel="C1")  # type: ignore[call-arg]
    assert "BCX_TEST_UNSET_VARIABLE" in str(unset.value)


async def test_the_token_never_shows(
    context: HandlerContext, api: SlackAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    api.failures.append(Failure(f"invalid_auth for {TOKEN}"))  # a peer echoing it
    api.failures.append(Failure("ratelimited", 429, {"Retry-After": "3"}))
    api.failures.append(Failure("not_in_channel"))
    handler = _handler(context, api)
    try:
        for _ in range(3):
            with pytest.raises(HandlerError) as info:
                await handler.deliver(_event())
            texts += [str(info.value), repr(info.value)]
        await handler.deliver(_event())
        await handler.deliver(_event("comment_created"))
        texts += [await handler.probe(), handler.preview(_event()), repr(handler)]
        texts += [repr(handler.options), str(handler.options)]
    finally:
        await handler.aclose()
    assert texts[0] == "slack test: invalid_auth for <token>"
    texts.append(caplog.text)
    texts += [(context.state_dir / "slack-threads-test.db").read_bytes().decode("latin-1")]
    for text in texts:
        assert TOKEN not in text, text
        assert "s3cretT0ken" not in text, text


# -- through the real Store and Dispatcher ------------------------------------------------


async def test_pipeline_threads_retries_and_dead_letters(
    tmp_path: Path,
    api: SlackAPI,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    s = settings(
        tmp_path,
        f"""
[[handlers]]
name = "team"
type = "slack"
token = "{TOKEN}"
channel = "#bcx"
api_url = "{api.url}"
reply_broadcast = ["todo_completed"]
""",
    )
    clock = FakeClock(time.time() + 1)
    store = Store(s.poller.state_path)
    try:
        commit(store, s, [_event("todo_created"), _event("comment_created")])
        d = dispatcher(store, s, clock=clock)
        api.failures.append(Failure("ratelimited", 429, {"Retry-After": "40"}))
        assert await d.deliver_due() == 0
        [first] = store.deliveries(status=("pending",))[:1]
        assert first.next_at == clock.now + 40
        assert "ratelimited" in (first.last_error or "")
        clock.advance(41)
        assert await d.deliver_due() == 2
        await d.aclose()

        # restart: new targets over the same state directory keep the thread
        d = dispatcher(store, s, clock=clock)
        commit(store, s, [_event("todo_completed")])
        assert await d.deliver_due() == 1
        api.failures.append(Failure("channel_not_found"))
        commit(store, s, [_event("todo_trashed", rid=7)])
        assert await d.deliver_due() == 1  # dead-lettered: done with it
        await d.aclose()
        dead = store.deliveries(status=("dead",))
        assert [x.event["kind"] for x in dead] == ["todo_trashed"]
        assert dead[0].last_error == "permanent: slack team: channel_not_found"
    finally:
        store.close()
    parent = api.messages[0]["ts"]
    assert [m.get("thread_ts") for m in api.messages] == [None, parent, parent]
    assert [p.get("reply_broadcast") for p in api.posts] == [None, None, None, True, None]
    assert (tmp_path / "slack-threads-team.db").exists()
    logged = capsys.readouterr()
    assert "delivery_dead" in logged.out + logged.err + caplog.text  # the logs were seen
    for text in (logged.out, logged.err, caplog.text):
        assert TOKEN not in text
