"""Readable pieces of an event envelope, shared by the console, slack and email handlers.

All functions accept any envelope-shaped dict and never raise on missing or odd fields.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

_NOUNS = {
    "calendar_event": "an event",
    "todolist": "a to-do list",
    "todo": "a to-do",
    "message": "a message",
    "comment": "a comment",
    "document": "a document",
    "upload": "a file",
    "attachment": "a file",
    "project": "a project",
    "person": "a person",
    "topic": "a discussion",
}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    if value is None:
        return ""
    return " ".join(_CONTROL.sub(" ", str(value)).split())


TEST_TAG = "[test]"


def _name(event: dict[str, Any]) -> str:
    return _text(_mapping(event.get("creator")).get("name")) or "Someone"


def who(event: dict[str, Any]) -> str:
    """The person who made the change, or "Someone"; `[test] ` first when the event is a
    test (`"test": true`, sent by `bcx-poller test-handler`), so every message built on it
    shows it is one."""
    name = _name(event)
    return f"{TEST_TAG} {name}" if event.get("test") is True else name


def project_name(event: dict[str, Any]) -> str:
    return _text(_mapping(event.get("project")).get("name"))


def title(event: dict[str, Any]) -> str:
    """The title of the item changed (or commented on)."""
    return _text(_mapping(event.get("recording")).get("title"))


def link(event: dict[str, Any]) -> str:
    """The item's web link (`recording.app_url`) if it is an http(s) URL, else ""."""
    url = _text(_mapping(event.get("recording")).get("app_url"))
    return url if url.startswith(("https://", "http://")) else ""


def kind_phrase(kind: str) -> str:
    """'todo_completed' -> 'completed a to-do'; unknown kinds read as well as they can."""
    for noun, phrase in _NOUNS.items():
        if kind.startswith(noun + "_"):
            verb = kind[len(noun) + 1 :].replace("_", " ")
            return f"{verb} {phrase}"
    noun, _, verb = kind.rpartition("_")
    if not noun:
        return kind.replace("_", " ")
    return f"{verb} {noun.replace('_', ' ')}"


def what(event: dict[str, Any]) -> str:
    """The summary without the leading name of who did it: 'completed a to-do: Design it'."""
    summary = _text(event.get("summary"))
    name = _name(event)
    if summary.startswith(name + " "):
        return summary[len(name) + 1 :]
    if summary:
        return summary
    item = title(event)
    phrase = kind_phrase(_text(event.get("kind")))
    return f"{phrase}: {item}" if item else phrase


def action(event: dict[str, Any]) -> str:
    """What was done, without who and without the item: 'completed a to-do'."""
    summary = _text(event.get("summary"))
    text = what(event)
    item = title(event)
    stripped = text
    if item and stripped.endswith(": " + item):
        stripped = stripped[: -len(item) - 2]
    elif ": " in stripped:
        stripped = stripped.partition(": ")[0]
    elif item and stripped.endswith(" " + item):
        stripped = stripped[: -len(item) - 1]
    if stripped and (stripped != summary or not item):
        return stripped
    return kind_phrase(_text(event.get("kind")))


_ZONE: tzinfo | None = None  # None: the machine's own


def set_timezone(name: str | None) -> None:
    """The zone human-facing times are shown in (`[poller] timezone`); None: the
    machine's. Envelopes keep their ISO 8601 times with offset."""
    global _ZONE
    _ZONE = ZoneInfo(name) if name else None


def _moment(event: dict[str, Any]) -> datetime | None:
    """When it happened (`created_at`), else when it was seen, in the reader's zone."""
    for key in ("created_at", "detected_at"):
        raw = event.get(key)
        if isinstance(raw, str):
            try:
                moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                continue
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.astimezone(_ZONE)
    return None


def clock(event: dict[str, Any]) -> str:
    """HH:MM:SS of when it happened, in the reader's zone (see `set_timezone`)."""
    moment = _moment(event)
    return moment.strftime("%H:%M:%S") if moment is not None else "--:--:--"


def when(event: dict[str, Any]) -> str:
    """`2024-01-15 13:00:50 CET`: the date, time and zone of when it happened."""
    moment = _moment(event)
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if moment is not None else ""


def clean(value: Any) -> str:
    """Any value as one line of text without control characters."""
    return _text(value)


# -- what changed, in words ---------------------------------------------------------

_TEXT_FIELDS = frozenset({"content", "description"})
_LABELS = {
    "due_on": "Due date",
    "assignee": "Assigned",
    "name": "Title",
    "title": "Title",
    "subject": "Subject",
    "summary": "Title",
    "content": "Text",
    "description": "Description",
    "starts_at": "Starts",
    "ends_at": "Ends",
    "todolist_id": "List",
    "project_id": "Project",
    "all_day": "All day",
    "email_address": "E-mail",
    "private": "Private",
}
_SAID_BY_KIND = frozenset({"completed", "trashed", "archived"})  # the kind already says it


def _plain(value: Any) -> str:
    from poller.events import plain_text  # the envelope's own notion of plain text

    return _text(plain_text(value))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"


def _value(field: str, value: Any) -> str:
    if value is None or value == "":
        return "nobody" if field == "assignee" else "none"
    if isinstance(value, dict):
        return _text(value.get("name")) or _text(value.get("id"))
    if field in ("project_id", "todolist_id"):
        return f"#{value}"
    return _plain(value)


def word_diff(old: str, new: str, limit: int = 200) -> str:
    """A short word diff: `[-removed words-] {+added words+}`, unchanged runs elided."""
    import difflib

    a, b = old.split(), new.split()
    parts: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            run = a[i1:i2]
            parts.append(" ".join(run) if len(run) <= 4 else f"{run[0]} … {run[-1]}")
            continue
        if i2 > i1:
            parts.append("[-" + " ".join(a[i1:i2]) + "-]")
        if j2 > j1:
            parts.append("{+" + " ".join(b[j1:j2]) + "+}")
    return _cut(" ".join(parts), limit)


def changed(event: dict[str, Any], *, limit: int = 300) -> list[str]:
    """What changed, one line per field, as a person reads it: a comment's text (trimmed
    to `limit`) and its link, old -> new due dates, assignees, titles, a short word diff
    of a text, the list or project an item moved to."""
    kind = _text(event.get("kind"))
    details = _mapping(event.get("details"))
    lines: list[str] = []
    if kind == "comment_created":
        text = _plain(_mapping(details.get("comment")).get("content"))
        if text:
            lines.append(f'"{_cut(text, limit)}"')
        url = _text(details.get("comment_url"))
        if url.startswith(("https://", "http://")):
            lines.append(f"Comment: {url}")
        return lines
    changes = _mapping(event.get("changes"))
    for field, pair in changes.items():
        if field in _SAID_BY_KIND or not isinstance(pair, list) or len(pair) != 2:
            continue
        old, new = pair
        label = _LABELS.get(field, field.replace("_", " ").capitalize())
        if field in _TEXT_FIELDS and old is not None and new is not None:
            lines.append(f"{label}: {word_diff(_plain(old), _plain(new), limit)}")
        elif field in _TEXT_FIELDS:
            lines.append(f"{label}: {_cut(_value(field, new), limit)}")
        else:
            lines.append(f"{label}: {_value(field, old)} → {_value(field, new)}")
    return lines
