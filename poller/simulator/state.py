"""The state of a fake Basecamp 2 account and the helpers every mutation shares.

`AccountState` holds the records and indexes; `account.Account` adds the mutations and
`queries.AccountQueries` the read side. Shared rules live here: `_touch` bumps an item,
its project and the project's section summary; `_event` appends to the activity feed
(unless silent); `locked` wraps a method in the account's one re-entrant lock.
"""

from __future__ import annotations

import bisect
import functools
import html
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

from poller.simulator.clock import (
    Clock,
    SystemClock,
    format_date,
    format_timestamp,
    now_ms,
    parse_offset,
)
from poller.simulator.model import (
    Attachment,
    CalendarEvent,
    Comment,
    Document,
    FeedEvent,
    IdSequence,
    Item,
    Message,
    Person,
    Project,
    SimChange,
    Todo,
    Todolist,
    Topic,
    Upload,
)

S = TypeVar("S", bound="AccountState")
P = ParamSpec("P")
R = TypeVar("R")
I = TypeVar("I", bound=Item)  # noqa: E741

TodoFilter = Literal["all", "remaining", "completed", "trashed"]
Era = Literal["current", "2013"]
ERAS: tuple[Era, ...] = ("current", "2013")
ListFilter = Literal["active", "completed", "trashed"]


class NotFound(Exception):
    """The requested thing does not exist, is trashed, or sits inside something trashed."""


class Moved(Exception):
    """The item exists but in another project; `project_id` is the right one."""

    def __init__(self, project_id: int) -> None:
        super().__init__(project_id)
        self.project_id = project_id


