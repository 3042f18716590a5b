"""The `bcx-poller` command line.

Exit codes: 0 success, 1 an account could not be polled (or a check failed),
2 bad configuration or usage, 130 / 143 the daemon stopped at once by a second
SIGINT / SIGTERM, 141 the output was cut short by a closed pipe (`status | head -1`):
like a Unix tool killed by SIGPIPE (128 + 13), quietly, without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poller import __version__
from poller.errors import ConfigError, PollerError

if TYPE_CHECKING:
    from poller.config import Settings

# Each command imports what it uses, in its own body: `bcx-poller --help` and `check` must
# not pay for the daemon, APScheduler, the simulator or the handlers' HTTP and template
# libraries (tests/cli/test_lazy_imports.py).


def _settings(args: argparse.Namespace, *, local: bool = False) -> Settings:
    """The configuration. `local`: for a command that only reads or writes the local state
    (status, events, deliveries, redeliver): no `*_env` / `*_file` secret is read, so it
    works without the Basecamp password or `$CREDENTIALS_DIRECTORY`."""
    import structlog

    from poller import logs
    from poller.config import (
        SecretsMode,
        config_path,
        insecure_permissions,
        load_settings,
        secrets_mode,
    )

    path = config_path(args.config)
    mode: SecretsMode = "skip" if local else "resolve"
    settings = load_settings(path, secrets=mode)
    from handlers.format import set_timezone

    set_timezone(settings.poller.timezone)
    level = getattr(args, "log_level", None) or settings.logging.level
    logs.configure(level, settings.logging.format)
    with secrets_mode(mode):
        logs.register_secrets(_secret_values(settings))
    if insecure_permissions(path):
        structlog.get_logger("poller.cli").warning(
            "config_writable_by_others",
            path=str(path),
            hint="chmod go-w: anyone who can write it can redirect your events",
        )
    if hasattr(args, "shard") and not getattr(args, "all_shards", False):
        # a command on one state file: this shard's accounts and file only
        from poller.shards import for_shard, requested_shard

        settings = for_shard(settings, requested_shard(args.shard))
    return settings


def _secret_values(settings: Settings) -> list[str]:
    """Every secret of the configuration that was read, for the log redaction processor."""
    from pydantic import BaseModel, SecretStr

    from handlers.registry import validate_handler_settings
    from poller.config import is_unresolved

    out: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, SecretStr):
            if not is_unresolved(value):  # a secret a local command did not read
                out.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk(settings)
    for index, handler in enumerate(settings.handlers):
        walk(validate_handler_settings(handler, field=f"handlers[{index}]"))
    return out


def _store(settings: Settings) -> Any:
    """The state database of the settings' shard (its shard claim checked: exit 2 when the
    file belongs to another shard or shard count)."""
    from poller.shards import open_store

    return open_store(settings)


def add_shard_option(p: argparse.ArgumentParser) -> None:
    """`--shard K` for a command that reads or writes one shard's state file."""
    p.add_argument(
        "--shard",
        metavar="K",
        help="this shard, 0..poller.shards-1: a number, a pod name ending in it"
        " (bcx-poller-2), or auto ($BCX_POLLER_SHARD, else the host name's trailing"
        " number); default $BCX_POLLER_SHARD; needed when poller.shards > 1",
    )


def _run_async(main: Coroutine[Any, Any, int]) -> int:
    import asyncio  # ~70 ms: not for `--help`

    return asyncio.run(main)


# -- commands -------------------------------------------------------------------------


