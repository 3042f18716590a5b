"""One owner per state file: an advisory lock beside the database.

The commands that write the state (`run`, `once`, `backfill`, `redeliver`) take an
exclusive `fcntl.flock` on `<state_path>.lock` (created 0600) and write their pid into it;
a second one exits at once, naming the state file and the pid holding it. The lock goes
with the process (exit, crash or `kill -9`), so a stale lock file is harmless. Read-only
commands (`status`, `events`, `deliveries`) take no lock and work beside a running daemon
(SQLite's WAL lets them read while it writes).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from poller.errors import StateError


class StateLocked(StateError):
    """Another process owns the state file."""

    def __init__(self, state_path: Path, pid: int | None) -> None:
        self.state_path = state_path
        self.pid = pid
        holder = f"process {pid}" if pid else "another process"
        super().__init__(
            f"state file {state_path} is in use by {holder} (lock {lock_path(state_path)});"
            " one bcx-poller writes a state file at a time: stop it first, or use"
            " status / events / deliveries, which only read"
        )


def lock_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".lock")


def _holder(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def state_lock(state_path: Path) -> Iterator[None]:
    """Hold the state file's lock for the `with` block; `StateLocked` if it is taken."""
    path = lock_path(Path(state_path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StateError(f"cannot open the lock file {path}: {exc.strerror or exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateLocked(Path(state_path), _holder(fd)) from None
        except OSError as exc:
            raise StateError(f"cannot lock {path}: {exc.strerror or exc}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock
