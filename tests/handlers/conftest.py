"""Fixtures shared by the handler tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handlers.base import HandlerContext
from poller.events import sample_event
from tests.handlers._receiver import Receiver, receiver


@pytest.fixture
def context(tmp_path: Path) -> HandlerContext:
    state = tmp_path / "state"
    state.mkdir()
    return HandlerContext(name="test", state_dir=state)


@pytest.fixture
def event() -> dict[str, Any]:
    return sample_event()


@pytest.fixture
def http_receiver() -> Iterator[Receiver]:
    with receiver() as recv:
        yield recv
