"""Compare a record's stored fields with what Basecamp returned now, field by field.

Pure functions, no I/O. A field the new payload does not carry (index lists lack
`content`, for instance) is unknown, not changed: it keeps its stored value.

Kinds, per record type prefix `<t>` (see `payloads.kind_prefix`):

* `<t>_created`                 the record is new (and not trashed)
* `<t>_trashed`                 trashed, or gone (verified by the caller: 404)
* `<t>_archived` / `<t>_unarchived`  the `archived` flag flipped
* `todo_completed` / `todo_uncompleted`, `todo_assignment_changed`,
  `todo_due_date_changed`, `todo_content_changed`
* `<t>_changed`                 every other tracked field, together in one event

One save that touches several fields gives one event per specific kind above plus at most
one `<t>_changed` for the rest; each event's `changes` holds only its own fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from poller.payloads import kind_prefix

# field -> specific kind, per type
_SPECIFIC: dict[str, dict[str, tuple[str, str] | str]] = {
    "Todo": {
        "completed": ("todo_completed", "todo_uncompleted"),
        "assignee": "todo_assignment_changed",
        "due_on": "todo_due_date_changed",
        "content": "todo_content_changed",
    },
}
_ARCHIVABLE = frozenset({"Project"})


@dataclass(frozen=True)
class Change:
    kind: str
    changes: dict[str, list[Any]]


def merge_fields(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """The record's fields after this fetch: new values win, missing ones are kept."""
    return {**(old or {}), **new}


def changed_fields(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    """`{field: [old, new]}` for every field both sides know and that differs."""
    return {k: [old[k], v] for k, v in new.items() if k in old and old[k] != v}


def classify(
    rtype: str,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
) -> list[Change]:
    """The change events that take a record from `old` to `new` fields.

    `old=None`: never seen before. `new=None`: verified gone (404) -> trashed.
    """
    prefix = kind_prefix(rtype)
    if old is None:
        if new is None or new.get("trashed"):
            return []
        return [Change(f"{prefix}_created", {})]
    if new is None:
        if old.get("trashed"):
            return []
        return [Change(f"{prefix}_trashed", {"trashed": [False, True]})]
    merged = merge_fields(old, new)
    changes = changed_fields(old, merged)
    if not changes:
        return []
    if "trashed" in changes:
        was, now = changes["trashed"]
        if now and not was:
            return [Change(f"{prefix}_trashed", {"trashed": [False, True]})]
    out: list[Change] = []
    rest = dict(changes)
    if rtype in _ARCHIVABLE and "archived" in rest:
        was, now = rest.pop("archived")
        out.append(
            Change(f"{prefix}_{'archived' if now else 'unarchived'}", {"archived": [was, now]})
        )
    for fname, kind in _SPECIFIC.get(rtype, {}).items():
        if fname not in rest:
            continue
        pair = rest.pop(fname)
        if isinstance(kind, tuple):
            kind = kind[0] if pair[1] else kind[1]
        out.append(Change(kind, {fname: pair}))
    if rest:
        out.append(Change(f"{prefix}_changed", rest))
    return out
