"""Run every benchmark in turn and summarise (about 10 minutes, plus the daemon's).

    .venv/bin/python bench/run_all.py [--daemon-minutes 5] [--skip-daemon]

Each benchmark runs in its own process (so peak RSS and CPU figures are its own) and
prints its table; the summary lists PASS/MISS per script. Exit status 1 if any missed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
SCRIPTS = [
    "idle_cost.py",
    "change_cost.py",
    "first_sync.py",
    "diff_throughput.py",
    "delivery.py",
    "cli_startup.py",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--daemon-minutes", type=float, default=5.0)
    parser.add_argument("--skip-daemon", action="store_true")
    args = parser.parse_args()
    runs = [[name] for name in SCRIPTS]
    if not args.skip_daemon:
        runs.append(["idle_daemon.py", "--minutes", str(args.daemon_minutes)])
    results = []
    for argv in runs:
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(HERE / argv[0]), *argv[1:]])
        results.append((argv[0], code, time.monotonic() - started))
    print("\n== summary")
    for name, code, seconds in results:
        verdict = {0: "PASS"}.get(code, "MISS" if code == 1 else f"ERROR ({code})")
        print(f"   {name:20s} {verdict:12s} {seconds:6.0f} s")
    return 0 if all(code == 0 for _, code, _ in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
