"""Static shards: which process polls which account.

`[poller] shards = N` splits the configured accounts over N processes. Shard K polls the
accounts whose id `jump_hash`es to K, keeps them in its own state file (`state_path` with
`{shard}` replaced by K; `metrics.listen` too, for shards sharing a host) and is started
with `--shard K` (or `$BCX_POLLER_SHARD`). The mapping is a jump consistent hash (Lamping
& Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm", 2014): going from N to N+1
shards moves about 1/(N+1) of the accounts, all of them to the new shard. Its key is a
stable 64-bit digest of the account id (the first 8 bytes of BLAKE2b of the decimal id):
the same on every machine, Python version and run, unlike `hash()`.

Each state file records the shard it belongs to and the shard count (`Store.claim_shard`);
opening it as another shard, or with another count, is a configuration error (exit 2)
naming both: two processes must never poll one account from two files, and a changed
`shards` needs `bcx-poller reshard` first (poller/reshard.py). A state file from before
shards existed is adopted as shard 0 of 1.

This module is imported by `bcx-poller --help`'s code path: nothing heavy at its top.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from poller.errors import ConfigError

if TYPE_CHECKING:
    from poller.config import Settings
    from poller.store import Store

SHARD_ENV = "BCX_POLLER_SHARD"
PLACEHOLDER = "{shard}"
_MASK64 = (1 << 64) - 1
_TRAILING_NUMBER = re.compile(r"^(?:.*\D)?(\d+)$")


def jump_hash(key: int, buckets: int) -> int:
    """The bucket in `range(buckets)` of a 64-bit `key` (Lamping & Veach 2014, Figure 1)."""
    if buckets < 1:
        raise ValueError("buckets must be at least 1")
    key &= _MASK64
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & _MASK64
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def account_key(account_id: int) -> int:
    """A stable 64-bit key of an account id (never Python's `hash()`, which is salted)."""
    digest = hashlib.blake2b(str(int(account_id)).encode("ascii"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_of(account_id: int, shards: int) -> int:
    """The shard that owns `account_id` when there are `shards` of them."""
    return jump_hash(account_key(account_id), shards)


def shard_path(template: Path | str, shard: int) -> Path:
    """`state_path` of one shard: `{shard}` replaced by its number (no other formatting,
    so a path may hold other braces)."""
    return Path(str(template).replace(PLACEHOLDER, str(shard)))


def parse_shard(value: str, *, what: str = "--shard") -> int:
    """`2`, a pod or host name ending in its ordinal (`bcx-poller-2`), or `auto`:
    `$BCX_POLLER_SHARD`, else the host name's trailing number (a StatefulSet pod's host
    name is its pod name)."""
    text = value.strip()
    if text == "auto":
        env = os.environ.get(SHARD_ENV, "").strip()
        if env and env != "auto":
            return parse_shard(env, what=f"${SHARD_ENV}")
        host = os.environ.get("HOSTNAME") or socket.gethostname()
        return parse_shard(host, what=f"--shard auto (host name {host!r})")
    found = _TRAILING_NUMBER.match(text)
    if not found:
        raise ConfigError(
            what,
            f"{value!r} is not a shard: give a number (2), a pod name ending in it"
            " (bcx-poller-2), or auto",
        )
    return int(found.group(1))


def requested_shard(value: str | None) -> int | None:
    """The shard a command asked for: `--shard`, else `$BCX_POLLER_SHARD`, else None."""
    if value is not None:
        return parse_shard(value)
    env = os.environ.get(SHARD_ENV, "").strip()
    return parse_shard(env, what=f"${SHARD_ENV}") if env else None


def for_shard(settings: Settings, shard: int | None) -> Settings:
    """`settings` as shard `shard` sees them: only its accounts, its own state file.

    `shard=None` is fine only with `shards = 1` (shard 0). Out of range, or missing with
    several shards: `ConfigError` (exit 2)."""
    count = settings.poller.shards
    if shard is None:
        if count > 1:
            raise ConfigError(
                "--shard",
                f"poller.shards is {count}: say which shard this process is, --shard 0..{count - 1}"
                f" (or ${SHARD_ENV})",
            )
        shard = 0
    if not 0 <= shard < count:
        raise ConfigError(
            "--shard",
            f"shard {shard} is out of range: poller.shards = {count}, so 0..{count - 1}",
        )
    poller = settings.poller.model_copy(
        update={"state_path": shard_path(settings.poller.state_path, shard)}
    )
    accounts = tuple(a for a in settings.accounts if shard_of(a.id, count) == shard)
    metrics = settings.metrics
    if metrics.listen and PLACEHOLDER in metrics.listen:  # shards on one host: a port each
        metrics = metrics.model_copy(
            update={"listen": metrics.listen.replace(PLACEHOLDER, str(shard))}
        )
    chosen = settings.model_copy(
        update={"poller": poller, "accounts": accounts, "metrics": metrics}
    )
    chosen._shard = shard
    return chosen


def chosen_shard(settings: Settings) -> tuple[int, int]:
    """(shard, shard count) of settings from `for_shard`; (0, 1) for unsharded settings
    with `shards = 1`."""
    count = settings.poller.shards
    if settings._shard is not None:
        return settings._shard, count
    if count > 1:
        raise ConfigError("--shard", f"poller.shards is {count}: this command needs --shard")
    return 0, 1


def state_path(settings: Settings) -> Path:
    """The state file these settings use (a shard's, or the one file of one shard)."""
    if settings._shard is not None:
        return settings.poller.state_path
    chosen_shard(settings)  # several shards and none chosen: an error
    return shard_path(settings.poller.state_path, 0)


def check_claim(store: Store, shard: int, count: int) -> None:
    """The state file must belong to this shard of this many (recorded on first open;
    an older file holding state is shard 0 of 1). Exit 2 naming both otherwise."""
    stored = store.claim_shard(shard, count)
    if stored == (shard, count):
        return
    if stored[1] != count:
        hint = (
            f"set poller.shards = {stored[1]} (the count the state files were made for);"
            " `bcx-poller reshard --to N`, with the daemons stopped, changes it"
        )
    else:
        hint = "point poller.state_path at that shard's own file (with {shard} in it)"
    raise ConfigError(
        "poller.shards" if stored[1] != count else "--shard",
        f"state file {store.path} belongs to shard {stored[0]} of {stored[1]}, but this"
        f" process is shard {shard} of {count} (poller.shards = {count}): {hint}",
    )


def open_store(settings: Settings) -> Store:
    """The state database of these settings' shard, its shard claim checked."""
    from poller.store import Store

    shard, count = chosen_shard(settings)
    store = Store(state_path(settings))
    try:
        check_claim(store, shard, count)
    except BaseException:
        store.close()
        raise
    return store
