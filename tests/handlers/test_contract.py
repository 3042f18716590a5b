"""Every registered handler type honours the Handler contract."""

from __future__ import annotations

import inspect
import sys
from typing import Any

import pytest

from handlers.base import Handler, HandlerContext, HandlerOptions
from handlers.registry import handler_class, known_types, validate_handler_settings
from poller.config import HandlerSettings
from poller.errors import ConfigError

BUILT_IN = {"console", "email", "jsonl", "script", "slack", "webhook"}

MINIMAL: dict[str, dict[str, Any]] = {
    "console": {},
    "email": {"host": "127.0.0.1", "from_addr": "a@b.test", "to": ["c@d.test"]},
    "jsonl": {"path": "events.jsonl"},
    "script": {"command": [sys.executable, "-c", "pass"]},
    "slack": {"webhook_url": "https://hooks.slack.test/services/T/B/x"},
    "webhook": {"url": "https://example.test/hook", "secrets": ["whsec_" + "A" * 32]},
}


def test_built_in_types_are_registered() -> None:
    assert set(known_types()) >= BUILT_IN


@pytest.mark.parametrize("type_name", known_types())
def test_class_has_the_contract(type_name: str) -> None:
    cls = handler_class(type_name)
    assert issubclass(cls.Options, HandlerOptions)
    assert cls.Options.model_config.get("extra") == "forbid"
    assert inspect.iscoroutinefunction(cls.deliver)
    assert inspect.iscoroutinefunction(cls.aclose)
    params = list(inspect.signature(cls.__init__).parameters)
    assert params[:3] == ["self", "options", "context"]


@pytest.mark.parametrize("type_name", sorted(BUILT_IN))
async def test_minimal_instance(type_name: str, context: HandlerContext) -> None:
    settings = HandlerSettings(name="h", type=type_name, **MINIMAL[type_name])
    options = validate_handler_settings(settings, field="handlers[0]")
    handler = handler_class(type_name)(options, context)
    try:
        assert isinstance(handler, Handler)
    finally:
        await handler.aclose()


@pytest.mark.parametrize("type_name", sorted(BUILT_IN))
def test_unknown_option_is_a_config_error(type_name: str) -> None:
    settings = HandlerSettings(name="h", type=type_name, **MINIMAL[type_name], colour="red")
    with pytest.raises(ConfigError, match=r"handlers\[0\]\.colour: unknown setting"):
        validate_handler_settings(settings, field="handlers[0]")


def test_config_error_does_not_echo_secrets() -> None:
    settings = HandlerSettings(
        name="h", type="webhook", url="gopher://x.test/", secrets=["whsec_" + "S" * 40]
    )
    with pytest.raises(ConfigError, match=r"handlers\[0\]\.url: must be an http") as info:
        validate_handler_settings(settings, field="handlers[0]")
    assert "S" * 40 not in str(info.value)
