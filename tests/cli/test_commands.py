"""`bcx-poller authorize / init / events / backfill / status` as real subprocesses."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from poller.simulator import account_base_url
from tests.cli.conftest import jsonl_handler, oauth_config, run
from tests.conftest import Harness

# -- authorize ----------------------------------------------------------------------------


def _no_secrets(sim: Harness, *outputs: str, extra: tuple[str, ...] = ()) -> None:
    token = sim.store.token(sim.account.account_id) or (None, None, None)
    secrets = [sim.app.launchpad.client_secret, *sim.app.launchpad.issued, *extra]
    secrets += [t for t in token[:2] if t]
    for out in outputs:
        for secret in secrets:
            assert secret not in out


def test_authorize_with_code_stores_tokens_and_lists_bcx_accounts(sim: Harness) -> None:
    config = oauth_config(sim)  # no refresh token: authorize is how tokens arrive
    code = sim.app.launchpad.issue_code()
    done = run("authorize", "--config", str(config), "--code", code)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"{sim.base_url}/authorization/new?type=web_server&client_id=sim-client-id" in out
    assert "redirect_uri=http%3A%2F%2Flocalhost%3A8765%2Fcallback" in out
    assert "Authorized as Demo Owner <demo@example.com>" in out
    assert str(sim.account.account_id) in out
    assert account_base_url(sim.base_url, sim.account.account_id) in out
    assert "Some Basecamp 3 account" not in out  # bc3 entries are not listed
    access, refresh, expires_at = sim.store.token(sim.account.account_id) or (None, None, None)
    assert access in sim.app.launchpad.issued and refresh and expires_at
    _no_secrets(sim, done.stdout, done.stderr, extra=(code,))
    # ...and the poller now runs on those tokens
    once = run("once", "--config", str(config), "--deliver-timeout", "0")
    assert once.returncode == 0, once.stderr
    assert "baseline recorded" in once.stderr


def test_authorize_reads_the_redirect_url_from_stdin_and_takes_launchpad_url(
    sim: Harness,
) -> None:
    config = oauth_config(sim, token_url=False)  # config points at the real Launchpad
    code = sim.app.launchpad.issue_code()
    done = run(
        "authorize",
        "--config",
        str(config),
        "--launchpad",
        sim.base_url,
        stdin=f"http://localhost:8765/callback?code={code}\n",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verification code" in done.stderr
    assert sim.store.token(sim.account.account_id) is not None
    _no_secrets(sim, done.stdout, done.stderr, extra=(code,))


def test_authorize_refuses_a_bad_code_and_an_account_the_login_cannot_read(
    sim: Harness,
) -> None:
    config = oauth_config(sim)
    bad = run("authorize", "--config", str(config), "--code", "wrong-code")
    assert bad.returncode == 1
    assert "invalid_grant" in bad.stderr and "wrong-code" not in bad.stdout + bad.stderr
    other = config.read_text().replace(f"id = {sim.account.account_id}", "id = 1234567", 1)
    config.write_text(other)
    code = sim.app.launchpad.issue_code()
    refused = run("authorize", "--config", str(config), "--code", code)
    assert refused.returncode == 1
    assert "1234567 is not among them" in refused.stderr
    assert sim.store.token(1234567) is None
    _no_secrets(sim, refused.stdout, refused.stderr, extra=(code,))


# -- init ---------------------------------------------------------------------------------


def test_init_writes_a_private_commented_config_that_check_accepts(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "config.toml"
    made = run("init", "--config", str(path), "--state-path", str(tmp_path / "state.db"))
    assert made.returncode == 0, made.stderr
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    text = path.read_text()
    assert text.count("\n# ") > 10  # commented
    unset = run("check", "--config", str(path), env={"BCX_BASECAMP_PASSWORD": ""})
    assert unset.returncode == 2 and "BCX_BASECAMP_PASSWORD" in unset.stderr
    ok = run("check", "--config", str(path), env={"BCX_BASECAMP_PASSWORD": "pw"})
    assert ok.returncode == 0, ok.stderr
    assert "configuration OK: 1 account(s), 1 handler(s)" in ok.stdout
    # never replaced without --force
    path.write_text("# mine\n")
    again = run("init", "--config", str(path))
    assert again.returncode == 2 and "--force" in again.stderr
    assert path.read_text() == "# mine\n"
    path.chmod(0o644)
    forced = run("init", "--config", str(path), "--force", "--oauth")
    assert forced.returncode == 0, forced.stderr
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert "[accounts.oauth]" in path.read_text()
    oauth = run("check", "--config", str(path), env={"BCX_OAUTH_CLIENT_SECRET": "s3cret"})
    assert oauth.returncode == 0, oauth.stderr
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]  # no temp files left


def test_init_pointed_at_the_simulator_checks_online(sim: Harness) -> None:
    path = sim.tmp / "new.toml"
    made = run(
        "init",
        "--config",
        str(path),
        "--account-id",
        str(sim.account.account_id),
        "--base-url",
        account_base_url(sim.base_url, sim.account.account_id),
        "--username",
        "demo@example.com",
        "--password-env",
        "SIM_PASSWORD",
        "--state-path",
        str(sim.tmp / "state.db"),
    )
    assert made.returncode == 0, made.stderr
    online = run("check", "--online", "--config", str(path), env={"SIM_PASSWORD": "demo"})
    assert online.returncode == 0, online.stdout + online.stderr
    assert "authenticated as Demo Owner" in online.stdout


# -- events and status --------------------------------------------------------------------


def test_events_since_lists_recent_events_as_json_and_table(sim: Harness) -> None:
    p = sim.account.create_project("Ops")
    tl = sim.account.create_todolist(p, "List")
    config = sim.write_config(jsonl_handler(sim.tmp / "out.jsonl"))
    assert run("once", "--config", str(config), "--deliver-timeout", "0").returncode == 0
    sim.clock.advance(60)
    todo = sim.account.create_todo(tl, "Rotate keys")
    sim.account.create_message(p, "Hello", "world")
    assert run("once", "--config", str(config), "--deliver-timeout", "0").returncode == 0
    sim.clock.advance(60)
    sim.account.complete_todo(todo)
    assert run("once", "--config", str(config), "--deliver-timeout", "0").returncode == 0

    listed = run("events", "--since", "1h", "--json", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    events = json.loads(listed.stdout)
    kinds = [e["kind"] for e in events]
    assert {"todo_created", "message_created", "todo_completed"} <= set(kinds)
    assert all(e["account_id"] == sim.account.account_id for e in events)

    todos = run("events", "--since", "1h", "--kind", "todo_*", "--json", "--config", str(config))
    assert {e["kind"] for e in json.loads(todos.stdout)} == {"todo_created", "todo_completed"}
    exact = run("events", "--kind", "todo_completed", "--json", "--config", str(config))
    assert [e["kind"] for e in json.loads(exact.stdout)] == ["todo_completed"]
    last = run("events", "--since", "1h", "--limit", "1", "--json", "--config", str(config))
    assert [e["kind"] for e in json.loads(last.stdout)] == [kinds[-1]]

    table = run("events", "--since", "1h", "--config", str(config))
    assert table.returncode == 0, table.stderr
    assert "KIND" in table.stdout and "todo_completed" in table.stdout and "Ops" in table.stdout
    assert f"{len(events)} event(s) since" in table.stdout
    future = run("events", "--since", "2999-01-01T00:00:00Z", "--json", "--config", str(config))
    assert json.loads(future.stdout) == []
    bad = run("events", "--since", "yesterday", "--config", str(config))
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_status_prints_a_table_and_keeps_json(sim: Harness) -> None:
    config = sim.write_config(jsonl_handler(sim.tmp / "out.jsonl"))
    assert run("once", "--config", str(config), "--deliver-timeout", "0").returncode == 0
    table = run("status", "--config", str(config))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:6] == ["ACCOUNT", "NAME", "STATE", "LAST", "SUCCESS", "(UTC)"]
    assert str(sim.account.account_id) in lines[2] and "never" not in lines[2]
    assert any(line.startswith("HANDLER") for line in lines)
    assert any(line.split()[:4] == ["file", "jsonl", "0", "0"] for line in lines)
    assert "outbox: 0 events" in table.stdout
    data = json.loads(run("status", "--json", "--config", str(config)).stdout)
    assert data["handlers"][0]["name"] == "file"


# -- backfill -----------------------------------------------------------------------------


def test_backfill_enqueues_activity_events_with_the_ids_polling_uses(sim: Harness) -> None:
    out = sim.tmp / "out.jsonl"
    p = sim.account.create_project("Ops")
    tl = sim.account.create_todolist(p, "Old list")
    sim.account.create_todo(tl, "Old todo")
    start = sim.account.ts(sim.account.now() - timedelta(hours=1))
    sim.clock.advance(3600)
    # watch only projects: todo activity falls back to `todo_activity` during polling too
    config = sim.write_config(jsonl_handler(out), watch=["projects"])
    assert run("once", "--config", str(config), "--deliver-timeout", "0").returncode == 0
    sim.clock.advance(60)
    sim.account.create_todo(tl, "New todo")
    polled = run("once", "--config", str(config), "--deliver-timeout", "0")
    assert polled.returncode == 0, polled.stderr
    by_poll = [e for e in sim.store.events() if e["kind"] == "todo_activity"]
    assert len(by_poll) == 1 and by_poll[0]["source"] == "activity"
    cursor = sim.store.account(sim.account.account_id).cursor

    dry = run("backfill", "--since", start, "--dry-run", "--config", str(config))
    assert dry.returncode == 0, dry.stderr
    assert "dry run, nothing queued" in dry.stdout
    assert len(sim.store.events()) == 1

    filled = run("backfill", "--since", start, "--config", str(config))
    assert filled.returncode == 0, filled.stderr
    events = sim.store.events()
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids))
    # the activity polling already turned into an event was not queued again
    assert ids.count(by_poll[0]["id"]) == 1
    added = events[1:]
    assert {e["kind"] for e in added} == {"project_activity", "todolist_activity", "todo_activity"}
    assert all(e["source"] == "activity" for e in added)
    assert f"{len(added)} new event(s) queued, 1 already in the outbox" in filled.stdout
    pending = [d for d in sim.store.deliveries(status=("pending",)) if d.handler == "file"]
    assert {e["id"] for e in added} <= {d.event["id"] for d in pending}
    assert sim.store.account(sim.account.account_id).cursor == cursor  # untouched
    assert sim.store.account(sim.account.account_id).baseline_done

    again = run("backfill", "--since", start, "--config", str(config))
    assert again.returncode == 0 and "0 new event(s) queued" in again.stdout
    delivered = run("once", "--config", str(config), "--deliver-timeout", "5")
    assert delivered.returncode == 0, delivered.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(e["id"] for e in lines) == sorted(ids)


def test_since_values() -> None:
    from datetime import UTC, datetime

    from poller.commands import backfill_since, parse_since

    now = datetime(2024, 1, 15, 12, 0, tzinfo=UTC).timestamp()
    assert parse_since("1h", now=now) == datetime(2024, 1, 15, 11, 0, tzinfo=UTC)
    assert parse_since("90m", now=now) == datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
    assert parse_since("2d", now=now) == datetime(2024, 1, 13, 12, 0, tzinfo=UTC)
    assert parse_since("2024-01-01T00:00:00") == datetime(2024, 1, 1, tzinfo=UTC)
    # the server's own strings go out verbatim; others get an explicit offset
    assert backfill_since("2024-01-14T07:00:00.000-05:00") == "2024-01-14T07:00:00.000-05:00"
    assert backfill_since("2024-01-14T07:00:00Z") == "2024-01-14T07:00:00Z"
    assert backfill_since("2024-01-14T07:00:00") == "2024-01-14T07:00:00+00:00"
