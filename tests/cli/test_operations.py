"""Operating it from a shell: pipes, locks, secrets, honest output (real subprocesses)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import jsonl_handler, run
from tests.conftest import Harness
from tests.daemon._support import read_jsonl


def run_into_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `bcx-poller ARGS` with stdout a pipe nobody reads any more (`... | head -0`)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "poller", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)


@pytest.fixture
def polled(sim: Harness) -> Path:
    """A config whose state holds a baseline, a few events and a pending delivery."""
    a = sim.account
    todolist = a.create_todolist(a.create_project("Ops"), "List")
    for n in range(3):
        a.create_todo(todolist, f"Task {n}")
    config = sim.write_config(jsonl_handler(sim.tmp / "events.jsonl"), first_sync="emit")
    done = run("once", "--config", str(config), "--deliver-timeout", "5")
    assert done.returncode == 0, done.stderr
    return config


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("status", "--json"),
        ("events", "--json"),
        ("events",),
        ("deliveries", "--json"),
        ("deliveries",),
    ],
)
def test_printing_commands_exit_quietly_on_a_closed_pipe(polled: Path, args: tuple[str]) -> None:
    done = run_into_closed_pipe(*args, "--config", str(polled))
    assert done.stderr == ""  # no BrokenPipeError traceback, no "Exception ignored"
    assert done.returncode == 141  # like a Unix tool killed by SIGPIPE


# -- local commands need no secrets ------------------------------------------------------


def test_local_commands_work_without_the_secrets(sim: Harness) -> None:
    """status / events / deliveries / redeliver only touch the local state: the Basecamp
    password (password_env unset) and a handler's credential file (relative, no
    $CREDENTIALS_DIRECTORY) are not needed, so `systemd-run ... status` works."""
    a = sim.account
    a.create_todo(a.create_todolist(a.create_project("Ops"), "List"), "Task")
    creds = sim.tmp / "creds"
    creds.mkdir()
    (creds / "slack-url").write_text("http://127.0.0.1:9/hook\n")
    handlers = jsonl_handler(sim.tmp / "events.jsonl") + (
        '\n[[handlers]]\nname = "team"\ntype = "slack"\nwebhook_url_file = "slack-url"\n'
        'kinds = ["todo_completed"]\n'
    )
    config = sim.write_config(handlers, first_sync="emit")
    text = config.read_text().replace('password = "demo"', 'password_env = "BCX_TEST_PW"')
    config.write_text(text)
    secrets = {"BCX_TEST_PW": "demo", "CREDENTIALS_DIRECTORY": str(creds)}
    polled = run("once", "--config", str(config), "--deliver-timeout", "0", env=secrets)
    assert polled.returncode == 0, polled.stderr
    no_secrets = {"BCX_TEST_PW": "", "CREDENTIALS_DIRECTORY": ""}
    for args in (
        ("status",),
        ("status", "--json"),
        ("events", "--json"),
        ("deliveries",),
        ("deliveries", "--json"),
    ):
        done = run(*args, "--config", str(config), env=no_secrets)
        assert done.returncode == 0, (args, done.stderr)
        assert "BCX_TEST_PW" not in done.stderr
    requeue = run("redeliver", "--dead", "--config", str(config), env=no_secrets)
    assert requeue.returncode == 1 and "requeued 0" in requeue.stdout, requeue.stderr
    # what talks to Basecamp still needs them, and says which one is missing
    refused = run("once", "--config", str(config), env=no_secrets)
    assert refused.returncode == 2 and "BCX_TEST_PW" in refused.stderr


# -- backfill never re-sends ---------------------------------------------------------------


def test_backfill_never_resends_what_polling_queued_whatever_its_kind(sim: Harness) -> None:
    from datetime import timedelta

    a = sim.account
    todolist = a.create_todolist(a.create_project("Ops"), "List")
    first, second = a.create_todo(todolist, "First"), a.create_todo(todolist, "Second")
    start = a.ts(a.now() - timedelta(minutes=10))
    sim.clock.advance(60)
    out = sim.tmp / "events.jsonl"
    config = sim.write_config(jsonl_handler(out))
    assert run("once", "--config", str(config), "--deliver-timeout", "0").returncode == 0
    sim.clock.advance(60)
    a.complete_todo(first)
    polled = run("once", "--config", str(config), "--deliver-timeout", "5")
    assert polled.returncode == 0, polled.stderr
    assert [e["kind"] for e in read_jsonl(out)] == ["todo_completed"]  # delivered
    sim.clock.advance(60)
    a.complete_todo(second)  # not polled yet: newer than the cursor

    filled = run("backfill", "--since", start, "--config", str(config))
    assert filled.returncode == 0, filled.stderr
    assert "1 already in the outbox, 1 newer than the cursor left to polling" in filled.stdout
    queued = [e for e in sim.store.events() if e["source"] == "activity"]
    # the creations before the baseline were never sent: they are replayed...
    assert {e["kind"] for e in queued} == {"project_activity", "todolist_activity", "todo_activity"}
    # ...but neither completion is: one was delivered as todo_completed, one is polling's
    completions = [
        e for e in queued if e["recording"]["id"] in (first, second) and "complet" in e["summary"]
    ]
    assert completions == []
    delivered = run("once", "--config", str(config), "--deliver-timeout", "5")
    assert delivered.returncode == 0, delivered.stderr
    completed = [e["recording"]["id"] for e in read_jsonl(out) if e["kind"] == "todo_completed"]
    assert sorted(completed) == sorted([first, second])  # each change once
    assert len([e for e in read_jsonl(out) if "complet" in e["summary"]]) == 2


# -- honest counts and messages ----------------------------------------------------------

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def test_once_counts_events_and_deliveries_apart_and_names_dead_letters(sim: Harness) -> None:
    from tests.delivery._support import handlers_toml, write_script

    a = sim.account
    todolist = a.create_todolist(a.create_project("Ops"), "List")
    for n in range(2):
        a.create_todo(todolist, f"Task {n}")
    good = write_script(sim.tmp / "good.sh", "cat >/dev/null\n")
    bad = write_script(sim.tmp / "bad.sh", "cat >/dev/null\necho refused >&2\nexit 1\n")
    only = {"kinds": ["todo_created"], "max_attempts": 1}
    handlers = [
        {"name": "good", "type": "script", "command": [str(good)], **only},
        {"name": "bad", "type": "script", "command": [str(bad)], **only},
    ]
    config = sim.write_config(handlers_toml(handlers), first_sync="emit")
    done = run("once", "--config", str(config), "--deliver-timeout", "5")
    assert done.returncode == 0, done.stderr
    assert (
        "deliveries: 2 delivered, 2 dead letter(s), 0 still pending"
        " (2 event(s) to 2 handler(s))" in done.stderr
    ), done.stderr
    todos = [e["id"] for e in sim.events() if e["kind"] == "todo_created"]
    for event_id in todos:
        assert f"dead letter: handler bad, event {event_id} (todo_created)" in done.stderr
    assert "deliveries --dead" in done.stderr


def test_redeliver_says_what_it_did_not_find(polled: Path) -> None:
    bogus = run("redeliver", "--event", "bcx_bogus", "--config", str(polled))
    assert bogus.returncode == 1
    assert "no event bcx_bogus in the outbox" in bogus.stderr
    dead = run("redeliver", "--dead", "--config", str(polled))
    assert dead.returncode == 1 and "no dead letter to requeue" in dead.stderr


def test_every_json_output_gives_iso_8601_times(polled: Path) -> None:
    import json

    status = json.loads(run("status", "--json", "--config", str(polled)).stdout)
    [account] = status["accounts"]
    for key in ("last_success_at", "last_attempt_at", "last_reconcile_at"):
        assert isinstance(account[key], str) and ISO.match(account[key]), (key, account[key])
    events = json.loads(run("events", "--json", "--config", str(polled)).stdout)
    assert events and all(ISO.match(e["detected_at"]) for e in events)
    table = run("status", "--config", str(polled)).stdout
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", table)
