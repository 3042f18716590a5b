"""Operating it from a shell: pipes, locks, secrets, honest output (real subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import jsonl_handler, run
from tests.conftest import Harness


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
