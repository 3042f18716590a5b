"""`script`: run a program for each event, with the event's JSON on its standard input.

The command is an argv list and is executed directly, never through a shell. The program
gets `BCX_EVENT_ID`, `BCX_EVENT_KIND` and `BCX_HANDLER` in its environment, plus the
`env` option, plus a small allowlist of the poller's own environment (PATH, HOME, locale,
TZ, ...) and whatever `pass_env` names: the poller's other variables (which may hold
Basecamp credentials) are not passed on.

Exit status 0 marks the event delivered. A non-zero status, a failure to start, or the
timeout (after which the whole process group is killed with SIGKILL) is a `HandlerError`,
so the dispatcher retries. Output is read with a cap: at most 64 KiB of stdout and of
stderr is kept (the rest is read and thrown away), so a flooding program cannot exhaust
memory; the last few hundred bytes of stderr go into the error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
from typing import Any

from pydantic import Field, field_validator

from handlers.base import HandlerContext, HandlerOptions
from poller.errors import HandlerError

log = logging.getLogger(__name__)

OUTPUT_CAP = 64 * 1024
STDERR_IN_ERROR = 400
_CHUNK = 16 * 1024
_INHERITED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR")


class ScriptOptions(HandlerOptions):
    command: list[str] = Field(min_length=1, description="argv; never run through a shell")
    timeout: float = Field(30, gt=0, description="seconds before the process group is killed")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment")
    pass_env: list[str] = Field(
        default_factory=list, description="names of poller environment variables to pass on"
    )

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(
                "must be a list of arguments, not a string (no shell is used), "
                'e.g. command = ["/usr/local/bin/notify", "--quiet"]'
            )
        return value

    @field_validator("command")
    @classmethod
    def _program(cls, value: list[str]) -> list[str]:
        if any("\0" in arg for arg in value):
            raise ValueError("arguments must not contain NUL characters")
        program = value[0]
        if not program:
            raise ValueError("the program (first element) must not be empty")
        if os.sep in program:
            if not (os.path.isfile(program) and os.access(program, os.X_OK)):
                raise ValueError(f"{program!r} is not an executable file")
        elif shutil.which(program) is None:
            raise ValueError(f"{program!r} not found on PATH")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if not key or "=" in key or "\0" in key or "\0" in val:
                raise ValueError(f"invalid environment variable name or value: {key!r}")
            if key.startswith("BCX_EVENT_"):
                raise ValueError(f"{key!r} is set by the handler itself")
        return value


class _Capped:
    """Reads a stream to EOF, keeping the first `cap` bytes and the last `tail` bytes."""

    def __init__(self, cap: int, tail: int) -> None:
        self.head = bytearray()
        self.last = bytearray()
        self.total = 0
        self._cap = cap
        self._tail = tail

    async def drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(_CHUNK):
            self.total += len(chunk)
            room = self._cap - len(self.head)
            if room > 0:
                self.head += chunk[:room]
            self.last += chunk
            del self.last[: max(0, len(self.last) - self._tail)]

    def tail_text(self) -> str:
        text = bytes(self.last).decode("utf-8", errors="replace").strip()
        return ("…" + text) if self.total > len(self.last) else text


class ScriptHandler:
    Options = ScriptOptions

    def __init__(self, options: ScriptOptions, context: HandlerContext) -> None:
        self.options = options
        self.name = context.name

    def __repr__(self) -> str:
        return f"ScriptHandler(name={self.name!r}, command={self.options.command!r})"

    def _environment(self, event: dict[str, Any]) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k in _INHERITED or k.startswith("LC_") or k in self.options.pass_env
        }
        env.update(self.options.env)
        env["BCX_EVENT_ID"] = str(event.get("id", ""))
        env["BCX_EVENT_KIND"] = str(event.get("kind", ""))
        env["BCX_HANDLER"] = self.name
        return env

    async def probe(self) -> str:
        """The program exists and may be executed; nothing is run."""
        return self._probe()

    def _probe(self) -> str:
        program = self.options.command[0]
        path = program if os.sep in program else shutil.which(program)
        if path is None or not os.path.isfile(path):
            raise HandlerError(f"{program}: not found")
        if not os.access(path, os.X_OK):
            raise HandlerError(f"{path}: not executable by this user")
        return f"{path} exists and is executable; not run"

    def preview(self, event: dict[str, Any]) -> str:
        """What `deliver` would run and feed it, without running it (values of `env` are
        not shown: they may be credentials)."""
        env = self._environment(event)
        shown = [f"{k}={env[k]}" for k in ("BCX_EVENT_ID", "BCX_EVENT_KIND", "BCX_HANDLER")]
        extra = sorted(k for k in env if not k.startswith("BCX_"))
        payload = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        return "\n".join(
            [
                "run (no shell): " + " ".join(shlex.quote(a) for a in self.options.command),
                "environment: " + " ".join(shown),
                "  also set: " + (", ".join(extra) or "nothing else"),
                f"timeout: {self.options.timeout:g}s",
                "stdin:",
                payload,
            ]
        )

    async def deliver(self, event: dict[str, Any]) -> None:
        payload = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
        program = self.options.command[0]
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.options.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._environment(event),
                start_new_session=True,  # its own process group, so a timeout kills it all
            )
        except OSError as exc:
            raise HandlerError(
                f"script {self.name}: cannot start {program!r}: {exc.strerror or exc}"
            ) from exc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        out = _Capped(OUTPUT_CAP, STDERR_IN_ERROR)
        err = _Capped(OUTPUT_CAP, STDERR_IN_ERROR)
        timed_out = False
        try:
            async with asyncio.timeout(self.options.timeout):
                await asyncio.gather(
                    _feed(proc.stdin, payload),
                    out.drain(proc.stdout),
                    err.drain(proc.stderr),
                )
                returncode = await proc.wait()
        except TimeoutError:
            timed_out = True
        finally:
            if proc.returncode is None or timed_out:
                _kill_group(proc.pid)
                # The pipes reach EOF once every process holding them is dead; a process
                # that escaped the group must not keep us waiting forever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        await asyncio.gather(out.drain(proc.stdout), err.drain(proc.stderr))
                await proc.wait()
        if timed_out:
            raise HandlerError(
                f"script {self.name}: {program!r} timed out after {self.options.timeout:g}s "
                "and was killed" + _stderr_suffix(err)
            )
        if out.total:
            log.debug("script %s stdout: %s", self.name, out.head[:1000].decode(errors="replace"))
        if returncode != 0:
            if returncode < 0:
                try:
                    how = f"was killed by {signal.Signals(-returncode).name}"
                except ValueError:
                    how = f"was killed by signal {-returncode}"
            else:
                how = f"exited with status {returncode}"
            raise HandlerError(f"script {self.name}: {program!r} {how}" + _stderr_suffix(err))

    async def aclose(self) -> None:
        return None


async def _feed(stdin: asyncio.StreamWriter, payload: bytes) -> None:
    """Write the event and close stdin; a program that does not read it is fine."""
    try:
        stdin.write(payload)
        await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        stdin.close()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await stdin.wait_closed()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _stderr_suffix(err: _Capped) -> str:
    text = err.tail_text()
    return f"; stderr: {text}" if text else ""