async def _once(settings: Settings, deliver_timeout: float) -> int:
    from poller.accounts import open_account, run_cycle
    from poller.dispatch import Dispatcher, build_targets
    from poller.routing import router

    store = _store(settings)
    targets = build_targets(
        settings.handlers, settings.poller.state_path.parent, state_path=settings.poller.state_path
    )
    dispatcher = Dispatcher(store, targets)
    route = router(settings.handlers)
    status = 0
    try:
        for account in settings.accounts:
            runner = open_account(account, store=store)
            try:
                report = await run_cycle(runner, store, settings.poller, route)
            finally:
                await runner.aclose()
            if report is None:
                status = 1
                print(f"account {account.label}: FAILED: {runner.last_error}", file=sys.stderr)
            else:
                what = "baseline recorded" if report.baseline else f"{report.added} new event(s)"
                print(
                    f"account {account.label}: {what}, {report.requests} request(s)",
                    file=sys.stderr,
                )
        before = {
            (d.handler, d.seq): d
            for d in store.deliveries(status=("pending",))
            if d.handler in targets
        }
        await dispatcher.drain(deliver_timeout)
        if targets:
            _report_deliveries(settings, store, before, targets)
    finally:
        await dispatcher.aclose()
        store.close()
    return status


def _report_deliveries(
    settings: Settings, store: Any, before: dict[tuple[str, int], Any], targets: Any
) -> None:
    """What this run's deliveries came to, counted per delivery (an event sent to three
    handlers is three deliveries), each new dead letter named."""
    pending = {(d.handler, d.seq) for d in store.deliveries(status=("pending",))}
    dead_now = {(d.handler, d.seq): d for d in store.deliveries(status=("dead",))}
    dead = [dead_now[k] for k in before if k in dead_now]
    delivered = sum(1 for k in before if k not in pending and k not in dead_now)
    waiting = sum(1 for k in pending if k[0] in targets)
    events = len({seq for _h, seq in before})
    print(
        f"deliveries: {delivered} delivered, {len(dead)} dead letter(s),"
        f" {waiting} still pending ({events} event(s) to {len(targets)} handler(s))",
        file=sys.stderr,
    )
    mask = _masker(settings)
    for d in dead:
        print(
            f"dead letter: handler {d.handler}, event {d.event.get('id')}"
            f" ({d.event.get('kind')}) after {d.attempts} attempt(s): {mask(d.last_error)}",
            file=sys.stderr,
        )
    if dead:
        print("  list them: bcx-poller deliveries --dead; retry: redeliver --dead", file=sys.stderr)


def cmd_once(args: argparse.Namespace) -> int:
    from poller.lock import state_lock

    settings = _settings(args)
    with state_lock(settings.poller.state_path):
        return _run_async(_once(settings, args.deliver_timeout))


async def _check_online(settings: Settings) -> int:
    from poller.accounts import open_account
    from poller.shards import for_shard, shard_of

    status = 0
    for account in settings.accounts:
        # OAuth tokens live in the state file of the account's shard
        shard = shard_of(account.id, settings.poller.shards)
        store = _store(for_shard(settings, shard)) if account.oauth else None
        runner = open_account(account, store=store)
        try:
            res = await runner.client.get("/people/me.json")
            data = getattr(res, "data", {}) or {}
            print(
                f"account {account.label}: OK, authenticated as"
                f" {data.get('name')} <{data.get('email_address')}>"
            )
        except PollerError as exc:
            status = 1
            print(f"account {account.label}: FAILED: {type(exc).__name__}: {exc}")
        finally:
            await runner.aclose()
            if store is not None:
                store.close()
    return max(status, await _probe_handlers(settings))


async def _probe_handlers(settings: Settings) -> int:
    """Each handler reached without sending an event (connect / TLS handshake / SMTP
    login, a script that exists and may run, a jsonl file that can be written)."""
    import tempfile

    from poller.dispatch import build_targets

    status = 0
    with tempfile.TemporaryDirectory(prefix="bcx-check-") as scratch:
        targets = build_targets(settings.handlers, Path(scratch))
        try:
            for name, target in targets.items():
                probe = getattr(target.handler, "probe", None)
                if probe is None:
                    print(f"handler {name}: not checked (type {target.settings.type} has no probe)")
                    continue
                try:
                    print(f"handler {name}: OK: {await probe()}")
                except Exception as exc:  # whatever the handler raised
                    status = 1
                    print(f"handler {name}: FAILED: {_masked(str(exc), settings)}")
        finally:
            for target in targets.values():
                with contextlib.suppress(Exception):
                    await target.handler.aclose()
    return status


