"""`bcx-poller run` as a real subprocess: simulators on loopback, a NOTIFY_SOCKET that
records what the daemon tells systemd, config writing, bounded waits."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poller.simulator import Account, SimulatorApp, account_base_url, serve

USER_AGENT = "bcx-poller daemon tests (ops@example.com)"
USERNAME = "ops@example.com"


def wait_until(
    predicate: Callable[[], Any], within: float, what: str, *, every: float = 0.05
) -> Any:
    """Poll `predicate` until it returns something truthy; AssertionError after `within`."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sim:
    """One simulated Basecamp account served on its own loopback port."""

    account: Account
    app: SimulatorApp
    base_url: str
    password: str

    @property
    def id(self) -> int:
        return self.account.account_id

    @property
    def root(self) -> str:
        return account_base_url(self.base_url, self.id)

    def seed(self) -> tuple[int, list[int]]:
        """A project with a to-do list of three open to-dos: (list id, to-do ids)."""
        project = self.account.create_project(f"Project of {self.id}")
        todolist = self.account.create_todolist(project, "Launch")
        todos = [self.account.create_todo(todolist, f"Task {n}") for n in range(3)]
        return todolist, todos

    def requests(self) -> int:
        return len(self.app.log)

    def account_toml(self, **extra: str) -> str:
        lines = [
            "[[accounts]]",
            f"id = {self.id}",
            f'name = "acct-{self.id}"',
            f'base_url = "{self.root}"',
            f'user_agent = "{USER_AGENT}"',
            f'username = "{USERNAME}"',
            f'password = "{self.password}"',
            "timeout = 5",
        ]
        lines += [f"{k} = {v}" for k, v in extra.items()]
        return "\n".join(lines) + "\n"


@contextmanager
def simulators(*account_ids: int) -> Iterator[list[Sim]]:
    """Each account id gets its own Account, SimulatorApp and server (real clock)."""
    with ExitStack() as stack:
        sims = []
        for aid in account_ids:
            account = Account(aid, name=f"Account {aid}", seed=aid)
            password = f"pw-{aid}-Zq9x"
            app = SimulatorApp(account, users={USERNAME: password})
            base = stack.enter_context(serve(app))
            sims.append(Sim(account, app, base, password))
        yield sims


def jsonl_handler(name: str, path: Path) -> str:
    return f'[[handlers]]\nname = "{name}"\ntype = "jsonl"\npath = "{path}"\n'


def write_config(
    path: Path,
    sims: list[Sim],
    handlers: str,
    *,
    metrics_port: int | None = None,
    interval: float = 0.5,
    cycle_timeout: float = 10,
) -> Path:
    parts = [
        "[poller]",
        f'state_path = "{path.parent / "state.db"}"',
        f"interval = {interval}",
        "reconcile_interval = 0",
        "jitter = 0.1",
        f"cycle_timeout = {cycle_timeout}",
        "",
        "[logging]",
        'level = "debug"  # idle cycles, which tests wait for, log at debug',
        "",
        *(s.account_toml() for s in sims),
        handlers,
    ]
    if metrics_port is not None:
        parts.append(f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n')
    path.write_text("\n".join(parts) + "\n")
    path.chmod(0o600)
    return path


class NotifySocket:
    """A unix datagram socket standing in for systemd's: records every message."""

    def __init__(self, directory: Path) -> None:
        self.path = str(directory / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append((time.monotonic(), data.decode()))

    def lines(self) -> list[tuple[float, str]]:
        """(arrival time, `KEY=value`) for every line of every message."""
        with self._lock:
            return [(t, line) for t, m in self.messages for line in m.splitlines()]

    def times(self, line: str) -> list[float]:
        return [t for t, got in self.lines() if got == line]

    def statuses(self) -> list[str]:
        return [line[7:] for _t, line in self.lines() if line.startswith("STATUS=")]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@dataclass
class Daemon:
    """`python -m poller run --config ...` as a subprocess; stderr goes to a file."""

    config: Path
    env: dict[str, str] = field(default_factory=dict)
    shutdown_timeout: float = 5.0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    started_at: float = 0.0

    def start(self) -> Daemon:
        n = len(list(self.config.parent.glob("daemon-*.log")))
        self.log_path = self.config.parent / f"daemon-{n}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("BCX_POLLER_")}
        env.pop("NOTIFY_SOCKET", None)
        env.pop("WATCHDOG_USEC", None)
        env.update(self.env)
        with self.log_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "poller",
                    "run",
                    "--config",
                    str(self.config),
                    "--shutdown-timeout",
                    str(self.shutdown_timeout),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )
        self.started_at = time.monotonic()
        return self

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines so far (stderr is not a terminal: JSON)."""
        assert self.log_path is not None
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                out.append({"event": "<not json>", "raw": line})
        return out

    def raw_log(self) -> str:
        assert self.log_path is not None
        return self.log_path.read_text(errors="replace")

    def logged(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [
            line
            for line in self.logs()
            if line.get("event") == event and all(line.get(k) == v for k, v in match.items())
        ]

    def wait_logged(self, event: str, within: float = 10, **match: Any) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            self.assert_alive()
            got = self.logged(event, **match)
            return got[-1] if got else None

        return wait_until(found, within, f"log line {event} {match or ''}")  # type: ignore[no-any-return]

    def assert_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"daemon exited with {self.proc.returncode}:\n{self.raw_log()[-3000:]}"
            )

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, within: float | None = None) -> tuple[int, float]:
        """SIGTERM, wait; (exit status, seconds it took)."""
        assert self.proc is not None
        limit = within if within is not None else self.shutdown_timeout + 5
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"daemon did not exit within {limit:g}s of SIGTERM:\n{self.raw_log()[-3000:]}"
            ) from None
        return code, time.monotonic() - began

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@contextmanager
def running(daemon: Daemon) -> Iterator[Daemon]:
    """Start the daemon; kill it on the way out whatever happened."""
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.kill()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics as {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, body
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def sample(
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float | None:
    return metrics.get((name, tuple(sorted(labels.items()))))


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCX_POLLER_")}
    return subprocess.run(
        [sys.executable, "-m", "poller", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
