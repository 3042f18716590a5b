"""Real brokers for the broker tests: `nats-server` with JetStream and `redis-server` with
`appendfsync always`, each on a loopback port of its own and a data directory under the
test's tmp_path, stopped after. Either can be stopped and started again on the same port
and data (a broker that goes down and comes back).

A missing binary fails the test (pytest.fail), never skips it: `.ci/run` installs Debian's
`nats-server` and `redis-server` when they are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Self

import pytest

from handlers._brokers import in_worker_thread
from tests.handlers._smtp import free_port

STREAM = "BCX"


def _run(coro: Any) -> Any:
    """Run `coro` on a loop of its own (in a worker thread: a test may be async itself)."""
    return in_worker_thread(coro, 30)


def binary(name: str) -> str:
    for found in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if found and os.access(found, os.X_OK):
            return found
    pytest.fail(
        f"{name} is not installed: the broker tests need it (.ci/run installs Debian's"
        f" {name} package when it is missing: apt-get install -y {name})"
    )


def _wait_port(
    port: int, proc: subprocess.Popen[bytes], log: Path, name: str, seconds: float = 10
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{name} exited {proc.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    pytest.fail(f"{name} did not listen on {port} within {seconds} s")


class Server:
    """A broker process that can go down and come back on the same port and data."""

    name = ""

    def __init__(self, directory: Path, *extra: str) -> None:
        self.extra = list(extra)  # more command-line arguments (credentials)
        self.port = free_port()
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Self:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        _wait_port(self.port, self.proc, self.log, self.argv()[0])
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class NatsServer(Server):
    name = "nats"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        return [
            binary("nats-server"),
            "-js",
            "-sd",
            str(self.dir / "jetstream"),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            *self.extra,
        ]

    # -- JetStream, through nats-py --------------------------------------------------------

    async def _with_js(self, fn: Any) -> Any:
        import nats

        auth = {}
        if "--auth" in self.extra:
            auth["token"] = self.extra[self.extra.index("--auth") + 1]
        nc = await nats.connect(self.url, allow_reconnect=False, max_reconnect_attempts=1, **auth)
        try:
            return await fn(nc.jetstream())
        finally:
            await nc.close()

    def add_stream(self, duplicate_window: float, name: str = STREAM) -> None:
        from nats.js.api import StorageType, StreamConfig

        async def add(js: Any) -> None:
            await js.add_stream(
                StreamConfig(
                    name=name,
                    subjects=["bcx.>"],
                    duplicate_window=duplicate_window,
                    storage=StorageType.FILE,
                )
            )

        _run(self._with_js(add))

    def messages(self, name: str = STREAM) -> list[dict[str, Any]]:
        """Every message of the stream in order: subject, Nats-Msg-Id, the event."""

        async def read(js: Any) -> list[dict[str, Any]]:
            info = await js.stream_info(name)
            out = []
            if info.state.messages:
                for seq in range(info.state.first_seq, info.state.last_seq + 1):
                    msg = await js.get_msg(name, seq)
                    out.append(
                        {
                            "subject": msg.subject,
                            "msg_id": (msg.headers or {}).get("Nats-Msg-Id"),
                            "event": json.loads(msg.data),
                        }
                    )
            return out

        result: list[dict[str, Any]] = _run(self._with_js(read))
        return result


class RedisServer(Server):
    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        return [
            binary("redis-server"),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            str(self.dir),
            "--save",
            "",
            *self.extra,
        ]

    def client(self) -> Any:
        import redis

        password = (
            self.extra[self.extra.index("--requirepass") + 1]
            if "--requirepass" in self.extra
            else None
        )
        return redis.Redis(
            host="127.0.0.1", port=self.port, password=password, decode_responses=True
        )

    def entries(self, stream: str = "bcx:events") -> list[dict[str, str]]:
        """Every entry of the stream in order (its fields)."""
        with self.client() as r:
            return [fields for _id, fields in r.xrange(stream)]
