"""Promise 5, nobody let in: secrets never leave the process in output, files are private,
writable configs are flagged, webhooks are http(s) only, scripts never meet a shell."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from poller.config import parse_settings
from poller.dispatch import Dispatcher, build_targets
from poller.errors import ConfigError
from tests.reliability.conftest import (
    OUTPUTS,
    PASSWORD,
    SCRIPT_TOKEN,
    SMTP_PASSWORD,
    WEBHOOK_SECRET,
    Rel,
    assert_no_secret,
    read_jsonl,
    recorder,
    run_cli,
)


def secret_handlers(rel: Rel) -> list[dict[str, Any]]:
    return [
        {"name": "file", "type": "jsonl", "path": str(rel.tmp / "events.jsonl")},
        {
            "name": "hook",
            "type": "webhook",
            "url": "http://127.0.0.1:9/in",
            "secrets": [WEBHOOK_SECRET],
            "timeout": 0.3,
            "headers": {"X-Api-Key": SCRIPT_TOKEN[::-1] + "x"},
        },
        {
            "name": "run",
            "type": "script",
            "command": [sys.executable, "-I", "-S", str(recorder(rel.tmp)), str(rel.tmp / "s")],
            "env": {"API_TOKEN": SCRIPT_TOKEN},
        },
        {
            "name": "mail",
            "type": "email",
            "host": "127.0.0.1",
            "port": 9,
            "security": "none",
            "username": "bcx",
            "password": SMTP_PASSWORD,
            "from_addr": "bcx@example.com",
            "to": ["ops@example.com"],
            "timeout": 0.3,
        },
    ]


def test_secrets_never_appear_in_any_output(rel: Rel) -> None:
    rel.handlers = secret_handlers(rel)
    config = rel.write_config()
    p = rel.account.create_project("Sec")
    todo = rel.account.create_todo(rel.account.create_todolist(p, "L"), "T")
    assert run_cli("check", "--config", str(config)).returncode == 0
    assert run_cli("once", "--config", str(config), "--deliver-timeout", "0").returncode == 0
    rel.clock.advance(60)
    rel.account.complete_todo(todo)
    debug = ("--log-level", "debug")
    assert (
        run_cli("once", "--config", str(config), *debug, "--deliver-timeout", "1").returncode == 0
    )
    rel.app.faults.add(r"events", 401)  # an auth failure is reported without the password
    failed = run_cli("once", "--config", str(config), *debug, "--deliver-timeout", "0")
    assert failed.returncode == 1 and "AuthError" in failed.stderr
    rel.app.faults.clear()
    for args in (("status", "--json"), ("deliveries", "--json"), ("deliveries",)):
        result = run_cli(*args, "--config", str(config))
        assert result.returncode == 0, result.stderr
    run_cli("test-handler", "--config", str(config), "hook")
    run_cli("test-handler", "--config", str(config), "mail")
    status = json.loads(run_cli("status", "--json", "--config", str(config)).stdout)
    assert "AuthError" in status["accounts"][0]["last_error"]
    # the script got its secret through the environment, never in argv; nor the others
    runs = read_jsonl(rel.tmp / "s")[0]
    assert runs, "the script ran"
    for r in runs:
        assert_no_secret(json.dumps(r["argv"]), "script argv")
        assert "API_TOKEN" in r["env_keys"]
    # files holding events or credentials are private
    for path in (rel.state_path, rel.tmp / "events.jsonl"):
        assert oct(path.stat().st_mode & 0o777) == "0o600", path
    for extra in ("-wal", "-shm"):
        side = Path(str(rel.state_path) + extra)
        if side.exists():
            assert side.stat().st_mode & 0o077 == 0, side
    # every subprocess of this suite that ran so far (the crash runs too) is clean
    assert OUTPUTS
    for where, text in OUTPUTS:
        assert_no_secret(text, where)


async def test_exceptions_and_reprs_carry_no_secrets(rel: Rel) -> None:
    rel.handlers = secret_handlers(rel)
    settings = rel.settings()
    assert_no_secret(repr(settings) + str(settings), "Settings repr")
    rel.app.faults.add(r"events", 401)
    assert await rel.cycle() is None
    assert_no_secret(rel.last_runner.last_error or "", "cycle error")
    assert_no_secret(repr(rel.last_runner.client), "client repr")
    state = rel.store.account(rel.account.account_id)
    assert "AuthError" in (state.last_error or "")
    bad = dict(secret_handlers(rel)[1], secrets=["whsec_!!" + PASSWORD])
    with pytest.raises(ConfigError) as err:
        parse_settings({**rel.config(), "handlers": [bad]})
    assert_no_secret(str(err.value), "ConfigError")


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666])
def test_writable_config_with_secrets_gets_a_warning(rel: Rel, mode: int) -> None:
    config = rel.write_config()
    quiet = run_cli("check", "--config", str(config))
    assert quiet.returncode == 0 and "config_writable_by_others" not in quiet.stderr
    config.chmod(mode)
    loud = run_cli("check", "--config", str(config))
    assert loud.returncode == 0 and "config_writable_by_others" in loud.stderr


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/in",
        "gopher://example.com/",
        "javascript:alert(1)",
        "unix:///run/x.sock",
        "http:///no-host",
        "//example.com/in",
    ],
)
def test_webhook_refuses_non_http_urls(rel: Rel, url: str) -> None:
    hook = {"name": "h", "type": "webhook", "url": url, "secrets": [WEBHOOK_SECRET]}
    with pytest.raises(ConfigError) as err:
        parse_settings({**rel.config(), "handlers": [hook]})
    assert "url" in str(err.value)


def test_script_command_must_be_an_argv_list(rel: Rel) -> None:
    hook = {"name": "s", "type": "script", "command": "notify --all; rm -rf /"}
    with pytest.raises(ConfigError, match="no shell"):
        parse_settings({**rel.config(), "handlers": [hook]})


async def test_script_arguments_never_reach_a_shell(rel: Rel) -> None:
    canary = rel.tmp / "pwned"
    hostile = [f"$(touch {canary})", f"; touch {canary}", f"`touch {canary}`", "*", "$HOME"]
    out = rel.tmp / "argv.jsonl"
    rel.handlers = [
        {
            "name": "s",
            "type": "script",
            "command": [sys.executable, "-I", "-S", str(recorder(rel.tmp)), str(out), *hostile],
        }
    ]
    a = rel.account
    todo = a.create_todo(a.create_todolist(a.create_project("P"), "L"), "T")
    assert await rel.cycle() is not None
    a.complete_todo(todo)
    assert await rel.cycle() is not None
    dispatcher = Dispatcher(rel.store, build_targets(rel.settings().handlers, rel.tmp))
    try:
        assert await dispatcher.drain(within=2) == len(rel.events()) >= 1
    finally:
        await dispatcher.aclose()
    runs = read_jsonl(out)[0]
    assert runs
    for run in runs:
        assert run["argv"][1:] == hostile  # passed literally, no expansion
    assert not canary.exists()
