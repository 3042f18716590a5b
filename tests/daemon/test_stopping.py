"""Stopping always works: a closed log pipe never keeps the daemon running; the first
SIGINT/SIGTERM is graceful (and says so on a terminal), the second stops now with
128 + signal, leaving in flight what was in flight (still queued, nothing half-done)."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from poller.store import Store
from tests.daemon._support import (
    jsonl_handler,
    run_cli,
    simulators,
    wait_until,
    write_config,
)
from tests.daemon.test_shutdown import GATED


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCX_POLLER_")}
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WATCHDOG_USEC", None)
    return env


def _popen(config: Path, shutdown_timeout: float, **kw: object) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "poller", "run", "--config", str(config)]
    cmd += ["--shutdown-timeout", str(shutdown_timeout)]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, env=_env(), **kw)  # type: ignore[call-overload,no-any-return]


def _cycles(state: Path, account: int) -> int:
    store = Store(state)
    try:
        return store.account(account).cycles
    finally:
        store.close()


def _exit_within(proc: subprocess.Popen[bytes], seconds: float) -> int:
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError(f"the daemon did not exit within {seconds:g}s") from None


def test_sigterm_stops_the_daemon_after_its_log_pipe_was_closed(tmp_path: Path) -> None:
    """`bcx-poller run 2>&1 | head -1`: the reader goes away, log writes fail (EPIPE), and
    the daemon still polls, and still stops on SIGTERM."""
    with simulators(1001001) as (sim,):
        _l, todos = sim.seed()
        out = tmp_path / "events.jsonl"
        config = write_config(tmp_path / "config.toml", [sim], jsonl_handler("file", out))
        proc = _popen(config, 5, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            assert proc.stderr is not None
            first = proc.stderr.readline()  # one line read, like `head -1`
            assert first, "the daemon logged nothing"
            proc.stderr.close()  # the reader is gone: every later log write is EPIPE
            state = tmp_path / "state.db"
            wait_until(lambda: state.exists() and _cycles(state, sim.id) >= 3, 20, "cycles")
            # still polling with nowhere to log: a change still arrives
            sim.account.complete_todo(todos[0])
            wait_until(lambda: out.exists() and "todo_completed" in out.read_text(), 20, "event")
            proc.send_signal(signal.SIGTERM)
            assert _exit_within(proc, 10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def _gated_handler(tmp_path: Path) -> tuple[str, Path, Path]:
    script, out, gate = tmp_path / "deliver.py", tmp_path / "delivered.txt", tmp_path / "gate"
    script.write_text(GATED)
    gate.touch()
    handler = (
        '[[handlers]]\nname = "hook"\ntype = "script"\n'
        f'command = ["{sys.executable}", "{script}", "{out}", "{gate}"]\ntimeout = 120\n'
    )
    return handler, out, gate


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_second_signal_stops_now_and_leaves_the_delivery_queued(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    handler, out, gate = _gated_handler(tmp_path)
    with simulators(1001001) as (sim,):
        _l, todos = sim.seed()
        config = write_config(tmp_path / "config.toml", [sim], handler)
        log = (tmp_path / "daemon.log").open("wb")
        proc = _popen(config, 60, stdout=subprocess.DEVNULL, stderr=log)
        try:
            state = tmp_path / "state.db"
            wait_until(lambda: state.exists() and _cycles(state, sim.id) >= 1, 20, "baseline")
            sim.account.complete_todo(todos[0])
            started = Path(str(out) + ".started")
            wait_until(started.exists, 15, "the delivery to start")
            in_flight = started.read_text()

            proc.send_signal(sig)
            time.sleep(1.0)
            assert proc.poll() is None  # graceful: waiting for the delivery (up to 60 s)
            began = time.monotonic()
            proc.send_signal(sig)
            assert _exit_within(proc, 8) == code
            assert time.monotonic() - began < 6
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            log.close()
        lines = [json.loads(x) for x in (tmp_path / "daemon.log").read_text().splitlines()]
        assert any(x.get("event") == "stopping_now" for x in lines), lines[-5:]
        assert not out.exists()
        pending = run_cli("deliveries", "--json", "--config", str(config))
        assert pending.returncode == 0, pending.stderr
        rows = json.loads(pending.stdout)
        assert [(r["event_id"], r["status"]) for r in rows] == [(in_flight, "pending")]
        # the state is whole: the next daemon delivers it, once
        gate.unlink()
        proc = _popen(config, 5, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(out.exists, 20, "the redelivery")
            proc.send_signal(signal.SIGTERM)
            assert _exit_within(proc, 15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        assert out.read_text().split() == [in_flight]


def _read_pty(fd: int, until: str, within: float) -> str:
    text = ""
    deadline = time.monotonic() + within
    while until not in text and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            text += chunk.decode(errors="replace")
    return text


def test_ctrl_c_on_a_terminal_says_it_is_stopping_and_how_to_stop_now(tmp_path: Path) -> None:
    with simulators(1001001) as (sim,):
        sim.seed()
        config = write_config(tmp_path / "config.toml", [sim], "")
        master, slave = pty.openpty()
        proc = _popen(config, 5, stdout=slave, stderr=slave)
        os.close(slave)
        try:
            seen = _read_pty(master, "daemon_started", 20)
            assert "daemon_started" in seen, seen
            proc.send_signal(signal.SIGINT)
            said = _read_pty(master, "again", 10)
            assert "stopping" in said and "Ctrl-C again to stop now" in said, said
            assert _exit_within(proc, 10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            os.close(master)


class _FullDisk:
    def write(self, text: str) -> int:
        raise OSError(28, "No space left on device")

    def flush(self) -> None:
        raise OSError(28, "No space left on device")

    def isatty(self) -> bool:
        return False


def test_a_log_line_that_cannot_be_written_never_raises(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import logging

    import structlog

    from poller import logs

    try:
        logs.configure("info", "json", stream=_FullDisk())
        structlog.get_logger("t").info("cycle_committed", account=1)  # must not raise
        logging.getLogger("apscheduler").warning("from the stdlib")  # nor this
        # the line went to stderr instead of being lost
        assert "cycle_committed" in capsys.readouterr().err
    finally:
        logs.configure("info", "json")


# -- one owner per state file -------------------------------------------------------------


def test_a_second_writer_is_refused_at_once_and_readers_work_beside_the_daemon(
    tmp_path: Path,
) -> None:
    from tests.daemon._support import Daemon, running

    with simulators(1001001) as (sim,):
        sim.seed()
        out = tmp_path / "events.jsonl"
        config = write_config(tmp_path / "config.toml", [sim], jsonl_handler("file", out))
        state = tmp_path / "state.db"
        with running(Daemon(config)) as daemon:
            daemon.wait_logged("cycle_committed", within=20)
            assert daemon.proc is not None
            pid = str(daemon.proc.pid)
            assert (tmp_path / "state.db.lock").read_text().strip() == pid
            for args in (
                ("run",),
                ("once", "--deliver-timeout", "0"),
                ("backfill", "--since", "1h"),
                ("redeliver", "--dead"),
            ):
                began = time.monotonic()
                refused = run_cli(*args, "--config", str(config), timeout=30)
                assert refused.returncode == 1, (args, refused.stderr)
                assert time.monotonic() - began < 10  # at once, not after a cycle
                assert str(state) in refused.stderr and pid in refused.stderr, refused.stderr
            for args in (("status",), ("events", "--json"), ("deliveries", "--json")):
                read = run_cli(*args, "--config", str(config))
                assert read.returncode == 0, (args, read.stderr)
            daemon.assert_alive()
            code, _took = daemon.stop()
            assert code == 0
        # the lock went with the daemon: the next writer gets it
        assert run_cli("once", "--config", str(config), "--deliver-timeout", "0").returncode == 0
