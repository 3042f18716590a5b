"""`bcx-poller demo`: see events flow within seconds, no Basecamp account needed.

Starts the bundled simulator on loopback with a small demo account, runs the real daemon
against it (console handler, temporary state, 2 s interval), and plays scripted activity:
to-dos completed and re-assigned, comments, a new message, a document trashed without a
feed entry (found by the re-list). Ctrl-C (or `--duration`) ends it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from poller import logs
from poller.config import parse_settings
from poller.simulator import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    Account,
    SimulatorApp,
    account_base_url,
    demo_account,
    serve,
)


def _script(account: Account) -> list[tuple[str, Callable[[], Any]]]:
    """The scripted activity: (what the narrator says, the mutation)."""
    people = [p for p in account.people.values() if p.id != account.owner_id]
    todos = [t for t in account.all_items("todo") if not t.trashed]
    open_todos = [t for t in todos if getattr(t, "completed_at", None) is None]
    project = next(iter(account.live_projects()))
    docs = [d for d in account.all_items("document") if not d.trashed]
    steps: list[tuple[str, Callable[[], Any]]] = []
    if open_todos:
        t = open_todos[0]
        steps.append(
            ("Jane completes a to-do", lambda: account.complete_todo(t.id, by=people[0].id))
        )
        steps.append(
            (
                "Sam comments on it",
                lambda: account.add_comment("todo", t.id, "Nice work, thanks!", by=people[1].id),
            )
        )
    if len(open_todos) > 1:
        t2 = open_todos[1]
        steps.append(
            (
                "Ana re-assigns a to-do",
                lambda: account.update_todo(t2.id, assignee=people[1].id, by=people[2].id),
            )
        )
        steps.append(
            (
                "Ana moves its due date",
                lambda: account.update_todo(t2.id, due_on="2030-01-31", by=people[2].id),
            )
        )
    steps.append(
        (
            "Sam posts a message",
            lambda: account.create_message(
                project.id, "Release notes", "Draft is in the docs.", by=people[1].id
            ),
        )
    )
    if docs:
        d = docs[0]
        steps.append(
            (
                "Someone trashes a document (no feed entry: the re-list finds it)",
                lambda: account.trash_document(d.id, silent=True),
            )
        )
    return steps


async def _play(account: Account, stop: asyncio.Event, pause: float) -> None:
    counter = itertools.count(1)
    steps = _script(account)
    lists = [t for t in account.all_items("todolist") if not t.trashed]
    while not stop.is_set():
        for said, act in steps:
            await asyncio.sleep(pause)
            if stop.is_set():
                return
            print(f"  >> simulator: {said}", flush=True)
            act()
        steps = []
        await asyncio.sleep(pause)
        if lists and not stop.is_set():
            n = next(counter)
            print(f"  >> simulator: a new to-do #{n} is added", flush=True)
            account.create_todo(lists[0].id, f"Follow-up #{n}")


async def _demo(duration: float | None, interval: float) -> int:
    from poller.daemon import Daemon

    account = demo_account()
    app = SimulatorApp(account, users={DEMO_USERNAME: DEMO_PASSWORD})
    with tempfile.TemporaryDirectory(prefix="bcx-poller-demo-") as tmp, serve(app) as base:
        settings = parse_settings(
            {
                "poller": {
                    "state_path": str(Path(tmp) / "state.db"),
                    "interval": interval,
                    "reconcile_interval": 4 * interval,
                    "jitter": 0,
                },
                "accounts": [
                    {
                        "id": account.account_id,
                        "name": "demo",
                        "base_url": account_base_url(base, account.account_id),
                        "user_agent": "bcx-poller demo (demo@example.com)",
                        "username": DEMO_USERNAME,
                        "password": DEMO_PASSWORD,
                    }
                ],
                "handlers": [{"name": "console", "type": "console"}],
            }
        )
        print(f"Basecamp 2 simulator on {base}; polling every {interval:g}s.")
        print("First cycle records a baseline (no events); then watch the changes arrive.")
        print("Press Ctrl-C to stop.\n", flush=True)
        daemon = Daemon(settings, shutdown_timeout=5)
        play = asyncio.create_task(_play(account, daemon.stop_event, interval * 1.5))
        if duration is not None:
            asyncio.get_running_loop().call_later(duration, daemon.stop_event.set)
        code = await daemon.run()
        play.cancel()
        await asyncio.gather(play, return_exceptions=True)
        print("\ndemo stopped.")
        return code


def cmd_demo(args: argparse.Namespace) -> int:
    logs.configure(args.log_level or "warning", "console", stream=sys.stderr)
    return asyncio.run(_demo(args.duration, args.interval))
