from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from handlers.base import HandlerContext
from handlers.jsonl import JsonlHandler
from poller.errors import HandlerError
from poller.events import sample_event


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _handler(path: Path, context: HandlerContext) -> JsonlHandler:
    return JsonlHandler(JsonlHandler.Options(path=path), context)


async def test_appends_compact_sorted_lines_with_mode_0600(
    tmp_path: Path, context: HandlerContext, event: dict[str, Any]
) -> None:
    path = tmp_path / "events.jsonl"
    handler = _handler(path, context)
    try:
        await handler.deliver(event)
        await handler.deliver({**event, "id": "second", "summary": "zwölf\nlines"})
    finally:
        await handler.aclose()
    raw = path.read_text(encoding="utf-8").splitlines()
    assert len(raw) == 2
    assert raw[0] == json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert [e["id"] for e in _lines(path)] == [event["id"], "second"]
    assert _lines(path)[1]["summary"] == "zwölf\nlines"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_reopens_after_rotation(tmp_path: Path, context: HandlerContext) -> None:
    path = tmp_path / "events.jsonl"
    handler = _handler(path, context)
    try:
        await handler.deliver({**sample_event(), "id": "one"})
        path.rename(tmp_path / "events.jsonl.1")
        await handler.deliver({**sample_event(), "id": "two"})
        # copytruncate-free rotation that deletes the file outright
        (tmp_path / "events.jsonl").unlink()
        await handler.deliver({**sample_event(), "id": "three"})
        # replaced by another file under the same name
        replacement = tmp_path / "new.jsonl"
        replacement.write_text("")
        os.replace(replacement, path)
        await handler.deliver({**sample_event(), "id": "four"})
    finally:
        await handler.aclose()
    assert [e["id"] for e in _lines(tmp_path / "events.jsonl.1")] == ["one"]
    assert [e["id"] for e in _lines(path)] == ["four"]


async def test_new_file_after_rotation_gets_next_event_and_mode(
    tmp_path: Path, context: HandlerContext
) -> None:
    path = tmp_path / "events.jsonl"
    handler = _handler(path, context)
    try:
        await handler.deliver({**sample_event(), "id": "one"})
        path.rename(tmp_path / "events.jsonl.1")
        await handler.deliver({**sample_event(), "id": "two"})
    finally:
        await handler.aclose()
    assert [e["id"] for e in _lines(path)] == ["two"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_partial_last_line_is_terminated(tmp_path: Path, context: HandlerContext) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"id":"ok"}\n{"id":"tru')  # a crash in the middle of a write
    handler = _handler(path, context)
    try:
        await handler.deliver({**sample_event(), "id": "next"})
    finally:
        await handler.aclose()
    lines = path.read_text().splitlines()
    assert lines[1] == '{"id":"tru'
    assert json.loads(lines[2])["id"] == "next"


async def test_unwritable_path_is_a_retryable_error(
    tmp_path: Path, context: HandlerContext, event: dict[str, Any]
) -> None:
    handler = _handler(tmp_path / "missing-dir" / "events.jsonl", context)
    try:
        with pytest.raises(HandlerError, match="cannot write") as info:
            await handler.deliver(event)
        assert info.value.retry_after is None
        (tmp_path / "missing-dir").mkdir()
        await handler.deliver(event)  # recovers once the directory exists
    finally:
        await handler.aclose()
    assert _lines(tmp_path / "missing-dir" / "events.jsonl")[0]["id"] == event["id"]


def test_options_reject_unknown_keys() -> None:
    with pytest.raises(ValueError, match="extra"):
        JsonlHandler.Options(path="x.jsonl", mode="0644")  # type: ignore[call-arg]
