"""The field-by-field diff and its kinds."""

from __future__ import annotations

from poller.diff import classify

TODO = {
    "content": "Design it",
    "completed": False,
    "due_on": None,
    "assignee": None,
    "todolist_id": 1,
    "private": False,
    "trashed": False,
}


def kinds(old, new, rtype="Todo"):  # type: ignore[no-untyped-def]
    return {c.kind: c.changes for c in classify(rtype, old, new)}


def test_completed_and_uncompleted() -> None:
    assert kinds(TODO, {**TODO, "completed": True}) == {
        "todo_completed": {"completed": [False, True]}
    }
    done = {**TODO, "completed": True}
    assert kinds(done, TODO) == {"todo_uncompleted": {"completed": [True, False]}}


def test_assignment_due_and_content_each_get_their_kind() -> None:
    who = {"id": 5, "type": "Person", "name": "Ann"}
    got = kinds(
        TODO, {**TODO, "assignee": who, "due_on": "2026-12-01", "content": "Design it well"}
    )
    assert got == {
        "todo_assignment_changed": {"assignee": [None, who]},
        "todo_due_date_changed": {"due_on": [None, "2026-12-01"]},
        "todo_content_changed": {"content": ["Design it", "Design it well"]},
    }


def test_other_fields_go_to_changed_together() -> None:
    got = kinds(TODO, {**TODO, "todolist_id": 2, "private": True})
    assert got == {"todo_changed": {"todolist_id": [1, 2], "private": [False, True]}}


def test_trashed_wins_over_other_changes_and_gone_is_trashed() -> None:
    assert kinds(TODO, {**TODO, "trashed": True, "content": "x"}) == {
        "todo_trashed": {"trashed": [False, True]}
    }
    assert kinds(TODO, None) == {"todo_trashed": {"trashed": [False, True]}}
    assert kinds({**TODO, "trashed": True}, None) == {}


def test_created_unless_born_trashed() -> None:
    assert kinds(None, TODO) == {"todo_created": {}}
    assert kinds(None, {**TODO, "trashed": True}) == {}


def test_projects_archive_and_unarchive() -> None:
    p = {"name": "P", "archived": False, "trashed": False}
    assert kinds(p, {**p, "archived": True}, "Project") == {
        "project_archived": {"archived": [False, True]}
    }
    assert kinds({**p, "archived": True}, p, "Project") == {
        "project_unarchived": {"archived": [True, False]}
    }


def test_calendar_event_prefix() -> None:
    e = {"summary": "a", "trashed": False}
    assert kinds(e, {**e, "summary": "b"}, "CalendarEvent") == {
        "calendar_event_changed": {"summary": ["a", "b"]}
    }
