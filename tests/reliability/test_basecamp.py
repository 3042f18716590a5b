"""Promise 2, Basecamp misbehaving: 5xx storms, slow and silent servers, 429s, garbage
bodies, churning ETags, stale 304s and moved items never lose a change, never invent
one, and never leave half a cycle behind."""

from __future__ import annotations

import dataclasses
import email.utils
import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.reliability.conftest import Rel


def key(event: dict[str, Any]) -> tuple[Any, ...]:
    comment = (event.get("details") or {}).get("comment") or {}
    return (event["kind"], event["recording"]["id"], comment.get("id"))


def snapshot(rel: Rel, relist: bool = False) -> tuple[Any, ...]:
    """Everything a failed cycle must leave untouched.

    `relist`: the failure is inside a re-list, which commits project by project: the
    projects listing before it (project records, its validators) may have moved on;
    nothing inside the projects, the outbox or the account's markers may."""
    db = rel.store.conn
    st = rel.store.account(rel.account.account_id)
    records = "SELECT count(*), total(length(data)) FROM records"
    validators = "SELECT group_concat(url || etag) FROM validators"
    if relist:
        records += " WHERE type != 'Project' AND type != 'Person'"
        validators += " WHERE url NOT LIKE '%/projects.json' AND url NOT LIKE '%/people.json'"
    return (
        st.cursor,
        st.last_success_at,
        st.last_reconcile_at,
        rel.store.outbox_count(),
        db.execute(records).fetchone(),
        db.execute(validators).fetchone(),
        db.execute("SELECT count(*) FROM seen_activity").fetchone(),
    )


async def seeded(rel: Rel) -> dict[str, int]:
    a = rel.account
    p = a.create_project("Storm")
    tl = a.create_todolist(p, "List")
    ids = {
        "project": p,
        "list": tl,
        "todo": a.create_todo(tl, "First"),
        "todo2": a.create_todo(tl, "Second"),
        "doc": a.create_document(p, "Doc", "v1"),
    }
    assert (await rel.cycle()) is not None
    return ids


async def test_30_percent_random_5xx_for_a_long_run(rel: Rel) -> None:
    ids = await seeded(rel)
    rng = random.Random(5)
    rel.app.faults.add(lambda _r: rng.random() < 0.3, 503)
    expected: set[tuple[Any, ...]] = set()
    a = rel.account
    outcomes = []
    for n in range(25):
        rel.clock.advance(5)
        if n % 3 == 0:
            expected.add(("todo_created", a.create_todo(ids["list"], f"T{n}"), None))
        elif n % 3 == 1:
            tid = a.create_todo(ids["list"], f"Quiet {n}", silent=True)
            expected.add(("todo_created", tid, None))
        else:
            expected.add(("comment_created", ids["todo"], a.add_comment("todo", ids["todo"], "c")))

        def fragile(runner: Any) -> None:
            runner.client.max_retries = 1  # make whole cycles fail often

        outcomes.append(await rel.cycle(advance=5, tune=fragile) is not None)
    assert any(outcomes) and not all(outcomes), outcomes
    rel.app.faults.clear()
    assert await rel.cycle() is not None
    keys = [key(e) for e in rel.events()]
    assert len(keys) == len(set(keys))
    assert set(keys) == expected


@contextmanager
def drip_server(byte_every: float = 0.1) -> Iterator[str]:
    """Answers every request 200 with a body that trickles in one byte at a time."""
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                self.wfile.write(b"[")
                while not stop.wait(byte_every):
                    self.wfile.write(b" ")
                    self.wfile.flush()
            except OSError:
                pass

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


async def test_slow_drip_hits_the_cycle_deadline_then_the_next_cycle_is_healthy(rel: Rel) -> None:
    ids = await seeded(rel)
    rel.account.complete_todo(ids["todo"])
    before = snapshot(rel)
    real = rel.base_url
    with drip_server() as url:
        rel.base_url = url
        started = time.monotonic()
        assert await rel.cycle(cycle_timeout=1.0) is None
        assert time.monotonic() - started < 5
        assert "deadline" in (rel.last_runner.last_error or "")
    rel.base_url = real
    assert snapshot(rel) == before
    assert await rel.cycle() is not None
    assert [e["kind"] for e in rel.events()] == ["todo_completed"]


