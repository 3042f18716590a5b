"""`bcx-poller demo --duration 8`, the README's first command: events on standard output."""

from __future__ import annotations

import os
import re
import subprocess
import sys


def test_demo_shows_events_and_stops_by_itself() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "poller", "demo", "--duration", "8"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("BCX_POLLER_")},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "Basecamp 2 simulator on http://127.0.0.1:" in out
    # the console handler's lines: HH:MM:SS  kind  project  who  what
    events = re.findall(r"^\d\d:\d\d:\d\d\s+([a-z_]+)\s", out, re.M)
    assert "todo_completed" in events, out
    assert ">> simulator:" in out
    assert out.rstrip().endswith("demo stopped.")
