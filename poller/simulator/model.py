"""The simulator's records: plain mutable dataclasses owned by an `Account`.

Nothing here renders JSON (see `render.py`) or enforces Basecamp's rules (see
`account.py`). Trashing only sets `trashed`: records stay in their indexes so the
`trashed` list variants can show them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, ClassVar

# item kind -> (Basecamp type name, URL segment, project section it belongs to)
KINDS: dict[str, tuple[str, str, str]] = {
    "todolist": ("Todolist", "todolists", "todolists"),
    "todo": ("Todo", "todos", "todolists"),
    "message": ("Message", "messages", "topics"),
    "document": ("Document", "documents", "documents"),
    "upload": ("Upload", "uploads", "attachments"),
    "calendar_event": ("CalendarEvent", "calendar_events", "calendar_events"),
}

SECTIONS = ("accesses", "attachments", "calendar_events", "documents", "topics", "todolists")


class IdSequence:
    """Large, increasing, deterministic ids: a seeded start and seeded gaps of 1..97."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self._next = 100_000_000 + self._rng.randrange(800_000_000)

    def __call__(self) -> int:
        value = self._next
        self._next += self._rng.randrange(1, 98)
        return value


@dataclass(slots=True, kw_only=True)
class Person:
    id: int
    identity_id: int
    name: str
    email_address: str
    admin: bool
    created_at: datetime
    updated_at: datetime
    trashed: bool = False

    @property
    def slug(self) -> str:
        """`123-jane-doe`: the id-slug path segment Basecamp uses in people URLs."""
        words = "".join(c.lower() if c.isalnum() else " " for c in self.name).split()
        return "-".join([str(self.id), *words])


@dataclass(slots=True, kw_only=True)
class Comment:
    id: int
    content: str
    creator_id: int
    created_at: datetime
    updated_at: datetime
    trashed: bool = False


@dataclass(slots=True, kw_only=True)
class Item:
    """Anything commentable that lives in a project."""

    kind: ClassVar[str] = ""
    id: int
    project_id: int
    creator_id: int
    created_at: datetime
    updated_at: datetime
    private: bool = False
    trashed: bool = False
    comments: list[Comment] = field(default_factory=list)
    subscriber_ids: list[int] = field(default_factory=list)
    topic_id: int | None = None

    @property
    def type_name(self) -> str:
        return KINDS[self.kind][0]

    @property
    def segment(self) -> str:
        return KINDS[self.kind][1]

    @property
    def section(self) -> str:
        return KINDS[self.kind][2]

    @property
    def title(self) -> str:
        raise NotImplementedError

    def live_comments(self) -> list[Comment]:
        return [c for c in self.comments if not c.trashed]


@dataclass(slots=True, kw_only=True)
class Todolist(Item):
    kind: ClassVar[str] = "todolist"
    name: str
    description: str | None = None
    position: int = 1
    todo_ids: list[int] = field(default_factory=list)

    @property
    def title(self) -> str:
        return self.name


@dataclass(slots=True, kw_only=True)
class Todo(Item):
    kind: ClassVar[str] = "todo"
    todolist_id: int
    content: str
    position: int = 1
    assignee_id: int | None = None
    due_on: date | None = None
    completed_at: datetime | None = None
    completer_id: int | None = None

    @property
    def title(self) -> str:
        return self.content


@dataclass(slots=True, kw_only=True)
class Message(Item):
    kind: ClassVar[str] = "message"
    subject: str
    content: str

    @property
    def title(self) -> str:
        return self.subject


@dataclass(slots=True, kw_only=True)
class Document(Item):
    kind: ClassVar[str] = "document"
    doc_title: str
    content: str
    last_updater_id: int

    @property
    def title(self) -> str:
        return self.doc_title


@dataclass(slots=True, kw_only=True)
class Upload(Item):
    kind: ClassVar[str] = "upload"
    content: str
    attachment_ids: list[int] = field(default_factory=list)

    @property
    def title(self) -> str:
        return self.content


@dataclass(slots=True, kw_only=True)
class CalendarEvent(Item):
    kind: ClassVar[str] = "calendar_event"
    summary: str
    description: str
    starts_at: date | datetime
    ends_at: date | datetime

    @property
    def all_day(self) -> bool:
        return not isinstance(self.starts_at, datetime)

    @property
    def title(self) -> str:
        return self.summary


@dataclass(slots=True, kw_only=True)
class Attachment:
    id: int
    key: str
    name: str
    byte_size: int
    content_type: str
    project_id: int
    upload_id: int
    creator_id: int
    created_at: datetime
    updated_at: datetime
    trashed: bool = False


@dataclass(slots=True, kw_only=True)
class Topic:
    """A discussion: exists for a message from the start, for others from the 1st comment."""

    id: int
    kind: str
    item_id: int
    created_at: datetime


@dataclass(slots=True, kw_only=True)
class FeedEvent:
    """One entry of the activity feed (`/events.json`)."""

    id: int
    created_at: datetime
    project_id: int
    creator_id: int
    action: str
    target: str
    eventable_type: str
    eventable_id: int
    eventable_path: str  # relative to the account root, e.g. "projects/1/todos/2"
    private: bool = False
    comment_id: int | None = None
    excerpt: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SimChange:
    """One call of a mutation method, as `account.changes` records it (a test oracle).

    `seq` increases by one per call; `at` is the account's time of the call; `op` is one
    of `OPS`; `type` the Basecamp type name of the record (`Todo`, `Comment`, `Person`...)
    and `id` its id (for `comment`/`trash_comment` the comment's id, with `parent` the
    commented item as `(type, id)`; `None` otherwise); `by` who did it (`None` for
    `add_person`/`trash_person`, which have no actor); `activity_id` the id of the feed
    event the call appended, `None` when it was silent; `fields` maps each field the call
    changed to `(old, new)`, in the poller's names and the API's renderings (`due_on`
    as "YYYY-MM-DD", `starts_at` as the API renders it): a call that changed nothing
    has `{}`. `project_id` is the project the record is in after the call (`None` for
    people, except `grant_access`, which names the project the person joined).
    """

    seq: int
    at: datetime
    op: str
    type: str
    id: int
    parent: tuple[str, int] | None
    by: int | None
    activity_id: int | None
    fields: dict[str, tuple[Any, Any]]
    project_id: int | None = None


# every `SimChange.op`
OPS = (
    "create",
    "update",
    "complete",
    "uncomplete",
    "trash",
    "move",
    "comment",
    "trash_comment",
    "archive",
    "unarchive",
    "grant_access",
)


@dataclass(slots=True, kw_only=True)
class Project:
    id: int
    name: str
    description: str | None
    creator_id: int
    created_at: datetime
    updated_at: datetime
    archived: bool = False
    trashed: bool = False
    starred: bool = False
    is_client_project: bool = False
    color: str = "3185c5"
    last_event_at: datetime | None = None
    sections: dict[str, datetime | None] = field(default_factory=lambda: dict.fromkeys(SECTIONS))
    access_ids: list[int] = field(default_factory=list)
    item_ids: dict[str, list[int]] = field(
        default_factory=lambda: {k: [] for k in KINDS if k != "todo"}
    )
    attachment_ids: list[int] = field(default_factory=list)
    topic_ids: list[int] = field(default_factory=list)
    events: list[FeedEvent] = field(default_factory=list)  # sorted oldest first
