"""`bcx-poller authorize / init / events / backfill`, and the table `status` prints.

Registered by `poller.cli` through `register(sub, add)`.

authorize  the OAuth 2 web-server flow, once: print Launchpad's authorization URL, read
           the verification code (`--code`, or a line on stdin: the code or the whole
           redirect URL), trade it for tokens, list the Basecamp 2 ("bcx") accounts from
           authorization.json, and store the tokens in the state database for the
           configured account. Exit 1 when the account is not among those listed
           (nothing stored). Tokens are never printed.
init       write a commented configuration (mode 0600) to `--config`; refuses to replace
           an existing file without `--force` (exit 2).
events     events from the outbox detected within `--since` (`1h`, `30m`, `2d`, or an
           ISO 8601 timestamp), optionally only some `--kind`s (globs allowed); a table,
           or `--json` (a list of event envelopes).
backfill   replay the activity feed since a timestamp to the handlers: every page of
           `/events.json?since=`, each activity becoming the `<type>_activity` event the
           poller itself emits for an activity no diff explains (`Detector.activity_only`),
           so the ids are the ones polling would use, and a receiver that de-duplicates
           by id sees it once. It never re-sends a change polling already queued or
           delivered: an activity that an event in the outbox carries (whatever its kind:
           `todo_completed` as much as `todo_activity`) is skipped, and so is one newer
           than the account's cursor (polling has not read it yet and will: left to it).
           The events are committed through `Store.commit_cycle` with an otherwise empty
           `CycleWrite` (cursor, records, validators and seen activity untouched; the
           baseline flag kept), so delivery rows are created in the same transaction for
           the handlers that route them. Side effect: it counts as a successful cycle of
           the account in `status` (cycles + 1, last success now, last error cleared).
           Limit: an event already in the outbox is not re-routed to handlers added since
           (use `redeliver`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from poller.errors import ConfigError, PollerError

if TYPE_CHECKING:  # `bcx-poller --help` imports this module: nothing heavy at its top
    from poller.config import AccountSettings, Settings

Add = Callable[..., argparse.ArgumentParser]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.I)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


# -- helpers ------------------------------------------------------------------------------


def _cli() -> Any:
    from poller import cli

    return cli


def _run_async(main: Coroutine[Any, Any, int]) -> int:
    import asyncio  # not at the top: `bcx-poller --help` imports this module

    return asyncio.run(main)


def clean(value: Any) -> str:
    """One line of text without control characters (no terminal escapes from Basecamp)."""
    if value is None:
        return ""
    return _CONTROL.sub(" ", str(value))


def parse_since(value: str, *, now: float | None = None) -> datetime:
    """`1h`, `30m`, `90s`, `2d`, `1w` (ago) or an ISO 8601 timestamp (naive = UTC)."""
    moment = time.time() if now is None else now
    m = _DURATION.match(value)
    if m:
        seconds = float(m.group(1)) * _UNITS[m.group(2).lower()]
        return datetime.fromtimestamp(moment, UTC) - timedelta(seconds=seconds)
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            "--since", f"{value!r} is neither a duration (1h, 30m, 2d) nor an ISO 8601 timestamp"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def backfill_since(value: str) -> str:
    """The `since` to send: an ISO timestamp with offset verbatim (API.md §9 advises the
    server's own strings), anything else (a duration, a naive time) rendered with +00:00."""
    text = value.strip()
    when = parse_since(text)
    if _DURATION.match(text):
        return when.isoformat(timespec="seconds")
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return text if parsed.tzinfo is not None else when.isoformat(timespec="seconds")


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    fancy: bool | None = None,
    right: Sequence[int] = (),
    max_width: int | None = None,
) -> str:
    """A plain-text table: box-drawing lines on a UTF-8 terminal, ASCII otherwise.

    `right` names columns aligned right (numbers). The last column is cut with `…` / `...`
    so a line fits `max_width` (the terminal's width by default on a terminal).
    """
    if fancy is None:
        encoding = (getattr(sys.stdout, "encoding", "") or "").lower().replace("-", "")
        fancy = sys.stdout.isatty() and encoding == "utf8"
    if max_width is None and sys.stdout.isatty():
        max_width = shutil.get_terminal_size((120, 24)).columns
    cells = [[clean(h) for h in headers]] + [
        ["-" if c is None or c == "" else clean(c) for c in row] for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if max_width:
        used = sum(widths[:-1]) + 3 * (len(widths) - 1)
        widths[-1] = max(len(cells[0][-1]), min(widths[-1], max_width - used))
    ellipsis = "…" if fancy else "..."

    def fit(text: str, i: int) -> str:
        w = widths[i]
        if len(text) > w:
            text = text[: max(0, w - len(ellipsis))] + ellipsis
        return text.rjust(w) if i in right else text.ljust(w)

    sep = " │ " if fancy else "   "
    rule = ("─┼─" if fancy else "   ").join(("─" if fancy else "-") * w for w in widths)
    lines = [sep.join(fit(c, i) for i, c in enumerate(cells[0])).rstrip(), rule]
    lines += [sep.join(fit(c, i) for i, c in enumerate(r)).rstrip() for r in cells[1:]]
    return "\n".join(lines)


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d"


def _pick_accounts(settings: Settings, wanted: int | None) -> list[AccountSettings]:
    if wanted is None:
        return list(settings.accounts)
    try:
        return [settings.account(wanted)]
    except KeyError:
        raise ConfigError("--account", f"no account with id {wanted} in the config") from None


# -- authorize ----------------------------------------------------------------------------


def _read_code(given: str | None) -> str:
    if given is None:
        print("verification code (or the whole redirect URL): ", end="", file=sys.stderr)
        sys.stderr.flush()
        given = sys.stdin.readline()
    text = given.strip()
    if "code=" in text:
        query = urlsplit(text).query or text.split("?", 1)[-1]
        found = parse_qs(query).get("code")
        if found:
            text = found[0].strip()
    if not text:
        raise ConfigError("--code", "no verification code given")
    return text


async def _authorize(settings: Settings, args: argparse.Namespace) -> int:
    import httpx

    from poller import logs
    from poller.oauth import (
        LAUNCHPAD,
        authorize_url,
        bcx_accounts,
        exchange_code,
        fetch_authorization,
        launchpad_base,
        launchpad_urls,
    )

    oauth_accounts = [a for a in settings.accounts if a.oauth is not None]
    if args.account is not None:
        account = _pick_accounts(settings, args.account)[0]
        if account.oauth is None:
            raise ConfigError(f"accounts[{account.id}].oauth", "this account has no [oauth]")
    elif len(oauth_accounts) == 1:
        account = oauth_accounts[0]
    elif not oauth_accounts:
        raise ConfigError("accounts", "no account has an [accounts.oauth] table")
    else:
        raise ConfigError("--account", "several OAuth accounts: say which one with --account ID")
    oauth = account.oauth
    assert oauth is not None
    if args.launchpad:
        base = args.launchpad.rstrip("/")
        _, token_url, auth_url = launchpad_urls(base)
    else:
        token_url, auth_url = oauth.token_url, oauth.authorization_url
        base = launchpad_base(token_url) if token_url else LAUNCHPAD

    print(f"Authorizing account {account.label} ({account.id}) through {base}")
    print("1. Open this URL in a browser, sign in and allow access:")
    print(f"   {authorize_url(base, oauth.client_id, oauth.redirect_uri)}")
    print(f"2. Launchpad sends the browser to {oauth.redirect_uri}?code=...")
    print("   Give that code (or the whole URL) below, or with --code.", flush=True)
    code = _read_code(args.code)
    logs.register_secrets([code])

    async with httpx.AsyncClient(timeout=httpx.Timeout(account.timeout)) as http:
        tokens = await exchange_code(
            http, oauth, code, token_url=token_url, user_agent=account.user_agent
        )
        info = await fetch_authorization(
            http, auth_url, tokens.access_token, user_agent=account.user_agent
        )
    identity = info.get("identity") if isinstance(info.get("identity"), dict) else {}
    assert isinstance(identity, dict)
    who = " ".join(clean(identity.get(k)) for k in ("first_name", "last_name")).strip()
    print(f"Authorized as {who or '?'} <{clean(identity.get('email_address'))}>")
    bcx = bcx_accounts(info)
    if bcx:
        print("Basecamp 2 accounts this login can read:")
        print(
            render_table(
                ["ID", "NAME", "API ROOT"],
                [[a.get("id"), a.get("name"), a.get("href")] for a in bcx],
            )
        )
    else:
        print("This login can read no Basecamp 2 (bcx) account.")
    if account.id not in {a.get("id") for a in bcx}:
        print(
            f"account {account.id} is not among them: nothing stored. Set [[accounts]] id"
            " to one of the ids above (and base_url to its API root if it is not"
            " https://basecamp.com/<id>/api/v1), then run authorize again.",
            file=sys.stderr,
        )
        return 1
    from poller.shards import for_shard, shard_of

    # the tokens go to the state file of the shard that polls the account
    settings = for_shard(settings, shard_of(account.id, settings.poller.shards))
    store = _cli()._store(settings)
    try:
        store.save_token(account.id, tokens.access_token, tokens.refresh_token, tokens.expires_at)
    finally:
        store.close()
    expiry = (
        datetime.fromtimestamp(tokens.expires_at, UTC).isoformat(timespec="seconds")
        if tokens.expires_at
        else "unknown"
    )
    print(
        f"Tokens stored in the state database ({settings.poller.state_path}) for account"
        f" {account.id}; access token valid until {expiry}, refreshed automatically."
    )
    return 0


def cmd_authorize(args: argparse.Namespace) -> int:
    settings = _cli()._settings(args)
    return _run_async(_authorize(settings, args))


# -- init ---------------------------------------------------------------------------------


def _toml(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def config_template(
    *,
    account_id: int = 9999999,
    user_agent: str = "My Basecamp notifier (me@example.com)",
    username: str = "me@example.com",
    password_env: str = "BCX_BASECAMP_PASSWORD",  # noqa: S107 - a variable name
    state_path: str = "/var/lib/bcx-poller/state.db",
    base_url: str | None = None,
    oauth: bool = False,
    client_id: str = "your-launchpad-client-id",
    client_secret_env: str = "BCX_OAUTH_CLIENT_SECRET",  # noqa: S107 - a variable name
) -> str:
    """A commented configuration that loads once its secret's environment variable is set."""
    events_path = str(Path(state_path).parent / "events.jsonl")
    base_line = (
        f"base_url = {_toml(base_url)}"
        if base_url
        else '# base_url = "http://127.0.0.1:8950/9999999/api/v1"'
    )
    if oauth:
        credentials = f"""\
# Credentials: exactly one of password (with username), token, or [accounts.oauth].
# This file uses OAuth 2 through 37signals Launchpad (see the table below).
# username = {_toml(username)}
# password_env = {_toml(password_env)}
"""
        oauth_block = f"""
# OAuth 2 through 37signals Launchpad. Register the app at
# https://launchpad.37signals.com/integrations, then run `bcx-poller authorize` once:
# it stores the tokens in the state database and refreshes them from then on.
[accounts.oauth]
client_id = {_toml(client_id)}
client_secret_env = {_toml(client_secret_env)}   # or client_secret_file = "path"
# refresh_token_file = "oauth-refresh-token"     # only if you got one another way
redirect_uri = "http://localhost:8765/callback"  # as registered with Launchpad
"""
    else:
        credentials = f"""\
# Credentials: exactly one of password (with username), token, or [accounts.oauth].
# HTTP Basic with a Basecamp user's e-mail and password, read from the environment:
username = {_toml(username)}
password_env = {_toml(password_env)}
# password_file = "basecamp-password"   # ...or the first line of a file instead
# token_env = "BCX_BASECAMP_TOKEN"      # ...or a bearer token instead of username/password
"""
        oauth_block = """
# ...or OAuth 2 through Launchpad instead of a password (then run `bcx-poller authorize`):
# [accounts.oauth]
# client_id = "your-launchpad-client-id"
# client_secret_env = "BCX_OAUTH_CLIENT_SECRET"
# redirect_uri = "http://localhost:8765/callback"
"""
    return f"""\
# bcx-poller configuration, written by `bcx-poller init`.
# Every setting and its default: config.example.toml. Check it with
#   bcx-poller check --online --config THIS_FILE
#
# Secrets can be given as `key = "value"`, `key_env = "VARIABLE"` or `key_file = "path"`.
# This file decides where events go: keep it private (it was written with mode 0600).

[poller]
# SQLite state: cursors, known records, the outbox, pending deliveries, OAuth tokens.
state_path = {_toml(state_path)}
# Seconds between poll cycles of each account.
interval = 30
# "baseline": the first cycle records what exists silently; "emit": one *_created each.
first_sync = "baseline"

# One [[accounts]] table per Basecamp 2 account.
[[accounts]]
# The number in https://basecamp.com/<id>/...
id = {int(account_id)}
name = "My account"
# Required by Basecamp: your app's name and a contact e-mail or URL.
user_agent = {_toml(user_agent)}
# API root, only for a proxy or the simulator; default https://basecamp.com/<id>/api/v1
{base_line}
{credentials}{oauth_block}
# Where events go. Types: jsonl, script, webhook, slack, email, console (see the README).
[[handlers]]
name = "archive"
type = "jsonl"
path = {_toml(events_path)}
# kinds = ["todo_*", "comment_created"]   # only these kinds (globs); default all

# [[handlers]]
# name = "team"
# type = "slack"
# webhook_url_env = "BCX_SLACK_WEBHOOK_URL"

[logging]
level = "info"
"""


def _write_private(path: Path, text: str, *, force: bool) -> None:
    """Write `text` to `path` with mode 0600, atomically; never replace without `force`."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the file exists: no check-then-write race
            os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def cmd_init(args: argparse.Namespace) -> int:
    from poller.config import config_path

    path = config_path(args.config)
    text = config_template(
        account_id=args.account_id,
        user_agent=args.user_agent,
        username=args.username,
        password_env=args.password_env,
        state_path=args.state_path,
        base_url=args.base_url,
        oauth=args.oauth,
        client_id=args.client_id,
    )
    if path.exists() and not args.force:
        print(f"bcx-poller: {path} exists; not replacing it (use --force)", file=sys.stderr)
        return 2
    try:
        _write_private(path, text, force=args.force)
    except FileExistsError:
        print(f"bcx-poller: {path} exists; not replacing it (use --force)", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"bcx-poller: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    secret = "BCX_OAUTH_CLIENT_SECRET" if args.oauth else args.password_env
    print(f"wrote {path} (mode 0600)")
    print("next: edit the account id, user_agent and handlers; then")
    print(f"  export {secret}=...")
    if args.oauth:
        print(f"  bcx-poller authorize --config {path}")
    print(f"  bcx-poller check --online --config {path}")
    return 0


# -- events -------------------------------------------------------------------------------


def cmd_events(args: argparse.Namespace) -> int:
    settings = _cli()._settings(args, local=True)
    since = parse_since(args.since)
    kinds = [k.strip() for raw in args.kind or () for k in raw.split(",") if k.strip()]
    globbing = any(any(ch in k for ch in "*?[") for k in kinds)
    store = _cli()._store(settings)
    try:
        found = store.events(
            since_ts=since.timestamp(),
            kinds=() if globbing else kinds,
            account_id=args.account,
            limit=2**62,
        )
    finally:
        store.close()
    if globbing:
        found = [e for e in found if any(fnmatchcase(str(e.get("kind", "")), k) for k in kinds)]
    total = len(found)
    if args.limit and total > args.limit:
        found = found[-args.limit :]  # the most recent ones
    if args.json:
        print(json.dumps(found, indent=2, ensure_ascii=False))
        return 0
    rows = [
        [
            str(e.get("detected_at", ""))[:19].replace("T", " "),
            e.get("kind"),
            e.get("account_id"),
            (e.get("project") or {}).get("name"),
            e.get("summary"),
        ]
        for e in found
    ]
    if rows:
        print(render_table(["DETECTED (UTC)", "KIND", "ACCOUNT", "PROJECT", "SUMMARY"], rows))
    shown = f"{len(found)} of {total}" if len(found) != total else str(total)
    print(f"{shown} event(s) since {since.isoformat(timespec='seconds')}")
    return 0


# -- backfill -----------------------------------------------------------------------------


async def _backfill(settings: Settings, args: argparse.Namespace) -> int:
    from poller.accounts import open_account
    from poller.client import NotModified
    from poller.detect import Detector
    from poller.feed import FEED_PATH
    from poller.payloads import parse_activity, parse_ts
    from poller.routing import router
    from poller.store import CycleWrite

    since = backfill_since(args.since)
    route = router(settings.handlers)
    max_pages = args.max_pages or settings.poller.max_pages
    store = _cli()._store(settings)
    status = 0
    try:
        for account in _pick_accounts(settings, args.account):
            runner = open_account(account, store=store)
            try:
                print(f"account {account.label}: reading /events.json since {since} ...")
                listing = await runner.client.get_list(
                    FEED_PATH, params={"since": since}, max_pages=max_pages
                )
                if isinstance(listing, NotModified):  # never sent validators; be safe
                    items, url, pages = [], FEED_PATH, 1
                else:
                    items, url, pages = listing.items, listing.url, listing.pages
                activities = sorted(
                    (parse_activity(item, url) for item in items),
                    key=lambda a: (parse_ts(a.created_at), a.id),
                )
                # never re-send what polling queued (whatever kind it got), nor take what
                # polling has yet to read
                state = store.account(account.id)
                cursor = parse_ts(state.cursor) if state.cursor else None
                since_ts = parse_since(args.since).timestamp() - 86400  # clock skew
                polled = store.activities_with_events(account.id, since_ts)
                later = [
                    a
                    for a in activities
                    if cursor is not None and (parse_ts(a.created_at) or cursor) > cursor
                ]
                left = {a.id for a in later}
                sent = [a for a in activities if a.id in polled and a.id not in left]
                replay = [a for a in activities if a.id not in polled and a.id not in left]
                detector = Detector(store, account.id, emit=True)
                for activity in replay:
                    detector.activity_only(activity)
                events = detector.events
                routed = sum(1 for e in events if list(route(e)))
                if args.dry_run:
                    print(
                        f"account {account.label}: {len(activities)} activit"
                        f"{'y' if len(activities) == 1 else 'ies'} in {pages} page(s);"
                        f" dry run, nothing queued ({routed} would go to a handler)"
                    )
                    continue
                write = CycleWrite(
                    account_id=account.id, baseline_done=state.baseline_done, events=events
                )
                added = store.commit_cycle(write, route)
                print(
                    f"account {account.label}: {len(activities)} activit"
                    f"{'y' if len(activities) == 1 else 'ies'} in {pages} page(s),"
                    f" {len(added)} new event(s) queued,"
                    f" {len(sent) + len(events) - len(added)} already in the outbox"
                    + (f", {len(later)} newer than the cursor left to polling" if later else "")
                )
            except PollerError as exc:
                status = 1
                print(
                    f"account {account.label}: FAILED: {type(exc).__name__}: {exc}",
                    file=sys.stderr,
                )
            finally:
                await runner.aclose()
    finally:
        store.close()
    return status


def cmd_backfill(args: argparse.Namespace) -> int:
    from poller.lock import state_lock

    settings = _cli()._settings(args)
    if args.dry_run:  # writes nothing
        return _run_async(_backfill(settings, args))
    with state_lock(settings.poller.state_path):
        return _run_async(_backfill(settings, args))


# -- registration -------------------------------------------------------------------------


def register(sub: Any, add: Add) -> None:
    del sub  # every command goes through `add` (it adds --config and --log-level)
    p = add("authorize", "OAuth 2: authorize through Launchpad once, store tokens", cmd_authorize)
    p.add_argument("--account", type=int, help="the account (when several use OAuth)")
    p.add_argument(
        "--launchpad",
        help="Launchpad base URL (default: the origin of the config's token_url,"
        " https://launchpad.37signals.com)",
    )
    p.add_argument("--code", help="the verification code (default: read a line from stdin)")

    p = add("init", "write a commented configuration file (mode 0600)", cmd_init)
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.add_argument("--oauth", action="store_true", help="an OAuth account instead of a password")
    p.add_argument(
        "--account-id", type=int, default=9999999, metavar="ID", help="the Basecamp account id"
    )
    p.add_argument(
        "--user-agent",
        default="My Basecamp notifier (me@example.com)",
        help="your app's name and a contact e-mail or URL",
    )
    p.add_argument("--username", default="me@example.com", help="the Basecamp login (e-mail)")
    p.add_argument(
        "--password-env", default="BCX_BASECAMP_PASSWORD", help="variable holding the password"
    )
    p.add_argument(
        "--client-id", default="your-launchpad-client-id", help="the Launchpad app's client id"
    )
    p.add_argument(
        "--state-path",
        default="/var/lib/bcx-poller/state.db",
        metavar="PATH",
        help="where the state database goes (default /var/lib/bcx-poller/state.db)",
    )
    p.add_argument("--base-url", help="API root (a proxy or the simulator)")

    p = add("events", "list recent events from the outbox", cmd_events)
    p.add_argument("--since", default="1h", help="1h, 30m, 2d, or an ISO 8601 timestamp")
    p.add_argument(
        "--kind", action="append", help="only this kind (globs, comma lists; repeatable)"
    )
    p.add_argument("--account", type=int, help="only this account id")
    p.add_argument("--limit", type=int, default=1000, help="at most this many, the most recent")
    p.add_argument("--json", action="store_true", help="the event envelopes as a JSON list")
    _cli().add_shard_option(p)

    p = add("backfill", "replay the activity feed since a timestamp to the handlers", cmd_backfill)
    p.add_argument("--since", required=True, help="ISO 8601 timestamp, or 2d, 12h, ...")
    p.add_argument("--account", type=int, help="only this account id")
    p.add_argument("--max-pages", type=int, help="page cap (default: poller.max_pages)")
    p.add_argument("--dry-run", action="store_true", help="count, queue nothing")
    _cli().add_shard_option(p)

    p = add(
        "reshard",
        "move accounts' state to another number of shards (daemons stopped)",
        cmd_reshard,
    )
    p.add_argument(
        "--to", type=int, required=True, metavar="N", help="the new number of shards (1..1024)"
    )
    p.add_argument(
        "--state-path",
        metavar="TEMPLATE",
        help="where the new shard files go, with {shard} in it when N > 1 (default:"
        " poller.state_path); set poller.state_path to it afterwards",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="say how many accounts would move, write nothing"
    )


def cmd_reshard(args: argparse.Namespace) -> int:
    from poller.reshard import cmd_reshard as run_reshard  # sqlite work: only for `reshard`

    return run_reshard(args)
