"""Property: random mutation sequences through the simulator; the emitted events replay
onto the baseline to exactly the simulator's final state (nothing lost, nothing invented)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poller.accounts import open_account, run_cycle
from poller.config import parse_settings
from poller.routing import router
from poller.simulator import Account, ManualClock, SimulatorApp, SimulatorTransport
from poller.store import Store

OPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "create",
                "complete",
                "uncomplete",
                "edit",
                "reassign",
                "redate",
                "trash",
                "comment",
                "cycle",
            ]
        ),
        st.integers(min_value=0, max_value=50),
        st.booleans(),  # silent: no activity-feed entry
    ),
    min_size=1,
    max_size=14,
)


def todo_state(snapshot: dict[tuple[str, int], dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {
        rid: {
            "content": rec["content"],
            "completed": rec["completed"],
            "assignee": rec["assignee_id"],
            "due_on": rec["due_on"],
        }
        for (kind, rid), rec in snapshot.items()
        if kind == "todo"
    }


def comment_ids(snapshot: dict[tuple[str, int], dict[str, Any]]) -> dict[int, int]:
    """comment id -> the id of the item it is on"""
    return {rid: rec["parent"][1] for (kind, rid), rec in snapshot.items() if kind == "comment"}


def replay(
    todos: dict[int, dict[str, Any]], comments: dict[int, int], events: list[dict[str, Any]]
) -> None:
    """Apply the events to the baseline. An event the feed names but the diff could not
    tell (created then trashed before a poll: no record; a due date changed right after
    creation: `changes` is `{}`) carries no value to apply, only the fact."""
    for e in events:
        kind, rid, ch = e["kind"], e["recording"]["id"], e["changes"]
        if kind == "todo_created" and e["details"]["record"] is None:
            todos[rid] = None  # type: ignore[assignment]  # must be trashed again below
        elif kind == "todo_created":
            rec = e["details"]["record"]
            todos[rid] = {
                "content": rec["content"],
                "completed": bool(rec.get("completed")),
                "assignee": (rec.get("assignee") or {}).get("id"),
                "due_on": rec.get("due_on") or rec.get("due_at"),
            }
        elif kind == "todo_trashed":
            # the activity of a to-do created silently and trashed before a poll
            assert rid in todos or e["source"] == "activity", e
            todos.pop(rid, None)
            for cid in [c for c, parent in comments.items() if parent == rid]:
                del comments[cid]
        elif kind.startswith("todo_") and todos.get(rid) is None:
            # the feed's word about a to-do never read (created, changed and trashed
            # again between two polls): nothing to apply, and it must be gone by now
            assert e["source"] == "activity", e
            todos[rid] = None  # type: ignore[assignment]
        elif kind in ("todo_completed", "todo_uncompleted"):
            todos[rid]["completed"] = ch["completed"][1]
        elif kind == "todo_content_changed" and ch:
            todos[rid]["content"] = ch["content"][1]
        elif kind == "todo_due_date_changed" and ch:
            todos[rid]["due_on"] = ch["due_on"][1]
        elif kind == "todo_assignment_changed" and ch:
            todos[rid]["assignee"] = (ch["assignee"][1] or {}).get("id")
        elif kind == "comment_created" and e["details"]["comment"] is None:
            assert e["source"] == "activity", e  # on an item trashed before the poll
        elif kind == "comment_created":
            comments[e["details"]["comment"]["id"]] = rid
        elif kind == "comment_trashed":
            comments.pop(e["details"]["comment"]["id"], None)


async def scenario(ops: list[tuple[str, int, bool]], tmp: Path) -> None:
    clock = ManualClock()
    account = Account(clock=clock)
    app = SimulatorApp(account)
    people = [account.add_person(f"P{n}", f"p{n}@example.com") for n in range(3)]
    project = account.create_project("Prop")
    lists = [account.create_todolist(project, f"L{n}") for n in range(2)]
    for n in range(4):
        account.create_todo(lists[n % 2], f"seed {n}", assignee=people[n % 3])
    cfg = parse_settings(
        {
            "poller": {"state_path": str(tmp / "s.db"), "reconcile_interval": 0},
            "accounts": [
                {
                    "id": account.account_id,
                    "base_url": f"https://basecamp.com/{account.account_id}/api/v1",
                    "user_agent": "prop (t@example.com)",
                    "username": "demo@example.com",
                    "password": "demo",
                }
            ],
        }
    )
    store = Store(cfg.poller.state_path)
    route = router(())

    async def cycle() -> None:
        clock.advance(30)
        runner = open_account(cfg.accounts[0], transport=SimulatorTransport(app), store=store)
        try:
            assert await run_cycle(runner, store, cfg.poller, route) is not None, runner.last_error
        finally:
            await runner.aclose()

    try:
        await cycle()
        base = account.snapshot()
        todos, comments = todo_state(base), comment_ids(base)
        for op, n, silent in ops:
            clock.advance(1)
            live = sorted(todo_state(account.snapshot()))
            target = live[n % len(live)] if live else None
            if op == "cycle":
                await cycle()
            elif op == "create":
                account.create_todo(lists[n % 2], f"new {n}", silent=silent)
            elif target is None:
                continue
            elif op == "complete":
                account.complete_todo(target, silent=silent)
            elif op == "uncomplete":
                account.uncomplete_todo(target, silent=silent)
            elif op == "edit":
                account.update_todo(target, content=f"edited {n}", silent=silent)
            elif op == "reassign":
                account.update_todo(target, assignee=people[n % 3], silent=silent)
            elif op == "redate":
                account.update_todo(target, due_on=f"2024-03-{1 + n % 28:02d}", silent=silent)
            elif op == "trash" and len(live) > 1:
                account.trash_todo(target, silent=silent)
            elif op == "comment":
                account.add_comment("todo", target, f"note {n}", silent=silent)
        await cycle()
        events = store.events(limit=100000)
        assert len({e["id"] for e in events}) == len(events)
        replay(todos, comments, events)
        final = account.snapshot()
        assert todos == todo_state(final)
        assert comments == comment_ids(final)
    finally:
        store.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_events_replay_to_the_final_state(ops: list[tuple[str, int, bool]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(ops, Path(tmp)))
