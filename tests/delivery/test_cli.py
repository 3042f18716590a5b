"""`once`, `deliveries`, `redeliver` and `test-handler` as real subprocesses, against the
loopback simulator and real peers. The first `once` of each test emits the simulator's
to-dos (`first_sync = "emit"`), and handlers take only `todo_created`, so each test knows
its events."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from poller.store import Store
from tests.conftest import Harness
from tests.delivery._support import (
    SLACK_PATH,
    SMTP_PASSWORD,
    WEBHOOK_SECRET,
    HttpPeer,
    SmtpPeer,
    handlers_toml,
    run_cli,
    write_script,
)

FAST = {"retry_initial": 0.05, "retry_max": 0.1}
ONLY = {"kinds": ["todo_created"]}


def hook(name: str, peer: HttpPeer, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "webhook",
        "url": peer.url + "/in",
        "secrets": [WEBHOOK_SECRET],
        **FAST,
        **ONLY,
        **extra,
    }


def setup(sim: Harness, handlers: list[dict[str, Any]], todos: int = 2) -> Path:
    a = sim.account
    tl = a.create_todolist(a.create_project("Ops"), "List")
    for i in range(todos):
        a.create_todo(tl, f"Task {i}")
    return sim.write_config(handlers_toml(handlers), first_sync="emit")


def todo_ids(sim: Harness) -> list[str]:
    return [e["id"] for e in sim.events() if e["kind"] == "todo_created"]


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def dels(config: Path, *flags: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(
        ok(run_cli("deliveries", "-c", str(config), "--json", *flags)).stdout
    )
    return rows


def test_dead_letters_after_max_attempts_and_redeliver_of_one_handler(sim: Harness) -> None:
    a_peer = HttpPeer(statuses=[500] * 3).start()
    b_peer = HttpPeer(statuses=[503] * 3).start()
    try:
        config = setup(sim, [hook("a", a_peer, max_attempts=3), hook("b", b_peer, max_attempts=3)])
        ok(run_cli("once", "-c", str(config), "--deliver-timeout", "5"))
        ids = todo_ids(sim)
        assert len(ids) == 2
        # each handler: event 1 failed 3 times -> dead, then event 2 went out
        assert [h.headers["webhook-id"] for h in a_peer.hits] == [ids[0]] * 3 + [ids[1]]
        text = ok(run_cli("deliveries", "-c", str(config), "--dead")).stdout.splitlines()
        assert text[-1] == "2 deliveries"
        assert text[0].startswith(f"dead    a                {ids[0]} todo_created attempts=3")
        assert "error=webhook a: POST" in text[0] and "HTTP 500" in text[0]
        assert "HTTP 503" in text[1]
        only_a = run_cli("redeliver", "-c", str(config), "--dead", "--handler", "a")
        assert only_a.returncode == 0 and only_a.stdout.strip() == "requeued 1 delivery"
        rows = dels(config)
        assert [(d["handler"], d["event_id"], d["status"], d["attempts"]) for d in rows] == [
            ("a", ids[0], "pending", 0),
            ("b", ids[0], "dead", 3),
        ]
        ok(run_cli("once", "-c", str(config), "--deliver-timeout", "2"))
        assert a_peer.hits[-1].headers["webhook-id"] == ids[0]  # the same event id again
        assert len(a_peer.hits) == 5 and len(b_peer.hits) == 4  # b untouched
    finally:
        a_peer.stop()
        b_peer.stop()


def test_redeliver_one_event_and_nothing_to_requeue(sim: Harness) -> None:
    peer = HttpPeer().start()
    try:
        config = setup(sim, [hook("a", peer), hook("b", peer)])
        ok(run_cli("once", "-c", str(config), "--deliver-timeout", "2"))
        ids = todo_ids(sim)
        assert len(peer.hits) == 4
        # a dead letter of a handler no longer configured is not requeued (never sent)
        store = Store(sim.tmp / "state.db")
        store.commit_cycle(
            __import__("poller.store", fromlist=["CycleWrite"]).CycleWrite(
                sim.account.account_id,
                events=[{**sim.events()[0], "id": "bcx_" + "0" * 32}],
            ),
            lambda _e: ["removed"],
        )
        [gone] = store.deliveries(handler="removed")
        store.mark_failed("removed", gone.seq, "old", None)
        store.close()
        none = run_cli("redeliver", "-c", str(config), "--dead")
        assert none.returncode == 1 and none.stdout.strip() == "requeued 0 deliveries"
        again = run_cli("redeliver", "-c", str(config), "--event", ids[1], "--handler", "b")
        assert again.returncode == 0 and again.stdout.strip() == "requeued 1 delivery"
        ok(run_cli("once", "-c", str(config), "--deliver-timeout", "2"))
        assert len(peer.hits) == 5 and peer.hits[-1].headers["webhook-id"] == ids[1]
        unknown = run_cli("redeliver", "-c", str(config), "--dead", "--handler", "nope")
        assert unknown.returncode == 2 and "configuration error: --handler" in unknown.stderr
    finally:
        peer.stop()


def test_receiver_down_then_up_gets_each_event_once(sim: Harness) -> None:
    peer = HttpPeer()  # down
    config = setup(sim, [hook("hook", peer)], todos=3)
    ok(run_cli("once", "-c", str(config), "--deliver-timeout", "0.5"))
    pending = dels(config)
    assert [d["status"] for d in pending] == ["pending"] * 3
    assert pending[0]["attempts"] >= 2 and pending[1]["attempts"] == 0
    assert "cannot connect" in pending[0]["last_error"]
    peer.start()
    try:
        sim.clock.advance(60)
        ok(run_cli("once", "-c", str(config), "--deliver-timeout", "2"))
    finally:
        peer.stop()
    ids = todo_ids(sim)
    assert len(ids) == 3
    assert [Webhook(WEBHOOK_SECRET).verify(h.body, h.headers)["id"] for h in peer.hits] == ids
    assert dels(config) == []


FLAKY = """
n=$(cat "{dir}/count" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "{dir}/count"
echo "$BCX_EVENT_ID" >> "{dir}/seen"
[ "$n" -ge 3 ] || exit 1
"""


def test_once_waits_for_retries_falling_due_within_the_deliver_timeout(sim: Harness) -> None:
    script = write_script(sim.tmp / "flaky.sh", FLAKY.format(dir=sim.tmp))
    handler = {"name": "run", "type": "script", "command": [str(script)], "retry_initial": 0.3}
    config = setup(sim, [{**handler, **ONLY}], todos=1)
    done = ok(run_cli("once", "-c", str(config), "--deliver-timeout", "5"))
    assert "deliveries: 1 delivered, 0 dead letter(s), 0 still pending" in done.stderr
    [event_id] = todo_ids(sim)
    assert (sim.tmp / "seen").read_text().split() == [event_id] * 3  # on the third try
    # a retry falling due after the timeout is not waited for
    (sim.tmp / "count").write_text("-10")
    config = sim.write_config(handlers_toml([{**handler, **ONLY, "retry_initial": 30}]))
    store = Store(sim.tmp / "state.db")
    assert store.requeue(event_id=event_id) == 1
    store.close()
    started = time.monotonic()
    left = ok(run_cli("once", "-c", str(config), "--deliver-timeout", "1"))
    assert time.monotonic() - started < 6
    assert "deliveries: 0 delivered, 0 dead letter(s), 1 still pending" in left.stderr
    [row] = dels(config)
    assert (row["status"], row["attempts"]) == ("pending", 1)


HANG = """
echo "$BCX_EVENT_ID $$" >> "{dir}/seen"
[ -e "{dir}/hang" ] && exec sleep 60
exit 0
"""


def test_a_delivery_interrupted_by_a_crash_is_retried_after_restart(sim: Harness) -> None:
    script = write_script(sim.tmp / "hang.sh", HANG.format(dir=sim.tmp))
    handler = {"name": "run", "type": "script", "command": [str(script)], "timeout": 120}
    config = setup(sim, [{**handler, **ONLY}])
    (sim.tmp / "hang").touch()
    seen = sim.tmp / "seen"
    proc = subprocess.Popen(
        [sys.executable, "-m", "poller", "once", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not (seen.exists() and seen.read_text().strip()):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # the poller dies mid-delivery
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for line in seen.read_text().splitlines() if seen.exists() else ():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(line.split()[1]), signal.SIGKILL)
    [first] = [line.split()[0] for line in seen.read_text().splitlines()]
    ids = todo_ids(sim)
    assert first == ids[0]
    [row, later] = dels(config)
    assert (row["event_id"], row["status"], row["attempts"]) == (ids[0], "pending", 0)
    assert later["event_id"] == ids[1]
    (sim.tmp / "hang").unlink()
    ok(run_cli("once", "-c", str(config), "--deliver-timeout", "2"))
    assert [line.split()[0] for line in seen.read_text().splitlines()] == [ids[0], *ids]
    assert Store(sim.tmp / "state.db").deliveries() == []


def test_test_handler_sends_a_sample_event_and_reports_the_result(sim: Harness) -> None:
    peer = HttpPeer(statuses=[503]).start()
    smtp = SmtpPeer().start()
    mail = {
        "name": "digest",
        "type": "email",
        "host": "127.0.0.1",
        "port": smtp.port,
        "security": "none",
        "from_addr": "bcx@example.com",
        "to": ["ops@example.com"],
        "digest_minutes": 60,
    }
    config = sim.write_config(handlers_toml([hook("hook", peer), mail]))
    try:
        failed = run_cli("test-handler", "-c", str(config), "hook")
        assert failed.returncode == 1
        assert failed.stdout.startswith("handler hook: FAILED: HandlerError: ")
        assert "HTTP 503" in failed.stdout
        sent = ok(run_cli("test-handler", "-c", str(config), "hook"))
        assert sent.stdout.strip() == (
            'handler hook: delivered the sample event, marked as a test ("test": true)'
        )
        event = Webhook(WEBHOOK_SECRET).verify(peer.hits[-1].body, peer.hits[-1].headers)
        assert event["kind"] == "todo_completed" and event["account_id"] == sim.account.account_id
        # a digest handler sends the sample at once, and keeps it out of the real digest
        digest = ok(run_cli("test-handler", "-c", str(config), "digest"))
        assert digest.stdout.strip() == (
            'handler digest: delivered the sample event, marked as a test ("test": true)'
        )
        [message] = smtp.box.messages
        assert "Design it" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert list(sim.tmp.glob("digest-*")) == []
        unknown = run_cli("test-handler", "-c", str(config), "nope")
        assert unknown.returncode == 2
        assert "no handler named 'nope'; configured: hook, digest" in unknown.stderr
        assert sim.events() == []  # a sample never enters the outbox
    finally:
        peer.stop()
        smtp.stop()


BAD = [
    (
        ["once"],
        {"type": "webhook", "url": "http://127.0.0.1:1/", "secrets": ["whsec_c2hvcnQ="]},
        "handlers[0].secrets",
        "whsec_c2hvcnQ=",
    ),
    (["deliveries"], {"type": "carrier-pigeon"}, "handlers[0].type", None),
    (
        ["test-handler", "h"],
        {"type": "webhook", "secrets": [WEBHOOK_SECRET]},
        "handlers[0].url",
        None,
    ),
    (
        ["redeliver", "--dead"],
        {"type": "script", "command": "notify --all"},
        "handlers[0].command",
        None,
    ),
    (
        ["once"],
        {"type": "jsonl", "path": "/tmp/x.jsonl", "retry_initial": 0},
        "handlers[0].retry_initial",
        None,
    ),
    (
        ["test-handler", "h"],
        {"type": "slack", "webhook_url": "ftp://hooks.example" + SLACK_PATH},
        "handlers[0].webhook_url",
        SLACK_PATH,
    ),
    (
        ["deliveries", "--json"],
        {"type": "jsonl", "path": "/tmp/x.jsonl", "colour": "red"},
        "handlers[0].colour",
        None,
    ),
]


@pytest.mark.parametrize(("command", "handler", "field", "secret"), BAD, ids=[b[2] for b in BAD])
def test_a_bad_handler_config_exits_2_naming_the_field(
    sim: Harness, command: list[str], handler: dict[str, Any], field: str, secret: str | None
) -> None:
    config = sim.write_config(handlers_toml([{"name": "h", **handler}]))
    result = run_cli(*command, "-c", str(config))
    assert result.returncode == 2, (command, result.stdout, result.stderr)
    assert f"configuration error: {field}" in result.stderr
    if secret:
        assert secret not in result.stdout + result.stderr


def test_secrets_never_appear_in_logs_or_deliveries_output(sim: Harness) -> None:
    hook_peer, slack, smtp = HttpPeer(), HttpPeer(), SmtpPeer()  # all down at first
    handlers = [
        hook("hook", hook_peer, max_attempts=2),
        {"name": "chat", "type": "slack", "webhook_url": slack.url + SLACK_PATH, **FAST, **ONLY},
        {
            "name": "mail",
            "type": "email",
            "host": "127.0.0.1",
            "port": smtp.port,
            "security": "none",
            "username": "bot",
            "password": SMTP_PASSWORD,
            "from_addr": "bcx@example.com",
            "to": ["ops@example.com"],
            **FAST,
            **ONLY,
        },
    ]
    config = setup(sim, handlers)
    debug = ("--log-level", "debug")
    outputs = [
        run_cli("once", "-c", str(config), *debug, "--deliver-timeout", "0.5"),
        run_cli("test-handler", "-c", str(config), *debug, "chat"),
    ]
    # up: the webhook refuses (401), Slack fails once (500), SMTP takes the password
    hook_peer.statuses = [401] * 50
    slack.statuses = [500]
    hook_peer.start(), slack.start(), smtp.start()
    try:
        outputs.append(run_cli("once", "-c", str(config), *debug, "--deliver-timeout", "1"))
        # a third-party handler's error may quote a secret: the output still masks it
        store = Store(sim.tmp / "state.db")
        row = store.deliveries()[0]  # the webhook's dead letter
        store.mark_failed(
            row.handler,
            row.seq,
            f"boom {slack.url + SLACK_PATH} {SMTP_PASSWORD} {WEBHOOK_SECRET}",
            None,
        )
        store.close()
        outputs += [
            run_cli("deliveries", "-c", str(config)),
            run_cli("deliveries", "-c", str(config), "--json"),
            run_cli("test-handler", "-c", str(config), "hook"),
        ]
    finally:
        hook_peer.stop(), slack.stop(), smtp.stop()
    text = "\n".join(o.stdout + o.stderr for o in outputs)
    assert "delivery_retry" in text, text
    assert "delivery_dead" in text, text
    assert "boom" in text, text[-3000:]
    assert "HTTP 401" in outputs[-1].stdout
    assert hook_peer.hits and slack.hits and smtp.box.messages
    for secret in (
        WEBHOOK_SECRET,
        WEBHOOK_SECRET.removeprefix("whsec_"),
        SLACK_PATH,
        "sl4ckT0kenS3cretXYZ",
        SMTP_PASSWORD,
    ):
        assert secret not in text
