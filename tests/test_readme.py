"""The README stays true: the two commands match CI, and every setting and every handler
option is documented in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.registry import handler_class, known_types
from poller.config import (
    AccountSettings,
    HandlerSettings,
    LoggingSettings,
    MetricsSettings,
    OAuthSettings,
    PollerSettings,
)

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize(
    "model",
    [
        PollerSettings,
        AccountSettings,
        OAuthSettings,
        HandlerSettings,
        MetricsSettings,
        LoggingSettings,
    ],
)
def test_every_setting_is_in_the_readme(model: type) -> None:
    def documented(name: str) -> bool:
        # a table row (`name`), a table of its own (`[accounts.oauth]`), or a dotted
        # section key (`metrics.listen`)
        return any(f"{form}`" in README for form in (f"`{name}", f".{name}", f".{name}]"))

    missing = [f for f in model.model_fields if not documented(f)]
    assert missing == [], f"{model.__name__}: {missing}"


@pytest.mark.parametrize("type_name", known_types())
def test_every_handler_type_and_option_is_in_the_readme(type_name: str) -> None:
    assert f"#### `{type_name}`" in README
    options = handler_class(type_name).Options.model_fields
    missing = [f for f in options if f"`{f}`" not in README]
    assert missing == [], f"{type_name}: {missing}"


def test_the_test_command_is_the_one_ci_runs() -> None:
    command = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pytest"
    assert command in README
    assert command in (ROOT / ".ci" / "run").read_text()
    assert (
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/bcx-poller demo" in README
    )
