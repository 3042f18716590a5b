from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from handlers.base import HandlerContext
from handlers.slack import SlackHandler, truncate_mrkdwn
from poller.errors import HandlerError, PermanentHandlerError
from tests.handlers._receiver import Receiver, Response

TOKEN_PATH = "/services/T0001/B0002/XXXXsecretXXXX"


def _handler(context: HandlerContext, url: str, **options: Any) -> SlackHandler:
    return SlackHandler(SlackHandler.Options(webhook_url=url, **options), context)


async def test_posts_readable_message(
    context: HandlerContext, event: dict[str, Any], http_receiver: Receiver
) -> None:
    handler = _handler(context, http_receiver.url + TOKEN_PATH)
    try:
        await handler.deliver(event)
    finally:
        await handler.aclose()
    [request] = http_receiver.requests
    assert request.path == TOKEN_PATH
    payload = json.loads(request.body)
    assert payload["text"] == (
        f"*Jason Fried* completed a to-do <{event['recording']['app_url']}|Design it> in *BCX*"
    )
    assert payload["unfurl_links"] is False


async def test_mrkdwn_is_escaped(
    context: HandlerContext, event: dict[str, Any], http_receiver: Receiver
) -> None:
    evil = {**event, "recording": {**event["recording"], "title": "<!channel> & <http://x|y>"}}
    handler = _handler(context, http_receiver.url + TOKEN_PATH)
    try:
        await handler.deliver(evil)
    finally:
        await handler.aclose()
    text = json.loads(http_receiver.requests[0].body)["text"]
    assert "<!channel>" not in text
    assert "|&lt;!channel&gt; &amp; &lt;http://x|y&gt;>" in text


async def test_custom_template(
    context: HandlerContext, event: dict[str, Any], http_receiver: Receiver
) -> None:
    handler = _handler(
        context,
        http_receiver.url + TOKEN_PATH,
        template="{{ kind }} by {{ who }} ({{ event.changes.completed[1] }})",
    )
    try:
        await handler.deliver(event)
    finally:
        await handler.aclose()
    assert json.loads(http_receiver.requests[0].body)["text"] == (
        "todo_completed by Jason Fried (True)"
    )


def test_bad_template_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="template error"):
        SlackHandler.Options(webhook_url="https://hooks.slack.test/x", template="{% if %}")
    with pytest.raises(ValidationError, match="unknown variable"):
        SlackHandler.Options(webhook_url="https://hooks.slack.test/x", template="{{ whoo }}")


async def test_long_message_is_truncated(
    context: HandlerContext, event: dict[str, Any], http_receiver: Receiver
) -> None:
    long = {**event, "recording": {**event["recording"], "title": "word " * 20_000}}
    handler = _handler(context, http_receiver.url + TOKEN_PATH)
    try:
        await handler.deliver(long)
    finally:
        await handler.aclose()
    text = json.loads(http_receiver.requests[0].body)["text"]
    assert len(text) <= 3000
    assert text.startswith("*Jason Fried* completed a to-do ")
    # the link keeps its URL and a shortened label
    assert text.endswith("word…>")  # shows as "…" in Slack
    assert f"<{event['recording']['app_url']}|word word" in text


def test_truncate_mrkdwn() -> None:
    assert truncate_mrkdwn("short", 10) == "short"
    assert truncate_mrkdwn("a" * 20, 10) == "a" * 9 + "…"
    assert truncate_mrkdwn("hello <https://x.test/aaaaaaa|label>", 20) == "hello…"
    cut = truncate_mrkdwn("hi <https://x.test/a|long label here>", 30)
    assert cut == "hi <https://x.test/a|long la…>"
    assert len(cut) == 30
    assert truncate_mrkdwn("hello &amp;&amp;&amp;", 14) == "hello &amp;…"
    assert len(truncate_mrkdwn("x" * 50_000, 40_000)) == 40_000


