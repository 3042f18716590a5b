"""The Slack handler's thread map: which message is the thread of which Basecamp item;
and its cache of Slack user ids by e-mail address (`mention`).

One row per thread: (handler, channel as configured, account, recording type, recording
id) -> the channel id Slack answered and the parent message's `ts`. It lives in its own
small SQLite file, `<state_dir>/slack-threads-<handler name>.db` (created 0600, WAL,
`synchronous=FULL`), not in the state database: a handler is handed only its name and the
state directory, the state database has one writer (the Store, with its process-wide lock
and numbered migrations), and a row is written after Slack accepted the parent, in its own
transaction, before `deliver` returns, whatever the Store is doing.

A thread whose parent was deleted in Slack is started again: `replace` records the new
parent's `ts` in place of the old one.

`users`: (handler, e-mail address, lower case) -> the Slack user id `users.lookupByEmail`
answered, and when. Only ids found are kept (someone not in Slack today may join); an id
older than `USER_MAX_AGE` is looked up again.

Blocking calls: run them in a worker thread (`asyncio.to_thread`); a lock serialises them.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS threads (
    handler TEXT NOT NULL,
    channel TEXT NOT NULL,
    account_id TEXT NOT NULL,
    recording_type TEXT NOT NULL,
    recording_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    ts TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (handler, channel, account_id, recording_type, recording_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS users (
    handler TEXT NOT NULL,
    email TEXT NOT NULL,
    user_id TEXT NOT NULL,
    looked_up_at REAL NOT NULL,
    PRIMARY KEY (handler, email)
) WITHOUT ROWID;
"""
USER_MAX_AGE = 7 * 86400.0

Key = tuple[str, str, str]  # account id, recording type, recording id


def threads_path(state_dir: Path, handler: str) -> Path:
    return state_dir / f"slack-threads-{handler}.db"


class ThreadMap:
    """The durable map of one handler. Opened lazily, on first use."""

    def __init__(self, path: Path, handler: str, channel: str) -> None:
        self.path = path
        self.handler = handler
        self.channel = channel
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
            os.close(fd)  # created 0600 before SQLite creates it (its WAL gets the same mode)
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10
            )
            try:
                conn.execute("PRAGMA busy_timeout = 10000")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
                conn.executescript(SCHEMA)
                conn.execute("PRAGMA user_version = 1")
            except sqlite3.Error:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def open(self) -> None:
        """Create or open the file now (raises OSError / sqlite3.Error)."""
        with self._lock:
            self._open()

    def get(self, key: Key) -> tuple[str, str] | None:
        """(channel id, parent ts) of the item's thread, or None."""
        with self._lock:
            row = (
                self._open()
                .execute(
                    "SELECT channel_id, ts FROM threads WHERE handler = ? AND channel = ?"
                    " AND account_id = ? AND recording_type = ? AND recording_id = ?",
                    (self.handler, self.channel, *key),
                )
                .fetchone()
            )
        return (str(row[0]), str(row[1])) if row else None

    def put(self, key: Key, channel_id: str, ts: str) -> tuple[str, str]:
        """Record the item's thread, committed, unless one is recorded already (then that
        one wins). Returns the thread recorded."""
        with self._lock:
            conn = self._open()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT INTO threads (handler, channel, account_id, recording_type,"
                    " recording_id, channel_id, ts, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT DO NOTHING",
                    (self.handler, self.channel, *key, channel_id, ts, time.time()),
                )
                row = conn.execute(
                    "SELECT channel_id, ts FROM threads WHERE handler = ? AND channel = ?"
                    " AND account_id = ? AND recording_type = ? AND recording_id = ?",
                    (self.handler, self.channel, *key),
                ).fetchone()
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return (str(row[0]), str(row[1]))

    def replace(self, key: Key, old_ts: str, channel_id: str, ts: str) -> tuple[str, str]:
        """Record `ts` as the item's thread in place of `old_ts` (its parent was deleted),
        committed; a thread recorded meanwhile in place of `old_ts` wins. Returns the
        thread recorded."""
        where = (
            "handler = ? AND channel = ? AND account_id = ? AND recording_type = ?"
            " AND recording_id = ?"
        )
        with self._lock:
            conn = self._open()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    f"UPDATE threads SET channel_id = ?, ts = ?, created_at = ? WHERE {where}"
                    " AND ts = ?",
                    (channel_id, ts, time.time(), self.handler, self.channel, *key, old_ts),
                )
                conn.execute(
                    "INSERT INTO threads (handler, channel, account_id, recording_type,"
                    " recording_id, channel_id, ts, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT DO NOTHING",
                    (self.handler, self.channel, *key, channel_id, ts, time.time()),
                )
                row = conn.execute(
                    f"SELECT channel_id, ts FROM threads WHERE {where}",
                    (self.handler, self.channel, *key),
                ).fetchone()
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return (str(row[0]), str(row[1]))

    def user(self, email: str, *, max_age: float = USER_MAX_AGE) -> str | None:
        """The Slack user id cached for `email` (not older than `max_age`), or None."""
        with self._lock:
            row = (
                self._open()
                .execute(
                    "SELECT user_id FROM users WHERE handler = ? AND email = ?"
                    " AND looked_up_at >= ?",
                    (self.handler, email.lower(), time.time() - max_age),
                )
                .fetchone()
            )
        return str(row[0]) if row else None

    def put_user(self, email: str, user_id: str) -> None:
        """Cache the Slack user id of `email`, committed."""
        with self._lock:
            self._open().execute(
                "INSERT INTO users (handler, email, user_id, looked_up_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(handler, email) DO UPDATE SET user_id = excluded.user_id,"
                " looked_up_at = excluded.looked_up_at",
                (self.handler, email.lower(), user_id, time.time()),
            )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
