"""Turn simulator records into the JSON shapes Basecamp 2 returns (see examples/).

A `Renderer` is made per request with the base URL the client used, so `url` fields
point back at whichever server or transport served them. The quirks are deliberate:
`completed_at: false` for open to-dos, `assignee: {}` when unassigned, `attachments` as a
count on topics, `bucket` only on account-wide lists, people URLs slugged.

Links follow the docs examples and recorded bodies: listings, embedded records, to-dos
and calendar entries carry `url`/`app_url`; the single GETs of projects, people,
to-do lists, messages, documents and uploads carry neither; comments never have their
own. An account of the 2013 era (`Account(era="2013")`) renders every link as `url`
only and feed events without `eventable` or `private`.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import Any

from poller.simulator.account import Account
from poller.simulator.clock import format_date
from poller.simulator.model import (
    Attachment,
    CalendarEvent,
    Comment,
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

Json = dict[str, Any]


class Renderer:
    """Payload builders for one account and one base URL (e.g. `http://127.0.0.1:8000`)."""

    def __init__(self, account: Account, base_url: str) -> None:
        self.account = account
        self.base = base_url.rstrip("/")
        self.root = f"{self.base}/{account.account_id}"
        self.old = account.era == "2013"
        self._list_cache: dict[int, Json] = {}

    # ------------------------------------------------------------------ basics

    def api_url(self, path: str) -> str:
        return f"{self.root}/api/v1/{path}.json"

    def app_url(self, path: str) -> str:
        return f"{self.root}/{path}"

    def links(self, path: str) -> Json:
        """`url` and `app_url` (2013 era: `url` only)."""
        if self.old:
            return {"url": self.api_url(path)}
        return {"url": self.api_url(path), "app_url": self.app_url(path)}

    @staticmethod
    def unlinked(payload: Json) -> Json:
        """A copy without the top-level `url`/`app_url` (what single GETs look like)."""
        return {k: v for k, v in payload.items() if k not in ("url", "app_url")}

    def ts(self, when: datetime | None) -> str | None:
        return None if when is None else self.account.ts(when)

    def when(self, value: date | datetime) -> str:
        if isinstance(value, datetime):
            return self.account.ts(value)
        return format_date(value)

    def creator(self, person_id: int) -> Json:
        person = self.account.people[person_id]
        digest = hashlib.blake2b(person.email_address.encode(), digest_size=20).hexdigest()
        return {
            "id": person.id,
            "name": person.name,
            "avatar_url": f"https://asset0.37img.com/global/{digest}/avatar.96.gif?r=3",
            "fullsize_avatar_url": f"https://asset0.37img.com/global/{digest}/original.gif?r=3",
        }

    def brief(self, person_id: int) -> Json:
        return {"id": person_id, "name": self.account.people[person_id].name}

    def bucket(self, project_id: int, color: bool = False) -> Json:
        project = self.account.projects[project_id]
        out: Json = {"id": project.id, "name": project.name, "type": "Project"}
        if color:
            out["color"] = project.color
        return out | self.links(f"projects/{project.id}")

    @staticmethod
    def item_path(item: Item) -> str:
        return f"projects/{item.project_id}/{item.segment}/{item.id}"

    # ------------------------------------------------------------------ people, projects

    def person(self, person: Person, *, full: bool = False, is_client: bool | None = None) -> Json:
        out: Json = {
            "id": person.id,
            "identity_id": person.identity_id,
            "name": person.name,
            "email_address": person.email_address,
            "admin": person.admin,
        }
        if is_client is not None:
            out["is_client"] = is_client
        out |= {"trashed": person.trashed} | {
            k: v for k, v in self.creator(person.id).items() if k.endswith("avatar_url")
        }
        out |= {"created_at": self.ts(person.created_at), "updated_at": self.ts(person.updated_at)}
        if not full:
            return out | self.links(f"people/{person.slug}")
        acc = self.account
        mine = [e for e in acc.events if e.creator_id == person.id]
        assigned = [acc.todos[i] for i in acc.assigned.get(person.id, ())]
        assigned = [t for t in assigned if acc.is_live(t) and t.completed_at is None]
        out["events"] = {
            "count": len(mine),
            "updated_at": self.ts(mine[-1].created_at) if mine else None,
        } | self.links(f"people/{person.slug}/events")
        out["assigned_todos"] = {
            "count": len(assigned),
            "updated_at": self.ts(max((t.updated_at for t in assigned), default=None)),
        } | self.links(f"people/{person.slug}/assigned_todos")
        return out

    def project(self, project: Project, *, full: bool = False) -> Json:
        path = f"projects/{project.id}"
        out: Json = {
            "id": project.id,
            "name": project.name,
            "description": project.description,
            "archived": project.archived,
            "created_at": self.ts(project.created_at),
            "updated_at": self.ts(project.updated_at),
            "last_event_at": self.ts(project.last_event_at),
            "template": False,
            "starred": project.starred,
            "trashed": project.trashed,
            "draft": False,
            "is_client_project": project.is_client_project,
            "color": project.color,
        }
        if not full:
            return out | self.links(path)
        acc = self.account
        out["creator"] = self.creator(project.creator_id)
        counts = {
            "accesses": len(project.access_ids),
            "attachments": len(acc.live_attachments(project)),
            "calendar_events": len(acc.project_items(project, "calendar_event")),
            "documents": len(acc.project_items(project, "document")),
            "topics": len(acc.live_topics(project)),
        }
        for section, count in counts.items():
            out[section] = {
                "count": count,
                "updated_at": self.ts(project.sections[section]) if count else None,
            } | self.links(f"{path}/{section}")
        remaining = len(acc.todolists_of(project, "active"))
        completed = len(acc.todolists_of(project, "completed"))
        out["todolists"] = {
            "remaining_count": remaining,
            "completed_count": completed,
            "updated_at": (
                self.ts(project.sections["todolists"]) if remaining + completed else None
            ),
        } | self.links(f"{path}/todolists")
        return out

    # ------------------------------------------------------------------ comments etc.

    def comment(self, comment: Comment) -> Json:
        return {
            "id": comment.id,
            "content": comment.content,
            "created_at": self.ts(comment.created_at),
            "updated_at": self.ts(comment.updated_at),
            "private": False,
            "trashed": comment.trashed,
            "attachments": [],
            "creator": self.creator(comment.creator_id),
        }

    def discussion(self, item: Item) -> Json:
        return {
            "comments": [self.comment(c) for c in item.live_comments()],
            "subscribers": [self.brief(p) for p in item.subscriber_ids],
        }

    # ------------------------------------------------------------------ to-do lists, to-dos

    def todolist(self, todolist: Todolist, *, bucket: bool = False) -> Json:
        if not bucket and todolist.id in self._list_cache:
            return self._list_cache[todolist.id]
        remaining, completed = self.account.list_counts(todolist)
        out: Json = {
            "id": todolist.id,
            "name": todolist.name,
            "description": todolist.description,
            "created_at": self.ts(todolist.created_at),
            "updated_at": self.ts(todolist.updated_at),
            "completed": remaining == 0 and completed > 0,
            "position": todolist.position,
            "private": todolist.private,
            "trashed": todolist.trashed,
            "completed_count": completed,
            "remaining_count": remaining,
            "creator": self.creator(todolist.creator_id),
        } | self.links(self.item_path(todolist))
        if bucket:
            out["bucket"] = self.bucket(todolist.project_id)
        else:
            self._list_cache[todolist.id] = out
        return out

    def todolist_full(self, todolist: Todolist, *, todos: bool = True) -> Json:
        """The single GET: no `url`/`app_url`; `todos` unless `exclude_todos=true`."""
        out = self.unlinked(self.todolist(todolist))
        if todos:
            out["todos"] = {
                which: [self.todo_brief(t) for t in self.account.todos_of(todolist, which)]
                for which in ("remaining", "completed", "trashed")
            }
        return out | self.discussion(todolist)

    def assignee(self, person_id: int | None) -> Json:
        if person_id is None:
            return {}
        return {"id": person_id, "type": "Person", "name": self.account.people[person_id].name}

    def todo_brief(self, todo: Todo) -> Json:
        """A to-do as embedded in its list's `todos.{remaining,completed,trashed}`."""
        out: Json = {
            "id": todo.id,
            "content": todo.content,
            "due_at": format_date(todo.due_on) if todo.due_on else None,
            "comments_count": len(todo.live_comments()),
            "created_at": self.ts(todo.created_at),
            "updated_at": self.ts(todo.updated_at),
            "assignee": self.assignee(todo.assignee_id),
            "position": todo.position,
        } | self.links(self.item_path(todo))
        if todo.completed_at is not None:
            out["completed_at"] = self.ts(todo.completed_at)
            if todo.completer_id is not None:
                out["completer"] = self.brief(todo.completer_id)
        return out

    def todo(self, todo: Todo, *, full: bool = False) -> Json:
        due = format_date(todo.due_on) if todo.due_on else None
        out: Json = {
            "id": todo.id,
            "todolist_id": todo.todolist_id,
            "position": todo.position,
            "content": todo.content,
            "due_at": due,
            "due_on": due,
            "created_at": self.ts(todo.created_at),
            "updated_at": self.ts(todo.updated_at),
            "completed_at": self.ts(todo.completed_at) if todo.completed_at else False,
            "comments_count": len(todo.live_comments()),
            "private": todo.private,
            "trashed": todo.trashed,
            "creator": self.creator(todo.creator_id),
            "assignee": self.assignee(todo.assignee_id),
            "completed": todo.completed_at is not None,
        }
        if todo.completer_id is not None:
            out["completer"] = self.brief(todo.completer_id)
        out |= self.links(self.item_path(todo))
        if full:
            return out | {"attachments": []} | self.discussion(todo)
        out["todolist"] = self.todolist(self.account.todolists[todo.todolist_id])
        return out

    # ------------------------------------------------------------------ topics, messages

    def topic(self, topic: Topic, item: Item, *, bucket: bool = False) -> Json:
        comments = item.live_comments()
        last = comments[-1] if comments else None
        if last is not None:
            excerpt, updater = last.content, last.creator_id
        else:
            excerpt = item.content if isinstance(item, Message) else ""
            updater = item.creator_id
        attachments = len(item.attachment_ids) if isinstance(item, Upload) else 0
        out: Json = {
            "id": topic.id,
            "title": item.title,
            "excerpt": excerpt[:100],
            "created_at": self.ts(topic.created_at),
            "updated_at": self.ts(item.updated_at),
            "attachments": attachments,
            "private": item.private,
            "trashed": item.trashed,
            "last_updater": self.brief(updater),
            "topicable": {"id": item.id, "type": item.type_name} | self.links(self.item_path(item)),
        }
        if bucket:
            out["bucket"] = self.bucket(item.project_id)
        return out

    def message(self, message: Message) -> Json:
        return {
            "id": message.id,
            "subject": message.subject,
            "created_at": self.ts(message.created_at),
            "updated_at": self.ts(message.updated_at),
            "content": message.content,
            "private": message.private,
            "trashed": message.trashed,
            "creator": self.creator(message.creator_id),
        } | self.discussion(message)

    # ------------------------------------------------------------------ documents, files

    def document(self, document: Document, *, full: bool = False, bucket: bool = False) -> Json:
        out: Json = {
            "id": document.id,
            "title": document.doc_title,
            "created_at": self.ts(document.created_at),
            "updated_at": self.ts(document.updated_at),
        }
        if not full:
            out |= self.links(self.item_path(document))
        out |= {"private": document.private, "trashed": document.trashed}
        if bucket:
            out["bucket"] = self.bucket(document.project_id, color=True)
        if full:
            out |= {
                "content": document.content,
                "last_updater": self.brief(document.last_updater_id),
                "creator": self.creator(document.creator_id),
            } | self.discussion(document)
        return out

    def attachment(self, attachment: Attachment, *, embedded: bool = False) -> Json:
        folder = f"projects/{attachment.project_id}/attachments/{attachment.id}/{attachment.key}"
        out: Json = {
            "id": attachment.id,
            "key": attachment.key,
            "name": attachment.name,
            "byte_size": attachment.byte_size,
            "content_type": attachment.content_type,
            "created_at": self.ts(attachment.created_at),
            "updated_at": self.ts(attachment.updated_at),
            "url": f"{self.root}/api/v1/{folder}/original/{attachment.name}",
            "app_url": f"{self.root}/{folder}/original/{attachment.name}",
            "thumbnail_url": f"{self.root}/{folder}/thumbnail.png",
            "private": False,
            "trashed": attachment.trashed,
            "tags": [],
            "creator": self.creator(attachment.creator_id),
        }
        if self.old:
            del out["app_url"]
        if embedded:
            for key in ("id", "updated_at", "thumbnail_url", "private", "trashed", "tags"):
                out.pop(key)
            return out
        upload_path = f"projects/{attachment.project_id}/uploads/{attachment.upload_id}"
        out["attachable"] = {"id": attachment.upload_id, "type": "Upload"} | self.links(upload_path)
        return out

    def upload(self, upload: Upload) -> Json:
        attachments = [self.account.attachments[i] for i in upload.attachment_ids]
        return {
            "id": upload.id,
            "created_at": self.ts(upload.created_at),
            "updated_at": self.ts(upload.updated_at),
            "content": upload.content,
            "trashed": upload.trashed,
            "attachments": [self.attachment(a, embedded=True) for a in attachments],
        } | self.discussion(upload)

    # ------------------------------------------------------------------ calendar

    def calendar_event(self, entry: CalendarEvent, *, full: bool = False) -> Json:
        out: Json = {
            "id": entry.id,
            "summary": entry.summary,
            "description": entry.description,
            "created_at": self.ts(entry.created_at),
            "updated_at": self.ts(entry.updated_at),
            "all_day": entry.all_day,
            "starts_at": self.when(entry.starts_at),
            "ends_at": self.when(entry.ends_at),
        }
        if not full:
            out["comments_count"] = len(entry.live_comments())
        out |= {
            "private": entry.private,
            "trashed": entry.trashed,
            "creator": self.creator(entry.creator_id),
        } | self.links(self.item_path(entry))
        return out | self.discussion(entry) if full else out

    # ------------------------------------------------------------------ feed

    def event(self, event: FeedEvent, *, bucket: bool = False) -> Json:
        """A feed entry. 2013 era: no `eventable`, no `private`, and an activity about a
        person (access granted) links its `html_url` to the project, as recorded."""
        links = self.links(event.eventable_path)
        page = event.eventable_path
        if self.old and event.eventable_type == "Person":
            page = f"projects/{event.project_id}"
        html_url = self.app_url(page)
        if event.comment_id is not None:
            html_url += f"#comment_{event.comment_id}"
        out: Json = {
            "id": event.id,
            "created_at": self.ts(event.created_at),
            "updated_at": self.ts(event.created_at),
            "private": event.private,
            "action": event.action,
            "target": event.target,
            "eventable": {"id": event.eventable_id, "type": event.eventable_type} | links,
            "creator": self.creator(event.creator_id),
        }
        if self.old:
            del out["private"], out["eventable"]
        if bucket:
            out["bucket"] = self.bucket(event.project_id)
        if event.comment_id is not None:
            out |= {"attachments": [], "excerpt": event.excerpt, "raw_excerpt": event.excerpt}
        summary = event.action.replace("<span>:</span>", ":")
        out |= {"summary": f"{summary} {event.target}", "url": links["url"], "html_url": html_url}
        return out
