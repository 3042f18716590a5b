"""Recorded payloads from real Basecamp 2 accounts (issue 10, item 5).

`../shared/basecamp2/real/` holds response bodies that other Basecamp 2 clients recorded
from the live API; its `SOURCES.md` table says which endpoint answered each. Driven by
that table, every body goes through the parser its endpoint implies, then through the
steps a poll takes with it (listing, single GET, a 301-moved list, the activity feed),
and every event built must keep the envelope contract, link to its item and carry the
project and the creator the payload names. The bodies are read from `../shared` at test
time and never copied into the repository.

In-process only, real parts: the detector works on a real SQLite store; single GETs,
the list-burst refetch, topics and attachments go through the real `poller.collections`
functions (`fetch_item`, `_apply_list_batch`, `_sync_topics`, `_sync_uploads`) and the
real `BasecampClient`, whose HTTP transport answers with the recorded bodies (a URL with
no recording answers 404). Listed records are observed as `observe_listed` does when it
fetches nothing more; the feed's activities are registered with the detector alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest

from poller.collections import Cycle, _apply_list_batch, _sync_topics, _sync_uploads, fetch_item
from poller.detect import Detector
from poller.errors import BadResponse
from poller.links import without_query
from poller.payloads import (
    COMMENTABLE,
    WATCH_TYPES,
    Activity,
    Record,
    kind_prefix,
    parse,
    parse_activity,
    parse_comments,
    parse_project,
    project_id_from_url,
)
from poller.store import Store
from tests.client.fakes import account, json_response, make_client
from tests.contract import problems

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "basecamp2"
REAL = SHARED / "real"
SOURCES = REAL / "SOURCES.md"
# the one body SOURCES.md names as malformed: a single GET wrapped in a JSON array
MALFORMED = "netvlies-php__todo_array.json"
MOVED = "bcx-rb__todolist_moved.json"

pytestmark = pytest.mark.skipif(
    not SOURCES.is_file(),
    reason=f"recorded Basecamp 2 bodies not present ({SOURCES} missing): they live in "
    "../shared beside the clone and are never copied into the repository",
)

ORIGIN = "https://basecamp.com"
WATCH = frozenset(WATCH_TYPES)
_REQUEST = re.compile(r"Request: (/\S+)")
_ACCOUNT = re.compile(r"basecamp\.com/(\d+)/")
_PROJECT_URL = re.compile(r"https://basecamp\.com/\d+/api/v1/projects/(\d+)")
_CALENDAR_URL = re.compile(r"/calendars/(\d+)")


# -- the table ----------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One row of SOURCES.md."""

    file: str
    path_in_repo: str
    endpoint: str  # "GET /projects/ID/todolists.json", "POST ... (201 representation)"
    notes: str

    @property
    def method(self) -> str:
        return self.endpoint.split()[0]

    @property
    def path(self) -> str:
        """The endpoint's path without its query: `/events.json?since=…` -> `/events.json`."""
        return self.endpoint.split()[1].split("?")[0]

    @property
    def request(self) -> str | None:
        """The recorded request path (`/2274488/api/v1/...`), when the notes give it."""
        m = _REQUEST.search(self.notes)
        return m.group(1) if m else None


def read_table() -> list[Source]:
    rows = []
    for line in SOURCES.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 7 or not re.fullmatch(r"`[^`]+\.json`", cells[0]):
            continue
        rows.append(Source(cells[0].strip("`"), cells[2], cells[4].strip("`"), cells[6]))
    return rows


@cache
def table() -> dict[str, Source]:
    return {row.file: row for row in read_table()} if SOURCES.is_file() else {}


def load(name: str) -> Any:
    return json.loads((REAL / name).read_text(encoding="utf-8"))


# endpoint (method, path pattern) -> what the product does with its body
ROLES: list[tuple[str, str, str, str | None]] = [
    ("GET", r"/projects(?:/archived|/drafts)?\.json", "list", "Project"),
    ("POST", r"/projects\.json", "single", "Project"),
    ("GET", r"/projects/ID\.json", "single", "Project"),
    ("GET", r"/people(?:/trashed)?\.json", "list", "Person"),
    ("GET", r"/people/(?:ID|me)\.json", "single", "Person"),
    ("GET", r"(?:/projects/ID)?/todolists(?:/completed)?\.json", "list", "Todolist"),
    ("POST", r"/projects/ID/todolists\.json", "single", "Todolist"),
    ("GET", r"/projects/ID/todolists/ID\.json", "single", "Todolist"),
    ("GET", r"/projects/ID/todos(?:/completed)?\.json", "list", "Todo"),
    ("POST", r"/projects/ID/todolists/ID/todos\.json", "single", "Todo"),
    ("GET", r"/projects/ID/todos/ID\.json", "single", "Todo"),
    ("GET", r"(?:/projects/ID)?/calendar_events(?:/past)?\.json", "list", "CalendarEvent"),
    ("GET", r"/(?:projects|calendars)/ID/calendar_events/ID\.json", "single", "CalendarEvent"),
    ("GET", r"/projects/ID/documents\.json", "list", "Document"),
    ("GET", r"/projects/ID/documents/ID\.json", "single", "Document"),
    ("GET", r"/projects/ID/topics\.json", "topics", "Message"),
    ("GET", r"(?:/projects/ID)?/attachments\.json", "attachments", "Upload"),
    ("GET", r"/projects/ID/attachments/ID\.json", "attachment", "Upload"),
    ("POST", r"/projects/ID/\w+/ID/comments\.json", "comment", "Comment"),
    ("GET", r"(?:/projects/ID)?/events\.json", "feed", None),
    ("GET", r"/(?:projects|calendars)/ID/accesses\.json", "accesses", None),
    ("GET", r"/people/ID/assigned_todos\.json", "assigned_todos", None),
]


