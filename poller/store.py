"""The state database: one SQLite file holding everything bcx-poller knows.

Per account: the activity cursor, the activity ids already seen, the conditional-request
validators per URL, the last known version of every watched record; and the outbox of
events with one delivery row per (event, handler).

Rules:
* WAL, `synchronous=FULL`, one writer (a process-wide lock), every write in
  `BEGIN IMMEDIATE`. A cycle's records, validators, cursor and events go in ONE
  transaction (`commit_cycle`), so a crash leaves either all of it or none of it.
* Migrations are numbered, each runs in its own transaction, `PRAGMA user_version` records
  the last one applied.
* The file (and its WAL) is created with mode 0600: it holds OAuth tokens.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import sqlite_utils

from poller.errors import StateError

MIGRATIONS: list[str] = [
    # 1: the initial schema
    """
    CREATE TABLE accounts (
        account_id INTEGER PRIMARY KEY,
        cursor TEXT,
        baseline_done INTEGER NOT NULL DEFAULT 0,
        last_success_at REAL,
        last_attempt_at REAL,
        last_error TEXT,
        last_reconcile_at REAL,
        cycles INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE seen_activity (
        account_id INTEGER NOT NULL,
        activity_id INTEGER NOT NULL,
        updated_at TEXT NOT NULL,
        created_ts REAL NOT NULL,
        PRIMARY KEY (account_id, activity_id, updated_at)
    ) WITHOUT ROWID;
    CREATE TABLE validators (
        account_id INTEGER NOT NULL,
        url TEXT NOT NULL,
        etag TEXT,
        last_modified TEXT,
        PRIMARY KEY (account_id, url)
    ) WITHOUT ROWID;
    CREATE TABLE records (
        account_id INTEGER NOT NULL,
        type TEXT NOT NULL,
        id INTEGER NOT NULL,
        project_id INTEGER,
        parent_type TEXT,
        parent_id INTEGER,
        updated_at TEXT,
        state TEXT NOT NULL DEFAULT 'active',
        data TEXT NOT NULL,
        PRIMARY KEY (account_id, type, id)
    );
    CREATE INDEX records_project ON records (account_id, project_id, type);
    CREATE INDEX records_parent ON records (account_id, parent_type, parent_id);
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        account_id INTEGER NOT NULL,
        kind TEXT NOT NULL,
        project_id INTEGER,
        private INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        detected_at TEXT NOT NULL,
        detected_ts REAL NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE INDEX outbox_account ON outbox (account_id, detected_ts);
    CREATE TABLE deliveries (
        handler TEXT NOT NULL,
        seq INTEGER NOT NULL REFERENCES outbox(seq),
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL,
        first_at REAL NOT NULL,
        last_error TEXT,
        done_at REAL,
        PRIMARY KEY (handler, seq)
    );
    CREATE INDEX deliveries_due ON deliveries (status, handler, seq);
    CREATE TABLE tokens (
        account_id INTEGER PRIMARY KEY,
        access_token TEXT,
        refresh_token TEXT,
        expires_at REAL
    );
    """,
    # 2: when reconcile last ignored every stored validator (`full_recheck_interval`)
    """
    ALTER TABLE accounts ADD COLUMN last_full_recheck_at REAL;
    """,
    # 3: a re-list (or first sync) in progress, committed project by project: the
    # projects still to do, as JSON {"projects": [...], "unconditional": bool}
    """
    ALTER TABLE accounts ADD COLUMN relist_pending TEXT;
    """,
]


def dumps(value: Any) -> str:
    """Compact JSON with sorted keys, as stored in `records.data` and `outbox.payload`.

    orjson: 10-25x faster than `json.dumps(..., sort_keys=True)` on records and events
    (bench/README.md, 2026-12-03). What it refuses (an integer beyond 64 bits, a key that
    is not a string) the stdlib writes, after a space: `loads` reads such text with the
    stdlib too (orjson would read a big integer back as a float)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):
        return " " + json.dumps(value, separators=(",", ":"), sort_keys=True)


