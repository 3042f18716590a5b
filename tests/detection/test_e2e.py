"""Change detection end to end: the poller talks HTTP over loopback to the simulator."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Harness


def seed(sim: Harness) -> dict[str, int]:
    a = sim.account
    ann = a.add_person("Ann Able", "ann@example.com")
    bob = a.add_person("Bob Baker", "bob@example.com")
    p = a.create_project("Launch", "The launch")
    tl = a.create_todolist(p, "Launch list")
    todo = a.create_todo(tl, "Design it", assignee=ann, due_on="2024-02-01")
    other = a.create_todo(tl, "Test it")
    doc = a.create_document(p, "Manifesto", "Do this")
    msg = a.create_message(p, "Welcome", "Hello")
    return {
        "ann": ann,
        "bob": bob,
        "project": p,
        "list": tl,
        "todo": todo,
        "other": other,
        "doc": doc,
        "msg": msg,
    }


async def baseline(sim: Harness) -> dict[str, int]:
    ids = seed(sim)
    report = await sim.cycle()
    assert report is not None and report.baseline
    assert sim.new_events() == []
    return ids


def only(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(events) == 1, [(e["kind"], e["changes"]) for e in events]
    return events[0]


async def test_baseline_first_sync_emits_nothing_but_records_everything(sim: Harness) -> None:
    await baseline(sim)
    assert sim.store.count_records(sim.account.account_id) >= 6
    assert sim.store.account(sim.account.account_id).cursor is not None


async def test_first_sync_emit_gives_created_events(sim: Harness) -> None:
    sim.overrides["first_sync"] = "emit"
    seed(sim)
    await sim.cycle()
    kinds = {e["kind"] for e in sim.new_events()}
    assert {"project_created", "todo_created", "document_created", "message_created"} <= kinds


async def test_idle_cycle_emits_nothing_and_is_conditional(sim: Harness) -> None:
    await baseline(sim)
    sim.app.log.clear()
    report = await sim.cycle()
    assert report is not None and report.added == 0
    assert sim.new_events() == []
    entries = sim.app.log.entries
    assert [e.status for e in entries if e.status != 304] == [200]  # only the feed answers 200
    conditional = [e for e in entries if "events.json" not in e.path]
    assert conditional and all(e.if_none_match or e.if_modified_since for e in conditional)


async def test_idle_cycle_between_reconciles_costs_one_request(sim: Harness) -> None:
    sim.overrides["reconcile_interval"] = 3600
    await baseline(sim)
    sim.app.log.clear()
    report = await sim.cycle()
    assert report is not None and report.requests == 1
    assert [e.path.rsplit("/", 1)[-1] for e in sim.app.log.entries] == ["events.json"]


@pytest.mark.parametrize(
    ("change", "kind", "changes"),
    [
        ("complete", "todo_completed", {"completed": [False, True]}),
        ("reassign", "todo_assignment_changed", None),
        ("redate", "todo_due_date_changed", {"due_on": ["2024-02-01", "2024-03-01"]}),
        ("edit", "todo_content_changed", {"content": ["Design it", "Design it well"]}),
    ],
)
async def test_todo_changes_give_one_event_each(
    sim: Harness, change: str, kind: str, changes: dict[str, Any] | None
) -> None:
    ids = await baseline(sim)
    a = sim.account
    if change == "complete":
        a.complete_todo(ids["todo"], by=ids["bob"])
    elif change == "reassign":
        a.update_todo(ids["todo"], assignee=ids["bob"], by=ids["bob"])
    elif change == "redate":
        a.update_todo(ids["todo"], due_on="2024-03-01", by=ids["bob"])
    else:
        a.update_todo(ids["todo"], content="Design it well", by=ids["bob"])
    await sim.cycle()
    event = only(sim.new_events())
    assert event["kind"] == kind
    if changes is not None:
        assert event["changes"] == changes
    else:
        old, new = event["changes"]["assignee"]
        assert old["id"] == ids["ann"] and new["id"] == ids["bob"]
    assert event["creator"]["id"] == ids["bob"]
    assert event["recording"]["id"] == ids["todo"]
    assert event["project"] == {"id": ids["project"], "name": "Launch"}
    assert event["source"] == "activity+diff"
    # nothing more on the next cycles (overlap window re-reads the same activity)
    await sim.cycle()
    await sim.cycle(advance=1000)
    assert sim.new_events() == []


async def test_reopen_gives_uncompleted(sim: Harness) -> None:
    ids = await baseline(sim)
    sim.account.complete_todo(ids["todo"])
    await sim.cycle()
    assert only(sim.new_events())["kind"] == "todo_completed"
    sim.account.uncomplete_todo(ids["todo"], by=ids["ann"])
    await sim.cycle()
    event = only(sim.new_events())
    assert event["kind"] == "todo_uncompleted"
    assert event["changes"] == {"completed": [True, False]}
    assert event["creator"]["id"] == ids["ann"]


async def test_comment_gives_comment_created_on_the_commented_item(sim: Harness) -> None:
    ids = await baseline(sim)
    cid = sim.account.add_comment(
        "todo", ids["todo"], "Looks <b>good</b> &amp; ready", by=ids["ann"]
    )
    await sim.cycle()
    event = only(sim.new_events())
    assert event["kind"] == "comment_created"
    assert event["recording"]["id"] == ids["todo"] and event["recording"]["type"] == "Todo"
    assert event["details"]["comment"]["id"] == cid
    assert event["creator"]["id"] == ids["ann"]
    assert "<b>" not in event["summary"]


async def test_new_items_give_created_events(sim: Harness) -> None:
    ids = await baseline(sim)
    a = sim.account
    a.create_message(ids["project"], "Kickoff", "Let's go")
    a.create_document(ids["project"], "Plan", "Step 1")
    a.create_upload(ids["project"], "The logo", "logo.png")
    a.create_calendar_event(ids["project"], "Launch party", "2024-02-10")
    await sim.cycle()
    kinds = sorted(e["kind"] for e in sim.new_events())
    assert kinds == [
        "calendar_event_created",
        "document_created",
        "message_created",
        "upload_created",
    ]


async def test_silently_trashed_document_gives_document_trashed(sim: Harness) -> None:
    ids = await baseline(sim)
    sim.account.trash_document(ids["doc"], silent=True)
    await sim.cycle()
    event = only(sim.new_events())
    assert event["kind"] == "document_trashed"
    assert event["recording"]["id"] == ids["doc"]
    assert event["source"] == "diff"


async def test_75_new_todos_between_cycles_give_75_events(sim: Harness) -> None:
    ids = await baseline(sim)
    created = {sim.account.create_todo(ids["list"], f"Task {n}") for n in range(75)}
    await sim.cycle()
    events = sim.new_events()
    assert len(events) == 75
    assert {e["recording"]["id"] for e in events} == created
    assert {e["kind"] for e in events} == {"todo_created"}


async def test_75_silent_new_todos_are_found_by_the_relist(sim: Harness) -> None:
    ids = await baseline(sim)
    for n in range(75):
        sim.account.create_todo(ids["list"], f"Quiet {n}", silent=True)
    await sim.cycle()
    assert len([e for e in sim.new_events() if e["kind"] == "todo_created"]) == 75


async def test_500_on_page_2_invents_no_trash_then_or_after_recovery(sim: Harness) -> None:
    ids = await baseline(sim)
    for n in range(60):
        sim.account.create_todo(ids["list"], f"Bulk {n}", silent=True)
    await sim.cycle()
    assert len(sim.new_events()) == 60
    state_before = sim.store.account(sim.account.account_id)
    sim.app.faults.add(lambda r: r.path.endswith("/todos.json") and r.query.get("page") == "2", 500)
    sim.account.update_todo(ids["todo"], content="Changed while broken", silent=True)
    assert await sim.cycle() is None
    assert sim.new_events() == []
    assert sim.store.account(sim.account.account_id).cursor == state_before.cursor
    sim.app.faults.clear()
    await sim.cycle()
    events = sim.new_events()
    assert not any(e["kind"].endswith("_trashed") for e in events)
    assert [e["kind"] for e in events] == ["todo_content_changed"]


async def test_malformed_feed_page_advances_nothing_and_the_change_arrives_once(
    sim: Harness,
) -> None:
    ids = await baseline(sim)
    cursor = sim.store.account(sim.account.account_id).cursor
    sim.account.complete_todo(ids["todo"])
    for kind in ("truncated", "html", "object", "wrong_types"):
        sim.app.faults.add(r"/events\.json$", kind, times=1)
        assert await sim.cycle() is None, kind
        assert sim.store.account(sim.account.account_id).cursor == cursor
        assert sim.new_events() == []
    await sim.cycle()
    assert only(sim.new_events())["kind"] == "todo_completed"
    await sim.cycle()
    assert sim.new_events() == []


async def test_event_ids_are_stable_across_sources(sim: Harness) -> None:
    """The same change seen by the re-list alone (silent) and by the feed gives one id."""
    ids = await baseline(sim)
    sim.account.complete_todo(ids["todo"], silent=True)
    await sim.cycle()
    first = only(sim.new_events())
    assert first["kind"] == "todo_completed" and first["source"] == "diff"
    await sim.cycle()
    assert sim.new_events() == []


async def test_a_burst_in_one_list_costs_one_list_request_and_gives_every_event(
    sim: Harness,
) -> None:
    ids = await baseline(sim)
    a = sim.account
    todos = [a.create_todo(ids["list"], f"Burst {n}", silent=True) for n in range(12)]
    await sim.cycle()
    assert len(sim.new_events()) == 12
    a.complete_todo(todos[0], by=ids["bob"])
    await sim.cycle()
    sim.new_events()
    sim.app.log.clear()
    for t in todos[1:6]:
        a.complete_todo(t, by=ids["ann"])
    for t in todos[6:10]:
        a.update_todo(t, content="Renamed", by=ids["bob"])
    a.uncomplete_todo(todos[0], by=ids["bob"])
    a.trash_todo(todos[10], by=ids["bob"])
    await sim.cycle()
    events = sim.new_events()
    kinds = sorted((e["recording"]["id"], e["kind"]) for e in events)
    expected = sorted(
        [(t, "todo_completed") for t in todos[1:6]]
        + [(t, "todo_content_changed") for t in todos[6:10]]
        + [(todos[0], "todo_uncompleted"), (todos[10], "todo_trashed")]
    )
    assert kinds == expected
    single_todo_gets = sim.app.log.matching(r"/todos/\d+\.json$")
    list_gets = sim.app.log.matching(rf"/todolists/{ids['list']}\.json$")
    assert single_todo_gets == [] and len(list_gets) == 1
    assert {e["creator"]["id"] for e in events if e["kind"] == "todo_completed"} == {ids["ann"]}


async def test_a_feed_backlog_is_worked_through_in_committed_slices(sim: Harness) -> None:
    """After a long outage, each cycle processes at most `max_activities`, oldest first,
    and commits; nothing is lost or doubled and the re-list waits until caught up."""
    sim.overrides.update(max_activities=10, reconcile_interval=3600)
    ids = await baseline(sim)
    created = []
    for n in range(25):
        sim.clock.advance(1)
        created.append(sim.account.create_todo(ids["list"], f"Backlog {n}", by=ids["ann"]))
    seen: list[int] = []
    for expected in (10, 20, 25, 25):
        report = await sim.cycle(advance=1)
        assert report is not None and not report.reconciled
        seen += [e["recording"]["id"] for e in sim.new_events()]
        assert len(seen) == expected
    assert seen == created  # oldest first, each exactly once


async def test_project_activity_gives_one_event_each_and_hides_no_silent_change(
    sim: Harness,
) -> None:
    """Activity on a project itself is diffed like any item (one event, with its
    creator), and reading the project's fresh summaries never hides a silent change."""
    sim.overrides["reconcile_interval"] = 3600  # only the feed drives these cycles
    ids = await baseline(sim)
    a = sim.account
    new = a.create_project("Second", by=ids["ann"])
    await sim.cycle()
    assert [(e["kind"], e["creator"]["id"]) for e in sim.new_events()] == [
        ("project_created", ids["ann"])
    ]
    a.update_project(ids["project"], name="Launch 2", by=ids["bob"])
    a.trash_document(ids["doc"], silent=True)  # same project, no feed entry
    await sim.cycle()
    got = sorted((e["kind"], e["source"]) for e in sim.new_events())
    assert got == [("document_trashed", "diff"), ("project_changed", "activity+diff")]
    a.archive_project(new, by=ids["ann"])
    await sim.cycle()
    assert [e["kind"] for e in sim.new_events()] == ["project_archived"]
    await sim.cycle(advance=4000)  # a full re-list later: nothing more
    assert sim.new_events() == []