def cmd_check(args: argparse.Namespace) -> int:
    from poller.check import config_warnings
    from poller.config import config_path, read_toml

    settings = _settings(args)  # every error at once, exit 2
    path = config_path(args.config)
    warnings = config_warnings(path, read_toml(path), settings)
    print(
        f"configuration OK: {len(settings.accounts)} account(s),"
        f" {len(settings.handlers)} handler(s)"
        + (f", {len(warnings)} warning(s)" if warnings else "")
    )
    for warning in warnings:
        print(f"warning: {warning}")
    if args.online:
        return _run_async(_check_online(settings))
    return 0


def _ago(ts: float | None) -> str:
    if ts is None:
        return "never"
    return f"{max(0.0, time.time() - ts):.0f}s ago"


def iso_time(ts: float | None) -> str | None:
    """An epoch time as `--json` outputs give every time: ISO 8601, UTC, milliseconds,
    like the events' `detected_at` (`2026-11-28T16:00:51.120Z`)."""
    if ts is None:
        return None
    when = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    return when.replace("+00:00", "Z")


def _account_state(last_attempt_at: float | None, last_error: str | None) -> str:
    """`never polled`, `ok`, or `failing` (the last cycle failed; `last_error` says why,
    beginning with the reason when it is a lasting one, e.g. `unauthorized: check the
    password or token`)."""
    if last_attempt_at is None:
        return "never polled"
    return "failing" if last_error else "ok"


def _status_of(settings: Settings) -> dict[str, Any]:
    """What `status` shows of one state file: its accounts, handler queues and outbox."""
    store = _store(settings)
    try:
        accounts = []
        for acc in settings.accounts:
            st = store.account(acc.id)
            accounts.append(
                {
                    "account_id": acc.id,
                    "name": acc.name,
                    "state": _account_state(st.last_attempt_at, st.last_error),
                    "baseline_done": st.baseline_done,
                    "cursor": st.cursor,
                    "last_success_at": iso_time(st.last_success_at),
                    "lag_seconds": None
                    if st.last_success_at is None
                    else round(time.time() - st.last_success_at, 1),
                    "last_attempt_at": iso_time(st.last_attempt_at),
                    "last_error": st.last_error,
                    "last_reconcile_at": iso_time(st.last_reconcile_at),
                    "cycles": st.cycles,
                    "records": store.count_records(acc.id),
                }
            )
        counts = store.delivery_counts()
        handlers = [
            {
                "name": h.name,
                "type": h.type,
                **counts.get(h.name, {"pending": 0, "dead": 0, "oldest_pending_age": None}),
            }
            for h in settings.handlers
        ]
        return {"accounts": accounts, "handlers": handlers, "outbox": store.outbox_count()}
    finally:
        store.close()


def cmd_status(args: argparse.Namespace) -> int:
    settings = _settings(args, local=True)
    if args.all_shards:
        return _status_all_shards(settings, as_json=args.json)
    out = _status_of(settings)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    _print_status(out)
    return 0


