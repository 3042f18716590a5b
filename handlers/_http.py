"""Shared HTTP plumbing of the webhook and slack handlers."""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:  # imported where a request is made: validating options needs none of it
    import httpx

try:
    USER_AGENT = f"bcx-poller/{version('bcx-poller')}"
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    USER_AGENT = "bcx-poller"
MAX_RETRY_AFTER = 86400.0
_BODY_CAP = 4096


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP-date; None if absent or
    unreadable. Negative values become 0; more than a day is capped at a day."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110: HTTP-dates are GMT
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def redact_url(url: str) -> str:
    """The URL without user info, query and fragment: fit for error messages and logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "<invalid url>"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def check_http_url(value: str) -> str:
    """Validate an absolute http(s) URL with a host (for Options validators)."""
    try:
        parts = urlsplit(value.strip())
        _ = parts.port
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    return value.strip()


@dataclass(frozen=True)
class Reply:
    status: int
    headers: httpx.Headers
    body: bytes  # at most the first few KiB

    def text(self, limit: int = 200) -> str:
        text = self.body.decode("utf-8", errors="replace").strip()
        text = " ".join(text.split())
        return text[:limit] + ("…" if len(text) > limit else "")


async def post(
    client: httpx.AsyncClient, url: str, *, content: bytes, headers: dict[str, str]
) -> Reply:
    """POST and read at most a few KiB of the answer (a hostile target cannot make us
    buffer a huge body). Redirects are never followed. Raises httpx.HTTPError."""
    headers = {"user-agent": USER_AGENT, "accept-encoding": "identity", **headers}
    async with client.stream(
        "POST", url, content=content, headers=headers, follow_redirects=False
    ) as response:
        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) >= _BODY_CAP:
                break
        return Reply(response.status_code, response.headers, bytes(body[:_BODY_CAP]))


def describe_transport_error(exc: httpx.HTTPError) -> str:
    """A short description of a transport failure that never includes the URL."""
    import httpx

    kinds: dict[type[httpx.HTTPError], str] = {
        httpx.ConnectTimeout: "connect timeout",
        httpx.ReadTimeout: "read timeout",
        httpx.WriteTimeout: "write timeout",
        httpx.PoolTimeout: "pool timeout",
        httpx.ConnectError: "cannot connect",
        httpx.RemoteProtocolError: "protocol error",
    }
    kind = kinds.get(type(exc), type(exc).__name__)
    detail = str(exc).strip()
    return f"{kind}: {detail}" if detail and "://" not in detail else kind


async def probe_url(url: str, seconds: float) -> str:
    """Connect to the URL's host (and complete the TLS handshake for https), send nothing,
    close. Returns what was reached; raises HandlerError saying why it could not be."""
    import asyncio
    import contextlib
    import ssl

    from poller.errors import HandlerError

    parts = urlsplit(url)
    host = parts.hostname or ""
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    shown = f"{host}:{port}" + (" (TLS)" if secure else "")
    try:
        async with asyncio.timeout(seconds):
            _reader, writer = await asyncio.open_connection(
                host, port, ssl=ssl.create_default_context() if secure else None
            )
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
    except TimeoutError:
        raise HandlerError(f"{shown}: no answer within {seconds:g}s") from None
    except ssl.SSLError as exc:
        raise HandlerError(f"{shown}: TLS handshake failed: {exc.reason or exc}") from None
    except OSError as exc:
        raise HandlerError(f"{shown}: cannot connect: {exc.strerror or exc}") from None
    return f"connected to {shown}, sent nothing"
