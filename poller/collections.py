"""Fetching records: targeted refetches of single items and full conditional re-lists.

Every function here reads Basecamp through the cycle's client and hands what it parsed to
the cycle's `Detector`. A record is declared gone only when a complete listing lacks it
AND its own URL answers 404 (`verify`); any other failure propagates and the cycle
commits nothing.

Several requests in flight (`fetch_each`): independent single-item GETs of one step (the
targeted refetch, a burst's list GETs, a section's full fetches and 404 checks) go out up
to the client's `max_in_flight` at once (and a project's section listings are started
together, `prefetch_listings`), but what they return is handed to the detector
in the order the step planned them, one at a time and without an await in between. What
each request sends (its URL, its validators) is decided before any earlier answer of the
step is applied, so a step plans only requests that no earlier answer of it can change:
each item at most once (a repeated URL waits for its turn). Detection is therefore the
same whatever `max_in_flight` is and whichever answer comes first. Listings and the feed
stay one page after the other (`BasecampClient.get_list`).

Several projects in flight (`fetch_project` / `apply_project`, driven by `poll._relist`):
what a project's re-list reads before any diff decides anything (its own GET, its due
sections' listings) is fetched ahead for the next projects while the current one is
diffed and committed; the diff of each still runs after the previous project's commit.

Why a listing's page N+1 is not requested before page N has answered: Basecamp's pages
are offsets into a list that can change between two reads. Read in order, an item
inserted before the boundary between the reads pushes the last item of page N onto page
N+1 too: a duplicate, dropped by id. Read out of order (page N+1 served first, then an
insert, then page N), that item is on neither page: a skip. For the feed (newest first,
every new event an insert at the top) a skip is an activity lost for good once the cursor
has moved past it, so feed pages must stay in order; for a section listing a skip would
delay a new item to the next re-list or feed. Requesting page N+1 before page N's length
is known would also cost a wasted request per listing. So pages stay one after the other
and the concurrency comes from other listings and other projects instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from poller.client import (
    CONTINUATION,
    BasecampClient,
    Fetched,
    Listing,
    NotModified,
    Validators,
    request_priority,
)
from poller.detect import Detector
from poller.errors import BadResponse, NotFound
from poller.links import SEGMENT, without_query
from poller.match import action_hint
from poller.payloads import (
    COMMENTABLE,
    WATCH_TYPES,
    Activity,
    Record,
    parse,
    parse_comments,
    parse_project,
    parse_ts,
    person_ref,
    project_id_from_url,
)
from poller.store import Store

log = structlog.get_logger(__name__)

TYPE_WATCH = {v: k for k, v in WATCH_TYPES.items()}
# project section summary -> the types re-listed when it changes
SECTION_TYPES = {
    "todolists": ("Todolist", "Todo"),
    "topics": ("Message", "Comment"),
    "documents": ("Document",),
    "attachments": ("Upload",),
    "calendar_events": ("CalendarEvent",),
}
TYPE_SECTION = {
    "Todolist": "todolists",
    "Todo": "todolists",
    "Message": "topics",
    "Document": "documents",
    "Upload": "attachments",
    "CalendarEvent": "calendar_events",
}


@dataclass
class Cycle:
    """What one cycle of one account works with."""

    client: BasecampClient
    store: Store
    detector: Detector
    watch: frozenset[str]
    api_root: str
    max_pages: int = 200
    baseline: bool = False
    validators: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    drop_validators: set[str] = field(default_factory=set)
    forced: dict[int, set[str]] = field(default_factory=dict)
    # items the feed named that answered 404: a complete listing settles them
    missing: set[tuple[str, int]] = field(default_factory=set)
    # a periodic full re-check: send no validators and re-list every section, so a server
    # answering 304 for content that did change (a stale cache) cannot hide it for ever
    unconditional: bool = False
    # a project's section listings, started together (`prefetch_listings`), by URL
    listings: dict[str, asyncio.Task[Listing | NotModified]] = field(default_factory=dict)

    @property
    def account_id(self) -> int:
        return self.detector.account_id

    def watched(self, rtype: str) -> bool:
        return TYPE_WATCH.get(rtype, "") in self.watch

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.api_root}{path}"

    def stored_validators(self, url: str) -> Validators | None:
        if self.unconditional:
            return None
        pair = self.validators.get(url) or self.store.validators(self.account_id, url)
        if not pair or url in self.drop_validators:
            return None
        return Validators(etag=pair[0], last_modified=pair[1])

    def keep_validators(self, url: str, validators: Validators | None) -> None:
        if validators:
            self.validators[url] = (validators.etag, validators.last_modified)
            self.drop_validators.discard(url)
        else:
            self.drop_validators.add(url)
            self.validators.pop(url, None)

    def item_url(self, rtype: str, rid: int, project_id: int | None, meta: dict[str, Any]) -> str:
        url = meta.get("url")
        if isinstance(url, str) and url:
            return url
        if rtype == "Project":
            return self.url(f"/projects/{rid}.json")
        if rtype == "Person":
            return self.url(f"/people/{rid}.json")
        return self.url(f"/projects/{project_id}/{SEGMENT[rtype]}/{rid}.json")


# -- several requests in flight ----------------------------------------------------

Answer = Fetched | NotModified | None  # None: the URL answered 404
T = TypeVar("T")


@dataclass(frozen=True)
class Get:
    """One planned GET of a step: its URL, and whether it sends stored validators."""

    url: str
    conditional: bool = True


async def _get(cycle: Cycle, url: str, validators: Validators | None) -> Answer:
    try:
        return await cycle.client.get(url, validators=validators)
    except NotFound:
        return None


async def fetch_each(
    cycle: Cycle,
    items: Sequence[T],
    plan: Callable[[T], Get | None],
    apply: Callable[[T, Answer], Awaitable[None] | None],
) -> None:
    """For each item, in order: GET what `plan` names (None: nothing to fetch) and hand
    the answer to `apply` (None for a 404, or when nothing was fetched).

    Up to the client's `max_in_flight` GETs are in flight (the client bounds them); at
    most twice that many are started and not yet applied, so memory stays bounded and
    one slow answer does not idle the others. `apply` runs for item n
    only after it ran for items 0..n-1, in this task: the detector sees the same calls in
    the same order whatever `max_in_flight` is. A GET's validators are read when it
    starts; a URL already planned earlier in the step starts only at its turn (after the
    earlier answer was applied), so it sees what that answer stored. Any failure cancels
    the GETs still in flight and propagates (the first in item order wins).
    """
    plans = [plan(item) for item in items]
    ahead = 1 if cycle.client.max_in_flight <= 1 else 2 * cycle.client.max_in_flight
    repeated: set[int] = set()
    urls: set[str] = set()
    for index, planned in enumerate(plans):
        if planned is not None:
            if planned.url in urls:
                repeated.add(index)
            urls.add(planned.url)

    def start(index: int) -> asyncio.Task[Answer] | None:
        planned = plans[index]
        if planned is None:
            return None
        validators = cycle.stored_validators(planned.url) if planned.conditional else None
        return asyncio.ensure_future(_get(cycle, planned.url, validators))

    tasks: dict[int, asyncio.Task[Answer]] = {}
    started = 0
    try:
        for index, item in enumerate(items):
            # start the GETs of the next items, this one's first, until `ahead` are
            # started and not yet applied (items with nothing to fetch take no room)
            while started < len(items) and (started <= index or len(tasks) < ahead):
                if started not in repeated or started == index:
                    task = start(started)
                    if task is not None:
                        tasks[started] = task
                started += 1
            if index in repeated and index not in tasks:
                task = start(index)
                if task is not None:
                    tasks[index] = task
            task = tasks.pop(index, None)
            answer = await task if task is not None else None
            done = apply(item, answer)
            if done is not None:
                await done
    finally:
        pending = list(tasks.values())
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


# -- single items ------------------------------------------------------------------


async def fetch_item(
    cycle: Cycle,
    rtype: str,
    url: str,
    project_id: int | None,
    *,
    conditional: bool = True,
) -> bool:
    """GET one item (conditionally), diff it and its embedded comments.

    False when the item answered 404. Basecamp's single GETs carry no `url` of their own;
    the URL that answered stands in for it, so an item moved to another project (the old
    URL answers 301) takes its project from where Basecamp redirected.
    """
    res = await _get(cycle, url, cycle.stored_validators(url) if conditional else None)
    return apply_item(cycle, rtype, url, project_id, res)


def apply_item(cycle: Cycle, rtype: str, url: str, project_id: int | None, res: Answer) -> bool:
    """Diff what one item's GET of `url` returned (see `fetch_item`); False for a 404."""
    det = cycle.detector
    if res is None:
        return False
    if isinstance(res, NotModified):
        return True
    final = without_query(res.url)
    record = parse(rtype, res.data, res.url, project_id_from_url(final) or project_id)
    if not record.meta.get("url"):
        record.meta["url"] = final
    cycle.keep_validators(url, res.validators)
    changes = det.observe(record)
    # a trashed item's GET embeds no comments: their absence says nothing about them
    comments = (
        parse_comments(record, res.url) if rtype in COMMENTABLE and not record.trashed else None
    )
    comment_changes = det.observe_comments(record, comments) if comments is not None else []
    if not changes and not comment_changes:
        det.first_read(record)
    return True


