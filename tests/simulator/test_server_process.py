"""The simulator for benchmarks (issue 12 item 6): added latency per answer, and
`python -m poller.simulator --populate SPEC --control` in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import httpx

from poller.simulator import Account, ManualClock, SimulatorApp, serve
from tests.simulator.conftest import ACCOUNT_ID, make_client


async def test_latency_is_waited_before_each_answer() -> None:
    account = Account(ACCOUNT_ID, clock=ManualClock())
    account.populate(projects=1, todos_per_project=5)
    app = SimulatorApp(account)
    with serve(app) as base:
        async with make_client(base) as client:
            started = time.perf_counter()
            assert (await client.get("projects.json")).status_code == 200
            plain = time.perf_counter() - started
    with serve(app, latency=0.3) as base:
        async with make_client(base) as client:
            for _ in range(2):
                started = time.perf_counter()
                reply = await client.get("projects.json")
                assert reply.status_code == 200 and len(reply.json()) == 1
                assert time.perf_counter() - started >= 0.3
    assert plain < 0.3


class Sim:
    """`python -m poller.simulator ... --control` as the benchmarks start it."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "poller.simulator", "--port", "0", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.hello = json.loads(self.line())

    def line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def do(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        reply: dict[str, Any] = json.loads(self.line())
        return reply


def test_a_simulator_process_builds_the_spec_and_obeys_its_control_channel() -> None:
    spec = {"projects": 2, "todos_per_project": 10, "todos_per_list": 5}
    sim = Sim("--populate", json.dumps(spec), "--manual-clock", "--control", "--seed", "4")
    try:
        assert sim.hello["account_id"] == 999_999_999
        api = f"{sim.hello['base_url']}/999999999/api/v1"
        with httpx.Client(
            base_url=api + "/",
            auth=("demo@example.com", "demo"),
            headers={"User-Agent": "tests (tests@example.com)"},
        ) as client:
            projects = client.get("projects.json").json()
            assert sorted(p["id"] for p in projects) == sorted(sim.do("projects")["ok"])
            todos = sim.do("todos")["ok"]
            assert len(todos) == 20 and len({lid for _tid, lid in todos}) == 4
            assert client.get("events.json").json() == []  # a populated account is quiet

            assert sim.do("advance", seconds=60) == {"ok": None}
            tid = todos[0][0]
            assert sim.do("call", method="update_todo", args=[tid], kwargs={"content": "New"})
            feed = client.get("events.json").json()
            assert [e["eventable"]["id"] for e in feed] == [tid]
            assert feed[0]["created_at"] == "2024-01-15T07:01:00.000-05:00"  # manual clock + 60 s

            assert sim.do("log")["ok"]["count"] == 3
            assert sim.do("set_rate_limit", limit=1, window=60) == {"ok": None}
            assert client.get("projects.json").status_code == 200
            assert client.get("projects.json").status_code == 429
            assert sim.do("log", statuses=True)["ok"]["statuses"][-2:] == [200, 429]

            assert "error" in sim.do("call", method="_typed", args=[])
            assert "error" in sim.do("call", method="update_todo", args=[1])
            assert "error" in sim.do("unknown")
            assert sim.do("cpu")["ok"] > 0
    finally:
        assert sim.proc.stdin is not None
        sim.proc.stdin.close()  # end of the control channel: the simulator stops
        code = sim.proc.wait(timeout=10)
        assert sim.proc.stdout is not None
        sim.proc.stdout.close()
    assert code == 0


def test_the_plain_simulator_command_is_unchanged() -> None:
    """Without the benchmark options, `--help` still offers the demo account's options."""
    done = subprocess.run(
        [sys.executable, "-m", "poller.simulator", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0
    for option in ("--port", "--account-id", "--populate", "--latency-ms", "--control"):
        assert option in done.stdout
