"""What one shard's process sees of the configuration (in-process, no I/O)."""

from __future__ import annotations

from pathlib import Path

import pytest

from poller.config import parse_settings
from poller.errors import ConfigError
from poller.shards import chosen_shard, for_shard, shard_of, state_path

ACCOUNTS = [{"id": i, "user_agent": "t (ops@example.com)", "token": "t"} for i in range(9000, 9030)]


def settings(shards: int, path: str = "/srv/bcx/{shard}/state.db", listen: str | None = None):  # type: ignore[no-untyped-def]
    data = {"poller": {"shards": shards, "state_path": path}, "accounts": ACCOUNTS}
    if listen:
        data["metrics"] = {"listen": listen}
    return parse_settings(data)


def test_a_shard_gets_its_accounts_its_file_and_its_port() -> None:
    whole = settings(3, listen="127.0.0.1:947{shard}")
    seen: list[int] = []
    for k in range(3):
        mine = for_shard(whole, k)
        assert mine.poller.state_path == Path(f"/srv/bcx/{k}/state.db")
        assert mine.metrics.listen == f"127.0.0.1:947{k}"
        assert {a.id for a in mine.accounts} == {
            a["id"] for a in ACCOUNTS if shard_of(a["id"], 3) == k
        }
        assert chosen_shard(mine) == (k, 3) and state_path(mine) == mine.poller.state_path
        seen += [a.id for a in mine.accounts]
    assert sorted(seen) == [a["id"] for a in ACCOUNTS]  # each account on exactly one shard


def test_one_shard_needs_no_shard_option() -> None:
    whole = settings(1, path="/srv/bcx/state.db")
    assert chosen_shard(whole) == (0, 1) and state_path(whole) == Path("/srv/bcx/state.db")
    assert for_shard(whole, None).accounts == whole.accounts


def test_several_shards_need_one_and_in_range() -> None:
    whole = settings(2)
    for shard in (None, 2, -1):
        with pytest.raises(ConfigError) as info:
            for_shard(whole, shard)
        assert info.value.field == "--shard"
    with pytest.raises(ConfigError):
        chosen_shard(whole)


def test_several_shards_without_shard_in_state_path_name_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        settings(2, path="/srv/bcx/state.db")
    assert info.value.field == "poller.state_path"
    assert "{shard}" in info.value.reason