async def test_server_that_never_answers_hits_the_deadline_then_recovers(rel: Rel) -> None:
    ids = await seeded(rel)
    rel.account.complete_todo(ids["todo"])
    before = snapshot(rel)
    rel.app.faults.add(r"/todos/\d+\.json$", None, hang=True, times=1)
    started = time.monotonic()
    assert await rel.cycle(cycle_timeout=1.0) is None
    assert time.monotonic() - started < 5
    assert snapshot(rel) == before
    state = rel.store.account(rel.account.account_id)
    assert "deadline" in (state.last_error or "")
    assert await rel.cycle() is not None
    assert [e["kind"] for e in rel.events()] == ["todo_completed"]
    assert rel.store.account(rel.account.account_id).last_error is None


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_429_retry_after_is_honoured(rel: Rel, form: str) -> None:
    ids = await seeded(rel)
    rel.account.complete_todo(ids["todo"])
    # an HTTP-date is measured from the response's Date header (real time on loopback)
    wait = "1" if form == "seconds" else email.utils.formatdate(time.time() + 2, usegmt=True)
    rel.app.faults.add(r"events\.json", 429, retry_after=wait, times=1)
    started = time.monotonic()
    report = await rel.cycle()
    assert report is not None
    assert time.monotonic() - started >= 0.9
    assert rel.last_runner.client.stats.rate_limited == 1
    assert [e["kind"] for e in rel.events()] == ["todo_completed"]


TARGETS = {
    "feed": r"events\.json$",
    "item": r"/todos/\d+\.json$",
    "listing": r"/todos\.json$",
}


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize(
    "kind", ["html", "truncated", "object", "wrong_types", "invalid_utf8", "huge", "empty"]
)
async def test_garbage_200_fails_the_cycle_cleanly(rel: Rel, kind: str, target: str) -> None:
    ids = await seeded(rel)
    if target == "listing":  # no feed entry: only the to-do re-list sees it
        tid = rel.account.create_todo(ids["list"], "Quiet", silent=True)
        want = ("todo_created", tid, None)
    else:
        rel.account.complete_todo(ids["todo"])
        want = ("todo_completed", ids["todo"], None)
    before = snapshot(rel, relist=target == "listing")
    rel.app.faults.add(TARGETS[target], kind, size=2 * 1024 * 1024)

    def capped(runner: Any) -> None:
        runner.client.max_body_bytes = 1024 * 1024

    assert await rel.cycle(tune=capped if target == "feed" else None) is None
    assert "BadResponse" in (rel.last_runner.last_error or "")
    assert snapshot(rel, relist=target == "listing") == before
    rel.app.faults.clear()
    assert await rel.cycle() is not None
    assert [key(e) for e in rel.events()] == [want]


def rewrite(rel: Rel, path: str, change: Callable[[Any], Any]) -> None:
    """Post-process the JSON body of every 200 answer whose path matches."""
    original = rel.app.handle

    def handle(*args: Any, **kwargs: Any) -> Any:
        resp = original(*args, **kwargs)
        if resp.status == 200 and re.search(path, args[1]) and resp.body:
            body = json.dumps(change(json.loads(resp.body))).encode()
            headers = {k: v for k, v in resp.headers.items() if k not in ("ETag", "Last-Modified")}
            resp = dataclasses.replace(resp, body=body, headers=headers)
        return resp

    rel.app.handle = handle  # type: ignore[method-assign]


def each_object(data: Any, fn: Callable[[dict[str, Any]], None]) -> Any:
    if isinstance(data, dict):
        fn(data)
        for v in data.values():
            each_object(v, fn)
    elif isinstance(data, list):
        for v in data:
            each_object(v, fn)
    return data


