"""Secrets never appear in exceptions, reprs or logs."""

from __future__ import annotations

import base64
import logging
import traceback

import httpx
import pytest
import structlog

from poller.client import BasicAuth, BearerAuth, Validators
from poller.config import AccountSettings
from poller.errors import BasecampError
from tests.client.fakes import PASSWORD, ROOT, TOKEN, account, json_response, make_client

BASIC_B64 = base64.b64encode(f"alice@example.com:{PASSWORD}".encode()).decode()
SECRETS = (PASSWORD, TOKEN, BASIC_B64)


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def trouble(request: httpx.Request) -> httpx.Response:
    """Every kind of answer the client logs or raises about, chosen by path."""
    path = request.url.path
    if path.endswith("/redirect.json"):
        return httpx.Response(301, headers={"Location": f"{ROOT}/ok.json"})
    if path.endswith("/throttle.json"):
        return httpx.Response(429, headers={"Retry-After": "1"})
    if path.endswith("/down.json"):
        return httpx.Response(503, text=f"echo {request.headers.get('authorization')}")
    if path.endswith("/timeout.json"):
        raise httpx.ReadTimeout("timed out", request=request)
    if path.endswith("/denied.json"):
        return httpx.Response(401, text=f"bad credentials {request.headers['authorization']}")
    if path.endswith("/forbidden.json"):
        return httpx.Response(403)
    if path.endswith("/gone.json"):
        return httpx.Response(404)
    if path.endswith("/teapot.json"):
        return httpx.Response(418)
    if path.endswith("/html.json"):
        return httpx.Response(200, text=f"<html>{request.headers['authorization']}</html>")
    if path.endswith("/away.json"):
        return httpx.Response(302, headers={"Location": "https://evil.example/x.json"})
    return json_response({"id": 1}, headers={"ETag": '"e"'})


PATHS = [
    "redirect.json",
    "throttle.json",
    "down.json",
    "timeout.json",
    "denied.json",
    "forbidden.json",
    "gone.json",
    "teapot.json",
    "html.json",
    "away.json",
    "ok.json",
]


@pytest.mark.parametrize("acct", [account(), account(token=TOKEN)], ids=["basic", "bearer"])
async def test_secrets_absent_from_errors_reprs_and_logs(
    acct: AccountSettings, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BasecampError] = []
    with structlog.testing.capture_logs() as logs:
        async with make_client(
            trouble,
            acct=acct,
            max_retries=2,
            max_rate_limit_retries=1,
        ) as (client, rec, _):
            for path in PATHS:
                try:
                    await client.get(path, validators=Validators('"v"', None))
                except BasecampError as exc:
                    errors.append(exc)
            # a URL carrying userinfo is refused without echoing it back
            with pytest.raises(ValueError) as info:
                await client.get(f"https://alice:{PASSWORD}@basecamp.com/999/api/v1/gone.json")
            assert_clean(str(info.value))
    assert len(errors) == 9
    assert len(logs) > 10
    events = {entry["event"] for entry in logs}
    assert {"request", "retrying", "rate_limited", "redirect"} <= events
    for error in errors:
        assert_clean(str(error))
        assert_clean(repr(error))
        assert_clean(error.url)
        assert_clean("".join(traceback.format_exception(error)))
    assert_clean(repr(logs))
    assert_clean(caplog.text)
    out = capsys.readouterr()
    assert_clean(out.out + out.err)
    assert_clean(repr(client))
    assert_clean(repr(client.auth))
    assert_clean(repr(client.stats))
    assert_clean(repr(client.limiter))
    # sanity: the secret really was sent, so the checks above mean something
    assert any(
        PASSWORD in r.url.userinfo.decode()
        or BASIC_B64 in r.headers.get("authorization", "")
        or TOKEN in r.headers.get("authorization", "")
        for r in rec.requests
    )


def test_auth_reprs_hide_secrets() -> None:
    assert PASSWORD not in repr(BasicAuth("alice", PASSWORD))
    assert "alice" in repr(BasicAuth("alice", PASSWORD))
    assert TOKEN not in repr(BearerAuth(TOKEN))
    assert TOKEN not in str(vars(BearerAuth(TOKEN)))
