"""The fast paths of issue 12 item 2/3 say exactly what the slow ones said: event ids,
stored JSON, the outbox's sequence numbers, and an unchanged record compared from its
stored text."""

from __future__ import annotations

import gc
import hashlib
import json
import random
import string
from pathlib import Path
from typing import Any

from poller.detect import Detector, relaxed_gc
from poller.events import event_id
from poller.payloads import parse
from poller.store import CycleWrite, Store, StoredRecord, dumps, loads

ACCOUNT = 999


def _stdlib_id(account_id: int, kind: str, rtype: str, rid: int, disc: str) -> str:
    raw = json.dumps([account_id, kind, rtype, str(rid), disc], separators=(",", ":"))
    return "bcx_" + hashlib.sha256(raw.encode()).hexdigest()[:32]


def test_event_ids_are_the_ones_the_stdlib_encoding_gave() -> None:
    rng = random.Random(12)
    alphabet = string.printable + "é\x7f\x00\u2028😀"
    discs = ["2026-01-01T10:00:00.000-05:00|{}", 'a"b\\c', "\t\n", "", "gone:2024"]
    discs += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24))) for _ in range(3000)]
    for disc in discs:
        assert event_id(7, "todo_changed", "Todo", 12, disc) == _stdlib_id(
            7, "todo_changed", "Todo", 12, disc
        ), repr(disc)


def test_stored_json_round_trips_what_orjson_refuses() -> None:
    for value in (
        {"b": 1, "a": [1.5, None, True, "é"]},
        {"big": 2**70, "small": -(2**70)},  # beyond 64 bits: the stdlib writes it
        {"n": 18446744073709551615},
    ):
        text = dumps(value)
        assert loads(text) == value
        assert json.loads(text) == value
    assert dumps({"b": 1, "a": 2}) == '{"a":2,"b":1}'
    # text an earlier version stored (the stdlib's, ASCII-escaped) still reads back
    assert loads(json.dumps({"x": "é"}, separators=(",", ":"), sort_keys=True)) == {"x": "é"}


def _event(eid: str, n: int) -> dict[str, Any]:
    return {
        "id": eid,
        "kind": "todo_created",
        "project": {"id": 1},
        "private": False,
        "created_at": "2026-01-01T00:00:00Z",
        "detected_at": "2026-01-01T00:00:00Z",
        "n": n,
    }