async def verify_gone(cycle: Cycle, rtype: str, rids: Iterable[int]) -> None:
    """A complete listing lacks these stored records: ask each item itself (several in
    flight). Only a 404 makes one gone."""

    checks: list[tuple[int, int | None, str]] = []  # (id, project, url)
    for rid in sorted(rids):
        old = cycle.detector.get(rtype, rid)
        if old is not None:
            url = cycle.item_url(rtype, rid, old.project_id, old.data.get("meta", {}))
            checks.append((rid, old.project_id, url))

    def apply(check: tuple[int, int | None, str], res: Answer) -> None:
        rid, project_id, url = check
        if not apply_item(cycle, rtype, url, project_id, res):
            cycle.detector.gone(rtype, rid)
            cycle.drop_validators.add(url)

    await fetch_each(cycle, checks, lambda check: Get(check[2], conditional=False), apply)


# -- listings ----------------------------------------------------------------------


async def list_all(
    cycle: Cycle, path: str, *, conditional: bool = False
) -> tuple[str, list[dict[str, Any]]] | None:
    """Every item of a listing; None when answered 304 (conditional only)."""
    url = cycle.url(path)
    started = cycle.listings.pop(url, None)
    if started is not None:
        res = await started
    else:
        res = await cycle.client.get_list(
            url,
            validators=cycle.stored_validators(url) if conditional else None,
            max_pages=cycle.max_pages,
        )
    if isinstance(res, NotModified):
        return None
    for item in res.items:
        # Every Basecamp listing stamps each record with `updated_at` (an expanded
        # calendar recurrence, which has no id, is the one exception). A listing of bare
        # `{id, ...}` objects is not Basecamp's: refuse it rather than "discover" records.
        if "id" in item and not isinstance(item.get("updated_at"), str):
            raise BadResponse("listed record without updated_at", url=res.url)
    if conditional:
        cycle.keep_validators(url, res.validators)
    return res.url, res.items


