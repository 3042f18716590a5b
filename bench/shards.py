"""Shards: 3,000 simulated accounts over 3 shard processes on one machine (issue 13 item 5).

    .venv/bin/python bench/shards.py [--accounts 3000] [--shards 3] [--seconds 90]
        [--interval 30] [--kill 0] [--down 1] [--sims 1]

Every shard runs as `python -m poller run -c shard-K.toml --shard K` (`[poller] shards =
N`, `state_path` with `{shard}`), exactly as the systemd template unit runs it. The shard
configs are identical but for the accounts' `user_agent`, which names the shard, so the
simulator's request log shows who asked (as in tests/chaos/test_shard_chaos.py).

The simulator runs in processes of its own (`--sims`, default 1): each serves its share
of the accounts on one loopback port (one `SimulatorApp` per account, routed by the
account id in the path, as bench/idle_daemon.py does in-process), each account with its
own 500 requests / 10 s budget. Accounts are small (one project, five to-dos, a message)
and quiet after their first sync, so a steady cycle is one `/events.json?since=` request;
`--changes R` makes R changes per second (spread over the accounts) in the simulators.
The simulators' CPU is measured and printed, so the reader sees whether the figures
measure the poller or the simulator.

Phases: warm-up (until every account's feed was asked with `since`: its first sync is
committed), steady (`--seconds`), then, unless `--kill -1`, a kill phase: shard `--kill`
is SIGKILLed after one interval, restarted `--down` seconds later, and the phase runs on
until two intervals after the restart.

Figures per phase and shard, from the simulators' request logs: cycles per second (feed
reads with `since`, first page), the max poll gap per account (the longest time between
two consecutive such reads of one account within the phase, or from the last read to the
phase's end when that is longer), polls by a shard that does not own the account; from
/proc: RSS (VmRSS steady = the largest sample of the phase, VmHWM = peak since the
process started) and CPU (% of one core) of every shard and simulator.
Targets: cycles/s >= 95 % of accounts / (interval x (1 + jitter / 2)), the mean period
APScheduler gives; max poll gap <= interval x (1 + jitter) + 3 s, and no account over that
(the killed shard in the kill phase: + one interval + down + 10 s, since a restarted shard
spreads its first cycles over one interval); RSS < 80 MB per shard (bench/idle_daemon.py's
target for one process); no shard polls another's account. Nothing here is a test: the
script prints PASS/MISS and exits 1 on a MISS.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import Row, machine, table

from poller.shards import shard_of

TICK = os.sysconf("SC_CLK_TCK")
FIRST_ID = 100_000_000
JITTER = 0.1


def agent(shard: int) -> str:
    return f"bcx-poller bench shard-{shard} (ops@example.com)"


# -- the simulator process ------------------------------------------------------------------


def sim_worker(ids: list[int], changes_per_second: float) -> int:
    """Serve `ids` on one loopback port; answer commands on stdin (one JSON line each):
    `progress` -> accounts whose feed was read with `since`, requests, CPU seconds;
    `dump {path}` -> write every feed read with `since` (first page) per account as
    [monotonic time, User-Agent], plus the status counts. EOF ends the process."""
    import re

    from poller.simulator import Account, SimResponse, SimulatorApp, serve
    from poller.simulator.api import DEMO_PASSWORD, DEMO_USERNAME

    account_re = re.compile(r"^/(\d+)/")
    apps: dict[int, SimulatorApp] = {}
    for aid in ids:
        account = Account(aid, seed=aid)
        account.populate(
            projects=1,
            todos_per_project=5,
            messages=1,
            documents=0,
            calendar_events=0,
            comments_per_message=0,
            people=1,
            events=True,  # a feed to keep a cursor in: later cycles read it with `since`
        )
        apps[aid] = SimulatorApp(account, users={DEMO_USERNAME: DEMO_PASSWORD})
    synced: set[int] = set()
    count = [0]

    class MultiApp:
        def handle(
            self,
            method: str,
            url_path: str,
            query: Mapping[str, str],
            headers: Mapping[str, str],
            *,
            base_url: str | None = None,
        ) -> SimResponse:
            count[0] += 1
            m = account_re.match(url_path)
            aid = int(m.group(1)) if m else ids[0]
            app = apps.get(aid) or apps[ids[0]]
            response = app.handle(method, url_path, query, headers, base_url=base_url)
            if "since" in query and url_path.endswith("/events.json"):
                synced.add(aid)
            return response

    stop = threading.Event()

    def churn() -> None:
        """`changes_per_second` to-dos created, each in a random account."""
        rng = random.Random(13)
        lists = {aid: next(iter(app.account.todolists)) for aid, app in apps.items()}
        n = 0
        while not stop.wait(1.0 / changes_per_second):
            n += 1
            aid = rng.choice(ids)
            apps[aid].account.create_todo(lists[aid], f"Bench change {n}")

    with serve(MultiApp()) as base_url:  # type: ignore[arg-type]
        if changes_per_second > 0:
            threading.Thread(target=churn, daemon=True).start()
        print(json.dumps({"base_url": base_url}), flush=True)
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd["op"] == "progress":
                reply: dict[str, Any] = {
                    "synced": len(synced),
                    "requests": count[0],
                    "cpu": time.process_time(),
                }
            elif cmd["op"] == "dump":
                polls: dict[str, list[tuple[float, str]]] = {}
                statuses: dict[str, int] = {}
                for aid, app in apps.items():
                    mine = polls.setdefault(str(aid), [])
                    for e in app.log.entries:
                        statuses[str(e.status)] = statuses.get(str(e.status), 0) + 1
                        if (
                            e.path.endswith("/events.json")
                            and "since" in e.query
                            and e.query.get("page", "1") == "1"
                        ):
                            mine.append((e.at, e.user_agent or ""))
                Path(cmd["path"]).write_text(json.dumps({"polls": polls, "statuses": statuses}))
                reply = {"ok": True}
            else:
                reply = {"error": f"unknown op {cmd['op']!r}"}
            print(json.dumps(reply), flush=True)
        stop.set()
    return 0


class Simulator:
    """A `sim_worker` child process and its command channel."""

    def __init__(self, ids: list[int], changes_per_second: float) -> None:
        self.ids = ids
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--sim-worker", "--changes", str(changes_per_second)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(ids) + "\n")
        self.proc.stdin.flush()
        self.base_url = str(self._read()["base_url"])

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"simulator process exited ({self.proc.poll()})")
        return dict(json.loads(line))

    def do(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- shard processes ------------------------------------------------------------------------


def write_configs(
    tmp: Path, accounts: dict[int, str], shards: int, interval: float, handler: str
) -> list[Path]:
    """One config per shard, identical but for the User-Agent naming the shard."""
    out = []
    for k in range(shards):
        lines = [
            "[poller]",
            f"shards = {shards}",
            f'state_path = "{tmp / "{shard}" / "state.db"}"',
            f"interval = {interval}",
            f"jitter = {JITTER}",
            "",
            "[logging]",
            'level = "warning"',
            'format = "json"',
        ]
        if handler == "jsonl":
            lines += [
                "",
                "[[handlers]]",
                'name = "jsonl"',
                'type = "jsonl"',
                f'path = "{tmp / f"events-{k}.jsonl"}"',
            ]
        for aid, base in accounts.items():
            lines += [
                "",
                "[[accounts]]",
                f"id = {aid}",
                f'base_url = "{base}/{aid}/api/v1"',
                f'user_agent = "{agent(k)}"',
                'username = "demo@example.com"',
                'password = "demo"',
            ]
        path = tmp / f"shard-{k}.toml"
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
        out.append(path)
    return out


@dataclass
class Sample:
    at: float
    cpu: float
    rss: float
    hwm: float


def proc_sample(pid: int) -> Sample | None:
    """CPU seconds (utime + stime), VmRSS and VmHWM (MB) of a live process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    rss = hwm = 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return Sample(time.monotonic(), cpu, rss, hwm)