def _status_all_shards(settings: Settings, *, as_json: bool) -> int:
    """`status --all-shards`: every shard's state file, then the totals."""
    from poller.shards import for_shard

    shards = []
    for shard in range(settings.poller.shards):
        narrowed = for_shard(settings, shard)
        data = _status_of(narrowed)
        shards.append({"shard": shard, "state_path": str(narrowed.poller.state_path), **data})
    states: dict[str, int] = {}
    for entry in shards:
        for a in entry["accounts"]:
            states[a["state"]] = states.get(a["state"], 0) + 1
    handlers = []
    for h in settings.handlers:
        mine = [x for entry in shards for x in entry["handlers"] if x["name"] == h.name]
        ages = [x["oldest_pending_age"] for x in mine if x["oldest_pending_age"] is not None]
        handlers.append(
            {
                "name": h.name,
                "type": h.type,
                "pending": sum(x["pending"] for x in mine),
                "dead": sum(x["dead"] for x in mine),
                "oldest_pending_age": max(ages) if ages else None,
            }
        )
    total = {
        "shards": len(shards),
        "accounts": sum(len(entry["accounts"]) for entry in shards),
        "states": states,
        "records": sum(a["records"] for entry in shards for a in entry["accounts"]),
        "outbox": sum(entry["outbox"] for entry in shards),
        "handlers": handlers,
    }
    if as_json:
        print(json.dumps({"shards": shards, "total": total}, indent=2))
        return 0
    for entry in shards:
        print(f"== shard {entry['shard']} of {len(shards)}: {entry['state_path']}")
        _print_status(entry)
        print()
    print(f"== total over {len(shards)} shards")
    summary = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    print(
        f"{total['accounts']} account(s) ({summary or 'none'}), {total['records']} record(s),"
        f" outbox: {total['outbox']} events"
    )
    _print_handlers(handlers)
    return 0


def _print_handlers(handlers: list[dict[str, Any]]) -> None:
    from poller.commands import human_age, render_table

    print(
        render_table(
            ["HANDLER", "TYPE", "PENDING", "DEAD", "OLDEST PENDING"],
            [
                [
                    h["name"],
                    h["type"],
                    h["pending"],
                    h["dead"],
                    human_age(h["oldest_pending_age"]) if h["oldest_pending_age"] else None,
                ]
                for h in handlers
            ],
            right=(2, 3),
        )
    )


def _print_status(out: dict[str, Any]) -> None:
    from poller.commands import human_age, render_table

    def _utc(iso: str | None) -> str | None:
        return None if iso is None else iso[:19].replace("T", " ") + "Z"

    print(
        render_table(
            [
                "ACCOUNT",
                "NAME",
                "STATE",
                "LAST SUCCESS (UTC)",
                "LAG",
                "CURSOR",
                "RECORDS",
                "CYCLES",
                "LAST ERROR",
            ],
            [
                [
                    a["account_id"],
                    a["name"],
                    a["state"],
                    _utc(a["last_success_at"]),
                    human_age(a["lag_seconds"]) if a["lag_seconds"] is not None else "never",
                    a["cursor"],
                    a["records"],
                    a["cycles"],
                    a["last_error"],
                ]
                for a in out["accounts"]
            ],
            right=(6, 7),
        )
    )
    print()
    _print_handlers(out["handlers"])
    print(f"\noutbox: {out['outbox']} events")


def cmd_deliveries(args: argparse.Namespace) -> int:
    from poller.dispatch import describe

    settings = _settings(args, local=True)
    store = _store(settings)
    try:
        rows = [
            describe(d)
            for d in store.deliveries(status=("dead",) if args.dead else ("pending", "dead"))
        ]
    finally:
        store.close()
    mask = _masker(settings)
    for r in rows:  # an error text may quote a secret (a third-party handler's message)
        r["last_error"] = mask(r["last_error"])
        r["next_at"] = iso_time(r["next_at"])
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(
                f"{r['status']:7} {r['handler']:16} {r['event_id']} {r['kind']}"
                f" attempts={r['attempts']}"
                + (f" error={r['last_error']}" if r["last_error"] else "")
            )
        print(f"{len(rows)} deliver{'y' if len(rows) == 1 else 'ies'}")
    return 0


def cmd_redeliver(args: argparse.Namespace) -> int:
    settings = _settings(args, local=True)
    if args.handler and args.handler not in {h.name for h in settings.handlers}:
        raise ConfigError("--handler", f"no handler named {args.handler!r}")
    from poller.lock import state_lock

    with state_lock(settings.poller.state_path):
        n, why = _requeue(settings, args)
    print(f"requeued {n} deliver{'y' if n == 1 else 'ies'}")
    if why:
        print(f"bcx-poller: {why}", file=sys.stderr)
    return 0 if n else 1