async def _settle(
    cycle: Cycle, rtype: str, listed: dict[int, Record], stored_ids: Iterable[int]
) -> None:
    await verify_gone(cycle, rtype, set(stored_ids) - set(listed))
    det = cycle.detector
    for key in [k for k in cycle.missing if k[0] == rtype and k[1] not in listed]:
        if det.get(*key) is None:  # never stored: nothing for verify_gone to settle
            det.vanished.add(key)


def _changed_since(old_updated: str | None, new_updated: str | None) -> bool:
    a, b = parse_ts(old_updated), parse_ts(new_updated)
    return a is None or b is None or b > a


def needs_comments(cycle: Cycle, record: Record) -> bool:
    """A listed item's comment count differs from what was stored before this cycle, and
    this cycle has not read its comments yet: only its single GET can say which changed.

    Compared with the stored version, never this cycle's: a list GET earlier in the cycle
    already took the new count from its embedded to-dos without reading any comment.
    """
    if not cycle.watched("Comment"):
        return False
    key = (record.type, record.id)
    if key in cycle.detector.comments_read:
        return False
    old = cycle.detector.before(*key)
    count = record.meta.get("comments_count")
    if old is None:
        return bool(count)
    return bool(count != old.data.get("meta", {}).get("comments_count"))


def _full_get(cycle: Cycle, record: Record, full: bool) -> Get | None:
    """The single GET a listed record needs (see `observe_listed`), or None."""
    if full and not cycle.baseline and not record.trashed:
        return Get(cycle.item_url(record.type, record.id, record.project_id, record.meta))
    return None


def _apply_listed(cycle: Cycle, record: Record, get: Get | None, res: Answer) -> None:
    if get is not None and apply_item(cycle, record.type, get.url, record.project_id, res):
        return
    if cycle.watched(record.type):
        cycle.detector.observe(record)
    else:
        cycle.detector.remember(record)


async def observe_listed(cycle: Cycle, record: Record, *, full: bool) -> None:
    """Diff a listed record; fetch its single resource when the listing cannot say enough
    (new item, comments or content changed) and this is not a baseline."""
    await observe_all_listed(cycle, [(record, full)])


