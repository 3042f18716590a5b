"""Big cycles commit project by project (issue 12, item 1): an interrupted first sync or
re-list resumes with the projects not done and re-emits nothing."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import pytest

from tests.conftest import Harness

PROJECTS = 6


def build(sim: Harness) -> list[int]:
    a = sim.account
    projects = []
    for n in range(PROJECTS):
        p = a.create_project(f"Project {n}")
        tl = a.create_todolist(p, f"List {n}")
        for m in range(3):
            a.create_todo(tl, f"Todo {n}.{m}")
        a.create_document(p, f"Doc {n}", "text")
        projects.append(p)
    return sorted(projects)


def project_gets(sim: Harness) -> set[int]:
    """Projects whose own document was read since the log was cleared."""
    out = set()
    for entry in sim.app.log.matching(r"/projects/\d+\.json$"):
        out.add(int(entry.path.rsplit("/", 1)[1].split(".")[0]))
    return out


def pending(sim: Harness) -> list[int]:
    relist = sim.store.account(sim.account.account_id).relist()
    return relist.projects if relist is not None else []


def records(sim: Harness) -> set[tuple[str, int]]:
    out = set()
    for rtype in ("Project", "Todolist", "Todo", "Document"):
        out |= {(rtype, rid) for rid in sim.store.records(sim.account.account_id, rtype)}
    return out


@pytest.mark.parametrize("mode", ["baseline", "emit"])
async def test_an_interrupted_first_sync_resumes_with_the_projects_not_done(
    sim: Harness, mode: str
) -> None:
    sim.overrides["first_sync"] = mode
    projects = build(sim)
    cut = projects[3]
    sim.app.faults.add(rf"/projects/{cut}/todolists\.json", "truncated")  # not retried
    assert await sim.cycle() is None  # fails at the fourth project
    state = sim.store.account(sim.account.account_id)
    assert not state.baseline_done and state.cursor is not None
    assert pending(sim) == projects[3:]
    first_half = records(sim)
    assert ("Project", projects[2]) in first_half and ("Todo", 0) not in first_half
    events_then = sim.store.events(limit=10_000)

    sim.app.faults.clear()
    sim.app.log.clear()
    report = await sim.cycle()
    assert report is not None and report.baseline
    # only the projects not done were read again; the feed was not (its cursor stays
    # the one taken before the sync began)
    assert project_gets(sim) == set(projects[3:])
    assert not sim.app.log.matching(r"/events\.json")
    state = sim.store.account(sim.account.account_id)
    assert state.baseline_done and state.relist() is None
    assert state.cursor is not None
    events = sim.store.events(limit=10_000)
    if mode == "baseline":
        assert events == [] and events_then == []
    else:
        created = Counter((e["kind"], e["recording"]["id"]) for e in events)
        assert all(n == 1 for n in created.values()), created
        stored = {rid for (rtype, rid) in records(sim) if rtype == "Todo"}
        assert {rid for (kind, rid) in created if kind == "todo_created"} == stored
        assert len(stored) == 3 * PROJECTS
    # and nothing more afterwards
    await sim.cycle(advance=4000)
    assert sim.store.events(limit=10_000) == events


async def test_an_interrupted_relist_gives_every_change_once(sim: Harness) -> None:
    """Silent changes on both sides of the cut: the re-list is the only one that sees them."""
    sim.overrides["reconcile_interval"] = 0  # every cycle re-lists
    projects = build(sim)
    await sim.cycle()
    a = sim.account
    before = next(t for t in a.todos.values() if t.project_id == projects[1]).id
    after = next(t for t in a.todos.values() if t.project_id == projects[4]).id
    a.complete_todo(before, silent=True)
    a.complete_todo(after, silent=True)
    sim.app.faults.add(rf"/projects/{projects[3]}\.json$", 400)  # not retried
    assert await sim.cycle() is None
    first = [(e["kind"], e["recording"]["id"]) for e in sim.new_events()]
    assert first == [("todo_completed", before)]
    assert pending(sim) == projects[3:]
    sim.app.faults.clear()
    sim.app.log.clear()
    assert await sim.cycle() is not None
    assert set(projects[:3]).isdisjoint(project_gets(sim))
    second = [(e["kind"], e["recording"]["id"]) for e in sim.new_events()]
    assert second == [("todo_completed", after)]
    assert pending(sim) == []
    await sim.cycle()
    await sim.cycle(advance=4000)
    assert sim.new_events() == []


def _wait_for(check: Any, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.mark.parametrize("mode", ["emit", "baseline"])
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_first_sync_killed_half_way_resumes_and_emits_each_record_once(
    sim: Harness, how: str, mode: str
) -> None:
    """The real CLI: killed while the fourth project's answer hangs, then run again. In
    emit mode every record gets one `*_created` across the two runs; a baseline emits
    nothing in either."""
    projects = build(sim)
    config = sim.write_config(first_sync=mode)
    sim.app.faults.add(rf"/projects/{projects[3]}/todolists\.json", None, hang=True)
    command = (
        ["run", "--shutdown-timeout", "2"]
        if how == "SIGTERM"
        else ["once", "--deliver-timeout", "0"]
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "poller", *command, "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(lambda: pending(sim) == projects[3:])
    finally:
        proc.send_signal(signal.SIGKILL if how == "SIGKILL" else signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    # SIGKILL: no word; SIGTERM: a graceful stop that abandons the hanging request
    assert proc.returncode == (-9 if how == "SIGKILL" else 0), err.decode(errors="replace")
    assert pending(sim) == projects[3:], err.decode(errors="replace")[-2000:]
    sim.app.faults.clear()
    sim.app.log.clear()
    again = subprocess.run(
        [sys.executable, "-m", "poller", "once", "--deliver-timeout", "0", "--config", str(config)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0, again.stderr.decode(errors="replace")[-2000:]
    assert project_gets(sim) == set(projects[3:])
    state = sim.store.account(sim.account.account_id)
    assert state.baseline_done and state.relist() is None
    events = sim.store.events(limit=10_000)
    todos = {rid for (rtype, rid) in records(sim) if rtype == "Todo"}
    assert len(todos) == 3 * PROJECTS
    if mode == "baseline":
        assert events == []
        return
    created = Counter((e["kind"], e["recording"]["id"]) for e in events)
    assert all(n == 1 for n in created.values()), created
    assert {rid for (kind, rid) in created if kind == "todo_created"} == todos


def test_first_sync_progress_is_a_log_line_per_project_or_one_line_on_a_terminal(
    sim: Harness,
) -> None:
    projects = build(sim)
    config = sim.write_config()
    plain = subprocess.run(
        [sys.executable, "-m", "poller", "once", "--deliver-timeout", "0", "--config", str(config)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert plain.returncode == 0, plain.stderr
    lines = [
        json.loads(line) for line in plain.stderr.decode().splitlines() if line.startswith("{")
    ]
    progress = [line for line in lines if line.get("event") == "first_sync_progress"]
    assert [p["projects_done"] for p in progress] == list(range(1, len(projects) + 1))
    assert all(p["projects"] == len(projects) for p in progress)
    assert all({"requests", "elapsed", "rate_limit_waits"} <= set(p) for p in progress)

    # a terminal: one line rewritten in place, no log line per project
    (sim.tmp / "state.db").unlink()
    for leftover in sim.tmp.glob("state.db-*"):
        leftover.unlink()
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "poller",
                "once",
                *("--deliver-timeout", "0"),
                "--config",
                str(config),
            ],
            stdout=subprocess.DEVNULL,
            stderr=secondary,
        )
        os.close(secondary)
        out = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(primary)
    text = out.decode(errors="replace")
    total = len(projects)
    assert f"\rfirst sync of account {sim.account.account_id}: {total}/{total} projects" in text
    assert "first_sync_progress" not in text
