"""BasecampClient: polite, conditional, paginated reads of the Basecamp 2 (BCX) API.

What it does for every request (API.md §3-7, §13):

* joins relative paths to `account.api_root`, uses full URLs as given (Basecamp URLs
  are opaque), refuses paths that do not end in `.json`, encodes query values with
  httpx (so the `+` of a `since` offset goes out as `%2B`);
* sends the User-Agent and the account's credentials (Basic or Bearer, through an
  `Auth`); awaits the `Auth`'s optional `prepare()` before each logical request (OAuth
  refreshes a token about to expire there); on 401 asks the `Auth` to refresh once,
  then gives up with `AuthError`;
* waits for the account's `RateLimiter` before each request; on 429 blocks the whole
  account for `Retry-After` and retries (a bounded number of times);
* sends at most `max_in_flight` requests of the account at once (callers may run several
  `get`s concurrently); a free slot goes to the waiting request of the lowest
  `request_priority` (a context variable; first come first served among equals), so a
  re-list's oldest project is never starved by the projects fetched ahead of it; each
  attempt takes a slot, then waits for the limiter (the
  request budget and the Retry-After gate, shared by every attempt), then goes out. A
  429 on one request therefore holds back every sibling not yet sent: each waits for
  the same gate. A slot is held for one attempt only, never across a retry's backoff;
* retries 500/502/503/504 and network trouble with capped exponential backoff and full
  jitter, then raises `ServerError` / `TransportError`;
* follows redirects itself, only to the same scheme and host, at most three hops;
* validates that a 2xx body is JSON of the promised shape, under a size cap;
* sends conditional headers when given validators and returns `NotModified` on 304.
  It never remembers validators: the caller stores them with the state they describe.

`get_list` walks pages with the "safe loop" of API.md §5 and never returns a partial
listing: any failing page, or hitting the page cap, raises.

Secrets never reach exceptions, logs or reprs: only URLs (without userinfo), statuses
and counts are logged or raised.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import heapq
import itertools
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import httpx
import orjson
import structlog
from pydantic import SecretStr

from poller.config import AccountSettings
from poller.errors import (
    AuthError,
    BadResponse,
    BasecampError,
    ConfigError,
    NotFound,
    RateLimited,
    ServerError,
    TransportError,
    UnexpectedStatus,
)
from poller.ratelimit import DEFAULT_WINDOW, RateLimiter

__all__ = [
    "PAGE_SIZE",
    "Auth",
    "BasecampClient",
    "BasicAuth",
    "BearerAuth",
    "ClientStats",
    "Fetched",
    "Listing",
    "NotModified",
    "Validators",
    "auth_from_account",
    "parse_retry_after",
    "request_priority",
]

log = structlog.get_logger(__name__)

PAGE_SIZE = 50
"""Records per page on paginated Basecamp endpoints (API.md §5)."""

DEFAULT_MAX_BODY = 50 * 1024 * 1024
DEFAULT_RETRY_AFTER = 10.0
DEFAULT_MAX_IN_FLIGHT = 4
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

QueryValue = str | int | float | bool | None
Params = Mapping[str, QueryValue]
Sleep = Callable[[float], Awaitable[object]]


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Validators:
    """Conditional-request validators of one URL, as the server sent them."""

    etag: str | None = None
    last_modified: str | None = None

    def __bool__(self) -> bool:
        return bool(self.etag or self.last_modified)

    def headers(self) -> dict[str, str]:
        """The conditional request headers for these validators (only those that exist)."""
        out: dict[str, str] = {}
        if self.etag:
            out["If-None-Match"] = self.etag
        if self.last_modified:
            out["If-Modified-Since"] = self.last_modified
        return out


@dataclass(frozen=True)
class Fetched:
    """A 2xx answer: `url` is the final URL (after redirects), `data` the parsed JSON."""

    url: str
    data: Any
    validators: Validators
    status: int


@dataclass(frozen=True)
class NotModified:
    """304: the resource is unchanged since the validators the caller sent."""

    url: str


@dataclass(frozen=True)
class Listing:
    """A complete collection: every page, de-duplicated by `id`, first occurrence kept.

    `url` is the final URL of page 1; `pages` is the number of pages fetched (including
    a terminal empty or echoed page). `validators` are page 1's, and only set when page 1
    alone describes the whole listing (it was short, or page 2 echoed it): a multi-page
    listing cannot be revalidated by page 1 alone.
    """

    url: str
    items: list[dict[str, Any]]
    pages: int
    validators: Validators | None


@dataclass
class ClientStats:
    """Counters for benchmarks and metrics. `requests` counts every attempt sent."""

    requests: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    not_modified: int = 0
    rate_limited: int = 0
    retries: int = 0
    bytes_received: int = 0

    @property
    def bytes(self) -> int:
        """Alias of `bytes_received` (the name used in docs/DESIGN.md)."""
        return self.bytes_received


# --------------------------------------------------------------------------- auth


@runtime_checkable
class Auth(Protocol):
    """Credentials for requests. `refresh()` returns True if it obtained a new token.

    An `Auth` may also define `async def prepare() -> None`; the client awaits it before
    each logical request (each page), so credentials can be renewed before they expire
    (`headers()` is synchronous).
    """

    def headers(self) -> dict[str, str]: ...

    async def refresh(self) -> bool: ...


class BasicAuth:
    """HTTP Basic with the user's own username and password."""

    def __init__(self, username: str, password: SecretStr | str) -> None:
        self.username = username
        self._password = password if isinstance(password, SecretStr) else SecretStr(password)

    def __repr__(self) -> str:
        return f"BasicAuth(username={self.username!r}, password='**********')"

    def headers(self) -> dict[str, str]:
        raw = f"{self.username}:{self._password.get_secret_value()}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}

    async def refresh(self) -> bool:
        return False


