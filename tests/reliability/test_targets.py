"""Promise 3, targets misbehaving: through the dispatcher, with many handlers at once, a
dead/slow/erroring webhook, a refusing SMTP server and hanging/crashing/flooding scripts
never hold back the healthy handlers and never lose an event."""

from __future__ import annotations

import sys
import textwrap
import time
from contextlib import ExitStack
from typing import Any

from poller.dispatch import Dispatcher, build_targets
from tests.handlers._receiver import Response, receiver
from tests.handlers._smtp import smtp_server
from tests.reliability.conftest import WEBHOOK_SECRET, Rel, read_jsonl

SCRIPT = textwrap.dedent(
    """\
    import os, sys, time
    mode, flag = sys.argv[1], sys.argv[2]
    sys.stdin.buffer.read()
    if os.path.exists(flag):
        sys.exit(0)
    if mode == "hang":
        time.sleep(60)
    elif mode == "crash":
        sys.exit(3)
    elif mode == "flood":
        out = sys.stdout.buffer
        for _ in range(160):
            out.write(b"x" * 65536)
        sys.exit(0)
    """
)
FAST_RETRY = {"retry_initial": 0.1, "retry_max": 0.3, "max_attempts": 1000}


async def test_misbehaving_targets_never_hold_back_the_others(rel: Rel) -> None:
    script = rel.tmp / "target.py"
    script.write_text(SCRIPT)
    flag = rel.tmp / "healthy"
    out = rel.tmp / "events.jsonl"

    def run(mode: str) -> list[str]:
        return [sys.executable, "-I", "-S", str(script), mode, str(flag)]

    with ExitStack() as stack:
        hooks = {n: stack.enter_context(receiver()) for n in ("slow", "err", "gone", "redir")}
        box, smtp_port = stack.enter_context(smtp_server())
        hooks["slow"].responses = [Response(delay=5) for _ in range(3)]
        hooks["err"].responses = [Response(500, b"oops") for _ in range(50)]
        hooks["gone"].responses = [Response(410, b"gone") for _ in range(50)]
        hooks["redir"].responses = [
            Response(302, b"", {"Location": "http://elsewhere.test/"}) for _ in range(50)
        ]
        box.reject_rcpt["ops@example.com"] = "550 5.1.1 mailbox unavailable"

        def hook(name: str, url: str) -> dict[str, Any]:
            return {
                "name": name,
                "type": "webhook",
                "url": url,
                "secrets": [WEBHOOK_SECRET],
                "timeout": 0.5,
                **FAST_RETRY,
            }

        rel.handlers = [
            {"name": "file", "type": "jsonl", "path": str(out)},
            hook("down", "http://127.0.0.1:9/in"),
            *(hook(n, hooks[n].url + "/in") for n in ("slow", "err", "gone", "redir")),
            {
                "name": "mail",
                "type": "email",
                "host": "127.0.0.1",
                "port": smtp_port,
                "security": "none",
                "from_addr": "bcx@example.com",
                "to": ["ops@example.com"],
                "timeout": 2,
                **FAST_RETRY,
            },
            *(
                {"name": m, "type": "script", "command": run(m), "timeout": 0.5, **FAST_RETRY}
                for m in ("hang", "crash", "flood")
            ),
        ]
        a = rel.account
        p = a.create_project("Targets")
        tl = a.create_todolist(p, "L")
        todo = a.create_todo(tl, "T")
        assert await rel.cycle() is not None
        a.complete_todo(todo)
        a.create_todo(tl, "U")
        a.add_comment("todo", todo, "hello")
        assert await rel.cycle() is not None
        events = rel.events()
        assert len(events) == 3
        ids = [e["id"] for e in events]

        settings = rel.settings()
        dispatcher = Dispatcher(rel.store, build_targets(settings.handlers, rel.tmp))
        started = time.monotonic()
        try:
            await dispatcher.drain(within=1.5)
            assert time.monotonic() - started < 20
            # the healthy handlers got everything, in order, while the others failed
            assert [e["id"] for e in read_jsonl(out)[0]] == ids
            rows = {
                (d.handler, d.event["id"]): d
                for d in rel.store.deliveries(status=("pending", "dead", "done"))
            }
            names = [h["name"] for h in rel.handlers]
            assert len(rows) == len(names) * 3  # one row per (event, handler): nothing lost
            status = {n: sorted({rows[(n, i)].status for i in ids}) for n in names}
            assert status["file"] == ["done"] and status["flood"] == ["done"]
            assert status["gone"] == ["dead"]  # 410: a dead letter with its reason
            assert "410" in (rows[("gone", ids[0])].last_error or "")
            assert status["mail"] == ["dead"]  # 5xx SMTP reply: permanent, kept as dead
            assert "550" in (rows[("mail", ids[0])].last_error or "")
            for n in ("down", "slow", "err", "redir", "hang", "crash"):
                assert "pending" in status[n], (n, status[n])
                assert rows[(n, ids[0])].last_error, n

            # the targets heal: everything still pending is delivered, same ids
            for h in hooks.values():
                h.responses.clear()
            box.reject_rcpt.clear()
            flag.touch()
            assert rel.store.requeue(dead=True, handler="mail") == 3  # `bcx-poller redeliver`
            time.sleep(0.3)
            await dispatcher.drain(within=3)
        finally:
            await dispatcher.aclose()
        left = rel.store.deliveries(status=("pending", "dead"))
        assert {(d.handler, d.status) for d in left} == {("down", "pending"), ("gone", "dead")}
        for n in ("slow", "err", "redir"):
            got = [r.headers.get("webhook-id") for r in hooks[n].requests if r.headers]
            assert set(ids) <= set(got), n
        assert len(box.messages) >= 3
