"""One cycle's view of an account: stored records overlaid with this cycle's fetches.

The fetch code hands every freshly parsed `Record` to `Detector.observe()` (and the
comments of an item to `observe_comments()`, a verified disappearance to `gone()`); each
diffs against what this cycle knew so far (`diff.classify`), keeps the new version in
memory and notes the changes as `match.Observed`. The feed's new activities are noted with
`register()`. Nothing is explained while fetching: at the end, `finish()` hands this
cycle's activities and every observed change to `match.match()` (one pure step) and builds
one event envelope per `Explained`. Nothing reaches the database until the cycle commits
`Detector.to_write()`.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from poller.diff import Change, classify, merge_fields
from poller.events import event_id, now_iso, plain_text
from poller.links import api_url, app_url_from
from poller.match import (
    Explained,
    ItemState,
    Key,
    Observed,
    action_hint,
    activity_key,
    comment_anchor,
    explains,
    match,
    sort_by_time,
)
from poller.payloads import KIND_PREFIX, Activity, Record, kind_prefix, parse_ts
from poller.store import CycleWrite, Store, StoredRecord, dumps

__all__ = ["Detector", "action_hint", "relaxed_gc"]

# A big cycle (a first sync, a full re-list) allocates a few containers per record and
# frees them at each project's commit: with the default threshold (700) the collector
# runs ~50 young and a few full collections per 5,000 records for nothing to collect.
# 50,000 cut decode + diff + commit by ~10 % (bench/README.md, 2026-12-03); gc.freeze()
# was measured too and did not pay.
_BIG_CYCLE_GC_THRESHOLD = 50_000


class _Relaxed:
    depth = 0
    saved: tuple[int, int, int] = (700, 10, 10)


@contextmanager
def relaxed_gc() -> Iterator[None]:
    """A higher young-generation threshold while a big cycle runs. Process-wide and
    nested safely (the daemon runs several accounts' cycles at once): the first to enter
    raises it, the last to leave restores what it was."""
    if _Relaxed.depth == 0:
        saved = gc.get_threshold()
        _Relaxed.saved = saved
        gc.set_threshold(max(saved[0], _BIG_CYCLE_GC_THRESHOLD), saved[1], saved[2])
    _Relaxed.depth += 1
    try:
        yield
    finally:
        _Relaxed.depth -= 1
        if _Relaxed.depth == 0:
            gc.set_threshold(*_Relaxed.saved)


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
    "activity": "acted on",
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


def _plain_json(value: Any) -> str | None:
    """`json.dumps(value, sort_keys=True)` for the plain values a change holds (printable
    ASCII strings without quotes or backslashes, ints, booleans, None, and lists and
    string-keyed dicts of them), written directly (the stdlib's encoder took a quarter of
    diffing a changed record); None for anything else, which the stdlib then writes."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    kind = type(value)
    if kind is str:
        if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
            return f'"{value}"'
        return None
    if kind is int:
        return str(value)
    if kind is list:
        items = [_plain_json(v) for v in value]
        if any(i is None for i in items):
            return None
        return "[" + ", ".join(items) + "]"  # type: ignore[arg-type]
    if kind is dict:
        parts = []
        for key in sorted(value) if all(type(k) is str for k in value) else ():
            name, text = _plain_json(key), _plain_json(value[key])
            if name is None or text is None:
                return None
            parts.append(f"{name}: {text}")
        if len(parts) != len(value):
            return None
        return "{" + ", ".join(parts) + "}"
    return None


def _suffix(kind: str, prefix: str) -> str:
    return kind[len(prefix) + 1 :] if kind.startswith(prefix + "_") else kind


def _record_of(stored: StoredRecord) -> Record:
    data = stored.data
    return Record(
        type=stored.type,
        id=stored.id,
        project_id=stored.project_id,
        title=data.get("title") or f"{stored.type} {stored.id}",
        updated_at=stored.updated_at,
        fields=data.get("fields", {}),
        meta=data.get("meta", {}),
        parent=(stored.parent_type, stored.parent_id)
        if stored.parent_type is not None and stored.parent_id is not None
        else None,
    )


def _payload(record: Record | None) -> dict[str, Any] | None:
    """The record as Basecamp returned it, or (gone now: nothing was returned) what is
    stored of it."""
    if record is None:
        return None
    if record.raw:
        return record.raw
    meta = record.meta
    return {
        "id": record.id,
        **record.fields,
        **{k: meta[k] for k in ("url", "app_url", "created_at", "creator") if meta.get(k)},
        "updated_at": record.updated_at,
    }


def _key_of(record: Record) -> Key:
    """The item a record's changes are about: a comment's belong to its item."""
    if record.type == "Comment" and record.parent is not None:
        return record.parent
    return (record.type, record.id)


@dataclass
class Detector:
    """Collects one cycle's record versions, activities and events for one account."""

    store: Store
    account_id: int
    emit: bool = True  # False during a "baseline" first sync
    api_root: str = ""  # to build links Basecamp's payloads leave out
    records: dict[Key, StoredRecord | None] = field(default_factory=dict)
    changed: dict[Key, StoredRecord] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    # what was stored before this cycle, for every record this cycle looked at
    original: dict[Key, StoredRecord | None] = field(default_factory=dict)
    observed: list[Observed] = field(default_factory=list)
    activities: list[Activity] = field(default_factory=list)
    comments_read: set[Key] = field(default_factory=set)  # items whose comments were diffed
    # activities about what this cycle does not read (an unwatched type, people): each
    # is `<type>_activity`, never a change the diff could not confirm
    unread: set[int] = field(default_factory=set)
    # items the feed named that answer 404 and a complete listing lacks, never stored
    vanished: set[Key] = field(default_factory=set)
    _finished: bool = False
    _children_loaded: set[Key] = field(default_factory=set)
    _preloaded: set[tuple[str, int | None]] = field(default_factory=set)
    _ids: dict[str, set[int]] = field(default_factory=dict)  # type -> ids in `records`
    _about: dict[Key, list[Activity]] = field(default_factory=dict)  # item -> its activities
    _now: str | None = None  # the cycle's detection time: one timestamp for all its events

    # -- reading ------------------------------------------------------------------

    def _loaded(self, key: Key, rec: StoredRecord | None) -> None:
        self.records.setdefault(key, rec)
        self.original.setdefault(key, rec)
        self._ids.setdefault(key[0], set()).add(key[1])

    def get(self, rtype: str, rid: int) -> StoredRecord | None:
        key = (rtype, rid)
        if key not in self.records:
            # every stored record of the type was preloaded: one not among them is absent
            found = (
                None
                if (rtype, None) in self._preloaded
                else self.store.record(self.account_id, rtype, rid)
            )
            self._loaded(key, found)
        return self.records[key]

    def before(self, rtype: str, rid: int) -> StoredRecord | None:
        """The record as stored before this cycle (None: it was not known)."""
        self.get(rtype, rid)
        return self.original.get((rtype, rid))

    def preload(self, rtype: str, project_id: int | None = None) -> dict[int, StoredRecord]:
        """Load (once) and return the stored records of a type, optionally of one project,
        as this cycle sees them."""
        if (rtype, project_id) not in self._preloaded and (rtype, None) not in self._preloaded:
            self._preloaded.add((rtype, project_id))
            for rid, rec in self.store.records(
                self.account_id, rtype, project_id=project_id
            ).items():
                self._loaded((rtype, rid), rec)
        out: dict[int, StoredRecord] = {}
        for rid in self._ids.get(rtype, ()):
            stored = self.records[(rtype, rid)]
            if stored is not None and (project_id is None or stored.project_id == project_id):
                out[rid] = stored
        return out

    def prefetch(self, rtype: str, ids: Iterable[int]) -> None:
        """Look up, in one query, the records of a listing not loaded yet, and remember
        which are absent: a new record then costs no query of its own."""
        missing = sorted({rid for rid in ids if (rtype, rid) not in self.records})
        if not missing:
            return
        found = self.store.records_with_ids(self.account_id, rtype, missing)
        for rid in missing:
            self._loaded((rtype, rid), found.get(rid))

    def active(self, rtype: str, project_id: int | None = None) -> dict[int, StoredRecord]:
        return {k: v for k, v in self.preload(rtype, project_id).items() if v.state == "active"}

    def children(self, parent: Key) -> dict[int, StoredRecord]:
        if parent not in self._children_loaded:
            self._children_loaded.add(parent)
            for rid, rec in self.store.records(self.account_id, "Comment", parent=parent).items():
                self._loaded(("Comment", rid), rec)
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

    def register(self, activities: Iterable[Activity]) -> None:
        """This cycle's new activities: each is explained once, at `finish()`."""
        for act in activities:
            self.activities.append(act)
            self._about.setdefault(activity_key(act), []).append(act)

    def unexplained(self) -> dict[Key, list[Observed]]:
        """The changes this cycle saw, by item, of items no activity of the cycle is
        about or whose last change seen is later than their newest activity: something
        happened that the feed read at the cycle's start may not have said yet."""
        out: dict[Key, list[Observed]] = {}
        for o in self.observed:
            if o.key[0] in KIND_PREFIX:
                out.setdefault(o.key, []).append(o)
        for key in [k for k in out if k in self._about]:
            said = [parse_ts(a.created_at) for a in self._about[key]]
            seen = [parse_ts(o.at) for o in out[key]]
            newest_said = max((t for t in said if t is not None), default=None)
            newest_seen = max((t for t in seen if t is not None), default=None)
            if newest_said is None or newest_seen is None or newest_seen <= newest_said:
                del out[key]
        return out

    def late(
        self, activities: Iterable[Activity], waiting: dict[Key, list[Observed]]
    ) -> list[Activity]:
        """Register those of `activities` (read from the feed after this cycle's fetches)
        that explain a change in `waiting` (`unexplained()`, `match.explains`); return them.

        A change made between the cycle's feed read and the fetch that saw it would else
        be a diff-only event (no author), and its activity, read next cycle, would be
        dropped as already reflected. The others stay for the next cycle."""
        registered = {a.key for a in self.activities}
        taken = [
            act
            for act in activities
            if act.key not in registered
            and activity_key(act) in waiting
            and explains(act, waiting[activity_key(act)])
        ]
        self.register(taken)
        return taken

    def _note(
        self,
        change: Change,
        record: Record,
        *,
        parent: Record | None = None,
        discriminator: str | None = None,
        at: str | None = None,
    ) -> Observed:
        if discriminator is None:
            # part of the event id: the stdlib's exact output, kept for stable ids
            values = {k: v[1] for k, v in sorted(change.changes.items())}
            new_values = _plain_json(values) if values else "{}"
            if new_values is None:
                new_values = json.dumps(values, sort_keys=True, default=str)
            discriminator = f"{record.updated_at}|{new_values}"
        if at is None and change.kind.endswith("_created"):
            at = record.meta.get("created_at") or record.updated_at
        elif at is None and not change.kind.endswith("_trashed"):
            at = record.updated_at
        observed = Observed(
            key=_key_of(record),
            kind=change.kind,
            changes=change.changes,
            record=record,
            parent=parent,
            discriminator=discriminator,
            at=at,
        )
        self.observed.append(observed)
        return observed

    @staticmethod
    def _same(old: StoredRecord, record: Record) -> bool:
        """`record` is exactly what is stored (then `remember` keeps `old` as it is and
        `classify` finds nothing): compared column by column, then the stored JSON text
        with the new version's (no parse of the stored record) while nothing has read it
        as a dict. Conservative: False sends `observe` the long way."""
        if old.state != ("trashed" if record.trashed else "active"):
            return False
        if record.project_id is not None and record.project_id != old.project_id:
            return False
        if record.updated_at and record.updated_at != old.updated_at:
            return False
        parent = record.parent
        if parent is None:
            if old.parent_type is not None or old.parent_id is not None:
                return False
        elif parent != (old.parent_type, old.parent_id):
            return False
        data = record.stored()
        text = old.text
        if text is not None:
            return text == dumps(data)
        return old.data == data

    def observe(self, record: Record, *, parent_record: Record | None = None) -> list[Observed]:
        """Diff `record` against this cycle's version of it, keep it, note its changes."""
        old = self.get(record.type, record.id)
        if old is not None and self._same(old, record):
            return []  # unchanged: the common case of a re-list
        old_fields = old.data.get("fields") if old is not None and old.state != "gone" else None
        changes = classify(record.type, old_fields, record.fields)
        if old is not None and old.state == "gone" and not record.trashed:
            changes = [Change(f"{kind_prefix(record.type)}_created", {})]
        elif (
            old is not None
            and old_fields is not None
            and not record.trashed
            and record.type != "Project"
            and old.project_id is not None
            and record.project_id is not None
            and old.project_id != record.project_id
        ):
            changes = _with_move(changes, record.type, old.project_id, record.project_id)
        self.remember(record)
        return [self._note(c, record, parent=parent_record) for c in changes]

    def first_read(self, record: Record) -> list[Observed]:
        """The change in a field read for the first time.

        Index listings lack some fields (a document's or message's `content`), so the
        stored version may not know them. When such a record's `updated_at` moved on,
        every field it knew is unchanged and the feed says it was edited, the change is
        in a field seen now for the first time: `<t>_changed` with `[null, new]`.
        Without that word the move may be a comment added and trashed again, so the
        change is kept as unexplained (in the record's `meta`) until an "edited" activity
        from before it arrives (a re-list can read an edit before the feed shows it) —
        and never reported otherwise.
        """
        key = (record.type, record.id)
        previous = self.before(record.type, record.id)
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
        if not any(action_hint(a.action) == "changed" for a in self._about.get(key, ())):
            stored = self.records.get(key)
            if stored is not None:
                meta = stored.data.setdefault("meta", {})
                meta["unexplained"] = {"at": record.updated_at, "changes": learned}
                self._keep(stored)
            return []
        return [self._note(change, record)]

    def _claim_unexplained(self, states: dict[Key, ItemState]) -> None:
        """An "edited" activity from before a change a re-list read unexplained (see
        `first_read`) explains it now."""
        for act in self.activities:
            key = activity_key(act)
            old = self.original.get(key)
            pending = (old.data.get("meta") or {}).get("unexplained") if old else None
            if not pending or action_hint(act.action) != "changed" or key not in states:
                continue
            at = parse_ts(pending.get("at"))
            when = parse_ts(act.created_at)
            if at is None or when is None or when > at:
                continue
            current = self.records.get(key)
            if current is None or current.state != "active":
                continue
            record = _record_of(current)
            record.updated_at = pending["at"]
            self._note(Change(f"{kind_prefix(key[0])}_changed", pending["changes"]), record)
            current.data.get("meta", {}).pop("unexplained", None)
            self._keep(current)
            state = states[key]
            states[key] = ItemState(False, None, state.fields, state.updated_at)

    def gone(self, rtype: str, rid: int) -> list[Observed]:
        """A verified disappearance (complete listing lacks it and the item answers 404)."""
        old = self.get(rtype, rid)
        if old is None or old.state != "active":
            return []
        changes = classify(rtype, old.data.get("fields"), None)
        self._keep(old.with_state("gone"))
        record = _record_of(old)
        return [self._note(c, record, discriminator=f"gone:{old.updated_at}") for c in changes]

    def _comment_named(self, item: Record) -> set[int]:
        """Comments this cycle's activities name as new on `item` (`#comment_<id>`)."""
        named: set[int] = set()
        for act in self._about.get((item.type, item.id), ()):
            anchor = comment_anchor(act)
            if anchor is not None and action_hint(act.action) == "comment_created":
                named.add(anchor)
        return named

    def observe_comments(self, item: Record, comments: list[Record]) -> list[Observed]:
        """Diff the comments embedded in a commentable's single GET.

        The single GET is authoritative for its comments. When the item's comment set was
        never read before, a comment counts as new only if it is later than the item's
        `updated_at` stored before this cycle, or an activity names it (older ones are a
        silent baseline).
        """
        key = (item.type, item.id)
        stored = self.children(key)
        previous = self.before(*key)
        known = bool(previous and previous.data.get("meta", {}).get("comments_known"))
        since = parse_ts(previous.updated_at) if previous is not None else None
        named = self._comment_named(item)
        out: list[Observed] = []
        present: set[int] = set()
        for comment in comments:
            present.add(comment.id)
            old = stored.get(comment.id)
            if old is None:
                created = parse_ts(comment.meta.get("created_at"))
                is_new = (
                    previous is None
                    or known
                    or comment.id in named
                    or (since is not None and created is not None and created > since)
                )
                self.remember(comment)
                if is_new and not comment.trashed:
                    out.append(
                        self._note(
                            Change("comment_created", {}),
                            comment,
                            parent=item,
                            discriminator=f"comment:{comment.id}",
                            at=comment.meta.get("created_at"),
                        )
                    )
                continue
            out.extend(self.observe(comment, parent_record=item))
        for cid, old in stored.items():
            if cid not in present and old.state == "active":
                self._keep(old.with_state("gone"))
                out.append(
                    self._note(
                        Change("comment_trashed", {"trashed": [False, True]}),
                        _record_of(old),
                        parent=item,
                        discriminator=f"gone:{cid}",
                    )
                )
        prev = self.records.get(key)
        if prev is not None:
            prev.data.setdefault("meta", {})["comments_known"] = True
            self._keep(prev)
        self.comments_read.add(key)
        return out

    # -- events -------------------------------------------------------------------

    def finish(self) -> None:
        """Explain this cycle's activities and changes (`match.match`) and build one event
        for each. Runs once; later calls do nothing."""
        if self._finished:
            return
        self._finished = True
        if not self.emit:
            return  # a baseline: nothing to explain, no event to build
        states: dict[Key, ItemState] = {}
        keys = [activity_key(a) for a in self.activities] + [o.key for o in self.observed]
        for key in keys:
            if key in states or key[0] not in KIND_PREFIX:
                continue
            old, now = self.before(*key), self.records.get(key)
            states[key] = ItemState(
                known=old is not None,
                updated_before=old.updated_at if old is not None else None,
                # a gone item's last fields say nothing of its flags now
                fields=now.data.get("fields")
                if now is not None and now.state == "active"
                else None,
                updated_at=now.updated_at if now is not None else None,
                vanished=key in self.vanished,
            )
        self._claim_unexplained(states)
        read = [a for a in self.activities if a.id not in self.unread]
        explained = match(read, self.observed, states) + [
            self._only(a) for a in self.activities if a.id in self.unread
        ]
        for one in sort_by_time(explained):
            event = self._build(one)
            if self.emit:
                self.events.append(event)

    def activity_only(self, activity: Activity) -> dict[str, Any] | None:
        """The `<type>_activity` event of one activity, on its own (used by `backfill`)."""
        if not self.emit:
            return None
        event = self._build(self._only(activity))
        self.events.append(event)
        return event

    @staticmethod
    def _only(activity: Activity) -> Explained:
        kind = f"{kind_prefix(activity.eventable_type)}_activity"
        return Explained(
            kind, activity_key(activity), {}, f"activity:{activity.id}", None, activity
        )

    def _current(self, key: Key) -> Record | None:
        stored = self.records.get(key)
        return _record_of(stored) if stored is not None else None

    def links(
        self, key: Key, project_id: int | None, meta: dict[str, Any], act: Activity | None
    ) -> tuple[str | None, str | None]:
        """`url`, `app_url` of an item: from its payload, else what is stored of it (the
        listings carry them), else the activity's `eventable`, else built from the ids."""
        stored = self.records.get(key)
        stored_meta = stored.data.get("meta", {}) if stored is not None else {}
        on_item = act is not None and activity_key(act) == key
        url = (
            meta.get("url")
            or stored_meta.get("url")
            or (act.eventable_url if on_item and act else None)
            or api_url(self.api_root, key[0], key[1], project_id)
        )
        app = meta.get("app_url") or stored_meta.get("app_url")
        if not app and on_item and act is not None and isinstance(act.raw.get("eventable"), dict):
            app = (act.app_url or "").split("#", 1)[0]  # older feeds: html_url, not the item's
        return url, app or app_url_from(url)

    def _build(self, ex: Explained) -> dict[str, Any]:
        act, obs, key = ex.activity, ex.observed, ex.key
        record = obs.record if obs is not None else self._current(key)
        on_comment = ex.kind.startswith("comment_")
        if on_comment:
            item = (obs.parent if obs is not None else None) or self._current(key)
            comment = record if record is not None and record.type == "Comment" else None
        else:
            item, comment = record, None
        rtype, rid = key
        # what the feed said of an item never read (it is gone again) names and links it
        about = self._about.get(key)
        said = act or (about[-1] if about else None)
        project_id = item.project_id if item is not None else None
        if project_id is None and said is not None:
            project_id = said.project_id
        if item is not None:
            title = plain_text(item.title)
        else:
            title = plain_text(said.target) if said is not None else ""
        url, app_url = self.links(key, project_id, item.meta if item else {}, said)
        actor = comment if on_comment else record
        creator = act.creator if act is not None else self._payload_creator(ex.kind, actor)
        details: dict[str, Any] = {"record": _payload(item)}
        if on_comment:
            cid = comment.id if comment is not None else (comment_anchor(act) if act else None)
            details["comment"] = _payload(comment)
            details["comment_url"] = f"{app_url}#comment_{cid}" if app_url and cid else None
        if act is not None:
            details["activity"] = act.raw
        if obs is not None and on_comment and obs.record.type == "Comment":
            id_type, id_of = "Comment", obs.record.id
        elif obs is not None:
            id_type, id_of = obs.record.type, obs.record.id
        else:
            id_type = act.eventable_type if act is not None else rtype
            id_of = rid
        if self._now is None:
            self._now = now_iso()
        # a plain dict with the keys of `events.Event`, in its order
        return {
            "id": event_id(self.account_id, ex.kind, id_type, id_of, ex.discriminator),
            "kind": ex.kind,
            "account_id": self.account_id,
            "project": self.project_ref(project_id, act.project_name if act else None),
            "recording": {
                "id": rid,
                "type": rtype if rtype != "Unknown" else (act.eventable_type if act else rtype),
                "url": url,
                "app_url": app_url,
                "title": title,
            },
            "creator": creator,
            "changes": ex.changes,
            "created_at": ex.at or self._now,
            "detected_at": self._now,
            "summary": self._summary(ex, title, creator),
            "source": ("activity+diff" if obs is not None else "activity")
            if act is not None
            else "diff",
            "details": details,
            "private": bool(
                (record is not None and record.private)
                or (item is not None and item.private)
                or (act is not None and act.private)
            ),
        }

    def _payload_creator(self, kind: str, actor: Record | None) -> dict[str, Any] | None:
        """Who did it, where a payload says: the one observed, else what this cycle
        learned of the record by the end (a listing without `creator`, then its single
        GET with one)."""
        if actor is None:
            return None
        found = self._creator(kind, actor)
        if found:
            return found
        current = self._current((actor.type, actor.id))  # only when needed: a Record each
        return self._creator(kind, current) if current is not None else None

    def _summary(
        self,
        ex: Explained,
        title: str,
        creator: dict[str, Any] | None,
    ) -> str:
        """One grammar for every kind and source: "<who> <verb> <noun>: <title>", with
        "Someone" when Basecamp does not say who. An activity nothing else explains is
        told in its own words: "<who> <action>: <target>"."""
        who = (creator or {}).get("name") or "Someone"
        prefix = kind_prefix(ex.key[0])
        noun = _NOUN.get(prefix, prefix.replace("_", " "))
        act = ex.activity
        if ex.kind.endswith("_activity") and act is not None:
            action = plain_text(act.action).rstrip(" :")
            target = plain_text(act.target) or title
            return plain_text(f"{who} {action}: {target}" if target else f"{who} {action}")
        if ex.kind.startswith("comment_"):
            verb = {
                "comment_created": "commented on",
                "comment_trashed": "deleted a comment on",
            }.get(ex.kind, "edited a comment on")
            return plain_text(f"{who} {verb} {noun}: {title}")
        suffix = _suffix(ex.kind, prefix)
        verb = _VERB.get(suffix, suffix.replace("_", " "))
        return plain_text(f"{who} {verb} {noun}: {title}")

    @staticmethod
    def _creator(kind: str, record: Record) -> dict[str, Any] | None:
        meta = record.meta
        if kind == "todo_completed" and meta.get("completer"):
            return dict(meta["completer"])
        if kind.endswith("_created"):
            return dict(meta["creator"]) if meta.get("creator") else None
        if kind.endswith(("_changed", "_content_changed")) and meta.get("last_updater"):
            return dict(meta["last_updater"])
        return None

    def to_write(self) -> CycleWrite:
        self.finish()
        return CycleWrite(
            account_id=self.account_id,
            records=list(self.changed.values()),
            events=list(self.events),
        )
