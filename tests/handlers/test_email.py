from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from handlers.base import HandlerContext
from handlers.email import EmailHandler
from poller.errors import HandlerError, PermanentHandlerError
from poller.events import sample_event
from tests.handlers._smtp import PASSWORD, USER, free_port, make_cert, smtp_server

FROM = "bcx-poller <bot@example.test>"
TO = ["ops@example.test", "dev@example.test"]


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    yield make_cert(tmp_path_factory.mktemp("tls"))


def _handler(context: HandlerContext, port: int, **options: Any) -> EmailHandler:
    options.setdefault("security", "none")
    return EmailHandler(
        EmailHandler.Options(host="127.0.0.1", port=port, from_addr=FROM, to=TO, **options),
        context,
    )


def _event(n: int) -> dict[str, Any]:
    event = sample_event()
    event["id"] = f"bcx_{n}"
    event["recording"] = {**event["recording"], "id": 1000 + n, "title": f"Task {n}"}
    event["summary"] = f"Jason Fried completed a to-do: Task {n}"
    return event


async def test_one_mail_per_event_plain(context: HandlerContext, event: dict[str, Any]) -> None:
    with smtp_server() as (box, port):
        handler = _handler(context, port)
        await handler.deliver(event)
        await handler.aclose()
    [msg] = box.messages
    assert msg["Subject"] == "[BCX] Jason Fried completed a to-do: Design it"
    assert msg["From"] == FROM
    assert msg["X-BCX-Event-Id"] == event["id"]
    assert msg["Auto-Submitted"] == "auto-generated"
    assert box.envelopes == [("bot@example.test", TO)]
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    body = text.get_content()
    assert "Jason Fried completed a to-do: Design it" in body
    assert "Project: BCX" in body
    assert event["recording"]["app_url"] in body
    assert f'<a href="{event["recording"]["app_url"]}">Design it</a>' in html.get_content()


async def test_html_is_escaped_and_can_be_turned_off(
    context: HandlerContext, event: dict[str, Any]
) -> None:
    evil = {**event, "recording": {**event["recording"], "title": "<script>x</script>"}}
    with smtp_server() as (box, port):
        await _handler(context, port).deliver(evil)
        await _handler(context, port, html_template="").deliver(evil)
    html = box.messages[0].get_body(("html",))
    assert html is not None
    assert "<script>" not in html.get_content()
    assert "&lt;script&gt;" in html.get_content()
    assert box.messages[1].get_body(("html",)) is None
    assert box.messages[1].get_content_type() == "text/plain"


async def test_custom_templates(context: HandlerContext, event: dict[str, Any]) -> None:
    with smtp_server() as (box, port):
        handler = _handler(
            context,
            port,
            subject_template="{{ kind }}\n{{ title }}",  # newlines are folded, not injected
            text_template="{% for e in events %}* {{ e.event.id }}{% endfor %}",
        )
        await handler.deliver(event)
    [msg] = box.messages
    assert msg["Subject"] == "todo_completed Design it"
    text = msg.get_body(("plain",))
    assert text is not None and text.get_content().strip() == f"* {event['id']}"


def test_bad_templates_are_config_errors() -> None:
    base = {"host": "127.0.0.1", "security": "none", "from_addr": FROM, "to": TO}
    with pytest.raises(ValidationError, match="subject_template"):
        EmailHandler.Options(**base, subject_template="{{ oops")
    with pytest.raises(ValidationError, match="unknown variable"):
        EmailHandler.Options(**base, html_template="{{ nope }}")


async def test_starttls_with_auth(
    context: HandlerContext, event: dict[str, Any], cert: tuple[Path, Path]
) -> None:
    with smtp_server(cert=cert, mode="starttls", auth=True) as (box, port):
        handler = _handler(
            context,
            port,
            security="starttls",
            ca_file=cert[0],
            username=USER,
            password=PASSWORD,
        )
        await handler.deliver(event)
    assert len(box.messages) == 1
    assert box.logins  # authenticated, over TLS (the server refuses AUTH otherwise)


async def test_implicit_tls_with_password_file(
    tmp_path: Path, context: HandlerContext, event: dict[str, Any], cert: tuple[Path, Path]
) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text(PASSWORD + "\n")
    with smtp_server(cert=cert, mode="tls", auth=True) as (box, port):
        handler = _handler(
            context,
            port,
            security="tls",
            ca_file=cert[0],
            username=USER,
            password_file=str(secret),
        )
        await handler.deliver(event)
    assert len(box.messages) == 1
    assert box.logins


async def test_untrusted_certificate_is_refused(
    context: HandlerContext, event: dict[str, Any], cert: tuple[Path, Path]
) -> None:
    with smtp_server(cert=cert, mode="starttls") as (box, port):
        handler = _handler(context, port, security="starttls")  # system CAs only
        with pytest.raises(HandlerError, match="TLS failed") as info:
            await handler.deliver(event)
    assert not isinstance(info.value, PermanentHandlerError)
    assert box.messages == []


async def test_starttls_not_offered_fails_instead_of_going_plain(
    context: HandlerContext, event: dict[str, Any]
) -> None:
    with smtp_server() as (box, port):
        handler = _handler(context, port, security="starttls")
        with pytest.raises(HandlerError, match="STARTTLS"):
            await handler.deliver(event)
    assert box.messages == []