async def test_a_trash_with_a_feed_entry_carries_who_did_it(sim: Harness) -> None:
    """The item answers 404, this cycle's re-list confirms it is gone, and the event
    carries the activity (who trashed it) instead of coming out anonymous."""
    sim.overrides["reconcile_interval"] = 3600  # the 404 alone forces the re-list
    ids = await baseline(sim)
    sim.account.trash_document(ids["doc"], by=ids["bob"])
    await sim.cycle()
    event = only(sim.new_events())
    assert event["kind"] == "document_trashed"
    assert event["source"] == "activity+diff"
    assert event["creator"]["id"] == ids["bob"]


async def test_a_list_moved_to_another_project_is_one_change_with_the_move(
    sim: Harness,
) -> None:
    ids = await baseline(sim)
    other = sim.account.create_project("Elsewhere", silent=True)
    await sim.cycle()
    assert [e["kind"] for e in sim.new_events()] == ["project_created"]
    sim.account.move_todolist(ids["list"], other, by=ids["bob"])
    await sim.cycle()
    events = sim.new_events()
    moved = [e for e in events if e["recording"]["id"] == ids["list"]]
    assert [(e["kind"], e["changes"]) for e in moved] == [
        ("todolist_changed", {"project_id": [ids["project"], other]})
    ]
    assert moved[0]["creator"]["id"] == ids["bob"]
    assert moved[0]["project"]["id"] == other
    assert not any(e["kind"].endswith("_trashed") for e in events)