async def observe_all_listed(cycle: Cycle, records: Sequence[tuple[Record, bool]]) -> None:
    """`observe_listed` for each (record, full), in order, the single GETs several in
    flight. `full` is decided by the caller before any of them is applied: from this
    record's own stored version, which no other record's answer changes."""
    gets = [_full_get(cycle, record, full) for record, full in records]

    def apply(index: int, res: Answer) -> None:
        _apply_listed(cycle, records[index][0], gets[index], res)

    await fetch_each(cycle, range(len(records)), gets.__getitem__, apply)


async def sync_projects(cycle: Cycle) -> list[int]:
    """Re-list projects (conditionally); returns the ids of active projects."""
    det = cycle.detector
    got = await list_all(cycle, "/projects.json", conditional=True)
    if got is None:
        return sorted(
            r.id for r in det.active("Project").values() if not r.data["fields"].get("archived")
        )
    url, items = got
    listed = {}
    for item in items:
        rec = parse_project(item, url)
        listed[rec.id] = rec
        if cycle.watched("Project"):
            det.observe(rec)
        else:
            det.remember(rec)
    await _settle(cycle, "Project", listed, det.active("Project"))
    return sorted(
        pid for pid, rec in listed.items() if not rec.fields.get("archived") and not rec.trashed
    )


def prefetch_people(cycle: Cycle) -> None:
    """Start /people.json (conditionally) while the projects listing is read and settled:
    nothing in between changes its validators, and `sync_people` still diffs it after the
    projects. With `max_in_flight = 1` nothing is started ahead."""
    if cycle.client.max_in_flight <= 1 or not cycle.watched("Person"):
        return
    url = cycle.url("/people.json")
    cycle.listings[url] = asyncio.ensure_future(
        cycle.client.get_list(
            url, validators=cycle.stored_validators(url), max_pages=cycle.max_pages
        )
    )


async def drop_listings(cycle: Cycle) -> None:
    """Cancel the listings started and not used (see `_drop_listings`)."""
    await _drop_listings(cycle)


async def sync_people(cycle: Cycle) -> None:
    det = cycle.detector
    got = await list_all(cycle, "/people.json", conditional=True)
    if got is None:
        return
    url, items = got
    listed = {}
    for item in items:
        rec = parse("Person", item, url)
        listed[rec.id] = rec
        det.observe(rec)
    await _settle(cycle, "Person", listed, det.active("Person"))


@dataclass
class ProjectFetch:
    """What `fetch_project` read of one project ahead of diffing it: the project's own
    GET (None: 404) and its due sections' listings, started (`Cycle.listings`)."""

    pid: int
    url: str
    force: set[str]
    answer: Answer
    listings: dict[str, asyncio.Task[Listing | NotModified]] = field(default_factory=dict)


def _due_sections(
    cycle: Cycle, force: set[str], old: Any, new_sections: dict[str, Any]
) -> list[str]:
    old_sections = (old.data.get("meta", {}).get("sections") if old else None) or {}
    return [
        section
        for section, types in SECTION_TYPES.items()
        if any(cycle.watched(t) for t in types)
        and (
            section in force
            or old_sections.get(section) != new_sections.get(section)
            or not old_sections
        )
    ]


async def fetch_project(cycle: Cycle, pid: int, force: set[str]) -> ProjectFetch:
    """The requests of one project's re-list that no diff decides: its own GET
    (conditional unless forced), then its due sections' listings, started together
    (`prefetch_listings`; not with `max_in_flight = 1`). Reads nothing of the cycle's
    detector: only the project's own stored record and validators, which no other
    project's commit writes. So a project fetched while earlier ones are still being
    diffed and committed (`poll._relist`) is diffed by `apply_project` exactly as if it
    had been fetched then; only the moment Basecamp was read differs."""
    url = cycle.url(f"/projects/{pid}.json")
    if cycle.unconditional:
        force = set(SECTION_TYPES)
    # the project's GET and its to-dos listing head the longest chain of requests of
    # its re-list (project -> page 1 -> page 2 ...): they go with a listing's next pages,
    # before the other listings (see `request_priority`)
    token = request_priority.set(request_priority.get() - CONTINUATION)
    try:
        res: Answer = await cycle.client.get(
            url, validators=None if force else cycle.stored_validators(url)
        )
    except NotFound:
        res = None
    finally:
        request_priority.reset(token)
    fetched = ProjectFetch(pid, url, force, res)
    if isinstance(res, Fetched):
        old = cycle.store.record(cycle.account_id, "Project", pid)
        new_sections = parse_project(res.data, res.url).meta.get("sections", {})
        due = _due_sections(cycle, force, old, new_sections)
        paths = [path for section in due for path in _section_paths(cycle, section, pid)]
        # the to-dos listing first: usually the one of many pages, one after the other,
        # so the longest chain of requests starts first (nothing is diffed here: the
        # order requests start in changes no detection)
        paths.sort(key=lambda path: not path.endswith("/todos.json"))
        listings, cycle.listings = cycle.listings, {}
        try:
            prefetch_listings(cycle, paths)
        finally:
            fetched.listings, cycle.listings = cycle.listings, listings
    return fetched


