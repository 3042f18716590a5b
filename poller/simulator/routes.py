"""The GET endpoints under `/{account_id}/api/v1/`, as a table of regex -> handler.

Each route declares which validators its responses carry (API.md §6: singles both,
`/projects.json`, `/projects/archived.json` and `/people.json` ETag only, to-do list
indexes and accesses Last-Modified only, the rest both) and whether it paginates
(50 per page; `/projects.json` and `/people.json` ignore `page` like the real API).
A paginated handler returns a `Listing`: the model objects in the API's order and how to
render one, so that a page renders its 50 items and no more (filters and sorting work on
the model objects, before the slice).

Handlers run with the account lock held and may raise `NotFound`, `Moved` or
`BadRequest`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from poller.simulator.account import Account, ListFilter, NotFound, TodoFilter
from poller.simulator.clock import parse_timestamp
from poller.simulator.model import CalendarEvent, Document, Message, Todo, Todolist, Upload
from poller.simulator.render import Renderer

Validators = Literal["both", "etag", "last_modified"]
PAGE_SIZE = 50


class BadRequest(Exception):
    """A parameter the server cannot read (answered 400)."""


@dataclass(frozen=True, slots=True)
class Ctx:
    """What a handler gets: the renderer, the account, the query and who is asking."""

    r: Renderer
    account: Account
    query: Mapping[str, str]
    person_id: int


Handler = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Listing:
    """A paginated answer: `items` (model objects, in the order the API lists them),
    each turned into its JSON shape by `render` only when its page is asked for."""

    items: Sequence[Any]
    render: Callable[[Any], Any]

    def page(self, number: int) -> list[Any]:
        """Page `number` (1-based) of the rendered listing: 50 renders, not the whole."""
        start = (number - 1) * PAGE_SIZE
        return [self.render(item) for item in self.items[start : start + PAGE_SIZE]]

    def everything(self) -> list[Any]:
        return [self.render(item) for item in self.items]


@dataclass(frozen=True, slots=True)
class Route:
    pattern: re.Pattern[str]
    handler: Handler
    validators: Validators
    paged: bool


ROUTES: list[Route] = []
ID = r"(\d+)(?:-[\w-]*)?"


def route(
    pattern: str, validators: Validators = "both", paged: bool = False
) -> Callable[[Handler], Handler]:
    """Register a handler for a path (relative to the API root, without `.json`)."""
    compiled = re.compile("^" + pattern.replace("{id}", ID) + r"\.json$")

    def register(handler: Handler) -> Handler:
        ROUTES.append(Route(compiled, handler, validators, paged))
        return handler

    return register


def find_route(path: str) -> tuple[Route, list[int]] | None:
    """The route for `path` (relative to the API root) and its integer path ids."""
    for candidate in ROUTES:
        m = candidate.pattern.match(path)
        if m:
            return candidate, [int(g) for g in m.groups()]
    return None


# ---------------------------------------------------------------------- people, projects


@route("projects", "etag")
def projects(c: Ctx) -> Any:
    return [c.r.project(p) for p in c.account.live_projects()]


@route("projects/archived", "etag", paged=True)
def archived_projects(c: Ctx) -> Any:
    return Listing(c.account.live_projects(archived=True), c.r.project)


@route("projects/{id}")
def project(c: Ctx, pid: int) -> Any:
    return c.r.project(c.account.visible_project(pid), full=True)


@route("people", "etag")
def people(c: Ctx) -> Any:
    return [c.r.person(p) for p in c.account.people.values() if not p.trashed]


@route("people/me")
def me(c: Ctx) -> Any:
    return c.r.person(c.account.visible_person(c.person_id), full=True)


@route("people/{id}")
def person(c: Ctx, pid: int) -> Any:
    return c.r.person(c.account.visible_person(pid), full=True)


@route("projects/{id}/accesses", "last_modified", paged=True)
def accesses(c: Ctx, pid: int) -> Any:
    project = c.account.visible_project(pid)
    people = [c.account.people[i] for i in project.access_ids]
    return Listing([p for p in people if not p.trashed], lambda p: c.r.person(p, is_client=False))


# ---------------------------------------------------------------------- feed


def _since(c: Ctx) -> datetime | None:
    raw = c.query.get("since")
    if raw is None:
        return None
    try:
        return parse_timestamp(raw, c.account.tz)
    except ValueError as exc:
        raise BadRequest(f"since: {exc} (percent-encode '+' as %2B)") from None


@route("events", paged=True)
def events(c: Ctx) -> Any:
    return Listing(c.account.feed(None, _since(c)), lambda e: c.r.event(e, bucket=True))


@route("people/{id}/events", paged=True)
def person_events(c: Ctx, pid: int) -> Any:
    c.account.visible_person(pid)
    mine = [e for e in c.account.feed(None, _since(c)) if e.creator_id == pid]
    return Listing(mine, lambda e: _without_creator(c.r.event(e, bucket=True)))


def _without_creator(event: dict[str, Any]) -> dict[str, Any]:
    event.pop("creator", None)
    return event


@route("projects/{id}/events", paged=True)
def project_events(c: Ctx, pid: int) -> Any:
    project = c.account.visible_project(pid)
    return Listing(c.account.feed(project, _since(c)), c.r.event)


# ---------------------------------------------------------------------- to-do lists, to-dos


def _all_lists(c: Ctx, which: ListFilter) -> Any:
    found = [t for p in c.account.live_projects() for t in c.account.todolists_of(p, which)]
    return Listing(found, lambda t: c.r.todolist(t, bucket=True))


@route("todolists", "last_modified", paged=True)
def todolists(c: Ctx) -> Any:
    return _all_lists(c, "active")


@route("todolists/completed", "last_modified", paged=True)
def todolists_completed(c: Ctx) -> Any:
    return _all_lists(c, "completed")


@route("todolists/trashed", "last_modified", paged=True)
def todolists_trashed(c: Ctx) -> Any:
    return _all_lists(c, "trashed")


def _lists(c: Ctx, pid: int, which: ListFilter) -> Any:
    project = c.account.visible_project(pid)
    return Listing(c.account.todolists_of(project, which), c.r.todolist)


@route("projects/{id}/todolists", "last_modified", paged=True)
def project_todolists(c: Ctx, pid: int) -> Any:
    return _lists(c, pid, "active")


@route("projects/{id}/todolists/completed", "last_modified", paged=True)
def project_todolists_completed(c: Ctx, pid: int) -> Any:
    return _lists(c, pid, "completed")


@route("projects/{id}/todolists/trashed", "last_modified", paged=True)
def project_todolists_trashed(c: Ctx, pid: int) -> Any:
    return _lists(c, pid, "trashed")


@route("projects/{id}/todolists/{id}")
def todolist(c: Ctx, pid: int, lid: int) -> Any:
    found = c.account.locate("todolist", lid, pid)
    assert isinstance(found, Todolist)
    return c.r.todolist_full(found, todos=c.query.get("exclude_todos") != "true")


def _due_filter(c: Ctx, todos: list[Todo]) -> list[Todo]:
    raw = c.query.get("due_since")
    if raw is None:
        return todos
    try:
        since = date.fromisoformat(raw)
    except ValueError:
        raise BadRequest("due_since must be YYYY-MM-DD") from None
    return [t for t in todos if t.due_on is not None and t.due_on >= since]


def _project_todos(c: Ctx, pid: int, which: TodoFilter) -> Any:
    project = c.account.visible_project(pid)
    return Listing(_due_filter(c, c.account.project_todos(project, which)), c.r.todo)


@route("projects/{id}/todos", paged=True)
def project_todos(c: Ctx, pid: int) -> Any:
    return _project_todos(c, pid, "all")


@route("projects/{id}/todos/completed", paged=True)
def project_todos_completed(c: Ctx, pid: int) -> Any:
    return _project_todos(c, pid, "completed")


@route("projects/{id}/todos/remaining", paged=True)
def project_todos_remaining(c: Ctx, pid: int) -> Any:
    return _project_todos(c, pid, "remaining")


def _list_todos(c: Ctx, pid: int, lid: int, which: TodoFilter) -> Any:
    found = c.account.locate("todolist", lid, pid)
    assert isinstance(found, Todolist)
    return Listing(_due_filter(c, c.account.todos_of(found, which)), c.r.todo)


@route("projects/{id}/todolists/{id}/todos", paged=True)
def list_todos(c: Ctx, pid: int, lid: int) -> Any:
    return _list_todos(c, pid, lid, "all")


@route("projects/{id}/todolists/{id}/todos/completed", paged=True)
def list_todos_completed(c: Ctx, pid: int, lid: int) -> Any:
    return _list_todos(c, pid, lid, "completed")


@route("projects/{id}/todolists/{id}/todos/remaining", paged=True)
def list_todos_remaining(c: Ctx, pid: int, lid: int) -> Any:
    return _list_todos(c, pid, lid, "remaining")


@route("projects/{id}/todolists/{id}/todos/trashed", paged=True)
def list_todos_trashed(c: Ctx, pid: int, lid: int) -> Any:
    return _list_todos(c, pid, lid, "trashed")


@route("projects/{id}/todos/{id}")
def todo(c: Ctx, pid: int, tid: int) -> Any:
    found = c.account.locate("todo", tid, pid)
    assert isinstance(found, Todo)
    return c.r.todo(found, full=True)


# ---------------------------------------------------------------------- topics, messages


@route("topics", paged=True)
def topics(c: Ctx) -> Any:
    pairs = [pair for p in c.account.live_projects() for pair in c.account.live_topics(p)]
    pairs.sort(key=lambda pair: (pair[1].updated_at, pair[0].id), reverse=True)
    return Listing(pairs, lambda pair: c.r.topic(*pair, bucket=True))


@route("topics/archived", paged=True)
def topics_archived(c: Ctx) -> Any:
    return []  # the simulator has no archived topics


@route("projects/{id}/topics", paged=True)
def project_topics(c: Ctx, pid: int) -> Any:
    project = c.account.visible_project(pid)
    return Listing(c.account.live_topics(project), lambda pair: c.r.topic(*pair))


@route("projects/{id}/topics/archived", paged=True)
def project_topics_archived(c: Ctx, pid: int) -> Any:
    c.account.visible_project(pid)
    return []


@route("projects/{id}/messages/{id}")
def message(c: Ctx, pid: int, mid: int) -> Any:
    found = c.account.locate("message", mid, pid)
    assert isinstance(found, Message)
    return c.r.message(found)


# ---------------------------------------------------------------------- documents, files


def _newest(items: list[Any]) -> list[Any]:
    return sorted(items, key=lambda i: (i.updated_at, i.id), reverse=True)


@route("documents", paged=True)
def documents(c: Ctx) -> Any:
    docs = [d for p in c.account.live_projects() for d in c.account.project_items(p, "document")]
    chosen = [d for d in _newest(docs) if isinstance(d, Document)]
    return Listing(chosen, lambda d: c.r.document(d, bucket=True))


@route("projects/{id}/documents", paged=True)
def project_documents(c: Ctx, pid: int) -> Any:
    docs = c.account.project_items(c.account.visible_project(pid), "document")
    return Listing([d for d in _newest(docs) if isinstance(d, Document)], c.r.document)


@route("projects/{id}/documents/{id}")
def document(c: Ctx, pid: int, did: int) -> Any:
    found = c.account.locate("document", did, pid)
    assert isinstance(found, Document)
    return c.r.document(found, full=True)


@route("attachments", paged=True)
def attachments(c: Ctx) -> Any:
    found = [a for p in c.account.live_projects() for a in c.account.live_attachments(p)]
    found.sort(key=lambda a: (a.created_at, a.id), reverse=True)
    return Listing(found, c.r.attachment)


@route("projects/{id}/attachments", paged=True)
def project_attachments(c: Ctx, pid: int) -> Any:
    project = c.account.visible_project(pid)
    return Listing(c.account.live_attachments(project), c.r.attachment)


@route("projects/{id}/attachments/{id}")
def attachment(c: Ctx, pid: int, aid: int) -> Any:
    c.account.visible_project(pid)
    found = c.account.attachments.get(aid)
    if found is None or found.trashed or found.project_id != pid:
        raise NotFound(f"attachment {aid}")
    return c.r.attachment(found)


@route("projects/{id}/uploads/{id}")
def upload(c: Ctx, pid: int, uid: int) -> Any:
    found = c.account.locate("upload", uid, pid)
    assert isinstance(found, Upload)
    return c.r.upload(found)


# ---------------------------------------------------------------------- calendar


def _is_past(c: Ctx, entry: CalendarEvent) -> bool:
    now = c.account.now()
    if isinstance(entry.ends_at, datetime):
        return entry.ends_at < now
    return entry.ends_at < now.astimezone(c.account.tz).date()


def _entries(c: Ctx, pid: int, past: bool) -> Any:
    found = c.account.project_items(c.account.visible_project(pid), "calendar_event")
    chosen = [e for e in found if isinstance(e, CalendarEvent) and _is_past(c, e) == past]
    chosen.sort(key=lambda e: (_sort_key(e.starts_at), e.id), reverse=past)
    return Listing(chosen, c.r.calendar_event)


def _sort_key(value: date | datetime) -> str:
    return value.isoformat() if isinstance(value, datetime) else value.isoformat() + "T00"


@route("projects/{id}/calendar_events", paged=True)
def calendar_events(c: Ctx, pid: int) -> Any:
    return _entries(c, pid, past=False)


@route("projects/{id}/calendar_events/past", paged=True)
def calendar_events_past(c: Ctx, pid: int) -> Any:
    return _entries(c, pid, past=True)


@route("projects/{id}/calendar_events/{id}")
def calendar_event(c: Ctx, pid: int, eid: int) -> Any:
    found = c.account.locate("calendar_event", eid, pid)
    assert isinstance(found, CalendarEvent)
    return c.r.calendar_event(found, full=True)