def role(src: Source) -> tuple[str, str | None]:
    for method, pattern, what, rtype in ROLES:
        if src.method == method and re.fullmatch(pattern, src.path):
            return what, rtype
    raise AssertionError(f"{src.file}: no role for endpoint {src.endpoint!r}")


def names(*roles: str) -> list[str]:
    return sorted(n for n, s in table().items() if not roles or role(s)[0] in roles)


# -- URLs the product would have used ------------------------------------------------


def account_of(src: Source, body: Any) -> int:
    m = _ACCOUNT.search(src.request or "") or _ACCOUNT.search(json.dumps(body))
    if m is None and src.request:
        m = re.match(r"/(\d+)/", src.request)
    return int(m.group(1)) if m else 9999999


def api_root(acct: int) -> str:
    return f"{ORIGIN}/{acct}/api/v1"


def project_named(body: Any) -> int | None:
    """The project a body names anywhere (its url, a bucket, embedded items' urls)."""
    if isinstance(body, dict):
        bucket = body.get("bucket")
        if isinstance(bucket, dict) and bucket.get("type") == "Project":
            return int(bucket["id"])
    m = _PROJECT_URL.search(json.dumps(body))
    return int(m.group(1)) if m else None


def fetched_url(src: Source, body: dict[str, Any]) -> str:
    """The URL a single GET of this body answers at: the recorded request for a GET, the
    item's own URL for a 201 representation, else the endpoint with the body's ids."""
    acct = account_of(src, body)
    if src.method == "GET" and src.request:
        return ORIGIN + src.request
    _, rtype = role(src)
    request_project = project_id_from_url(src.request)
    pid = request_project or project_named(body) or 1
    if src.method == "POST":
        assert rtype is not None
        if rtype == "Project":
            return f"{api_root(acct)}/projects/{body['id']}.json"
        segment = {"Todolist": "todolists", "Todo": "todos"}[rtype]
        return f"{api_root(acct)}/projects/{pid}/{segment}/{body['id']}.json"
    path = re.sub(r"ID\.json$", f"{body['id']}.json", src.path)
    path = path.replace("/projects/ID", f"/projects/{pid}")
    calendar = _CALENDAR_URL.search(json.dumps(body))
    path = path.replace("/calendars/ID", f"/calendars/{calendar.group(1) if calendar else 1}")
    assert "ID" not in path, path
    return api_root(acct) + path


def listing_url(src: Source, items: list[Any]) -> str:
    if src.request:
        return ORIGIN + src.request
    pid = project_named(items) or 1
    path = src.path.replace("/projects/ID", f"/projects/{pid}")
    calendar = _CALENDAR_URL.search(json.dumps(items))
    path = path.replace("/calendars/ID", f"/calendars/{calendar.group(1) if calendar else 1}")
    return api_root(account_of(src, items)) + path


# -- what the product reads ----------------------------------------------------------


def parse_listing(src: Source, rtype: str, items: list[Any]) -> list[Record]:
    url = listing_url(src, items)
    return [parse(rtype, item, url, project_id_from_url(url)) for item in items]


def parse_single(rtype: str, body: Any, url: str) -> Record:
    """Parse a single GET as `fetch_item` does: the project from the URL that answered
    (after any redirect), that URL standing in for a `url` the body lacks."""
    final = without_query(url)
    record = parse(rtype, body, url, project_id_from_url(final))
    if not record.meta.get("url"):
        record.meta["url"] = final
    return record


def unslugged(url: Any) -> str | None:
    return re.sub(r"/(\d+)-[^/]*?(?=\.json|/|$)", r"/\1", url) if isinstance(url, str) else None


def observing(records: list[Record]) -> Callable[[Detector], None]:
    """Listed records observed as they are (what observe_listed does without a fetch)."""

    def steps(det: Detector) -> None:
        for record in records:
            det.observe(record)

    return steps


