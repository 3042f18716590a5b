"""The one exception tree of bcx-poller.

    PollerError                      base of everything we raise on purpose
    ├── ConfigError                  bad configuration: start-up stops with exit code 2
    ├── StateError                   the state database cannot be opened, migrated or written
    ├── HandlerError                 a handler failed to deliver; the delivery is retried
    │   └── PermanentHandlerError    the target said "never again" (HTTP 410): dead-letter now
    └── BasecampError                anything that went wrong talking to Basecamp
        ├── AuthError                401 / 403: credentials or token refused
        ├── NotFound                 404: the item is gone or not visible
        ├── RateLimited              429 kept coming back after waiting its Retry-After
        ├── ServerError              5xx, still failing after the retries
        ├── TransportError           connect / read timeouts and network errors, after retries
        ├── BadResponse              a 2xx whose body is not what the endpoint promises
        └── UnexpectedStatus         any other status we do not know how to handle

Every BasecampError carries the URL it happened on (never credentials). A poll cycle
that meets any BasecampError commits nothing for that account.
"""

from __future__ import annotations


class PollerError(Exception):
    """Base class of every error bcx-poller raises on purpose."""


class ConfigError(PollerError):
    """The configuration is invalid. `field` names the setting, `reason` says why."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)


class StateError(PollerError):
    """The state database could not be opened, migrated or written."""


class HandlerError(PollerError):
    """A handler could not deliver an event; the dispatcher retries it later.

    `retry_after` (seconds), when the target said how long to wait, overrides the backoff.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class PermanentHandlerError(HandlerError):
    """The target refuses this delivery for good (e.g. HTTP 410); no retry."""


class BasecampError(PollerError):
    """Talking to Basecamp failed. `url` is the request URL (no credentials in it)."""

    def __init__(self, message: str, *, url: str = "", status: int | None = None) -> None:
        self.url = url
        self.status = status
        super().__init__(f"{message} ({url})" if url else message)


class AuthError(BasecampError):
    """Basecamp refused the credentials (401) or the access (403)."""


class NotFound(BasecampError):
    """404: the item was deleted, trashed, or is not visible to this user."""


class RateLimited(BasecampError):
    """429 persisted after honouring Retry-After as many times as allowed."""


class ServerError(BasecampError):
    """5xx after the retries ran out."""


class TransportError(BasecampError):
    """Network trouble (connect/read timeout, reset) after the retries ran out."""


class BadResponse(BasecampError):
    """A successful status whose body is not what the endpoint promises
    (HTML, truncated JSON, an object where a list belongs, wrong field types)."""


class UnexpectedStatus(BasecampError):
    """A status code the client has no rule for."""
