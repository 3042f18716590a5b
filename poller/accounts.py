"""Per-account plumbing: one httpx client, rate limiter and BasecampClient per account,
and one guarded cycle that never lets one account's failure reach another.

A cycle that fails for a reason that will not go away by itself (401/403, a 404 of the
account's own feed or project list) is classified (`AccountFailure`): the daemon backs the
account off exponentially and `status` and the metrics name the reason."""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
import httpx
import structlog

from poller.client import BasecampClient
from poller.config import AccountSettings, PollerSettings
from poller.errors import AuthError, NotFound, PollerError
from poller.poll import CycleReport, poll_account
from poller.store import Router, Store

log = structlog.get_logger(__name__)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every account: each httpx client would otherwise load the CA
    bundle again (about 0.8 MB of memory per account)."""
    return ssl.create_default_context(cafile=certifi.where())


# Endpoints whose 404 means the account itself is wrong (id, base_url), not an item.
_ACCOUNT_PATHS = ("/events.json", "/projects.json", "/projects/archived.json", "/people/me.json")


@dataclass(frozen=True)
class AccountFailure:
    """Why an account keeps failing: `code` (a metrics label) and a hint for people."""

    code: str
    hint: str

    def __str__(self) -> str:
        return f"{self.code}: {self.hint}"


def account_failure(exc: BaseException, *, oauth: bool = False) -> AccountFailure | None:
    """The lasting reason behind a failed cycle, or None for a failure worth retrying at
    the next interval (5xx, timeouts, a malformed page...). `oauth`: the account signs in
    through Launchpad (the hint then points at its tokens, not at a password)."""
    if isinstance(exc, AuthError):
        if exc.status == 403:
            return AccountFailure("forbidden", "this login may not read the account")
        if exc.status == 401 and not oauth:
            return AccountFailure("unauthorized", "check the password or token")
        return AccountFailure(
            "unauthorized", "check the OAuth client and tokens (bcx-poller authorize)"
        )
    if isinstance(exc, NotFound) and urlsplit(exc.url).path.endswith(_ACCOUNT_PATHS):
        return AccountFailure("not_found", "check the account id and base_url")
    return None


@dataclass
class AccountRunner:
    account: AccountSettings
    client: BasecampClient
    http: httpx.AsyncClient
    last_report: CycleReport | None = None
    last_error: str | None = None
    owns_http: bool = True
    failure: AccountFailure | None = None  # the last cycle's lasting reason, if any

    async def aclose(self) -> None:
        if self.owns_http:
            await self.http.aclose()


def http_client(
    transport: httpx.AsyncBaseTransport | None = None, *, timeout: float = 30.0
) -> httpx.AsyncClient:
    """An httpx client as the Basecamp client expects it: no automatic redirects (the
    client follows same-host ones itself), the shared TLS context. Every request carries
    its own User-Agent, credentials and timeout, so one client can serve many accounts."""
    return httpx.AsyncClient(
        transport=transport,
        verify=_tls_context(),
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        headers={"Accept": "application/json"},
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
    )


def open_account(
    account: AccountSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    store: Store | None = None,
    http: httpx.AsyncClient | None = None,
) -> AccountRunner:
    """The account's client; on `http` when given (shared, not closed with the runner),
    else on a client of its own."""
    owns = http is None
    if http is None:
        http = http_client(transport, timeout=account.timeout)
    auth = None
    if account.oauth is not None and store is not None:
        from poller.oauth import OAuthAuth

        auth = OAuthAuth(account, store, http)
    client = BasecampClient(account, http, auth=auth)
    return AccountRunner(account, client, http, owns_http=owns)


async def run_cycle(
    runner: AccountRunner,
    store: Store,
    settings: PollerSettings,
    route: Router,
    *,
    on_commit: Callable[[], None] | None = None,
) -> CycleReport | None:
    """One cycle with an overall deadline (`settings.cycle_timeout`). On failure: log,
    note it in the account's status, commit nothing, return None. Only cancellation
    (shutdown) propagates."""
    bound = log.bind(account=runner.account.id)
    try:
        async with asyncio.timeout(settings.cycle_timeout):
            report = await poll_account(runner.client, store, settings, route)
    except TimeoutError:
        runner.failure = None
        runner.last_error = f"cycle exceeded its {settings.cycle_timeout:g}s deadline"
    except PollerError as exc:
        runner.failure = account_failure(exc, oauth=runner.account.oauth is not None)
        runner.last_error = f"{type(exc).__name__}: {exc}"
        if runner.failure is not None:
            runner.last_error = f"{runner.failure} ({runner.last_error})"
    except Exception as exc:
        # a bug or an unforeseen failure: still this account's alone, and still nothing
        # committed; log the traceback so it can be fixed
        runner.failure = None
        runner.last_error = f"unexpected {type(exc).__name__}: {exc}"
        bound.exception("cycle_crashed", error=runner.last_error)
    else:
        runner.last_report = report
        runner.last_error = None
        runner.failure = None
        if on_commit is not None and report.added:
            on_commit()
        return report
    bound.warning("cycle_failed", error=runner.last_error)
    try:
        store.record_failure(runner.account.id, runner.last_error)
    except PollerError as exc:
        bound.error("state_write_failed", error=str(exc))
    return None
