"""Turn Basecamp 2 JSON into `Record`s, or refuse it with `BadResponse`.

Real payloads carry quirks the parsers tolerate on purpose: `completed_at: false` for an
open to-do, `assignee: {}` when unassigned, slugged URLs (`/people/123-jane.json`), fields
missing from some endpoints (index lists lack `content`), unknown extra fields, and
several timestamp formats. What they refuse: a record without an integer `id`, or a field
of the wrong type (a string where a bool belongs, a list where an object belongs). A
refused payload turns into no event; the cycle fails and is retried.

A `Record` keeps only the fields change detection compares (`fields`), plus what an event
needs to describe it (title, links, people) in `meta`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from poller.errors import BadResponse

# watch name -> Basecamp type name, and the event-kind prefix of each type
WATCH_TYPES: dict[str, str] = {
    "projects": "Project",
    "people": "Person",
    "todolists": "Todolist",
    "todos": "Todo",
    "messages": "Message",
    "comments": "Comment",
    "documents": "Document",
    "uploads": "Upload",
    "calendar_events": "CalendarEvent",
}
KIND_PREFIX: dict[str, str] = {
    "Project": "project",
    "Person": "person",
    "Todolist": "todolist",
    "Todo": "todo",
    "Message": "message",
    "Comment": "comment",
    "Document": "document",
    "Upload": "upload",
    "CalendarEvent": "calendar_event",
}
COMMENTABLE = frozenset({"Todolist", "Todo", "Message", "Document", "Upload", "CalendarEvent"})

_PROJECT_IN_URL = re.compile(r"/projects/(\d+)")


def kind_prefix(rtype: str) -> str:
    """`CalendarEvent` -> `calendar_event`, and unknown types by the same rule."""
    if rtype in KIND_PREFIX:
        return KIND_PREFIX[rtype]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", rtype).lower() or "unknown"


def parse_ts(value: str | None) -> datetime | None:
    """Parse a Basecamp timestamp (any offset, `Z`, optional fraction) to aware UTC."""
    if not value:
        return None
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.astimezone(UTC)
    except (ValueError, OverflowError):  # year 1 / 9999 pushed out of range by the offset
        return None


def project_id_from_url(url: str | None) -> int | None:
    if not url:
        return None
    m = _PROJECT_IN_URL.search(url)
    return int(m.group(1)) if m else None


@dataclass
class Record:
    """One Basecamp item as change detection sees it."""

    type: str
    id: int
    project_id: int | None
    title: str
    updated_at: str | None
    fields: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    parent: tuple[str, int] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def trashed(self) -> bool:
        return bool(self.fields.get("trashed"))

    @property
    def private(self) -> bool:
        return bool(self.fields.get("private"))

    def stored(self) -> dict[str, Any]:
        """What the state database keeps (no raw payload: it stays small)."""
        return {"title": self.title, "fields": self.fields, "meta": self.meta}


# -- field checks -------------------------------------------------------------------


class _Reader:
    """Typed access to one JSON object, raising BadResponse naming the field."""

    def __init__(self, obj: Any, what: str, url: str) -> None:
        if not isinstance(obj, dict):
            raise BadResponse(f"{what}: expected an object, got {type(obj).__name__}", url=url)
        self.obj: dict[str, Any] = obj
        self.what = what
        self.url = url

    def _bad(self, key: str, expected: str) -> BadResponse:
        got = type(self.obj.get(key)).__name__
        return BadResponse(f"{self.what}.{key}: expected {expected}, got {got}", url=self.url)

    def has(self, key: str) -> bool:
        return key in self.obj

    def id(self, key: str = "id") -> int:
        value = self.obj.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, "an integer id")
        return value

    def opt_int(self, key: str) -> int | None:
        value = self.obj.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, "an integer")
        return value

    def text(self, key: str) -> str | None:
        value = self.obj.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._bad(key, "a string")
        return value

    def flag(self, key: str) -> bool | None:
        value = self.obj.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self._bad(key, "true or false")
        return value

    def obj_or_none(self, key: str) -> dict[str, Any] | None:
        value = self.obj.get(key)
        if value is None or value == {} or value == []:
            return None
        if not isinstance(value, dict):
            raise self._bad(key, "an object")
        return value

    def timestamp(self, key: str) -> str | None:
        value = self.text(key)
        if value is not None and parse_ts(value) is None:
            raise self._bad(key, "an ISO 8601 timestamp")
        return value

    def date_or_false(self, key: str) -> str | None:
        """`completed_at` style: a timestamp, or false/null for none."""
        value = self.obj.get(key)
        if value is None or value is False:
            return None
        if not isinstance(value, str) or parse_ts(value) is None:
            raise self._bad(key, "a timestamp or false")
        return value

    def list_(self, key: str) -> list[Any] | None:
        value = self.obj.get(key)
        if value is None:
            return None
        if not isinstance(value, list):
            raise self._bad(key, "a list")
        return value


def _person(r: _Reader, key: str) -> dict[str, Any] | None:
    value = r.obj.get(key)
    if type(value) is dict:  # the usual shape, without a reader of its own
        pid, name = value.get("id"), value.get("name")
        if type(pid) is int and (name is None or type(name) is str):
            return {"id": pid, "name": name}
    value = r.obj_or_none(key)
    if value is None:
        return None
    p = _Reader(value, f"{r.what}.{key}", r.url)
    pid = p.opt_int("id")
    if pid is None:
        return None
    return {"id": pid, "name": p.text("name")}


def person_ref(value: Any) -> dict[str, Any] | None:
    """`{id, name}` of a person object found outside a parsed record (an attachment's
    `creator`), or None when it is not one."""
    if not isinstance(value, dict):
        return None
    pid, name = value.get("id"), value.get("name")
    if isinstance(pid, bool) or not isinstance(pid, int):
        return None
    return {"id": pid, "name": name if isinstance(name, str) else None}


def _put(fields: dict[str, Any], r: _Reader, key: str, value: Any) -> None:
    """Record a field only when the payload had it: a missing field is unknown, not None."""
    if r.has(key):
        fields[key] = value


def _common(
    r: _Reader, rtype: str, project_hint: int | None
) -> tuple[int, int | None, dict[str, Any]]:
    rid = r.id()
    url = r.text("url")
    app_url = r.text("app_url")
    bucket = r.obj_or_none("bucket")
    project_id = project_id_from_url(url)
    if project_id is None and bucket is not None and bucket.get("type", "Project") == "Project":
        bid = bucket.get("id")
        project_id = bid if isinstance(bid, int) and not isinstance(bid, bool) else None
    if project_id is None:
        project_id = project_hint
    meta: dict[str, Any] = {
        "url": url,
        "app_url": app_url,
        "created_at": r.timestamp("created_at"),
        "creator": _person(r, "creator"),
    }
    return rid, project_id, meta


def _finish(
    rtype: str,
    r: _Reader,
    rid: int,
    project_id: int | None,
    title: str | None,
    fields: dict[str, Any],
    meta: dict[str, Any],
    parent: tuple[str, int] | None = None,
) -> Record:
    _put(fields, r, "private", bool(r.flag("private")))
    # Basecamp marks a trashed record `trashed: true` wherever it shows one; a record
    # without the key (active index items such as /people.json, older single GETs) is not
    # trashed. Recording that lets a later `trashed: true` count as a change.
    fields["trashed"] = bool(r.flag("trashed"))
    return Record(
        type=rtype,
        id=rid,
        project_id=project_id,
        title=title or f"{rtype} {rid}",
        updated_at=r.timestamp("updated_at"),
        fields=fields,
        meta=meta,
        parent=parent,
        raw=r.obj,
    )


# -- one parser per type -------------------------------------------------------------


def parse_project(obj: Any, url: str = "", project_hint: int | None = None) -> Record:
    r = _Reader(obj, "project", url)
    rid, _, meta = _common(r, "Project", None)
    fields: dict[str, Any] = {}
    for key in ("name", "description"):
        _put(fields, r, key, r.text(key))
    for key in ("archived", "draft", "template", "is_client_project"):
        _put(fields, r, key, bool(r.flag(key)))
    sections: dict[str, Any] = {}
    for name in (
        "accesses",
        "attachments",
        "calendar_events",
        "documents",
        "topics",
        "todolists",
        "forwards",
    ):
        block = r.obj.get(name)
        if isinstance(block, dict):
            b = _Reader(block, f"project.{name}", url)
            sections[name] = {
                "updated_at": b.timestamp("updated_at"),
                "count": b.opt_int("count"),
                "remaining_count": b.opt_int("remaining_count"),
                "completed_count": b.opt_int("completed_count"),
            }
        elif block is not None:
            raise BadResponse(f"project.{name}: expected an object", url=url)
    if sections:
        meta["sections"] = sections
    return _finish("Project", r, rid, rid, r.text("name"), fields, meta)


def parse_person(obj: Any, url: str = "", project_hint: int | None = None) -> Record:
    r = _Reader(obj, "person", url)
    rid, _, meta = _common(r, "Person", None)
    fields: dict[str, Any] = {}
    for key in ("name", "email_address"):
        _put(fields, r, key, r.text(key))
    _put(fields, r, "admin", bool(r.flag("admin")))
    return _finish("Person", r, rid, None, r.text("name"), fields, meta)


def parse_todolist(obj: Any, url: str = "", project_hint: int | None = None) -> Record:
    r = _Reader(obj, "todolist", url)
    rid, pid, meta = _common(r, "Todolist", project_hint)
    fields: dict[str, Any] = {}
    for key in ("name", "description"):
        _put(fields, r, key, r.text(key))
    _put(fields, r, "completed", bool(r.flag("completed")))
    return _finish("Todolist", r, rid, pid, r.text("name"), fields, meta)


def _assignee(r: _Reader) -> dict[str, Any] | None:
    value = r.obj_or_none("assignee")
    if value is None:
        return None
    a = _Reader(value, "todo.assignee", r.url)
    aid = a.opt_int("id")
    if aid is None:
        return None
    return {"id": aid, "type": a.text("type") or "Person", "name": a.text("name")}


def parse_todo(obj: Any, url: str = "", project_hint: int | None = None) -> Record:
    r = _Reader(obj, "todo", url)
    rid, pid, meta = _common(r, "Todo", project_hint)
    fields: dict[str, Any] = {}
    _put(fields, r, "content", r.text("content"))
    completed_at = r.date_or_false("completed_at")
    if r.has("completed"):
        fields["completed"] = bool(r.flag("completed"))
    elif r.has("completed_at"):
        fields["completed"] = completed_at is not None
    if r.has("due_on") or r.has("due_at"):
        fields["due_on"] = r.text("due_on") or r.text("due_at")
    _put(fields, r, "assignee", _assignee(r))
    todolist_id = r.opt_int("todolist_id")
    if todolist_id is None:
        nested = r.obj_or_none("todolist")
        if nested is not None:
            todolist_id = _Reader(nested, "todo.todolist", url).opt_int("id")
    if todolist_id is not None:
        fields["todolist_id"] = todolist_id
    meta["completer"] = _person(r, "completer")
    meta["completed_at"] = completed_at
    meta["comments_count"] = r.opt_int("comments_count")
    return _finish("Todo", r, rid, pid, r.text("content"), fields, meta)


def parse_message(obj: Any, url: str = "", project_hint: int | None = None) -> Record:
    r = _Reader(obj, "message", url)
    rid, pid, meta = _common(r, "Message", project_hint)
    fields: dict[str, Any] = {}
    for key in ("subject", "content"):
        _put(fields, r, key, r.text(key))
    return _finish("Message", r, rid, pid, r.text("subject"), fields, meta)


def parse_document(obj: Any, url: str = "", project_hint: int | None = None) -> Record:
    r = _Reader(obj, "document", url)
    rid, pid, meta = _common(r, "Document", project_hint)
    fields: dict[str, Any] = {}
    for key in ("title", "content"):
        _put(fields, r, key, r.text(key))
    meta["last_updater"] = _person(r, "last_updater")
    return _finish("Document", r, rid, pid, r.text("title"), fields, meta)


def parse_upload(obj: Any, url: str = "", project_hint: int | None = None) -> Record:
    r = _Reader(obj, "upload", url)
    rid, pid, meta = _common(r, "Upload", project_hint)
    fields: dict[str, Any] = {}
    _put(fields, r, "content", r.text("content"))
    names: list[str] = []
    for index, att in enumerate(r.list_("attachments") or []):
        a = _Reader(att, f"upload.attachments[{index}]", url)
        names.append(a.text("name") or "")
        if meta.get("creator") is None:
            meta["creator"] = _person(a, "creator")
    if r.has("attachments"):
        fields["files"] = names
    title = (names[0] if names else None) or r.text("content")
    return _finish("Upload", r, rid, pid, title, fields, meta)


def parse_calendar_event(obj: Any, url: str = "", project_hint: int | None = None) -> Record:
    r = _Reader(obj, "calendar_event", url)
    rid, pid, meta = _common(r, "CalendarEvent", project_hint)
    fields: dict[str, Any] = {}
    for key in ("summary", "description", "starts_at", "ends_at"):
        _put(fields, r, key, r.text(key))
    _put(fields, r, "all_day", bool(r.flag("all_day")))
    meta["comments_count"] = r.opt_int("comments_count")
    return _finish("CalendarEvent", r, rid, pid, r.text("summary"), fields, meta)


def parse_comment(obj: Any, url: str, parent: tuple[str, int], project_id: int | None) -> Record:
    r = _Reader(obj, "comment", url)
    rid, _, meta = _common(r, "Comment", project_id)
    fields: dict[str, Any] = {}
    _put(fields, r, "content", r.text("content"))
    return _finish("Comment", r, rid, project_id, None, fields, meta, parent=parent)


PARSERS: dict[str, Callable[..., Record]] = {
    "Project": parse_project,
    "Person": parse_person,
    "Todolist": parse_todolist,
    "Todo": parse_todo,
    "Message": parse_message,
    "Document": parse_document,
    "Upload": parse_upload,
    "CalendarEvent": parse_calendar_event,
}


def parse(rtype: str, obj: Any, url: str = "", project_hint: int | None = None) -> Record:
    """Parse one item of a known type (see PARSERS)."""
    return PARSERS[rtype](obj, url, project_hint)


def parse_comments(item: Record, url: str) -> list[Record] | None:
    """The comments embedded in a commentable's single GET; None when it carries none
    (an index payload). Comments without an id (a docs quirk) are skipped."""
    raw = item.raw.get("comments")
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise BadResponse(f"{item.type}.comments: expected a list", url=url)
    out = []
    for c in raw:
        if isinstance(c, dict) and "id" not in c:
            continue
        out.append(parse_comment(c, url, (item.type, item.id), item.project_id))
    return out


# -- activity (the /events.json feed) ------------------------------------------------


@dataclass(frozen=True)
class Activity:
    """One entry of the activity feed."""

    id: int
    created_at: str
    updated_at: str
    eventable_type: str
    eventable_id: int | None
    eventable_url: str | None
    app_url: str | None
    project_id: int | None
    project_name: str | None
    creator: dict[str, Any] | None
    action: str
    target: str
    summary: str
    excerpt: str | None
    private: bool
    raw: dict[str, Any] = field(repr=False, compare=False, hash=False)

    @property
    def key(self) -> tuple[int, str]:
        return (self.id, self.updated_at)


_TYPE_IN_URL = re.compile(
    r"/(todos|todolists|messages|documents|uploads|calendar_events|attachments|forwards)/(\d+)"
)
# a person (`/people/149087659-jason-fried.json`) or a project itself (`/projects/1.json`)
_OWNER_IN_URL = re.compile(r"/(people|projects)/(\d+)(?:-[^/]*)?(?:\.json)?(?:[?#].*)?$")
_URL_TYPES = {
    "todos": "Todo",
    "todolists": "Todolist",
    "messages": "Message",
    "documents": "Document",
    "uploads": "Upload",
    "calendar_events": "CalendarEvent",
    "attachments": "Attachment",
    "forwards": "Forward",
    "people": "Person",
    "projects": "Project",
}


def parse_activity(obj: Any, url: str = "") -> Activity:
    r = _Reader(obj, "event", url)
    aid = r.id()
    created_at = r.timestamp("created_at")
    if created_at is None:
        raise BadResponse("event.created_at: missing", url=url)
    updated_at = r.timestamp("updated_at") or created_at
    ev = r.obj_or_none("eventable")
    etype: str | None = None
    eid: int | None = None
    eurl = r.text("url")
    eapp = r.text("html_url")
    if ev is not None:
        e = _Reader(ev, "event.eventable", url)
        etype = e.text("type")
        eid = e.opt_int("id")
        eurl = e.text("url") or eurl
        eapp = e.text("app_url") or eapp
    if etype is None and eurl:
        m = _TYPE_IN_URL.search(eurl) or _OWNER_IN_URL.search(eurl)
        if m:
            etype, eid = _URL_TYPES[m.group(1)], int(m.group(2))
    bucket = r.obj_or_none("bucket")
    project_id = project_id_from_url(eurl)
    project_name = None
    if bucket is not None and bucket.get("type", "Project") == "Project":
        b = _Reader(bucket, "event.bucket", url)
        project_id = b.opt_int("id") or project_id
        project_name = b.text("name")
    return Activity(
        id=aid,
        created_at=created_at,
        updated_at=updated_at,
        eventable_type=etype or "Unknown",
        eventable_id=eid,
        eventable_url=eurl,
        app_url=eapp,
        project_id=project_id,
        project_name=project_name,
        creator=_person(r, "creator"),
        action=r.text("action") or "",
        target=r.text("target") or "",
        summary=r.text("summary") or "",
        excerpt=r.text("excerpt"),
        private=bool(r.flag("private")),
        raw=r.obj,
    )
