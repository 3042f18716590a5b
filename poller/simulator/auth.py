"""Credentials the simulated API accepts, and a stand-in for 37signals Launchpad (OAuth 2).

API requests authenticate with HTTP Basic (username/password pairs registered with
`add_user`) or `Authorization: Bearer <token>` (tokens from `add_token` or issued by the
Launchpad stand-in). Tokens can be revoked or expire on the account's clock, so a test
can advance a `ManualClock` past `token_ttl` to force a 401 and then refresh.

Launchpad endpoints (served by the same app, outside the account root):

    POST /authorization/token?type=web_server&client_id=..&client_secret=..&code=..
    POST /authorization/token?type=refresh&client_id=..&client_secret=..&refresh_token=..
        -> 200 {"access_token", "expires_in", "refresh_token"}
        -> 400 {"error": "invalid_request" | "unsupported_grant_type"}
        -> 401 {"error": "invalid_client" | "invalid_grant"}
    GET /authorization.json  (Bearer)  -> examples/authorization.json shape, with a "bcx"
        account whose href is this simulator's API root
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from poller.simulator.account import Account

DEFAULT_TOKEN_TTL = 14 * 24 * 3600.0


@dataclass(slots=True)
class _Token:
    person_id: int
    expires_at: datetime | None
    revoked: bool = False


class Credentials:
    """Who may call the API, resolved to a person of the account (default: the owner)."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self._users: dict[str, tuple[str, int]] = {}
        self._tokens: dict[str, _Token] = {}

    def add_user(self, username: str, password: str, person_id: int | None = None) -> None:
        """Accept HTTP Basic `username:password` as `person_id` (default: the owner)."""
        self._users[username] = (password, person_id or self.account.owner_id)

    def add_token(
        self, token: str, person_id: int | None = None, expires_in: float | None = None
    ) -> None:
        """Accept `Bearer <token>`; it stops working `expires_in` seconds from now."""
        expires = None
        if expires_in is not None:
            expires = self.account.now() + timedelta(seconds=expires_in)
        self._tokens[token] = _Token(person_id or self.account.owner_id, expires)

    def revoke_token(self, token: str) -> None:
        """Make a token answer 401 from now on."""
        if token in self._tokens:
            self._tokens[token].revoked = True

    def token_expiry(self, token: str) -> datetime | None:
        info = self._tokens.get(token)
        return info.expires_at if info else None

    def authenticate(self, header: str | None) -> int | None:
        """The person id an Authorization header stands for, or None if refused."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            username, _, password = decoded.partition(":")
            known = self._users.get(username)
            if known and secrets.compare_digest(known[0], password):
                return known[1]
            return None
        if scheme.lower() == "bearer":
            info = self._tokens.get(value)
            if info is None or info.revoked:
                return None
            if info.expires_at is not None and self.account.now() >= info.expires_at:
                return None
            return info.person_id
        return None


class Launchpad:
    """OAuth 2 (draft 5 style) token endpoint and `authorization.json`, in memory."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        client_id: str = "sim-client-id",
        client_secret: str = "sim-client-secret",  # noqa: S107 - a test fixture value
        token_ttl: float = DEFAULT_TOKEN_TTL,
    ) -> None:
        self.credentials = credentials
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl = token_ttl
        self._codes: dict[str, int] = {}
        self._refresh: dict[str, int] = {}
        self.issued: list[str] = []

    def issue_code(self, person_id: int | None = None) -> str:
        """A one-time verification code, as the user's browser would bring back."""
        code = secrets.token_hex(8)
        self._codes[code] = person_id or self.credentials.account.owner_id
        return code

    def issue_refresh_token(self, person_id: int | None = None) -> str:
        """A refresh token, as if an earlier authorization had produced it."""
        token = secrets.token_hex(16)
        self._refresh[token] = person_id or self.credentials.account.owner_id
        return token

    def token(self, query: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """Handle `POST /authorization/token`; returns (status, JSON body)."""
        grant = query.get("type")
        if query.get("client_id") != self.client_id or not secrets.compare_digest(
            query.get("client_secret", ""), self.client_secret
        ):
            return 401, {"error": "invalid_client"}
        if grant == "web_server":
            person = self._codes.pop(query.get("code", ""), None)
        elif grant == "refresh":
            person = self._refresh.pop(query.get("refresh_token", ""), None)
        else:
            return 400, {"error": "unsupported_grant_type"}
        if person is None:
            return 401, {"error": "invalid_grant"}
        access = secrets.token_hex(16)
        self.credentials.add_token(access, person, self.token_ttl)
        self.issued.append(access)
        refresh = self.issue_refresh_token(person)
        ttl = int(self.token_ttl)
        return 200, {"access_token": access, "expires_in": ttl, "refresh_token": refresh}

    def authorization(self, person_id: int, token: str, api_root: str) -> dict[str, Any]:
        """Body of `GET /authorization.json` for the person behind `token`."""
        account = self.credentials.account
        person = account.people[person_id]
        first, _, last = person.name.partition(" ")
        expires = self.credentials.token_expiry(token) or account.now()
        return {
            "expires_at": account.ts(expires),
            "identity": {
                "id": person.identity_id,
                "first_name": first,
                "last_name": last,
                "email_address": person.email_address,
            },
            "accounts": [
                {
                    "product": "bc3",
                    "id": 99_999_999,
                    "name": "Some Basecamp 3 account",
                    "href": "https://3.basecampapi.com/99999999",
                    "app_href": "https://3.basecamp.com/99999999",
                },
                {
                    "product": "bcx",
                    "id": account.account_id,
                    "name": account.name,
                    "href": f"{api_root}/{account.account_id}/api/v1",
                    "app_href": f"{api_root}/{account.account_id}",
                },
            ],
        }