def loads(text: str) -> Any:
    """JSON stored by `dumps` (or by an earlier version, with the stdlib)."""
    if text[:1] == " ":
        return json.loads(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)  # what orjson refuses and the stdlib wrote (NaN)


@dataclass
class AccountState:
    account_id: int
    cursor: str | None = None
    baseline_done: bool = False
    last_success_at: float | None = None
    last_attempt_at: float | None = None
    last_error: str | None = None
    last_reconcile_at: float | None = None
    cycles: int = 0
    last_full_recheck_at: float | None = None
    relist_pending: str | None = None  # JSON, see `Relist`; None: no re-list under way

    def relist(self) -> Relist | None:
        if not self.relist_pending:
            return None
        data = json.loads(self.relist_pending)
        return Relist(
            projects=[int(p) for p in data.get("projects", [])],
            unconditional=bool(data.get("unconditional")),
        )


@dataclass
class Relist:
    """A full re-list under way: the projects not done yet, committed one by one."""

    projects: list[int]
    unconditional: bool = False

    def to_json(self) -> str:
        return json.dumps({"projects": self.projects, "unconditional": self.unconditional})


class StoredRecord:
    """A record as stored: its columns, and `data` ({title, fields, meta}).

    Read from the database, `data` stays the stored JSON text until something asks for it
    (`Detector.observe` compares an unchanged record's text with the new version's,
    without parsing either: most records of a re-list are unchanged)."""

    __slots__ = (
        "_data",
        "_text",
        "id",
        "parent_id",
        "parent_type",
        "project_id",
        "state",
        "type",
        "updated_at",
    )

    def __init__(
        self,
        type: str,
        id: int,
        project_id: int | None,
        parent_type: str | None,
        parent_id: int | None,
        updated_at: str | None,
        state: str,
        data: dict[str, Any] | None = None,
        *,
        text: str | None = None,
    ) -> None:
        if data is None and text is None:
            raise ValueError("a stored record needs its data or its stored text")
        self.type = type
        self.id = id
        self.project_id = project_id
        self.parent_type = parent_type
        self.parent_id = parent_id
        self.updated_at = updated_at
        self.state = state
        self._data = data
        self._text = text if data is None else None

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = loads(self._text or "{}")
            self._text = None  # the dict may be changed in place from now on
        return self._data

    @property
    def text(self) -> str | None:
        """The stored JSON text of `data`, while nothing has asked for `data` (then it is
        exactly what is stored); None after."""
        return self._text

    def dumped(self) -> str:
        """`data` as `records.data` stores it."""
        return self._text if self._text is not None else dumps(self._data)

    def columns(self) -> tuple[Any, ...]:
        return (
            self.type,
            self.id,
            self.project_id,
            self.parent_type,
            self.parent_id,
            self.updated_at,
            self.state,
        )

    def with_state(self, state: str) -> StoredRecord:
        """A copy in another state, sharing `data` (or its text)."""
        return StoredRecord(
            self.type,
            self.id,
            self.project_id,
            self.parent_type,
            self.parent_id,
            self.updated_at,
            state,
            self._data,
            text=self._text,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StoredRecord):
            return NotImplemented
        if self.columns() != other.columns():
            return False
        if self._text is not None and other._text is not None:
            return self._text == other._text
        return self.data == other.data

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"StoredRecord(type={self.type!r}, id={self.id!r}, project_id={self.project_id!r},"
            f" parent=({self.parent_type!r}, {self.parent_id!r}),"
            f" updated_at={self.updated_at!r}, state={self.state!r}, data={self.data!r})"
        )


@dataclass
class CycleWrite:
    """Everything one successful cycle of one account writes, in one transaction."""

    account_id: int
    cursor: str | None = None
    cursor_changed: bool = False
    baseline_done: bool = True
    reconciled_at: float | None = None
    full_recheck_at: float | None = None
    seen_activity: list[tuple[int, str, float]] = field(default_factory=list)
    prune_activity_before: float | None = None
    validators: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    drop_validators: set[str] = field(default_factory=set)
    records: list[StoredRecord] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    # a step of a re-list committed project by project: the account's status and markers
    # stay as they are, only `relist_pending` moves (None: the re-list is done)
    partial: bool = False
    relist: Relist | None = None
    relist_changed: bool = False