async def apply_project(cycle: Cycle, fetched: ProjectFetch) -> None:
    """Diff what `fetch_project` read: the project, then each due section in order (its
    listings taken from those started, the single GETs and 404 checks the diff asks for
    fetched here). Cancels the listings it did not use, whatever happens."""
    cycle.listings.update(fetched.listings)
    fetched.listings = {}
    try:
        res = fetched.answer
        if res is None or isinstance(res, NotModified):
            return  # 404: settled by the next projects listing; 304: nothing changed
        det = cycle.detector
        pid = fetched.pid
        old = det.get("Project", pid)
        record = parse_project(res.data, res.url)
        cycle.keep_validators(fetched.url, res.validators)
        if cycle.watched("Project"):
            det.observe(record)
        else:
            det.remember(record)
        due = _due_sections(cycle, fetched.force, old, record.meta.get("sections", {}))
        for section in due:
            await SECTION_SYNC[section](cycle, pid)
    finally:
        await _drop_listings(cycle)


async def drop_fetch(fetched: ProjectFetch) -> None:
    """Cancel the listings a fetched project started (it will not be applied)."""
    await _cancel(list(fetched.listings.values()))
    fetched.listings = {}


async def sync_project(cycle: Cycle, pid: int, force: set[str]) -> None:
    """Fetch the project (conditionally) and re-list the sections whose summary changed."""
    await apply_project(cycle, await fetch_project(cycle, pid, force))


def _section_paths(cycle: Cycle, section: str, pid: int) -> list[str]:
    """The listings a section's sync reads (unconditionally), in the order it reads them."""
    if section == "todolists":
        paths = []
        if cycle.watched("Todolist"):
            paths += [
                f"/projects/{pid}/todolists.json",
                f"/projects/{pid}/todolists/completed.json",
            ]
        if cycle.watched("Todo") or cycle.watched("Comment"):
            paths.append(f"/projects/{pid}/todos.json")
        return paths
    if section == "calendar_events":
        return [
            f"/projects/{pid}/calendar_events.json",
            f"/projects/{pid}/calendar_events/past.json",
        ]
    return [f"/projects/{pid}/{section}.json"]  # topics, documents, attachments


def prefetch_listings(cycle: Cycle, paths: list[str]) -> None:
    """Start reading these unconditional listings together (each one's pages still one
    after the other, `get_list`); `list_all` takes a started one instead of asking again.
    Nothing is applied here: the sections still diff what they listed in their own order,
    so what is detected does not depend on which listing answers first. With
    `max_in_flight = 1` nothing is started ahead."""
    if cycle.client.max_in_flight <= 1:
        return
    for path in paths:
        url = cycle.url(path)
        if url not in cycle.listings:
            # the to-dos listing (usually the one of many pages) goes with next pages
            chain = path.endswith("/todos.json")
            token = request_priority.set(request_priority.get() - chain * CONTINUATION)
            try:
                cycle.listings[url] = asyncio.ensure_future(
                    cycle.client.get_list(url, max_pages=cycle.max_pages)
                )
            finally:
                request_priority.reset(token)


async def _drop_listings(cycle: Cycle) -> None:
    """Cancel the listings started and not used (a section failed): nothing is left
    running, and no failure goes unretrieved."""
    pending = list(cycle.listings.values())
    cycle.listings.clear()
    await _cancel(pending)


async def _cancel(pending: list[asyncio.Task[Any]]) -> None:
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


async def _listed(cycle: Cycle, rtype: str, pid: int, *paths: str) -> dict[int, Record]:
    """Every item of these listings (all pages), parsed, first occurrence kept. Expanded
    calendar recurrences (no `id` of their own) are left out."""
    listed: dict[int, Record] = {}
    for path in paths:
        got = await list_all(cycle, path)
        assert got is not None  # unconditional listings never answer 304
        url, items = got
        for item in items:
            if isinstance(item, dict) and "id" not in item and "recurrence" in item:
                continue
            rec = parse(rtype, item, url, pid)
            listed.setdefault(rec.id, rec)
    cycle.detector.prefetch(rtype, listed)  # one query for what the project preload missed
    return listed


