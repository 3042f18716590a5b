"""One cycle's view of an account: stored records overlaid with this cycle's fetches.

`Detector.observe()` takes a freshly parsed `Record`, diffs it against the stored version
(`diff.classify`), keeps the new version in memory and turns the changes into event
envelopes. Nothing reaches the database until the cycle commits `Detector.to_write()`.
Activities from the feed are attached to the events they explain, so one change gives one
event whether the feed, a diff, or both saw it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from poller.diff import Change, classify, merge_fields
from poller.events import Event, event_id, now_iso, plain_text
from poller.payloads import Activity, Record, kind_prefix, parse_ts
from poller.store import CycleWrite, Store, StoredRecord

# Words in an activity's (undocumented, prose) action that point at a kind suffix.
_HINTS: list[tuple[str, tuple[str, ...]]] = [
    ("uncompleted", ("re-open", "reopen", "uncomplet", "incomplete")),
    ("completed", ("complet",)),
    ("assignment_changed", ("assign",)),
    ("due_date_changed", ("due", "date", "resched")),
    ("comment_created", ("comment",)),
    ("trashed", ("delet", "trash", "remov")),
    ("unarchived", ("unarchiv", "restor")),
    ("archived", ("archiv",)),
    ("created", ("creat", "add", "post", "upload", "start", "new")),
    ("changed", ("edit", "updat", "chang", "renam", "mov")),
]

_VERB: dict[str, str] = {
    "created": "created",
    "trashed": "trashed",
    "archived": "archived",
    "unarchived": "unarchived",
    "changed": "changed",
    "completed": "completed",
    "uncompleted": "re-opened",
    "assignment_changed": "re-assigned",
    "due_date_changed": "changed the due date of",
    "content_changed": "edited",
}
_NOUN: dict[str, str] = {
    "todo": "a to-do",
    "todolist": "a to-do list",
    "message": "a message",
    "document": "a document",
    "upload": "a file",
    "calendar_event": "an event",
    "project": "the project",
    "person": "a person",
    "comment": "a comment",
}


def _with_move(changes: list[Change], rtype: str, old_pid: int, new_pid: int) -> list[Change]:
    """Add a move between projects (Basecamp answers the old URL with 301) to the record's
    `<t>_changed` event as `project_id: [old, new]`."""
    kind = f"{kind_prefix(rtype)}_changed"
    moved = {"project_id": [old_pid, new_pid]}
    for index, change in enumerate(changes):
        if change.kind == kind:
            return [
                *changes[:index],
                Change(kind, {**change.changes, **moved}),
                *changes[index + 1 :],
            ]
    return [*changes, Change(kind, moved)]


def action_hint(action: str) -> str | None:
    text = action.lower()
    for suffix, words in _HINTS:
        if any(w in text for w in words):
            return suffix
    return None


def _suffix(kind: str, prefix: str) -> str:
    return kind[len(prefix) + 1 :] if kind.startswith(prefix + "_") else kind


@dataclass
class Detector:
    """Collects one cycle's record versions and events for one account."""

    store: Store
    account_id: int
    emit: bool = True  # False during a "baseline" first sync
    records: dict[tuple[str, int], StoredRecord | None] = field(default_factory=dict)
    changed: dict[tuple[str, int], StoredRecord] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    explained: set[int] = field(default_factory=set)  # activity ids an event used
    _children_loaded: set[tuple[str, int]] = field(default_factory=set)
    _preloaded: set[tuple[str, int | None]] = field(default_factory=set)
    _ids: dict[str, set[int]] = field(default_factory=dict)  # type -> ids in `records`

    # -- reading ------------------------------------------------------------------

    def get(self, rtype: str, rid: int) -> StoredRecord | None:
        key = (rtype, rid)
        if key not in self.records:
            self.records[key] = self.store.record(self.account_id, rtype, rid)
            self._ids.setdefault(rtype, set()).add(rid)
        return self.records[key]

    def preload(self, rtype: str, project_id: int | None = None) -> dict[int, StoredRecord]:
        """Load (once) and return the stored records of a type, optionally of one project,
        as this cycle sees them."""
        if (rtype, project_id) not in self._preloaded and (rtype, None) not in self._preloaded:
            self._preloaded.add((rtype, project_id))
            ids = self._ids.setdefault(rtype, set())
            for rid, rec in self.store.records(
                self.account_id, rtype, project_id=project_id
            ).items():
                self.records.setdefault((rtype, rid), rec)
                ids.add(rid)
        out: dict[int, StoredRecord] = {}
        for rid in self._ids.get(rtype, ()):
            stored = self.records[(rtype, rid)]
            if stored is not None and (project_id is None or stored.project_id == project_id):
                out[rid] = stored
        return out

    def active(self, rtype: str, project_id: int | None = None) -> dict[int, StoredRecord]:
        return {k: v for k, v in self.preload(rtype, project_id).items() if v.state == "active"}

    def children(self, parent: tuple[str, int]) -> dict[int, StoredRecord]:
        if parent not in self._children_loaded:
            self._children_loaded.add(parent)
            ids = self._ids.setdefault("Comment", set())
            for rid, rec in self.store.records(self.account_id, "Comment", parent=parent).items():
                self.records.setdefault(("Comment", rid), rec)
                ids.add(rid)
        out: dict[int, StoredRecord] = {}
        for rid in self._ids.get("Comment", ()):
            comment = self.records[("Comment", rid)]
            if comment is not None and (comment.parent_type, comment.parent_id) == parent:
                out[rid] = comment
        return out

    def project_ref(
        self, project_id: int | None, fallback_name: str | None = None
    ) -> dict[str, Any] | None:
        if project_id is None:
            return None
        rec = self.get("Project", project_id)
        name = rec.data.get("title") if rec else None
        return {"id": project_id, "name": name or fallback_name}

    # -- writing ------------------------------------------------------------------

    def _keep(self, rec: StoredRecord) -> None:
        self.records[(rec.type, rec.id)] = rec
        self._ids.setdefault(rec.type, set()).add(rec.id)
        self.changed[(rec.type, rec.id)] = rec

    def remember(self, record: Record) -> StoredRecord:
        """Store the new version of a record (merged over the old) without diffing."""
        old = self.get(record.type, record.id)
        data = record.stored()
        if old is not None:
            data["fields"] = merge_fields(old.data.get("fields"), record.fields)
            data["meta"] = {
                **old.data.get("meta", {}),
                **{k: v for k, v in record.meta.items() if v is not None},
            }
        new_state = "trashed" if data["fields"].get("trashed") else "active"
        rec = StoredRecord(
            type=record.type,
            id=record.id,
            project_id=record.project_id
            if record.project_id is not None
            else (old.project_id if old else None),
            parent_type=record.parent[0] if record.parent else None,
            parent_id=record.parent[1] if record.parent else None,
            updated_at=record.updated_at or (old.updated_at if old else None),
            state=new_state,
            data=data,
        )
        if old is not None and old == rec:
            return old  # unchanged: nothing to write
        self._keep(rec)
        return rec

    def observe(
        self,
        record: Record,
        activities: list[Activity] | None = None,
        *,
        parent_record: Record | None = None,
    ) -> list[dict[str, Any]]:
        """Diff `record` against its stored version, keep it, and emit its events."""
        old = self.get(record.type, record.id)
        old_fields = old.data.get("fields") if old is not None and old.state != "gone" else None
        changes = classify(record.type, old_fields, record.fields)
        if old is not None and old.state == "gone" and not record.trashed:
            changes = [Change(f"{kind_prefix(record.type)}_created", {})]
        elif (
            old_fields is not None
            and not record.trashed
            and record.type != "Project"
            and old.project_id is not None  # type: ignore[union-attr]
            and record.project_id is not None
            and old.project_id != record.project_id  # type: ignore[union-attr]
        ):
            changes = _with_move(changes, record.type, old.project_id, record.project_id)  # type: ignore[union-attr]
        self.remember(record)
        return [
            self._emit(c, record, activities or [], parent_record=parent_record) for c in changes
        ]

    def first_read(
        self, record: Record, previous: StoredRecord | None, activities: list[Activity]
    ) -> list[dict[str, Any]]:
        """The change in a field read for the first time.

        Index listings lack some fields (a document's or message's `content`), so the
        stored version may not know them. When such a record's `updated_at` moved on but
        every field it knew is unchanged (and no comment explains the move), the change
        is in a field seen now for the first time: `<t>_changed` with `[null, new]`.
        """
        if previous is None or previous.state != "active" or record.trashed:
            return []
        known = previous.data.get("fields") or {}
        learned = {
            k: [None, v]
            for k, v in sorted(record.fields.items())
            if k not in known and v not in (None, "", [], {})
        }
        before, after = parse_ts(previous.updated_at), parse_ts(record.updated_at)
        if not learned or before is None or after is None or after <= before:
            return []
        change = Change(f"{kind_prefix(record.type)}_changed", learned)
        return [self._emit(change, record, activities)]

    def gone(
        self, rtype: str, rid: int, activities: list[Activity] | None = None
    ) -> list[dict[str, Any]]:
        """A verified disappearance (complete listing lacks it and the item answers 404)."""
        old = self.get(rtype, rid)
        if old is None or old.state != "active":
            return []
        changes = classify(rtype, old.data.get("fields"), None)
        rec = StoredRecord(**{**old.__dict__, "state": "gone"})
        self._keep(rec)
        record = Record(
            type=rtype,
            id=rid,
            project_id=old.project_id,
            title=old.data.get("title") or f"{rtype} {rid}",
            updated_at=old.updated_at,
            fields=old.data.get("fields", {}),
            meta=old.data.get("meta", {}),
        )
        return [
            self._emit(c, record, activities or [], discriminator=f"gone:{old.updated_at}")
            for c in changes
        ]

    def observe_comments(
        self,
        item: Record,
        comments: list[Record],
        previous: StoredRecord | None,
        activities: list[Activity],
    ) -> list[dict[str, Any]]:
        """Diff the comments embedded in a commentable's single GET.

        The single GET is authoritative for its comments. When the item's comment set was
        never read before, a comment counts as new only if it is later than the item's
        stored `updated_at` (older ones are a silent baseline).
        """
        stored = self.children((item.type, item.id))
        known = bool(previous and previous.data.get("meta", {}).get("comments_known"))
        since = parse_ts(previous.updated_at) if previous is not None else None
        out: list[dict[str, Any]] = []
        present: set[int] = set()
        for comment in comments:
            present.add(comment.id)
            old = stored.get(comment.id)
            if old is None:
                created = parse_ts(comment.meta.get("created_at"))
                is_new = (
                    previous is None
                    or known
                    or (since is not None and created is not None and created > since)
                )
                self.remember(comment)
                if is_new and not comment.trashed:
                    out.append(
                        self._emit(
                            Change("comment_created", {}),
                            comment,
                            activities,
                            parent_record=item,
                            discriminator=f"comment:{comment.id}",
                        )
                    )
                continue
            out.extend(self.observe(comment, activities, parent_record=item))
        for cid, old in stored.items():
            if cid not in present and old.state == "active":
                old_record = Record(
                    "Comment",
                    cid,
                    old.project_id,
                    old.data.get("title", ""),
                    old.updated_at,
                    old.data.get("fields", {}),
                    old.data.get("meta", {}),
                    (item.type, item.id),
                )
                self._keep(StoredRecord(**{**old.__dict__, "state": "gone"}))
                out.append(
                    self._emit(
                        Change("comment_trashed", {"trashed": [False, True]}),
                        old_record,
                        activities,
                        parent_record=item,
                        discriminator=f"gone:{cid}",
                    )
                )
        prev = self.records.get((item.type, item.id))
        if prev is not None:
            prev.data.setdefault("meta", {})["comments_known"] = True
            self._keep(prev)
        return out

    def activity_only(self, activity: Activity) -> dict[str, Any] | None:
        """The fallback event for an activity no diff explains: `<type>_activity`."""
        if not self.emit:
            return None
        prefix = kind_prefix(activity.eventable_type)
        kind = f"{prefix}_activity"
        rid = activity.eventable_id if activity.eventable_id is not None else activity.id
        self.explained.add(activity.id)
        event = Event(
            id=event_id(
                self.account_id, kind, activity.eventable_type, rid, f"activity:{activity.id}"
            ),
            kind=kind,
            account_id=self.account_id,
            project=self.project_ref(activity.project_id, activity.project_name),
            recording={
                "id": rid,
                "type": activity.eventable_type,
                "url": activity.eventable_url,
                "app_url": activity.app_url,
                "title": plain_text(activity.target),
            },
            creator=activity.creator,
            changes={},
            created_at=activity.created_at,
            detected_at=now_iso(),
            summary=self._activity_summary(activity),
            source="activity",
            details={"activity": activity.raw},
            private=activity.private,
        ).to_dict()
        self.events.append(event)
        return event

    # -- events -------------------------------------------------------------------

    @staticmethod
    def _activity_summary(activity: Activity) -> str:
        text = plain_text(activity.summary) or plain_text(f"{activity.action} {activity.target}")
        who = (activity.creator or {}).get("name")
        return f"{who} {text}" if who else text

    def _pick(self, kind: str, prefix: str, activities: list[Activity]) -> Activity | None:
        if not activities:
            return None
        want = _suffix(kind, prefix)
        for act in reversed(activities):
            hint = action_hint(act.action)
            if hint is not None and (want == hint or want.endswith(hint) or kind == hint):
                return act
        return activities[-1]

    def _emit(
        self,
        change: Change,
        record: Record,
        activities: list[Activity],
        *,
        parent_record: Record | None = None,
        discriminator: str | None = None,
    ) -> dict[str, Any]:
        prefix = kind_prefix(record.type)
        activity = self._pick(change.kind, prefix, activities)
        if activity is not None:
            self.explained.update(a.id for a in activities)
        if discriminator is None:
            new_values = json.dumps(
                {k: v[1] for k, v in sorted(change.changes.items())}, sort_keys=True, default=str
            )
            discriminator = f"{record.updated_at}|{new_values}"
        target = (
            parent_record
            if change.kind.startswith("comment_") and parent_record is not None
            else record
        )
        meta = record.meta
        creator = activity.creator if activity is not None else self._creator(change.kind, record)
        title = plain_text(target.title)
        created_at = (
            activity.created_at
            if activity is not None
            else (meta.get("created_at") if change.kind.endswith("_created") else None)
            or record.updated_at
            or now_iso()
        )
        if activity is not None and action_hint(activity.action) is not None:
            summary = self._activity_summary(activity)
        else:
            verb = _VERB.get(
                _suffix(change.kind, prefix), _suffix(change.kind, prefix).replace("_", " ")
            )
            noun = _NOUN.get(prefix, prefix.replace("_", " "))
            who = (creator or {}).get("name") or "Someone"
            if change.kind == "comment_created":
                summary = (
                    f"{who} commented on {title}: {plain_text(record.fields.get('content'))[:200]}"
                )
            else:
                summary = f"{who} {verb} {noun}: {title}"
        details: dict[str, Any] = {
            "record": (
                parent_record.raw if target is parent_record and parent_record else record.raw
            )
            or None
        }
        if target is not record:
            details["comment"] = record.raw or None
        if activity is not None:
            details["activity"] = activity.raw
        event = Event(
            id=event_id(self.account_id, change.kind, record.type, record.id, discriminator),
            kind=change.kind,
            account_id=self.account_id,
            project=self.project_ref(
                target.project_id, activity.project_name if activity else None
            ),
            recording={
                "id": target.id,
                "type": target.type,
                "url": target.meta.get("url"),
                "app_url": target.meta.get("app_url"),
                "title": title,
            },
            creator=creator,
            changes=change.changes,
            created_at=created_at,
            detected_at=now_iso(),
            summary=plain_text(summary),
            source="activity+diff" if activity is not None else "diff",
            details=details,
            private=record.private or target.private or bool(activity and activity.private),
        ).to_dict()
        if self.emit:
            self.events.append(event)
        return event

    @staticmethod
    def _creator(kind: str, record: Record) -> dict[str, Any] | None:
        meta = record.meta
        if kind == "todo_completed" and meta.get("completer"):
            return dict(meta["completer"])
        if kind.endswith("_created") or kind == "comment_created":
            return dict(meta["creator"]) if meta.get("creator") else None
        if meta.get("last_updater"):
            return dict(meta["last_updater"])
        return None

    def to_write(self) -> CycleWrite:
        return CycleWrite(
            account_id=self.account_id,
            records=list(self.changed.values()),
            events=list(self.events),
        )
