"""Model-based: random interleavings of changes between two polls, each accounted for.

The simulator logs every mutation it made (`account.changes`, with the feed activity it
wrote or None when silent). After each poll the oracle maps that window's mutations to
the events they must produce and compares with what the poller committed:

* every activity -> exactly one event carrying it, of the kind its words name, with
  that activity's creator and time (an "edited" activity: `todo_content_changed` when it
  is the last edit and the content did change over the window, else `todo_activity`);
* every silent change whose effect is still visible (a field's value at the end differs
  from the start, a flag left other than the activities said, a silent creation, trash,
  comment or comment trash) -> exactly one diff-only event; silent changes absorbed by a
  creation or trash in the same window, or overwritten by a later change of the same
  field, leave nothing to see and must give nothing;
* no other event; re-polling adds nothing; the poller's stored to-dos equal the
  simulator's.

Fixed seeds run a long random walk each; a hypothesis state machine explores the rest.
Everything goes over loopback HTTP to the real simulator and into a real SQLite file.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from poller.payloads import parse_ts
from poller.simulator import Account, ManualClock, SimulatorApp, serve
from tests.conftest import Harness

Snapshot = dict[tuple[str, int], dict[str, Any]]
OPS = (
    "create",
    "complete",
    "uncomplete",
    "edit",
    "reassign",
    "redate",
    "trash",
    "comment_todo",
    "comment_message",
    "trash_comment",
)


@dataclass
class World:
    account: Account
    people: list[int]
    lists: list[int]
    message: int
    counter: int = 0
    windows: int = 0
    checked: Counter[str] = field(default_factory=Counter)

    def live_todos(self) -> list[int]:
        acc = self.account
        return sorted(t.id for t in acc.todos.values() if acc.is_live(t))

    def live_comments(self) -> list[int]:
        snap = self.account.snapshot()
        return sorted(rid for (kind, rid) in snap if kind == "comment")


def build_world(account: Account) -> World:
    people = [account.add_person(f"Person {n}", f"p{n}@example.com") for n in range(3)]
    project = account.create_project("Model")
    lists = [account.create_todolist(project, f"List {n}") for n in range(3)]
    for n in range(6):
        account.create_todo(lists[n % 3], f"Seed {n}", assignee=people[n % 3])
    message = account.create_message(project, "Notes", "Hello")
    return World(account, people, lists, message)


def mutate(world: World, op: str, pick: int, silent: bool, who: int) -> None:
    """One mutation, if it is possible now (and never a no-op)."""
    acc = world.account
    by = world.people[who % len(world.people)]
    world.counter += 1
    n = world.counter
    todos = world.live_todos()
    todo = todos[pick % len(todos)] if todos else None
    if op == "create":
        acc.create_todo(world.lists[pick % len(world.lists)], f"Task {n}", by=by, silent=silent)
    elif op == "comment_message":
        acc.add_comment("message", world.message, f"Note {n}", by=by, silent=silent)
    elif op == "trash_comment":
        comments = world.live_comments()
        if comments:
            acc.trash_comment(comments[pick % len(comments)], by=by, silent=silent)
    elif todo is None:
        return
    elif op == "complete" and acc.todos[todo].completed_at is None:
        acc.complete_todo(todo, by=by, silent=silent)
    elif op == "uncomplete" and acc.todos[todo].completed_at is not None:
        acc.uncomplete_todo(todo, by=by, silent=silent)
    elif op == "edit":
        acc.update_todo(todo, content=f"Edited {n}", by=by, silent=silent)
    elif op == "reassign":
        current = acc.todos[todo].assignee_id
        choices = [p for p in world.people if p != current]
        acc.update_todo(todo, assignee=choices[pick % len(choices)], by=by, silent=silent)
    elif op == "redate":
        acc.update_todo(
            todo, due_on=f"2025-{1 + n % 12:02d}-{1 + n % 28:02d}", by=by, silent=silent
        )
    elif op == "trash" and len(todos) > 2:
        acc.trash_todo(todo, by=by, silent=silent)
    elif op == "comment_todo":
        acc.add_comment("todo", todo, f"Comment {n}", by=by, silent=silent)


# -- the oracle ----------------------------------------------------------------------


def _update_class(change: Any) -> str:
    keys = set(change.fields)
    if any(k.startswith("assignee") for k in keys):
        return "reassign"
    if "due_on" in keys:
        return "redate"
    return "edit"


def _list_done(snap: Snapshot, list_id: int) -> bool:
    todos = [r for (k, _), r in snap.items() if k == "todo" and r["todolist_id"] == list_id]
    return bool(todos) and all(t["completed"] for t in todos)


def expected_diffs(window: list[Any], start: Snapshot, end: Snapshot) -> Counter[tuple[Any, ...]]:
    """The diff-only events a window's changes must give (see the module docstring)."""
    exp: Counter[tuple[Any, ...]] = Counter()
    # every to-do of either snapshot, and those made and trashed again within the window
    todo_ids = {rid for (k, rid) in start | end if k == "todo"}
    todo_ids |= {c.id for c in window if c.type == "Todo"}
    for tid in todo_ids:
        s, e = start.get(("todo", tid)), end.get(("todo", tid))
        acts = [c for c in window if c.type == "Todo" and c.id == tid and c.activity_id]
        ops = [c.op for c in acts]
        updates = {_update_class(c) for c in acts if c.op == "update"}
        if s is None and e is not None and "create" not in ops:
            exp[("todo_created", tid)] += 1
        if s is not None and e is None and "trash" not in ops:
            exp[("todo_trashed", tid)] += 1
        heard_of = ops or any(
            c.type == "Comment" and c.parent == ("Todo", tid) and c.activity_id for c in window
        )
        if s is None and e is None and heard_of and "trash" not in ops:
            # the feed named it (itself or a comment on it), it is gone again without a
            # word: 404 and not listed
            exp[("todo_trashed", tid)] += 1
        if e is None:
            continue
        named = [c.op for c in acts if c.op in ("complete", "uncomplete")]
        implied = (named[-1] == "complete") if named else None
        if (implied is None and s is not None and s["completed"] != e["completed"]) or (
            implied is not None and implied != e["completed"]
        ):
            exp[("todo_completed" if e["completed"] else "todo_uncompleted", tid)] += 1
        if s is None:
            continue
        for name, cls, kind in (
            ("content", "edit", "todo_content_changed"),
            ("assignee_id", "reassign", "todo_assignment_changed"),
            ("due_on", "redate", "todo_due_date_changed"),
        ):
            if s[name] != e[name] and cls not in updates:
                exp[(kind, tid)] += 1
    created = {c.id: c for c in window if c.op == "comment"}
    trashed = {c.id: c for c in window if c.op == "trash_comment"}
    for (kind, cid), rec in end.items():
        if kind == "comment" and cid in created and created[cid].activity_id is None:
            exp[("comment_created", rec["parent"][1], cid)] += 1
    for (kind, cid), rec in start.items():
        if kind != "comment" or ("comment", cid) in end or rec["parent"] not in end:
            continue
        if cid not in trashed or trashed[cid].activity_id is None:
            exp[("comment_trashed", rec["parent"][1], cid)] += 1
    list_ids = {rid for (k, rid) in start | end if k == "todolist"}
    for lid in list_ids:
        both = ("todolist", lid) in start and ("todolist", lid) in end
        if both and _list_done(start, lid) != _list_done(end, lid):
            exp[("todolist_changed", lid)] += 1
    return exp