class BearerAuth:
    """A static bearer token: nothing to refresh."""

    def __init__(self, token: SecretStr | str) -> None:
        self._token = token if isinstance(token, SecretStr) else SecretStr(token)

    def __repr__(self) -> str:
        return "BearerAuth(token='**********')"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token.get_secret_value()}"}

    async def refresh(self) -> bool:
        return False


def auth_from_account(account: AccountSettings) -> Auth:
    """Basic or Bearer auth from the account settings.

    OAuth accounts need an `Auth` that can refresh tokens; pass it to the client.
    """
    if account.password is not None and account.username:
        return BasicAuth(account.username, account.password)
    if account.token is not None:
        return BearerAuth(account.token)
    if account.oauth is not None:
        raise ConfigError(
            f"accounts[{account.id}].oauth",
            "OAuth accounts need an OAuth Auth passed to BasecampClient(auth=...)",
        )
    raise ConfigError(f"accounts[{account.id}]", "no credentials")


# --------------------------------------------------------------------------- helpers


def _safe_url(url: httpx.URL | str) -> str:
    """The URL as text, without any userinfo."""
    u = url if isinstance(url, httpx.URL) else httpx.URL(url)
    if u.userinfo:
        u = u.copy_with(username=None, password=None)
    return str(u)


def parse_retry_after(
    value: str | None,
    *,
    now: float,
    default: float = DEFAULT_RETRY_AFTER,
) -> float:
    """Seconds to wait from a Retry-After value: delta-seconds or an HTTP-date.

    `now` is the wall-clock time (epoch seconds) an HTTP-date is measured from. Missing
    or garbled values give `default`; a date in the past gives 0.
    """
    if value is None:
        return default
    text = value.strip()
    if not text:
        return default
    if text.isdigit():
        return float(int(text))
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")) or seconds < 0:
            return default
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return default
    if when.tzinfo is None:
        # RFC 9110: HTTP-dates are GMT; a naive result here means "-0000".
        return default
    return max(0.0, when.timestamp() - now)


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp()


def _decode_json(body: bytes, url: str) -> Any:
    if not body.strip():
        raise BadResponse("empty body where JSON was expected", url=url)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadResponse("body is not valid UTF-8", url=url) from None
    try:
        # orjson: a 50-item page decodes ~3x faster than with json.loads (bench/README.md)
        return orjson.loads(text)
    except json.JSONDecodeError as exc:  # orjson's error is a subclass of it
        if "depth limit" in exc.msg:
            raise BadResponse("body JSON is nested too deeply", url=url) from None
        stripped = text.lstrip()
        what = "HTML" if stripped.startswith("<") else "malformed or truncated JSON"
        raise BadResponse(f"body is {what} (at char {exc.pos})", url=url) from None
    except RecursionError:
        raise BadResponse("body JSON is nested too deeply", url=url) from None