@dataclass
class Proc:
    """A shard or simulator process: its samples, per pid (a restarted shard has two)."""

    name: str
    pid: int = 0
    samples: dict[int, list[Sample]] = field(default_factory=dict)

    def sample(self) -> None:
        s = proc_sample(self.pid) if self.pid else None
        if s is not None:
            self.samples.setdefault(self.pid, []).append(s)

    def cpu_percent(self, t0: float, t1: float) -> float:
        """Average % of one core between t0 and t1 (summed over its pids)."""
        used = 0.0
        for samples in self.samples.values():
            inside = [s for s in samples if t0 <= s.at <= t1]
            if len(inside) >= 2:
                used += inside[-1].cpu - inside[0].cpu
            if inside and samples[0].at > t0:  # started inside the window: count from 0
                used += inside[0].cpu
        return used / max(1e-9, t1 - t0) * 100

    def rss(self, t0: float, t1: float) -> tuple[float, float]:
        """(largest VmRSS sampled between t0 and t1, largest VmHWM by t1)."""
        inside = [s for samples in self.samples.values() for s in samples if t0 <= s.at <= t1]
        if not inside:
            return 0.0, 0.0
        return max(s.rss for s in inside), max(s.hwm for s in inside)


class Shard(Proc):
    def __init__(self, k: int, config: Path, logs: Path) -> None:
        super().__init__(f"shard {k}")
        self.k, self.config, self.logs = k, config, logs
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "poller", "run", "-c", str(self.config)]
        with (self.logs / f"shard-{self.k}.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [*cmd, "--shard", str(self.k)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={k: v for k, v in os.environ.items() if not k.startswith("BCX_POLLER_")},
            )
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None
        self.pid = 0

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def tail(self) -> str:
        return (self.logs / f"shard-{self.k}.log").read_text(errors="replace")[-2000:]