def activity_kind(c: Any, window: list[Any], start: Snapshot, end: Snapshot) -> str:
    """The kind of the event an activity must give."""
    if c.type == "Comment":
        return "comment_created" if c.op == "comment" else "comment_trashed"
    simple = {
        "create": "todo_created",
        "complete": "todo_completed",
        "uncomplete": "todo_uncompleted",
        "trash": "todo_trashed",
    }
    if c.op in simple:
        return simple[c.op]
    cls = _update_class(c)
    if cls == "reassign":
        return "todo_assignment_changed"
    if cls == "redate":
        return "todo_due_date_changed"
    edits = [
        x
        for x in window
        if x.type == "Todo" and x.id == c.id and x.op == "update" and x.activity_id
        if _update_class(x) == "edit"
    ]
    s, e = start.get(("todo", c.id)), end.get(("todo", c.id))
    if edits[-1] is c and s is not None and e is not None and s["content"] != e["content"]:
        return "todo_content_changed"
    return "todo_activity"


def check_window(
    world: World, window: list[Any], start: Snapshot, end: Snapshot, events: list[dict[str, Any]]
) -> None:
    by_activity: dict[int, list[dict[str, Any]]] = {}
    diffs: Counter[tuple[Any, ...]] = Counter()
    for e in events:
        act = e["details"].get("activity")
        if act is not None:
            by_activity.setdefault(act["id"], []).append(e)
        else:
            assert e["source"] == "diff", e
            key: tuple[Any, ...] = (e["kind"], e["recording"]["id"])
            if e["kind"].startswith("comment_"):
                key += (e["details"]["comment"]["id"],)
            diffs[key] += 1
    made = {c.activity_id: c for c in window if c.activity_id is not None}
    assert set(by_activity) == set(made), "events for activities not made this window, or lost"
    for aid, c in made.items():
        got = by_activity[aid]
        assert len(got) == 1, (c, [g["kind"] for g in got])
        e = got[0]
        want = activity_kind(c, window, start, end)
        assert e["kind"] == want, (c, e["kind"], want)
        assert (e["creator"] or {}).get("id") == c.by, (c, e["creator"])
        assert parse_ts(e["created_at"]) == c.at, (c, e["created_at"])
        rid = c.parent[1] if c.type == "Comment" else c.id
        assert e["recording"]["id"] == rid, (c, e["recording"])
        world.checked[want] += 1
    expected = expected_diffs(window, start, end)
    assert diffs == expected, {"lost": expected - diffs, "extra": diffs - expected}
    world.checked["diff"] += sum(expected.values())