def _requeue(settings: Settings, args: argparse.Namespace) -> tuple[int, str | None]:
    """Requeue; (how many, why nothing was when nothing was)."""
    names = [h.name for h in settings.handlers]  # no-one would ever send the rest
    store = _store(settings)
    try:
        n = int(
            store.requeue(
                event_id=args.event,
                dead=args.dead,
                handler=args.handler,
                handlers=names,
            )
        )
        if n:
            return n, None
        only = f" for handler {args.handler}" if args.handler else ""
        if args.event is None:
            return 0, f"no dead letter to requeue{only}"
        rows = store.event_deliveries(args.event)
        if rows is None:
            return 0, f"no event {args.event} in the outbox (see bcx-poller events)"
        mine = [r for r in rows if r[0] in names and (not args.handler or r[0] == args.handler)]
        if not mine:
            routed = ", ".join(sorted(r[0] for r in rows)) or "no handler"
            return 0, (
                f"event {args.event} has no delivery{only} among the configured handlers"
                f" (it was routed to {routed})"
            )
        return 0, f"event {args.event}: nothing to requeue{only}"
    finally:
        store.close()


def _chosen_handler(settings: Settings, name: str) -> Any:
    chosen = [h for h in settings.handlers if h.name == name]
    if not chosen:
        raise ConfigError(
            "handler",
            f"no handler named {name!r}; configured: "
            + (", ".join(h.name for h in settings.handlers) or "none"),
        )
    return chosen[0]


def _event_to_try(settings: Settings, event_id: str | None) -> dict[str, Any]:
    """A stored event (`--event ID`) or the sample, marked as a test (`"test": true`)."""
    from poller.events import sample_event

    if event_id is None:
        event = sample_event(settings.accounts[0].id if settings.accounts else 999999999)
    else:
        store = _store(settings)
        try:
            found = store.events_by_id([event_id])
        finally:
            store.close()
        if not found:
            raise ConfigError(
                "--event", f"no event {event_id} in the outbox (see bcx-poller events)"
            )
        event = found[0]
    return {**event, "test": True}


def _filter_note(handler: Any, event: dict[str, Any]) -> str | None:
    """Why the handler's filters would not deliver `event`, if they would not."""
    from poller.routing import matches

    if matches(handler, event):
        return None
    rules = [
        f"{k}={list(v)}"
        for k, v in (
            ("kinds", handler.kinds),
            ("projects", handler.projects),
            ("accounts", handler.accounts),
        )
        if v
    ]
    if handler.exclude_private:
        rules.append("exclude_private=true")
    return (
        f"note: handler {handler.name}'s filters ({', '.join(rules)}) would not route this"
        f" {event.get('kind')} event to it; it is sent here anyway, because you asked"
    )


async def _test_handler(settings: Settings, name: str, event_id: str | None = None) -> int:
    import tempfile

    from poller.dispatch import build_targets

    handler = _chosen_handler(settings, name)
    event = _event_to_try(settings, event_id)
    note = _filter_note(handler, event)
    if note:
        print(note, file=sys.stderr)
    what = "the sample event" if event_id is None else f"event {event_id}"
    with tempfile.TemporaryDirectory(prefix="bcx-test-handler-") as scratch:
        # A scratch state dir: a digest handler must not spool the sample into the real
        # digest; it is flushed at once instead, so the test shows a real send.
        target = build_targets((handler,), Path(scratch))[name]
        try:
            await target.handler.deliver(event)
            flush = getattr(target.handler, "flush", None)
            if flush is not None:
                await flush(force=True)
        except Exception as exc:  # report whatever the handler raised
            print(f"handler {name}: FAILED: {type(exc).__name__}: {_masked(str(exc), settings)}")
            return 1
        finally:
            await target.handler.aclose()
    print(f'handler {name}: delivered {what}, marked as a test ("test": true)')
    return 0


