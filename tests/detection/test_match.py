"""The matching step on its own: activities and observed changes in, explanations out
(poller/match.py is pure), and the detector's unexplained first reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from poller.detect import Detector
from poller.match import ItemState, Observed, action_hint, match
from poller.payloads import Activity, Record, parse_activity, parse_document
from poller.store import Store

ROOT = "https://basecamp.com/1/api/v1"
TODO = ("Todo", 42)


def act(aid: int, action: str, at: str, who: int = 7, html: str | None = None) -> Activity:
    raw: dict[str, Any] = {
        "id": aid,
        "created_at": at,
        "updated_at": at,
        "action": action,
        "target": "Ship it",
        "eventable": {"id": 42, "type": "Todo", "url": f"{ROOT}/projects/5/todos/42.json"},
        "creator": {"id": who, "name": f"P{who}"},
    }
    if html:
        raw["html_url"] = html
    return parse_activity(raw, ROOT)


def todo(**fields: Any) -> Record:
    return Record("Todo", 42, 5, "Ship it", "2024-01-01T10:00:09Z", fields)


def seen(kind: str, changes: dict[str, Any], record: Record | None = None) -> Observed:
    rec = record or todo()
    key = rec.parent if rec.type == "Comment" and rec.parent else (rec.type, rec.id)
    return Observed(key, kind, changes, rec, discriminator=f"d:{kind}", at=rec.updated_at)


def kinds(out: list[Any]) -> list[tuple[str, int | None]]:
    return [(e.kind, e.activity.id if e.activity else None) for e in out]


def test_words_name_kinds_and_names_are_not_verbs() -> None:
    assert action_hint("re-assigned a to-do to Ada Newman<span>:</span>") == "assignment_changed"
    assert action_hint("gave Newman Completed access to the project") is None
    assert action_hint("deleted a comment on") == "comment_trashed"
    assert action_hint("updated a document") == "changed"  # not "due date"


def test_created_then_completed_gives_two_events_in_order() -> None:
    out = match(
        [
            act(2, "completed a to-do", "2024-01-01T10:00:09Z", who=8),
            act(1, "added a to-do", "2024-01-01T10:00:01Z"),
        ],
        [seen("todo_created", {})],
        {},
    )
    assert kinds(out) == [("todo_created", 1), ("todo_completed", 2)]
    assert out[1].changes == {"completed": [False, True]} and out[1].observed is None
    assert out[0].observed is not None  # the creation is the diff's, carried by activity 1


def test_completed_then_reopened_without_a_diff_and_a_silent_flip_back() -> None:
    state = {TODO: ItemState(True, "2024-01-01T09:00:00Z", {"completed": False}, "x")}
    out = match(
        [
            act(1, "completed a to-do", "2024-01-01T10:00:01Z"),
            act(2, "re-opened a to-do", "2024-01-01T10:00:05Z"),
        ],
        [],
        state,
    )
    assert kinds(out) == [("todo_completed", 1), ("todo_uncompleted", 2)]
    # completed by the feed, re-opened silently: one more diff-only event
    out = match([act(1, "completed a to-do", "2024-01-01T10:00:01Z")], [], state)
    assert kinds(out) == [("todo_completed", 1), ("todo_uncompleted", None)]


def test_an_edit_never_takes_a_change_with_words_of_its_own() -> None:
    state = {TODO: ItemState(True, "2024-01-01T09:00:00Z", {}, "x")}
    out = match(
        [act(1, "edited a to-do<span>:</span>", "2024-01-01T10:00:01Z")],
        [
            seen("todo_content_changed", {"content": ["a", "b"]}),
            seen("todo_due_date_changed", {"due_on": [None, "2024-02-01"]}),
        ],
        state,
    )
    assert sorted(kinds(out)) == [("todo_content_changed", 1), ("todo_due_date_changed", None)]


def test_an_activity_already_reflected_gives_nothing_and_comments_match_by_anchor() -> None:
    state = {TODO: ItemState(True, "2024-01-01T10:00:09Z", {}, "x")}
    old = act(1, "completed a to-do", "2024-01-01T10:00:01Z")
    assert match([old], [], state) == []
    c1 = Record(
        "Comment",
        100,
        5,
        "",
        "2024-01-01T10:00:10Z",
        {"content": "a"},
        {"created_at": "2024-01-01T10:00:10Z"},
        ("Todo", 42),
    )
    c2 = Record(
        "Comment",
        101,
        5,
        "",
        "2024-01-01T10:00:11Z",
        {"content": "b"},
        {"created_at": "2024-01-01T10:00:11Z"},
        ("Todo", 42),
    )
    late = "https://basecamp.com/1/projects/5/todos/42#comment_100"
    out = match(
        [act(3, "commented on", "2024-01-01T10:00:12Z", html=late)],
        [seen("comment_created", {}, c1), seen("comment_created", {}, c2)],
        state,
    )
    by_act = {e.observed.record.id: e.activity for e in out if e.observed}
    assert by_act[100] is not None and by_act[100].id == 3 and by_act[101] is None


def test_a_first_read_without_a_word_waits_for_the_edit_that_explains_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    try:
        url = f"{ROOT}/projects/5/documents/9.json"
        listed = parse_document(
            {"id": 9, "title": "Plan", "updated_at": "2024-01-01T10:00:00Z", "url": url}, url, 5
        )
        det = Detector(store, 1, api_root=ROOT)
        det.observe(listed)
        store.commit_cycle(det.to_write(), lambda e: [])
        # a re-list reads the text first, before the feed shows why it moved: nothing yet
        det = Detector(store, 1, api_root=ROOT)
        full = parse_document(
            {"id": 9, "title": "Plan", "content": "v2", "updated_at": "2024-01-01T10:05:00Z"},
            url,
            5,
        )
        det.observe(full)
        det.first_read(full)
        write = det.to_write()
        assert write.events == []
        store.commit_cycle(write, lambda e: [])
        # the next cycle's feed: "edited a document" from before that read explains it
        det = Detector(store, 1, api_root=ROOT)
        edit = parse_activity(
            {
                "id": 77,
                "created_at": "2024-01-01T10:05:00Z",
                "action": "edited a document<span>:</span>",
                "target": "Plan",
                "eventable": {"id": 9, "type": "Document", "url": url},
                "creator": {"id": 3, "name": "Ann"},
            },
            ROOT,
        )
        det.register([edit])
        events = det.to_write().events
        assert [(e["kind"], e["changes"], e["creator"]["id"]) for e in events] == [
            ("document_changed", {"content": [None, "v2"]}, 3)
        ]
    finally:
        store.close()
