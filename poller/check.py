"""`bcx-poller check`: what a valid configuration may still get wrong, as warnings.

* a config file readable by group or others that holds a secret itself (not `*_env` /
  `*_file`);
* a `state_path` that cannot be created or written by this user;
* handler `kinds` globs that match no kind bcx-poller emits (`todo_complete`);
* handler `accounts` that are not configured, handler `projects` never seen in the state;
* `[metrics] listen` without prometheus-client.

Nothing here changes anything: the state is read through a read-only SQLite connection,
and only when it exists; the state path is probed with a temporary file, removed at once.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import tempfile
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from poller.config import Settings
from poller.payloads import KIND_PREFIX

# Suffixes every type can get, and the to-do's own. Generous on purpose: a warning must
# never fire for a kind that can happen.
_COMMON = (
    "created",
    "changed",
    "trashed",
    "activity",
    "archived",
    "unarchived",
    "restored",
    "content_changed",
)
_TODO = ("completed", "uncompleted", "assignment_changed", "due_date_changed")
KNOWN_KINDS: frozenset[str] = frozenset(
    [f"{p}_{s}" for p in KIND_PREFIX.values() for s in _COMMON] + [f"todo_{s}" for s in _TODO]
)

# Keys whose inline value is a credential (their `_env` / `_file` forms are not).
_SECRET_KEYS = frozenset(
    {"password", "token", "client_secret", "refresh_token", "secrets", "webhook_url", "urls"}
)


def inline_secrets(data: Any, path: str = "") -> list[str]:
    """Where the raw configuration holds a secret itself: `accounts[0].password`, ..."""
    found: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            here = f"{path}.{key}" if path else str(key)
            if key in _SECRET_KEYS and value not in (None, "", []):
                found.append(here)
            else:
                found += inline_secrets(value, here)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += inline_secrets(value, f"{path}[{index}]")
    return found


def _readable_by_others(path: Path) -> int | None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    return mode & 0o777 if mode & (stat.S_IRGRP | stat.S_IROTH) else None


def _state_path_problem(state: Path) -> str | None:
    """Why this user could not create or write the state file, if it could not. Probes
    for real (root passes every permission check, not every file system): opens an
    existing file for writing without writing, or creates and removes a temporary file
    where the state would be created."""
    if state.exists():
        try:
            os.close(os.open(state, os.O_RDWR | os.O_APPEND))
        except OSError as exc:
            return f"{state} cannot be written by this user (uid {os.getuid()}): {exc.strerror}"
        return None
    parent = state.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot be created: {parent} is not a directory"
    try:
        fd, probe = tempfile.mkstemp(prefix=".bcx-poller-check-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return (
            f"cannot be created in {parent} by this user (uid {os.getuid()}): {exc.strerror};"
            " fine if the daemon runs as another user (systemd StateDirectory=)"
        )
    return None


def _projects_seen(state: Path) -> set[int] | None:
    """Ids of the projects in the state, or None when there is no state to ask."""
    if not state.exists():
        return None
    try:
        conn = sqlite3.connect(f"{state.resolve().as_uri()}?mode=ro", uri=True, timeout=2)
        try:
            rows = conn.execute("SELECT id FROM records WHERE type = 'Project'").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return {int(r[0]) for r in rows} or None


def config_warnings(path: Path, data: dict[str, Any], settings: Settings) -> list[str]:
    """Warnings about a configuration that loaded fine (`data`: the file as parsed)."""
    out: list[str] = []
    secrets = inline_secrets(data)
    mode = _readable_by_others(path)
    if secrets and mode is not None:
        out.append(
            f"{path}: readable by group or others (mode {mode:04o}) and holds secrets"
            f" ({', '.join(secrets)}): chmod 600 it, or use *_env / *_file instead"
        )
    problem = _state_path_problem(settings.poller.state_path)
    if problem:
        out.append(f"poller.state_path: {problem}")
    accounts = {a.id for a in settings.accounts}
    seen = _projects_seen(settings.poller.state_path)
    for index, handler in enumerate(settings.handlers):
        field = f"handlers[{index}]"
        for pattern in handler.kinds:
            if not any(fnmatchcase(kind, pattern) for kind in KNOWN_KINDS):
                out.append(
                    f"{field}.kinds: {pattern!r} matches no kind bcx-poller emits"
                    " (see the README's list), so this handler gets nothing for it"
                )
        for aid in handler.accounts:
            if aid not in accounts:
                out.append(f"{field}.accounts: {aid} is not a configured account")
        if seen is not None:
            for pid in handler.projects:
                if pid not in seen:
                    out.append(f"{field}.projects: project {pid} has never been seen")
    if settings.metrics.listen:
        from poller.metrics import _prometheus

        if _prometheus() is None:
            out.append("metrics.listen: prometheus-client is not installed; /metrics answers 503")
    return out
