"""The mapping of accounts to shards: Lamping & Veach's jump consistent hash over a stable
64-bit key of the account id."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from poller.errors import ConfigError
from poller.shards import account_key, jump_hash, parse_shard, requested_shard, shard_of

IDS = range(1_000_000, 1_030_000)


@pytest.mark.parametrize(
    ("key", "buckets", "bucket"),
    # the published test vectors of other implementations (Guava, go-jump)
    [(1, 1, 0), (42, 57, 43), (0xDEAD10CC, 1, 0), (0xDEAD10CC, 666, 361), (256, 1024, 520)],
)
def test_jump_hash_matches_the_reference_vectors(key: int, buckets: int, bucket: int) -> None:
    assert jump_hash(key, buckets) == bucket


def test_the_mapping_is_deterministic_across_processes_and_hash_seeds() -> None:
    here = [shard_of(i, 7) for i in range(5000, 5200)]
    code = "from poller.shards import shard_of; print([shard_of(i, 7) for i in range(5000, 5200)])"
    for seed in ("0", "12345", "random"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        assert out.strip() == str(here)
    assert account_key(123) == account_key(123) and 0 <= account_key(123) < 2**64


@pytest.mark.parametrize("shards", [2, 3, 4, 7, 16])
def test_accounts_are_balanced_over_the_shards(shards: int) -> None:
    counts = Counter(shard_of(i, shards) for i in IDS)
    assert sorted(counts) == list(range(shards))
    expected = len(IDS) / shards
    for k, n in counts.items():
        assert abs(n - expected) / expected < 0.05, (k, n, expected)


@pytest.mark.parametrize("shards", [1, 2, 3, 5, 9])
def test_one_more_shard_moves_about_one_in_n_plus_1_and_only_to_the_new_one(shards: int) -> None:
    moved = [i for i in IDS if shard_of(i, shards) != shard_of(i, shards + 1)]
    assert all(shard_of(i, shards + 1) == shards for i in moved)
    share = len(moved) / len(IDS)
    assert abs(share - 1 / (shards + 1)) < 0.01, share


def test_one_shard_holds_everything() -> None:
    assert {shard_of(i, 1) for i in range(1000)} == {0}


def test_a_shard_is_a_number_a_pod_name_or_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_shard("2") == 2
    assert parse_shard("bcx-poller-12") == 12
    monkeypatch.setenv("BCX_POLLER_SHARD", "bcx-poller-3")
    assert parse_shard("auto") == 3
    assert requested_shard(None) == 3  # no --shard: the variable
    assert requested_shard("1") == 1  # --shard wins
    monkeypatch.delenv("BCX_POLLER_SHARD")
    monkeypatch.setenv("HOSTNAME", "bcx-poller-5")
    assert parse_shard("auto") == 5  # a StatefulSet pod's host name is its pod name
    assert requested_shard(None) is None
    for bad in ("", "two", "bcx-poller-"):
        with pytest.raises(ConfigError) as info:
            parse_shard(bad)
        assert info.value.field == "--shard"