class Unset:
    """Marker for 'argument not given' where None is a meaningful value."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset()


def locked(fn: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Run the method with the account's lock held."""

    def wrapper(account: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with account.lock:
            return fn(account, *args, **kwargs)

    functools.update_wrapper(wrapper, fn)
    return wrapper


def escape_excerpt(text: str, limit: int = 100) -> str:
    """HTML-escape like Rails (`'` -> `&#39;`), cut to `limit` characters first."""
    return html.escape(text[:limit], quote=True).replace("&#x27;", "&#39;")


class AccountState:
    """Records, indexes and shared helpers of one account (see `Account` for the API).

    `clock` returns aware datetimes (default real time; use `ManualClock` in tests).
    `offset` is how timestamps are rendered: `"-05:00"` (default), `"Z"`, `"+02:00"`...
    `seed` makes ids deterministic. The owner person is created at once (`owner_id`).
    `era` picks the payload shapes: `"current"` (the docs examples) or `"2013"` (what
    accounts answered in 2013/2014: links are `url` only, never `app_url`, and feed
    events carry no `eventable` and no `private`).
    """

    def __init__(
        self,
        account_id: int = 999_999_999,
        *,
        name: str = "Simulated Co.",
        clock: Clock | None = None,
        seed: int = 0,
        offset: str = "-05:00",
        owner_name: str = "Demo Owner",
        owner_email: str = "demo@example.com",
        era: Era = "current",
    ) -> None:
        if era not in ERAS:
            raise ValueError(f"unknown era {era!r}; one of {ERAS}")
        self.era: Era = era
        self.lock = threading.RLock()
        self.account_id = account_id
        self.name = name
        self.clock: Clock = clock or SystemClock()
        self.offset = offset
        self.tz = parse_offset(offset)
        self.next_id = IdSequence(seed)
        self.people: dict[int, Person] = {}
        self.projects: dict[int, Project] = {}
        self.todolists: dict[int, Todolist] = {}
        self.todos: dict[int, Todo] = {}
        self.messages: dict[int, Message] = {}
        self.documents: dict[int, Document] = {}
        self.uploads: dict[int, Upload] = {}
        self.calendar_events: dict[int, CalendarEvent] = {}
        self.attachments: dict[int, Attachment] = {}
        self.topics: dict[int, Topic] = {}
        self.comment_index: dict[int, tuple[str, int]] = {}
        self.events: list[FeedEvent] = []  # sorted oldest first
        self.assigned: dict[int, set[int]] = {}
        self.owner_id = self._make_person(owner_name, owner_email, admin=True)
        # every mutation call from here on, oldest first (the owner above is not one)
        self.changes: list[SimChange] = []

    # ------------------------------------------------------------------ helpers

    def now(self) -> datetime:
        """The clock's time, truncated to milliseconds."""
        return now_ms(self.clock)

    def ts(self, when: datetime) -> str:
        """Render a timestamp in this account's offset."""
        return format_timestamp(when, self.offset)

    def _store(self, kind: str) -> dict[int, Any]:
        stores: dict[str, dict[int, Any]] = {
            "todolist": self.todolists,
            "todo": self.todos,
            "message": self.messages,
            "document": self.documents,
            "upload": self.uploads,
            "calendar_event": self.calendar_events,
        }
        if kind not in stores:
            raise ValueError(f"unknown item type {kind!r}; one of {sorted(stores)}")
        return stores[kind]

    def _get(self, kind: str, item_id: int) -> Item:
        item = self._store(kind).get(item_id)
        if item is None:
            raise KeyError(f"no {kind} {item_id}")
        assert isinstance(item, Item)
        return item

    def _typed(self, cls: type[I], item_id: int) -> I:
        item = self._get(cls.kind, item_id)
        assert isinstance(item, cls)
        return item

    def _by(self, by: int | None) -> int:
        person = self.owner_id if by is None else by
        if person not in self.people:
            raise KeyError(f"no person {person}")
        return person

    def _bump(self, project: Project, now: datetime, *sections: str) -> None:
        project.updated_at = now
        for section in sections:
            project.sections[section] = now

    def _touch(self, item: Item, now: datetime, *extra_sections: str) -> Project:
        item.updated_at = now
        project = self.projects[item.project_id]
        self._bump(project, now, item.section, *extra_sections)
        if isinstance(item, Todo):
            self.todolists[item.todolist_id].updated_at = now
        return project

    def _event(
        self,
        project: Project,
        by: int,
        action: str,
        target: str,
        eventable: Item | tuple[str, int, str],
        *,
        now: datetime,
        silent: bool,
        comment: Comment | None = None,
    ) -> int | None:
        """Append a feed event (unless silent); its id, or None."""
        if silent:
            return None
        if isinstance(eventable, Item):
            etype, eid = eventable.type_name, eventable.id
            path = f"projects/{eventable.project_id}/{eventable.segment}/{eventable.id}"
            private = eventable.private
        else:
            (etype, eid, path), private = eventable, False
        event = FeedEvent(
            id=self.next_id(),
            created_at=now,
            project_id=project.id,
            creator_id=by,
            action=action,
            target=target,
            eventable_type=etype,
            eventable_id=eid,
            eventable_path=path,
            private=private,
            comment_id=comment.id if comment else None,
            excerpt=escape_excerpt(comment.content) if comment else None,
        )
        key = (event.created_at, event.id)
        for feed in (self.events, project.events):
            if not feed or (feed[-1].created_at, feed[-1].id) < key:
                feed.append(event)
            else:
                bisect.insort(feed, event, key=lambda e: (e.created_at, e.id))
        project.last_event_at = now
        return event.id

    def _log(
        self,
        op: str,
        type_name: str,
        record_id: int,
        *,
        at: datetime,
        by: int | None,
        activity_id: int | None,
        fields: dict[str, tuple[Any, Any]] | None = None,
        parent: tuple[str, int] | None = None,
        project_id: int | None = None,
    ) -> None:
        """Record one mutation call in `changes` (see `SimChange`)."""
        self.changes.append(
            SimChange(
                seq=len(self.changes) + 1,
                at=at,
                op=op,
                type=type_name,
                id=record_id,
                parent=parent,
                by=by,
                activity_id=activity_id,
                fields=fields or {},
                project_id=project_id,
            )
        )

    def _new_item_common(self, project_id: int, by: int, now: datetime) -> dict[str, Any]:
        return {
            "id": self.next_id(),
            "project_id": project_id,
            "creator_id": by,
            "created_at": now,
            "updated_at": now,
            "subscriber_ids": [by],
        }

    def _live_project(self, project_id: int) -> Project:
        project = self.projects.get(project_id)
        if project is None:
            raise KeyError(f"no project {project_id}")
        return project

    def _add_item(self, project: Project, item: Item) -> None:
        self._store(item.kind)[item.id] = item
        if item.kind != "todo":
            project.item_ids[item.kind].append(item.id)

    def _trash(self, item: Item, by: int | None, silent: bool, what: str) -> None:
        who = self._by(by)
        now = self.now()
        fields = changed(trashed=(item.trashed, True))
        item.trashed = True
        project = self._touch(item, now, "topics") if item.topic_id else self._touch(item, now)
        activity = self._event(
            project, who, f"deleted {what}", item.title, item, now=now, silent=silent
        )
        self._log_item("trash", item, who, now, activity, fields)

    def _log_item(
        self,
        op: str,
        item: Item,
        who: int,
        now: datetime,
        activity: int | None,
        fields: dict[str, tuple[Any, Any]] | None = None,
    ) -> None:
        self._log(
            op,
            item.type_name,
            item.id,
            at=now,
            by=who,
            activity_id=activity,
            fields=fields,
            project_id=item.project_id,
        )

    def _open_topic(
        self, project: Project, item: Item, now: datetime, topic_id: int | None = None
    ) -> None:
        if item.topic_id is not None:
            return
        topic_id = topic_id or self.next_id()
        topic = Topic(id=topic_id, kind=item.kind, item_id=item.id, created_at=now)
        self.topics[topic.id] = topic
        item.topic_id = topic.id
        project.topic_ids.append(topic.id)

    def _topic_owner(self, topic_id: int) -> Item | None:
        topic = self.topics.get(topic_id)
        if topic is None:
            return None
        item = self._store(topic.kind).get(topic.item_id)
        return item if isinstance(item, Item) else None

    def _make_person(self, name: str, email: str | None, *, admin: bool) -> int:
        now = self.now()
        pid = self.next_id()
        email = email or f"{name.lower().replace(' ', '.')}@example.com"
        self.people[pid] = Person(
            id=pid,
            identity_id=self.next_id(),
            name=name,
            email_address=email,
            admin=admin,
            created_at=now,
            updated_at=now,
        )
        return pid


def changed(**pairs: tuple[Any, Any]) -> dict[str, tuple[Any, Any]]:
    """The `(old, new)` pairs whose values differ: a `SimChange.fields`."""
    return {name: pair for name, pair in pairs.items() if pair[0] != pair[1]}


def render_when(value: date | datetime | None, offset: str) -> str | None:
    """A date as "YYYY-MM-DD", a datetime as the API renders it, None as None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return format_timestamp(value, offset)
    return format_date(value)


def as_date(value: date | str | None) -> date | None:
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    if isinstance(value, datetime):
        return value.date()
    return date.fromisoformat(value)


def as_when(value: date | datetime | str) -> date | datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return value
    if len(value) == 10:
        return date.fromisoformat(value)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