# -- figures --------------------------------------------------------------------------------


@dataclass
class Window:
    name: str
    t0: float
    t1: float


@dataclass
class ShardFigures:
    cycles: int = 0
    max_gap: float = 0.0
    max_gap_account: int = 0
    max_gap_open: bool = False  # the longest gap runs to the window's end
    strays: int = 0  # polls of this shard's accounts by another shard
    over: int = 0  # accounts whose max gap is over the steady bound


def figures(
    polls: dict[int, list[tuple[float, str]]], shards: int, w: Window, bound: float
) -> dict[int, ShardFigures]:
    out = {k: ShardFigures() for k in range(shards)}
    for aid, seen in polls.items():
        owner = shard_of(aid, shards)
        f = out[owner]
        times = sorted(at for at, _ in seen if w.t0 <= at <= w.t1)
        f.strays += sum(1 for at, ua in seen if w.t0 <= at <= w.t1 and ua != agent(owner))
        f.cycles += len(times)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        tail = w.t1 - times[-1] if times else w.t1 - w.t0
        gap, is_open = max(gaps, default=0.0), False
        if tail > gap:
            gap, is_open = tail, True
        f.over += gap > bound
        if gap > f.max_gap:
            f.max_gap, f.max_gap_account, f.max_gap_open = gap, aid, is_open
    return out


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=90.0, help="steady phase, seconds")
    parser.add_argument("--interval", type=float, default=30.0, help="poll interval, seconds")
    parser.add_argument(
        "--kill", type=int, default=0, help="shard SIGKILLed in the kill phase (-1: no phase)"
    )
    parser.add_argument("--down", type=float, default=1.0, help="seconds before the restart")
    parser.add_argument("--sims", type=int, default=1, help="simulator processes")
    parser.add_argument("--changes", type=float, default=0.0, help="changes per second")
    parser.add_argument("--handler", choices=["jsonl", "none"], default="jsonl")
    parser.add_argument("--sim-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sim_worker:
        return sim_worker(json.loads(sys.stdin.readline()), args.changes)

    # SIGTERM (e.g. `timeout`) unwinds like Ctrl-C, so the shards are stopped on the way out
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    ids = [FIRST_ID + n for n in range(args.accounts)]
    per_shard = [sum(1 for a in ids if shard_of(a, args.shards) == k) for k in range(args.shards)]
    load_start = loadavg()
    print(
        f"shards bench: {args.accounts} accounts over {args.shards} shards {per_shard}, "
        f"interval {args.interval:g}s, {args.sims} simulator process(es), load {load_start}",
        flush=True,
    )
    started = time.monotonic()
    sims = [Simulator(ids[i :: args.sims], args.changes / args.sims) for i in range(args.sims)]
    print(f"  simulators up in {time.monotonic() - started:.1f}s", flush=True)
    sim_procs = [Proc(f"simulator {i}", s.proc.pid) for i, s in enumerate(sims)]
    base_of = {aid: s.base_url for s in sims for aid in s.ids}
    shards: list[Shard] = []
    ok = True
    with tempfile.TemporaryDirectory(prefix="bcx-bench-shards-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            configs = write_configs(tmp, base_of, args.shards, args.interval, args.handler)
            shards = [Shard(k, cfg, tmp) for k, cfg in enumerate(configs)]
            t_start = time.monotonic()
            for s in shards:
                s.start()
            everyone: list[Proc] = [*shards, *sim_procs]

            def tick(until: float) -> None:
                while time.monotonic() < until:
                    for p in everyone:
                        p.sample()
                    for s in shards:
                        if s.proc is not None and s.proc.poll() is not None:
                            raise RuntimeError(f"{s.name} exited: {s.tail()}")
                    time.sleep(max(0.0, min(1.0, until - time.monotonic())))

            # -- warm-up: every account's first sync committed ------------------------------
            limit = t_start + max(600.0, args.accounts / 5)
            while True:
                tick(time.monotonic() + 2)
                progress = [s.do("progress") for s in sims]
                synced = sum(int(p["synced"]) for p in progress)
                print(
                    f"    {time.monotonic() - t_start:.0f}s: {synced} accounts synced, "
                    f"{sum(int(p['requests']) for p in progress)} requests",
                    flush=True,
                )
                if synced >= args.accounts:
                    break
                if time.monotonic() > limit:
                    raise RuntimeError(f"only {synced} of {args.accounts} accounts synced")
            t_warm = time.monotonic()
            warm_requests = sum(int(p["requests"]) for p in progress)
            print(f"  warm-up (every first sync): {t_warm - t_start:.1f}s", flush=True)
            # the first cycles were spread over one interval: one more settles the schedule
            tick(t_warm + args.interval)

            windows = [Window("steady", time.monotonic(), 0.0)]
            tick(windows[0].t0 + args.seconds)
            windows[0].t1 = time.monotonic()
            print(f"  steady phase done, load {loadavg()}", flush=True)

            restart_at = killed_at = 0.0
            if args.kill >= 0:
                w = Window("kill", time.monotonic(), 0.0)
                windows.append(w)
                tick(w.t0 + args.interval)
                victim = shards[args.kill]
                killed_at = time.monotonic()
                victim.kill()
                tick(killed_at + args.down)
                victim.start()
                restart_at = time.monotonic()
                tick(restart_at + 2 * args.interval)
                w.t1 = time.monotonic()
                print(f"  kill phase done, load {loadavg()}", flush=True)
            load_end = loadavg()

            polls: dict[int, list[tuple[float, str]]] = {}
            statuses: dict[str, int] = {}
            for i, sim in enumerate(sims):
                path = tmp / f"polls-{i}.json"
                sim.do("dump", path=str(path))
                data = json.loads(path.read_text())
                polls.update({int(a): [(t, u) for t, u in v] for a, v in data["polls"].items()})
                for code, n in data["statuses"].items():
                    statuses[code] = statuses.get(code, 0) + n
        finally:
            codes = [s.stop() for s in shards]
            for sim in sims:
                sim.close()
        bad_exit = [c for c in codes if c not in (None, 0, -signal.SIGTERM)]

    # -- report -----------------------------------------------------------------------------
    # APScheduler adds uniform(0, jitter x interval) to each run, counted from the last
    # run: the mean period is interval x (1 + jitter / 2), the longest interval x (1 + jitter)
    period = args.interval * (1 + JITTER / 2)
    bound = args.interval * (1 + JITTER) + 3
    # a restarted shard spreads its first cycles over one interval, in config order: an
    # account due while it was down can wait up to one more interval, plus the restart
    kill_bound = bound + args.interval + args.down + 10
    rows = [
        Row(
            "wall time until every account's feed read with since",
            f"{t_warm - t_start:.1f} s",
            "",
            "",
            None,
        ),
        Row("simulator requests by then", f"{warm_requests:,}", "", "", None),
    ]
    for p in [*shards, *sim_procs]:
        rss, hwm = p.rss(t_start, t_warm)
        rows.append(
            Row(
                f"{p.name}: CPU / RSS peak",
                f"{p.cpu_percent(t_start, t_warm):.0f} % core / {hwm or rss:.1f} MB",
                "",
                "",
                None,
            )
        )
    table("shards, warm-up (first syncs of every account)", rows)
    for w in windows:
        figs = figures(polls, args.shards, w, bound)
        span = w.t1 - w.t0
        alive = [k for k in figs if not (w.name == "kill" and k == args.kill)]
        total = sum(figs[k].cycles for k in alive)
        expect = sum(per_shard[k] for k in alive) / period
        rows = [
            Row(
                "cycles/s, " + ("all shards" if len(alive) == args.shards else "shards not killed"),
                f"{total / span:.1f}",
                f">= {0.95 * expect:.1f}",
                f"{total / span / expect:.2f}",
                total / span >= 0.95 * expect,
            )
        ]
        for k, f in figs.items():
            killed = w.name == "kill" and k == args.kill
            target = kill_bound if killed else bound
            sh = shards[k]
            rss, hwm = sh.rss(w.t0, w.t1)
            label = f"shard {k} ({per_shard[k]} accounts{', killed' if killed else ''})"
            if killed:
                before = [p for p in sh.samples.values() if p[0].at < killed_at]
                after = [p for p in sh.samples.values() if p[0].at >= restart_at]
                for what, runs in (("before the kill", before), ("after the restart", after)):
                    inside = [x for p in runs for x in p if w.t0 <= x.at <= w.t1]
                    if inside:
                        rows.append(
                            Row(
                                f"{label}: RSS steady / peak, {what}",
                                f"{max(x.rss for x in inside):.1f} / "
                                f"{max(x.hwm for x in inside):.1f} MB",
                                "",
                                "",
                                None,
                            )
                        )
            rows += [
                Row(
                    f"{label}: cycles/s",
                    f"{f.cycles / span:.1f}",
                    f"~{per_shard[k] / period:.1f}",
                    f"{f.cycles / span / (per_shard[k] / period):.2f}",
                    None,
                ),
                Row(
                    f"{label}: max poll gap",
                    f"{f.max_gap:.1f} s" + (" (to the end)" if f.max_gap_open else ""),
                    f"<= {target:.0f} s",
                    f"{f.max_gap / target:.2f}",
                    f.max_gap <= target,
                ),
                Row(
                    f"{label}: accounts with a gap > {bound:.0f} s",
                    str(f.over),
                    "" if killed else "0",
                    "",
                    None if killed else f.over == 0,
                ),
                Row(
                    f"{label}: RSS steady / peak",
                    f"{rss:.1f} / {hwm:.1f} MB",
                    "< 80 MB",
                    f"{max(rss, hwm) / 80:.2f}",
                    max(rss, hwm) < 80,
                ),
                Row(f"{label}: CPU", f"{sh.cpu_percent(w.t0, w.t1):.0f} % core", "", "", None),
                Row(
                    f"{label}: polls by another shard",
                    str(f.strays),
                    "0",
                    "",
                    f.strays == 0,
                ),
            ]
        for p in sim_procs:
            rss, hwm = p.rss(w.t0, w.t1)
            rows.append(
                Row(
                    f"{p.name}: CPU / RSS",
                    f"{p.cpu_percent(w.t0, w.t1):.0f} % core / {rss:.0f} MB",
                    "",
                    "",
                    None,
                )
            )
        notes = [
            f"{span:.0f} s window; accounts {args.accounts}, shards {args.shards}, interval "
            f"{args.interval:g} s, jitter {JITTER:g}, simulators {args.sims}, "
            f"changes {args.changes:g}/s, handler {args.handler}",
            f"load average {load_start} at start, {load_end} at end",
        ]
        if w.name == "kill":
            first = min(
                (
                    at
                    for aid, seen in polls.items()
                    if shard_of(aid, args.shards) == args.kill
                    for at, _ in seen
                    if at >= restart_at
                ),
                default=float("nan"),
            )
            notes.append(
                f"shard {args.kill} SIGKILLed {killed_at - w.t0:.0f} s into the phase, restarted "
                f"{restart_at - killed_at:.1f} s later; its first poll {first - restart_at:.1f} s "
                "after the restart"
            )
        ok = table(f"shards, {w.name} phase", rows, notes) and ok
    print(f"\n   simulator answers by status: {dict(sorted(statuses.items()))}")
    print(f"   machine: {machine()}")
    if bad_exit:
        print(f"   shard exit codes: {codes}")
        ok = False
    print("PASS" if ok else "MISS", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
