"""OAuth 2 end to end against the simulator's Launchpad stand-in: refresh tokens from the
config, new tokens in the state database, refresh before expiry and after a 401."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from poller.accounts import open_account, run_cycle
from poller.client import BasecampClient
from poller.config import load_settings
from poller.oauth import OAuthAuth
from poller.poll import CycleReport
from poller.routing import router
from tests.cli.conftest import oauth_config, run
from tests.conftest import Harness


async def cycle(sim: Harness, config: Path, advance: float = 30.0) -> CycleReport | None:
    sim.clock.advance(advance)
    settings = load_settings(config)
    runner = open_account(settings.accounts[0], store=sim.store)
    try:
        report = await run_cycle(runner, sim.store, settings.poller, router(settings.handlers))
        sim.last_runner = runner
        return report
    finally:
        await runner.aclose()


def token_posts(sim: Harness) -> list[int]:
    return [e.status for e in sim.app.log.matching(r"^/authorization/token$")]


def api_statuses(sim: Harness) -> list[int]:
    return [e.status for e in sim.app.log if not e.path.startswith("/authorization")]


def stored(sim: Harness) -> tuple[str | None, str | None, float | None]:
    return sim.store.token(sim.account.account_id) or (None, None, None)


async def test_refresh_token_from_config_polls_and_new_tokens_go_to_the_database(
    sim: Harness,
) -> None:
    sim.account.create_project("Ops")
    refresh = sim.app.launchpad.issue_refresh_token()
    config = oauth_config(sim, refresh_token=refresh)
    before = config.read_bytes()
    assert await cycle(sim, config) is not None
    # the first request found no access token: one refresh went out before any API call
    assert sim.app.log.entries[0].path == "/authorization/token"
    assert token_posts(sim) == [200]
    assert 401 not in api_statuses(sim)
    access, new_refresh, expires_at = stored(sim)
    assert access in sim.app.launchpad.issued
    assert new_refresh and new_refresh != refresh  # the stand-in rotates refresh tokens
    assert expires_at is not None and expires_at > time.time() + 13 * 86400
    assert config.read_bytes() == before  # the config is never written
    assert refresh not in sim.store.path.read_bytes().decode("latin-1")
    # later cycles reuse the stored token: no more refreshes
    sim.account.create_project("Two")
    assert await cycle(sim, config) is not None
    assert token_posts(sim) == [200]


async def test_revoked_token_is_refreshed_after_a_401(sim: Harness) -> None:
    config = oauth_config(sim, refresh_token=sim.app.launchpad.issue_refresh_token())
    assert await cycle(sim, config) is not None
    old_access, old_refresh, _ = stored(sim)
    assert old_access is not None
    sim.app.credentials.revoke_token(old_access)
    sim.app.log.clear()
    assert await cycle(sim, config) is not None
    statuses = [(e.path.startswith("/authorization"), e.status) for e in sim.app.log]
    assert statuses[:3] == [(False, 401), (True, 200), (False, 200)]
    access, refresh, _ = stored(sim)
    assert access != old_access and refresh != old_refresh


async def test_token_expired_on_the_server_clock_is_refreshed_after_a_401(sim: Harness) -> None:
    sim.app.launchpad.token_ttl = 600
    config = oauth_config(sim, refresh_token=sim.app.launchpad.issue_refresh_token())
    assert await cycle(sim, config) is not None
    first, _, _ = stored(sim)
    sim.app.log.clear()
    assert await cycle(sim, config, advance=601) is not None  # expired for Launchpad only
    assert 401 in api_statuses(sim)
    assert token_posts(sim) == [200]
    assert stored(sim)[0] != first


async def test_token_about_to_expire_is_refreshed_before_the_request(sim: Harness) -> None:
    config = oauth_config(sim, refresh_token=sim.app.launchpad.issue_refresh_token())
    assert await cycle(sim, config) is not None
    access, refresh, _ = stored(sim)
    assert access is not None
    # still valid for the API, but expiring within 5 minutes by our record
    sim.store.save_token(sim.account.account_id, access, refresh, time.time() + 120)
    sim.app.log.clear()
    assert await cycle(sim, config) is not None
    assert sim.app.log.entries[0].path == "/authorization/token"
    assert 401 not in api_statuses(sim)
    new_access, _, expires_at = stored(sim)
    assert new_access != access and expires_at is not None and expires_at > time.time() + 3600


async def test_short_lived_tokens_are_not_refreshed_before_every_request(sim: Harness) -> None:
    sim.app.launchpad.token_ttl = 120  # shorter than the 5-minute margin
    for name in ("A", "B", "C"):
        sim.account.create_project(name)
    config = oauth_config(sim, refresh_token=sim.app.launchpad.issue_refresh_token())
    assert await cycle(sim, config) is not None
    assert len(api_statuses(sim)) > 3
    assert token_posts(sim) == [200]


async def test_concurrent_401s_refresh_once(sim: Harness) -> None:
    config = oauth_config(sim, refresh_token=sim.app.launchpad.issue_refresh_token())
    assert await cycle(sim, config) is not None
    access = stored(sim)[0]
    assert access is not None
    sim.app.credentials.revoke_token(access)
    sim.app.log.clear()
    account = load_settings(config).accounts[0]
    async with httpx.AsyncClient() as http:
        auth = OAuthAuth(account, sim.store, http)
        client = BasecampClient(account, http, auth=auth)
        got = await asyncio.gather(*(client.get("people/me.json") for _ in range(5)))
    assert all(getattr(g, "status", 0) == 200 for g in got)
    assert token_posts(sim) == [200]
    assert auth.refreshes == 1


async def test_refused_refresh_fails_the_cycle_without_leaking(sim: Harness) -> None:
    config = oauth_config(sim, refresh_token="not-a-valid-refresh-token")
    assert await cycle(sim, config) is None
    error = sim.store.account(sim.account.account_id).last_error or ""
    assert (
        error.startswith("unauthorized: check the OAuth client and tokens") and "AuthError" in error
    )
    assert "not-a-valid-refresh-token" not in error
    assert sim.app.launchpad.client_secret not in error


def test_once_and_check_online_with_oauth_never_print_secrets(sim: Harness) -> None:
    refresh = sim.app.launchpad.issue_refresh_token()
    config = oauth_config(sim, refresh_token=refresh)
    once = run("once", "--config", str(config), "--log-level", "debug", "--deliver-timeout", "0")
    assert once.returncode == 0, once.stderr
    assert "baseline recorded" in once.stderr
    check = run("check", "--online", "--config", str(config), "--log-level", "debug")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "authenticated as Demo Owner" in check.stdout
    access, new_refresh, _ = stored(sim)
    secrets = [sim.app.launchpad.client_secret, refresh, new_refresh, access]
    secrets += sim.app.launchpad.issued
    for out in (once.stdout, once.stderr, check.stdout, check.stderr):
        for secret in secrets:
            assert secret and secret not in out


async def test_token_requests_are_logged_without_their_query(
    sim: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    from poller import logs

    refresh = sim.app.launchpad.issue_refresh_token()
    config = oauth_config(sim, refresh_token=refresh)
    account = load_settings(config).accounts[0]
    caplog.set_level(logging.INFO, logger="httpx")
    async with httpx.AsyncClient() as http:
        auth = OAuthAuth(account, sim.store, http)
        assert await auth.refresh()
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert any("/authorization/token" in line for line in lines)
    for line in lines:
        assert "client_secret" not in line and refresh not in line
    # tokens are registered with the log redaction, percent-encoded forms too
    access = stored(sim)[0]
    assert access is not None
    assert access not in str(logs.redact(None, "info", {"event": f"x {access} y"}))
    from poller.oauth import _register

    _register("a+b/c=")
    masked = logs.redact(None, "info", {"event": f"url?t={quote('a+b/c=', safe='')}"})
    assert "a%2Bb%2Fc%3D" not in str(masked)