async def test_unknown_fields_are_ignored(rel: Rel) -> None:
    def extra(obj: dict[str, Any]) -> None:
        if "id" in obj:
            obj.update({"zz_new_flag": True, "zz_nested": [1, "b", None, {}]})

    rewrite(rel, r"\.json$", lambda d: each_object(d, extra))
    ids = await seeded(rel)
    assert await rel.cycle() is not None and rel.events() == []
    rel.account.complete_todo(ids["todo"])
    assert await rel.cycle() is not None
    assert [e["kind"] for e in rel.events()] == ["todo_completed"]


async def test_missing_fields_are_unknown_not_changed(rel: Rel) -> None:
    ids = await seeded(rel)

    def strip(obj: dict[str, Any]) -> None:
        for name in ("content", "completed", "completed_at", "due_on", "assignee", "name"):
            obj.pop(name, None)

    rewrite(rel, r"(todos|projects)\.json$", lambda d: each_object(d, strip))
    rel.clock.advance(60)
    rel.account.create_todo(ids["list"], "Quiet", silent=True)  # forces the re-lists
    assert await rel.cycle() is not None
    assert [e["kind"] for e in rel.events()] == ["todo_created"]
    assert await rel.cycle() is not None
    assert len(rel.events()) == 1  # nothing "changed" to null


async def test_a_record_without_an_id_fails_the_cycle_cleanly(rel: Rel) -> None:
    ids = await seeded(rel)
    rel.account.create_todo(ids["list"], "Quiet", silent=True)
    before = snapshot(rel, relist=True)
    rewrite(rel, r"todos\.json$", lambda d: each_object(d, lambda o: o.pop("id", None)))
    assert await rel.cycle() is None
    assert "BadResponse" in (rel.last_runner.last_error or "")
    assert snapshot(rel, relist=True) == before


async def test_etags_that_churn_while_content_does_not_give_no_events(rel: Rel) -> None:
    ids = await seeded(rel)
    rel.app.faults.add(r".*", "etag_churn")
    for _ in range(3):
        assert await rel.cycle() is not None
    assert rel.events() == []
    rel.account.complete_todo(ids["todo2"])
    assert await rel.cycle() is not None
    assert await rel.cycle() is not None
    assert [key(e) for e in rel.events()] == [("todo_completed", ids["todo2"], None)]


async def test_stale_304_is_caught_by_the_periodic_full_recheck(rel: Rel) -> None:
    ids = await seeded(rel)
    rel.app.faults.add(r".*", "stale_304")  # 304 to every conditional request
    # (silent changes: a document's text never read is a baseline without a feed entry)
    rel.account.complete_todo(ids["todo"], silent=True)
    rel.account.trash_todo(ids["todo2"], silent=True)
    recheck = {"full_recheck_interval": 1.0}
    assert await rel.cycle(**recheck) is not None
    assert rel.events() == []  # hidden behind the stale 304s...
    time.sleep(1.1)
    assert await rel.cycle(**recheck) is not None  # ...until the unconditional re-check
    assert sorted(key(e) for e in rel.events()) == [
        ("todo_completed", ids["todo"], None),
        ("todo_trashed", ids["todo2"], None),
        ("todolist_changed", ids["list"], None),  # its last open to-do: list completed
    ]
    assert await rel.cycle(**recheck) is not None
    assert len(rel.events()) == 3


async def test_item_moved_to_another_project_is_followed_not_trashed(rel: Rel) -> None:
    ids = await seeded(rel)
    other = rel.account.create_project("Elsewhere")
    assert await rel.cycle() is not None
    rel.account.move_todolist(ids["list"], other)
    rel.account.complete_todo(ids["todo"])
    assert await rel.cycle() is not None
    assert await rel.cycle() is not None
    kinds = [e["kind"] for e in rel.events()]
    assert not [k for k in kinds if k.endswith("_trashed")], kinds
    assert "todo_completed" in kinds
    moved = [r for r in rel.app.log.entries if r.status == 301]
    assert moved, "the old URL answered 301"
    todo = rel.store.record(rel.account.account_id, "Todo", ids["todo"])
    assert todo is not None and todo.state == "active" and todo.project_id == other
