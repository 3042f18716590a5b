"""systemd/bcx-poller.service: the directives the deployment relies on, and the sandbox
score from `systemd-analyze security --offline=true` (skipped where the tool is missing)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "bcx-poller.service"


def directives() -> dict[str, list[str]]:
    """`Key=value` lines of the [Service] section (a key may repeat)."""
    out: dict[str, list[str]] = {}
    section = None
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_the_unit_has_the_required_directives() -> None:
    d = directives()
    expected = {
        "Type": "notify",
        "DynamicUser": "yes",
        "StateDirectory": "bcx-poller",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "Restart": "on-failure",
    }
    for key, value in expected.items():
        assert d.get(key) == [value], (key, d.get(key))
    assert "@system-service" in d["SystemCallFilter"]
    assert d["LoadCredential"], "secrets come through LoadCredential="
    assert d["WatchdogSec"] and d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    exec_start = d["ExecStart"][0]
    assert " run --config /etc/bcx-poller/config.toml" in exec_start
    # systemd must wait longer than the daemon's own shutdown deadline
    timeout = float(re.search(r"--shutdown-timeout (\d+)", exec_start).group(1))  # type: ignore[union-attr]
    assert float(d["TimeoutStopSec"][0]) > timeout
    assert d["RestartPreventExitStatus"] == ["2"]  # a bad config is not retried forever


def test_systemd_analyze_security_scores_it_2_or_lower() -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run(
        [tool, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    text = result.stdout + result.stderr
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", text)
    if found is None:
        if "offline" in text and ("unrecognized" in text or "Unknown" in text):
            pytest.skip("this systemd-analyze has no --offline mode (systemd < 250)")
        pytest.fail(f"no score in the output (status {result.returncode}):\n{text[-2000:]}")
    assert float(found.group(1)) <= 2.0, text[-3000:]
