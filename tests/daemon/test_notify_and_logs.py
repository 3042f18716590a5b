"""sd_notify never blocks the daemon; the log redaction reaches nested values."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from poller import logs, systemd


def test_notify_sends_to_the_socket_and_is_a_no_op_without_one(tmp_path: Path) -> None:
    path = str(tmp_path / "n.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(1)
        assert systemd.notify("READY=1", env={"NOTIFY_SOCKET": path})
        assert sock.recv(100) == b"READY=1"
    assert not systemd.notify("READY=1", env={})
    assert not systemd.notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "absent")})


def test_notify_to_an_abstract_socket(tmp_path: Path) -> None:
    name = f"bcx-poller-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(1)
        assert systemd.notify("WATCHDOG=1", env={"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(100) == b"WATCHDOG=1"


def test_notify_does_not_block_when_nobody_reads(tmp_path: Path) -> None:
    """A full queue drops the message after a short timeout instead of freezing the loop."""
    path = str(tmp_path / "n.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        for _ in range(5000):  # more than any net.unix.max_dgram_qlen in practice
            began = time.monotonic()
            if not systemd.notify("WATCHDOG=1", env={"NOTIFY_SOCKET": path}):
                break
        else:
            raise AssertionError("the queue never filled up")
        assert time.monotonic() - began < 1.0  # dropped after a short wait, not stuck


def test_watchdog_interval() -> None:
    pid = str(os.getpid())
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "2000000"}) == 1.0
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": pid}) == 1.0
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert systemd.watchdog_interval({}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


def test_redaction_masks_registered_secrets_and_secret_keys_at_any_depth() -> None:
    logs.register_secrets(["hunter2-secret-value"])
    event = {
        "event": "request_failed",
        "error": "401 for https://u:hunter2-secret-value@example.com",
        "detail": {"headers": {"Authorization": "Basic abc"}, "note": ["hunter2-secret-value"]},
        "password_file": "basecamp-password",
        "client_token": "xyz",
        "exc": ValueError("bad hunter2-secret-value"),
        "count": 3,
    }
    out = logs.redact(None, "info", dict(event))
    text = repr(out)
    assert "hunter2-secret-value" not in text
    assert out["detail"]["headers"]["Authorization"] == logs.MASK
    assert out["client_token"] == logs.MASK
    assert out["count"] == 3
    assert out["event"] == "request_failed"