async def _render(settings: Settings, name: str, event_id: str | None) -> int:
    import tempfile

    from poller.dispatch import build_targets

    handler = _chosen_handler(settings, name)
    event = _event_to_try(settings, event_id) if event_id is None else _stored(settings, event_id)
    note = _filter_note(handler, event)
    with tempfile.TemporaryDirectory(prefix="bcx-render-") as scratch:
        target = build_targets((handler,), Path(scratch))[name]
        try:
            preview = getattr(target.handler, "preview", None)
            if preview is None:
                print(f"handler {name} (type {handler.type}) cannot show what it would send")
                return 1
            try:
                text = str(preview(event))
            except ValueError as exc:  # a template that fails
                print(f"handler {name}: cannot render: {_masked(str(exc), settings)}")
                return 1
        finally:
            await target.handler.aclose()
    print(
        f"# handler {name} ({handler.type}), event {event.get('id')} ({event.get('kind')});"
        " nothing was sent"
    )
    if note:
        print("# " + note.replace("; it is sent here anyway, because you asked", ""))
    print(_masked(text, settings))
    return 0


def _stored(settings: Settings, event_id: str) -> dict[str, Any]:
    """A stored event as the handler would get it (not marked as a test)."""
    event = _event_to_try(settings, event_id)
    event.pop("test", None)
    return event


def cmd_render(args: argparse.Namespace) -> int:
    return _run_async(_render(_settings(args), args.name, args.event))


def _masker(settings: Settings) -> Any:
    """A function masking every configured secret that can be read here (a handler's error
    may quote one). Reads leniently: a local command never fails for a missing secret."""
    from poller.config import secrets_mode

    with secrets_mode("lenient"):
        secrets = sorted((s for s in _secret_values(settings) if len(s) >= 4), key=len)

    def mask(text: str | None) -> str | None:
        if text:
            for secret in reversed(secrets):  # longest first
                text = text.replace(secret, "**********")
        return text

    return mask


def _masked(text: str | None, settings: Settings) -> str | None:
    """`text` with every configured secret masked."""
    masked: str | None = _masker(settings)(text)
    return masked


def cmd_test_handler(args: argparse.Namespace) -> int:
    return _run_async(_test_handler(_settings(args), args.name, args.event))


def cmd_simulate(args: argparse.Namespace) -> int:
    from poller.simulator.server import main as simulate_main

    return int(simulate_main(["--port", str(args.port), "--host", args.host]) or 0)


# -- parser ---------------------------------------------------------------------------


# The commands as `bcx-poller --help` lists them: in the order one meets them.
GROUPS: list[tuple[str, list[str]]] = [
    ("set up", ["init", "check", "authorize"]),
    ("run", ["run", "once", "demo"]),
    ("inspect", ["status", "events"]),
    ("deliveries", ["deliveries", "redeliver", "backfill"]),
    ("tools", ["test-handler", "render", "simulate", "reshard"]),
]

