from __future__ import annotations

import json
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from handlers.base import HandlerContext
from handlers.script import ScriptHandler
from poller.errors import HandlerError


def _script(tmp_path: Path, name: str, body: str) -> list[str]:
    path = tmp_path / name
    path.write_text("import json, os, sys, time\n" + body)
    return [sys.executable, str(path)]


def _handler(context: HandlerContext, command: list[str], **options: Any) -> ScriptHandler:
    return ScriptHandler(ScriptHandler.Options(command=command, **options), context)


async def test_event_on_stdin_and_environment(
    tmp_path: Path, context: HandlerContext, event: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BCX_POLLER_ACCOUNTS__0__PASSWORD", "hunter2")
    monkeypatch.setenv("PASSED_THROUGH", "yes")
    out = tmp_path / "out.json"
    command = _script(
        tmp_path,
        "record.py",
        f"""
data = json.load(sys.stdin)
env = {{k: v for k, v in os.environ.items()}}
open({str(out)!r}, "w").write(json.dumps({{"event": data, "env": env, "argv": sys.argv[1:]}}))
""",
    )
    handler = _handler(
        context,
        [*command, "--flag", "two words"],
        env={"EXTRA": "1"},
        pass_env=["PASSED_THROUGH"],
    )
    await handler.deliver(event)
    await handler.aclose()
    seen = json.loads(out.read_text())
    assert seen["event"] == event
    assert seen["argv"] == ["--flag", "two words"]
    env = seen["env"]
    assert env["BCX_EVENT_ID"] == event["id"]
    assert env["BCX_EVENT_KIND"] == "todo_completed"
    assert env["BCX_HANDLER"] == "test"
    assert env["EXTRA"] == "1"
    assert env["PASSED_THROUGH"] == "yes"
    assert "PATH" in env
    assert "BCX_POLLER_ACCOUNTS__0__PASSWORD" not in env


async def test_nonzero_exit_is_handler_error_with_status_and_stderr_tail(
    tmp_path: Path, context: HandlerContext, event: dict[str, Any]
) -> None:
    command = _script(
        tmp_path,
        "fail.py",
        'sys.stderr.write("x" * 5000 + "the real reason")\nsys.exit(3)\n',
    )
    handler = _handler(context, command)
    with pytest.raises(HandlerError) as info:
        await handler.deliver(event)
    message = str(info.value)
    assert "exited with status 3" in message
    assert message.endswith("the real reason")
    assert len(message) < 700


async def test_fails_twice_then_succeeds(
    tmp_path: Path, context: HandlerContext, event: dict[str, Any]
) -> None:
    counter = tmp_path / "count"
    command = _script(
        tmp_path,
        "flaky.py",
        f"""
p = {str(counter)!r}
n = int(open(p).read()) + 1 if os.path.exists(p) else 1
open(p, "w").write(str(n))
if n < 3:
    sys.stderr.write(f"attempt {{n}} failed")
    sys.exit(1)
""",
    )
    handler = _handler(context, command)
    for attempt in (1, 2):
        with pytest.raises(HandlerError, match=f"attempt {attempt} failed"):
            await handler.deliver(event)
    await handler.deliver(event)
    assert counter.read_text() == "3"


async def test_hang_is_killed_at_timeout_with_its_children(
    tmp_path: Path, context: HandlerContext, event: dict[str, Any]
) -> None:
    pidfile = tmp_path / "child.pid"
    command = _script(
        tmp_path,
        "hang.py",
        f"""
import subprocess
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
open({str(pidfile)!r}, "w").write(str(child.pid))
sys.stderr.write("going to sleep")
sys.stderr.flush()
time.sleep(60)
""",
    )
    handler = _handler(context, command, timeout=1.5)
    started = time.monotonic()
    with pytest.raises(HandlerError, match=r"timed out after 1.5s and was killed.*going to sleep"):
        await handler.deliver(event)
    assert time.monotonic() - started < 10
    child = int(pidfile.read_text())
    # the grandchild was in the same process group and got killed too
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return status != "Z"


async def test_flooding_output_is_capped(
    tmp_path: Path, context: HandlerContext, event: dict[str, Any]
) -> None:
    # 64 MiB on each stream; the handler keeps a bounded amount and the script finishes
    command = _script(
        tmp_path,
        "flood.py",
        """
block = b"y" * (1 << 20)
for _ in range(64):
    sys.stdout.buffer.write(block)
    sys.stderr.buffer.write(block)
sys.stderr.buffer.write(b"done")
sys.exit(2)
""",
    )
    handler = _handler(context, command, timeout=60)
    tracemalloc.start()
    try:
        with pytest.raises(HandlerError) as info:
            await handler.deliver(event)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * (1 << 20)  # 128 MiB went through; far less was ever held
    assert "exited with status 2" in str(info.value)
    assert str(info.value).endswith("done")
    assert len(str(info.value)) < 700


async def test_script_that_ignores_stdin_with_large_event(
    tmp_path: Path, context: HandlerContext, event: dict[str, Any]
) -> None:
    command = _script(tmp_path, "ignore.py", "sys.exit(0)\n")
    big = {**event, "details": {"blob": "z" * (1 << 20)}}
    await _handler(context, command, timeout=10).deliver(big)


async def test_missing_program_at_runtime_is_retryable(
    tmp_path: Path, context: HandlerContext, event: dict[str, Any]
) -> None:
    program = tmp_path / "notify"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    handler = _handler(context, [str(program)])
    await handler.deliver(event)
    program.unlink()
    with pytest.raises(HandlerError, match="cannot start"):
        await handler.deliver(event)


def test_string_command_is_refused() -> None:
    with pytest.raises(ValidationError, match="not a string"):
        ScriptHandler.Options(command="notify --all | sh")  # type: ignore[arg-type]


def test_empty_command_and_unknown_program_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="at least 1"):
        ScriptHandler.Options(command=[])
    with pytest.raises(ValidationError, match="not found on PATH"):
        ScriptHandler.Options(command=["surely-no-such-program-bcx"])
    with pytest.raises(ValidationError, match="not an executable file"):
        ScriptHandler.Options(command=[str(tmp_path / "nope.sh")])


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValidationError):
        ScriptHandler.Options(command=[sys.executable], timeout=0)
