"""The read side of an account, used by the API routes: lookups that answer like the
real API (NotFound for trashed things, Moved for items asked for under the wrong project),
filtered lists, the feed, and `snapshot()` for tests.

None of these take the lock themselves (except `snapshot`): the API holds the account lock
for the whole request.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from poller.simulator.clock import (
    format_date,
)
from poller.simulator.model import (
    KINDS,
    Attachment,
    CalendarEvent,
    Document,
    FeedEvent,
    Item,
    Message,
    Person,
    Project,
    Todo,
    Todolist,
    Topic,
    Upload,
)
from poller.simulator.state import (
    AccountState,
    ListFilter,
    Moved,
    NotFound,
    TodoFilter,
    locked,
)


class AccountQueries(AccountState):
    """Lookups and lists over the live state."""

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
        """All live to-dos of a project's live lists, list by list in list order."""
        out: list[Todo] = []
        for list_id in project.item_ids["todolist"]:
            todolist = self.todolists[list_id]
            if not todolist.trashed:
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

    @locked
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
