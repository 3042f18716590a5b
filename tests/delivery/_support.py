"""Helpers of the delivery tests: real peers on fixed loopback ports (so they can go down
and come back), events committed through the real Store, a fake clock, the CLI."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from poller.accounts import open_account, run_cycle
from poller.config import Settings, parse_settings
from poller.dispatch import Dispatcher, build_targets
from poller.events import Event, event_id, now_iso
from poller.poll import CycleReport
from poller.routing import router
from poller.store import CycleWrite, Store
from tests.conftest import Harness
from tests.handlers._smtp import Mailbox, free_port

ACCOUNT = 4242
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"delivery-tests-webhook-key-32byt").decode()
SLACK_PATH = "/services/T0DELIV/B0DELIV/sl4ckT0kenS3cretXYZ"
SMTP_PASSWORD = "smtp-Pa55w0rd-delivery-7c1e"


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_event(
    n: int,
    *,
    kind: str = "todo_created",
    account_id: int = ACCOUNT,
    project: int | None = 1,
    private: bool = False,
) -> dict[str, Any]:
    return Event(
        id=event_id(account_id, kind, "Todo", n, f"v{n}"),
        kind=kind,
        account_id=account_id,
        project={"id": project, "name": f"P{project}"} if project is not None else None,
        recording={"id": n, "type": "Todo", "url": "", "app_url": "", "title": f"Todo {n}"},
        creator={"id": 1, "name": "Ann"},
        changes={},
        created_at=now_iso(),
        detected_at=now_iso(),
        summary=f"Ann added to-do {n}",
        source="diff",
        private=private,
    ).to_dict()


def settings(tmp: Path, handlers_toml: str, **poller: Any) -> Settings:
    data = tomllib.loads(handlers_toml)
    data["poller"] = {"state_path": str(tmp / "state.db"), **poller}
    return parse_settings(data)


def sim_settings(sim: Harness, handlers: list[dict[str, Any]], **poller: Any) -> Settings:
    """The simulator harness's configuration plus these `[[handlers]]`."""
    return parse_settings({**sim.config(**poller), "handlers": handlers})


async def cycle(sim: Harness, s: Settings, advance: float = 30.0) -> CycleReport:
    """One real poll cycle against the simulator, routed to `s.handlers`."""
    sim.clock.advance(advance)
    runner = open_account(s.accounts[0], store=sim.store)
    try:
        report = await run_cycle(runner, sim.store, s.poller, router(s.handlers))
    finally:
        await runner.aclose()
    assert report is not None, runner.last_error
    return report


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def handlers_toml(handlers: list[dict[str, Any]]) -> str:
    out = []
    for h in handlers:
        out.append("\n[[handlers]]")
        out += [f"{k} = {_toml_value(v)}" for k, v in h.items()]
    return "\n".join(out) + "\n"


def commit(store: Store, s: Settings, events: Iterable[dict[str, Any]]) -> list[int]:
    evs = list(events)
    account = evs[0]["account_id"] if evs else ACCOUNT
    return store.commit_cycle(CycleWrite(account, events=evs), router(s.handlers))


def dispatcher(store: Store, s: Settings, **kwargs: Any) -> Dispatcher:
    targets = build_targets(s.handlers, s.poller.state_path.parent, state_path=s.poller.state_path)
    return Dispatcher(store, targets, **kwargs)


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# -- an HTTP peer that can be stopped and started again on the same port ---------------


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpPeer:
    port: int = field(default_factory=free_port)
    hits: list[Hit] = field(default_factory=list)
    # consumed in order, then 200; a tuple adds response headers
    statuses: list[int | tuple[int, dict[str, str]]] = field(default_factory=list)
    delay: float = 0.0  # seconds each answer waits (cut short by `release`)
    release: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HttpPeer:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                peer.hits.append(
                    Hit(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                if peer.delay:
                    peer.release.wait(peer.delay)
                answer = peer.statuses.pop(0) if peer.statuses else 200
                status, headers = answer if isinstance(answer, tuple) else (answer, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


class SmtpPeer:
    """aiosmtpd on a fixed port, plain, with AUTH (the password is SMTP_PASSWORD)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.box = Mailbox()
        self._controller: Controller | None = None

    def start(self) -> SmtpPeer:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        def auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
            ok = isinstance(data, LoginPassword) and data.password == SMTP_PASSWORD.encode()
            return AuthResult(success=ok, handled=False)

        self._controller = Controller(
            self.box,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=auth,
            auth_require_tls=False,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


# -- the CLI ---------------------------------------------------------------------------


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "poller", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "BCX_POLLER_CONFIG": ""},
        check=False,
    )


def jsonl_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
