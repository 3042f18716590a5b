"""Shared fixtures: a Basecamp 2 simulator on loopback and a poller pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from poller.accounts import AccountRunner, open_account, run_cycle
from poller.config import Settings, parse_settings
from poller.poll import CycleReport
from poller.routing import router
from poller.simulator import Account, ManualClock, SimulatorApp, account_base_url, serve
from poller.store import Store

USER_AGENT = "bcx-poller tests (ops@example.com)"


@dataclass
class Harness:
    """The simulator (mutate `account`, inject `app.faults`) and a poller on it."""

    account: Account
    clock: ManualClock
    app: SimulatorApp
    base_url: str
    tmp: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    _store: Store | None = None
    _seen: int = 0

    def config(self, **poller: Any) -> dict[str, Any]:
        return {
            "poller": {
                "state_path": str(self.tmp / "state.db"),
                "reconcile_interval": 0,
                **self.overrides,
                **poller,
            },
            "accounts": [
                {
                    "id": self.account.account_id,
                    "base_url": account_base_url(self.base_url, self.account.account_id),
                    "user_agent": USER_AGENT,
                    "username": "demo@example.com",
                    "password": "demo",
                }
            ],
        }

    def write_config(self, extra: str = "", **poller: Any) -> Path:
        cfg = self.config(**poller)
        acc = cfg["accounts"][0]
        lines = ["[poller]"]
        for k, v in cfg["poller"].items():
            lines.append(f"{k} = {v!r}".replace("'", '"'))
        lines += [
            "",
            "[[accounts]]",
            f"id = {acc['id']}",
            f'base_url = "{acc["base_url"]}"',
            f'user_agent = "{acc["user_agent"]}"',
            f'username = "{acc["username"]}"',
            f'password = "{acc["password"]}"',
            extra,
        ]
        path = self.tmp / "config.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    @property
    def settings(self) -> Settings:
        return parse_settings(self.config())

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.tmp / "state.db")
        return self._store

    async def cycle(self, advance: float = 30.0) -> CycleReport | None:
        """Advance the simulator's clock, then run one poll cycle; None when it failed."""
        self.clock.advance(advance)
        settings = self.settings
        runner: AccountRunner = open_account(settings.accounts[0], store=self.store)
        try:
            self.last_runner = runner
            return await run_cycle(runner, self.store, settings.poller, router(settings.handlers))
        finally:
            await runner.aclose()

    def events(self) -> list[dict[str, Any]]:
        return self.store.events(limit=100000)

    def new_events(self) -> list[dict[str, Any]]:
        """Events added since the last call."""
        evs = self.events()
        out = evs[self._seen :]
        self._seen = len(evs)
        return out

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Harness]:
    clock = ManualClock()
    account = Account(clock=clock)
    app = SimulatorApp(account)
    with serve(app) as base_url:
        h = Harness(account, clock, app, base_url, tmp_path)
        try:
            yield h
        finally:
            h.close()


@pytest.fixture(autouse=True)
def event_contract(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Every event the product builds in any test keeps the envelope contract
    (tests/contract.py): schema, non-empty links, a plain-text summary about this event.
    Events a test writes into the outbox by hand are its own business."""
    from poller.detect import Detector
    from tests.contract import problems

    built: list[dict[str, Any]] = []
    original = Detector._build

    def checked(self: Detector, explained: Any) -> dict[str, Any]:
        event = original(self, explained)
        found = problems(event)
        assert not found, f"event {event['kind']} breaks the contract: {found}\n{event}"
        built.append(event)
        return event

    monkeypatch.setattr(Detector, "_build", checked)
    yield built
