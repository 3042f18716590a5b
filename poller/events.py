"""The event envelope every handler receives, and how its stable id is made.

id          string, stable idempotency key (same change -> same id, always)
kind        e.g. "todo_completed"
account_id  int
project     {id, name} or None
recording   {id, type, url, app_url, title}   (for comment_created: the commented item)
creator     {id, name} or None                (who did it, when Basecamp says so)
changes     {field: [old, new]}               ({} when none)
created_at  ISO 8601, when it happened per Basecamp (detection time if unknown)
detected_at ISO 8601
summary     plain text: tags stripped, entities decoded
source      "activity" | "diff" | "activity+diff"
details     the raw Basecamp payload(s): {"record": ..., "activity": ...}
private     bool, whether Basecamp marks the item private
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

Source = Literal["activity", "diff", "activity+diff"]

_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def plain_text(value: Any) -> str:
    """Strip HTML tags, decode entities (twice-escaped too) and fold white space."""
    if value is None or value is False:
        return ""
    text = _TAG.sub("", str(value))
    for _ in range(2):
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    return _SPACE.sub(" ", text).strip()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_id(
    account_id: int, kind: str, rec_type: str, rec_id: int | str, discriminator: str
) -> str:
    """A deterministic id: a hash of what identifies the change, never of when we saw it.

    `discriminator` is what makes this change different from another change of the same
    kind on the same record: typically the record's new `updated_at`, or a comment id.
    """
    parts = [account_id, kind, rec_type, str(rec_id), discriminator]
    if all(_plain(p) for p in parts[1:]):
        # printable ASCII: orjson writes exactly what the stdlib does, faster
        raw = orjson.dumps(parts)
    else:
        raw = json.dumps(parts, separators=(",", ":")).encode()
    return "bcx_" + hashlib.sha256(raw).hexdigest()[:32]


def _plain(text: Any) -> bool:
    return isinstance(text, str) and text.isascii() and text.isprintable()


@dataclass(frozen=True)
class Event:
    id: str
    kind: str
    account_id: int
    project: dict[str, Any] | None
    recording: dict[str, Any]
    creator: dict[str, Any] | None
    changes: dict[str, list[Any]]
    created_at: str
    detected_at: str
    summary: str
    source: Source
    details: dict[str, Any] = field(default_factory=dict)
    private: bool = False

    def to_dict(self) -> dict[str, Any]:
        # shallow on purpose: `details` holds raw payloads that nobody mutates, and
        # dataclasses.asdict deep-copies them (most of the CPU of a large first sync)
        return {name: getattr(self, name) for name in ENVELOPE_KEYS}


# the envelope's keys, in order; the detector builds envelopes as plain dicts with these
# keys (`Event` stays for tests and documentation: a dataclass per event, then
# `dataclasses.fields` to turn it into a dict, was wasted work on the hot path)
ENVELOPE_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Event))


def sample_event(account_id: int = 999999999) -> dict[str, Any]:
    """A realistic event for `test-handler` and documentation."""
    return Event(
        id=event_id(account_id, "todo_completed", "Todo", 223304243, "2012-03-24T11:00:50-05:00"),
        kind="todo_completed",
        account_id=account_id,
        project={"id": 605816632, "name": "BCX"},
        recording={
            "id": 223304243,
            "type": "Todo",
            "url": f"https://basecamp.com/{account_id}/api/v1/projects/605816632/todos/223304243.json",
            "app_url": f"https://basecamp.com/{account_id}/projects/605816632/todos/223304243",
            "title": "Design it",
        },
        creator={"id": 149087659, "name": "Jason Fried"},
        changes={"completed": [False, True]},
        created_at="2012-03-24T11:00:50-05:00",
        detected_at=now_iso(),
        summary="Jason Fried completed a to-do: Design it",
        source="activity+diff",
        details={},
        private=False,
    ).to_dict()