async def _sync_todolists(cycle: Cycle, pid: int) -> None:
    det = cycle.detector
    det.preload("Todolist", pid)  # one query, not one per record
    det.preload("Todo", pid)  # one query, not one per record
    if cycle.watched("Todolist"):
        listed = await _listed(
            cycle,
            "Todolist",
            pid,
            f"/projects/{pid}/todolists.json",
            f"/projects/{pid}/todolists/completed.json",
        )
        await observe_all_listed(cycle, [(rec, False) for rec in listed.values()])
        await _settle(cycle, "Todolist", listed, det.active("Todolist", pid))
    if cycle.watched("Todo") or cycle.watched("Comment"):
        todos = await _listed(cycle, "Todo", pid, f"/projects/{pid}/todos.json")
        await observe_all_listed(
            cycle, [(rec, needs_comments(cycle, rec)) for rec in todos.values()]
        )
        await _settle(cycle, "Todo", todos, det.active("Todo", pid))


async def _sync_topics(cycle: Cycle, pid: int) -> None:
    """Topics carry messages (there is no message index) and tell which commentables got
    new comments (their topic's `updated_at` moves)."""
    det = cycle.detector
    det.preload("Topic", pid)  # one query, not one per record
    det.preload("Message", pid)  # one query, not one per record
    got = await list_all(cycle, f"/projects/{pid}/topics.json")
    assert got is not None
    url, items = got
    messages: dict[int, Record] = {}
    # a message to observe (its GET when `full`), or a commentable whose topic moved:
    # its single GET, for its comments
    steps: list[tuple[Record, bool] | tuple[str, str]] = []
    gets: list[Get | None] = []
    for item in items:
        topicable = item.get("topicable") if isinstance(item, dict) else None
        topic = (
            parse("Message", {**item, "subject": item.get("title")}, url, pid)
            if isinstance(item, dict)
            else None
        )
        if topic is None or not isinstance(topicable, dict):
            continue
        ttype, tid, turl = topicable.get("type"), topicable.get("id"), topicable.get("url")
        if not isinstance(ttype, str) or not isinstance(tid, int) or not isinstance(turl, str):
            continue
        topic_key = Record(
            "Topic", topic.id, pid, topic.title, topic.updated_at, {}, {"topicable": [ttype, tid]}
        )
        old_topic = det.get("Topic", topic.id)
        changed = old_topic is None or _changed_since(old_topic.updated_at, topic.updated_at)
        det.remember(topic_key)
        if ttype == "Message":
            msg = Record(
                "Message",
                tid,
                pid,
                topic.title,
                topic.updated_at,
                {"subject": topic.title, "trashed": topic.trashed, "private": topic.private},
                {
                    "url": turl,
                    "app_url": topicable.get("app_url"),
                    "created_at": topic.meta.get("created_at"),
                },
            )
            messages[tid] = msg
            if cycle.watched("Message") or cycle.watched("Comment"):
                steps.append((msg, changed))
                gets.append(_full_get(cycle, msg, changed))
        elif changed and not cycle.baseline and cycle.watched("Comment") and ttype in SEGMENT:
            steps.append((ttype, turl))
            gets.append(Get(turl))

    # the topics are remembered above (nothing below reads them); what they point at is
    # read here, several in flight, and applied in the topics' order
    def apply(index: int, res: Answer) -> None:
        step, get = steps[index], gets[index]
        if isinstance(step[0], Record):
            _apply_listed(cycle, step[0], get, res)
        elif get is not None:
            apply_item(cycle, step[0], get.url, pid, res)

    await fetch_each(cycle, range(len(steps)), gets.__getitem__, apply)
    if cycle.watched("Message"):
        await _settle(cycle, "Message", messages, det.active("Message", pid))


async def _sync_documents(cycle: Cycle, pid: int) -> None:
    det = cycle.detector
    det.preload("Document", pid)  # one query, not one per record
    listed = await _listed(cycle, "Document", pid, f"/projects/{pid}/documents.json")
    steps = []
    for rec in listed.values():
        old = det.get("Document", rec.id)
        steps.append((rec, old is None or _changed_since(old.updated_at, rec.updated_at)))
    await observe_all_listed(cycle, steps)
    await _settle(cycle, "Document", listed, det.active("Document", pid))