def test_outbox_batches_keep_one_event_per_id_and_autoincrement_order(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    route = lambda _e: ["a", "b"]  # noqa: E731
    first = store.commit_cycle(
        CycleWrite(ACCOUNT, events=[_event("e1", 1), _event("e2", 2), _event("e1", 3)]), route
    )
    assert first == [1, 2]
    # the newest rows pruned: sequence numbers are never given twice (AUTOINCREMENT)
    with store.write() as conn:
        conn.execute("DELETE FROM deliveries WHERE seq = 2")
        conn.execute("DELETE FROM outbox WHERE seq = 2")
    again = store.commit_cycle(
        CycleWrite(ACCOUNT, events=[_event("e1", 4), _event("e3", 5)]), route
    )
    assert again == [3]
    assert [(e["id"], e["n"]) for e in store.events()] == [("e1", 1), ("e3", 5)]
    assert {(d.handler, d.seq) for d in store.deliveries()} == {
        ("a", 1),
        ("b", 1),
        ("a", 3),
        ("b", 3),
    }
    assert store.commit_cycle(CycleWrite(ACCOUNT, events=[_event("e3", 6)]), route) == []
    store.close()


def _todo(content: str, *, name: str = "Jane") -> dict[str, Any]:
    return {
        "id": 5,
        "todolist_id": 9,
        "content": content,
        "updated_at": "2026-01-01T10:00:00.000-05:00",
        "created_at": "2026-01-01T09:00:00.000-05:00",
        "completed": False,
        "assignee": {"id": 3, "type": "Person", "name": name},
        "url": "https://basecamp.test/1/api/v1/projects/4/todos/5.json",
    }


def _observe(store: Store, item: dict[str, Any]) -> list[Any]:
    det = Detector(store, ACCOUNT)
    det.preload("Todo", 4)
    out = det.observe(parse("Todo", item, "https://basecamp.test/x.json", 4))
    write = det.to_write()
    store.commit_cycle(write, lambda _e: [])
    return [o.kind for o in out]


def test_an_unchanged_record_is_compared_from_its_stored_text(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    assert _observe(store, _todo("Ship ✓")) == ["todo_created"]
    stored = store.record(ACCOUNT, "Todo", 5)
    assert stored is not None and stored.text is not None  # not parsed on reading
    assert _observe(store, _todo("Ship ✓")) == []
    assert _observe(store, _todo("Ship ✓", name="Janet")) == ["todo_assignment_changed"]
    assert _observe(store, _todo("Ship ✓", name="Janet")) == []
    # a stored text from before (the stdlib's, ASCII-escaped) takes the long way: same answer
    with store.write() as conn:
        row = conn.execute("SELECT data FROM records WHERE id = 5").fetchone()
        old = json.dumps(json.loads(row[0]), separators=(",", ":"), sort_keys=True)
        assert old != row[0]
        conn.execute("UPDATE records SET data = ? WHERE id = 5", (old,))
    assert _observe(store, _todo("Ship ✓", name="Janet")) == []
    assert _observe(store, _todo("Ship ✗", name="Janet")) == ["todo_content_changed"]
    store.close()


def test_stored_records_compare_by_value_whether_parsed_or_not() -> None:
    data = {"title": "t", "fields": {"a": 1}, "meta": {}}
    cols = ("Todo", 1, 4, None, None, "2026", "active")
    from_text = StoredRecord(*cols, text=dumps(data))
    from_dict = StoredRecord(*cols, data=json.loads(json.dumps(data)))
    assert from_text.text is not None
    assert from_text == from_dict
    assert from_text.data == data and from_text.text is None  # may change in place now
    from_text.data["fields"]["a"] = 2
    assert from_text.dumped() == dumps({"title": "t", "fields": {"a": 2}, "meta": {}})
    assert from_text != from_dict
    gone = from_dict.with_state("gone")
    assert gone.state == "gone" and gone.data is from_dict.data


def test_relaxed_gc_nests_and_restores_the_threshold() -> None:
    before = gc.get_threshold()
    with relaxed_gc():
        raised = gc.get_threshold()
        assert raised[0] >= 50_000 and raised[1:] == before[1:]
        with relaxed_gc():
            assert gc.get_threshold() == raised
        assert gc.get_threshold() == raised  # an overlapping cycle still runs
    assert gc.get_threshold() == before


def test_change_discriminators_are_the_stdlib_encoding() -> None:
    """`_note`'s discriminator (part of the event id) written directly for plain values:
    the very text `json.dumps(..., sort_keys=True, default=str)` gives, or the stdlib's."""
    from poller.detect import _plain_json

    rng = random.Random(5)
    alphabet = string.printable + 'é"\\\x7f\x00'

    def value(depth: int = 0) -> Any:
        pick = rng.randrange(9 if depth < 2 else 6)
        if pick == 0:
            return None
        if pick == 1:
            return rng.choice([True, False])
        if pick == 2:
            return rng.randint(-(2**70), 2**70)
        if pick == 3:
            return rng.random() * 100
        if pick in (4, 5):
            return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        if pick == 6:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        keys = ["id", "name", "type", "x y", 'q"', "é"]
        return {rng.choice(keys): value(depth + 1) for _ in range(rng.randint(0, 3))}

    plain = 0
    for _ in range(5000):
        changes = {rng.choice(["content", "due_on", "assignee", "completed"]): value()}
        expected = json.dumps(changes, sort_keys=True, default=str)
        got = _plain_json(changes)
        assert got is None or got == expected, (changes, got, expected)
        plain += got is not None
    assert plain > 1000  # the direct way is the usual one
