"""Helpers for the CLI tests: run `bcx-poller` as a subprocess, write OAuth configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from poller.simulator import account_base_url
from tests.conftest import USER_AGENT, Harness


def run(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "poller", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        input=stdin,
        check=False,
    )


def private_file(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def oauth_config(
    sim: Harness,
    *,
    refresh_token: str | None = None,
    token_url: bool = True,
    extra: str = "",
    poller: str = "",
) -> Path:
    """A config whose only account uses [accounts.oauth] with the stand-in's client."""
    lp = sim.app.launchpad
    secret = private_file(sim.tmp / "client-secret", lp.client_secret)
    lines = [
        "[poller]",
        f'state_path = "{sim.tmp / "state.db"}"',
        "reconcile_interval = 0",
        poller,
        "",
        "[[accounts]]",
        f"id = {sim.account.account_id}",
        f'base_url = "{account_base_url(sim.base_url, sim.account.account_id)}"',
        f'user_agent = "{USER_AGENT}"',
        "",
        "[accounts.oauth]",
        f'client_id = "{lp.client_id}"',
        f'client_secret_file = "{secret}"',
    ]
    if refresh_token is not None:
        token_file = private_file(sim.tmp / "refresh-token", refresh_token)
        lines.append(f'refresh_token_file = "{token_file}"')
    if token_url:
        lines.append(f'token_url = "{sim.base_url}/authorization/token"')
        lines.append(f'authorization_url = "{sim.base_url}/authorization.json"')
    lines.append(extra)
    path = sim.tmp / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def jsonl_handler(path: Path, name: str = "file") -> str:
    return f'\n[[handlers]]\nname = "{name}"\ntype = "jsonl"\npath = "{path}"\n'
