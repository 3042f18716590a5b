"""OAuth 2 through 37signals Launchpad: access tokens kept in the state database.

The refresh token comes from the config (`[accounts.oauth] refresh_token` or `_file`) the
first time; every token Launchpad returns afterwards is stored in the state database, so
a rotated refresh token survives restarts without touching the config.

When tokens are refreshed:

* before a request (`OAuthAuth.prepare()`, awaited by `BasecampClient` before every
  logical request): when there is no stored access token, or it expires within
  `margin` seconds (5 minutes, or half the token's lifetime when Launchpad hands out
  tokens shorter than that). A failed proactive refresh is not fatal while the current
  token is still valid: the request goes out with it.
* after a 401 (`OAuthAuth.refresh()`, called once per request by the client).

Refreshes are serialized per account by a lock: concurrent requests that see the same
401 refresh once, and a rotated refresh token is never used twice.

Secrets (client secret, tokens) never reach logs, exceptions or reprs. Launchpad wants
them in the query string (API.md §2), so token requests are never logged with their URL
parameters; every token obtained is also registered with the log redaction.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus, urlencode, urlsplit

import httpx
import structlog

from poller.config import AccountSettings, OAuthSettings
from poller.errors import AuthError
from poller.store import Store

log = structlog.get_logger(__name__)

LAUNCHPAD = "https://launchpad.37signals.com"
REFRESH_MARGIN = 300.0
_ERROR_CODE = re.compile(r"^[a-z_]{1,40}$")


@dataclass(frozen=True)
class TokenSet:
    """What Launchpad's token endpoint answered. `expires_at` is epoch seconds (or None)."""

    access_token: str
    refresh_token: str | None
    expires_at: float | None
    expires_in: float | None

    def __repr__(self) -> str:
        return f"TokenSet(access_token='**********', expires_at={self.expires_at!r})"


class TokenRefused(AuthError):
    """Launchpad answered 4xx: the client credentials, code or refresh token were refused."""


def _register(*values: str | None) -> None:
    """Mask these in every log line, also as they appear percent-encoded in a URL."""
    from poller import logs

    out: list[str] = []
    for v in values:
        if v:
            out += [v, quote(v, safe=""), quote_plus(v)]
    logs.register_secrets(out)


class _NoTokenQuery(logging.Filter):
    """httpx logs every request URL at INFO; Launchpad's token URL carries the client
    secret, refresh token or code in its query. Log those URLs without the query."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(
            isinstance(a, httpx.URL) and _SECRET_PARAMS & set(a.params.keys()) for a in args
        ):
            record.args = tuple(
                a.copy_with(query=None) if isinstance(a, httpx.URL) else a for a in args
            )
        return True


_SECRET_PARAMS = {"client_secret", "refresh_token", "code"}
_httpx_logger = logging.getLogger("httpx")
if not any(isinstance(f, _NoTokenQuery) for f in _httpx_logger.filters):
    _httpx_logger.addFilter(_NoTokenQuery())


def _error_code(resp: httpx.Response) -> str | None:
    """Launchpad's `error` code (e.g. `invalid_grant`), only when it is a short plain code."""
    try:
        data = resp.json()
    except ValueError:
        return None
    code = data.get("error") if isinstance(data, dict) else None
    return code if isinstance(code, str) and _ERROR_CODE.match(code) else None


def launchpad_urls(base: str) -> tuple[str, str, str]:
    """(authorization/new, authorization/token, authorization.json) under a Launchpad base."""
    root = base.rstrip("/")
    return (
        f"{root}/authorization/new",
        f"{root}/authorization/token",
        f"{root}/authorization.json",
    )


def launchpad_base(token_url: str) -> str:
    """The Launchpad origin a token URL lives on (`https://launchpad.37signals.com`)."""
    parts = urlsplit(token_url)
    return f"{parts.scheme}://{parts.netloc}"


def authorize_url(base: str, client_id: str, redirect_uri: str) -> str:
    """The URL a user opens to grant access (the web_server flow)."""
    new, _, _ = launchpad_urls(base)
    query = urlencode({"type": "web_server", "client_id": client_id, "redirect_uri": redirect_uri})
    return f"{new}?{query}"


