"""Personal routing: which Basecamp people an event is for, and their e-mail addresses.

The roles a handler can name (`email` `to`, `slack` `mention`):

* `assignee`: whom the item (the to-do; for a comment, the to-do it is on) is assigned to;
* `creator`: who created the item (not who made this change: that is the event's
  `creator`, and it is rarely news to them);
* `subscribers`: the item's subscribers.

They are read from the item as Basecamp returned it with the event (`details.record`: a
single GET carries `assignee`, `creator` and `subscribers`; an item known only from a
listing or from the state has `assignee` and `creator` but no `subscribers`). Each person
named is looked up among the people the poller stores (`HandlerContext.people`) for an
e-mail address. An item that names nobody in a role (an unassigned to-do, a message has no
assignee) gives nobody, which is not an error; a person named who cannot be reached (not
stored, removed from the account, no e-mail address, a group) is a `problem`, with why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from handlers.base import People, Person

Role = Literal["assignee", "creator", "subscribers"]
ROLES: tuple[str, ...] = get_args(Role)
_LABEL = {"assignee": "the assignee", "creator": "the creator", "subscribers": "a subscriber"}


@dataclass
class Resolution:
    """The people reached (each once, in the order named) and why others were not."""

    people: list[Person] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _record(event: dict[str, Any]) -> dict[str, Any]:
    details = event.get("details")
    record = details.get("record") if isinstance(details, dict) else None
    return record if isinstance(record, dict) else {}


def _ref(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    pid = value.get("id")
    if isinstance(pid, bool) or not isinstance(pid, int):
        return None
    return value


def named(event: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """The `{id, name, ...}` references of the people the event's item names in `role`."""
    record = _record(event)
    if role == "assignee":
        ref = _ref(record.get("assignee"))
        if ref is None and "assignee" not in record:  # not said: the change may say it
            changes = event.get("changes")
            pair = changes.get("assignee") if isinstance(changes, dict) else None
            if isinstance(pair, list) and len(pair) == 2:
                ref = _ref(pair[1])
        return [ref] if ref is not None else []
    if role == "creator":
        ref = _ref(record.get("creator"))
        return [ref] if ref is not None else []
    if role == "subscribers":
        subscribers = record.get("subscribers")
        if not isinstance(subscribers, list):
            return []
        return [ref for ref in map(_ref, subscribers) if ref is not None]
    raise ValueError(f"unknown role {role!r}")


def _who(role: str, ref: dict[str, Any]) -> str:
    name = ref.get("name")
    label = f"{name} " if isinstance(name, str) and name.strip() else ""
    kind = "group" if ref.get("type") not in (None, "Person") else "person"
    return f"{_LABEL[role]} {label}({kind} {ref['id']})"


def resolve(event: dict[str, Any], roles: Iterable[str], people: People | None) -> Resolution:
    """Look up each person `roles` name in the event. Blocking (SQLite reads): run it in
    a worker thread. Raises what the look-up raises (sqlite3.Error)."""
    out = Resolution()
    seen: set[int] = set()
    account = event.get("account_id")
    for role in roles:
        for ref in named(event, role):
            pid = int(ref["id"])
            if pid in seen:
                continue
            seen.add(pid)
            who = _who(role, ref)
            if ref.get("type") not in (None, "Person"):
                out.problems.append(f"{who}: a {ref.get('type')} has no e-mail address")
                continue
            if people is None:
                out.problems.append(f"{who}: no stored people to look up (no state database)")
                continue
            person = (
                people.person(account, pid)
                if isinstance(account, int) and not isinstance(account, bool)
                else None
            )
            if person is None:
                out.problems.append(
                    f"{who}: not among the people stored for account {account}"
                    " (is `people` in [poller] watch? a new person is stored at the next re-list)"
                )
            elif person.removed:
                out.problems.append(f"{who}: removed from account {account}")
            elif not person.email:
                out.problems.append(f"{who}: no e-mail address in the stored people")
            else:
                out.people.append(person)
    return out
