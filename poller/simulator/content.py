"""Mutations of discussions and content: messages, comments, documents, uploads and
calendar entries. Same rules as every mutation (see `account.py`)."""

from __future__ import annotations

import hashlib
from datetime import date, datetime

from poller.simulator.model import (
    Attachment,
    CalendarEvent,
    Comment,
    Document,
    Message,
    Upload,
)
from poller.simulator.state import (
    AccountState,
    as_when,
    changed,
    locked,
    render_when,
)


class ContentMutations(AccountState):
    """Messages, comments, documents, uploads, calendar entries."""

    def _when(self, value: date | datetime) -> str | None:
        return render_when(value, self.offset)

    @locked
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
        activity = self._event(project, who, action, subject, message, now=now, silent=silent)
        self._log_item("create", message, who, now, activity)
        return message.id

    @locked
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
        old = (message.subject, message.content)
        message.subject = subject if subject is not None else message.subject
        message.content = content if content is not None else message.content
        fields = changed(subject=(old[0], message.subject), content=(old[1], message.content))
        project = self._touch(message, now)
        action = "edited a message<span>:</span>"
        activity = self._event(
            project, who, action, message.subject, message, now=now, silent=silent
        )
        self._log_item("update", message, who, now, activity, fields)

    @locked
    def trash_message(
        self, message_id: int, *, by: int | None = None, silent: bool = False
    ) -> None:
        """Trash a message (its topic disappears with it)."""
        self._trash(self._typed(Message, message_id), by, silent, "a message")

    @locked
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
        activity = self._event(
            project, who, "commented on", item.title, item, now=now, silent=silent, comment=comment
        )
        self._log(
            "comment",
            "Comment",
            comment.id,
            at=now,
            by=who,
            activity_id=activity,
            parent=(item.type_name, item.id),
            project_id=item.project_id,
        )
        return comment.id

    @locked
    def trash_comment(self, comment_id: int, *, by: int | None = None, silent: bool = True) -> None:
        """Trash a comment (silent by default: Basecamp shows no event for it)."""
        who = self._by(by)
        kind, item_id = self.comment_index[comment_id]
        item = self._get(kind, item_id)
        now = self.now()
        fields = {}
        for comment in item.comments:
            if comment.id == comment_id:
                fields = changed(trashed=(comment.trashed, True))
                comment.trashed = True
                comment.updated_at = now
        project = self._touch(item, now, "topics")
        action = "deleted a comment on"
        activity = self._event(project, who, action, item.title, item, now=now, silent=silent)
        self._log(
            "trash_comment",
            "Comment",
            comment_id,
            at=now,
            by=who,
            activity_id=activity,
            fields=fields,
            parent=(item.type_name, item.id),
            project_id=item.project_id,
        )

    # ------------------------------------------------------------------ documents, uploads

    @locked
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
        activity = self._event(project, who, action, title, document, now=now, silent=silent)
        self._log_item("create", document, who, now, activity)
        return document.id

    @locked
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
        old = (document.doc_title, document.content)
        document.doc_title = title if title is not None else document.doc_title
        document.content = content if content is not None else document.content
        document.last_updater_id = who
        fields = changed(title=(old[0], document.doc_title), content=(old[1], document.content))
        project = self._touch(document, now)
        action = "edited a document<span>:</span>"
        activity = self._event(
            project, who, action, document.doc_title, document, now=now, silent=silent
        )
        self._log_item("update", document, who, now, activity, fields)

    @locked
    def trash_document(
        self, document_id: int, *, by: int | None = None, silent: bool = False
    ) -> None:
        """Trash a document: 404 on GET, gone from the document lists."""
        self._trash(self._typed(Document, document_id), by, silent, "a document")

    @locked
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
        action = "uploaded a file"
        activity = self._event(project, who, action, filename, upload, now=now, silent=silent)
        self._log_item("create", upload, who, now, activity)
        return upload.id

    @locked
    def trash_upload(self, upload_id: int, *, by: int | None = None, silent: bool = False) -> None:
        """Trash an upload and its attachments."""
        upload = self._typed(Upload, upload_id)
        for attachment_id in upload.attachment_ids:
            self.attachments[attachment_id].trashed = True
        self._trash(upload, by, silent, "a file")

    # ------------------------------------------------------------------ calendar events

    @locked
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
        start = as_when(starts_at)
        entry = CalendarEvent(
            **self._new_item_common(project_id, who, now),
            summary=summary,
            description=description,
            starts_at=start,
            ends_at=as_when(ends_at) if ends_at is not None else start,
        )
        self._add_item(project, entry)
        self._touch(entry, now)
        activity = self._event(
            project, who, "added an event", summary, entry, now=now, silent=silent
        )
        self._log_item("create", entry, who, now, activity)
        return entry.id

    @locked
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
        old = (entry.summary, entry.description, entry.starts_at, entry.ends_at)
        entry.summary = summary if summary is not None else entry.summary
        entry.description = description if description is not None else entry.description
        if starts_at is not None:
            entry.starts_at = as_when(starts_at)
        if ends_at is not None:
            entry.ends_at = as_when(ends_at)
        elif starts_at is not None:
            entry.ends_at = entry.starts_at
        fields = changed(
            summary=(old[0], entry.summary),
            description=(old[1], entry.description),
            starts_at=(self._when(old[2]), self._when(entry.starts_at)),
            ends_at=(self._when(old[3]), self._when(entry.ends_at)),
        )
        project = self._touch(entry, now)
        action = "edited an event"
        activity = self._event(project, who, action, entry.summary, entry, now=now, silent=silent)
        self._log_item("update", entry, who, now, activity, fields)

    @locked
    def trash_calendar_event(
        self, event_id: int, *, by: int | None = None, silent: bool = False
    ) -> None:
        """Trash a calendar entry."""
        self._trash(self._typed(CalendarEvent, event_id), by, silent, "an event")
