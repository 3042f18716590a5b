"""A stateful fake Basecamp 2 account and the mutations a user could make in it.

Every mutation behaves like Basecamp: it bumps the item's `updated_at`, its project's
`updated_at` and the project's section summary (`todolists`, `topics`, ...), and appends
an activity-feed event unless `silent=True` (Basecamp does not promise events for trash
or archive, so tests need changes that leave no trace in the feed). Every mutation takes
`by=<person id>` (default: the account owner) and returns the id of what it created.

All state is guarded by `account.lock` (re-entrant): mutations take it themselves; the
HTTP app holds it while it renders a response, so a server thread never sees a
half-made change.

Lookups used by the API raise `NotFound` (missing, trashed, or inside something trashed)
or `Moved` (the item lives in another project; carries the right project id).
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import html
import threading
from collections.abc import Callable, Iterable
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
    KINDS,
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
    Todo,
    Todolist,
    Topic,
    Upload,
)

P = ParamSpec("P")
R = TypeVar("R")
I = TypeVar("I", bound=Item)  # noqa: E741

TodoFilter = Literal["all", "remaining", "completed", "trashed"]
ListFilter = Literal["active", "completed", "trashed"]


class NotFound(Exception):
    """The requested thing does not exist, is trashed, or sits inside something trashed."""


class Moved(Exception):
    """The item exists but in another project; `project_id` is the right one."""

    def __init__(self, project_id: int) -> None:
        super().__init__(project_id)
        self.project_id = project_id


class _Unset:
    """Marker for 'argument not given' where None is a meaningful value."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


