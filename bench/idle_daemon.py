"""Idle daemon: RSS and CPU of `bcx-poller run` for 100 idle accounts.

    .venv/bin/python bench/idle_daemon.py [--minutes 5] [--accounts 100] [--interval 30]

One loopback simulator (127.0.0.1) serves every account (a small populated account
each, quiet after the first sync). The daemon runs as its own process, exactly as
`bcx-poller run --config FILE`; its RSS (VmRSS, VmHWM) and CPU time (utime + stime from
/proc) are sampled. The steady-state figures leave out the first interval, when every
account makes its first sync.
Target: under 80 MB RSS, under 2 % of one core.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from _common import USER_AGENT, Row, table

from poller.simulator import Account, ManualClock, SimResponse, SimulatorApp, serve
from poller.simulator.api import DEMO_USERNAME

_ACCOUNT = re.compile(r"^/(\d+)/")
TICK = os.sysconf("SC_CLK_TCK")


class MultiApp:
    """Route each request to the `SimulatorApp` of the account id in its path."""

    def __init__(self, apps: dict[int, SimulatorApp]) -> None:
        self.apps = apps
        self.requests = 0

    def handle(
        self,
        method: str,
        url_path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        *,
        base_url: str | None = None,
    ) -> SimResponse:
        self.requests += 1
        m = _ACCOUNT.match(url_path)
        app = self.apps.get(int(m.group(1))) if m else None
        if app is None:
            app = next(iter(self.apps.values()))
        return app.handle(method, url_path, query, headers, base_url=base_url)


def proc_sample(pid: int) -> tuple[float, float, float]:
    """(cpu seconds, VmRSS MB, VmHWM MB) of a process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    rss = hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return cpu, rss, hwm


def write_config(path: Path, base_url: str, ids: list[int], interval: float) -> None:
    lines = [
        "[poller]",
        f'state_path = "{path.parent / "state.db"}"',
        f"interval = {interval}",
        "",
        "[logging]",
        'level = "info"',
        'format = "json"',
    ]
    for aid in ids:
        lines += [
            "",
            "[[accounts]]",
            f"id = {aid}",
            f'base_url = "{base_url}/{aid}/api/v1"',
            f'user_agent = "{USER_AGENT}"',
            f'username = "{DEMO_USERNAME}"',
            'password = "demo"',
        ]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="run time (default 5)")
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--interval", type=float, default=30.0, help="poll interval, seconds")
    args = parser.parse_args()

    apps: dict[int, SimulatorApp] = {}
    for n in range(args.accounts):
        account = Account(100_000_000 + n, clock=ManualClock(), seed=n)
        account.populate(projects=3, todos_per_project=40, messages=2, documents=1)
        apps[account.account_id] = SimulatorApp(account)
    multi = MultiApp(apps)
    duration = args.minutes * 60
    with tempfile.TemporaryDirectory(prefix="bcx-bench-daemon-") as tmp, serve(multi) as base:
        config = Path(tmp) / "config.toml"
        write_config(config, base, sorted(apps), args.interval)
        exe = Path(sys.executable).with_name("bcx-poller")
        log_path = Path(tmp) / "daemon.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [str(exe), "run", "--config", str(config)], stdout=log, stderr=log
            )
        started = time.monotonic()
        samples: list[tuple[float, float, float, float]] = []
        try:
            while time.monotonic() - started < duration:
                time.sleep(1.0)
                if proc.poll() is not None:
                    break
                cpu, rss, hwm = proc_sample(proc.pid)
                samples.append((time.monotonic() - started, cpu, rss, hwm))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not samples or proc.returncode not in (0, -signal.SIGTERM):
            print(log_path.read_text()[-3000:])
            print(f"daemon exited with {proc.returncode}")
            return 1
        cycles = log_path.read_text().count('"cycle_committed"')
        failed = log_path.read_text().count('"cycle_failed"')
    end_t, end_cpu, end_rss, hwm = samples[-1]
    warm = next((s for s in samples if s[0] >= args.interval + 5), samples[0])
    steady_cpu = (end_cpu - warm[1]) / max(1e-9, end_t - warm[0]) * 100
    total_cpu = end_cpu / max(1e-9, end_t) * 100
    steady_rss = max(s[2] for s in samples if s[0] >= warm[0])
    rows = [
        Row(
            "RSS, steady (max after 1st interval)",
            f"{steady_rss:.1f} MB",
            "< 80 MB",
            f"{steady_rss / 80:.2f}",
            steady_rss < 80,
        ),
        Row("RSS, peak (VmHWM)", f"{hwm:.1f} MB", "< 80 MB", f"{hwm / 80:.2f}", hwm < 80),
        Row(
            "CPU, steady (after 1st interval)",
            f"{steady_cpu:.2f} % core",
            "< 2 %",
            f"{steady_cpu / 2:.2f}",
            steady_cpu < 2,
        ),
        Row("CPU, whole run incl. first syncs", f"{total_cpu:.2f} % core", "", "", None),
        Row("cycles committed / failed", f"{cycles} / {failed}", "", "", None),
        Row("simulator requests", str(multi.requests), "", "", None),
    ]
    ok = table(
        f"idle daemon: {args.accounts} accounts, interval {args.interval:g}s, {end_t / 60:.1f} min",
        rows,
        [f"final RSS {end_rss:.1f} MB; the simulator runs in this process, not the daemon's"],
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