def listed_counterpart(body: dict[str, Any], rtype: str) -> tuple[Source, dict[str, Any]] | None:
    """The same item in a recorded listing (the first listing file naming it; where both
    carry a `url`, the same one: anonymised recordings reuse small ids)."""
    for name in names("list"):
        src = table()[name]
        if role(src)[1] != rtype:
            continue
        for item in load(name):
            if not isinstance(item, dict) or item.get("id") != body["id"]:
                continue
            if "url" in item and "url" in body and unslugged(item["url"]) != unslugged(body["url"]):
                continue
            return src, item
    return None


def untrashed_predecessor(rtype: str, body: dict[str, Any]) -> dict[str, Any]:
    """The version of a trashed item before it was trashed: another recording of the same
    item that is not trashed, else the same body with `trashed: false`."""
    for name in names("single", "list"):
        src = table()[name]
        if role(src)[1] != rtype:
            continue
        data = load(name)
        for item in data if isinstance(data, list) else [data]:
            if isinstance(item, dict) and item.get("id") == body["id"] and not item.get("trashed"):
                return dict(item)
    return {**body, "trashed": False}


# -- what every event must carry ------------------------------------------------------


def named_creator(kind: str, body: dict[str, Any]) -> int | None:
    """Who the payload says did what `kind` reports (None: the payload does not say)."""
    person: Any = None
    if kind == "todo_completed":
        person = body.get("completer")
    elif kind.endswith("_created"):
        person = body.get("creator")
        files = body.get("attachments")
        if person is None and isinstance(files, list) and files and isinstance(files[0], dict):
            person = files[0].get("creator")  # an upload: its first file's uploader
    elif kind.endswith("_changed"):
        person = body.get("last_updater")
    return person.get("id") if isinstance(person, dict) and person.get("id") else None


def named_project(body: dict[str, Any], url: str | None) -> int | None:
    """The project a payload names: its url, its bucket, else the URL it was fetched from."""
    own = body.get("url")
    pid = project_id_from_url(own) if isinstance(own, str) and "/projects/" in own else None
    bucket = body.get("bucket")
    if pid is None and isinstance(bucket, dict) and bucket.get("type", "Project") == "Project":
        pid = bucket.get("id")
    return pid if pid is not None else project_id_from_url(url)


@dataclass
class About:
    """The payload(s) an item's events were built from, and where they were fetched."""

    bodies: list[dict[str, Any]]
    url: str | None = None


def check(event: dict[str, Any], about: dict[tuple[str, int], About]) -> None:
    where = f"{event['kind']} on {event['recording']['type']} {event['recording']['id']}"
    assert problems(event) == [], f"{where}: {problems(event)}\n{event}"
    rec = event["recording"]
    assert isinstance(rec["url"], str) and rec["url"], where
    assert isinstance(rec["app_url"], str) and rec["app_url"], where
    item = about.get((rec["type"], rec["id"]))
    if item is None:
        return
    projects = {named_project(b, item.url) for b in item.bodies} - {None}
    if projects:
        assert (event["project"] or {}).get("id") in projects, f"{where}: {event['project']}"
    if event["kind"].startswith("comment_"):
        comment = event["details"].get("comment")
        creators = {named_creator("comment_created", comment)} if comment else set()
    else:
        creators = {named_creator(event["kind"], b) for b in item.bodies}
    creators -= {None}
    if creators and event["source"] == "diff":
        assert (event["creator"] or {}).get("id") in creators, f"{where}: {event['creator']}"


# -- cycles ----------------------------------------------------------------------------


def route(event: dict[str, Any]) -> list[str]:
    return []


@dataclass
class Account:
    """One account's state database, driven one cycle at a time."""

    store: Store
    account_id: int

    @property
    def root(self) -> str:
        return api_root(self.account_id)

    def cycle(self, steps: Callable[[Detector], None], *, emit: bool = True) -> list[Any]:
        det = Detector(self.store, self.account_id, emit=emit, api_root=self.root)
        steps(det)
        det.finish()
        self.store.commit_cycle(det.to_write(), route)
        return list(det.events)

    async def fetching(
        self,
        answers: dict[str, Any],
        steps: Callable[[Cycle], Awaitable[None]],
        *,
        emit: bool = True,
    ) -> list[Any]:
        """One cycle running real fetch code against a client answering `answers`
        (URL without query -> JSON body; anything else answers 404)."""
        det = Detector(self.store, self.account_id, emit=emit, api_root=self.root)
        async with served(self.account_id, answers) as client:
            await steps(Cycle(client, self.store, det, WATCH, self.root))
        det.finish()
        self.store.commit_cycle(det.to_write(), route)
        return list(det.events)


async def read_single(
    acc: Account, rtype: str, body: Any, url: str, *, emit: bool = True
) -> list[dict[str, Any]]:
    """One cycle in which the product's `fetch_item` GETs `url`, answered with `body`."""

    async def steps(cycle: Cycle) -> None:
        pid = project_id_from_url(without_query(url))
        assert await fetch_item(cycle, rtype, url, pid, conditional=False)

    return await acc.fetching({without_query(url): body}, steps, emit=emit)


