"""`account.changes`: every mutation call leaves exactly one `SimChange`, naming the
feed event it appended (or None when silent) and each changed field as (old, new)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from poller.simulator import OPS, Account, ManualClock, SimChange, demo_account
from tests.simulator.conftest import World


def one_change(account: Account, clock: ManualClock, call: Callable[[], object]) -> SimChange:
    """Run `call`; check it logged one entry consistent with the feed; return it."""
    clock.advance(5)
    seen_changes = len(account.changes)
    seen_events = {e.id for e in account.events}
    call()
    new = account.changes[seen_changes:]
    assert len(new) == 1, new
    (change,) = new
    assert change.seq == seen_changes + 1
    assert change.at == account.now()
    assert change.op in OPS
    appended = [e for e in account.events if e.id not in seen_events]
    if change.activity_id is None:
        assert appended == []
    else:
        (event,) = appended
        assert event.id == change.activity_id
        assert (event.creator_id, event.created_at) == (change.by, change.at)
        if change.type == "Comment":
            assert (event.eventable_type, event.eventable_id) == change.parent
        else:
            assert (event.eventable_type, event.eventable_id) == (change.type, change.id)
    return change


@dataclass(frozen=True)
class Case:
    """One mutation `call(account, world, silent)` on the record `target` (or the one the
    call returns)."""

    name: str
    call: Callable[[Account, World, bool], object]
    op: str
    type: str
    fields: Callable[[World], dict[str, tuple[Any, Any]]] = lambda w: {}
    parent: Callable[[World], tuple[str, int] | None] = lambda w: None
    project: Callable[[World], int] | None = lambda w: w.project  # None: the record
    setup: Callable[[Account, World], object] = lambda a, w: None
    target: Callable[[World], int] | None = None  # None: the id `call` returns


def _created(a: Account, w: World, s: bool) -> int:
    return a.create_todo(w.todolist, "New one", by=w.jane, silent=s)


CASES = [
    Case(
        "create_project",
        lambda a, w, s: a.create_project("Fresh", by=w.jane, silent=s),
        "create",
        "Project",
        project=None,
    ),
    Case(
        "update_project",
        lambda a, w, s: a.update_project(w.project, name="Relaunch", by=w.jane, silent=s),
        "update",
        "Project",
        lambda w: {"name": ("Launch", "Relaunch")},
        target=lambda w: w.project,
    ),
    Case(
        "archive_project",
        lambda a, w, s: a.archive_project(w.project, by=w.jane, silent=s),
        "archive",
        "Project",
        lambda w: {"archived": (False, True)},
        target=lambda w: w.project,
    ),
    Case(
        "unarchive_project",
        lambda a, w, s: a.unarchive_project(w.project, by=w.jane, silent=s),
        "unarchive",
        "Project",
        lambda w: {"archived": (True, False)},
        setup=lambda a, w: a.archive_project(w.project),
        target=lambda w: w.project,
    ),
    Case(
        "trash_project",
        lambda a, w, s: a.trash_project(w.project, by=w.jane, silent=s),
        "trash",
        "Project",
        lambda w: {"trashed": (False, True)},
        target=lambda w: w.project,
    ),
    Case(
        "grant_access",
        lambda a, w, s: a.grant_access(w.other_project, w.jane, by=w.jane, silent=s),
        "grant_access",
        "Person",
        lambda w: {"access": (False, True)},
        project=lambda w: w.other_project,
        target=lambda w: w.jane,
    ),
    Case(
        "create_todolist",
        lambda a, w, s: a.create_todolist(w.project, "More", by=w.jane, silent=s),
        "create",
        "Todolist",
    ),
    Case(
        "update_todolist",
        lambda a, w, s: a.update_todolist(w.todolist, description=None, by=w.jane, silent=s),
        "update",
        "Todolist",
        lambda w: {"description": ("What we need", None)},
        target=lambda w: w.todolist,
    ),
    Case(
        "trash_todolist",
        lambda a, w, s: a.trash_todolist(w.todolist, by=w.jane, silent=s),
        "trash",
        "Todolist",
        lambda w: {"trashed": (False, True)},
        target=lambda w: w.todolist,
    ),
    Case(
        "move_todolist",
        lambda a, w, s: a.move_todolist(w.todolist, w.other_project, by=w.jane, silent=s),
        "move",
        "Todolist",
        lambda w: {"project_id": (w.project, w.other_project)},
        project=lambda w: w.other_project,
        target=lambda w: w.todolist,
    ),
    Case("create_todo", _created, "create", "Todo"),
    Case(
        "update_todo",
        lambda a, w, s: a.update_todo(
            w.todo,
            content="Design it well",
            assignee=None,
            due_on="2024-03-01",
            by=w.jane,
            silent=s,
        ),
        "update",
        "Todo",
        lambda w: {
            "content": ("Design it", "Design it well"),
            "assignee_id": (w.jane, None),
            "due_on": ("2024-02-01", "2024-03-01"),
        },
        target=lambda w: w.todo,
    ),
    Case(
        "complete_todo",
        lambda a, w, s: a.complete_todo(w.todo, by=w.jane, silent=s),
        "complete",
        "Todo",
        lambda w: {"completed": (False, True)},
        target=lambda w: w.todo,
    ),
    Case(
        "uncomplete_todo",
        lambda a, w, s: a.uncomplete_todo(w.todo, by=w.jane, silent=s),
        "uncomplete",
        "Todo",
        lambda w: {"completed": (True, False)},
        setup=lambda a, w: a.complete_todo(w.todo),
        target=lambda w: w.todo,
    ),
    Case(
        "trash_todo",
        lambda a, w, s: a.trash_todo(w.todo, by=w.jane, silent=s),
        "trash",
        "Todo",
        lambda w: {"trashed": (False, True)},
        target=lambda w: w.todo,
    ),
    Case(
        "create_message",
        lambda a, w, s: a.create_message(w.project, "Hi", "All", by=w.jane, silent=s),
        "create",
        "Message",
    ),
    Case(
        "update_message",
        lambda a, w, s: a.update_message(w.message, subject="Hello", by=w.jane, silent=s),
        "update",
        "Message",
        lambda w: {"subject": ("Welcome!", "Hello")},
        target=lambda w: w.message,
    ),
    Case(
        "trash_message",
        lambda a, w, s: a.trash_message(w.message, by=w.jane, silent=s),
        "trash",
        "Message",
        lambda w: {"trashed": (False, True)},
        target=lambda w: w.message,
    ),
    Case(
        "add_comment",
        lambda a, w, s: a.add_comment("todo", w.todo, "Looks good", by=w.jane, silent=s),
        "comment",
        "Comment",
        parent=lambda w: ("Todo", w.todo),
    ),
    Case(
        "trash_comment",
        lambda a, w, s: _trash_comment_of(a, w, s),
        "trash_comment",
        "Comment",
        lambda w: {"trashed": (False, True)},
        parent=lambda w: ("Document", w.document),
        setup=lambda a, w: a.add_comment("document", w.document, "Typo"),
    ),
    Case(
        "create_document",
        lambda a, w, s: a.create_document(w.project, "Notes", "x", by=w.jane, silent=s),
        "create",
        "Document",
    ),
    Case(
        "update_document",
        lambda a, w, s: a.update_document(w.document, content="Do that", by=w.jane, silent=s),
        "update",
        "Document",
        lambda w: {"content": ("Do this", "Do that")},
        target=lambda w: w.document,
    ),
    Case(
        "trash_document",
        lambda a, w, s: a.trash_document(w.document, by=w.jane, silent=s),
        "trash",
        "Document",
        lambda w: {"trashed": (False, True)},
        target=lambda w: w.document,
    ),
    Case(
        "create_upload",
        lambda a, w, s: a.create_upload(w.project, "Specs", "specs.pdf", by=w.jane, silent=s),
        "create",
        "Upload",
    ),
    Case(
        "trash_upload",
        lambda a, w, s: a.trash_upload(w.upload, by=w.jane, silent=s),
        "trash",
        "Upload",
        lambda w: {"trashed": (False, True)},
        target=lambda w: w.upload,
    ),
    Case(
        "create_calendar_event",
        lambda a, w, s: a.create_calendar_event(
            w.project, "Retro", "2024-03-05", by=w.jane, silent=s
        ),
        "create",
        "CalendarEvent",
    ),
    Case(
        "update_calendar_event",
        lambda a, w, s: a.update_calendar_event(
            w.entry, starts_at="2024-03-01T09:00:00-05:00", by=w.jane, silent=s
        ),
        "update",
        "CalendarEvent",
        lambda w: {
            "starts_at": ("2024-03-01", "2024-03-01T09:00:00.000-05:00"),
            "ends_at": ("2024-03-01", "2024-03-01T09:00:00.000-05:00"),
        },
        target=lambda w: w.entry,
    ),
    Case(
        "trash_calendar_event",
        lambda a, w, s: a.trash_calendar_event(w.entry, by=w.jane, silent=s),
        "trash",
        "CalendarEvent",
        lambda w: {"trashed": (False, True)},
        target=lambda w: w.entry,
    ),
]


def _trash_comment_of(account: Account, world: World, silent: bool) -> int:
    comment = account.documents[world.document].comments[-1].id
    account.trash_comment(comment, by=world.jane, silent=silent)
    return comment


@pytest.mark.parametrize("silent", [False, True], ids=["activity", "silent"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_each_mutation_logs_one_change(
    account: Account, clock: ManualClock, world: World, case: Case, silent: bool
) -> None:
    case.setup(account, world)
    returned: list[object] = []
    change = one_change(account, clock, lambda: returned.append(case.call(account, world, silent)))
    record = returned[0] if case.target is None else case.target(world)
    assert (change.op, change.type, change.id) == (case.op, case.type, record)
    assert change.by == world.jane
    assert change.parent == case.parent(world)
    assert change.fields == case.fields(world)
    assert change.project_id == (record if case.project is None else case.project(world))
    assert (change.activity_id is None) == silent


def test_people_changes_have_no_actor_and_no_activity(
    account: Account, clock: ManualClock, world: World
) -> None:
    added: list[int] = []
    change = one_change(account, clock, lambda: added.append(account.add_person("Sam")))
    assert (change.op, change.type, change.id, change.by) == ("create", "Person", added[0], None)
    assert change.activity_id is None and change.fields == {} and change.project_id is None
    change = one_change(account, clock, lambda: account.trash_person(added[0]))
    assert (change.op, change.id, change.by, change.activity_id) == ("trash", added[0], None, None)
    assert change.fields == {"trashed": (False, True)}


def test_changes_that_change_nothing_are_logged_with_empty_fields(
    account: Account, clock: ManualClock, world: World
) -> None:
    change = one_change(
        account, clock, lambda: account.update_todo(world.todo, content="Design it")
    )
    assert change.op == "update" and change.fields == {}
    assert change.activity_id is not None  # Basecamp still shows the edit
    change = one_change(account, clock, lambda: account.update_message(world.message, silent=True))
    assert change.fields == {} and change.activity_id is None
    change = one_change(account, clock, lambda: account.grant_access(world.project, world.jane))
    assert (change.op, change.fields, change.activity_id) == ("grant_access", {}, None)
    account.complete_todo(world.todo)
    change = one_change(account, clock, lambda: account.complete_todo(world.todo))
    assert change.op == "complete" and change.fields == {}
    account.move_todolist(world.todolist, world.other_project)
    change = one_change(
        account, clock, lambda: account.move_todolist(world.todolist, world.other_project)
    )
    assert change.op == "move" and change.fields == {}


def test_update_todo_fields_say_which_action_the_feed_shows(
    account: Account, clock: ManualClock, world: World
) -> None:
    change = one_change(account, clock, lambda: account.update_todo(world.todo, assignee=None))
    assert change.fields == {"assignee_id": (world.jane, None)}
    assert account.events[-1].action == "re-assigned a to-do to nobody<span>:</span>"
    change = one_change(account, clock, lambda: account.update_todo(world.todo, due_on=None))
    assert change.fields == {"due_on": ("2024-02-01", None)}
    assert account.events[-1].action == "changed the due date of a to-do<span>:</span>"


def test_the_log_explains_every_feed_event_exactly_once() -> None:
    account = demo_account()
    account.populate(projects=2, todos_per_project=5, events=True)
    changes = account.changes
    assert [c.seq for c in changes] == list(range(1, len(changes) + 1))
    assert all(a.at <= b.at for a, b in itertools.pairwise(changes))
    activity = [c.activity_id for c in changes if c.activity_id is not None]
    assert len(activity) == len(set(activity))
    assert sorted(activity) == sorted(e.id for e in account.events)
    kinds = {(c.op, c.type) for c in changes}
    assert {("create", "Todo"), ("complete", "Todo"), ("comment", "Comment")} <= kinds
    # the owner was there before the log started
    assert all(c.id != account.owner_id for c in changes if c.type == "Person")