C = "-c /etc/bcx-poller/config.toml"
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "init": [
        (f"bcx-poller init {C}", "a commented starting point"),
        (f"bcx-poller init {C} --oauth --force", "replace it with an OAuth one"),
    ],
    "check": [
        (f"bcx-poller check {C}", "every error at once, then warnings"),
        (f"bcx-poller check --online {C}", "also log in to each account"),
    ],
    "authorize": [(f"bcx-poller authorize {C}", "open the URL it prints, paste the code")],
    "run": [
        (f"bcx-poller run {C}", "the daemon; Ctrl-C once stops gracefully, twice at once"),
        (f"bcx-poller run --shard 2 {C}", "shard 2 of poller.shards: only its accounts"),
        ("systemctl reload bcx-poller", "SIGHUP: re-read the configuration"),
    ],
    "once": [
        (f"bcx-poller once {C}", "one cycle per account (the first one: a silent baseline)"),
        (f"bcx-poller once {C} --deliver-timeout 0", "poll only; the daemon delivers later"),
    ],
    "demo": [("bcx-poller demo --duration 60", "a minute of events from the simulator")],
    "status": [
        (f"bcx-poller status {C}", "accounts (ok / failing, and why) and handler queues"),
        (f"bcx-poller status --json {C} | jq '.accounts[].state'", "for scripts"),
        (f"bcx-poller status --all-shards {C}", "every shard's state file, then totals"),
    ],
    "events": [
        (f"bcx-poller events --since 2d --kind 'todo_*' {C}", "recent to-do events"),
        (f"bcx-poller events --json --limit 10 {C}", "the last ten envelopes"),
    ],
    "deliveries": [
        (f"bcx-poller deliveries --dead {C}", "dead letters, with their last error"),
    ],
    "redeliver": [
        (f"bcx-poller redeliver --dead {C}", "retry every dead letter (daemon stopped)"),
        (f"bcx-poller redeliver --event bcx_5d0c... --handler team {C}", "one event, one handler"),
    ],
    "backfill": [
        (f"bcx-poller backfill --since 2d --dry-run {C}", "count what would be replayed"),
        (f"bcx-poller backfill --since 2024-05-01T00:00:00Z {C}", "replay it to the handlers"),
    ],
    "test-handler": [
        (f"bcx-poller test-handler team {C}", "send the sample event, marked as a test"),
        (f"bcx-poller test-handler team --event bcx_5d0c... {C}", "send a stored event"),
    ],
    "render": [
        (f"bcx-poller render team {C}", "what the sample would look like"),
        (f"bcx-poller render mail --event bcx_5d0c... {C}", "the mail a stored event makes"),
    ],
    "simulate": [("bcx-poller simulate --port 8950", "demo@example.com / demo, on loopback")],
    "reshard": [
        (f"bcx-poller reshard --to 4 --dry-run {C}", "how many accounts would move where"),
        (f"bcx-poller reshard --to 4 {C}", "daemons stopped: move accounts to 4 state files"),
    ],
}


