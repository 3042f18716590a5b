"""Sharded configurations over real simulators: account ids chosen so that every shard
(and, for reshard, every move) has accounts, configs with `{shard}` in `state_path`, and
reading the shard files back."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from poller.shards import shard_of
from tests.daemon._support import Sim


def spread_ids(shards: int, per_shard: int, *, moving_to: int | None = None) -> list[int]:
    """Account ids with `per_shard` on each of `shards` shards (by the real mapping); with
    `moving_to=N`, at least one id of each old shard lands on each new shard of N too."""
    out: list[int] = []
    counts = [0] * shards
    candidate = 7_100_000
    while min(counts) < per_shard:
        candidate += 1
        k = shard_of(candidate, shards)
        if counts[k] < per_shard:
            counts[k] += 1
            out.append(candidate)
    if moving_to is not None:
        need = {n for n in range(shards, moving_to)}  # the new shards get some
        while need:
            candidate += 1
            k = shard_of(candidate, moving_to)
            if k in need:
                need.discard(k)
                out.append(candidate)
    return out


def sharded_config(
    path: Path,
    sims: list[Sim],
    *,
    shards: int,
    handlers: str = "",
    state: str | None = None,
    extra_poller: str = "",
) -> Path:
    lines = [
        "[poller]",
        f"shards = {shards}",
        f'state_path = "{state or path.parent / "{shard}" / "state.db"}"',
        "interval = 0.5",
        "reconcile_interval = 0",
        "jitter = 0.1",
        "cycle_timeout = 10",
        extra_poller,
        "",
        "[logging]",
        'level = "debug"',
        "",
        *(s.account_toml() for s in sims),
        handlers,
    ]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def accounts_in(state: Path) -> set[int]:
    """Account ids with any row in a state file (read-only)."""
    conn = sqlite3.connect(f"{state.resolve().as_uri()}?mode=ro", uri=True)
    try:
        found: set[int] = set()
        for table in ("accounts", "records", "validators", "outbox", "seen_activity"):
            found |= {int(r[0]) for r in conn.execute(f"SELECT DISTINCT account_id FROM {table}")}
        return found
    finally:
        conn.close()


def outbox_ids(state: Path) -> list[str]:
    conn = sqlite3.connect(f"{state.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return [str(r[0]) for r in conn.execute("SELECT id FROM outbox ORDER BY seq")]
    finally:
        conn.close()


def delivery_rows(state: Path) -> list[tuple[str, str, str]]:
    """(handler, event id, status) of every delivery row."""
    conn = sqlite3.connect(f"{state.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return [
            (str(h), str(i), str(s))
            for h, i, s in conn.execute(
                "SELECT d.handler, o.id, d.status FROM deliveries d JOIN outbox o ON o.seq = d.seq"
            )
        ]
    finally:
        conn.close()


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`bcx-poller ARGS` as a subprocess, without the caller's BCX_POLLER_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BCX_POLLER_")}
    return subprocess.run(
        [sys.executable, "-m", "poller", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, **(env or {})},
        check=False,
    )
