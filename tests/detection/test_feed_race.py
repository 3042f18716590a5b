"""Changes made while a cycle fetches: after its feed read, before the GET that sees them.

On a busy account a poll takes a moment, and people keep working meanwhile. A change
made between the cycle's feed read and the listing or GET that sees it used to become a
diff-only event (no author, "Someone ..."), and its activity, read the next cycle, was
dropped as already reflected. The cycle now reads the feed once more when its fetches
saw such a change (`poll._late`), so the change carries its activity; each change still
gives exactly one event.

The simulator makes the change from inside the request that follows the feed read (a
fault matcher that never faults), so the race is certain, not timing-dependent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from poller.simulator.faults import SimRequest
from tests.conftest import Harness
from tests.detection.test_e2e import baseline


def after_feed_read(sim: Harness, change: Callable[[], object]) -> list[str]:
    """Run `change` once, at the first request that follows a `since` feed read (while
    the simulator answers that request: before it reads any state). Returns the request
    log of the cycle, as paths."""
    paths: list[str] = []
    state = {"fed": False, "done": False}

    def hook(req: SimRequest) -> bool:
        paths.append(req.path)
        if req.path.endswith("/events.json"):
            state["fed"] = state["fed"] or "since" in req.query
        elif state["fed"] and not state["done"]:
            state["done"] = True
            sim.clock.advance(1)
            change()
        return False  # never a fault

    sim.app.faults.add(hook, None, delay=1e-6, times=None)  # a hook, not a fault
    return paths


def brief(events: list[dict[str, Any]]) -> list[tuple[str, str, int | None]]:
    return [(e["kind"], e["source"], (e["creator"] or {}).get("id")) for e in events]


async def test_a_todo_edited_while_the_relist_runs_carries_its_editor(sim: Harness) -> None:
    ids = await baseline(sim)
    a = sim.account
    sim.clock.advance(60)
    paths = after_feed_read(
        sim, lambda: a.update_todo(ids["todo"], content="Design it twice", by=ids["bob"])
    )
    await sim.cycle()
    events = sim.new_events()
    assert brief(events) == [("todo_content_changed", "activity+diff", ids["bob"])], brief(events)
    assert events[0]["changes"]["content"] == ["Design it", "Design it twice"]
    assert "Bob Baker" in events[0]["summary"]
    assert sum(p.endswith("/events.json") for p in paths) == 2  # the second read
    # the activity comes back in the next feed read: seen, nothing more
    await sim.cycle(advance=30)
    await sim.cycle(advance=4000)
    assert sim.new_events() == []


async def test_a_comment_and_a_new_todo_while_the_cycle_fetches_keep_their_authors(
    sim: Harness,
) -> None:
    ids = await baseline(sim)
    a = sim.account
    sim.clock.advance(60)
    made: dict[str, int] = {}

    def change() -> None:
        made["comment"] = a.add_comment("todo", ids["todo"], "Mind the gap", by=ids["ann"])
        made["todo"] = a.create_todo(ids["list"], "Follow up", by=ids["bob"])

    after_feed_read(sim, change)
    await sim.cycle()
    events = sim.new_events()
    assert sorted(brief(events)) == sorted(
        [
            ("comment_created", "activity+diff", ids["ann"]),
            ("todo_created", "activity+diff", ids["bob"]),
        ]
    ), brief(events)
    comment = next(e for e in events if e["kind"] == "comment_created")
    assert comment["details"]["comment"]["id"] == made["comment"]
    await sim.cycle(advance=30)
    await sim.cycle(advance=4000)
    assert sim.new_events() == []


async def test_an_edit_after_the_feed_read_of_an_item_the_feed_named(sim: Harness) -> None:
    """Completed by Ann (in the feed), then edited by Bob before the cycle's GET of it:
    two events, each with its own author."""
    ids = await baseline(sim)
    a = sim.account
    sim.clock.advance(60)
    a.complete_todo(ids["todo"], by=ids["ann"])
    after_feed_read(sim, lambda: a.update_todo(ids["todo"], content="Designed", by=ids["bob"]))
    await sim.cycle()
    events = sim.new_events()
    assert brief(events) == [
        ("todo_completed", "activity+diff", ids["ann"]),
        ("todo_content_changed", "activity+diff", ids["bob"]),
    ], brief(events)
    await sim.cycle(advance=30)
    await sim.cycle(advance=4000)
    assert sim.new_events() == []


async def test_a_later_change_the_fetches_did_not_see_waits_for_the_next_cycle(
    sim: Harness,
) -> None:
    """Edited while the cycle fetches (seen), then completed after the GET (not seen):
    the second read takes the edit's activity only; the completion is the next cycle's,
    with its diff, once."""
    ids = await baseline(sim)
    a = sim.account
    sim.clock.advance(60)
    state = {"step": 0}

    def hook(req: SimRequest) -> bool:
        if req.path.endswith("/events.json") and "since" in req.query and state["step"] == 0:
            state["step"] = 1
        elif state["step"] == 1 and not req.path.endswith("/events.json"):
            state["step"] = 2
            sim.clock.advance(1)
            a.update_todo(ids["todo"], content="Edited first", by=ids["bob"])
        elif state["step"] == 2 and req.path.endswith("/events.json"):
            state["step"] = 3  # the second read: complete it just before it is answered
            sim.clock.advance(1)
            a.complete_todo(ids["todo"], by=ids["ann"])
        return False

    sim.app.faults.add(hook, None, delay=1e-6, times=None)  # a hook, not a fault
    await sim.cycle()
    first = sim.new_events()
    assert state["step"] == 3, "the cycle never read the feed a second time"
    assert brief(first) == [("todo_content_changed", "activity+diff", ids["bob"])], brief(first)
    await sim.cycle(advance=30)
    second = sim.new_events()
    assert brief(second) == [("todo_completed", "activity+diff", ids["ann"])], brief(second)
    await sim.cycle(advance=4000)
    assert sim.new_events() == []


async def test_an_idle_cycle_and_a_cycle_explained_by_its_feed_read_the_feed_once(
    sim: Harness,
) -> None:
    ids = await baseline(sim)
    a = sim.account
    sim.clock.advance(60)
    a.update_todo(ids["todo"], content="Said in the feed", by=ids["bob"])
    paths: list[str] = []

    def log(req: SimRequest) -> bool:
        paths.append(req.path)
        return False

    sim.app.faults.add(log, None, delay=1e-6, times=None)
    await sim.cycle()
    assert brief(sim.new_events()) == [("todo_content_changed", "activity+diff", ids["bob"])]
    assert sum(p.endswith("/events.json") for p in paths) == 1
    paths.clear()
    await sim.cycle(advance=30)
    assert sum(p.endswith("/events.json") for p in paths) == 1