@asynccontextmanager
async def served(acct: int, answers: dict[str, Any]) -> AsyncIterator[Any]:
    def respond(request: httpx.Request) -> httpx.Response:
        url = str(request.url.copy_with(query=None))
        if url in answers:
            return json_response(answers[url])
        return json_response({"error": "not recorded"}, status=404)

    async with make_client(respond, acct=account(id=acct)) as (client, _, _):
        yield client


@pytest.fixture
def open_store(tmp_path: Path) -> Iterable[Callable[[int], Account]]:
    stores: list[Store] = []

    def open_(acct: int) -> Account:
        store = Store(tmp_path / f"state-{len(stores)}.db")
        stores.append(store)
        return Account(store, acct)

    yield open_
    for store in stores:
        store.close()


# -- the table and the folder agree ---------------------------------------------------


def test_every_recorded_body_has_one_row_and_every_row_a_body() -> None:
    rows = read_table()
    listed = [r.file for r in rows]
    assert len(listed) == len(set(listed)), "a file appears twice in SOURCES.md"
    present = {p.name for p in REAL.glob("*.json")}
    assert set(listed) - present == set(), "rows without a recorded body"
    assert present - set(listed) == set(), "recorded bodies SOURCES.md does not describe"
    assert len(present) == 51
    for row in rows:
        role(row)  # every endpoint is one the product's steps are known for
    preamble = SOURCES.read_text(encoding="utf-8").split("| File |", 1)[0]
    assert f"except `{MALFORMED}`" in preamble  # the one body meant not to parse


# -- every body parses --------------------------------------------------------------

_ITEM_IN_URL = re.compile(r"/(todolists|todos|messages|documents|uploads|calendar_events)/(\d+)")
_SEGMENT_TYPE = {
    "todolists": "Todolist",
    "todos": "Todo",
    "messages": "Message",
    "documents": "Document",
    "uploads": "Upload",
    "calendar_events": "CalendarEvent",
}


def comment_parent(src: Source, body: dict[str, Any]) -> tuple[str, int, str]:
    """The commented item of a comment's 201 representation: its `topic_url`, else the
    recorded request (`/projects/P/todos/T/comments.json`)."""
    topic = body.get("topic_url")
    url = topic if isinstance(topic, str) else ORIGIN + (src.request or "")
    m = _ITEM_IN_URL.search(url)
    assert m, f"{src.file}: no commented item in {url}"
    if not isinstance(topic, str):
        url = url.rsplit("/comments.json", 1)[0] + ".json"
    return _SEGMENT_TYPE[m.group(1)], int(m.group(2)), url


def parent_body(rtype: str, rid: int) -> dict[str, Any]:
    """The commented item as recorded elsewhere in the folder (not trashed: the comment
    was added before that), else only its id."""
    for name in names("single"):
        body = load(name)
        if role(table()[name])[1] != rtype or not isinstance(body, dict) or body.get("trashed"):
            continue
        if body["id"] == rid:
            return {k: v for k, v in body.items() if k != "comments"}
    return {"id": rid}


_BUCKET_FLAGS = {
    "remaining": {"completed": False, "trashed": False},
    "completed": {"completed": True, "trashed": False},
    "trashed": {"trashed": True},
}


