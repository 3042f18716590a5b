from __future__ import annotations

import base64
import json
import os
import socket
import time
from email.utils import formatdate
from typing import Any

import pytest
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from handlers._http import parse_retry_after, redact_url
from handlers.base import HandlerContext
from handlers.webhook import WebhookHandler
from poller.errors import HandlerError, PermanentHandlerError
from tests.handlers._receiver import Receiver, Response


def _secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


SECRET_A = _secret()
SECRET_B = _secret()


def _handler(context: HandlerContext, url: str, **options: Any) -> WebhookHandler:
    options.setdefault("secrets", [SECRET_A])
    return WebhookHandler(WebhookHandler.Options(url=url, **options), context)


async def test_posts_signed_event_verified_by_standardwebhooks(
    context: HandlerContext, event: dict[str, Any], http_receiver: Receiver
) -> None:
    handler = _handler(
        context,
        http_receiver.url + "/hook",
        secrets=[SECRET_A, SECRET_B],
        headers={"X-Team": "ops"},
    )
    try:
        await handler.deliver({**event, "summary": "Grüße & <tags>"})
    finally:
        await handler.aclose()
    [request] = http_receiver.requests
    assert request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-team"] == "ops"
    assert request.headers["webhook-id"] == event["id"]
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
    signatures = request.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    # each secret alone verifies: the receiver can rotate
    for secret in (SECRET_A, SECRET_B):
        payload = Webhook(secret).verify(request.body, request.headers)
        assert payload["id"] == event["id"]
        assert payload["summary"] == "Grüße & <tags>"
    with pytest.raises(WebhookVerificationError):
        Webhook(_secret()).verify(request.body, request.headers)
    assert json.loads(request.body) == {**event, "summary": "Grüße & <tags>"}


async def test_gone_is_permanent(
    context: HandlerContext, event: dict[str, Any], http_receiver: Receiver
) -> None:
    http_receiver.responses.append(Response(410, b"subscription cancelled"))
    handler = _handler(context, http_receiver.url)
    try:
        with pytest.raises(PermanentHandlerError, match="HTTP 410: subscription cancelled"):
            await handler.deliver(event)
    finally:
        await handler.aclose()


async def test_server_error_retries_after_retry_after(
    context: HandlerContext, event: dict[str, Any], http_receiver: Receiver
) -> None:
    http_receiver.responses += [
        Response(500, b"boom", {"Retry-After": "120"}),
        Response(429, b"", {"Retry-After": formatdate(time.time() + 60, usegmt=True)}),
        Response(503, b"down"),
        Response(404, b"nope"),
    ]
    handler = _handler(context, http_receiver.url)
    try:
        with pytest.raises(HandlerError) as info:
            await handler.deliver(event)
        assert not isinstance(info.value, PermanentHandlerError)
        assert info.value.retry_after == 120
        assert "HTTP 500: boom" in str(info.value)
        with pytest.raises(HandlerError) as info:
            await handler.deliver(event)
        assert info.value.retry_after is not None and 50 < info.value.retry_after <= 61
        with pytest.raises(HandlerError) as info:
            await handler.deliver(event)
        assert info.value.retry_after is None
        with pytest.raises(HandlerError) as info:
            await handler.deliver(event)
        assert not isinstance(info.value, PermanentHandlerError)
        await handler.deliver(event)  # and then it works
    finally:
        await handler.aclose()
    assert len(http_receiver.requests) == 5
    assert {r.headers["webhook-id"] for r in http_receiver.requests} == {event["id"]}


async def test_redirect_is_not_followed(
    context: HandlerContext, event: dict[str, Any], http_receiver: Receiver
) -> None:
    http_receiver.responses.append(
        Response(307, b"", {"Location": http_receiver.url + "/elsewhere?token=abc"})
    )
    handler = _handler(context, http_receiver.url + "/hook")
    try:
        with pytest.raises(HandlerError, match=r"redirect to .*/elsewhere not followed") as info:
            await handler.deliver(event)
    finally:
        await handler.aclose()
    assert not isinstance(info.value, PermanentHandlerError)
    assert "token=abc" not in str(info.value)
    assert [r.path for r in http_receiver.requests] == ["/hook"]


async def test_timeout_and_connection_refused_are_retryable(
    context: HandlerContext, event: dict[str, Any], http_receiver: Receiver
) -> None:
    http_receiver.responses.append(Response(200, delay=10))
    handler = _handler(context, http_receiver.url, timeout=0.3)
    try:
        with pytest.raises(HandlerError, match="read timeout"):
            await handler.deliver(event)
    finally:
        await handler.aclose()
    http_receiver.release.set()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    handler = _handler(context, f"http://127.0.0.1:{port}/hook")
    try:
        with pytest.raises(HandlerError, match="cannot connect") as info:
            await handler.deliver(event)
    finally:
        await handler.aclose()
    assert not isinstance(info.value, PermanentHandlerError)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/hook", "file:///etc/passwd", "example.com/hook", "https://"]
)
def test_non_http_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="url"):
        WebhookHandler.Options(url=url, secrets=[SECRET_A])


def test_bad_secrets_are_refused_without_echoing_them() -> None:
    for bad in ["not-prefixed-" + SECRET_A, "whsec_!!!not base64!!!", "whsec_c2hvcnQ="]:
        with pytest.raises(ValidationError) as info:
            WebhookHandler.Options(url="https://example.com/", secrets=[SECRET_A, bad])
        assert "secret #2" in str(info.value)
        assert bad not in str(info.value)
        assert SECRET_A not in str(info.value)
    with pytest.raises(ValidationError, match="at least 1"):
        WebhookHandler.Options(url="https://example.com/", secrets=[])


def test_reserved_headers_are_refused() -> None:
    with pytest.raises(ValidationError, match="set by the handler"):
        WebhookHandler.Options(
            url="https://example.com/", secrets=[SECRET_A], headers={"Webhook-Id": "x"}
        )


async def test_secret_never_in_repr_or_errors(
    context: HandlerContext, event: dict[str, Any], http_receiver: Receiver
) -> None:
    http_receiver.responses.append(Response(500, b"fail"))
    handler = _handler(context, http_receiver.url, secrets=[SECRET_A, SECRET_B])
    try:
        with pytest.raises(HandlerError) as info:
            await handler.deliver(event)
    finally:
        await handler.aclose()
    key_b64 = SECRET_A.removeprefix("whsec_")
    for text in (repr(handler), repr(handler.options), str(handler.options), str(info.value)):
        assert key_b64 not in text
        assert SECRET_B.removeprefix("whsec_") not in text


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("30", now=now) == 30
    assert parse_retry_after(" 1.5 ", now=now) == 1.5
    assert parse_retry_after("-5", now=now) == 0
    assert parse_retry_after(formatdate(now + 90, usegmt=True), now=now) == 90
    assert parse_retry_after(formatdate(now - 90, usegmt=True), now=now) == 0
    assert parse_retry_after("999999999", now=now) == 86400
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("nan") is None


def test_redact_url() -> None:
    assert redact_url("https://user:pw@example.com:8443/a/b?token=x#f") == (
        "https://example.com:8443/a/b"
    )
