"""Basecamp people in a real state database (through the Store, as a poll stores them),
and events whose item names an assignee, a creator and subscribers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from poller.events import sample_event
from poller.people import StoredPeople
from poller.store import CycleWrite, Store, StoredRecord

ACCOUNT = 999999999  # sample_event's
ANN = {"id": 101, "name": "Ann Able", "email_address": "ann@example.test"}
BOB = {"id": 102, "name": "Bob Baker", "email_address": "bob@example.test"}
CAROL = {"id": 103, "name": "Carol Cole", "email_address": "carol@example.test"}
NOMAIL = {"id": 104, "name": "Nick No-Mail", "email_address": ""}
GONE = {"id": 105, "name": "Gina Gone", "email_address": "gina@example.test"}
STRANGER = {"id": 999, "name": "Sam Stranger"}  # named by Basecamp, never stored


def person_record(person: dict[str, Any], state: str = "active") -> StoredRecord:
    fields = {k: person[k] for k in ("name", "email_address") if k in person}
    return StoredRecord(
        type="Person",
        id=person["id"],
        project_id=None,
        parent_type=None,
        parent_id=None,
        updated_at="2024-01-01T00:00:00Z",
        state=state,
        data={"title": person["name"], "fields": {**fields, "trashed": False}, "meta": {}},
    )


def store_people(path: Path, account_id: int = ACCOUNT) -> StoredPeople:
    """Ann, Bob, Carol, Nick (no address) and Gina (removed) stored in the state
    database at `path`; the read-only look-up a handler gets over it."""
    store = Store(path)
    try:
        records = [person_record(p) for p in (ANN, BOB, CAROL, NOMAIL)]
        records.append(person_record(GONE, state="trashed"))
        store.commit_cycle(CycleWrite(account_id, records=records), lambda event: ())
    finally:
        store.close()
    return StoredPeople(path)


def _ref(person: dict[str, Any]) -> dict[str, Any]:
    return {"id": person["id"], "name": person["name"]}


def routed_event(
    *,
    assignee: dict[str, Any] | None = ANN,
    creator: dict[str, Any] | None = BOB,
    subscribers: tuple[dict[str, Any], ...] = (ANN, BOB, CAROL),
    kind: str = "todo_completed",
    n: int = 1,
) -> dict[str, Any]:
    """A to-do event whose `details.record` (the to-do as Basecamp returned it) names
    these people."""
    event = sample_event()
    event["id"] = f"bcx_routed_{kind}_{n}"
    event["kind"] = kind
    record: dict[str, Any] = {
        "id": event["recording"]["id"],
        "content": event["recording"]["title"],
        "assignee": {**_ref(assignee), "type": "Person"} if assignee else None,
        "creator": _ref(creator) if creator else None,
        "subscribers": [_ref(p) for p in subscribers],
    }
    event["details"] = {"record": record}
    verb = _VERBS.get(kind, kind.replace("_", " "))
    event["summary"] = f"{event['creator']['name']} {verb}: {event['recording']['title']}"
    return event


_VERBS = {
    "todo_created": "created a to-do",
    "todo_completed": "completed a to-do",
    "comment_created": "commented on a to-do",
    "todo_assignment_changed": "re-assigned a to-do",
}
