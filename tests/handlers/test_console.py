from __future__ import annotations

import io
from typing import Any

import pytest

from handlers.base import HandlerContext
from handlers.console import ConsoleHandler
from poller.errors import HandlerError


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_one_readable_line(context: HandlerContext, event: dict[str, Any]) -> None:
    from handlers.format import set_timezone

    set_timezone("America/Chicago")  # Basecamp's -05:00 on that day; UTC is 5 hours on
    out = io.StringIO()
    handler = ConsoleHandler(ConsoleHandler.Options(), context, stream=out)
    await handler.deliver(event)
    await handler.deliver(
        {
            **event,
            "project": None,
            "creator": None,
            "summary": "",
            "created_at": "garbage",
            "detected_at": "2024-05-01T08:09:10Z",
        }
    )
    await handler.aclose()
    set_timezone(None)
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "11:00:50  todo_completed      BCX  Jason Fried  completed a to-do: Design it"
    )
    # the detection time (UTC) in the same zone as Basecamp's times
    assert lines[1] == "03:09:10  todo_completed      -  Someone  completed a to-do: Design it"


async def test_control_characters_are_neutralised(
    context: HandlerContext, event: dict[str, Any]
) -> None:
    out = _Tty()
    handler = ConsoleHandler(ConsoleHandler.Options(color="never"), context, stream=out)
    await handler.deliver({**event, "summary": "Jason Fried renamed\x1b[2J it\nto: evil\r"})
    text = out.getvalue()
    assert "\x1b" not in text
    assert text.count("\n") == 1
    assert text.endswith("renamed [2J it to: evil\n")


async def test_color_auto_follows_tty_and_no_color(
    context: HandlerContext, event: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    tty, plain = _Tty(), io.StringIO()
    await ConsoleHandler(ConsoleHandler.Options(), context, stream=tty).deliver(event)
    await ConsoleHandler(ConsoleHandler.Options(), context, stream=plain).deliver(event)
    assert "\x1b[" in tty.getvalue()
    assert "\x1b[" not in plain.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    quiet = _Tty()
    await ConsoleHandler(ConsoleHandler.Options(), context, stream=quiet).deliver(event)
    assert "\x1b[" not in quiet.getvalue()
    forced = io.StringIO()
    handler = ConsoleHandler(ConsoleHandler.Options(color="always"), context, stream=forced)
    await handler.deliver(event)
    assert "\x1b[" in forced.getvalue()


async def test_closed_stream_is_handler_error(
    context: HandlerContext, event: dict[str, Any]
) -> None:
    out = io.StringIO()
    out.close()
    handler = ConsoleHandler(ConsoleHandler.Options(), context, stream=out)
    with pytest.raises(HandlerError, match="cannot write"):
        await handler.deliver(event)