async def test_rate_limit_obeys_retry_after(
    context: HandlerContext, event: dict[str, Any], http_receiver: Receiver
) -> None:
    http_receiver.responses.append(Response(429, b"rate_limited", {"Retry-After": "30"}))
    handler = _handler(context, http_receiver.url + TOKEN_PATH)
    try:
        with pytest.raises(HandlerError) as info:
            await handler.deliver(event)
        await handler.deliver(event)
    finally:
        await handler.aclose()
    assert not isinstance(info.value, PermanentHandlerError)
    assert info.value.retry_after == 30
    assert len(http_receiver.requests) == 2


@pytest.mark.parametrize(
    ("status", "body"),
    [(404, b"channel_not_found"), (403, b"invalid_token"), (410, b"channel_is_archived")],
)
async def test_gone_channel_or_token_is_permanent(
    context: HandlerContext,
    event: dict[str, Any],
    http_receiver: Receiver,
    status: int,
    body: bytes,
) -> None:
    http_receiver.responses.append(Response(status, body))
    handler = _handler(context, http_receiver.url + TOKEN_PATH)
    try:
        with pytest.raises(PermanentHandlerError, match=body.decode()) as info:
            await handler.deliver(event)
    finally:
        await handler.aclose()
    assert "XXXXsecretXXXX" not in str(info.value)


async def test_server_error_retries(
    context: HandlerContext, event: dict[str, Any], http_receiver: Receiver
) -> None:
    http_receiver.responses.append(Response(503, b"unavailable"))
    handler = _handler(context, http_receiver.url + TOKEN_PATH)
    try:
        with pytest.raises(HandlerError, match="HTTP 503") as info:
            await handler.deliver(event)
    finally:
        await handler.aclose()
    assert not isinstance(info.value, PermanentHandlerError)


async def test_url_never_leaks(
    context: HandlerContext, event: dict[str, Any], http_receiver: Receiver
) -> None:
    # the receiver echoes the path back in its error body
    http_receiver.responses.append(Response(500, f"no route {TOKEN_PATH}".encode()))
    handler = _handler(context, http_receiver.url + TOKEN_PATH)
    try:
        with pytest.raises(HandlerError) as echoed:
            await handler.deliver(event)
    finally:
        await handler.aclose()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    refused = _handler(context, f"http://127.0.0.1:{port}{TOKEN_PATH}")
    try:
        with pytest.raises(HandlerError, match="cannot connect") as unreachable:
            await refused.deliver(event)
    finally:
        await refused.aclose()
    with pytest.raises(ValidationError) as invalid:
        SlackHandler.Options(webhook_url="ftp://hooks.slack.test" + TOKEN_PATH)
    texts = [str(echoed.value), str(unreachable.value), str(invalid.value)]
    texts += [repr(handler), repr(handler.options), str(handler.options)]
    for text in texts:
        assert "XXXXsecretXXXX" not in text, text


def test_url_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "slack-url"
    secret.write_text("https://hooks.slack.test/services/T/B/fromfile\n")
    options = SlackHandler.Options(webhook_url_file=str(secret))  # type: ignore[call-arg]
    assert (
        options.webhook_url.get_secret_value() == "https://hooks.slack.test/services/T/B/fromfile"
    )


async def test_long_plain_text_ends_with_ellipsis(
    context: HandlerContext, event: dict[str, Any], http_receiver: Receiver
) -> None:
    long = {**event, "summary": "a & b " * 2_000}
    handler = _handler(
        context, http_receiver.url + TOKEN_PATH, template="{{ summary|mrkdwn }}", max_length=500
    )
    try:
        await handler.deliver(long)
    finally:
        await handler.aclose()
    text = json.loads(http_receiver.requests[0].body)["text"]
    assert len(text) <= 500
    assert text.endswith("…")
    assert re.search(r"&[a-z]*$", text[:-1]) is None  # no entity cut in half
