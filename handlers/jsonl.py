"""`jsonl`: append each event as one line of compact JSON (sorted keys) to a file.

Every line is flushed and fsync'ed before `deliver` returns. The file is created with mode
0600. Log rotation is safe: before each write the path is stat'ed, and when it names
another file than the one open (renamed/removed by logrotate, or replaced) it is reopened.
A line left half-written by a crash or a full disk is closed with a newline before the
next one, so every complete event stays on a line of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from pydantic import field_validator

from handlers.base import HandlerContext, HandlerOptions
from poller.errors import HandlerError


class JsonlOptions(HandlerOptions):
    path: Path

    @field_validator("path")
    @classmethod
    def _path(cls, value: Path) -> Path:
        if not str(value).strip():
            raise ValueError("must not be empty")
        return value.expanduser()


def encode_line(event: dict[str, Any]) -> bytes:
    """One event as a compact, key-sorted JSON line (UTF-8, newline-terminated)."""
    text = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return (text + "\n").encode()


class JsonlHandler:
    Options = JsonlOptions

    def __init__(self, options: JsonlOptions, context: HandlerContext) -> None:
        self.options = options
        self.name = context.name
        self._fd: int | None = None
        self._check_tail = True  # after open or a failed write: is the last byte a newline?
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"JsonlHandler(name={self.name!r}, path={str(self.options.path)!r})"

    async def probe(self) -> str:
        """The file can be appended to (or created); nothing is written."""
        return self._probe()

    def _probe(self) -> str:
        path = self.options.path
        if path.exists():
            if not os.access(path, os.W_OK):
                raise HandlerError(f"{path}: not writable by this user")
            return f"{path} is writable; nothing written"
        parent = path.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise HandlerError(f"{path}: cannot be created ({parent} is not a writable directory)")
        return f"{path} can be created; nothing written"

    def preview(self, event: dict[str, Any]) -> str:
        """What `deliver` would append, without writing it."""
        return f"append to {self.options.path}:\n" + encode_line(event).decode().rstrip("\n")

    async def deliver(self, event: dict[str, Any]) -> None:
        line = encode_line(event)
        async with self._lock:
            try:
                await asyncio.to_thread(self._write, line)
            except OSError as exc:
                self._check_tail = True
                raise HandlerError(
                    f"jsonl {self.name}: cannot write {self.options.path}: {exc.strerror or exc}"
                ) from exc

    async def aclose(self) -> None:
        async with self._lock:
            self._close()

    # -- blocking helpers, run in a worker thread ------------------------------------------

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _current_fd(self) -> int:
        path = self.options.path
        if self._fd is not None:
            try:
                on_disk = os.stat(path)
            except FileNotFoundError:
                on_disk = None
            held = os.fstat(self._fd)
            if on_disk is None or (on_disk.st_dev, on_disk.st_ino) != (held.st_dev, held.st_ino):
                self._close()
        if self._fd is None:
            flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
            self._fd = os.open(path, flags, 0o600)
            self._check_tail = True
        return self._fd

    def _write(self, line: bytes) -> None:
        fd = self._current_fd()
        if self._check_tail:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            self._check_tail = False
        view = memoryview(line)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
