"""Human-facing handlers say what changed, kind by kind (issue 14 item 2): a comment's
text and link, old -> new due date and assignee, a renamed title, a word diff of a text."""

from __future__ import annotations

from typing import Any

from handlers import format as fmt
from handlers.templates import (
    compile_template,
    default_source,
    digest_context,
    event_context,
    render,
)
from poller.events import sample_event


def event(kind: str, changes: dict[str, Any], **details: Any) -> dict[str, Any]:
    return {**sample_event(), "kind": kind, "changes": changes, "details": details}


def test_a_comment_shows_its_text_trimmed_and_its_link() -> None:
    long = "<p>Looks <b>good</b> &amp; ready.</p> " + "word " * 200
    e = event(
        "comment_created",
        {},
        comment={"id": 5, "content": long},
        comment_url="https://basecamp.com/1/projects/2/todos/3#comment_5",
    )
    lines = fmt.changed(e, limit=40)
    assert lines[0].startswith('"Looks good & ready. word') and lines[0].endswith('…"')
    assert len(lines[0]) <= 42
    assert lines[1] == "Comment: https://basecamp.com/1/projects/2/todos/3#comment_5"


def test_each_field_reads_old_to_new() -> None:
    ann, bob = {"id": 1, "name": "Ann Able"}, {"id": 2, "name": "Bob Baker"}
    assert fmt.changed(event("todo_due_date_changed", {"due_on": ["2024-02-01", None]})) == [
        "Due date: 2024-02-01 → none"
    ]
    assert fmt.changed(event("todo_assignment_changed", {"assignee": [ann, bob]})) == [
        "Assigned: Ann Able → Bob Baker"
    ]
    assert fmt.changed(event("todo_assignment_changed", {"assignee": [None, bob]})) == [
        "Assigned: nobody → Bob Baker"
    ]
    assert fmt.changed(
        event("todolist_changed", {"name": ["Old", "New"], "project_id": [1, 2]})
    ) == ["Title: Old → New", "Project: #1 → #2"]
    assert fmt.changed(event("todo_completed", {"completed": [False, True]})) == []


def test_a_text_change_is_a_short_word_diff_and_a_first_read_its_text() -> None:
    old = "We ship on Monday after the final review of the design"
    new = "We ship on Friday after the final review of the design"
    assert fmt.changed(event("document_changed", {"content": [old, new]})) == [
        "Text: We ship on [-Monday-] {+Friday+} after … design"
    ]
    assert fmt.changed(event("document_changed", {"content": [None, "<p>Hello</p>"]})) == [
        "Text: Hello"
    ]


def test_slack_and_email_messages_carry_the_lines() -> None:
    comment = event(
        "comment_created",
        {},
        comment={"id": 5, "content": "Ship it & now"},
        comment_url="https://basecamp.com/1/projects/2/todos/3#comment_5",
    )
    due = event("todo_due_date_changed", {"due_on": ["2024-02-01", "2024-03-01"]})
    slack = render(compile_template(default_source("slack.txt")), event_context(comment))
    assert '\n> "Ship it &amp; now"' in slack
    assert "\n> Comment: https://basecamp.com/1/projects/2/todos/3#comment_5" in slack
    text = render(
        compile_template(default_source("email.txt"), digest=True), digest_context([comment, due])
    )
    assert '    "Ship it & now"' in text and "    Due date: 2024-02-01 → 2024-03-01" in text
    html = render(
        compile_template(default_source("email.html"), html=True, digest=True),
        digest_context([due]),
    )
    assert "Due date: 2024-02-01 → 2024-03-01" in html


def test_a_digest_reads_by_project_then_item_newest_first_in_both_parts() -> None:
    def at(n: int, project: str, item: int, title: str, **kw: Any) -> dict[str, Any]:
        e = event(kw.pop("kind", "todo_completed"), kw.pop("changes", {}), **kw)
        e["project"] = {"id": len(project), "name": project}
        e["recording"] = {**e["recording"], "id": item, "title": title}
        e["created_at"] = f"2024-01-15T10:00:0{n}Z"
        return e

    events = [
        at(1, "Zeta", 1, "Old task"),
        at(
            2,
            "Alpha",
            2,
            "Plan",
            kind="todo_due_date_changed",
            changes={"due_on": [None, "2024-02-01"]},
        ),
        at(3, "Zeta", 3, "New task"),
        at(4, "Alpha", 2, "Plan", kind="todo_uncompleted"),
    ]
    fmt.set_timezone("UTC")
    try:
        ctx = digest_context(events)
        text = render(compile_template(default_source("email.txt"), digest=True), ctx)
        html = render(compile_template(default_source("email.html"), html=True, digest=True), ctx)
    finally:
        fmt.set_timezone(None)
    order = [text.index(s) for s in ("== Alpha ==", "Plan", "== Zeta ==", "New task", "Old task")]
    assert order == sorted(order), text
    plan = text[text.index("Plan") : text.index("== Zeta ==")]
    assert plan.index("10:00:04") < plan.index("10:00:02")  # newest first within an item
    assert "      Due date: none → 2024-02-01" in plan
    assert html.index(">Alpha<") < html.index(">Zeta<") and "Due date: none → 2024-02-01" in html
    assert "2024-01-15 10:00:04 UTC" in html
