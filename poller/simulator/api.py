"""`SimulatorApp`: a pure request handler that behaves like the Basecamp 2 API.

    app = SimulatorApp(account)                       # Basic demo@example.com / demo
    resp = app.handle("GET", "/999999999/api/v1/projects.json", {}, {...headers...})

Checks, in order (each answer is logged in `app.log`):

1. `/authorization/token` (POST) and `/authorization.json` go to the Launchpad stand-in.
2. No `User-Agent` -> 400.   3. Not under `/{account_id}/api/v1/` -> 404.
4. Path not ending in `.json` -> 415.   5. Bad or missing credentials -> 401.
6. More than `rate_limit` requests within `rate_window` seconds -> 429 with
   `Retry-After: <seconds>` (only answered requests count, 304s included).
7. Injected faults (`app.faults`, see `faults.py`).
8. Anything but GET -> 405 (the simulator is read-only over HTTP; mutate the `Account`).
9. The route: 404 for unknown paths and trashed items (body alternates between empty
   `text/html` and `{"status":"404","error":"Not Found"}`), 301 with
   `Location: .../projects/{right}/...?moved=true` for an item asked for under the wrong
   project, 400 for unreadable parameters (e.g. a `since` whose `+` arrived as a space).
10. Validators per API.md §6: a strong ETag (quoted hex digest of the body) and/or a
    `Last-Modified` that moves forward whenever that URL's body changes;
    `If-None-Match` / `If-Modified-Since` that still match -> 304 with an empty body.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from poller.simulator.account import Account, Moved, NotFound
from poller.simulator.auth import DEFAULT_TOKEN_TTL, Credentials, Launchpad
from poller.simulator.clock import http_date, parse_http_date
from poller.simulator.faults import Fault, FaultSet, SimRequest
from poller.simulator.render import Renderer
from poller.simulator.requestlog import LoggedRequest, RequestLog
from poller.simulator.routes import PAGE_SIZE, BadRequest, Ctx, Listing, Route, find_route

DEMO_USERNAME = "demo@example.com"
DEMO_PASSWORD = "demo"  # noqa: S105 - a published demo credential, not a secret
JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"
_API = re.compile(r"^/(\d+)/api/v1/(.*)$")
_MAX_VALIDATORS = 20_000


@dataclass(frozen=True, slots=True)
class SimResponse:
    """An answer. `delay` seconds before answering; `hang` never answers; `disconnect`
    drops the connection instead of answering."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    delay: float = 0.0
    hang: bool = False
    disconnect: bool = False

    def json(self) -> Any:
        return json.loads(self.body)


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def etag_of(body: bytes) -> str:
    """A strong ETag: the quoted hex digest of the body."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


@dataclass
class _Validator:
    etag: str
    last_modified: datetime


@dataclass
class _RateWindow:
    limit: int
    window: float
    times: deque[float] = field(default_factory=deque)

    def admit(self, now: float) -> float | None:
        """None if admitted (and counted); else the seconds until a slot frees up."""
        while self.times and self.times[0] <= now - self.window:
            self.times.popleft()
        if len(self.times) >= self.limit:
            return self.times[0] + self.window - now
        self.times.append(now)
        return None


class SimulatorApp:
    """The simulated API for one `Account`.

    users: Basic credentials `{username: password}` (default `{DEMO_USERNAME:
    DEMO_PASSWORD}`), all acting as the account owner; tokens: accepted Bearer tokens;
    rate_limit / rate_window: the 429 rule; monotonic: clock for rate limiting and the
    request log; base_url: used in payload URLs when `handle()` is not told the base;
    client_id / client_secret / token_ttl: the Launchpad stand-in's settings.
    """

    def __init__(
        self,
        account: Account,
        *,
        users: Mapping[str, str] | None = None,
        tokens: tuple[str, ...] | list[str] = (),
        rate_limit: int = 500,
        rate_window: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
        base_url: str = "https://basecamp.com",
        client_id: str = "sim-client-id",
        client_secret: str = "sim-client-secret",  # noqa: S107 - a test fixture value
        token_ttl: float = DEFAULT_TOKEN_TTL,
    ) -> None:
        self.account = account
        self.lock = account.lock
        self.credentials = Credentials(account)
        for username, password in (users or {DEMO_USERNAME: DEMO_PASSWORD}).items():
            self.credentials.add_user(username, password)
        for token in tokens:
            self.credentials.add_token(token)
        self.launchpad = Launchpad(
            self.credentials, client_id=client_id, client_secret=client_secret, token_ttl=token_ttl
        )
        self.faults = FaultSet()
        self.log = RequestLog()
        self.monotonic = monotonic
        self.base_url = base_url.rstrip("/")
        self.rate = _RateWindow(rate_limit, rate_window)
        self._validators: OrderedDict[str, _Validator] = OrderedDict()
        self._etag_churn = 0
        self._not_found_count = 0

    # ------------------------------------------------------------------ configuration

    def set_rate_limit(self, limit: int, window: float = 10.0) -> None:
        """Change the 429 rule (forgets requests counted so far)."""
        with self.lock:
            self.rate = _RateWindow(limit, window)

    # ------------------------------------------------------------------ entry point

    def handle(
        self,
        method: str,
        url_path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        *,
        base_url: str | None = None,
    ) -> SimResponse:
        """Answer one request. `query` holds decoded parameters; header names are matched
        case-insensitively; `base_url` (e.g. `http://127.0.0.1:8123`) is what payload URLs
        and `Location` headers point at."""
        lower = {k.lower(): v for k, v in headers.items()}
        request = SimRequest(method.upper(), url_path, dict(query), lower)
        with self.lock:
            response = self._dispatch(request, (base_url or self.base_url).rstrip("/"))
        auth = lower.get("authorization")
        self.log.append(
            LoggedRequest(
                at=self.monotonic(),
                method=request.method,
                path=url_path,
                query=dict(query),
                user_agent=lower.get("user-agent"),
                if_none_match=lower.get("if-none-match"),
                if_modified_since=lower.get("if-modified-since"),
                auth_scheme=auth.split(" ", 1)[0] if auth else None,
                status=response.status,
            )
        )
        return response

    # ------------------------------------------------------------------ pipeline

    def _dispatch(self, req: SimRequest, base: str) -> SimResponse:
        if req.path.startswith("/authorization"):
            return self._launchpad(req, base)
        if not req.headers.get("user-agent", "").strip():
            return _text(400, "A User-Agent header naming your app and a contact is required.")
        m = _API.match(req.path)
        if not m:
            return self._not_found()
        if not req.path.endswith(".json"):
            return _text(415, "Unsupported Media Type: API paths end in .json")
        person_id = self.credentials.authenticate(req.headers.get("authorization"))
        if person_id is None:
            challenge = {"WWW-Authenticate": 'Basic realm="Basecamp"'}
            return _text(401, "HTTP Basic: Access denied.", challenge)
        if int(m.group(1)) != self.account.account_id:
            return self._not_found()
        wait = self.rate.admit(self.monotonic())
        if wait is not None:
            return _text(429, "Too Many Requests", {"Retry-After": str(max(1, math.ceil(wait)))})
        fault = self.faults.take(req)
        if fault is not None and isinstance(fault.status, int):
            return self._status_fault(fault)
        if req.method != "GET":
            return _text(405, "Method Not Allowed: the simulator's API is read-only")
        response = self._route(req, m.group(2), person_id, base, fault)
        if fault is not None:
            response = self._content_fault(fault, req, response)
        return response

    def _route(
        self, req: SimRequest, rel: str, person_id: int, base: str, fault: Fault | None
    ) -> SimResponse:
        found = find_route(rel)
        if found is None:
            return self._not_found()
        route, ids = found
        ctx = Ctx(Renderer(self.account, base), self.account, req.query, person_id)
        try:
            data = route.handler(ctx, *ids)
        except NotFound:
            return self._not_found()
        except Moved as moved:
            return self._moved(req, base, moved.project_id)
        except BadRequest as exc:
            return SimResponse(400, {"Content-Type": JSON_TYPE}, _dumps({"error": str(exc)}))
        if isinstance(data, Listing):  # render the page asked for, not the collection
            data = data.page(_page(req.query.get("page")))
        elif route.paged and isinstance(data, list):
            page = _page(req.query.get("page"))
            data = data[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        body = _dumps(data)
        churn = fault is not None and fault.status == "etag_churn"
        return self._conditional(req, route, body, churn)

    def _conditional(self, req: SimRequest, route: Route, body: bytes, churn: bool) -> SimResponse:
        key = req.path + "?" + urlencode(sorted(req.query.items()))
        etag = etag_of(body)
        now = self.account.now().replace(microsecond=0)
        known = self._validators.get(key)
        if known is None:
            known = self._validators[key] = _Validator(etag, now)
            if len(self._validators) > _MAX_VALIDATORS:  # forget the least recently used
                self._validators.popitem(last=False)
        else:
            self._validators.move_to_end(key)
        if known.etag != etag:
            known.etag = etag
            known.last_modified = max(now, known.last_modified + timedelta(seconds=1))
        if churn:
            self._etag_churn += 1
            etag = etag_of(body + str(self._etag_churn).encode())
        headers = {
            "Content-Type": JSON_TYPE,
            "Cache-Control": "max-age=0, private, must-revalidate",
        }
        if route.validators in ("both", "etag"):
            headers["ETag"] = etag
        if route.validators in ("both", "last_modified"):
            headers["Last-Modified"] = http_date(known.last_modified)
        inm = req.headers.get("if-none-match")
        ims = req.headers.get("if-modified-since")
        fresh = False
        if inm is not None and "ETag" in headers:
            fresh = etag in [tag.strip() for tag in inm.split(",")] or inm.strip() == "*"
        elif ims is not None and "Last-Modified" in headers:
            since = parse_http_date(ims)
            fresh = since is not None and known.last_modified <= since
        if fresh:
            headers.pop("Content-Type")
            return SimResponse(304, headers, b"")
        return SimResponse(200, headers, body)

    # ------------------------------------------------------------------ special answers

    def _not_found(self) -> SimResponse:
        self._not_found_count += 1
        if self._not_found_count % 2:
            return SimResponse(404, {"Content-Type": HTML_TYPE}, b"")
        return SimResponse(
            404, {"Content-Type": JSON_TYPE}, _dumps({"status": "404", "error": "Not Found"})
        )

    def _moved(self, req: SimRequest, base: str, project_id: int) -> SimResponse:
        path = re.sub(r"/projects/\d+[\w-]*/", f"/projects/{project_id}/", req.path, count=1)
        query = {k: v for k, v in req.query.items() if k != "moved"} | {"moved": "true"}
        location = f"{base}{path}?{urlencode(query)}"
        body = f'<html><body>You are being <a href="{location}">redirected</a>.</body></html>'
        return SimResponse(301, {"Content-Type": HTML_TYPE, "Location": location}, body.encode())

    def _status_fault(self, fault: Fault) -> SimResponse:
        assert isinstance(fault.status, int)
        headers = {"Content-Type": HTML_TYPE}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        body = f"<html><body><h1>{fault.status}</h1>Simulated failure.</body></html>".encode()
        return SimResponse(fault.status, headers, body, fault.delay, fault.hang)

    def _content_fault(self, fault: Fault, req: SimRequest, resp: SimResponse) -> SimResponse:
        kind, headers, body = fault.status, dict(resp.headers), resp.body

        def answer(status: int, headers: dict[str, str], body: bytes) -> SimResponse:
            return SimResponse(status, headers, body, fault.delay, fault.hang)

        if kind == "disconnect":
            return SimResponse(502, {}, b"", fault.delay, fault.hang, disconnect=True)
        if kind == "stale_304":
            if "if-none-match" in req.headers or "if-modified-since" in req.headers:
                headers.pop("Content-Type", None)
                return answer(304, headers, b"")
            return answer(resp.status, headers, body)
        if resp.status != 200 or kind in (None, "etag_churn"):
            return answer(resp.status, headers, body)
        headers.pop("ETag", None)
        headers.pop("Last-Modified", None)
        if kind == "html":
            page = b"<!DOCTYPE html><html><body><h1>Down for maintenance</h1></body></html>"
            return answer(200, {"Content-Type": HTML_TYPE}, page)
        if kind == "truncated":
            body = body[: max(1, len(body) // 2)]
        elif kind == "object":
            body = b"[]" if body.startswith(b"{") else b"{}"
        elif kind == "wrong_types":
            body = _dumps(_wrong_types(json.loads(body)))
        elif kind == "invalid_utf8":
            cut = max(1, body.find(b'"') + 1)
            body = body[:cut] + b"\xff\xfe\xc3\x28" + body[cut:]
        elif kind == "huge":
            filler = "x" * 1000
            count = max(1, fault.size // (len(filler) + 30))
            body = _dumps([{"id": i, "name": filler} for i in range(count)])
        elif kind == "empty":
            body = b""
        return answer(200, headers, body)

    # ------------------------------------------------------------------ launchpad

    def _launchpad(self, req: SimRequest, base: str) -> SimResponse:
        if req.path == "/authorization/token" and req.method == "POST":
            status, data = self.launchpad.token(req.query)
            return SimResponse(status, {"Content-Type": JSON_TYPE}, _dumps(data))
        if req.path == "/authorization.json" and req.method == "GET":
            header = req.headers.get("authorization", "")
            token = header[7:].strip() if header[:7].lower() == "bearer " else ""
            person_id = self.credentials.authenticate(header) if token else None
            if person_id is None:
                error = _dumps({"error": "invalid_token"})
                return SimResponse(401, {"Content-Type": JSON_TYPE}, error)
            body = _dumps(self.launchpad.authorization(person_id, token, base))
            return SimResponse(200, {"Content-Type": JSON_TYPE, "ETag": etag_of(body)}, body)
        return self._not_found()


def _page(raw: str | None) -> int:
    try:
        return max(1, int(raw or "1"))
    except ValueError:
        return 1


def _text(status: int, text: str, extra: Mapping[str, str] | None = None) -> SimResponse:
    headers = {"Content-Type": "text/plain; charset=utf-8", **(extra or {})}
    return SimResponse(status, headers, (text + "\n").encode())


def _wrong_types(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _wrong_types(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_wrong_types(v) for v in value]
    if key.endswith("_at") and isinstance(value, str):
        return 1_700_000_000
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value