def embedded_raw(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A list's embedded to-dos as the list-burst refetch reads them (its bucket's flags
    and the list's id merged in)."""
    return [
        {**item, **_BUCKET_FLAGS[bucket], "todolist_id": body["id"]}
        for bucket, items in (body.get("todos") or {}).items()
        for item in items
    ]


def embedded_todos(todolist: Record, body: dict[str, Any], url: str) -> list[Record]:
    return [parse("Todo", raw, url, todolist.project_id) for raw in embedded_raw(body)]


def before_completion(todo: dict[str, Any]) -> dict[str, Any]:
    """The same to-do before it was completed: open, no completer."""
    drop = ("completer", "completed_at")
    return {**{k: v for k, v in todo.items() if k not in drop}, "completed": False}


@pytest.mark.parametrize("name", names())
def test_recorded_body_parses(name: str) -> None:
    src = table()[name]
    what, rtype = role(src)
    body = load(name)
    if name == MALFORMED:
        with pytest.raises(BadResponse, match="expected an object"):
            parse("Todo", body, f"{api_root(9999999)}/projects/1/todos/1.json")
        return
    if what == "single":
        assert rtype is not None
        url = fetched_url(src, body)
        record = parse_single(rtype, body, url)
        assert (record.type, record.id, record.updated_at) == (
            rtype,
            body["id"],
            body["updated_at"],
        )
        assert record.title and record.meta["url"]
        if rtype in COMMENTABLE:
            comments = parse_comments(record, url)  # None: this recording embeds none
            assert [c.id for c in comments or []] == [c["id"] for c in body.get("comments", [])]
            assert all(c.parent == (rtype, record.id) for c in comments or [])
        if rtype == "Todolist":
            todos = embedded_todos(record, body, url)
            count = body["remaining_count"] + body["completed_count"]
            assert len(todos) == count and all(t.fields["todolist_id"] == body["id"] for t in todos)
    elif what == "list":
        assert rtype is not None and isinstance(body, list) and body
        records = parse_listing(src, rtype, body)
        assert [(r.type, r.id) for r in records] == [(rtype, item["id"]) for item in body]
        assert all(r.meta["url"] and r.updated_at for r in records)
    elif what == "topics":
        # as _sync_topics reads a topic: the message is its topicable
        for item in body:
            message = parse("Message", {**item, "subject": item.get("title")}, "topics.json", 1)
            assert message.title == item["title"]
            assert isinstance(item["topicable"]["id"], int) and item["topicable"]["url"]
    elif what in ("attachments", "attachment"):
        # no parser: _sync_uploads reads each item's `attachable` (an Upload becomes an
        # upload record, see test_poll_events); every item names one, with an id and a url
        items = body if isinstance(body, list) else [body]
        for item in items:
            attachable = item["attachable"]
            assert isinstance(attachable["id"], int) and isinstance(attachable["type"], str)
            assert project_id_from_url(attachable["url"]) is not None
            assert item["creator"]["id"] and item["created_at"]
    elif what == "comment":
        ptype, pid, purl = comment_parent(src, body)
        parent = parse_single(ptype, {**parent_body(ptype, pid), "comments": [body]}, purl)
        comments = parse_comments(parent, purl)
        assert comments is not None and [c.id for c in comments] == [body["id"]]
        assert comments[0].parent == (ptype, pid)
        assert comments[0].meta["creator"]["id"] == body["creator"]["id"]
        assert comments[0].project_id == project_id_from_url(purl) is not None
    elif what == "feed":
        for item in body:
            act = parse_activity(item, listing_url(src, body))
            assert act.eventable_type != "Unknown" and act.eventable_id is not None
            assert act.creator is not None and act.creator["id"] == item["creator"]["id"]
    elif what == "accesses":
        # No parser applies: the product never reads accesses (who may see a project or a
        # calendar is not a change it reports; people come from /people.json). Person-
        # shaped JSON is all there is to check.
        assert isinstance(body, list) and body
        assert all(isinstance(p["id"], int) and p["name"] and "/people/" in p["url"] for p in body)
    elif what == "assigned_todos":
        # No parser applies: the product never reads /people/ID/assigned_todos.json (to-dos
        # come from each project's /todos.json and their single GETs). Valid JSON of the
        # documented shape (lists, each with its assigned to-dos) is all there is to check.
        assert isinstance(body, list) and body
        for todolist in body:
            assert isinstance(todolist["id"], int) and isinstance(todolist["assigned_todos"], list)
            assert all(isinstance(t["id"], int) for t in todolist["assigned_todos"])
    else:  # pragma: no cover - every role above
        raise AssertionError(what)


# -- the events a poll builds from them -----------------------------------------------

Opener = Callable[[int], Account]


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["kind"] for e in events]


async def single_events(open_store: Opener, src: Source) -> list[dict[str, Any]]:
    """(a) A single GET: discovered alone (new item; a trashed one after the version
    before its trashing), and after the listing that names it was stored."""
    _, rtype = role(src)
    assert rtype is not None
    body = load(src.file)
    prefix = kind_prefix(rtype)
    listed = listed_counterpart(body, rtype)
    # the product GETs the URL the listing names; without a listing, the endpoint's
    url = listed[1]["url"] if listed is not None else fetched_url(src, body)
    key = (rtype, body["id"])
    out: list[dict[str, Any]] = []

    acc = open_store(account_of(src, body))
    bodies = [body]
    if body.get("trashed"):
        before = untrashed_predecessor(rtype, body)
        bodies.append(before)
        first = await read_single(acc, rtype, before, url)
        assert kinds(first)[:1] == [f"{prefix}_created"]
        out += first
    events = await read_single(acc, rtype, body, url)
    comments = [c for c in body.get("comments", []) if not c.get("trashed")]
    if body.get("trashed"):
        assert kinds(events) == [f"{prefix}_trashed"]
    else:
        assert kinds(events) == [f"{prefix}_created"] + ["comment_created"] * len(comments)
    about = {key: About(bodies, url)}
    for event in out + events:
        check(event, about)
    out += events

    if rtype == "Todolist" and body.get("todos"):
        out += await list_burst_events(open_store, src, body, url)

    if listed is not None:
        lsrc, item = listed
        acc = open_store(account_of(src, body))
        created = acc.cycle(observing(parse_listing(lsrc, rtype, [item])))
        assert kinds(created) == ([] if item.get("trashed") else [f"{prefix}_created"])
        events = await read_single(acc, rtype, body, url)
        for event in events:  # known now: only what changed since the listing's version
            assert event["kind"] == "comment_created" or event["changes"], event["kind"]
            assert event["kind"] != f"{prefix}_created"
        for event in created:  # built from the listing alone
            check(event, {key: About([item], url)})
        for event in events:
            check(event, {key: About([item, body], url)})
        out += created + events
    return out