async def _sync_uploads(cycle: Cycle, pid: int) -> None:
    """Uploads have no index: find them through the project's attachments."""
    det = cycle.detector
    det.preload("Upload", pid)  # one query, not one per record
    got = await list_all(cycle, f"/projects/{pid}/attachments.json")
    assert got is not None
    uploads: dict[int, Record] = {}
    for item in got[1]:
        attachable = item.get("attachable") if isinstance(item, dict) else None
        if not isinstance(attachable, dict) or attachable.get("type") != "Upload":
            continue
        uid, uurl = attachable.get("id"), attachable.get("url")
        if not isinstance(uid, int) or uid in uploads:
            continue
        uploads[uid] = Record(
            "Upload",
            uid,
            pid,
            str(item.get("name") or f"Upload {uid}"),
            item.get("updated_at"),
            {"trashed": bool(item.get("trashed")), "private": bool(item.get("private"))},
            {
                "url": uurl,
                "app_url": attachable.get("app_url"),
                "created_at": item.get("created_at"),
                "creator": person_ref(item.get("creator")),
            },
        )
    await observe_all_listed(
        cycle, [(rec, det.get("Upload", rec.id) is None) for rec in uploads.values()]
    )
    await _settle(cycle, "Upload", uploads, det.active("Upload", pid))


async def _sync_calendar_events(cycle: Cycle, pid: int) -> None:
    det = cycle.detector
    det.preload("CalendarEvent", pid)  # one query, not one per record
    listed = await _listed(
        cycle,
        "CalendarEvent",
        pid,
        f"/projects/{pid}/calendar_events.json",
        f"/projects/{pid}/calendar_events/past.json",
    )
    await observe_all_listed(cycle, [(rec, needs_comments(cycle, rec)) for rec in listed.values()])
    await _settle(cycle, "CalendarEvent", listed, det.active("CalendarEvent", pid))


SECTION_SYNC = {
    "todolists": _sync_todolists,
    "topics": _sync_topics,
    "documents": _sync_documents,
    "attachments": _sync_uploads,
    "calendar_events": _sync_calendar_events,
}


async def relist_forced(cycle: Cycle) -> None:
    """Re-list the projects and sections this cycle's activity pointed at (`forced`): a
    404 to settle, a project's own activity. The full re-list is `poll._relist`."""
    for pid in sorted(cycle.forced):
        await sync_project(cycle, pid, cycle.forced[pid])


# To-do activities on one known list at least this many: one GET of the list (it embeds
# its to-dos) instead of one GET per to-do.
LIST_BATCH_MIN = 3

Group = tuple[str, int]


def _apply_list_batch(
    cycle: Cycle, pid: int, list_id: int, batch: dict[int, list[Activity]], res: Answer
) -> tuple[set[int], list[Record]]:
    """Diff the batched to-dos embedded in what one to-do list's GET returned. Returns the
    to-do ids it settled, and the batched to-dos whose comment count moved: each also
    needs its own GET (the list embeds no comments)."""
    det = cycle.detector
    if res is None or isinstance(res, NotModified) or not isinstance(res.data, dict):
        return set(), []
    todolist = parse("Todolist", res.data, res.url, project_id_from_url(res.url) or pid)
    if not todolist.meta.get("url"):
        todolist.meta["url"] = without_query(res.url)
    if cycle.watched("Todolist"):
        det.observe(todolist)
    else:
        det.remember(todolist)
    embedded = res.data.get("todos")
    if not isinstance(embedded, dict):
        return set(), []
    settled: set[int] = set()
    buckets = (
        ("remaining", {"completed": False, "trashed": False}),
        ("completed", {"completed": True, "trashed": False}),
        ("trashed", {"trashed": True}),  # a trashed list is proof enough (never invented)
    )
    commented: list[Record] = []
    for bucket, flags in buckets:
        items = embedded.get(bucket) or []
        if not isinstance(items, list):
            raise BadResponse(f"todolist.todos.{bucket}: expected a list", url=res.url)
        for item in items:
            if not isinstance(item, dict):
                raise BadResponse(f"todolist.todos.{bucket}: expected objects", url=res.url)
            record = parse("Todo", {**item, **flags, "todolist_id": list_id}, res.url, pid)
            if record.id not in batch:
                continue  # not what the activities point at: the re-list looks at it
            if needs_comments(cycle, record) and not record.trashed:
                commented.append(record)
            det.observe(record)
            settled.add(record.id)
    return settled, commented


@dataclass(frozen=True)
class _Refetch:
    """One targeted GET: the item, and what its answer (read or 404) sets in motion."""

    rtype: str
    get: Get
    project_id: int | None
    then: Callable[[bool], None] | None = None