def _item_id(item: Mapping[str, Any]) -> int | str | None:
    value = item.get("id")
    if isinstance(value, bool):
        return None
    if isinstance(value, int | str):
        return value
    return None


@dataclass
class _Answer:
    """One finished request: 2xx with its body, or a 304."""

    url: str
    status: int
    headers: httpx.Headers
    body: bytes


request_priority: ContextVar[int] = ContextVar("bcx_request_priority", default=0)
"""The priority of the requests made in this context (lower goes first when requests of
one account wait for an in-flight slot). `poll._relist` gives each project its place in
the re-list; everything else is 0."""


CONTINUATION = 1_000_000
"""Subtracted from the priority of a listing's pages after the first."""


class _Slots:
    """A semaphore whose free slot goes to the waiter of the lowest priority (then the
    earliest). A slot handed to a waiter cancelled before it resumed is passed on."""

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    async def acquire(self, priority: int) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted, then cancelled before it ran: pass it on
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():  # a cancelled waiter is skipped
                waiter.set_result(None)
                return
        self._free += 1


class _GateShut(Exception):
    """Internal: a 429 shut the account's Retry-After gate after this attempt's grant and
    before its request went out; the attempt was not sent."""


class _Retry(Exception):
    """Internal: the attempt failed in a retryable way."""

    def __init__(self, reason: str, error: BasecampError) -> None:
        self.reason = reason
        self.error = error
        super().__init__(reason)


# --------------------------------------------------------------------------- client


