"""systemd/bcx-poller.service under a real, private systemd (PID 1 of its own namespaces).

boot.sh boots it with its own /run, /tmp, /var/tmp, /var/lib and cgroup (see its header and
systemd/README.md); the shipped unit is copied unchanged and test-only settings come from a
drop-in (the test virtualenv, a config outside /etc, shorter timeouts, logs to a file).
The Basecamp simulator runs in this process, on a socket opened inside the namespace's
network (the daemon sees only loopback there).

Needs root, unshare/nsenter and /lib/systemd/systemd; skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from poller.simulator import Account, SimulatorApp, account_base_url, serve
from tests.daemon._support import read_jsonl, wait_until

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parents[1]
BOOT = HERE / "boot.sh"
UNIT = CHECKOUT / "systemd" / "bcx-poller.service"
SYSTEMD = Path("/lib/systemd/systemd")
SYSTEM_PYTHON = Path("/usr/bin/python3")
# Outside /tmp on purpose: the namespace gets a /tmp of its own.
BASE = Path(os.environ.get("BCX_SYSTEMD_TEST_DIR", "/srv/bcx-poller-systemd-tests"))

ACCOUNT_ID = 5550001
SIM_PORT = 18950  # in the namespace's own network: nothing else listens there
USERNAME = "ops@example.com"
PASSWORD = "pw-systemd-Zq9x"
SHUTDOWN_TIMEOUT = 3  # --shutdown-timeout in the drop-in
TIMEOUT_STOP = 10  # TimeoutStopSec= in the drop-in
WATCHDOG = 5  # WatchdogSec= in the drop-in (pings every 2.5 s: no false alarm under load)
STATE = "/var/lib/bcx-poller"  # as the unit sees it
UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (boots a private systemd in new namespaces)"
    for tool in ("unshare", "nsenter", "mountpoint"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.access(SYSTEMD, os.X_OK):
        return f"no {SYSTEMD}"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"no {SYSTEM_PYTHON} for the unit's virtualenv"
    probe = subprocess.run(
        [UNSHARE, "--pid", "--fork", "--mount", "--net", "--cgroup", "true"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if probe.returncode != 0:
        return f"cannot create namespaces here: {probe.stderr.strip()}"
    return None


REASON = _why_not()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


# -- the unit's virtualenv ---------------------------------------------------------------


def _snapshot(into: Path) -> str:
    """Copy what `pip install` needs from the checkout (building there would write into
    it); return a hash of the copy."""
    digest = hashlib.sha256(SYSTEM_PYTHON.resolve().as_posix().encode())
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(CHECKOUT / name, into / name)
    for package in ("poller", "handlers"):
        shutil.copytree(CHECKOUT / package, into / package, ignore=ignore)
    for path in sorted(p for p in into.rglob("*") if p.is_file()):
        digest.update(path.relative_to(into).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _pip(venv: Path, *args: str) -> None:
    """This interpreter's pip, installing into `venv` (so /usr/bin/python3 needs no
    python3-venv/ensurepip, and each virtualenv is made in a fraction of a second)."""
    python = str(venv / "bin" / "python")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _new_venv(venv: Path) -> Path:
    """An empty virtualenv of /usr/bin/python3; its site-packages."""
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run(
        [str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    (site,) = venv.glob("lib/python3*/site-packages")
    return site


def unit_venv() -> Path:
    """A virtualenv of /usr/bin/python3 with a snapshot of this checkout installed (not
    editable: the unit may not see the checkout), cached by source hash under BASE.

    Two layers: the dependencies (and the build backend), cached by what pyproject.toml
    asks for, and per source hash a small virtualenv that sees them through a .pth file
    and gets the project itself with --no-deps --no-build-isolation (a few seconds)."""
    BASE.mkdir(mode=0o755, parents=True, exist_ok=True)
    project = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())
    requirements = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    deps_key = hashlib.sha256(
        "\n".join([SYSTEM_PYTHON.resolve().as_posix(), *requirements]).encode()
    ).hexdigest()[:16]
    deps = BASE / f"deps-{deps_key}"
    with (BASE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (deps / ".complete").exists():
            _new_venv(deps)
            _pip(deps, *requirements)
            (deps / ".complete").touch()
        source = Path(tempfile.mkdtemp(prefix="src-", dir=BASE))
        try:
            venv = BASE / f"venv-{_snapshot(source)}"
            if not (venv / ".complete").exists():
                site = _new_venv(venv)
                (deps_site,) = deps.glob("lib/python3*/site-packages")
                (site / "_bcx_poller_test_deps.pth").write_text(f"{deps_site}\n")
                _pip(venv, "--no-deps", "--no-build-isolation", str(source))
                (venv / ".complete").touch()
        finally:
            shutil.rmtree(source, ignore_errors=True)
        for used in (deps, venv):
            os.utime(used / ".complete")
        # Copies nobody used for 15 minutes (the sources changed since) go; a session
        # takes about a minute.
        for old in [*BASE.glob("venv-*"), *BASE.glob("deps-*"), *BASE.glob("src-*")]:
            marker = old / ".complete"
            if old not in (deps, venv) and (
                not marker.exists() or time.time() - marker.stat().st_mtime > 900
            ):
                shutil.rmtree(old, ignore_errors=True)
    return venv


# -- the simulator, inside the namespace's network ---------------------------------------

_CLONE_NEWNET = 0x40000000


class NetnsSimulator:
    """A simulated Basecamp account served from a thread that joined the namespace's
    network (network namespaces are per thread), so its socket is the namespace's
    127.0.0.1:SIM_PORT while the account stays in this process for the tests to change."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.account = Account(ACCOUNT_ID, name="Systemd test", seed=7)
        self.app = SimulatorApp(self.account, users={USERNAME: PASSWORD})
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="netns-simulator", daemon=True)

    def _run(self) -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/proc/{self.pid}/ns/net", os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns: {os.strerror(err)}")
            finally:
                os.close(fd)
            with serve(self.app, "127.0.0.1", SIM_PORT):
                self._ready.set()
                self._stop.wait()
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    def start(self) -> NetnsSimulator:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def root(self) -> str:
        return account_base_url(f"http://127.0.0.1:{SIM_PORT}", ACCOUNT_ID)


