"""Each command imports what it uses (issue 12 item 5): `bcx-poller --help` and
`bcx-poller check` do not import the daemon, APScheduler, the simulator, the metrics
server or the handlers' HTTP and template libraries. A behaviour test, not a timing one:
the command runs in a fresh interpreter, which then reports what `sys.modules` holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Runs the real `main()` of `bcx-poller` in a fresh interpreter, then prints the names of
# the loaded modules on the last line of stderr (stdout belongs to the command).
PROBE = """
import json, sys
from poller.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # argparse's --help
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""

NEVER = (
    "poller.daemon",
    "poller.demo",
    "poller.simulator",
    "poller.accounts",
    "poller.poll",
    "poller.store",
    "poller.metrics",
    "apscheduler",
    "prometheus_client",
    "sqlite_utils",
    "httpx",
    "httpcore",
    "jinja2",
)


def loaded(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, set[str]]:
    """(exit code, stdout + stderr of the command, loaded module names)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )
    *said, last = done.stderr.strip().splitlines()
    report = json.loads(last)
    return int(report["code"] or 0), done.stdout + "\n".join(said), set(report["modules"])


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in NEVER))


def test_help_imports_no_daemon_scheduler_simulator_or_http() -> None:
    code, out, modules = loaded("--help")
    assert code == 0
    assert "run" in out and "demo" in out and "simulate" in out  # every command listed
    assert "poller.cli" in modules  # the probe saw the command's own imports
    assert heavy(modules) == []
    assert "pydantic" not in modules and "asyncio" not in modules


@pytest.mark.parametrize("command", ["run", "demo", "simulate"])
def test_a_heavy_commands_help_does_not_import_it(command: str) -> None:
    code, out, modules = loaded(command, "--help")
    assert code == 0 and f"bcx-poller {command}" in out
    assert heavy(modules) == []


def test_check_imports_no_daemon_scheduler_simulator_or_http(tmp_path: Path) -> None:
    """A configuration with a handler of each kind that talks HTTP or uses templates
    (webhook, Slack, e-mail): `check` validates their options without httpx or jinja2."""
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[poller]
state_path = "{tmp_path / "state.db"}"

[[accounts]]
id = 999999999
user_agent = "bcx-poller tests (tests@example.com)"
username = "bot@example.com"
password_env = "BCX_TEST_PASSWORD"

[[handlers]]
name = "hook"
type = "webhook"
url = "https://hooks.example.com/basecamp"
secrets = ["whsec_cmVwbGFjZS1tZS13aXRoLXlvdXItb3duLWtleQ=="]

[[handlers]]
name = "chat"
type = "slack"
webhook_url_env = "BCX_TEST_SLACK"

[[handlers]]
name = "mail"
type = "email"
host = "smtp.example.com"
from_addr = "bcx@example.com"
to = ["ops@example.com"]

[[handlers]]
name = "file"
type = "jsonl"
path = "{tmp_path / "events.jsonl"}"
"""
    )
    config.chmod(0o600)
    env = {
        "BCX_TEST_PASSWORD": "secret-password",
        "BCX_TEST_SLACK": "https://hooks.slack.example/services/T0/B0/x",
    }
    code, out, modules = loaded("check", "-c", str(config), env=env)
    assert code == 0, out
    assert "configuration OK: 1 account(s), 4 handler(s)" in out
    # the validation really ran: the configuration models and each handler's options
    assert {"poller.config", "pydantic", "handlers.webhook", "handlers.slack"} <= modules
    assert heavy(modules) == []


def test_check_still_compiles_a_configured_template(tmp_path: Path) -> None:
    """Lazy is not skipped: a Slack template in the configuration is still compiled (with
    jinja2, imported for it), and a broken one is still an error naming the field."""
    config = tmp_path / "config.toml"
    body = f"""
[poller]
state_path = "{tmp_path / "state.db"}"

[[accounts]]
id = 999999999
user_agent = "bcx-poller tests (tests@example.com)"
token = "secret-token"

[[handlers]]
name = "chat"
type = "slack"
webhook_url = "https://hooks.slack.example/services/T0/B0/x"
template = "{{{{ who }}}} {{{{ action "
"""
    config.write_text(body)
    config.chmod(0o600)
    code, out, modules = loaded("check", "-c", str(config))
    assert code == 2
    assert "handlers[0].template: template error" in out
    assert "jinja2" in modules