async def test_wrong_password_is_retryable_and_never_shown(
    context: HandlerContext, event: dict[str, Any], cert: tuple[Path, Path]
) -> None:
    wrong = "not-the-" + PASSWORD
    with smtp_server(cert=cert, mode="starttls", auth=True) as (box, port):
        handler = _handler(
            context, port, security="starttls", ca_file=cert[0], username=USER, password=wrong
        )
        with pytest.raises(HandlerError, match="authentication failed") as info:
            await handler.deliver(event)
    assert not isinstance(info.value, PermanentHandlerError)
    assert box.messages == []
    for text in (str(info.value), repr(handler), repr(handler.options), str(handler.options)):
        assert wrong not in text
    with pytest.raises(ValidationError) as invalid:
        EmailHandler.Options(
            host="smtp.example.test",
            security="none",
            from_addr=FROM,
            to=TO,
            username=USER,
            password=wrong,
        )
    assert "without TLS" in str(invalid.value)
    assert wrong not in str(invalid.value)


async def test_refused_recipients_are_permanent(
    context: HandlerContext, event: dict[str, Any]
) -> None:
    with smtp_server() as (box, port):
        box.reject_rcpt = {addr: "550 5.1.1 no such user" for addr in TO}
        handler = _handler(context, port)
        with pytest.raises(PermanentHandlerError, match="no such user"):
            await handler.deliver(event)
        box.reject_rcpt = {TO[0]: "450 4.2.0 try later", TO[1]: "550 nope"}
        with pytest.raises(HandlerError) as info:
            await handler.deliver(event)
        assert not isinstance(info.value, PermanentHandlerError)


async def test_unreachable_server_is_retryable(
    context: HandlerContext, event: dict[str, Any]
) -> None:
    handler = _handler(context, free_port(), timeout=2)
    with pytest.raises(HandlerError, match=r"127\.0\.0\.1") as info:
        await handler.deliver(event)
    assert not isinstance(info.value, PermanentHandlerError)


def _age_spool(path: Path, seconds: float) -> None:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for entry in lines:
        entry["spooled_at"] -= seconds
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))


async def test_digest_spools_then_sends_one_mail(context: HandlerContext) -> None:
    with smtp_server() as (box, port):
        handler = _handler(context, port, digest_minutes=1)
        for n in (1, 2, 2, 3):  # event 2 delivered twice (a retry): listed once
            await handler.deliver(_event(n))
        assert box.messages == []
        assert await handler.flush() is False  # the oldest has not waited a minute yet
        spool = handler.spool_path
        assert spool == context.state_dir / "digest-test.jsonl"
        assert len(spool.read_text().splitlines()) == 4
        assert oct(spool.stat().st_mode & 0o777) == "0o600"
        await handler.aclose()

        _age_spool(spool, 61)  # a minute passes; the poller restarts
        handler = _handler(context, port, digest_minutes=1)
        await handler.deliver(_event(4))  # the check on deliver sends the digest
        await handler.aclose()
    [msg] = box.messages
    assert msg["Subject"] == "[Basecamp] 4 changes"
    assert msg["X-BCX-Event-Id"] is None
    text = msg.get_body(("plain",))
    assert text is not None
    body = text.get_content()
    for n in (1, 2, 3, 4):
        assert body.count(f"Task {n}\r\n") == 1
    assert spool.read_text() == ""


async def test_digest_survives_smtp_outage(context: HandlerContext) -> None:
    down = _handler(context, free_port(), digest_minutes=5, timeout=2)
    await down.deliver(_event(1))  # spooled: the outage does not fail the delivery
    await down.deliver(_event(2))
    with pytest.raises(HandlerError):
        await down.flush(force=True)
    assert len(down.spool_path.read_text().splitlines()) == 2
    with smtp_server() as (box, port):
        up = _handler(context, port, digest_minutes=5)
        assert await up.flush() is False  # not due yet
        assert await up.flush(force=True) is True
    [msg] = box.messages
    assert msg["Subject"] == "[Basecamp] 2 changes"
    assert up.spool_path.read_text() == ""


async def test_digest_rejected_for_good_is_set_aside(context: HandlerContext) -> None:
    with smtp_server() as (box, port):
        box.reject_rcpt = {addr: "550 5.7.1 rejected" for addr in TO}
        handler = _handler(context, port, digest_minutes=5)
        await handler.deliver(_event(1))
        with pytest.raises(PermanentHandlerError):
            await handler.flush(force=True)
        assert not handler.spool_path.exists()
        [aside] = context.state_dir.glob("digest-test.rejected-*.jsonl")
        assert json.loads(aside.read_text())["event"]["id"] == "bcx_1"
        box.reject_rcpt = {}
        await handler.deliver(_event(2))
        assert await handler.flush(force=True) is True
    assert len(box.messages) == 1


async def test_digest_skips_torn_line(context: HandlerContext) -> None:
    spool = context.state_dir / "digest-test.jsonl"
    spool.write_text(
        json.dumps({"spooled_at": time.time(), "event": _event(1)}) + "\n" + '{"spooled_at": 1, "ev'
    )
    with smtp_server() as (box, port):
        handler = _handler(context, port, digest_minutes=5)
        await handler.deliver(_event(2))
        assert await handler.flush(force=True) is True
    text = box.messages[0].get_body(("plain",))
    assert text is not None
    assert "Task 1" in text.get_content() and "Task 2" in text.get_content()


def test_address_validation() -> None:
    with pytest.raises(ValidationError, match="not an e-mail address"):
        EmailHandler.Options(host="h", from_addr="nobody", to=TO)
    with pytest.raises(ValidationError, match="one line"):
        EmailHandler.Options(host="h", from_addr=FROM, to=["a@b.test\r\nBcc: x@y.test"])
    with pytest.raises(ValidationError, match="at least 1"):
        EmailHandler.Options(host="h", from_addr=FROM, to=[])
    assert EmailHandler.Options(host="h", from_addr=FROM, to=TO).effective_port == 587
    tls = EmailHandler.Options(host="h", security="tls", from_addr=FROM, to=TO)
    assert tls.effective_port == 465
