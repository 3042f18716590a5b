"""`test-handler` marks what it sends as a test and can replay a stored event; `render`
prints what a handler would send without sending it. Real subprocesses, real peers."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Harness
from tests.delivery._support import (
    SLACK_PATH,
    WEBHOOK_SECRET,
    HttpPeer,
    handlers_toml,
    run_cli,
)


def _config(sim: Harness, hook: HttpPeer, slack: HttpPeer) -> Path:
    a = sim.account
    a.create_todo(a.create_todolist(a.create_project("Ops"), "List"), "Task")
    handlers = [
        {
            "name": "hook",
            "type": "webhook",
            "url": hook.url + "/in",
            "secrets": [WEBHOOK_SECRET],
            "headers": {"Authorization": "Bearer hdr-S3cret-value"},
            "kinds": ["comment_*"],
        },
        {"name": "chat", "type": "slack", "webhook_url": slack.url + SLACK_PATH},
    ]
    return sim.write_config(handlers_toml(handlers), first_sync="emit")


def test_test_handler_marks_the_sample_and_says_when_a_filter_would_exclude_it(
    sim: Harness,
) -> None:
    hook, slack = HttpPeer().start(), HttpPeer().start()
    try:
        config = _config(sim, hook, slack)
        sent = run_cli("test-handler", "hook", "-c", str(config))
        assert sent.returncode == 0, sent.stdout + sent.stderr
        [hit] = hook.hits
        assert hit.json()["test"] is True
        assert "filters (kinds=['comment_*']) would not route this todo_completed" in sent.stderr
        assert 'marked as a test ("test": true)' in sent.stdout
        chat = run_cli("test-handler", "chat", "-c", str(config))
        assert chat.returncode == 0, chat.stdout + chat.stderr
        [message] = slack.hits
        assert message.json()["text"].startswith("*[test] ")
        assert "would not route" not in chat.stderr  # no filter: nothing to say
    finally:
        hook.stop()
        slack.stop()


def test_test_handler_sends_a_stored_event_and_render_shows_it_without_sending(
    sim: Harness,
) -> None:
    hook, slack = HttpPeer().start(), HttpPeer().start()
    try:
        config = _config(sim, hook, slack)
        polled = run_cli("once", "-c", str(config), "--deliver-timeout", "0")
        assert polled.returncode == 0, polled.stderr
        [todo] = [e for e in sim.events() if e["kind"] == "todo_created"]
        slack.hits.clear()

        shown = run_cli("render", "hook", "--event", todo["id"], "-c", str(config))
        assert shown.returncode == 0, shown.stdout + shown.stderr
        out = shown.stdout
        assert f"webhook-id: {todo['id']}" in out and "webhook-signature: v1," in out
        assert f'"id": "{todo["id"]}"' in out and "nothing was sent" in out
        assert "would not route this todo_created" in out
        assert "hdr-S3cret-value" not in out and "Authorization: **********" in out
        chat = run_cli("render", "chat", "--event", todo["id"], "-c", str(config))
        assert chat.returncode == 0, chat.stderr
        assert '"text": "*' in chat.stdout and "Task" in chat.stdout
        assert SLACK_PATH not in chat.stdout and "[test]" not in chat.stdout
        assert hook.hits == [] and slack.hits == []  # render sends nothing

        sent = run_cli("test-handler", "hook", "--event", todo["id"], "-c", str(config))
        assert sent.returncode == 0, sent.stdout + sent.stderr
        [hit] = hook.hits
        assert hit.json()["id"] == todo["id"] and hit.json()["test"] is True
        assert hit.json()["kind"] == "todo_created"

        for command in ("render", "test-handler"):
            bogus = run_cli(command, "hook", "--event", "bcx_nope", "-c", str(config))
            assert bogus.returncode == 2
            assert "no event bcx_nope in the outbox" in bogus.stderr
    finally:
        hook.stop()
        slack.stop()


def test_check_online_reaches_each_handler_without_sending_an_event(sim: Harness) -> None:
    from tests.delivery._support import SMTP_PASSWORD, SmtpPeer, free_port

    hook, smtp = HttpPeer().start(), SmtpPeer().start()
    try:
        handlers = [
            {
                "name": "hook",
                "type": "webhook",
                "url": hook.url + "/in",
                "secrets": [WEBHOOK_SECRET],
            },
            {
                "name": "down",
                "type": "webhook",
                "url": f"http://127.0.0.1:{free_port()}/in",
                "secrets": [WEBHOOK_SECRET],
            },
            {
                "name": "mail",
                "type": "email",
                "host": "127.0.0.1",
                "port": smtp.port,
                "security": "none",
                "username": "bcx",
                "password": SMTP_PASSWORD,
                "from_addr": "bcx@example.com",
                "to": ["ops@example.com"],
            },
            {"name": "file", "type": "jsonl", "path": str(sim.tmp / "events.jsonl")},
            {"name": "run", "type": "script", "command": [str(sim.tmp / "hook.sh")]},
        ]
        (sim.tmp / "hook.sh").write_text('#!/bin/sh\ntouch "$(dirname "$0")/ran"\n')
        (sim.tmp / "hook.sh").chmod(0o755)
        config = sim.write_config(handlers_toml(handlers))
        config.chmod(0o600)
        done = run_cli("check", "--online", "-c", str(config))
        out = done.stdout
        assert done.returncode == 1, out + done.stderr
        assert "OK, authenticated as" in out  # the account
        assert "handler hook: OK: connected to 127.0.0.1" in out
        assert "handler down: FAILED: 127.0.0.1" in out and "cannot connect" in out
        assert "handler mail: OK: connected, logged in as bcx at 127.0.0.1" in out
        assert "handler file: OK:" in out and "can be created" in out
        assert "handler run: OK:" in out and "is executable; not run" in out
        assert not (sim.tmp / "ran").exists()
        assert hook.hits == [] and smtp.box.messages == []  # nothing sent
        assert not (sim.tmp / "events.jsonl").exists()
        assert SMTP_PASSWORD not in out + done.stderr
    finally:
        hook.stop()
        smtp.stop()