# -- the booted systemd --------------------------------------------------------------------


class Booted:
    """One private systemd, the drop-in, config and files of one test module."""

    def __init__(self, root: Path, venv: Path) -> None:
        self.root = root
        self.venv = venv
        self.units = root / "units"
        self.varlib = root / "varlib"
        self.conf = root / "conf" / "config.toml"
        self.log = root / "logs" / "daemon.log"
        self.gate = root / "conf" / "gate"
        self.results = root / "logs" / "results.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self.sim: NetnsSimulator | None = None

    # files as the unit sees them, from outside
    def state(self, name: str = "") -> Path:
        return self.varlib / "private" / "bcx-poller" / name

    def prepare(self) -> None:
        for d in (self.units, self.varlib, self.conf.parent, self.log.parent):
            d.mkdir(mode=0o755, parents=True)
        (self.units / "bcx-test.target").write_text(
            "[Unit]\nDescription=bcx-poller systemd tests\n"
        )
        shutil.copy(UNIT, self.units / "bcx-poller.service")
        dropins = self.units / "bcx-poller.service.d"
        dropins.mkdir()
        (dropins / "test.conf").write_text(
            "\n".join(
                [
                    "[Service]",
                    "ExecStart=",
                    f"ExecStart={self.venv}/bin/bcx-poller run --config {self.conf}"
                    f" --shutdown-timeout {SHUTDOWN_TIMEOUT}",
                    # LoadCredential= hands out an empty folder in this sandbox: the
                    # password comes from the environment instead.
                    "LoadCredential=",
                    f"Environment=BCX_TEST_BASECAMP_PASSWORD={PASSWORD}",
                    # The config lives with the test, not in the host's /etc.
                    "ConfigurationDirectory=",
                    f"TimeoutStopSec={TIMEOUT_STOP}",
                    f"WatchdogSec={WATCHDOG}",
                    "RestartSec=1",
                    # No journald in the namespace: the daemon's JSON lines go to a file.
                    f"StandardOutput=append:{self.log}",
                    f"StandardError=append:{self.log}",
                    # How each run ended, as systemd saw it (run as root, outside the sandbox).
                    'ExecStopPost=+/bin/sh -c \'echo "$$SERVICE_RESULT $$EXIT_CODE $$EXIT_STATUS"'
                    f" >> {self.results}'",
                    "",
                ]
            )
        )
        shutil.copy(HERE / "gated.py", self.conf.parent / "gated.py")
        self.write_config()

    def write_config(self, *, extra: str = "", bad: bool = False) -> None:
        text = "\n".join(
            [
                "[poller]",
                f'state_path = "{STATE}/state.db"',
                "interval = 0.5" if not bad else "interval = -1",
                "reconcile_interval = 0",
                "jitter = 0.1",
                "cycle_timeout = 10",
                "",
                "[logging]",
                'format = "json"',
                'level = "debug"  # idle cycles, which the tests wait for, log at debug',
                "",
                "[[accounts]]",
                f"id = {ACCOUNT_ID}",
                f'base_url = "{account_base_url(f"http://127.0.0.1:{SIM_PORT}", ACCOUNT_ID)}"',
                'user_agent = "bcx-poller systemd tests (ops@example.com)"',
                f'username = "{USERNAME}"',
                'password_env = "BCX_TEST_BASECAMP_PASSWORD"',
                "timeout = 5",
                "",
                "[[handlers]]",
                'name = "archive"',
                'type = "jsonl"',
                f'path = "{STATE}/events.jsonl"',
                "",
                "[[handlers]]",
                'name = "gated"',
                'type = "script"',
                f'command = ["/usr/bin/python3", "{self.conf.parent / "gated.py"}",'
                f' "{STATE}/gated.txt", "{self.gate}"]',
                "timeout = 120",
                'kinds = ["todo_*"]',
                "",
                extra,
            ]
        )
        tmp = self.conf.with_suffix(".new")
        tmp.write_text(text + "\n")
        tmp.chmod(0o644)  # read by the service's dynamic user; no secret in it
        tmp.replace(self.conf)

    def boot(self) -> None:
        # setpriv --pdeathsig: should pytest die, boot.sh (by then unshare --kill-child) is
        # killed, and with it systemd and everything in its namespaces.
        setpriv = shutil.which("setpriv")
        prefix = [setpriv, "--pdeathsig", "KILL"] if setpriv else []
        self.proc = subprocess.Popen(
            [*prefix, str(BOOT), str(self.root)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def systemd_pid() -> int | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"boot.sh exited {self.proc.returncode}:\n{self.boot_log()}")
            try:
                children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
                pids = children.read_text().split()
                if not pids:
                    return None
                cmd = Path(f"/proc/{pids[0]}/cmdline").read_bytes()
            except OSError:
                return None
            return int(pids[0]) if cmd.startswith(str(SYSTEMD).encode()) else None

        self.pid = wait_until(systemd_pid, 20, "systemd to start in the namespace")

        def booted() -> bool:
            r = self.systemctl("is-system-running", check=False)
            return r.stdout.strip() in ("running", "degraded")

        wait_until(booted, 30, "the private systemd to finish booting", every=0.2)
        self.sim = NetnsSimulator(self.pid).start()

    def boot_log(self) -> str:
        path = self.root / "boot.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def results_log(self) -> list[str]:
        """One "SERVICE_RESULT EXIT_CODE EXIT_STATUS" line per end of the main process."""
        return self.results.read_text().splitlines() if self.results.exists() else []

    def shutdown(self) -> None:
        if self.sim is not None:
            self.sim.close()
        if self.pid:
            # PID 1 of the namespace: its death kills everything in it.
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        cgroup_file = self.root / "cgroup"
        if cgroup_file.exists():
            remove_cgroup(Path(cgroup_file.read_text().strip()))

    # -- talking to it ---------------------------------------------------------------

    def systemctl(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [NSENTER, "-t", str(self.pid), "-a", "systemctl", "--no-pager", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"systemctl {' '.join(args)} exited {result.returncode}: {result.stderr}\n"
                + self.diagnostics()
            )
        return result

    def show(self, *props: str) -> dict[str, str]:
        out = self.systemctl("show", "bcx-poller.service", "-p", ",".join(props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def prop(self, name: str) -> str:
        return self.show(name)[name]

    def logs(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                out.append(value)
        return out

    def logged(self, event: str, since: int = 0, **match: Any) -> list[dict[str, Any]]:
        return [
            line
            for line in self.logs()[since:]
            if line.get("event") == event and all(line.get(k) == v for k, v in match.items())
        ]

    def wait_logged(
        self, event: str, within: float = 20, since: int = 0, **match: Any
    ) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            got = self.logged(event, since, **match)
            return got[-1] if got else None

        try:
            return wait_until(found, within, f"log line {event} {match or ''}", every=0.1)  # type: ignore[no-any-return]
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnostics()}") from None

    def diagnostics(self) -> str:
        status = self.systemctl("status", "bcx-poller.service", check=False, timeout=30)
        daemon_log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        return (
            f"--- systemctl status\n{status.stdout}{status.stderr}"
            f"--- daemon log (tail)\n{daemon_log}\n--- results: {self.results_log()}"
            f"\n--- boot.sh\n{self.boot_log()}"
        )

    def ensure_running(self) -> None:
        """The good config, the unit active and past its first (baseline) cycle."""
        self.write_config()
        self.gate.unlink(missing_ok=True)
        if self.prop("ActiveState") != "active":
            self.systemctl("reset-failed", "bcx-poller.service", check=False)
            self.systemctl("start", "bcx-poller.service")
        self.wait_logged("cycle_committed")

    def wait_restarted(self, before: int, old_pid: str, within: float) -> dict[str, str]:
        def restarted() -> dict[str, str] | None:
            p = self.show("NRestarts", "ActiveState", "SubState", "MainPID")
            ok = (
                int(p["NRestarts"]) == before + 1
                and p["ActiveState"] == "active"
                and p["SubState"] == "running"
                and p["MainPID"] not in ("0", old_pid)
            )
            return p if ok else None

        try:
            return wait_until(restarted, within, "the restart", every=0.2)  # type: ignore[no-any-return]
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnostics()}") from None


def remove_cgroup(path: Path) -> None:
    """rmdir the cgroup tree bottom-up once its processes are gone (kills are async)."""
    if not path.name.startswith("bcx-poller-systemd-test-") or not path.is_dir():
        return
    deadline = time.monotonic() + 10
    while path.exists():
        dirs = sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        try:
            for d in [*dirs, path]:
                d.rmdir()
            return
        except OSError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)


def sweep_leftovers() -> None:
    """What a killed test session left: the cgroup of a boot.sh that is gone (empty: its
    processes died with the namespace), its canary, and run folders older than an hour."""
    for cgroot in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        for cg in cgroot.glob("bcx-poller-systemd-test-*"):
            pid = cg.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                remove_cgroup(cg)
    for canary in Path("/tmp").glob("bcx-poller-systemd-canary-*"):
        pid = canary.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            canary.unlink(missing_ok=True)
    for run in BASE.glob("run-*"):
        if time.time() - run.stat().st_mtime > 3600:
            shutil.rmtree(run, ignore_errors=True)


@pytest.fixture(scope="module")
def booted() -> Iterator[Booted]:
    venv = unit_venv()
    sweep_leftovers()
    root = Path(tempfile.mkdtemp(prefix="run-", dir=BASE))
    root.chmod(0o755)  # the service's dynamic user reads the config and the gate below
    canary = Path("/tmp") / f"bcx-poller-systemd-canary-{os.getpid()}"
    canary.write_text("the host's /tmp must survive a private systemd\n")
    system = Booted(root, venv)
    try:
        system.prepare()
        system.boot()
        yield system
    finally:
        system.shutdown()
        canary_survived = canary.exists()
        canary.unlink(missing_ok=True)
        if not os.environ.get("BCX_SYSTEMD_TEST_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
    assert canary_survived, "the host's /tmp was emptied while systemd ran"


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _event_ids(path: Path) -> list[str]:
    return [str(e["id"]) for e in read_jsonl(path)]


# -- the tests -----------------------------------------------------------------------------


def test_ready_is_reached_and_the_status_line_is_shown(booted: Booted) -> None:
    # Type=notify: `start` returns once READY=1 arrived (or fails).
    booted.systemctl("start", "bcx-poller.service")
    assert booted.systemctl("is-active", "bcx-poller.service", check=False).stdout.strip() == (
        "active"
    )
    booted.wait_logged("daemon_started")
    booted.wait_logged("cycle_committed")

    def status() -> str | None:
        text = booted.prop("StatusText")
        return text if re.fullmatch(r"1 accounts \(0 failing\), max lag \d+s, .*", text) else None

    text = wait_until(status, 10, "a STATUS= line with the account's lag", every=0.2)
    assert re.fullmatch(
        r"1 accounts \(0 failing\), max lag \d+s, outbox \d+ pending, \d+ dead", text
    ), text


def test_state_lands_in_the_state_directory_with_mode_0600(booted: Booted) -> None:
    booted.ensure_running()
    assert booted.sim is not None
    project = booted.sim.account.create_project("State check")
    todolist = booted.sim.account.create_todolist(project, "List")
    booted.sim.account.create_todo(todolist, "Write something down")
    wait_until(lambda: booted.state("events.jsonl").exists(), 20, "the first jsonl delivery")

    # DynamicUser=yes: /var/lib/bcx-poller -> private/bcx-poller, owned by the dynamic user
    link = booted.varlib / "bcx-poller"
    assert link.is_symlink() and os.readlink(link) == "private/bcx-poller"
    directory = booted.state()
    info = directory.stat()
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid != 0
    for name in ("state.db", "events.jsonl"):
        mode = stat.S_IMODE(booted.state(name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
        assert booted.state(name).stat().st_uid == info.st_uid
    # UMask=0077: nothing in there (WAL, lock, handler files) is readable by anyone else
    loose = {}
    for path in directory.rglob("*"):
        with contextlib.suppress(FileNotFoundError):  # a WAL file may come and go
            mode = stat.S_IMODE(path.lstat().st_mode)
            if not path.is_symlink() and mode & 0o077:
                loose[path.name] = oct(mode)
    assert not loose, loose
    # ProtectSystem=strict: nothing was written next to the config
    assert sorted(p.name for p in booted.conf.parent.iterdir()) == ["config.toml", "gated.py"]


def test_reload_applies_a_changed_config_without_a_restart(booted: Booted) -> None:
    booted.ensure_running()
    assert booted.sim is not None
    pid = booted.prop("MainPID")
    since = len(booted.logs())
    booted.write_config(
        extra='[[handlers]]\nname = "added"\ntype = "jsonl"\n'
        f'path = "{STATE}/added.jsonl"\nkinds = ["todo_*"]\n'
    )
    booted.systemctl("reload", "bcx-poller.service")
    booted.wait_logged("reloaded", since=since, handlers=3)
    assert booted.prop("MainPID") == pid

    project = booted.sim.account.create_project("Reload check")
    todolist = booted.sim.account.create_todolist(project, "List")
    todo = booted.sim.account.create_todo(todolist, "After the reload")

    def delivered() -> bool:
        return any(
            e.get("kind") == "todo_created" and str(todo) in json.dumps(e)
            for e in read_jsonl(booted.state("added.jsonl"))
        )

    wait_until(delivered, 20, "the new handler to get the to-do")
    assert booted.prop("MainPID") == pid


def test_a_crash_is_restarted(booted: Booted) -> None:
    booted.ensure_running()
    before = booted.show("NRestarts", "MainPID")
    ends = len(booted.results_log())
    starts = len(booted.logged("daemon_started"))
    booted.systemctl("kill", "--kill-who=main", "--signal=SIGSEGV", "bcx-poller.service")
    booted.wait_restarted(int(before["NRestarts"]), before["MainPID"], 30)
    assert re.fullmatch(r"signal (killed|dumped) SEGV", booted.results_log()[ends]), (
        booted.results_log()
    )
    wait_until(lambda: len(booted.logged("daemon_started")) > starts, 10, "a new daemon_started")


def test_the_watchdog_restarts_a_stuck_daemon(booted: Booted) -> None:
    booted.ensure_running()
    before = booted.show("NRestarts", "MainPID")
    ends = len(booted.results_log())
    began = time.monotonic()
    # A stopped process sends no WATCHDOG=1: after WatchdogSec systemd aborts and restarts it.
    booted.systemctl("kill", "--kill-who=main", "--signal=SIGSTOP", "bcx-poller.service")
    booted.wait_restarted(int(before["NRestarts"]), before["MainPID"], WATCHDOG + TIMEOUT_STOP + 15)
    assert time.monotonic() - began >= WATCHDOG - 0.5
    assert re.fullmatch(r"watchdog (killed|dumped) (ABRT|KILL)", booted.results_log()[ends]), (
        booted.results_log()
    )


def test_stop_returns_in_time_and_loses_nothing(booted: Booted) -> None:
    booted.ensure_running()
    assert booted.sim is not None
    delivered = booted.state("gated.txt")
    before = set(_lines(delivered))
    booted.gate.touch()  # the gated handler now holds its delivery until the gate goes
    account = booted.sim.account
    project = account.create_project("Stop check")
    todolist = account.create_todolist(project, "List")
    todo = account.create_todo(todolist, "Held at the gate")
    started = booted.state("gated.txt.started")

    def held_at_gate() -> str | None:
        got = started.read_text() if started.exists() else ""
        return got if got and got not in before else None

    held = wait_until(held_at_gate, 20, "the gated delivery to start")
    since = len(booted.logs())

    assert booted.prop("TimeoutStopUSec") == f"{TIMEOUT_STOP}s"
    ends = len(booted.results_log())
    began = time.monotonic()
    booted.systemctl("stop", "bcx-poller.service", timeout=TIMEOUT_STOP + 20)
    took = time.monotonic() - began
    props = booted.show("ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
    assert took < TIMEOUT_STOP, (took, props)
    assert props["ActiveState"] == "inactive"
    assert props["Result"] == "success", (props, booted.diagnostics())  # not killed on timeout
    assert props["ExecMainStatus"] == "0", props
    assert booted.results_log()[ends:] == ["success exited 0"]
    assert booted.logged("shutdown_deadline_reached", since)
    assert held not in _lines(delivered)

    # restart with the receiver open again: the held event arrives, once, same id
    booted.gate.unlink()
    booted.systemctl("start", "bcx-poller.service")
    wait_until(lambda: held in _lines(delivered), 20, "the held delivery")
    booted.wait_logged("cycle_committed", since)
    assert _lines(delivered).count(held) == 1
    archived = [e for e in read_jsonl(booted.state("events.jsonl")) if e["id"] == held]
    assert len(archived) == 1 and str(todo) in json.dumps(archived[0])
    ids = _event_ids(booted.state("events.jsonl"))
    assert len(ids) == len(set(ids)), "an event was archived twice"


def test_a_bad_config_exits_2_and_is_not_restarted(booted: Booted) -> None:
    booted.ensure_running()
    booted.write_config(bad=True)
    ends = len(booted.results_log())
    failed = booted.systemctl("restart", "bcx-poller.service", check=False)
    assert failed.returncode != 0
    props = booted.show("ActiveState", "Result", "ExecMainStatus", "NRestarts")
    assert props["ExecMainStatus"] == "2", (props, booted.diagnostics())
    assert props["Result"] == "exit-code"
    restarts = props["NRestarts"]
    time.sleep(3)  # three times RestartSec: a restart would have happened by now
    props = booted.show("ActiveState", "SubState", "NRestarts")
    assert props["ActiveState"] == "failed", props
    assert props["NRestarts"] == restarts
    # one end for the stop of the running daemon, one for the bad start, none after
    assert booted.results_log()[ends:] == ["success exited 0", "exit-code exited 2"]
    booted.ensure_running()  # and a good config starts again
