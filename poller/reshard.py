"""`bcx-poller reshard --to N`: move every account's state to the shard files of N shards.

Offline: every daemon of the old and the new shards stopped. Each state file it reads or
writes is locked first (`poller.lock.state_lock`), so it refuses at once, naming the pid,
while any shard's daemon (or `once`, `backfill`, `redeliver`) holds one.

What moves, per account (by `shards.shard_of(account_id, N)`), from the old shard files
(`poller.state_path` with `{shard}` = 0..shards-1, the config as it is now) to the new ones
(`--state-path`, default the same template, with `{shard}` = 0..N-1):

* rows keyed by `account_id`, copied as they are (`PER_ACCOUNT`): the account's status,
  cursor, first-sync and re-list markers (`accounts`), the activity already processed
  (`seen_activity`), conditional-request validators, known records, OAuth tokens;
* the outbox: every event of the account (delivered or not: its id in the outbox is what
  stops a change seen again from being emitted twice). `seq` is per file, so events get
  new ones, in their old order;
* `deliveries`, by event: each row with its status (done stays done, pending stays
  pending with its attempts and next try, dead stays dead), pointed at the event's new
  `seq`.

Nothing is emitted or delivered by reshard; event ids are deterministic, so what the
daemons detect afterwards de-duplicates against the moved outbox exactly as before.

How: the new files are written beside the final names (`<path>.reshard-new`), checked
(every table's row count, the set of event ids and the deliveries' (handler, event,
status, attempts) match the old files'), then swapped: each old file is renamed to
`<path>.pre-reshard-<UTC time>` (kept: delete it once the new shards run well), then each
new one to its final name. Each rename is atomic; the swap as a whole is not: interrupted
in it (a crash between renames), the `.reshard-new` files are complete and the old ones
are intact under their `.pre-reshard-` names, so either finish the renames by hand or
rename the old ones back. A table reshard does not know (`KNOWN_TABLES`) stops it before
anything is written.

Not moved: files handlers keep beside a state file (`slack-threads-<name>.db`, an e-mail
digest's `digest-<name>.jsonl`): with one directory per shard, an account that moves
starts a new Slack thread per item, and reshard warns about a digest spool left in the
directory of a shard that no longer exists (its events were delivered to the spool
already; send it before removing the directory).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poller.errors import ConfigError, StateError
from poller.shards import PLACEHOLDER, shard_of, shard_path

if TYPE_CHECKING:
    from poller.config import Settings

# Every table of the state database, and how it moves. A new table must be added here
# (tests/shards/test_reshard.py fails until it is), or reshard refuses to run.
PER_ACCOUNT: tuple[str, ...] = ("accounts", "seen_activity", "validators", "records", "tokens")
OUTBOX = "outbox"  # per account; `seq` renumbered
BY_EVENT = "deliveries"  # follows its outbox row's new `seq`
PER_FILE: tuple[str, ...] = ("shard_meta", "sqlite_sequence")  # written for each new file
KNOWN_TABLES: frozenset[str] = frozenset((*PER_ACCOUNT, OUTBOX, BY_EVENT, *PER_FILE))

NEW_SUFFIX = ".reshard-new"


@dataclass
class Source:
    shard: int
    path: Path
    accounts: set[int] = field(default_factory=set)


def _tables(conn: sqlite3.Connection, schema: str = "main") -> set[str]:
    rows = conn.execute(f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table'")
    return {str(r[0]) for r in rows}


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [str(r[1]) for r in conn.execute(f"PRAGMA main.table_info({table})")]


def _sidecars(path: Path) -> list[Path]:
    return [path.with_name(path.name + s) for s in ("-wal", "-shm")]


def _open_source(path: Path, shard: int, shards: int) -> Source:
    """An old shard file, migrated to the current schema, its claim and tables checked."""
    from poller.shards import check_claim
    from poller.store import Store

    store = Store(path)
    try:
        stored = store.shard_meta()
        if stored is not None and stored != (shard, shards):
            raise ConfigError(
                "poller.shards",
                f"state file {path} belongs to shard {stored[0]} of {stored[1]}, but the"
                f" config makes it shard {shard} of {shards}: reshard reads the files the"
                " config names now, so set poller.shards and poller.state_path to what the"
                " daemons ran with",
            )
        check_claim(store, shard, shards)
        unknown = _tables(store.conn) - KNOWN_TABLES
        if unknown:
            raise StateError(
                f"state file {path} has table(s) {', '.join(sorted(unknown))} that reshard"
                " does not know how to move; nothing was changed"
            )
        found: set[int] = set()
        for table in (*PER_ACCOUNT, OUTBOX):
            for (aid,) in store.conn.execute(f"SELECT DISTINCT account_id FROM {table}"):
                found.add(int(aid))
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        store.close()
    return Source(shard, path, found)


def _fingerprint(paths: list[Path]) -> dict[str, Any]:
    """What must be equal before and after: row counts per table, event ids, and each
    delivery as (handler, event id, status, attempts)."""
    counts: Counter[str] = Counter()
    ids: list[str] = []
    deliveries: Counter[tuple[str, str, str, int]] = Counter()
    for path in paths:
        conn = sqlite3.connect(path)
        try:
            for table in (*PER_ACCOUNT, OUTBOX, BY_EVENT):
                counts[table] += int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            ids += [str(r[0]) for r in conn.execute("SELECT id FROM outbox")]
            for handler, event_id, status, attempts in conn.execute(
                "SELECT d.handler, o.id, d.status, d.attempts FROM deliveries d"
                " JOIN outbox o ON o.seq = d.seq"
            ):
                deliveries[(str(handler), str(event_id), str(status), int(attempts))] += 1
        finally:
            conn.close()
    return {"counts": dict(counts), "ids": Counter(ids), "deliveries": deliveries}


def _copy(conn: sqlite3.Connection, source: Path, accounts: list[int]) -> None:
    """Copy `accounts`' rows from `source` into the open new file `conn`."""
    wanted = json.dumps(sorted(accounts))
    conn.execute("ATTACH DATABASE ? AS src", (str(source),))
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            mine = "account_id IN (SELECT value FROM json_each(?))"
            for table in PER_ACCOUNT:
                cols = ", ".join(_columns(conn, table))
                conn.execute(
                    f"INSERT INTO main.{table} ({cols}) SELECT {cols} FROM src.{table}"
                    f" WHERE {mine}",
                    (wanted,),
                )
            cols = ", ".join(c for c in _columns(conn, OUTBOX) if c != "seq")
            conn.execute(
                f"INSERT INTO main.outbox ({cols}) SELECT {cols} FROM src.outbox"
                f" WHERE {mine} ORDER BY seq",
                (wanted,),
            )
            moved = [c for c in _columns(conn, BY_EVENT) if c != "seq"]
            conn.execute(
                f"INSERT INTO main.deliveries (seq, {', '.join(moved)})"
                f" SELECT n.seq, {', '.join('d.' + c for c in moved)}"
                " FROM src.deliveries d JOIN src.outbox o ON o.seq = d.seq"
                " JOIN main.outbox n ON n.id = o.id"
                f" WHERE o.{mine} ORDER BY n.seq, d.handler",
                (wanted,),
            )
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.execute("DETACH DATABASE src")