async def apply_activities(cycle: Cycle, activities: list[Activity]) -> None:
    """Targeted refetch of what the new activities point at.

    The activities are handed to the detector, which explains each exactly once when the
    cycle ends (`match.match`); this only makes sure the changes they describe are read.
    Bursts of to-do changes in one list cost one request (the list embeds its to-dos);
    everything else is one conditional GET per changed item. Up to `max_in_flight` of
    them go at once (`fetch_each`): first the bursts' list GETs, then every single GET
    (a burst's to-dos whose comments moved, then the other items), each answer diffed in
    that order.
    """
    det = cycle.detector
    det.register(activities)
    groups: dict[Group, list[Activity]] = {}
    for act in activities:
        if act.eventable_id is not None:
            groups.setdefault((act.eventable_type, act.eventable_id), []).append(act)
        else:
            det.unread.add(act.id)

    refetch: list[_Refetch] = []
    if cycle.watched("Todo"):
        by_list: dict[tuple[int, int], dict[int, list[Activity]]] = {}
        for (etype, eid), acts in groups.items():
            if etype != "Todo" or acts[-1].project_id is None:
                continue
            if any(str(action_hint(a.action)).startswith("comment_") for a in acts):
                continue  # comments come only with the to-do's own GET
            old = det.get("Todo", eid)
            list_id = old.data.get("fields", {}).get("todolist_id") if old else None
            if isinstance(list_id, int):
                by_list.setdefault((acts[-1].project_id, list_id), {})[eid] = acts
        bursts = [(key, batch) for key, batch in by_list.items() if len(batch) >= LIST_BATCH_MIN]

        def burst_get(burst: tuple[tuple[int, int], dict[int, list[Activity]]]) -> Get:
            (list_pid, list_id), _ = burst
            return Get(cycle.url(f"/projects/{list_pid}/todolists/{list_id}.json"), False)

        def apply_burst(
            burst: tuple[tuple[int, int], dict[int, list[Activity]]], res: Answer
        ) -> None:
            (list_pid, list_id), batch = burst
            settled, commented = _apply_list_batch(cycle, list_pid, list_id, batch, res)
            for eid in settled:
                del groups[("Todo", eid)]
            for record in commented:
                url = cycle.item_url("Todo", record.id, record.project_id, record.meta)
                refetch.append(_Refetch("Todo", Get(url, False), record.project_id))

        await fetch_each(cycle, bursts, burst_get, apply_burst)

    for (etype, eid), acts in groups.items():
        latest = acts[-1]
        if etype == "Project" and cycle.watched("Project"):
            # activity on a project itself (created, renamed, archived): diffed like any
            # item. Its section summaries were just read, so this cycle re-lists every
            # section of it rather than trust a summary no listing has looked behind; gone,
            # the projects listing and a 404 settle it (project_trashed)
            url = latest.eventable_url or cycle.url(f"/projects/{eid}.json")
            refetch.append(_Refetch("Project", Get(url), eid, _force_all_sections(cycle, eid)))
            continue
        if etype == "Project":
            det.unread.update(a.id for a in acts)
            continue
        if etype not in SEGMENT or not (
            cycle.watched(etype) or (cycle.watched("Comment") and etype in COMMENTABLE)
        ):
            det.unread.update(a.id for a in acts)  # `<type>_activity`: nothing was read
            continue
        pid = latest.project_id
        old = det.get(etype, eid)
        url = latest.eventable_url or cycle.item_url(
            etype, eid, pid if pid is not None else (old.project_id if old else None), {}
        )
        refetch.append(_Refetch(etype, Get(url), pid, _relist_if_gone(cycle, etype, pid, eid)))

    def apply(one: _Refetch, res: Answer) -> None:
        read = apply_item(cycle, one.rtype, one.get.url, one.project_id, res)
        if one.then is not None:
            one.then(read)

    await fetch_each(cycle, refetch, lambda one: one.get, apply)


def _force_all_sections(cycle: Cycle, pid: int) -> Callable[[bool], None]:
    def then(read: bool) -> None:
        if read:
            cycle.forced.setdefault(pid, set()).update(SECTION_TYPES)

    return then


def _relist_if_gone(cycle: Cycle, rtype: str, pid: int | None, rid: int) -> Callable[[bool], None]:
    def then(read: bool) -> None:
        # 404: this cycle's re-list of that section settles it (and the activity that
        # said who trashed it is matched to the verified change)
        if not read and pid is not None:
            cycle.forced.setdefault(pid, set()).add(TYPE_SECTION[rtype])
            cycle.missing.add((rtype, rid))

    return then
