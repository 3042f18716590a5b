"""`webhook`: POST each event as JSON, signed per the Standard Webhooks specification.

Headers: `webhook-id` (the event id, stable across retries, so receivers can de-duplicate),
`webhook-timestamp` (unix seconds of this attempt) and `webhook-signature`: one
`v1,<base64 HMAC-SHA256>` per configured secret, space-separated, so a receiver can rotate
its secret without downtime. The signed content is `{id}.{timestamp}.{body}` and the key is
the base64-decoded part of the `whsec_...` secret.

Outcomes: 2xx delivered; 410 Gone dead-letters the event (`PermanentHandlerError`); any
other status (3xx included: redirects are not followed), a timeout or a network error is
a `HandlerError`, retried by the dispatcher after `Retry-After` when the target sent one.
Secrets never appear in errors, logs or reprs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any

from pydantic import ConfigDict, Field, SecretStr, field_validator

from handlers import _http
from handlers.base import HandlerContext, HandlerOptions
from poller.errors import HandlerError, PermanentHandlerError

_PREFIX = "whsec_"
_RESERVED = {
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "host",
    "content-length",
}


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret. Raises ValueError (without the secret)."""
    if not secret.startswith(_PREFIX):
        raise ValueError(f"must start with {_PREFIX!r}")
    encoded = secret[len(_PREFIX) :].strip()
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the part after {_PREFIX!r} must be base64") from None
    if len(key) < 16:
        raise ValueError("the key must be at least 16 bytes (24 base64 characters)")
    return key


def sign(keys: list[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value: `v1,<sig>` for each key, space-separated."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
        for key in keys
    )


class WebhookOptions(HandlerOptions):
    model_config = ConfigDict(hide_input_in_errors=True)

    url: str = Field(description="http(s) URL to POST to")
    secrets: list[SecretStr] = Field(min_length=1, description="whsec_... signing secrets")
    timeout: float = Field(10, gt=0, description="seconds, connect and read")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http.check_http_url(value)

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, value: list[SecretStr]) -> list[SecretStr]:
        for index, secret in enumerate(value):
            try:
                secret_key(secret.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"secret #{index + 1} {exc}") from None
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, val in value.items():
            if name.lower() in _RESERVED:
                raise ValueError(f"header {name!r} is set by the handler")
            if not name or any(c in name for c in " :\r\n") or any(c in val for c in "\r\n"):
                raise ValueError(f"invalid header {name!r}")
        return value


class WebhookHandler:
    Options = WebhookOptions

    def __init__(self, options: WebhookOptions, context: HandlerContext) -> None:
        self.options = options
        self.name = context.name
        self._keys = [secret_key(s.get_secret_value()) for s in options.secrets]
        self._target = _http.redact_url(options.url)
        import httpx  # only once a handler is built: `check` validates options without it

        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(options.timeout), follow_redirects=False
        )

    def __repr__(self) -> str:
        return f"WebhookHandler(name={self.name!r}, url={self._target!r})"

    def request(self, event: dict[str, Any], timestamp: int) -> tuple[bytes, dict[str, str]]:
        """The signed body and headers of the POST for `event`."""
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
        msg_id = str(event["id"])
        headers = {
            **self.options.headers,
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._keys, msg_id, timestamp, body),
        }
        return body, headers

    async def probe(self) -> str:
        """Connect (and shake hands) with the target, sending nothing."""
        return await _http.probe_url(self.options.url, self.options.timeout)

    def preview(self, event: dict[str, Any]) -> str:
        """The request `deliver` would send, without sending it (values of the configured
        `headers` are masked: they may be credentials)."""
        body, headers = self.request(event, int(time.time()))
        lines = [f"POST {self._target}"]
        for name, value in headers.items():
            lines.append(f"{name}: {'**********' if name in self.options.headers else value}")
        return "\n".join([*lines, "", json.dumps(json.loads(body), indent=2, ensure_ascii=False)])

    async def deliver(self, event: dict[str, Any]) -> None:
        body, headers = self.request(event, int(time.time()))
        where = f"webhook {self.name}: POST {self._target}"
        import httpx

        try:
            reply = await _http.post(self._client, self.options.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise HandlerError(f"{where}: {_http.describe_transport_error(exc)}") from None
        status = reply.status
        if 200 <= status < 300:
            return
        detail = f"{where}: HTTP {status}"
        if reply.body:
            detail += f": {reply.text()}"
        if status == 410:
            raise PermanentHandlerError(f"{detail} (the target is gone; not retrying)")
        if 300 <= status < 400:
            location = _http.redact_url(reply.headers.get("location", "")) or "?"
            raise HandlerError(
                f"{where}: HTTP {status} redirect to {location} not followed "
                "(redirects are refused; configure the final URL)"
            )
        retry_after = _http.parse_retry_after(reply.headers.get("retry-after"))
        raise HandlerError(detail, retry_after=retry_after)

    async def aclose(self) -> None:
        await self._client.aclose()