async def list_burst_events(
    open_store: Opener, src: Source, body: dict[str, Any], url: str
) -> list[dict[str, Any]]:
    """The list's GET read for a burst of to-do changes (`_apply_list_batch`): its
    embedded to-dos, known before with the completed ones still open, give
    todo_completed by their completer; the list itself did not change."""
    pid = project_id_from_url(without_query(url))
    assert pid is not None
    todos = [t for bucket in body["todos"].values() for t in bucket]
    opened = [before_completion(t) if t.get("completed") else t for t in todos]
    earlier = {**body, "todos": {"remaining": opened, "completed": []}}
    acc = open_store(account_of(src, body))
    list_url = f"{acc.root}/projects/{pid}/todolists/{body['id']}.json"
    batch: dict[int, list[Activity]] = {t["id"]: [] for t in todos}

    async def burst(cycle: Cycle) -> None:
        answer = await cycle.client.get(list_url)
        settled, _ = _apply_list_batch(cycle, pid, body["id"], batch, answer)
        assert settled == set(batch)

    assert await acc.fetching({list_url: earlier}, burst, emit=False) == []
    events = await acc.fetching({list_url: body}, burst)
    now = embedded_raw(body)
    assert sorted((e["kind"], e["recording"]["id"]) for e in events) == sorted(
        ("todo_completed", t["id"]) for t in now if t["completed"]
    )
    for event in events:
        check(event, {("Todo", t["id"]): About([t], list_url) for t in now})
    return events


def listing_events(open_store: Opener, src: Source) -> list[dict[str, Any]]:
    """Listed records the product observes as they are (projects, people, lists, ...).
    A trashed one comes after the version before its trashing, a completed to-do after
    its open version, so that those changes are events too."""
    _, rtype = role(src)
    assert rtype is not None
    items = load(src.file)
    prefix = kind_prefix(rtype)
    acc = open_store(account_of(src, items))
    url = listing_url(src, items)
    before: dict[int, dict[str, Any]] = {}
    expected = []
    for item in items:
        if item.get("trashed"):
            before[item["id"]] = untrashed_predecessor(rtype, item)
            expected.append(f"{prefix}_trashed")
        elif rtype == "Todo" and item.get("completed"):
            before[item["id"]] = before_completion(item)
            expected.append("todo_completed")
        else:
            expected.append(f"{prefix}_created")
    earlier = list(before.values())
    first = acc.cycle(observing(parse_listing(src, rtype, earlier)))
    assert kinds(first) == [f"{prefix}_created"] * len(earlier)
    events = acc.cycle(observing(parse_listing(src, rtype, items)))
    assert sorted(kinds(events)) == sorted(expected)
    for event in first:
        check(event, {(rtype, i["id"]): About([i], url) for i in earlier})
    for event in events:
        check(event, {(rtype, i["id"]): About([i], url) for i in items})
    return first + events


async def topics_events(open_store: Opener, src: Source) -> list[dict[str, Any]]:
    """Topics -> messages, as `_sync_topics` reads them (the message's own GET is not
    recorded: it answers 404 here, and the topic's listing record stands)."""
    items = load(src.file)
    acct = account_of(src, items)
    acc = open_store(acct)
    pid = project_id_from_url(items[0]["topicable"]["url"])
    assert pid is not None
    answers = {f"{acc.root}/projects/{pid}/topics.json": items}
    events = await acc.fetching(answers, lambda c: _sync_topics(c, pid))
    messages = [i["topicable"] for i in items if i["topicable"]["type"] == "Message"]
    assert [(e["kind"], e["recording"]["id"]) for e in events] == [
        ("message_created", m["id"]) for m in messages
    ]
    about = {("Message", m["id"]): About([{"url": m["url"]}], m["url"]) for m in messages}
    for event in events:
        check(event, about)
        assert event["recording"]["url"] == next(
            m["url"] for m in messages if m["id"] == event["recording"]["id"]
        )
    return events


