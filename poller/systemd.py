"""sd_notify without systemd-python: READY=1, WATCHDOG=1, STATUS=..., STOPPING=1.

Messages go as datagrams to the AF_UNIX socket named by `$NOTIFY_SOCKET` (a leading `@`
means the abstract namespace). Without that variable every call is a no-op, so the same
code runs under systemd, in a terminal and in tests.

A send never blocks for long: it is made from the event loop, and a notification socket
whose queue is full (nobody reading it) must not freeze the daemon; after `timeout`
seconds the message is dropped and `notify` returns False.
"""

from __future__ import annotations

import os
import socket


def notify(message: str, *, env: dict[str, str] | None = None, timeout: float = 0.1) -> bool:
    """Send one notification; True when it was sent."""
    environ = env if env is not None else os.environ
    address = environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:  # includes the timeout: a full queue drops the message
        return False
    return True


def watchdog_interval(env: dict[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of `$WATCHDOG_USEC`, or None when unset
    (or meant for another process, per `$WATCHDOG_PID`)."""
    environ = env if env is not None else os.environ
    usec = environ.get("WATCHDOG_USEC")
    pid = environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    return max(0.05, value / 2_000_000)
