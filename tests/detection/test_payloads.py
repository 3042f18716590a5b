"""Every documented example payload goes through the parsers and the diff (the simulator
shares our blind spots; the docs' payloads do not)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from poller.diff import classify
from poller.errors import BadResponse
from poller.payloads import parse, parse_activity, parse_comments, parse_ts

EXAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "basecamp2" / "examples"
if not EXAMPLES.is_dir():  # CI lays shared/ beside the clone
    EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "basecamp2" / "examples"

pytestmark = pytest.mark.skipif(
    not EXAMPLES.is_dir(), reason="shared/basecamp2/examples not present"
)


def load(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text())


SINGLES = [
    ("project.json", "Project"),
    ("project_template.json", "Project"),
    ("person.json", "Person"),
    ("todolist.json", "Todolist"),
    ("todo.json", "Todo"),
    ("message.json", "Message"),
    ("document.json", "Document"),
    ("upload.json", "Upload"),
    ("calendar_event.json", "CalendarEvent"),
    ("calendar_event_recurring.json", "CalendarEvent"),
]
LISTS = [
    ("projects.json", "Project"),
    ("people.json", "Person"),
    ("accesses.json", "Person"),
    ("todolists.json", "Todolist"),
    ("todos.json", "Todo"),
    ("documents.json", "Document"),
    ("calendar_events.json", "CalendarEvent"),
]


@pytest.mark.parametrize(("name", "rtype"), SINGLES)
def test_single_examples_parse_and_baseline_then_no_change(name: str, rtype: str) -> None:
    record = parse(rtype, load(name), f"https://example/{name}", project_hint=1)
    assert record.id > 0
    assert record.type == rtype
    assert record.title
    # a record diffed against itself gives nothing; against nothing it is created
    assert classify(rtype, record.fields, record.fields) == []
    assert [c.kind for c in classify(rtype, None, record.fields)] == [
        f"{record.type.lower() if rtype != 'CalendarEvent' else 'calendar_event'}_created"
    ]


@pytest.mark.parametrize(("name", "rtype"), LISTS)
def test_list_examples_parse(name: str, rtype: str) -> None:
    items = load(name)
    assert isinstance(items, list) and items
    records = [parse(rtype, item, name, project_hint=1) for item in items]
    assert len({r.id for r in records}) == len(records)


def test_todo_quirks_completed_at_false_and_empty_assignee() -> None:
    todo = parse("Todo", load("todo.json"), "todo.json")
    assert todo.fields["completed"] is False
    assert todo.meta["completed_at"] is None
    todolist = load("todolist.json")
    unassigned = todolist["todos"]["remaining"][1]
    assert unassigned["assignee"] == {}
    rec = parse("Todo", unassigned, "todolist.json", project_hint=605816632)
    assert rec.fields["assignee"] is None
    assert rec.project_id == 605816632  # from the URL, not the hint


def test_todos_example_has_duplicate_keys_and_placeholder_hosts() -> None:
    for item in load("todos.json"):
        rec = parse("Todo", item, "todos.json")
        assert rec.fields["todolist_id"] > 0
        assert rec.project_id is not None


def test_slugged_people_urls_keep_numeric_ids() -> None:
    people = [parse("Person", p, "people.json") for p in load("people.json")]
    assert people[0].id == 149087659
    assert people[0].meta["url"].endswith("149087659-jason-fried.json")


def test_project_sections_are_read() -> None:
    project = parse("Project", load("project.json"), "project.json")
    sections = project.meta["sections"]
    assert sections["todolists"]["remaining_count"] == 4
    assert sections["documents"]["updated_at"] is None


def test_comments_embedded_and_the_comment_without_id_is_skipped() -> None:
    msg = parse("Message", load("message.json"), "message.json", project_hint=1)
    comments = parse_comments(msg, "message.json")
    assert comments is not None and [c.id for c in comments] == [1028592764]
    assert comments[0].parent == ("Message", 936075699)
    doc = parse("Document", load("document.json"), "document.json", project_hint=1)
    assert parse_comments(doc, "document.json") == []


def test_events_example_parses_with_html_and_no_bucket() -> None:
    acts = [parse_activity(e, "events.json") for e in load("events.json")]
    assert [a.eventable_type for a in acts] == ["Todo", "Todolist", "CalendarEvent"]
    assert acts[0].project_id == 605816632  # from the URL: this example has no bucket
    assert acts[2].excerpt == "I&#39;ll be there!"
    assert parse_ts(acts[0].created_at) is not None


def test_topics_and_attachments_examples_shapes() -> None:
    topics = load("topics.json")
    assert all(isinstance(t["attachments"], int) for t in topics)
    atts = load("attachments.json")
    assert {a["attachable"]["type"] for a in atts} == {"Upload", "Message"}


def test_unknown_fields_are_ignored_and_missing_fields_are_unknown() -> None:
    todo = load("todo.json")
    todo["some_future_field"] = {"x": 1}
    rec = parse("Todo", todo, "todo.json")
    assert "some_future_field" not in rec.fields
    partial = {"id": 1, "trashed": False}
    old = rec.fields
    new = parse("Todo", partial, "x").fields
    assert classify("Todo", old, new) == []  # content missing is not "changed to None"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t.update(id="1"),
        lambda t: t.update(id=True),
        lambda t: t.update(content=5),
        lambda t: t.update(completed="yes"),
        lambda t: t.update(updated_at="yesterday"),
        lambda t: t.update(assignee=[1]),
        lambda t: t.update(completed_at=7),
    ],
)
def test_wrong_types_are_refused(mutate: Any) -> None:
    todo = load("todo.json")
    mutate(todo)
    with pytest.raises(BadResponse):
        parse("Todo", todo, "todo.json")


def test_not_an_object_is_refused() -> None:
    with pytest.raises(BadResponse, match="expected an object"):
        parse("Todo", [], "todo.json")
    with pytest.raises(BadResponse):
        parse_activity({"id": 1}, "events.json")  # no created_at