class BasecampClient:
    """Reads one Basecamp account through an injected `httpx.AsyncClient`.

    The client does not own `http` and never closes it.
    """

    def __init__(
        self,
        account: AccountSettings,
        http: httpx.AsyncClient,
        *,
        auth: Auth | None = None,
        limiter: RateLimiter | None = None,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 30,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        max_rate_limit_retries: int = 5,
        max_retry_after: float = 300.0,
        default_retry_after: float = DEFAULT_RETRY_AFTER,
        max_redirects: int = 3,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        self.account = account
        self.http = http
        self.auth: Auth = auth if auth is not None else auth_from_account(account)
        self.limiter = (
            limiter
            if limiter is not None
            else RateLimiter(account.rate_limit, DEFAULT_WINDOW, clock=clock, sleep=sleep)
        )
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_rate_limit_retries = max_rate_limit_retries
        self.max_retry_after = max_retry_after
        self.default_retry_after = default_retry_after
        self.max_redirects = max_redirects
        self.max_body_bytes = max_body_bytes
        self.stats = ClientStats()
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._jitter = jitter
        self._timeout = httpx.Timeout(account.timeout)
        self._root = account.api_root.rstrip("/")
        self._max_in_flight = 1
        self._in_flight = _Slots(1)
        self.set_max_in_flight(max_in_flight)

    def __repr__(self) -> str:
        return f"BasecampClient(account={self.account.id}, api_root={self._root!r})"

    # ------------------------------------------------------------------ public

    @property
    def max_in_flight(self) -> int:
        """How many requests of this account may be in flight at once."""
        return self._max_in_flight

    def set_max_in_flight(self, limit: int) -> None:
        """Bound the account's concurrent requests. Meant for when none is in flight (a
        cycle's start): requests already holding a slot keep it."""
        if limit < 1:
            raise ValueError("max_in_flight must be at least 1")
        if limit != self._max_in_flight:
            self._max_in_flight = limit
            self._in_flight = _Slots(limit)

    async def get(
        self,
        path_or_url: str,
        params: Params | None = None,
        validators: Validators | None = None,
    ) -> Fetched | NotModified:
        """GET one JSON document (an object or an array).

        Returns `NotModified` on 304 (only possible when `validators` are given).
        """
        url = self._url(path_or_url, params)
        answer = await self._request(url, validators)
        if answer.status == 304:
            return NotModified(answer.url)
        data = _decode_json(answer.body, answer.url)
        if not isinstance(data, dict | list):
            raise BadResponse(
                f"expected a JSON object or array, got {type(data).__name__}", url=answer.url
            )
        return Fetched(answer.url, data, self._validators_of(answer), answer.status)

    async def get_list(
        self,
        path_or_url: str,
        params: Params | None = None,
        validators: Validators | None = None,
        max_pages: int = 200,
    ) -> Listing | NotModified:
        """GET every page of a collection (a JSON array of objects).

        Page 1 goes without a `page` parameter; page N+1 is fetched while page N had
        exactly 50 items, until a short or empty page, or a page whose first `id`
        equals the previous page's (endpoints that ignore `page`). Reaching `max_pages`
        with more to fetch raises `BadResponse` ("page cap reached"). `validators`
        apply to page 1 only; a 304 there returns `NotModified`.
        """
        if max_pages < 1:
            raise ValueError("max_pages must be at least 1")
        base = dict(params or {})
        items: list[dict[str, Any]] = []
        seen: set[int | str] = set()
        first_url = ""
        first_validators = Validators()
        previous_first: int | str | None = None
        previous_len = 0
        single_page = True
        page = 1
        while True:
            if page == 1:
                url = self._url(path_or_url, base)
                answer = await self._request(url, validators)
                if answer.status == 304:
                    return NotModified(answer.url)
                first_url = answer.url
                first_validators = self._validators_of(answer)
            else:
                url = self._url(path_or_url, {**base, "page": page})
                # a listing's next page goes before any request that starts something
                # (a listing's first page, a project): started chains of pages finish
                # first, so the last ones do not run alone at the end of a re-list
                token = request_priority.set(request_priority.get() - CONTINUATION)
                try:
                    answer = await self._request(url, None)
                finally:
                    request_priority.reset(token)
                if answer.status == 304:
                    raise UnexpectedStatus(
                        "304 for a page requested without validators",
                        url=answer.url,
                        status=304,
                    )
            rows = self._page_rows(answer)
            first_id = _item_id(rows[0]) if rows else None
            if page > 1 and first_id is not None and first_id == previous_first:
                # The endpoint ignores `page` and echoed the previous page: done.
                log.debug("pagination_echo", url=answer.url, page=page)
                break
            for row in rows:
                key = _item_id(row)
                if key is not None:
                    if key in seen:
                        continue
                    seen.add(key)
                items.append(row)
            if page > 1:
                single_page = False
            previous_first = first_id
            previous_len = len(rows)
            if previous_len != PAGE_SIZE:
                break
            if page >= max_pages:
                raise BadResponse(
                    f"page cap reached ({max_pages} pages of {PAGE_SIZE}); listing incomplete",
                    url=first_url,
                )
            page += 1
        return Listing(
            url=first_url,
            items=items,
            pages=page,
            validators=first_validators if single_page else None,
        )

    # ------------------------------------------------------------------ internals

    def _url(self, path_or_url: str, params: Params | None) -> httpx.URL:
        if not isinstance(path_or_url, str) or not path_or_url:
            raise ValueError("a path or URL is required")
        if path_or_url.startswith(("https://", "http://")):
            raw = path_or_url
        elif "://" in path_or_url.split("?", 1)[0]:
            raise ValueError("only http(s) URLs are allowed")
        else:
            raw = f"{self._root}/{path_or_url.lstrip('/')}"
        try:
            url = httpx.URL(raw)
        except httpx.InvalidURL:
            raise ValueError("not a valid URL") from None
        if not url.path.endswith(".json"):
            raise ValueError(f"Basecamp API paths end in .json: {_safe_url(url)!r}")
        if url.userinfo:
            # Credentials travel only through `Auth`; httpx would log a URL's userinfo.
            raise ValueError("credentials in URLs are not allowed; use the account's auth")
        if params:
            clean = {k: v for k, v in params.items() if v is not None}
            url = url.copy_merge_params(clean)
        return url

    def _validators_of(self, answer: _Answer) -> Validators:
        return Validators(
            etag=answer.headers.get("ETag") or None,
            last_modified=answer.headers.get("Last-Modified") or None,
        )

    def _page_rows(self, answer: _Answer) -> list[dict[str, Any]]:
        data = _decode_json(answer.body, answer.url)
        if not isinstance(data, list):
            raise BadResponse(f"expected a JSON array, got {type(data).__name__}", url=answer.url)
        for index, row in enumerate(data):
            if not isinstance(row, dict):
                raise BadResponse(
                    f"expected an array of objects, item {index} is {type(row).__name__}",
                    url=answer.url,
                )
        return data

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * (2.0**attempt))
        return max(0.0, self._jitter() * ceiling)

    async def _request(self, url: httpx.URL, validators: Validators | None) -> _Answer:
        """One logical GET: redirects, auth refresh, 429 and retry handling included."""
        current = url
        conditional = validators.headers() if validators else {}
        hops = 0
        failures = 0
        throttled = 0
        refreshed = False
        prepare = getattr(self.auth, "prepare", None)
        if prepare is not None:
            await prepare()
        while True:
            shown = _safe_url(current)
            try:
                response_status, headers, body = await self._send(current, conditional)
            except _Retry as retry:
                if failures >= self.max_retries:
                    raise retry.error from None
                delay = self._backoff(failures)
                failures += 1
                self.stats.retries += 1
                log.warning(
                    "retrying",
                    url=shown,
                    reason=retry.reason,
                    attempt=failures,
                    delay=round(delay, 3),
                )
                await self._sleep(delay)
                continue

            status = response_status
            if 200 <= status < 300:
                return _Answer(shown, status, headers, body)
            if status == 304:
                self.stats.not_modified += 1
                return _Answer(shown, status, headers, b"")
            if status in REDIRECT_STATUSES:
                target = self._redirect_target(current, headers, status, hops)
                hops += 1
                log.info("redirect", url=shown, status=status, location=_safe_url(target))
                current = target
                # The validators belong to the original URL; ask the new one afresh so the
                # caller gets a 200 carrying the final URL (e.g. an item moved projects).
                conditional = {}
                continue
            if status == 401:
                if not refreshed and await self.auth.refresh():
                    refreshed = True
                    self.stats.retries += 1
                    log.info("auth_refreshed", url=shown)
                    continue
                raise AuthError("401 Unauthorized: credentials refused", url=shown, status=401)
            if status == 403:
                raise AuthError("403 Forbidden: access refused", url=shown, status=403)
            if status == 404:
                raise NotFound("404 Not Found", url=shown, status=404)
            if status == 429:
                self.stats.rate_limited += 1
                wait = self._retry_after(headers)
                self.limiter.block_until(self._clock() + wait)
                log.warning(
                    "rate_limited", url=shown, retry_after=round(wait, 3), attempt=throttled + 1
                )
                if throttled >= self.max_rate_limit_retries:
                    raise RateLimited(
                        f"429 Too Many Requests after {throttled} retries", url=shown, status=429
                    )
                if wait > self.max_retry_after:
                    raise RateLimited(
                        f"429 Too Many Requests; Retry-After {wait:.0f}s is too long to wait",
                        url=shown,
                        status=429,
                    )
                throttled += 1
                self.stats.retries += 1
                continue
            if status in RETRYABLE_STATUSES:
                if failures >= self.max_retries:
                    raise ServerError(
                        f"HTTP {status} after {failures} retries", url=shown, status=status
                    )
                delay = self._backoff(failures)
                failures += 1
                self.stats.retries += 1
                log.warning(
                    "retrying",
                    url=shown,
                    reason=f"HTTP {status}",
                    attempt=failures,
                    delay=round(delay, 3),
                )
                await self._sleep(delay)
                continue
            raise UnexpectedStatus(f"unexpected HTTP {status}", url=shown, status=status)

    def _retry_after(self, headers: httpx.Headers) -> float:
        now = _http_date(headers.get("Date"))
        if now is None:
            now = self._wall_clock()
        return parse_retry_after(
            headers.get("Retry-After"), now=now, default=self.default_retry_after
        )

    def _redirect_target(
        self, current: httpx.URL, headers: httpx.Headers, status: int, hops: int
    ) -> httpx.URL:
        shown = _safe_url(current)
        location = headers.get("Location")
        if not location:
            raise UnexpectedStatus(f"HTTP {status} without Location", url=shown, status=status)
        try:
            target = current.join(location)
        except (httpx.InvalidURL, ValueError):
            raise UnexpectedStatus(
                f"HTTP {status} with an invalid Location", url=shown, status=status
            ) from None
        if (target.scheme, target.host, target.port) != (
            current.scheme,
            current.host,
            current.port,
        ):
            raise UnexpectedStatus(
                f"HTTP {status} redirect to another host refused ({target.scheme}://{target.host})",
                url=shown,
                status=status,
            )
        if target.userinfo:
            target = target.copy_with(username=None, password=None)
        if hops >= self.max_redirects:
            raise UnexpectedStatus(
                f"too many redirects (more than {self.max_redirects})", url=shown, status=status
            )
        return target

    async def _send(
        self, url: httpx.URL, conditional: Mapping[str, str]
    ) -> tuple[int, httpx.Headers, bytes]:
        """Send one attempt in one of the account's in-flight slots, once the limiter
        allows it (the budget and the Retry-After gate); read the body under the cap.

        The slot is taken before the limiter's grant, so a granted request goes out at
        once: grants are not hoarded by requests waiting for a slot. Between the grant and
        the request's first byte the transport may still wait (a connection of a shared
        pool, a TCP connect): a sibling's 429 answered meanwhile shuts the gate, so the
        gate is checked again right before the request is written (`_attempt`); shut, the
        attempt is not sent and waits for the gate (its grant stays counted: a
        conservative budget).

        Raises `_Retry` for retryable network trouble, `BasecampError`s otherwise.
        """
        slots = self._in_flight
        await slots.acquire(request_priority.get())
        try:
            while True:
                await self.limiter.acquire()
                try:
                    return await self._attempt(url, conditional)
                except _GateShut:
                    log.debug("held_by_retry_after", url=_safe_url(url))
        finally:
            slots.release()

    async def _attempt(
        self, url: httpx.URL, conditional: Mapping[str, str]
    ) -> tuple[int, httpx.Headers, bytes]:
        shown = _safe_url(url)
        headers = {
            "User-Agent": self.account.user_agent,
            "Accept": "application/json",
            **self.auth.headers(),
            **conditional,
        }
        if self.limiter.blocked_until is not None:
            raise _GateShut
        self.stats.requests += 1
        started = self._clock()
        try:
            async with self.http.stream(
                "GET",
                url,
                headers=headers,
                follow_redirects=False,
                timeout=self._timeout,
                extensions={"trace": self._gate_check},
            ) as response:
                status = response.status_code
                self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
                body = b""
                if 200 <= status < 300:
                    body = await self._read_capped(response, shown)
        except _GateShut:
            self.stats.requests -= 1  # not sent
            raise
        except httpx.TimeoutException as exc:
            raise _Retry(
                type(exc).__name__,
                TransportError(f"timeout ({type(exc).__name__}) after retries", url=shown),
            ) from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise _Retry(
                type(exc).__name__,
                TransportError(f"network error ({type(exc).__name__}) after retries", url=shown),
            ) from None
        except httpx.DecodingError as exc:
            raise BadResponse(
                f"body could not be decoded ({type(exc).__name__})", url=shown
            ) from None
        except httpx.HTTPError as exc:
            raise TransportError(f"HTTP error ({type(exc).__name__})", url=shown) from None
        log.debug(
            "request",
            url=shown,
            status=status,
            bytes=len(body),
            elapsed=round(self._clock() - started, 4),
        )
        return status, response.headers, body

    async def _gate_check(self, event: str, info: Mapping[str, Any]) -> None:
        """httpcore's `trace` hook: called right before a request's headers are written
        (after any wait for a pooled connection or a connect). A gate shut since the
        grant stops the request there, before a byte of it is sent. Transports that do
        not trace (tests' mock transports) are covered by the check before `stream`."""
        if (
            event.endswith(".send_request_headers.started")
            and self.limiter.blocked_until is not None
        ):
            raise _GateShut

    async def _read_capped(self, response: httpx.Response, shown: str) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise BadResponse(
                f"body of {int(declared)} bytes exceeds the {self.max_body_bytes}-byte cap",
                url=shown,
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            self.stats.bytes_received += len(chunk)
            if size > self.max_body_bytes:
                raise BadResponse(f"body exceeds the {self.max_body_bytes}-byte cap", url=shown)
            chunks.append(chunk)
        return b"".join(chunks)