async def request_token(
    http: httpx.AsyncClient,
    token_url: str,
    params: dict[str, str],
    *,
    user_agent: str,
    clock: Callable[[], float] = time.time,
) -> TokenSet:
    """POST to Launchpad's token endpoint; raise `TokenRefused` on 4xx, `AuthError` else.

    Parameters travel in the query string as Launchpad documents them; nothing here logs
    or raises the URL with its query.
    """
    try:
        resp = await http.post(
            token_url,
            params=params,
            headers={"User-Agent": user_agent, "Accept": "application/json"},
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        raise AuthError(
            f"token endpoint unreachable: {type(exc).__name__}", url=token_url
        ) from None
    if 400 <= resp.status_code < 500:
        code = _error_code(resp)
        raise TokenRefused(
            f"token request refused: HTTP {resp.status_code}" + (f" ({code})" if code else ""),
            url=token_url,
            status=resp.status_code,
        )
    if resp.status_code != 200:
        raise AuthError(
            f"token endpoint answered HTTP {resp.status_code}",
            url=token_url,
            status=resp.status_code,
        )
    try:
        data = resp.json()
        access = data["access_token"]
    except (ValueError, KeyError, TypeError):
        raise AuthError("token endpoint answered without an access_token", url=token_url) from None
    if not isinstance(access, str) or not access:
        raise AuthError("token endpoint answered without an access_token", url=token_url)
    raw_expires = data.get("expires_in")
    expires_in = (
        float(raw_expires)
        if isinstance(raw_expires, int | float) and not isinstance(raw_expires, bool)
        else None
    )
    refresh = data.get("refresh_token")
    tokens = TokenSet(
        access_token=access,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        expires_at=clock() + expires_in if expires_in is not None else None,
        expires_in=expires_in,
    )
    _register(tokens.access_token, tokens.refresh_token)
    return tokens


async def exchange_code(
    http: httpx.AsyncClient,
    oauth: OAuthSettings,
    code: str,
    *,
    token_url: str,
    user_agent: str,
) -> TokenSet:
    """The web_server flow's second step: trade a verification code for tokens."""
    _register(code, oauth.client_secret.get_secret_value())
    return await request_token(
        http,
        token_url,
        {
            "type": "web_server",
            "client_id": oauth.client_id,
            "redirect_uri": oauth.redirect_uri,
            "client_secret": oauth.client_secret.get_secret_value(),
            "code": code,
        },
        user_agent=user_agent,
    )


async def fetch_authorization(
    http: httpx.AsyncClient, url: str, access_token: str, *, user_agent: str
) -> dict[str, Any]:
    """`GET authorization.json`: identity and accounts (API.md §2)."""
    try:
        resp = await http.get(
            url,
            headers={
                "Authorization": f"Bearer {access_token}",
                "User-Agent": user_agent,
                "Accept": "application/json",
            },
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        raise AuthError(f"authorization.json unreachable: {type(exc).__name__}", url=url) from None
    if resp.status_code != 200:
        raise AuthError(
            f"authorization.json answered HTTP {resp.status_code}", url=url, status=resp.status_code
        )
    try:
        data = resp.json()
    except ValueError:
        raise AuthError("authorization.json is not JSON", url=url) from None
    if not isinstance(data, dict):
        raise AuthError("authorization.json is not a JSON object", url=url)
    return data


def bcx_accounts(authorization: dict[str, Any]) -> list[dict[str, Any]]:
    """The Basecamp 2 (`"product": "bcx"`) entries of an authorization.json."""
    accounts = authorization.get("accounts")
    if not isinstance(accounts, list):
        return []
    return [a for a in accounts if isinstance(a, dict) and a.get("product") == "bcx"]


class OAuthAuth:
    """`Auth` for the BasecampClient: Bearer header, refresh through Launchpad."""

    RECENT = 30.0

    def __init__(
        self,
        account: AccountSettings,
        store: Store,
        http: httpx.AsyncClient,
        *,
        margin: float = REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        assert account.oauth is not None
        self.account = account
        self.oauth = account.oauth
        self.store = store
        self.http = http
        self.margin = margin
        self.refreshes = 0
        self._clock = clock
        self._lock = asyncio.Lock()
        self._lifetime: float | None = None  # of the last token this instance obtained
        self._refreshed_at: float | None = None  # time.monotonic() of that
        stored_access, stored_refresh, _ = self._stored()
        configured = self.oauth.refresh_token
        _register(
            stored_access,
            stored_refresh,
            self.oauth.client_secret.get_secret_value(),
            configured.get_secret_value() if configured else None,
        )

    def __repr__(self) -> str:
        return f"OAuthAuth(account={self.account.id})"

    def _stored(self) -> tuple[str | None, str | None, float | None]:
        return self.store.token(self.account.id) or (None, None, None)

    def headers(self) -> dict[str, str]:
        access, _, _ = self._stored()
        return {"Authorization": f"Bearer {access}"} if access else {}

    def _margin(self) -> float:
        if self._lifetime is not None:
            return min(self.margin, self._lifetime / 2)
        return self.margin

    def expires_soon(self, margin: float | None = None) -> bool:
        """True without an access token, or when it expires within the margin."""
        access, _, expires_at = self._stored()
        if access is None:
            return True
        if expires_at is None:
            return False
        return expires_at - self._clock() < (self._margin() if margin is None else margin)

    def _valid(self) -> bool:
        access, _, expires_at = self._stored()
        return access is not None and (expires_at is None or expires_at > self._clock())

    async def prepare(self) -> None:
        """Refresh before a request when the access token is missing or about to expire."""
        if not self.expires_soon():
            return
        async with self._lock:
            if not self.expires_soon():  # another request refreshed meanwhile
                return
            try:
                ok = await self._refresh_locked(reason="expiring")
            except AuthError as exc:
                if not self._valid():
                    raise
                log.warning("oauth_refresh_failed", account=self.account.id, error=str(exc))
                return
            if not ok and not self._valid():
                log.warning("oauth_no_valid_token", account=self.account.id)

    async def refresh(self) -> bool:
        """After a 401: get a new access token. True when one was stored.

        A 401 for a request sent before a concurrent refresh finished does not refresh
        again: the token changed while waiting for the lock, or this instance got a new
        one within `RECENT` seconds, so the request is simply retried with it.
        """
        before, _, _ = self._stored()
        async with self._lock:
            current, _, _ = self._stored()
            if current is not None and (current != before or self._recently_refreshed()):
                return True
            return await self._refresh_locked(reason="401")

    def _recently_refreshed(self) -> bool:
        return (
            self._refreshed_at is not None and time.monotonic() - self._refreshed_at < self.RECENT
        )

    async def _refresh_locked(self, *, reason: str) -> bool:
        _, stored, _ = self._stored()
        candidates: list[str] = []
        if stored:
            candidates.append(stored)
        configured = (
            self.oauth.refresh_token.get_secret_value() if self.oauth.refresh_token else None
        )
        if configured and configured not in candidates:
            candidates.append(configured)
        if not candidates:
            log.warning("oauth_no_refresh_token", account=self.account.id)
            return False
        for index, refresh in enumerate(candidates):
            try:
                tokens = await request_token(
                    self.http,
                    self.oauth.token_url,
                    {
                        "type": "refresh",
                        "refresh_token": refresh,
                        "client_id": self.oauth.client_id,
                        "client_secret": self.oauth.client_secret.get_secret_value(),
                    },
                    user_agent=self.account.user_agent,
                    clock=self._clock,
                )
            except TokenRefused as exc:
                log.warning(
                    "oauth_refresh_refused",
                    account=self.account.id,
                    source="state" if refresh == stored else "config",
                    error=str(exc),
                )
                if index + 1 < len(candidates):
                    continue
                return False
            self.store.save_token(
                self.account.id,
                tokens.access_token,
                tokens.refresh_token or refresh,
                tokens.expires_at,
            )
            self._lifetime = tokens.expires_in
            self._refreshed_at = time.monotonic()
            self.refreshes += 1
            log.info(
                "oauth_token_refreshed",
                account=self.account.id,
                reason=reason,
                expires_in=tokens.expires_in,
            )
            return True
        return False