async def upload_events(open_store: Opener, src: Source) -> list[dict[str, Any]]:
    """Attachments -> uploads, as `_sync_uploads` builds them. A single attachment GET is
    read as the one item of its project's attachments listing (the same representation:
    the product reads attachments only through the listing)."""
    body = load(src.file)
    items = body if isinstance(body, list) else [body]
    acct = account_of(src, items)
    acc = open_store(acct)
    by_project: dict[int, list[dict[str, Any]]] = {}
    for item in items:
        pid = project_id_from_url(item["url"]) or project_id_from_url(item["attachable"]["url"])
        assert pid is not None
        by_project.setdefault(pid, []).append(item)
    uploads = [i for i in items if i["attachable"]["type"] == "Upload"]
    trashed = [i for i in uploads if i.get("trashed")]
    out: list[dict[str, Any]] = []

    async def sync(listings: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        answers = {f"{acc.root}/projects/{p}/attachments.json": v for p, v in listings.items()}

        async def steps(cycle: Cycle) -> None:
            for p in sorted(listings):
                await _sync_uploads(cycle, p)

        return await acc.fetching(answers, steps)

    if trashed:  # first the version before its trashing
        before = {p: [{**i, "trashed": False} for i in v] for p, v in by_project.items()}
        first = await sync(before)
        assert kinds(first) == ["upload_created"] * len(uploads)
        out += first
    events = await sync(by_project)
    assert sorted(kinds(events)) == sorted(
        "upload_trashed" if i.get("trashed") else "upload_created"
        for i in uploads
        if not (trashed and not i.get("trashed"))
    )
    if not uploads:  # messages' and to-dos' files: the product reads no upload from them
        assert acc.store.records(acct, "Upload") == {}
    about = {("Upload", i["attachable"]["id"]): About([i], i["attachable"]["url"]) for i in items}
    for event in out + events:
        check(event, about)
    return out + events


async def comment_events(open_store: Opener, src: Source) -> list[dict[str, Any]]:
    """A comment's 201 representation is what its item's single GET embeds: the item,
    known with no comments, is read again with this one."""
    body = load(src.file)
    ptype, pid, purl = comment_parent(src, body)
    parent = parent_body(ptype, pid)
    acc = open_store(account_of(src, body))
    assert await read_single(acc, ptype, {**parent, "comments": []}, purl, emit=False) == []
    events = await read_single(acc, ptype, {**parent, "comments": [body]}, purl)
    assert kinds(events) == ["comment_created"]
    event = events[0]
    assert (event["recording"]["type"], event["recording"]["id"]) == (ptype, pid)
    assert (event["creator"] or {}).get("id") == body["creator"]["id"]
    assert f"#comment_{body['id']}" in event["details"]["comment_url"]
    check(event, {(ptype, pid): About([parent], purl)})
    return events


def feed_events(open_store: Opener, src: Source) -> list[dict[str, Any]]:
    """(c) The activity feed alone: each activity explained once, about what it names."""
    items = load(src.file)
    acc = open_store(account_of(src, items))
    acts = [parse_activity(item, listing_url(src, items)) for item in items]
    events = acc.cycle(lambda d: d.register(acts))
    assert len(events) == len(acts)
    for event, act in zip(events, acts, strict=True):
        assert event["details"]["activity"] == act.raw
        about_person = re.search(r"/people/(\d+)", act.eventable_url or "")
        if about_person:  # pre-2014: no eventable, `url` is the person acted on
            assert event["kind"] == "person_activity"
            assert event["recording"]["type"] == "Person"
            assert event["recording"]["id"] == int(about_person.group(1))
        anchor = re.search(r"#comment_(\d+)", act.raw.get("html_url") or "")
        if anchor:  # 2014: no eventable, the comment is the html_url's anchor
            assert event["kind"] in ("comment_created", "message_activity")
            assert (event["recording"]["type"], event["recording"]["id"]) == (
                act.eventable_type,
                act.eventable_id,
            )
            if event["kind"] == "comment_created":
                assert event["details"]["comment_url"].endswith(anchor.group(0))
        assert (event["creator"] or {}).get("id") == (act.creator or {}).get("id") is not None
        named = act.project_id or project_id_from_url(act.eventable_url)
        if named is not None:
            assert (event["project"] or {}).get("id") == named
        check(event, {})
    return events


async def moved_events(open_store: Opener, src: Source) -> list[dict[str, Any]]:
    """(b) A list moved to another project: stored under the old project; its old URL
    answers 301 and the body (no `url`) comes from the new project's URL, which
    fetch_item reads it from (test_moved_list_through_fetch_item_... follows the 301)."""
    body = load(src.file)
    old_project = project_id_from_url(src.path_in_repo)  # the PUT's .../projects/2956584/...
    final = ORIGIN + (src.request or "")  # where Basecamp redirected (?moved=true)
    new_project = project_id_from_url(final)
    assert old_project and new_project and old_project != new_project
    assert "url" not in body and "bucket" not in body
    acc = open_store(account_of(src, body))
    old_url = f"{acc.root}/projects/{old_project}/todolists/{body['id']}.json"
    assert await read_single(acc, "Todolist", body, old_url, emit=False) == []
    events = await read_single(acc, "Todolist", body, final)
    assert kinds(events) == ["todolist_changed"]
    event = events[0]
    assert event["changes"]["project_id"] == [old_project, new_project]
    assert (event["project"] or {}).get("id") == new_project
    assert f"/projects/{new_project}/" in event["recording"]["url"]
    assert f"/projects/{new_project}/" in event["recording"]["app_url"]
    stored = acc.store.record(acc.account_id, "Todolist", body["id"])
    assert stored is not None and stored.project_id == new_project
    check(event, {("Todolist", body["id"]): About([body], final)})
    return events


def event_cases() -> list[Any]:
    out = []
    for name in names("single", "list", "topics", "attachments", "attachment", "comment", "feed"):
        if name == MALFORMED:
            continue
        out.append(pytest.param(name, id=name))
    return out


async def test_poll_events(open_store: Opener, name: str) -> None:
    src = table()[name]
    what, _ = role(src)
    if name == MOVED:
        events = await moved_events(open_store, src)
    elif what == "single":
        events = await single_events(open_store, src)
    elif what == "list":
        events = listing_events(open_store, src)
    elif what == "topics":
        events = await topics_events(open_store, src)
    elif what in ("attachments", "attachment"):
        events = await upload_events(open_store, src)
    elif what == "comment":
        events = await comment_events(open_store, src)
    else:
        events = feed_events(open_store, src)
    if what not in ("attachments", "attachment"):  # those may name no upload at all
        assert events, "the recording gave no event to check"


test_poll_events = pytest.mark.parametrize("name", event_cases())(test_poll_events)


def test_activity_on_a_person_is_person_activity_with_its_links(
    open_store: Opener,
) -> None:
    """(c) pre-2014 feed: no `eventable`, `url` names a person (its `summary` names
    someone else, 'teste': the event's summary is about the target all the same)."""
    src = table()["netvlies-php__events.json"]
    items = load(src.file)
    acc = open_store(account_of(src, items))
    det = Detector(acc.store, acc.account_id, emit=True, api_root=acc.root)
    det.register([parse_activity(item, listing_url(src, items)) for item in items])
    det.finish()
    [event] = det.events
    assert event["kind"] == "person_activity"
    rec = event["recording"]
    assert (rec["type"], rec["id"]) == ("Person", 99999)
    assert rec["url"] == items[0]["url"]
    assert rec["app_url"] == "https://basecamp.com/9999/people/99999-tester"
    assert event["project"] == {"id": 99999, "name": "dit is een test"}
    assert event["creator"] == {"id": 99999, "name": "Tester de Test"}
    assert "tester" in event["summary"]
    assert problems(event) == []


def project_pairs() -> list[str]:
    return [
        n
        for n in names("single")
        if role(table()[n])[1] == "Project" and listed_counterpart(load(n), "Project")
    ]


@pytest.mark.parametrize("name", project_pairs() or ["bcx-rb__project.json"])
def test_new_project_listed_then_read_in_one_cycle_names_its_creator(
    open_store: Opener, name: str
) -> None:
    """A poll reads a new project's listing item (sync_projects) and then its single GET
    (sync_project) in the same cycle: the project_created event has the creator the
    single GET names."""
    src = table()[name]
    body = load(name)
    listed = listed_counterpart(body, "Project")
    assert listed is not None
    lsrc, item = listed
    url = f"{api_root(account_of(src, body))}/projects/{body['id']}.json"

    def steps(det: Detector) -> None:
        for record in parse_listing(lsrc, "Project", [item]):  # sync_projects
            det.observe(record)
        det.observe(parse_project(body, url))  # sync_project

    events = open_store(account_of(src, body)).cycle(steps)
    assert kinds(events) == ["project_created"]
    assert (events[0]["creator"] or {}).get("id") == body["creator"]["id"]
    check(events[0], {("Project", body["id"]): About([item, body], url)})


async def test_moved_list_through_fetch_item_takes_the_project_it_was_redirected_to(
    open_store: Opener,
) -> None:
    """(b) through the real fetch_item and client: the old project's URL answers 301 to
    the new project's (`?moved=true`), which answers the recorded body."""
    src = table()[MOVED]
    body = load(MOVED)
    acct = account_of(src, body)
    acc = open_store(acct)
    old_project = project_id_from_url(src.path_in_repo)
    final = ORIGIN + (src.request or "")
    new_project = project_id_from_url(final)
    old_url = f"{acc.root}/projects/{old_project}/todolists/{body['id']}.json"
    assert await read_single(acc, "Todolist", body, old_url, emit=False) == []

    def respond(request: httpx.Request) -> httpx.Response:
        if str(request.url) == old_url:
            return httpx.Response(301, headers={"Location": final})
        if str(request.url) == final:
            return json_response(body)
        return json_response({}, status=404)

    det = Detector(acc.store, acct, emit=True, api_root=acc.root)
    async with make_client(respond, acct=account(id=acct)) as (client, recorder, _):
        cycle = Cycle(client, acc.store, det, WATCH, acc.root)
        assert await fetch_item(cycle, "Todolist", old_url, old_project, conditional=False)
    assert recorder.urls == [old_url, final]
    det.finish()
    assert kinds(det.events) == ["todolist_changed"]
    event = det.events[0]
    assert event["changes"]["project_id"] == [old_project, new_project]
    assert (event["project"] or {}).get("id") == new_project
    assert event["recording"]["url"] == without_query(final)
    check(event, {("Todolist", body["id"]): About([body], final)})