def _remove(path: Path) -> None:
    for p in (path, *_sidecars(path)):
        p.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _spools_left(old: list[Path], new: list[Path]) -> list[Path]:
    """Non-empty e-mail digest spools in the directory of an old shard no new shard uses."""
    kept = {p.parent.resolve() for p in new if p.parent.exists()}
    out = []
    for path in old:
        directory = path.parent
        if directory.exists() and directory.resolve() not in kept:
            out += [s for s in sorted(directory.glob("digest-*.jsonl")) if s.stat().st_size]
    return out


def reshard(
    settings: Settings, to: int, template: str | None = None, *, dry_run: bool = False
) -> int:
    from poller.lock import state_lock
    from poller.store import Store

    if not 1 <= to <= 1024:
        raise ConfigError("--to", f"{to} shards: give 1..1024")
    old_count = settings.poller.shards
    old_template = settings.poller.state_path
    new_template = Path(template) if template else old_template
    if to > 1 and PLACEHOLDER not in str(new_template):
        raise ConfigError(
            "--state-path",
            f"{to} shards need a state file each: {new_template} has no {{shard}} in it; give"
            ' --state-path with {shard} (e.g. "/var/lib/bcx-poller/{shard}/state.db")',
        )
    if to == old_count and str(new_template) == str(old_template):
        print(f"already {to} shard(s) at {old_template}: nothing to move")
        return 0
    old_paths = [shard_path(old_template, k) for k in range(old_count)]
    new_paths = [shard_path(new_template, k) for k in range(to)]
    for path in new_paths:
        if path not in old_paths and path.exists():
            raise StateError(
                f"{path} exists and is not one of the current shards' state files: move it"
                " away first (reshard never overwrites state it was not asked to move)"
            )

    with contextlib.ExitStack() as locks:
        if not dry_run:  # one owner per state file: refuse while any daemon runs
            for path in dict.fromkeys([*old_paths, *new_paths]):
                locks.enter_context(state_lock(path))
        sources = [
            _open_source(path, k, old_count) for k, path in enumerate(old_paths) if path.exists()
        ]
        owners: dict[int, int] = {}
        for source in sources:
            for aid in source.accounts:
                if aid in owners:
                    raise StateError(
                        f"account {aid} has state in two files ({old_paths[owners[aid]]} and"
                        f" {source.path}); nothing was changed"
                    )
                owners[aid] = source.shard
        moves: Counter[tuple[int, int]] = Counter(
            (old, shard_of(aid, to)) for aid, old in owners.items()
        )
        moving = sum(n for (a, b), n in moves.items() if a != b)
        print(
            f"{len(owners)} account(s) with state in {len(sources)} file(s) of {old_count}"
            f" shard(s); to {to} shard(s): {len(owners) - moving} stay, {moving} move"
        )
        for (a, b), n in sorted(moves.items()):
            if a != b:
                print(f"  shard {a} -> {b}: {n} account(s)")
        if dry_run:
            print("dry run: nothing written")
            return 0

        # write the new files beside the final names
        temps = [p.with_name(p.name + NEW_SUFFIX) for p in new_paths]
        try:
            for k, tmp in enumerate(temps):
                _remove(tmp)
                store = Store(tmp)  # the current schema, mode 0600
                try:
                    store.claim_shard(k, to)
                finally:
                    store.close()
                conn = sqlite3.connect(tmp, isolation_level=None)
                try:
                    conn.execute("PRAGMA foreign_keys = ON")
                    conn.execute("PRAGMA synchronous = FULL")
                    for source in sources:
                        mine = [a for a in source.accounts if shard_of(a, to) == k]
                        if mine:
                            _copy(conn, source.path, mine)
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    conn.close()
            before = _fingerprint([s.path for s in sources])
            after = _fingerprint(temps)
            if before != after:
                raise StateError(
                    "the new shard files do not hold what the old ones did"
                    f" (rows {before['counts']} before, {after['counts']} after);"
                    " nothing was changed"
                )
        except BaseException:
            for tmp in temps:
                _remove(tmp)
            raise

        # swap: old files aside (kept), then the new ones in
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        kept = []
        for source in sources:
            aside = source.path.with_name(f"{source.path.name}.pre-reshard-{stamp}")
            for suffix in ("", "-wal", "-shm"):
                part = source.path.with_name(source.path.name + suffix)
                if part.exists():
                    os.replace(part, aside.with_name(aside.name + suffix))
            kept.append(aside)
        for tmp, final in zip(temps, new_paths, strict=True):
            for part in _sidecars(tmp):
                part.unlink(missing_ok=True)  # checkpointed: nothing in them
            os.replace(tmp, final)
        for directory in {p.parent for p in [*new_paths, *old_paths]}:
            _fsync_dir(directory)

    print(f"wrote {to} shard file(s): {', '.join(str(p) for p in new_paths)}")
    if kept:
        print(
            f"old file(s) kept as {', '.join(str(p) for p in kept)}: delete them once the"
            " new shards run well"
        )
    for spool in _spools_left(old_paths, new_paths):
        print(
            f"warning: {spool} holds e-mail digest events of a shard that no longer exists:"
            " send them before removing it",
            file=sys.stderr,
        )
    change = [f"shards = {to}"]
    if str(new_template) != str(old_template):
        change.append(f"state_path = {json.dumps(str(new_template))}")
    print("next: in the configuration file set, under [poller]:")
    for line in change:
        print(f"  {line}")
    print(
        f"then start shards 0..{to - 1} (systemd: systemctl enable --now"
        f" bcx-poller@{{0..{to - 1}}}; Kubernetes: replicas: {to}). Until then a daemon"
        " started with the old shard count exits 2, naming both counts."
    )
    return 0


def cmd_reshard(args: argparse.Namespace) -> int:
    from poller.cli import _settings

    settings = _settings(args, local=True)  # reads no secret: it never talks to Basecamp
    return reshard(settings, args.to, args.state_path, dry_run=args.dry_run)
