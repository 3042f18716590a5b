"""Shared pieces of the reliability suite: a simulator that only accepts a secret password,
config files with secrets in them, and subprocess runs whose output is kept for scanning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from poller.accounts import open_account, run_cycle
from poller.config import Settings, parse_settings
from poller.poll import CycleReport
from poller.routing import router
from poller.simulator import Account, ManualClock, SimulatorApp, account_base_url, serve
from poller.store import Store

USER_AGENT = "bcx-poller reliability (ops@example.com)"
USERNAME = "robot@example.com"
# Test secrets: distinctive strings that must never show up in any output.
PASSWORD = "Pw-7f3kQ9zR2mXv8LbT"
WEBHOOK_SECRET = "whsec_" + "c2VjcmV0LXdlYmhvb2sta2V5LTAxMjM0NTY3ODk="
SCRIPT_TOKEN = "tok-Z9y8X7w6V5u4T3s2"
SMTP_PASSWORD = "smtp-Qq1Ww2Ee3Rr4Tt5"
SECRETS = (PASSWORD, WEBHOOK_SECRET, SCRIPT_TOKEN, SMTP_PASSWORD)

# every byte any subprocess of this suite wrote, for the secret scan in test_security
OUTPUTS: list[tuple[str, str]] = []

RECORDER = textwrap.dedent(
    """\
    import json, os, sys
    data = sys.stdin.buffer.read()
    event = json.loads(data)  # a half-written stdin (poller killed) fails: exit 1
    line = json.dumps({"event": event, "argv": sys.argv[1:],
                       "env_keys": sorted(os.environ)}) + "\\n"
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, line.encode())
    os.close(fd)
    """
)


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a test secret leaked into {where}"


def keep_output(where: str, text: str) -> None:
    OUTPUTS.append((where, text))
    assert_no_secret(text, where)


def run_cli(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> Any:
    """`python -m poller ARGS` to completion; its output is scanned for secrets."""
    result = subprocess.run(
        [sys.executable, "-m", "poller", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    keep_output(f"bcx-poller {' '.join(args)}", result.stdout + result.stderr)
    return result


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """(complete JSON lines, number of broken lines): a kill can cut the last line."""
    if not path.exists():
        return [], 0
    good, bad = [], 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            good.append(json.loads(line))
        except json.JSONDecodeError:
            bad += 1
    return good, bad


@dataclass
class Rel:
    """The simulator (secret password only) and config/cycle helpers around it."""

    account: Account
    clock: ManualClock
    app: SimulatorApp
    base_url: str
    tmp: Path
    handlers: list[dict[str, Any]] = field(default_factory=list)
    _store: Store | None = None

    @property
    def state_path(self) -> Path:
        return self.tmp / "state.db"

    def config(self, **poller: Any) -> dict[str, Any]:
        return {
            "poller": {
                "state_path": str(self.state_path),
                "reconcile_interval": 0,
                **poller,
            },
            "accounts": [
                {
                    "id": self.account.account_id,
                    "base_url": account_base_url(self.base_url, self.account.account_id),
                    "user_agent": USER_AGENT,
                    "username": USERNAME,
                    "password": PASSWORD,
                }
            ],
            "handlers": self.handlers,
        }

    def settings(self, **poller: Any) -> Settings:
        return parse_settings(self.config(**poller))

    def write_config(self, **poller: Any) -> Path:
        path = self.tmp / "config.toml"
        path.write_text(to_toml(self.config(**poller)))
        path.chmod(0o600)
        return path

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.state_path)
        return self._store

    async def cycle(
        self, advance: float = 30.0, *, tune: Any = None, **poller: Any
    ) -> CycleReport | None:
        """Advance the simulator's clock and run one guarded cycle (None = it failed)."""
        self.clock.advance(advance)
        settings = self.settings(**poller)
        runner = open_account(settings.accounts[0], store=self.store)
        runner.client.backoff_base = 0.01  # keep retries fast; the counts stay the same
        if tune is not None:
            tune(runner)
        self.last_runner = runner
        try:
            return await run_cycle(runner, self.store, settings.poller, router(settings.handlers))
        finally:
            await runner.aclose()

    def events(self) -> list[dict[str, Any]]:
        return self.store.events(limit=1_000_000)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def to_toml(config: dict[str, Any]) -> str:
    lines: list[str] = []
    for table, body in config.items():
        rows = body if isinstance(body, list) else [body]
        for row in rows:
            lines.append(f"[[{table}]]" if isinstance(body, list) else f"[{table}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in row.items()]
            lines.append("")
    return "\n".join(lines)


def make_sim(tmp: Path, offset: str = "-05:00") -> tuple[Account, ManualClock, SimulatorApp]:
    clock = ManualClock()
    account = Account(clock=clock, offset=offset)
    app = SimulatorApp(account, users={USERNAME: PASSWORD})
    return account, clock, app


@pytest.fixture
def rel(tmp_path: Path) -> Iterator[Rel]:
    account, clock, app = make_sim(tmp_path)
    with serve(app) as base_url:
        h = Rel(account, clock, app, base_url, tmp_path)
        try:
            yield h
        finally:
            h.close()


def recorder(tmp: Path) -> Path:
    path = tmp / "record.py"
    path.write_text(RECORDER)
    return path
