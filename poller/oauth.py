"""OAuth 2 through 37signals Launchpad: access tokens kept in the state database.

The refresh token comes from the config (`[accounts.oauth] refresh_token` or `_file`) the
first time; every token Launchpad returns afterwards is stored in the state database, so
a rotated refresh token survives restarts without touching the config.
"""

from __future__ import annotations

import time

import httpx
import structlog

from poller.config import AccountSettings
from poller.errors import AuthError
from poller.store import Store

log = structlog.get_logger(__name__)


class OAuthAuth:
    """`Auth` for the BasecampClient: Bearer header, refresh through Launchpad."""

    def __init__(self, account: AccountSettings, store: Store, http: httpx.AsyncClient) -> None:
        assert account.oauth is not None
        self.account = account
        self.oauth = account.oauth
        self.store = store
        self.http = http

    def __repr__(self) -> str:
        return f"OAuthAuth(account={self.account.id})"

    def _stored(self) -> tuple[str | None, str | None, float | None]:
        return self.store.token(self.account.id) or (None, None, None)

    def headers(self) -> dict[str, str]:
        access, _, _ = self._stored()
        return {"Authorization": f"Bearer {access}"} if access else {}

    def expires_soon(self, margin: float = 300.0) -> bool:
        access, _, expires_at = self._stored()
        return access is None or (expires_at is not None and expires_at - time.time() < margin)

    async def refresh(self) -> bool:
        """Get a new access token with the refresh token. True when one was stored."""
        _, refresh, _ = self._stored()
        if refresh is None and self.oauth.refresh_token is not None:
            refresh = self.oauth.refresh_token.get_secret_value()
        if refresh is None:
            return False
        params = {
            "type": "refresh",
            "refresh_token": refresh,
            "client_id": self.oauth.client_id,
            "client_secret": self.oauth.client_secret.get_secret_value(),
        }
        try:
            resp = await self.http.post(
                self.oauth.token_url,
                params=params,
                headers={"User-Agent": self.account.user_agent},
            )
        except httpx.HTTPError as exc:
            raise AuthError(
                f"token refresh failed: {type(exc).__name__}", url=self.oauth.token_url
            ) from None
        if resp.status_code != 200:
            log.warning("oauth_refresh_refused", account=self.account.id, status=resp.status_code)
            return False
        try:
            data = resp.json()
            access = str(data["access_token"])
        except (ValueError, KeyError, TypeError):
            raise AuthError(
                "token refresh answered without an access_token", url=self.oauth.token_url
            ) from None
        expires_in = data.get("expires_in")
        expires_at = (
            time.time() + float(expires_in) if isinstance(expires_in, int | float) else None
        )
        new_refresh = (
            data.get("refresh_token") if isinstance(data.get("refresh_token"), str) else None
        )
        self.store.save_token(self.account.id, access, new_refresh or refresh, expires_at)
        log.info("oauth_token_refreshed", account=self.account.id)
        return True
