"""`bcx-poller check` tells the truth: every error at once (naming the environment variable
an override came from), and warnings for what loads but will not work as meant."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import jsonl_handler, run
from tests.conftest import Harness


def check(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BCX_POLLER_")}
    return subprocess.run(
        [sys.executable, "-m", "poller", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
        check=False,
    )


BAD = """
[poller]
state_path = "{tmp}/state.db"
interval = -1
first_sync = "sometimes"

[[accounts]]
id = 1
user_agent = "no contact here"
username = "me@example.com"
password = "pw"

[[handlers]]
name = "hook"
type = "webhook"
url = "ftp://example.com/in"
timeout = -5

[[handlers]]
name = "bird"
type = "carrier-pigeon"
"""


def test_every_error_at_once_each_naming_its_field_and_its_variable(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(BAD.format(tmp=tmp_path))
    config.chmod(0o600)
    done = check(config, BCX_POLLER_POLLER__INTERVALL="10")
    assert done.returncode == 2
    errors = [
        line.removeprefix("bcx-poller: configuration error: ") for line in done.stderr.splitlines()
    ]
    fields = [e.split(":")[0] for e in errors]
    assert fields == [
        "poller.interval",
        "poller.first_sync",
        "poller.intervall",
        "accounts[0].user_agent",
        "handlers[0].url",
        "handlers[0].secrets",
        "handlers[0].timeout",
        "handlers[1].type",
    ], done.stderr
    assert "poller.intervall: unknown setting (from $BCX_POLLER_POLLER__INTERVALL)" in errors
    # a value the variable gave, wrongly, names it too
    wrong = check(config, BCX_POLLER_POLLER__JITTER="7")
    assert "poller.jitter: " in wrong.stderr and "(from $BCX_POLLER_POLLER__JITTER)" in wrong.stderr


def test_warnings_for_what_loads_but_will_not_work_as_meant(sim: Harness) -> None:
    sim.account.create_project("Ops")
    config = sim.write_config(jsonl_handler(sim.tmp / "events.jsonl"))
    assert run("once", "--config", str(config), "--deliver-timeout", "0").returncode == 0
    blocker = sim.tmp / "not-a-dir"
    blocker.write_text("")
    text = config.read_text().replace(str(sim.tmp / "state.db"), str(blocker / "state.db"))
    text += (
        '\n[[handlers]]\nname = "team"\ntype = "jsonl"\n'
        f'path = "{sim.tmp / "team.jsonl"}"\n'
        'kinds = ["todo_complete", "todo_*", "comment_created"]\n'
        "accounts = [424242]\n"
        "projects = [99999]\n"
    )
    config.write_text(text)
    config.chmod(0o644)  # and it holds accounts[0].password
    done = check(config)
    assert done.returncode == 0, done.stderr
    warnings = [x for x in done.stdout.splitlines() if x.startswith("warning: ")]
    text = "\n".join(warnings)
    assert (
        "readable by group or others (mode 0644) and holds secrets (accounts[0].password)" in text
    )
    assert f"poller.state_path: cannot be created: {blocker} is not a directory" in text
    assert "handlers[1].kinds: 'todo_complete' matches no kind" in text
    assert "'todo_*'" not in text and "'comment_created'" not in text
    assert "handlers[1].accounts: 424242 is not a configured account" in text
    assert "configuration OK: 1 account(s), 2 handler(s), 4 warning(s)" in done.stdout

    # projects: only once the state has seen projects (the real state path again)
    config.write_text(text_with_state(config.read_text(), blocker, sim.tmp))
    config.chmod(0o600)
    again = check(config)
    assert again.returncode == 0, again.stderr
    assert "handlers[1].projects: project 99999 has never been seen" in again.stdout
    assert "mode 0644" not in again.stdout and "state_path" not in again.stdout


def text_with_state(text: str, blocker: Path, tmp: Path) -> str:
    return text.replace(str(blocker / "state.db"), str(tmp / "state.db"))


def test_a_clean_config_has_no_warnings(sim: Harness) -> None:
    config = sim.write_config(jsonl_handler(sim.tmp / "events.jsonl"))
    config.chmod(0o600)
    done = check(config)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stdout
    assert done.stdout.strip() == "configuration OK: 1 account(s), 1 handler(s)"
