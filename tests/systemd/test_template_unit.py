"""systemd/bcx-poller@.service, the template that runs one shard per instance: the same
hardening as systemd/bcx-poller.service (every directive equal but the shard's own
ExecStart= and StateDirectory=), `systemd-analyze verify` clean for an instance, and the
same `systemd-analyze security --offline=true` bound as the single unit (2.0).

Nothing here boots systemd (see boot.sh for the tests that do): `verify` and `security
--offline` only read unit files. `verify` checks that ExecStart='s program exists, so the
template is copied unchanged beside a drop-in naming this checkout's bcx-poller, the way
test_unit_under_systemd.py runs the single unit."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEMD_DIR = Path(__file__).resolve().parents[2] / "systemd"
SINGLE = SYSTEMD_DIR / "bcx-poller.service"
TEMPLATE = SYSTEMD_DIR / "bcx-poller@.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def directives(unit: Path) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values (a key may repeat)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = line.partition("=")
        out.setdefault(section, {}).setdefault(key.strip(), []).append(value.strip())
    return out


def test_the_template_is_the_single_unit_but_for_the_shard() -> None:
    single, template = directives(SINGLE), directives(TEMPLATE)
    service = template["[Service]"]
    assert service["ExecStart"] == [
        single["[Service]"]["ExecStart"][0].replace(" run ", " run --shard %i ")
    ]
    assert service["StateDirectory"] == ["bcx-poller/%i"]
    differs = {"ExecStart", "StateDirectory"}
    assert {k: v for k, v in service.items() if k not in differs} == {
        k: v for k, v in single["[Service]"].items() if k not in differs
    }
    assert template["[Install]"] == single["[Install]"]
    assert "%i" in template["[Unit]"]["Description"][0]
    assert "systemctl enable --now bcx-poller@{0..2}" in TEMPLATE.read_text()


@needs_analyze
def test_systemd_analyze_verify_accepts_an_instance(tmp_path: Path) -> None:
    shutil.copy(TEMPLATE, tmp_path / TEMPLATE.name)
    dropins = tmp_path / f"{TEMPLATE.name}.d"
    dropins.mkdir()
    program = Path(sys.executable).with_name("bcx-poller")
    assert os.access(program, os.X_OK), program
    (dropins / "test.conf").write_text(
        f"[Service]\nExecStart=\nExecStart={program} run --shard %i --config /dev/null\n"
    )
    assert ANALYZE is not None
    result = subprocess.run(
        [ANALYZE, "verify", str(tmp_path / "bcx-poller@1.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        # the folder first, then the default search path (the trailing colon)
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"},
    )
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    # verify reports a bad line (a value it cannot parse, an unknown key) as a warning
    assert not [line for line in text.splitlines() if "bcx-poller" in line], text


@needs_analyze
def test_systemd_analyze_security_scores_the_template_2_or_lower() -> None:
    assert ANALYZE is not None
    result = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(TEMPLATE)],
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
