"""The stored Basecamp people, read-only, for handlers (`HandlerContext.people`).

Personal routing (`email` `to = "assignee"`, `slack` `mention = "assignee"`) turns the
Basecamp person an event names into an e-mail address. The poller already stores every
person of a watched account (`/people.json`, the `Person` records of the state database);
this reads them through a connection of its own, opened read-only (`mode=ro`) on first
use, so a handler can never write the state and never waits on the Store's lock (SQLite's
WAL lets it read while the Store writes).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from handlers.base import Person


class StoredPeople:
    """`People` over the state database at `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=10)
            conn.execute("PRAGMA busy_timeout = 10000")
            self._conn = conn
        return self._conn

    def person(self, account_id: int, person_id: int) -> Person | None:
        """The stored person (None: not stored). Raises sqlite3.Error when the state
        database cannot be read."""
        with self._lock:
            row = (
                self._open()
                .execute(
                    "SELECT state, data FROM records WHERE account_id = ? AND type = 'Person'"
                    " AND id = ?",
                    (account_id, person_id),
                )
                .fetchone()
            )
        if row is None:
            return None
        state, raw = row
        data = json.loads(raw)
        fields = data.get("fields") if isinstance(data, dict) else None
        fields = fields if isinstance(fields, dict) else {}
        email = fields.get("email_address")
        name = fields.get("name") or (data.get("title") if isinstance(data, dict) else None)
        return Person(
            id=person_id,
            name=str(name or f"person {person_id}"),
            email=email.strip() if isinstance(email, str) and email.strip() else None,
            removed=state != "active",
        )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
