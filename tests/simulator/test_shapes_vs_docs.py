"""Every payload the simulator serves has the keys Basecamp sends: the docs examples
(../shared/basecamp2/examples) and the bodies recorded from the live API
(../shared/basecamp2/real, see SOURCES.md there), read at test time, never copied here.

Keys are compared as dotted paths (`creator.id`, `todos.remaining.assignee.name`; the
elements of a list are merged). Current shapes: every path of the docs example is
served, and every served path appears in the example or in a recording of the same
endpoint; each exception is listed with its reason. The 2013 era (`era="2013"`) is
compared with the 2013/2014 recordings: the same link keys in every container both
have, no `app_url` anywhere, no `eventable` in the feed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from poller.simulator import Account, Era, ManualClock
from tests.simulator.conftest import ACCOUNT_ID, World

# ../shared beside the checkout (the repo root is parents[2])
SHARED = Path(__file__).resolve().parents[3] / "shared" / "basecamp2"
LINK_KEYS = frozenset({"url", "app_url", "html_url"})
BUCKET = frozenset({"bucket", "bucket.id", "bucket.name", "bucket.type", "bucket.url"})
BUCKET_APP = BUCKET | {"bucket.app_url"}


def _read(folder: str, name: str) -> Any:
    base = SHARED / folder
    if not base.is_dir():
        pytest.skip(f"{base} is absent (the Basecamp 2 docs examples and recorded bodies)")
    return json.loads((base / name).read_text())


def key_paths(data: Any, prefix: str = "") -> set[str]:
    """Dotted key paths of a JSON value; the elements of a list are merged."""
    out: set[str] = set()
    if isinstance(data, list):
        for element in data:
            out |= key_paths(element, prefix)
    elif isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}.{key}" if prefix else key
            out.add(path)
            out |= key_paths(value, path)
    return out


@dataclass(frozen=True)
class Endpoint:
    """One GET the simulator serves, and what Basecamp showed for it."""

    path: str  # relative to the API root; `{p}`, `{list}`... are filled from the world
    example: str  # examples/<name>
    recorded: tuple[str, ...] = ()  # real/<name>, any era
    old: tuple[str, ...] = ()  # real/<name> recorded in 2013/2014 (url-only links)
    single: bool = False  # a single GET without url/app_url of its own
    not_served: frozenset[str] = frozenset()  # example paths left out, see `why`
    extra: frozenset[str] = frozenset()  # served paths neither source shows, see `why`
    why: str = ""


# The `comments` array embedded in every commentable (examples/comments.json).
COMMENTABLE = ("comments.json",)
NO_BUCKET = "bucket only on account-wide lists: the recorded project-level lists have none"
ENDPOINTS = [
    Endpoint(
        "projects.json",
        "projects.json",
        ("bcx-rb__projects.json", "netvlies-php__projects.json"),
        ("bcx-rb__projects.json", "netvlies-php__projects.json"),
    ),
    Endpoint(
        "projects/archived.json",
        "projects.json",
        ("bcx-rb__projects_archived.json",),
        ("bcx-rb__projects_archived.json",),
    ),
    Endpoint(
        "projects/{p}.json",
        "project.json",
        ("bcx-rb__project.json", "netvlies-php__project.json"),
        ("bcx-rb__project.json", "netvlies-php__project.json"),
        single=True,
    ),
    Endpoint("people.json", "people.json", ("bcx-rb__people.json",), ("bcx-rb__people.json",)),
    Endpoint(
        "people/me.json",
        "person.json",
        ("netvlies-php__person_me.json",),
        ("netvlies-php__person_me.json",),
        single=True,
    ),
    Endpoint(
        "people/{jane}.json",
        "person.json",
        ("bcx-rb__person.json",),
        ("bcx-rb__person.json",),
        single=True,
    ),
    Endpoint(
        "projects/{p}/accesses.json",
        "accesses.json",
        ("bcx-rb__accesses.json", "netvlies-php__accesses_project.json"),
        ("bcx-rb__accesses.json", "netvlies-php__accesses_project.json"),
    ),
    Endpoint(
        "events.json",
        "events.json",
        ("netvlies-php__events.json",),
        ("netvlies-php__events.json",),
        extra=frozenset({"bucket.app_url"}),
        why="API.md: the global feed's bucket is {id, name, type, url, app_url} [doc]",
    ),
    Endpoint(
        "projects/{p}/events.json",
        "events.json",
        ("huginn__project_events.json",),
        ("huginn__project_events.json",),
    ),
    Endpoint(
        "people/{jane}/events.json",
        "events.json",
        not_served=frozenset(
            {"creator", "creator.id", "creator.name", "creator.avatar_url"}
            | {"creator.fullsize_avatar_url"}
        ),
        extra=BUCKET_APP,
        why="API.md: a person's feed has no creator and carries bucket [doc]",
    ),
    Endpoint(
        "todolists.json",
        "todolists.json",
        ("bcx-rb__todolists_all.json",),
        ("bcx-rb__todolists_all.json",),
    ),
    Endpoint(
        "projects/{p}/todolists.json",
        "todolists.json",
        ("bcx-rb__todolists.json", "netvlies-php__todolists.json"),
        ("bcx-rb__todolists.json", "netvlies-php__todolists.json"),
        not_served=BUCKET_APP,
        why=NO_BUCKET,
    ),
    Endpoint(
        "projects/{p}/todolists/completed.json",
        "todolists.json",
        ("bcx-rb__todolists_completed.json", "netvlies-php__todolists_completed.json"),
        ("bcx-rb__todolists_completed.json", "netvlies-php__todolists_completed.json"),
        not_served=BUCKET_APP,
        why=NO_BUCKET,
    ),
    Endpoint(
        "projects/{p}/todolists/{list}.json",
        "todolist.json",
        ("bcx-rb__todolist_completed.json", "netvlies-php__todolist.json", *COMMENTABLE),
        ("bcx-rb__todolist_completed.json", "netvlies-php__todolist.json"),
        single=True,
    ),
    Endpoint("projects/{p}/todos.json", "todos.json", ("netvlies-php__todos_completed.json",)),
    Endpoint(
        "projects/{p}/todos/completed.json",
        "todos.json",
        ("netvlies-php__todos_completed.json",),
    ),
    Endpoint(
        "projects/{p}/todos/{todo}.json",
        "todo.json",
        ("bcx-rb__todo.json", "netvlies-php__todos_completed.json", *COMMENTABLE),
        ("bcx-rb__todo.json",),
    ),
    Endpoint("topics.json", "topics.json"),
    Endpoint(
        "projects/{p}/topics.json",
        "topics.json",
        ("netvlies-php__topics.json",),
        ("netvlies-php__topics.json",),
        not_served=BUCKET_APP,
        why=NO_BUCKET,
    ),
    Endpoint("projects/{p}/messages/{message}.json", "message.json", COMMENTABLE, single=True),
    Endpoint("documents.json", "documents.json"),
    Endpoint(
        "projects/{p}/documents.json",
        "documents.json",
        ("netvlies-php__documents.json",),
        ("netvlies-php__documents.json",),
        not_served=BUCKET_APP | {"bucket.color"},
        why=NO_BUCKET,
    ),
    Endpoint(
        "projects/{p}/documents/{document}.json",
        "document.json",
        ("netvlies-php__document.json", *COMMENTABLE),
        ("netvlies-php__document.json",),
        single=True,
    ),
    Endpoint("attachments.json", "attachments.json", ("bcx-rb__attachments_all.json",)),
    Endpoint(
        "projects/{p}/attachments.json",
        "attachments.json",
        ("netvlies-php__attachments_project.json",),
        ("netvlies-php__attachments_project.json",),
    ),
    Endpoint(
        "projects/{p}/attachments/{attachment}.json",
        "attachment.json",
        ("bcx-rb__attachment_message.json", "bcx-rb__attachment_trashed_upload.json"),
    ),
    Endpoint("projects/{p}/uploads/{upload}.json", "upload.json", COMMENTABLE, single=True),
    Endpoint(
        "projects/{p}/calendar_events.json",
        "calendar_events.json",
        ("netvlies-php__calendar_events_project.json",),
        not_served=frozenset({"recurring"} | {f"recurring.{k}" for k in ("count", "excluding")})
        | {"recurring.frequency", "recurring.until"},
        why="the simulator has no recurring entries",
    ),
    Endpoint(
        "projects/{p}/calendar_events/past.json",
        "calendar_events.json",
        ("bcx-rb__calendar_events_past.json",),
        not_served=frozenset({"recurring"} | {f"recurring.{k}" for k in ("count", "excluding")})
        | {"recurring.frequency", "recurring.until"},
        why="the simulator has no recurring entries",
    ),
    Endpoint(
        "projects/{p}/calendar_events/{entry}.json",
        "calendar_event.json",
        (
            "bcx-rb__calendar_event.json",
            "bcx-rb__calendar_event_with_comment.json",
            "netvlies-php__calendar_event_project.json",
        ),
    ),
]
SINGLES = [e for e in ENDPOINTS if e.single]
OLD = [e for e in ENDPOINTS if e.old]


def _recorded_paths(name: str) -> set[str]:
    if name in COMMENTABLE:
        return key_paths(_read("examples", name))  # {"comments": [...]}: the embedded shape
    return key_paths(_read("real", name))


@pytest.fixture
def era() -> Era:
    return "current"


@pytest.fixture
def account(clock: ManualClock, era: Era) -> Account:
    return Account(ACCOUNT_ID, clock=clock, seed=7, era=era)


@dataclass
class Full:
    """The conftest world plus what makes every optional key show up once."""

    world: World
    ids: dict[str, int]


@pytest.fixture
def full(account: Account, clock: ManualClock, world: World) -> Full:
    archived = account.create_project("Old times")
    account.archive_project(archived)
    account.complete_todo(account.create_todo(world.todolist, "Done one"), by=world.jane)
    gone = account.create_todo(world.todolist, "Gone one")
    account.complete_todo(gone)
    account.trash_todo(gone)
    finished = account.create_todolist(world.project, "Finished")
    account.complete_todo(account.create_todo(finished, "Last one", assignee=world.jane))
    account.create_calendar_event(world.project, "Kick-off", "2023-12-01")
    for kind, item in (
        ("todo", world.todo),
        ("todolist", world.todolist),
        ("message", world.message),
        ("document", world.document),
        ("upload", world.upload),
        ("calendar_event", world.entry),
    ):
        account.add_comment(kind, item, f"On the {kind}", by=world.jane)
    clock.advance(1)
    ids = {
        "p": world.project,
        "jane": world.jane,
        "list": world.todolist,
        "todo": world.todo,
        "message": world.message,
        "document": world.document,
        "upload": world.upload,
        "entry": world.entry,
        "attachment": account.uploads[world.upload].attachment_ids[0],
    }
    return Full(world, ids)


async def _get(client: httpx.AsyncClient, full: Full, endpoint: Endpoint) -> Any:
    response = await client.get(endpoint.path.format(**full.ids))
    assert response.status_code == 200, endpoint.path
    body = response.json()
    assert body, f"{endpoint.path} served nothing to compare"
    return body


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.path)
async def test_served_keys_are_the_documented_and_recorded_ones(
    client: httpx.AsyncClient, full: Full, endpoint: Endpoint
) -> None:
    served = key_paths(await _get(client, full, endpoint))
    documented = key_paths(_read("examples", endpoint.example))
    recorded = set().union(*(_recorded_paths(name) for name in endpoint.recorded))
    missing = documented - endpoint.not_served - served
    assert not missing, f"{endpoint.path} lacks {sorted(missing)} (examples/{endpoint.example})"
    invented = served - documented - recorded - endpoint.extra
    assert not invented, f"{endpoint.path} sends {sorted(invented)} that Basecamp never showed"
    # the exceptions are still needed: each differs from the example as described
    assert endpoint.not_served <= documented - served, endpoint.why
    assert endpoint.extra <= served - documented - recorded, endpoint.why


@pytest.mark.parametrize("endpoint", SINGLES, ids=lambda e: e.path)
async def test_single_gets_carry_no_links_of_their_own(
    client: httpx.AsyncClient, full: Full, endpoint: Endpoint
) -> None:
    body = await _get(client, full, endpoint)
    shown = [_read("examples", endpoint.example)] + [
        _read("real", name) for name in endpoint.recorded if name not in COMMENTABLE
    ]
    assert all(isinstance(s, dict) and not {"url", "app_url"} & set(s) for s in shown)
    assert isinstance(body, dict)
    assert not {"url", "app_url"} & set(body), endpoint.path
    for comment in body.get("comments", []):
        assert not LINK_KEYS & set(comment), f"{endpoint.path}: a comment with its own link"


async def test_todos_and_calendar_entries_keep_their_links(
    client: httpx.AsyncClient, full: Full
) -> None:
    base = f"https://bcx.test/{ACCOUNT_ID}"
    for segment, item in (("todos", "todo"), ("calendar_events", "entry")):
        path = f"projects/{full.ids['p']}/{segment}/{full.ids[item]}"
        body = (await client.get(f"{path}.json")).json()
        assert body["url"] == f"{base}/api/v1/{path}.json"
        assert body["app_url"] == f"{base}/{path}"
        assert all("url" not in c for c in body["comments"]) and body["comments"]
    for name in ("todo.json", "calendar_event.json"):
        assert {"url", "app_url"} <= set(_read("examples", name))


async def test_feed_events_link_their_item_and_anchor_comments(
    client: httpx.AsyncClient, full: Full
) -> None:
    events = (await client.get("events.json")).json()
    comments = [e for e in events if e["action"] == "commented on"]
    assert len(comments) == 6
    for event in events:
        eventable = event["eventable"]
        assert set(eventable) == {"id", "type", "url", "app_url"}
        assert event["url"] == eventable["url"]
        html = eventable["app_url"]
        if event in comments:
            item = (await client.get(eventable["url"])).json()
            (comment_id,) = [c["id"] for c in item["comments"] if c["content"] == event["excerpt"]]
            html += f"#comment_{comment_id}"
        assert event["html_url"] == html
    # the recorded 2014 comment event links the same way
    (recorded,) = _read("real", "huginn__project_events.json")
    assert re.search(r"/messages/[\w-]+#comment_\d+$", recorded["html_url"])


async def test_moved_list_body_names_no_project_but_the_redirect_does(
    client: httpx.AsyncClient, account: Account, full: Full
) -> None:
    other = full.world.other_project
    account.move_todolist(full.ids["list"], other)
    old = f"projects/{full.ids['p']}/todolists/{full.ids['list']}.json"
    response = await client.get(old, follow_redirects=True)
    assert response.history[0].status_code == 301
    assert response.url.path.endswith(f"/projects/{other}/todolists/{full.ids['list']}.json")
    assert response.url.params["moved"] == "true"
    body = response.json()
    assert not {"url", "app_url", "bucket", "project_id"} & set(body)
    assert set(body) == set(_read("real", "bcx-rb__todolist_moved.json")) | {
        "private",
        "trashed",
    }


# ---------------------------------------------------------------------- 2013 era


def _containers_with_keys(paths: set[str]) -> set[str]:
    return {""} | {p.rpartition(".")[0] for p in paths}


def _link_paths(paths: set[str]) -> set[str]:
    return {p for p in paths if p.rpartition(".")[2] in LINK_KEYS}


@pytest.mark.parametrize("era", ["2013"])
@pytest.mark.parametrize("endpoint", OLD, ids=lambda e: e.path)
async def test_2013_links_are_the_recorded_ones(
    client: httpx.AsyncClient, full: Full, endpoint: Endpoint
) -> None:
    served = key_paths(await _get(client, full, endpoint))
    for name in endpoint.old:
        recorded = key_paths(_read("real", name))
        shared = _containers_with_keys(served) & _containers_with_keys(recorded)
        ours = {p for p in _link_paths(served) if p.rpartition(".")[0] in shared}
        theirs = {p for p in _link_paths(recorded) if p.rpartition(".")[0] in shared}
        assert ours == theirs, f"{endpoint.path} vs real/{name}"


@pytest.mark.parametrize("era", ["2013"])
async def test_2013_has_no_app_url_and_no_eventable(
    client: httpx.AsyncClient, account: Account, full: Full
) -> None:
    assert account.era == "2013"
    for endpoint in ENDPOINTS:
        served = key_paths(await _get(client, full, endpoint))
        assert not any(p.rpartition(".")[2] == "app_url" for p in served), endpoint.path
        if endpoint.example == "events.json":
            assert not {"eventable", "private"} & served, endpoint.path
            assert {"url", "html_url"} <= served
    listing = (await client.get("projects.json")).json()
    assert all(p["url"].endswith(f"/api/v1/projects/{p['id']}.json") for p in listing)
    feed = (await client.get(f"projects/{full.ids['p']}/events.json")).json()
    grant = next(e for e in feed if e["action"].startswith("gave "))
    assert grant["url"].endswith(f"/people/{full.ids['jane']}-jane-doe.json")
    assert grant["html_url"] == f"https://bcx.test/{ACCOUNT_ID}/projects/{full.ids['p']}"
    (recorded,) = _read("real", "netvlies-php__events.json")
    assert "/people/" in recorded["url"] and "/projects/" in recorded["html_url"]


def test_unknown_era_is_refused() -> None:
    with pytest.raises(ValueError, match="era"):
        Account(era="2012")  # type: ignore[arg-type]


async def test_feed_actions_use_the_recorded_words(
    client: httpx.AsyncClient, account: Account, full: Full
) -> None:
    """The actions the docs and recordings show are phrased the same (names aside)."""
    shown = [e["action"] for e in _read("examples", "events.json")]
    shown += [e["action"] for e in _read("real", "huginn__project_events.json")]
    account.update_todo(full.ids["todo"], assignee=account.owner_id)
    served = {e["action"] for e in (await client.get("events.json")).json()}

    def words(action: str) -> str:  # the assignee's name is data, not wording
        return re.sub(r"^(re-assigned a to-do to ).*(<span>:</span>)$", r"\1NAME\2", action)

    assert {words(a) for a in shown} <= {words(a) for a in served}