def check_state(h: Harness) -> None:
    """The poller's stored to-dos equal the simulator's."""
    snap = h.account.snapshot()
    want = {
        rid: (r["content"], r["completed"], r["assignee_id"], r["due_on"])
        for (k, rid), r in snap.items()
        if k == "todo"
    }
    stored = h.store.records(h.account.account_id, "Todo")
    got = {
        rid: (
            rec.data["fields"]["content"],
            rec.data["fields"]["completed"],
            (rec.data["fields"].get("assignee") or {}).get("id"),
            rec.data["fields"].get("due_on"),
        )
        for rid, rec in stored.items()
        if rec.state == "active"
    }
    assert got == want


class Model:
    """A simulator, a poller on it over loopback, and the oracle between polls."""

    def __init__(self, tmp: Path) -> None:
        self.clock = ManualClock()
        self.account = Account(clock=self.clock)
        self.world = build_world(self.account)
        self.app = SimulatorApp(self.account)
        self.tmp = tmp
        self._serving: Iterator[str] | None = None

    async def poll(self) -> None:
        h = self.h
        start, mark = self.start, self.mark
        assert await h.cycle() is not None, h.last_runner.last_error
        end = self.account.snapshot()
        check_window(self.world, self.account.changes[mark:], start, end, h.new_events())
        self.world.windows += 1
        self.start, self.mark = end, len(self.account.changes)

    async def begin(self, h: Harness) -> None:
        self.h = h
        assert await h.cycle() is not None
        assert h.new_events() == []
        self.start, self.mark = self.account.snapshot(), len(self.account.changes)

    async def settle(self) -> None:
        """Nothing more: a repeated poll, a full re-list and a re-check add nothing."""
        await self.poll()
        for advance in (30, 4000):
            assert await self.h.cycle(advance=advance) is not None
            assert self.h.new_events() == []
        check_state(self.h)


async def walk(
    seed: int,
    tmp: Path,
    polls: int,
    *,
    most: int = 8,
    overrides: dict[str, Any] | None = None,
) -> tuple[Counter[str], list[dict[str, Any]]]:
    """A random walk of `polls` windows of 1..`most` mutations, the oracle checked at every
    poll; what the oracle checked and every event committed, in outbox order."""
    rng = random.Random(seed)
    model = Model(tmp)
    with serve(model.app) as base_url:
        h = Harness(
            model.account, model.clock, model.app, base_url, tmp, overrides=dict(overrides or {})
        )
        try:
            await model.begin(h)
            for _ in range(polls):
                for _ in range(rng.randint(1, most)):
                    model.clock.advance(rng.choice([1, 1, 2, 7]))
                    mutate(
                        model.world,
                        rng.choice(OPS),
                        rng.randrange(1000),
                        rng.random() < 0.35,
                        rng.randrange(3),
                    )
                await model.poll()
            await model.settle()
            return model.world.checked, h.events()
        finally:
            h.close()


async def random_walk(seed: int, tmp: Path, polls: int) -> Counter[str]:
    checked, _events = await walk(seed, tmp, polls)
    return checked


@pytest.mark.parametrize("seed", range(8))
async def test_every_change_between_two_polls_is_accounted_for(seed: int, tmp_path: Path) -> None:
    checked = await random_walk(seed, tmp_path, polls=12)
    # the walk exercised what it claims to (an oracle that checks nothing proves nothing)
    assert checked["diff"] > 0 and sum(checked.values()) > 30, checked


# -- hypothesis state machine --------------------------------------------------------


class PollingMachine(RuleBasedStateMachine):
    """Mutations and polls in any order; the oracle runs at every poll."""

    @initialize()
    def start(self) -> None:
        self.tmpdir = tempfile.TemporaryDirectory()
        self.model = Model(Path(self.tmpdir.name))
        self.serving = serve(self.model.app)
        base_url = self.serving.__enter__()
        self.h = Harness(
            self.model.account, self.model.clock, self.model.app, base_url, Path(self.tmpdir.name)
        )
        asyncio.run(self.model.begin(self.h))

    @rule(
        op=st.sampled_from(OPS),
        pick=st.integers(0, 50),
        silent=st.booleans(),
        who=st.integers(0, 2),
        gap=st.sampled_from([1, 2, 7]),
    )
    def change(self, op: str, pick: int, silent: bool, who: int, gap: int) -> None:
        self.model.clock.advance(gap)
        mutate(self.model.world, op, pick, silent, who)

    @rule()
    def poll(self) -> None:
        asyncio.run(self.model.poll())

    @invariant()
    def nothing_pending_is_lost(self) -> None:
        # checked at each poll; here only that the simulator keeps its log
        assert len(self.model.account.changes) >= self.model.mark

    def teardown(self) -> None:
        try:
            asyncio.run(self.model.settle())
        finally:
            self.h.close()
            self.serving.__exit__(None, None, None)
            self.tmpdir.cleanup()


TestPollingMachine = PollingMachine.TestCase
TestPollingMachine.settings = settings(
    max_examples=12,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