def _locked(fn: Callable[Concatenate[Account, P], R]) -> Callable[Concatenate[Account, P], R]:
    def wrapper(account: Account, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with account.lock:
            return fn(account, *args, **kwargs)

    functools.update_wrapper(wrapper, fn)
    return wrapper


def escape_excerpt(text: str, limit: int = 100) -> str:
    """HTML-escape like Rails (`'` -> `&#39;`), cut to `limit` characters first."""
    return html.escape(text[:limit], quote=True).replace("&#x27;", "&#39;")


class Account:
    """One Basecamp 2 account: people, projects and everything in them, plus the feed.

    `clock` returns aware datetimes (default real time; use `ManualClock` in tests).
    `offset` is how timestamps are rendered: `"-05:00"` (default), `"Z"`, `"+02:00"`...
    `seed` makes ids deterministic. The owner person is created at once (`owner_id`).
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
    ) -> None:
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
        self.owner_id = self.add_person(owner_name, owner_email, admin=True)

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
    ) -> None:
        if silent:
            return
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
        item.trashed = True
        project = self._touch(item, now, "topics") if item.topic_id else self._touch(item, now)
        self._event(project, who, f"deleted {what}", item.title, item, now=now, silent=silent)

    # ------------------------------------------------------------------ people, projects

    @_locked
    def add_person(self, name: str, email: str | None = None, *, admin: bool = False) -> int:
        """Add a person to the account (no feed event: people are not in a project)."""
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

    @_locked
    def trash_person(self, person_id: int) -> None:
        """Remove a person from the account: their GET answers 404, lists drop them."""
        person = self.people[person_id]
        person.trashed = True
        person.updated_at = self.now()

    @_locked
    def create_project(
        self,
        name: str,
        description: str | None = None,
        *,
        client: bool = False,
        by: int | None = None,
        silent: bool = False,
    ) -> int:
        """Create a project; its creator gets access. Feed: 'created the project'."""
        who = self._by(by)
        now = self.now()
        project = Project(
            id=self.next_id(),
            name=name,
            description=description,
            creator_id=who,
            created_at=now,
            updated_at=now,
            is_client_project=client,
        )
        project.access_ids.append(who)
        project.sections["accesses"] = now
        self.projects[project.id] = project
        ev = ("Project", project.id, f"projects/{project.id}")
        self._event(project, who, "created the project", name, ev, now=now, silent=silent)
        return project.id

    def _project_flag(
        self, project_id: int, attr: str, value: bool, action: str, by: int | None, silent: bool
    ) -> None:
        with self.lock:
            who = self._by(by)
            project = self._live_project(project_id)
            now = self.now()
            setattr(project, attr, value)
            project.updated_at = now
            ev = ("Project", project.id, f"projects/{project.id}")
            self._event(project, who, action, project.name, ev, now=now, silent=silent)

    def archive_project(
        self, project_id: int, *, by: int | None = None, silent: bool = False
    ) -> None:
        """Archive: leaves /projects.json, shows in /projects/archived.json."""
        self._project_flag(project_id, "archived", True, "archived the project", by, silent)

    def unarchive_project(
        self, project_id: int, *, by: int | None = None, silent: bool = False
    ) -> None:
        """Undo `archive_project`."""
        self._project_flag(project_id, "archived", False, "unarchived the project", by, silent)

    def trash_project(
        self, project_id: int, *, by: int | None = None, silent: bool = False
    ) -> None:
        """Trash: the project and everything in it answer 404 and leave every list."""
        self._project_flag(project_id, "trashed", True, "deleted the project", by, silent)

    @_locked
    def update_project(
        self,
        project_id: int,
        *,
        name: str | None = None,
        description: str | _Unset | None = UNSET,
        by: int | None = None,
        silent: bool = False,
    ) -> None:
        """Rename / re-describe a project. Feed: 'edited the project'."""
        who = self._by(by)
        project = self._live_project(project_id)
        now = self.now()
        if name is not None:
            project.name = name
        if not isinstance(description, _Unset):
            project.description = description
        project.updated_at = now
        ev = ("Project", project.id, f"projects/{project.id}")
        self._event(project, who, "edited the project", project.name, ev, now=now, silent=silent)

    @_locked
    def grant_access(
        self, project_id: int, person_id: int, *, by: int | None = None, silent: bool = False
    ) -> None:
        """Give a person access to a project (bumps the `accesses` section)."""
        who = self._by(by)
        project = self._live_project(project_id)
        person = self.people[person_id]
        if person_id in project.access_ids:
            return
        now = self.now()
        project.access_ids.append(person_id)
        self._bump(project, now, "accesses")
        ev = ("Person", person.id, f"people/{person.slug}")
        action = f"gave {person.name} access to the project"
        self._event(project, who, action, project.name, ev, now=now, silent=silent)

    # ------------------------------------------------------------------ to-do lists

    @_locked
    def create_todolist(
        self,
        project_id: int,
        name: str,
        description: str | None = None,
        *,
        private: bool = False,
        by: int | None = None,
        silent: bool = False,
    ) -> int:
        """Create a to-do list at the end of the project's lists."""
        who = self._by(by)
        project = self._live_project(project_id)
        now = self.now()
        todolist = Todolist(
            **self._new_item_common(project_id, who, now),
            name=name,
            description=description,
            private=private,
            position=len(project.item_ids["todolist"]) + 1,
        )
        self._add_item(project, todolist)
        self._touch(todolist, now)
        action = "created a to-do list<span>:</span>"
        self._event(project, who, action, name, todolist, now=now, silent=silent)
        return todolist.id

    @_locked
    def update_todolist(
        self,
        list_id: int,
        *,
        name: str | None = None,
        description: str | _Unset | None = UNSET,
        by: int | None = None,
        silent: bool = False,
    ) -> None:
        """Rename / re-describe a list."""
        who = self._by(by)
        todolist = self._typed(Todolist, list_id)
        now = self.now()
        if name is not None:
            todolist.name = name
        if not isinstance(description, _Unset):
            todolist.description = description
        project = self._touch(todolist, now)
        action = "edited a to-do list<span>:</span>"
        self._event(project, who, action, todolist.name, todolist, now=now, silent=silent)

    @_locked
    def trash_todolist(self, list_id: int, *, by: int | None = None, silent: bool = False) -> None:
        """Trash a list (its to-dos become unreachable with it)."""
        self._trash(self._typed(Todolist, list_id), by, silent, "a to-do list")

    @_locked
    def move_todolist(
        self, list_id: int, to_project: int, *, by: int | None = None, silent: bool = False
    ) -> None:
        """Move a list and its to-dos to another project. Ids stay; old URLs answer 301."""
        who = self._by(by)
        todolist = self._typed(Todolist, list_id)
        source = self._live_project(todolist.project_id)
        target = self._live_project(to_project)
        now = self.now()
        source.item_ids["todolist"].remove(list_id)
        target.item_ids["todolist"].append(list_id)
        todolist.project_id = to_project
        todolist.position = len(target.item_ids["todolist"])
        for todo_id in todolist.todo_ids:
            self.todos[todo_id].project_id = to_project
        for topic_id in list(source.topic_ids):
            owner = self._topic_owner(topic_id)
            if owner is not None and owner.project_id == to_project:
                source.topic_ids.remove(topic_id)
                target.topic_ids.append(topic_id)
        self._bump(source, now, "todolists")
        self._touch(todolist, now)
        action = f"moved a to-do list from {source.name}<span>:</span>"
        self._event(target, who, action, todolist.name, todolist, now=now, silent=silent)

    # ------------------------------------------------------------------ to-dos

    @_locked
    def create_todo(
        self,
        list_id: int,
        content: str,
        assignee: int | None = None,
        due_on: date | str | None = None,
        *,
        by: int | None = None,
        silent: bool = False,
    ) -> int:
        """Add an open to-do at the end of a list. Feed: 'added a to-do'."""
        who = self._by(by)
        todolist = self._typed(Todolist, list_id)
        project = self.projects[todolist.project_id]
        now = self.now()
        if assignee is not None and assignee not in self.people:
            raise KeyError(f"no person {assignee}")
        todo = Todo(
            **self._new_item_common(todolist.project_id, who, now),
            todolist_id=list_id,
            content=content,
            position=len(todolist.todo_ids) + 1,
            assignee_id=assignee,
            due_on=_as_date(due_on),
            private=todolist.private,
        )
        self._add_item(project, todo)
        todolist.todo_ids.append(todo.id)
        if assignee is not None:
            self.assigned.setdefault(assignee, set()).add(todo.id)
        self._touch(todo, now)
        self._event(project, who, "added a to-do", content, todo, now=now, silent=silent)
        return todo.id

    @_locked
    def update_todo(
        self,
        todo_id: int,
        *,
        content: str | None = None,
        assignee: int | _Unset | None = UNSET,
        due_on: date | str | _Unset | None = UNSET,
        by: int | None = None,
        silent: bool = False,
    ) -> None:
        """Edit a to-do. `assignee=None` unassigns, `due_on=None` clears the date.

        Feed: 're-assigned a to-do to NAME' when only the assignee changed, 'changed the
        due date' when only the date changed, otherwise 'edited a to-do'.
        """
        who = self._by(by)
        todo = self._typed(Todo, todo_id)
        now = self.now()
        changed: list[str] = []
        if content is not None and content != todo.content:
            todo.content = content
            changed.append("content")
        if not isinstance(assignee, _Unset) and assignee != todo.assignee_id:
            if todo.assignee_id is not None:
                self.assigned.get(todo.assignee_id, set()).discard(todo_id)
            if assignee is not None:
                self.assigned.setdefault(assignee, set()).add(todo_id)
            todo.assignee_id = assignee
            changed.append("assignee")
        if not isinstance(due_on, _Unset) and _as_date(due_on) != todo.due_on:
            todo.due_on = _as_date(due_on)
            changed.append("due_on")
        project = self._touch(todo, now)
        if changed == ["assignee"]:
            name = self.people[assignee].name if isinstance(assignee, int) else "nobody"
            action = f"re-assigned a to-do to {name}<span>:</span>"
        elif changed == ["due_on"]:
            action = "changed the due date of a to-do<span>:</span>"
        else:
            action = "edited a to-do<span>:</span>"
        self._event(project, who, action, todo.content, todo, now=now, silent=silent)

    @_locked
    def complete_todo(self, todo_id: int, *, by: int | None = None, silent: bool = False) -> None:
        """Complete a to-do (sets `completed_at` and `completer`)."""
        who = self._by(by)
        todo = self._typed(Todo, todo_id)
        now = self.now()
        todo.completed_at, todo.completer_id = now, who
        project = self._touch(todo, now)
        self._event(project, who, "completed a to-do", todo.content, todo, now=now, silent=silent)

    @_locked
    def uncomplete_todo(self, todo_id: int, *, by: int | None = None, silent: bool = False) -> None:
        """Re-open a completed to-do."""
        who = self._by(by)
        todo = self._typed(Todo, todo_id)
        now = self.now()
        todo.completed_at, todo.completer_id = None, None
        project = self._touch(todo, now)
        self._event(project, who, "re-opened a to-do", todo.content, todo, now=now, silent=silent)

    @_locked
    def trash_todo(self, todo_id: int, *, by: int | None = None, silent: bool = False) -> None:
        """Trash a to-do: 404 on GET, only in the list's `todos/trashed.json`."""
        todo = self._typed(Todo, todo_id)
        self._trash(todo, by, silent, "a to-do")
        if todo.assignee_id is not None:
            self.assigned.get(todo.assignee_id, set()).discard(todo_id)

    # ------------------------------------------------------------------ messages, comments

    @_locked
    def create_message(
        self,
        project_id: int,
        subject: str,
        content: str = "",
        *,
        private: bool = False,
        by: int | None = None,
        silent: bool = False,
    ) -> int:
        """Post a message; it is its own topic (topic id == message id)."""
        who = self._by(by)
        project = self._live_project(project_id)
        now = self.now()
        message = Message(
            **self._new_item_common(project_id, who, now),
            subject=subject,
            content=content,
            private=private,
        )
        self._add_item(project, message)
        self._open_topic(project, message, now, topic_id=message.id)
        self._touch(message, now)
        action = "posted a message<span>:</span>"
        self._event(project, who, action, subject, message, now=now, silent=silent)
        return message.id

    @_locked
    def update_message(
        self,
        message_id: int,
        *,
        subject: str | None = None,
        content: str | None = None,
        by: int | None = None,
        silent: bool = False,
    ) -> None:
        """Edit a message's subject and/or content."""
        who = self._by(by)
        message = self._typed(Message, message_id)
        now = self.now()
        message.subject = subject if subject is not None else message.subject
        message.content = content if content is not None else message.content
        project = self._touch(message, now)
        action = "edited a message<span>:</span>"
        self._event(project, who, action, message.subject, message, now=now, silent=silent)

    @_locked
    def trash_message(
        self, message_id: int, *, by: int | None = None, silent: bool = False
    ) -> None:
        """Trash a message (its topic disappears with it)."""
        self._trash(self._typed(Message, message_id), by, silent, "a message")

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

    @_locked
    def add_comment(
        self,
        item_type: str,
        item_id: int,
        content: str,
        *,
        by: int | None = None,
        silent: bool = False,
    ) -> int:
        """Comment on a message, todo, todolist, document, upload or calendar_event.

        The first comment on a non-message opens its topic. Bumps the item and the
        `topics` section. Feed: 'commented on' with excerpt and `#comment_<id>` link.
        """
        who = self._by(by)
        item = self._get(item_type, item_id)
        project = self.projects[item.project_id]
        now = self.now()
        comment = Comment(
            id=self.next_id(), content=content, creator_id=who, created_at=now, updated_at=now
        )
        item.comments.append(comment)
        if who not in item.subscriber_ids:
            item.subscriber_ids.append(who)
        self.comment_index[comment.id] = (item.kind, item.id)
        self._open_topic(project, item, now)
        self._touch(item, now, "topics")
        self._event(
            project, who, "commented on", item.title, item, now=now, silent=silent, comment=comment
        )
        return comment.id

    @_locked
    def trash_comment(self, comment_id: int, *, by: int | None = None, silent: bool = True) -> None:
        """Trash a comment (silent by default: Basecamp shows no event for it)."""
        who = self._by(by)
        kind, item_id = self.comment_index[comment_id]
        item = self._get(kind, item_id)
        now = self.now()
        for comment in item.comments:
            if comment.id == comment_id:
                comment.trashed = True
                comment.updated_at = now
        project = self._touch(item, now, "topics")
        self._event(project, who, "deleted a comment on", item.title, item, now=now, silent=silent)

    # ------------------------------------------------------------------ documents, uploads

    @_locked
    def create_document(
        self,
        project_id: int,
        title: str,
        content: str = "",
        *,
        by: int | None = None,
        silent: bool = False,
    ) -> int:
        """Create a text document. Feed: 'created a document'."""
        who = self._by(by)
        project = self._live_project(project_id)
        now = self.now()
        document = Document(
            **self._new_item_common(project_id, who, now),
            doc_title=title,
            content=content,
            last_updater_id=who,
        )
        self._add_item(project, document)
        self._touch(document, now)
        action = "created a document<span>:</span>"
        self._event(project, who, action, title, document, now=now, silent=silent)
        return document.id

    @_locked
    def update_document(
        self,
        document_id: int,
        *,
        title: str | None = None,
        content: str | None = None,
        by: int | None = None,
        silent: bool = False,
    ) -> None:
        """Edit a document; its `last_updater` becomes `by`."""
        who = self._by(by)
        document = self._typed(Document, document_id)
        now = self.now()
        document.doc_title = title if title is not None else document.doc_title
        document.content = content if content is not None else document.content
        document.last_updater_id = who
        project = self._touch(document, now)
        action = "edited a document<span>:</span>"
        self._event(project, who, action, document.doc_title, document, now=now, silent=silent)

    @_locked
    def trash_document(
        self, document_id: int, *, by: int | None = None, silent: bool = False
    ) -> None:
        """Trash a document: 404 on GET, gone from the document lists."""
        self._trash(self._typed(Document, document_id), by, silent, "a document")

    @_locked
    def create_upload(
        self,
        project_id: int,
        content: str,
        filename: str,
        *,
        content_type: str = "application/octet-stream",
        byte_size: int = 1024,
        by: int | None = None,
        silent: bool = False,
    ) -> int:
        """Upload a file: an Upload plus one Attachment (bumps `attachments`)."""
        who = self._by(by)
        project = self._live_project(project_id)
        now = self.now()
        upload = Upload(**self._new_item_common(project_id, who, now), content=content)
        key = hashlib.blake2b(f"{upload.id}:{filename}".encode(), digest_size=20).hexdigest()
        attachment = Attachment(
            id=self.next_id(),
            key=key,
            name=filename,
            byte_size=byte_size,
            content_type=content_type,
            project_id=project_id,
            upload_id=upload.id,
            creator_id=who,
            created_at=now,
            updated_at=now,
        )
        upload.attachment_ids.append(attachment.id)
        self.attachments[attachment.id] = attachment
        project.attachment_ids.append(attachment.id)
        self._add_item(project, upload)
        self._touch(upload, now)
        self._event(project, who, "uploaded a file", filename, upload, now=now, silent=silent)
        return upload.id

    @_locked
    def trash_upload(self, upload_id: int, *, by: int | None = None, silent: bool = False) -> None:
        """Trash an upload and its attachments."""
        upload = self._typed(Upload, upload_id)
        for attachment_id in upload.attachment_ids:
            self.attachments[attachment_id].trashed = True
        self._trash(upload, by, silent, "a file")

    # ------------------------------------------------------------------ calendar events

    @_locked
    def create_calendar_event(
        self,
        project_id: int,
        summary: str,
        starts_at: date | datetime | str,
        ends_at: date | datetime | str | None = None,
        description: str = "",
        *,
        by: int | None = None,
        silent: bool = False,
    ) -> int:
        """Schedule an entry. A `date` (or 'YYYY-MM-DD') makes it all-day."""
        who = self._by(by)
        project = self._live_project(project_id)
        now = self.now()
        start = _as_when(starts_at)
        entry = CalendarEvent(
            **self._new_item_common(project_id, who, now),
            summary=summary,
            description=description,
            starts_at=start,
            ends_at=_as_when(ends_at) if ends_at is not None else start,
        )
        self._add_item(project, entry)
        self._touch(entry, now)
        self._event(project, who, "added an event", summary, entry, now=now, silent=silent)
        return entry.id

    @_locked
    def update_calendar_event(
        self,
        event_id: int,
        *,
        summary: str | None = None,
        description: str | None = None,
        starts_at: date | datetime | str | None = None,
        ends_at: date | datetime | str | None = None,
        by: int | None = None,
        silent: bool = False,
    ) -> None:
        """Edit or re-schedule an entry."""
        who = self._by(by)
        entry = self._typed(CalendarEvent, event_id)
        now = self.now()
        entry.summary = summary if summary is not None else entry.summary
        entry.description = description if description is not None else entry.description
        if starts_at is not None:
            entry.starts_at = _as_when(starts_at)
        if ends_at is not None:
            entry.ends_at = _as_when(ends_at)
        elif starts_at is not None:
            entry.ends_at = entry.starts_at
        project = self._touch(entry, now)
        self._event(project, who, "edited an event", entry.summary, entry, now=now, silent=silent)

    @_locked
    def trash_calendar_event(
        self, event_id: int, *, by: int | None = None, silent: bool = False
    ) -> None:
        """Trash a calendar entry."""
        self._trash(self._typed(CalendarEvent, event_id), by, silent, "an event")

    # ------------------------------------------------------------------ bulk

    def populate(self, **kwargs: Any) -> list[int]:
        """Build many projects fast; see `poller.simulator.populate.populate`."""
        from poller.simulator.populate import populate

        return populate(self, **kwargs)

    # ------------------------------------------------------------------ lookups (API side)

    def visible_project(self, project_id: int) -> Project:
        """A non-trashed project, else NotFound."""
        project = self.projects.get(project_id)
        if project is None or project.trashed:
            raise NotFound(f"project {project_id}")
        return project

    def is_live(self, item: Item) -> bool:
        """Not trashed, not inside a trashed list or project."""
        if item.trashed or self.projects[item.project_id].trashed:
            return False
        return not (isinstance(item, Todo) and self.todolists[item.todolist_id].trashed)

    def locate(self, kind: str, item_id: int, project_id: int) -> Item:
        """The live item requested under `project_id`: NotFound, or Moved to the right one."""
        self.visible_project(project_id)
        item = self._store(kind).get(item_id)
        if not isinstance(item, Item) or not self.is_live(item):
            raise NotFound(f"{kind} {item_id}")
        if item.project_id != project_id:
            raise Moved(item.project_id)
        return item

    def visible_person(self, person_id: int) -> Person:
        person = self.people.get(person_id)
        if person is None or person.trashed:
            raise NotFound(f"person {person_id}")
        return person

    def live_projects(self, archived: bool = False) -> list[Project]:
        """Non-trashed projects, active or archived, newest update first."""
        found = [p for p in self.projects.values() if not p.trashed and p.archived == archived]
        return sorted(found, key=lambda p: (p.updated_at, p.id), reverse=True)

    def project_items(self, project: Project, kind: str) -> list[Item]:
        """The project's live items of one kind (not todos), in creation order."""
        store = self._store(kind)
        return [store[i] for i in project.item_ids[kind] if not store[i].trashed]

    def todolists_of(self, project: Project, which: ListFilter) -> list[Todolist]:
        """Lists of a project: active (not completed), completed, or trashed."""
        lists = [self.todolists[i] for i in project.item_ids["todolist"]]
        if which == "trashed":
            return [t for t in lists if t.trashed]
        live = [t for t in lists if not t.trashed]
        want_done = which == "completed"
        return [t for t in live if self.list_completed(t) == want_done]

    def list_counts(self, todolist: Todolist) -> tuple[int, int]:
        """(remaining, completed) live to-dos of a list."""
        remaining = completed = 0
        for todo_id in todolist.todo_ids:
            todo = self.todos[todo_id]
            if todo.trashed:
                continue
            if todo.completed_at is None:
                remaining += 1
            else:
                completed += 1
        return remaining, completed

    def list_completed(self, todolist: Todolist) -> bool:
        remaining, completed = self.list_counts(todolist)
        return remaining == 0 and completed > 0

    def todos_of(self, todolist: Todolist, which: TodoFilter) -> list[Todo]:
        """To-dos of a list: all (live), remaining, completed or trashed; by position."""
        todos = [self.todos[i] for i in todolist.todo_ids]
        if which == "trashed":
            return [t for t in todos if t.trashed]
        todos = [t for t in todos if not t.trashed]
        if which == "remaining":
            return [t for t in todos if t.completed_at is None]
        if which == "completed":
            return [t for t in todos if t.completed_at is not None]
        return todos

    def project_todos(self, project: Project, which: TodoFilter) -> list[Todo]:
        """All live to-dos of a project's live lists, list by list."""
        out: list[Todo] = []
        for todolist in self.todolists_of(project, "active") + self.todolists_of(
            project, "completed"
        ):
            out.extend(self.todos_of(todolist, which))
        return out

    def live_topics(self, project: Project) -> list[tuple[Topic, Item]]:
        """Topics whose item is live, latest update first."""
        pairs: list[tuple[Topic, Item]] = []
        for topic_id in project.topic_ids:
            owner = self._topic_owner(topic_id)
            if owner is not None and self.is_live(owner):
                pairs.append((self.topics[topic_id], owner))
        return sorted(pairs, key=lambda p: (p[1].updated_at, p[0].id), reverse=True)

    def live_attachments(self, project: Project) -> list[Attachment]:
        """Non-trashed attachments of a project, newest first."""
        found = [self.attachments[i] for i in project.attachment_ids]
        return sorted(
            (a for a in found if not a.trashed), key=lambda a: (a.created_at, a.id), reverse=True
        )

    def feed(self, project: Project | None, since: datetime | None) -> list[FeedEvent]:
        """Feed events created strictly after `since`, newest first (live projects only)."""
        events = project.events if project is not None else self.events
        start = 0
        if since is not None:
            start = bisect.bisect_right(events, since, key=lambda e: e.created_at)
        chosen = events[start:]
        if project is None:
            chosen = [e for e in chosen if not self.projects[e.project_id].trashed]
        return chosen[::-1]

    # ------------------------------------------------------------------ snapshot

    @_locked
    def snapshot(self) -> dict[tuple[str, int], dict[str, Any]]:
        """The live state as plain dicts keyed by (type, id), for comparing with a mirror.

        Types: person, project, todolist, todo, message, comment, document, upload,
        attachment, calendar_event. Trashed things (and things inside trashed lists or
        projects) are left out; archived projects stay, with `archived: True`.
        Timestamps are rendered as the API renders them.
        """
        out: dict[tuple[str, int], dict[str, Any]] = {}
        for person in self.people.values():
            if not person.trashed:
                out[("person", person.id)] = {
                    "id": person.id,
                    "name": person.name,
                    "email_address": person.email_address,
                    "admin": person.admin,
                    "updated_at": self.ts(person.updated_at),
                }
        for project in self.projects.values():
            if project.trashed:
                continue
            out[("project", project.id)] = {
                "id": project.id,
                "name": project.name,
                "description": project.description,
                "archived": project.archived,
                "updated_at": self.ts(project.updated_at),
                "access_ids": list(project.access_ids),
            }
            for kind in project.item_ids:
                for item in self.project_items(project, kind):
                    self._snap_item(out, item)
            for todo in self.project_todos(project, "all"):
                self._snap_item(out, todo)
            for attachment in self.live_attachments(project):
                out[("attachment", attachment.id)] = {
                    "id": attachment.id,
                    "project_id": project.id,
                    "name": attachment.name,
                    "upload_id": attachment.upload_id,
                    "updated_at": self.ts(attachment.updated_at),
                }
        return out

    def _snap_item(self, out: dict[tuple[str, int], dict[str, Any]], item: Item) -> None:
        record: dict[str, Any] = {
            "id": item.id,
            "project_id": item.project_id,
            "title": item.title,
            "updated_at": self.ts(item.updated_at),
            "comments_count": len(item.live_comments()),
        }
        if isinstance(item, Todo):
            record.update(
                todolist_id=item.todolist_id,
                content=item.content,
                completed=item.completed_at is not None,
                assignee_id=item.assignee_id,
                due_on=format_date(item.due_on) if item.due_on else None,
            )
        elif isinstance(item, Todolist):
            record.update(name=item.name, description=item.description)
        elif isinstance(item, Message | Document | Upload):
            record["content"] = item.content
        elif isinstance(item, CalendarEvent):
            record.update(description=item.description, all_day=item.all_day)
        out[(item.kind, item.id)] = record
        for comment in item.live_comments():
            out[("comment", comment.id)] = {
                "id": comment.id,
                "project_id": item.project_id,
                "parent": (item.kind, item.id),
                "content": comment.content,
                "creator_id": comment.creator_id,
                "updated_at": self.ts(comment.updated_at),
            }

    def all_items(self, kind: str) -> Iterable[Item]:
        """Every record of one kind, trashed ones too."""
        if kind not in KINDS:
            raise ValueError(kind)
        return list(self._store(kind).values())


def _as_date(value: date | str | None) -> date | None:
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    if isinstance(value, datetime):
        return value.date()
    return date.fromisoformat(value)


def _as_when(value: date | datetime | str) -> date | datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return value
    if len(value) == 10:
        return date.fromisoformat(value)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
