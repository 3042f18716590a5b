"""The whole pipeline in-process: real poll cycles against the loopback simulator, the
real Store and Dispatcher, and real peers for every handler type."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

from standardwebhooks.webhooks import Webhook

from tests.conftest import Harness
from tests.delivery._support import (
    SLACK_PATH,
    SMTP_PASSWORD,
    WEBHOOK_SECRET,
    HttpPeer,
    SmtpPeer,
    cycle,
    dispatcher,
    jsonl_lines,
    sim_settings,
    write_script,
)

FAST = {"retry_initial": 0.05, "retry_max": 0.2}


def all_handlers(
    tmp: Path, hook: HttpPeer, slack: HttpPeer, smtp: SmtpPeer
) -> list[dict[str, Any]]:
    script = write_script(
        tmp / "record.sh",
        f'[ -e "{tmp}/down" ] && {{ echo "peer down" >&2; exit 1; }}\n'
        f'cat >> "{tmp}/script.jsonl"; echo >> "{tmp}/script.jsonl"\n',
    )
    return [
        {
            "name": "hook",
            "type": "webhook",
            "url": hook.url + "/in",
            "secrets": [WEBHOOK_SECRET],
            **FAST,
        },
        {"name": "chat", "type": "slack", "webhook_url": slack.url + SLACK_PATH, **FAST},
        {
            "name": "mail",
            "type": "email",
            "host": "127.0.0.1",
            "port": smtp.port,
            "security": "none",
            "username": "bot",
            "password": SMTP_PASSWORD,
            "from_addr": "bcx@example.com",
            "to": ["ops@example.com"],
            "timeout": 5,
            **FAST,
        },
        {"name": "run", "type": "script", "command": [str(script)], **FAST},
        {"name": "file", "type": "jsonl", "path": str(tmp / "events.jsonl"), **FAST},
    ]


async def test_receivers_down_then_up_get_every_event_once_per_handler(sim: Harness) -> None:
    tmp = sim.tmp
    hook, slack, smtp = HttpPeer(), HttpPeer(), SmtpPeer()  # not started: down
    (tmp / "down").touch()
    s = sim_settings(sim, all_handlers(tmp, hook, slack, smtp))
    a = sim.account
    p = a.create_project("Launch")
    tl = a.create_todolist(p, "List")
    todo = a.create_todo(tl, "Design it")
    await cycle(sim, s)  # baseline
    disp = dispatcher(sim.store, s)
    try:
        a.complete_todo(todo)
        a.create_todo(tl, "Test it")
        await cycle(sim, s)
        await disp.drain(within=0.3)  # everything but the jsonl file fails, retries
        a.add_comment("todo", todo, "Shipped")
        await cycle(sim, s)
        await disp.drain(within=0.3)
        events = sim.events()
        ids = [e["id"] for e in events]
        assert len(ids) == 3
        attempts = {d.handler: d.attempts for d in sim.store.deliveries() if d.seq == 1}
        assert set(attempts) == {"hook", "chat", "mail", "run"}  # the file got it already
        assert min(attempts.values()) >= 2
        # the receivers come back
        hook.start(), slack.start(), smtp.start()
        (tmp / "down").unlink()
        await disp.drain(within=3)
        assert sim.store.deliveries() == []  # nothing pending, nothing dead
    finally:
        await disp.aclose()
        hook.stop(), slack.stop(), smtp.stop()
    # webhook: every event, signed; a duplicate could only repeat the same id
    hook_ids = [Webhook(WEBHOOK_SECRET).verify(h.body, h.headers)["id"] for h in hook.hits]
    assert [h.headers["webhook-id"] for h in hook.hits] == hook_ids
    assert sorted(set(hook_ids)) == sorted(ids) and set(Counter(hook_ids).values()) == {1}
    assert hook_ids == ids  # in detection order
    # slack: one message per event, in order
    assert [h.path for h in slack.hits] == [SLACK_PATH] * 3
    texts = [json.loads(h.body)["text"] for h in slack.hits]
    assert "completed a to-do" in texts[0] and "commented on" in texts[2]
    # email: one mail per event, carrying its id
    assert [m["X-BCX-Event-Id"] for m in smtp.box.messages] == ids
    # script and file: the same events, in order
    assert [e["id"] for e in jsonl_lines(tmp / "script.jsonl")] == ids
    assert jsonl_lines(tmp / "events.jsonl") == events


async def test_filters_route_each_event_to_the_right_handlers(sim: Harness) -> None:
    tmp = sim.tmp
    a = sim.account
    p1 = a.create_project("One")
    p2 = a.create_project("Two")
    open_list = a.create_todolist(p1, "Open")
    secret_list = a.create_todolist(p1, "Hush", private=True)
    other_list = a.create_todolist(p2, "Other")
    t1 = a.create_todo(open_list, "Public one")
    t2 = a.create_todo(secret_list, "Private one")
    t3 = a.create_todo(other_list, "In project two")
    msg = a.create_message(p2, "Hello", "World")

    def jsonl(name: str, **filters: Any) -> dict[str, Any]:
        return {"name": name, "type": "jsonl", "path": str(tmp / f"{name}.jsonl"), **filters}

    s = sim_settings(
        sim,
        [
            jsonl("all"),
            jsonl("todos", kinds=["todo_*"]),
            jsonl("done", kinds=["todo_completed", "message_*"]),
            jsonl("p1", projects=[p1]),
            jsonl("public", exclude_private=True),
            jsonl("mine", accounts=[a.account_id], kinds=["*_created"], projects=[p2]),
            jsonl("elsewhere", accounts=[a.account_id + 1]),
        ],
    )
    await cycle(sim, s)
    for todo in (t1, t2, t3):
        a.complete_todo(todo)
    a.add_comment("message", msg, "A reply")
    a.create_todo(open_list, "New public")
    await cycle(sim, s)
    disp = dispatcher(sim.store, s)
    try:
        await disp.drain(within=1)
    finally:
        await disp.aclose()
    events = sim.events()
    got = {
        h["name"]: [e["id"] for e in jsonl_lines(tmp / f"{h['name']}.jsonl")]
        for h in s.model_dump()["handlers"]
    }

    def ids(pred: Any) -> list[str]:
        return [e["id"] for e in events if pred(e)]

    kinds = Counter(e["kind"] for e in events)
    assert (kinds["todo_completed"], kinds["comment_created"], kinds["todo_created"]) == (3, 1, 1)
    assert kinds["todolist_changed"] >= 1  # not a "todo_*" kind
    private = [e for e in events if e["private"]]
    assert {e["recording"]["title"] for e in private} <= {"Private one", "Hush"}
    assert "Private one" in {e["recording"]["title"] for e in private}
    assert got["all"] == [e["id"] for e in events]
    assert got["todos"] == ids(lambda e: e["kind"].startswith("todo_")) and len(got["todos"]) == 4
    assert got["done"] == ids(lambda e: e["kind"] == "todo_completed")
    assert got["p1"] == ids(lambda e: e["project"]["id"] == p1)
    assert 3 <= len(got["p1"]) < len(events)
    assert got["public"] == ids(lambda e: not e["private"])
    assert 0 < len(got["public"]) < len(events)
    assert got["mine"] == ids(lambda e: e["kind"] == "comment_created")
    assert got["elsewhere"] == []
    # routing happens at commit: a handler gets a delivery row only for what it matches
    rows = Counter(d.handler for d in sim.store.deliveries(status=("done",)))
    assert rows == {n: len(v) for n, v in got.items() if v}


async def test_a_handler_added_later_does_not_get_old_events(sim: Harness) -> None:
    tmp = sim.tmp
    a = sim.account
    tl = a.create_todolist(a.create_project("P"), "L")
    todo = a.create_todo(tl, "T")
    first = sim_settings(sim, [{"name": "old", "type": "jsonl", "path": str(tmp / "old.jsonl")}])
    await cycle(sim, first)
    a.complete_todo(todo)
    await cycle(sim, first)
    second = sim_settings(
        sim,
        [
            {"name": "old", "type": "jsonl", "path": str(tmp / "old.jsonl")},
            {"name": "new", "type": "jsonl", "path": str(tmp / "new.jsonl")},
        ],
    )
    a.uncomplete_todo(todo)
    await cycle(sim, second)
    disp = dispatcher(sim.store, second)
    try:
        await asyncio.wait_for(disp.drain(within=1), 5)
    finally:
        await disp.aclose()
    old = [e["id"] for e in jsonl_lines(tmp / "old.jsonl")]
    new = [e["id"] for e in jsonl_lines(tmp / "new.jsonl")]
    assert old == [e["id"] for e in sim.events()]
    assert new and new == old[-len(new) :]
    assert "todo_uncompleted" in [e["kind"] for e in jsonl_lines(tmp / "new.jsonl")]
    assert "todo_completed" not in [e["kind"] for e in jsonl_lines(tmp / "new.jsonl")]
