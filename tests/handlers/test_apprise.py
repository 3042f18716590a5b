"""The optional apprise handler, against a real HTTP receiver (Apprise's json:// service)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from handlers.base import HandlerContext
from poller.errors import HandlerError

pytest.importorskip("apprise")

from handlers.apprise import AppriseHandler, AppriseOptions
from tests.handlers._receiver import Receiver, Response


def json_url(recv: Receiver, path: str = "hook") -> str:
    return recv.url.replace("http://", "json://") + f"/{path}"


async def test_delivers_a_readable_notification(
    http_receiver: Receiver, context: HandlerContext, event: dict[str, Any]
) -> None:
    handler = AppriseHandler(AppriseOptions(urls=[json_url(http_receiver)]), context)
    await handler.deliver(event)
    await handler.aclose()
    assert len(http_receiver.requests) == 1
    body = json.loads(http_receiver.requests[0].body)
    assert "Jason Fried" in body["message"]
    assert "Design it" in body["message"]
    assert event["recording"]["app_url"] in body["message"]
    assert body["title"].startswith("BCX")


async def test_a_failing_service_asks_for_a_retry(
    http_receiver: Receiver, context: HandlerContext, event: dict[str, Any]
) -> None:
    http_receiver.responses.append(Response(status=500))
    handler = AppriseHandler(AppriseOptions(urls=[json_url(http_receiver)]), context)
    with pytest.raises(HandlerError):
        await handler.deliver(event)


def test_urls_are_secret_and_checked() -> None:
    opts = AppriseOptions(urls=["json://user:hunter22@127.0.0.1:1/x"])
    assert "hunter22" not in repr(opts) and "hunter22" not in str(opts)
    with pytest.raises(ValueError, match=r"urls\[0\]"):
        AppriseOptions(urls=["definitely-not-a-service://x"])
    with pytest.raises(ValueError):
        AppriseOptions(urls=[])