def _examples(name: str) -> str | None:
    lines = EXAMPLES.get(name)
    if not lines:
        return None
    width = max(len(cmd) for cmd, _ in lines)
    if width > 60:
        return "examples:\n" + "\n".join(f"  {cmd}\n      {what}" for cmd, what in lines)
    return "examples:\n" + "\n".join(f"  {cmd.ljust(width)}   # {what}" for cmd, what in lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bcx-poller",
        description="Webhook-style change events for Basecamp 2, delivered to your handlers.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help=argparse.SUPPRESS
    )
    helps: dict[str, str] = {}

    def add(name: str, help_: str, func: Any, config: bool = True) -> argparse.ArgumentParser:
        helps[name] = help_
        p = sub.add_parser(
            name,
            help=help_,
            description=help_[:1].upper() + help_[1:] + ".",
            epilog=_examples(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if config:
            p.add_argument(
                "--config", "-c", metavar="PATH", help="configuration file (or $BCX_POLLER_CONFIG)"
            )
            p.add_argument(
                "--log-level",
                choices=["debug", "info", "warning", "error"],
                help="log this and above (default: logging.level, info)",
            )
        p.set_defaults(func=func)
        return p

    p = add("once", "poll every account once, deliver what is due, exit", cmd_once)
    p.add_argument(
        "--deliver-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds to wait for deliveries and retries falling due (default 60)",
    )
    add_shard_option(p)
    p = add("check", "validate the configuration: every error, then warnings", cmd_check)
    p.add_argument(
        "--online",
        action="store_true",
        help="also log in to each account (/people/me.json) and reach each handler's target"
        " without sending an event",
    )
    p = add("status", "accounts' state and last cycles, handlers' queues", cmd_status)
    p.add_argument("--json", action="store_true", help="JSON (times in ISO 8601) instead of tables")
    add_shard_option(p)
    p.add_argument(
        "--all-shards",
        action="store_true",
        help="read every shard's state file (0..poller.shards-1): each shard, then the totals",
    )
    p = add("deliveries", "list pending and dead deliveries", cmd_deliveries)
    p.add_argument("--dead", action="store_true", help="dead letters only")
    p.add_argument("--json", action="store_true", help="JSON (times in ISO 8601) instead of lines")
    add_shard_option(p)
    p = add("redeliver", "requeue deliveries (same event id)", cmd_redeliver)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--event", metavar="ID", help="an event id (every handler it went to)")
    g.add_argument("--dead", action="store_true", help="every dead letter")
    p.add_argument("--handler", metavar="NAME", help="only this handler")
    add_shard_option(p)
    p = add(
        "test-handler",
        "send a sample (or a stored) event through one handler, marked as a test",
        cmd_test_handler,
    )
    p.add_argument("name", help="the handler's name")
    p.add_argument("--event", metavar="ID", help="send this stored event instead of the sample")
    add_shard_option(p)
    p = add("render", "print what a handler would send for an event, send nothing", cmd_render)
    p.add_argument("name", help="the handler's name")
    p.add_argument("--event", metavar="ID", help="a stored event (default: the sample)")
    add_shard_option(p)
    p = add(
        "simulate", "serve the bundled Basecamp 2 simulator on loopback", cmd_simulate, config=False
    )
    p.add_argument("--port", type=int, default=8950, help="port to listen on (default 8950)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    for extra in _extra_commands():
        extra(sub, add)
    listed = [name for _group, names in GROUPS for name in names]
    rest = [name for name in helps if name not in listed]  # a plugin's, at the end
    width = max(len(n) for n in helps)
    lines = ["commands:"]
    for group, names in [*GROUPS, *([("other", rest)] if rest else [])]:
        lines.append(f"  {group}:")
        lines += [f"    {n.ljust(width)}  {helps[n]}" for n in names if n in helps]
    lines.append("")
    lines.append("`bcx-poller COMMAND --help` explains a command, with examples.")
    parser.epilog = "\n".join(lines)
    parser.usage = "bcx-poller [--version] COMMAND [options]"
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from poller.daemon import cmd_run as run_daemon  # APScheduler & co: only for `run`

    return run_daemon(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from poller.demo import cmd_demo as run_demo  # the simulator: only for `demo`

    return run_demo(args)


def _register_run_and_demo(sub: Any, add: Any) -> None:
    """`run` and `demo`, whose modules (the daemon, the simulator) are imported only when
    one of them runs."""
    p = add("run", "run the daemon (poll on schedule, deliver continuously)", cmd_run)
    p.add_argument(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        help="seconds to let in-flight work finish on SIGTERM (default 30)",
    )
    add_shard_option(p)
    p = add("demo", "see events flow: simulator + daemon + console handler", cmd_demo, config=False)
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between cycles")
    p.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="log this and above (default warning)",
    )


def _extra_commands() -> list[Any]:
    """Commands registered outside this block: `run` and `demo` (lazily), and those of
    `poller.commands` (a light module: it too imports per command)."""
    from poller import commands

    return [_register_run_and_demo, commands.register]


# A closed pipe on stdout: what a Unix tool killed by SIGPIPE exits with (128 + 13).
EXIT_PIPE = 141


def _silence_output() -> None:
    """Point stdout and stderr at /dev/null, so the interpreter's last flush of what could
    not be written does not print a traceback about the closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in (sys.stdout, sys.stderr):
            try:
                os.dup2(devnull, stream.fileno())
            except (OSError, ValueError, AttributeError):
                continue
    finally:
        os.close(devnull)


def _error(text: str) -> None:
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        _silence_output()


def _flushed() -> bool:
    """Flush stdout and stderr; False when a pipe was closed under them."""
    ok = True
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            ok = False
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args))
    except BrokenPipeError:  # `status | head -1`: the reader has gone; so do we, quietly
        _silence_output()
        return EXIT_PIPE
    except ConfigError as exc:
        for line in str(exc).splitlines() or [""]:  # several at once: one line each
            _error(f"bcx-poller: configuration error: {line}")
        return 2
    except PollerError as exc:
        _error(f"bcx-poller: {type(exc).__name__}: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    if not _flushed():
        _silence_output()
        # the daemon's own status matters more than a console line nobody could read
        return code if args.command in ("run", "demo") else EXIT_PIPE
    return code