@dataclass(frozen=True)
class Delivery:
    handler: str
    seq: int
    status: str
    attempts: int
    next_at: float
    first_at: float
    last_error: str | None
    event: dict[str, Any]


Router = Callable[[dict[str, Any]], Iterable[str]]


def _create_private(path: Path) -> None:
    """Create the file 0600 if it does not exist (before SQLite creates it 0644)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


class Store:
    """The one writer of the state database. Thread-safe; calls are short and synchronous."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            if str(self.path) != ":memory:":
                _create_private(self.path)
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
            )
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except (sqlite3.Error, OSError) as exc:
            raise StateError(f"cannot open state database {self.path}: {exc}") from exc
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self.migrate()

    # -- plumbing -----------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (`BEGIN IMMEDIATE`), rolled back on any error."""
        with self._lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StateError(f"state database busy or unwritable: {exc}") from exc
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException as exc:
                with suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StateError(f"state database write failed: {exc}") from exc
                raise

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            try:
                return list(self.db.query(sql, tuple(params)))
            except sqlite3.Error as exc:
                raise StateError(f"state database read failed: {exc}") from exc

    def migrate(self) -> int:
        """Apply pending migrations, each in its own transaction. Returns the version."""
        version = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
        for number, script in enumerate(MIGRATIONS, start=1):
            if number <= version:
                continue
            with self.write() as conn:
                # another process (a `status` beside a starting daemon) may have applied
                # it between our read and our write lock
                if int(conn.execute("PRAGMA user_version").fetchone()[0]) >= number:
                    version = number
                    continue
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
            version = number
        return version

    def account(self, account_id: int) -> AccountState:
        rows = self._query("SELECT * FROM accounts WHERE account_id = ?", (account_id,))
        if not rows:
            return AccountState(account_id)
        row: dict[str, Any] = dict(rows[0])
        row["baseline_done"] = bool(row["baseline_done"])
        return AccountState(**row)

    def accounts(self) -> list[AccountState]:
        rows = self._query("SELECT account_id FROM accounts ORDER BY account_id")
        return [self.account(int(r["account_id"])) for r in rows]

    def record_failure(self, account_id: int, error: str) -> None:
        """Note a failed cycle. Touches nothing but the account's status columns."""
        now = time.time()
        with self.write() as conn:
            conn.execute(
                "INSERT INTO accounts (account_id, last_attempt_at, last_error) VALUES (?, ?, ?)"
                " ON CONFLICT(account_id) DO UPDATE SET last_attempt_at = excluded.last_attempt_at,"
                " last_error = excluded.last_error",
                (account_id, now, error[:2000]),
            )

    def seen_activity(
        self, account_id: int, keys: Iterable[tuple[int, str]]
    ) -> set[tuple[int, str]]:
        """Which of these (activity id, updated_at) pairs were processed before."""
        keys = list(keys)
        if not keys:
            return set()
        seen: set[tuple[int, str]] = set()
        for chunk_start in range(0, len(keys), 400):
            chunk = keys[chunk_start : chunk_start + 400]
            ids = sorted({k[0] for k in chunk})
            marks = ",".join("?" * len(ids))
            for row in self._query(
                f"SELECT activity_id, updated_at FROM seen_activity WHERE account_id = ?"
                f" AND activity_id IN ({marks})",
                [account_id, *ids],
            ):
                seen.add((int(row["activity_id"]), str(row["updated_at"])))
        return seen & set(keys)

    def validators(self, account_id: int, url: str) -> tuple[str | None, str | None] | None:
        rows = self._query(
            "SELECT etag, last_modified FROM validators WHERE account_id = ? AND url = ?",
            (account_id, url),
        )
        if not rows:
            return None
        row = rows[0]
        return (row["etag"], row["last_modified"])

    # -- records --------------------------------------------------------------------

    _RECORD = "SELECT type, id, project_id, parent_type, parent_id, updated_at, state, data"

    @staticmethod
    def _record(row: tuple[Any, ...]) -> StoredRecord:
        return StoredRecord(
            row[0], int(row[1]), row[2], row[3], row[4], row[5], row[6], text=row[7]
        )

    def _records(self, sql: str, params: Iterable[Any]) -> list[StoredRecord]:
        """Records read with a `_RECORD` query (plain tuples: no dict per row)."""
        with self._lock:
            try:
                rows = self.conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise StateError(f"state database read failed: {exc}") from exc
        return [self._record(row) for row in rows]

    def record(self, account_id: int, rtype: str, rid: int) -> StoredRecord | None:
        rows = self._records(
            f"{self._RECORD} FROM records WHERE account_id = ? AND type = ? AND id = ?",
            (account_id, rtype, rid),
        )
        return rows[0] if rows else None

    def records(
        self,
        account_id: int,
        rtype: str,
        *,
        project_id: int | None = None,
        parent: tuple[str, int] | None = None,
    ) -> dict[int, StoredRecord]:
        sql = f"{self._RECORD} FROM records WHERE account_id = ? AND type = ?"
        params: list[Any] = [account_id, rtype]
        if project_id is not None:
            sql += " AND project_id = ?"
            params.append(project_id)
        if parent is not None:
            sql += " AND parent_type = ? AND parent_id = ?"
            params.extend(parent)
        return {r.id: r for r in self._records(sql, params)}

    def records_with_ids(
        self, account_id: int, rtype: str, ids: list[int]
    ) -> dict[int, StoredRecord]:
        """The stored records of a type among `ids` (one query per 500 ids)."""
        out: dict[int, StoredRecord] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            sql = (
                f"{self._RECORD} FROM records WHERE account_id = ? AND type = ? AND id IN ({marks})"
            )
            for rec in self._records(sql, [account_id, rtype, *chunk]):
                out[rec.id] = rec
        return out

    def count_records(self, account_id: int) -> int:
        rows = self._query("SELECT count(*) AS n FROM records WHERE account_id = ?", (account_id,))
        return int(rows[0]["n"])

    # -- the cycle commit -----------------------------------------------------------

    def commit_cycle(self, write: CycleWrite, route: Router) -> list[int]:
        """Write one cycle's state, cursor, validators and events in one transaction.

        Events whose id is already in the outbox are skipped (one change, one event).
        `route(event)` names the handlers that get a delivery row. Returns the outbox
        sequence numbers of the events actually added.
        """
        now = time.time()
        added: list[int] = []
        aid = write.account_id
        with self.write() as conn:
            conn.execute(
                "INSERT INTO accounts (account_id) VALUES (?) ON CONFLICT(account_id) DO NOTHING",
                (aid,),
            )
            sets: list[str] = []
            params: list[Any] = []
            if not write.partial:
                sets += [
                    "baseline_done = ?",
                    "last_success_at = ?",
                    "last_attempt_at = ?",
                    "last_error = NULL",
                    "cycles = cycles + 1",
                ]
                params += [int(write.baseline_done), now, now]
            if write.relist_changed:
                sets.append("relist_pending = ?")
                params.append(write.relist.to_json() if write.relist is not None else None)
            if write.cursor_changed:
                sets.append("cursor = ?")
                params.append(write.cursor)
            if write.reconciled_at is not None:
                sets.append("last_reconcile_at = ?")
                params.append(write.reconciled_at)
            if write.full_recheck_at is not None:
                sets.append("last_full_recheck_at = ?")
                params.append(write.full_recheck_at)
            if sets:
                conn.execute(
                    f"UPDATE accounts SET {', '.join(sets)} WHERE account_id = ?",
                    [*params, aid],
                )
            conn.executemany(
                "INSERT OR IGNORE INTO seen_activity"
                " (account_id, activity_id, updated_at, created_ts) VALUES (?, ?, ?, ?)",
                [(aid, a, u, t) for a, u, t in write.seen_activity],
            )
            if write.prune_activity_before is not None:
                conn.execute(
                    "DELETE FROM seen_activity WHERE account_id = ? AND created_ts < ?",
                    (aid, write.prune_activity_before),
                )
            conn.executemany(
                "INSERT INTO validators (account_id, url, etag, last_modified) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(account_id, url) DO UPDATE SET etag = excluded.etag,"
                " last_modified = excluded.last_modified",
                [(aid, url, e, lm) for url, (e, lm) in write.validators.items()],
            )
            conn.executemany(
                "DELETE FROM validators WHERE account_id = ? AND url = ?",
                [(aid, url) for url in write.drop_validators],
            )
            conn.executemany(
                "INSERT INTO records (account_id, type, id, project_id, parent_type, parent_id,"
                " updated_at, state, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(account_id, type, id) DO UPDATE SET project_id = excluded.project_id,"
                " parent_type = excluded.parent_type, parent_id = excluded.parent_id,"
                " updated_at = excluded.updated_at, state = excluded.state, data = excluded.data",
                [
                    (
                        aid,
                        r.type,
                        r.id,
                        r.project_id,
                        r.parent_type,
                        r.parent_id,
                        r.updated_at,
                        r.state,
                        r.dumped(),
                    )
                    for r in write.records
                ],
            )
            self._add_events(conn, aid, write.events, route, now, added)
        return added

    @staticmethod
    def _add_events(
        conn: sqlite3.Connection,
        aid: int,
        events: list[dict[str, Any]],
        route: Router,
        now: float,
        added: list[int],
    ) -> None:
        """The events not in the outbox yet (by id), in order, with their delivery rows:
        a few statements per batch, not two per event. Runs inside the write transaction,
        so nothing else takes sequence numbers meanwhile: they are given here, after the
        largest the outbox ever used (AUTOINCREMENT's own rule)."""
        if not events:
            return
        fresh: dict[str, dict[str, Any]] = {}
        for event in events:
            fresh.setdefault(event["id"], event)  # one change, one event
        ids = list(fresh)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for (known,) in conn.execute(f"SELECT id FROM outbox WHERE id IN ({marks})", chunk):
                fresh.pop(known, None)
        if not fresh:
            return
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        last = conn.execute("SELECT max(seq) FROM outbox").fetchone()[0]
        seq = max(int(row[0]) if row else 0, int(last or 0))
        outbox: list[tuple[Any, ...]] = []
        deliveries: list[tuple[str, int, float, float]] = []
        for event in fresh.values():
            seq += 1
            outbox.append(
                (
                    seq,
                    event["id"],
                    aid,
                    event["kind"],
                    (event.get("project") or {}).get("id"),
                    int(bool(event.get("private"))),
                    event["created_at"],
                    event["detected_at"],
                    now,
                    dumps(event),
                )
            )
            deliveries.extend((name, seq, now, now) for name in route(event))
            added.append(seq)
        conn.executemany(
            "INSERT INTO outbox (seq, id, account_id, kind, project_id, private,"
            " created_at, detected_at, detected_ts, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            outbox,
        )
        conn.executemany(
            "INSERT INTO deliveries (handler, seq, status, attempts, next_at, first_at)"
            " VALUES (?, ?, 'pending', 0, ?, ?)",
            deliveries,
        )

    # -- outbox and deliveries ------------------------------------------------------

    def events(
        self,
        *,
        since_ts: float | None = None,
        kinds: Iterable[str] = (),
        account_id: int | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        sql = "SELECT payload FROM outbox WHERE 1 = 1"
        params: list[Any] = []
        if since_ts is not None:
            sql += " AND detected_ts >= ?"
            params.append(since_ts)
        kinds = list(kinds)
        if kinds:
            sql += f" AND kind IN ({','.join('?' * len(kinds))})"
            params.extend(kinds)
        if account_id is not None:
            sql += " AND account_id = ?"
            params.append(account_id)
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        return [json.loads(r["payload"]) for r in self._query(sql, params)]

    def activities_with_events(self, account_id: int, since_ts: float | None = None) -> set[int]:
        """Ids of the activities that an event in the outbox carries (`details.activity`),
        whatever its kind; `since_ts`: only events detected since then."""
        sql = (
            "SELECT DISTINCT json_extract(payload, '$.details.activity.id') AS activity"
            " FROM outbox WHERE account_id = ?"
        )
        params: list[Any] = [account_id]
        if since_ts is not None:
            sql += " AND detected_ts >= ?"
            params.append(since_ts)
        out: set[int] = set()
        for row in self._query(sql, params):
            value = row["activity"]
            if isinstance(value, int):
                out.add(value)
        return out

    def events_by_id(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        """The stored envelopes of these event ids (those that exist), in outbox order."""
        wanted = list(ids)
        if not wanted:
            return []
        rows = self._query(
            f"SELECT payload FROM outbox WHERE id IN ({','.join('?' * len(wanted))}) ORDER BY seq",
            wanted,
        )
        return [json.loads(r["payload"]) for r in rows]

    def event_deliveries(self, event_id: str) -> list[tuple[str, str]] | None:
        """(handler, status) of each delivery of the event, or None if it is not in the
        outbox."""
        rows = self._query("SELECT seq FROM outbox WHERE id = ?", (event_id,))
        if not rows:
            return None
        return [
            (str(r["handler"]), str(r["status"]))
            for r in self._query(
                "SELECT handler, status FROM deliveries WHERE seq = ? ORDER BY handler",
                (rows[0]["seq"],),
            )
        ]

    def outbox_count(self) -> int:
        return int(self._query("SELECT count(*) AS n FROM outbox")[0]["n"])

    def due_deliveries(self, handler: str, now: float, limit: int = 100) -> list[Delivery]:
        """The handler's pending deliveries in detection order, stopping at the first that
        is not yet due (so a retrying event holds back the later ones: order is kept)."""
        rows = self._query(
            "SELECT d.*, o.payload FROM deliveries d JOIN outbox o ON o.seq = d.seq"
            " WHERE d.handler = ? AND d.status = 'pending' ORDER BY d.seq LIMIT ?",
            (handler, limit),
        )
        out: list[Delivery] = []
        for row in rows:
            r: dict[str, Any] = row
            if r["next_at"] > now:
                break
            out.append(self._delivery(r))
        return out

    @staticmethod
    def _delivery(r: dict[str, Any]) -> Delivery:
        return Delivery(
            handler=r["handler"],
            seq=int(r["seq"]),
            status=r["status"],
            attempts=int(r["attempts"]),
            next_at=float(r["next_at"]),
            first_at=float(r["first_at"]),
            last_error=r["last_error"],
            event=json.loads(r["payload"]),
        )

    def next_due_at(self, handler: str) -> float | None:
        rows = self._query(
            "SELECT next_at FROM deliveries WHERE handler = ? AND status = 'pending'"
            " ORDER BY seq LIMIT 1",
            (handler,),
        )
        return float(rows[0]["next_at"]) if rows else None

    def mark_done(self, handler: str, seq: int) -> None:
        with self.write() as conn:
            conn.execute(
                "UPDATE deliveries SET status = 'done', done_at = ?, attempts = attempts + 1,"
                " last_error = NULL WHERE handler = ? AND seq = ?",
                (time.time(), handler, seq),
            )

    def mark_failed(self, handler: str, seq: int, error: str, next_at: float | None) -> None:
        """Record a failed attempt; `next_at=None` makes it a dead letter."""
        with self.write() as conn:
            if next_at is None:
                conn.execute(
                    "UPDATE deliveries SET status = 'dead', attempts = attempts + 1, last_error = ?"
                    " WHERE handler = ? AND seq = ?",
                    (error[:2000], handler, seq),
                )
            else:
                conn.execute(
                    "UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_at = ?"
                    " WHERE handler = ? AND seq = ?",
                    (error[:2000], next_at, handler, seq),
                )

    def deliveries(
        self, *, status: Iterable[str] = ("pending", "dead"), handler: str | None = None
    ) -> list[Delivery]:
        statuses = list(status)
        sql = (
            "SELECT d.*, o.payload FROM deliveries d JOIN outbox o ON o.seq = d.seq"
            f" WHERE d.status IN ({','.join('?' * len(statuses))})"
        )
        params: list[Any] = list(statuses)
        if handler is not None:
            sql += " AND d.handler = ?"
            params.append(handler)
        sql += " ORDER BY d.seq, d.handler"
        return [self._delivery(r) for r in self._query(sql, params)]

    def delivery_counts(self) -> dict[str, dict[str, Any]]:
        """Per handler: pending, dead, and the age in seconds of the oldest pending."""
        out: dict[str, dict[str, Any]] = {}
        now = time.time()
        for row in self._query(
            "SELECT handler, status, count(*) AS n, min(first_at) AS oldest FROM deliveries"
            " WHERE status IN ('pending', 'dead') GROUP BY handler, status"
        ):
            r: dict[str, Any] = row
            entry = out.setdefault(
                r["handler"], {"pending": 0, "dead": 0, "oldest_pending_age": None}
            )
            entry[r["status"]] = int(r["n"])
            if r["status"] == "pending":
                entry["oldest_pending_age"] = max(0.0, now - float(r["oldest"]))
        return out

    def requeue(
        self,
        *,
        event_id: str | None = None,
        dead: bool = False,
        handler: str | None = None,
        handlers: Iterable[str] | None = None,
    ) -> int:
        """Put deliveries back to pending (same event id), optionally only those of
        `handler` / of the `handlers` named. Returns how many rows changed."""
        sql = (
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_at = ?, first_at = ?,"
            " last_error = NULL WHERE 1 = 1"
        )
        now = time.time()
        params: list[Any] = [now, now]
        if event_id is not None:
            sql += " AND seq = (SELECT seq FROM outbox WHERE id = ?)"
            params.append(event_id)
        if dead:
            sql += " AND status = 'dead'"
        if handler is not None:
            sql += " AND handler = ?"
            params.append(handler)
        if handlers is not None:
            names = list(handlers)
            sql += f" AND handler IN ({','.join('?' * len(names)) or 'NULL'})"
            params.extend(names)
        with self.write() as conn:
            return int(conn.execute(sql, params).rowcount)

    # -- OAuth tokens -----------------------------------------------------------------

    def token(self, account_id: int) -> tuple[str | None, str | None, float | None] | None:
        rows = self._query(
            "SELECT access_token, refresh_token, expires_at FROM tokens WHERE account_id = ?",
            (account_id,),
        )
        if not rows:
            return None
        r: dict[str, Any] = rows[0]
        return (r["access_token"], r["refresh_token"], r["expires_at"])

    def save_token(
        self, account_id: int, access: str, refresh: str | None, expires_at: float | None
    ) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT INTO tokens (account_id, access_token, refresh_token, expires_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT(account_id) DO UPDATE SET"
                " access_token = excluded.access_token,"
                " refresh_token = COALESCE(excluded.refresh_token, tokens.refresh_token),"
                " expires_at = excluded.expires_at",
                (account_id, access, refresh, expires_at),
            )

    # -- shards ------------------------------------------------------------------------

    def shard_meta(self) -> tuple[int, int] | None:
        """(shard, shard count) this file records (poller/shards.py), None if none yet."""
        rows = self._query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'shard_meta'"
        )
        if not rows:
            return None
        meta = {r["key"]: int(r["value"]) for r in self._query("SELECT * FROM shard_meta")}
        if "shard" not in meta or "shards" not in meta:
            return None
        return meta["shard"], meta["shards"]

    def claim_shard(self, shard: int, shards: int) -> tuple[int, int]:
        """Record (shard, shard count) on a file that records none yet and return what the
        file records. A file that already holds state but no claim (from before shards)
        is shard 0 of 1. Its own table, created here (not a migration): it is not per
        account, and reshard writes it for each new file."""
        found = self.shard_meta()
        if found is not None:
            return found
        with self.write() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS shard_meta (key TEXT PRIMARY KEY, value INTEGER"
                " NOT NULL)"
            )
            used = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM accounts) OR EXISTS (SELECT 1 FROM outbox)"
            ).fetchone()[0]
            claim = (0, 1) if used else (shard, shards)
            conn.executemany(
                "INSERT OR IGNORE INTO shard_meta (key, value) VALUES (?, ?)",
                [("shard", claim[0]), ("shards", claim[1])],
            )
        found = self.shard_meta()
        assert found is not None
        return found
