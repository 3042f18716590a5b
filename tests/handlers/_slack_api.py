"""A local stand-in for the Slack Web API (a real HTTP server on loopback, stdlib, in a
thread): checks the bearer token, answers `auth.test`, `chat.postMessage` (with an
increasing `ts`, checking that a `thread_ts` names a parent it posted in that channel and
that was not deleted since: `delete(ts)` deletes one, as someone could in Slack) and
`users.lookupByEmail` (a form or JSON `email`; `users` maps addresses to user ids, any
case), records every request, and can be told to fail the next calls."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Call:
    method: str  # "chat.postMessage"
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Failure:
    """The answer to the next call: `error` in `{"ok": false}` (None: no JSON body)."""

    error: str | None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class SlackAPI:
    def __init__(self, server: ThreadingHTTPServer, token: str) -> None:
        self._server = server
        self.token = token
        self.channels = {"#bcx": "C0BCX", "C0BCX": "C0BCX", "C0OTHER": "C0OTHER"}
        self.calls: list[Call] = []
        self.failures: list[Failure] = []  # consumed in order, one per call
        self.messages: list[dict[str, Any]] = []  # what was posted, with its ts
        self.deleted: list[dict[str, Any]] = []  # messages deleted (`delete`)
        self.users = {"ann@example.test": "U0ANN", "bob@example.test": "U0BOB"}
        self.deactivated: set[str] = set()  # user ids of deactivated accounts
        self._ts = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/api"

    @property
    def posts(self) -> list[dict[str, Any]]:
        return [c.body for c in self.calls if c.method == "chat.postMessage"]

    @property
    def lookups(self) -> list[str]:
        """The addresses `users.lookupByEmail` was asked about, in order."""
        return [str(c.body.get("email")) for c in self.calls if c.method == "users.lookupByEmail"]

    def delete(self, ts: str) -> None:
        """Delete the message `ts` (a parent: its thread is gone for new replies)."""
        with self.lock:
            [message] = [m for m in self.messages if m["ts"] == ts]
            self.messages.remove(message)
            self.deleted.append(message)

    def answer(
        self, method: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            form = headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
            try:
                if form:
                    body = {
                        k: v[-1] for k, v in parse_qs(raw.decode(), strict_parsing=True).items()
                    }
                else:
                    body = json.loads(raw)
            except ValueError:
                body = {"unreadable": raw.decode(errors="replace")}
            self.calls.append(Call(method, headers, body))
            if self.failures:
                failure = self.failures.pop(0)
                payload = None if failure.error is None else {"ok": False, "error": failure.error}
                return failure.status, payload, failure.headers
            auth = headers.get("authorization", "")
            if not auth:
                return 200, {"ok": False, "error": "not_authed"}, {}
            if auth != f"Bearer {self.token}":
                return 200, {"ok": False, "error": "invalid_auth"}, {}
            if method == "users.lookupByEmail":  # a form or JSON
                email = str(body.get("email") or "")
                if not email:
                    return 200, {"ok": False, "error": "invalid_arguments"}, {}
                uid = self.users.get(email.lower())
                if uid is None:
                    return 200, {"ok": False, "error": "users_not_found"}, {}
                user = {"id": uid, "deleted": uid in self.deactivated, "profile": {"email": email}}
                return 200, {"ok": True, "user": user}, {}
            if not headers.get("content-type", "").startswith("application/json"):
                return 200, {"ok": False, "error": "invalid_form_data"}, {}
            if method == "auth.test":
                return 200, {"ok": True, "user": "bcx-bot", "team": "Acme", "user_id": "U0BOT"}, {}
            if method != "chat.postMessage":
                return 200, {"ok": False, "error": "unknown_method"}, {}
            channel = self.channels.get(str(body.get("channel")))
            if channel is None:
                return 200, {"ok": False, "error": "channel_not_found"}, {}
            if not body.get("text"):
                return 200, {"ok": False, "error": "no_text"}, {}
            thread_ts = body.get("thread_ts")
            if thread_ts is not None and not any(
                m["ts"] == thread_ts and m["channel"] == channel and "thread_ts" not in m
                for m in self.messages
            ):
                return 200, {"ok": False, "error": "thread_not_found"}, {}
            self._ts += 1
            ts = f"1700000000.{self._ts:06d}"
            message = {"ts": ts, "channel": channel, "text": body["text"]}
            if thread_ts is not None:
                message["thread_ts"] = thread_ts
            self.messages.append(message)
            return 200, {"ok": True, "channel": channel, "ts": ts, "message": message}, {}


@contextmanager
def slack_api(token: str) -> Iterator[SlackAPI]:
    holder: list[SlackAPI] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            raw = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            extra: dict[str, str] = {}
            if not self.path.startswith("/api/"):
                status, payload = 404, None
            else:
                status, payload, extra = holder[0].answer(self.path[5:], headers, raw)
            body = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            if payload is not None:
                self.send_header("content-type", "application/json; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    holder.append(SlackAPI(server, token))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
