"""Find handler types through the `bcx_poller.handlers` entry-point group."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from pydantic import ValidationError

from poller.errors import ConfigError

GROUP = "bcx_poller.handlers"


@cache
def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def known_types() -> list[str]:
    return sorted(_entry_points())


def handler_class(type_name: str, *, field: str = "type") -> Any:
    """Load the handler class registered as `type_name`, or raise a ConfigError listing
    the known types."""
    ep = _entry_points().get(type_name)
    if ep is None:
        raise ConfigError(
            field,
            f"unknown handler type {type_name!r}; known: {', '.join(known_types()) or 'none'}",
        )
    try:
        cls = ep.load()
    except Exception as exc:  # a broken third-party plugin must not crash start-up obscurely
        raise ConfigError(field, f"handler type {type_name!r} failed to load: {exc}") from exc
    if not hasattr(cls, "Options") or not hasattr(cls, "deliver"):
        raise ConfigError(
            field, f"handler type {type_name!r} does not implement the Handler contract"
        )
    return cls


def validate_handler_settings(handler: Any, *, field: str) -> Any:
    """Validate one `[[handlers]]` entry's type-specific options; return the Options object."""
    cls = handler_class(handler.type, field=f"{field}.type")
    try:
        return cls.Options(**handler.options)
    except ValidationError as exc:
        errors = []
        for err in exc.errors(include_url=False, include_input=False):
            loc = ".".join(str(p) for p in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "missing":
                msg = "required setting is missing"
            elif err["type"] == "extra_forbidden":
                msg = f"unknown setting for handler type {handler.type!r}"
            errors.append(ConfigError(f"{field}.{loc}" if loc else field, msg))
        if len(errors) == 1:
            raise errors[0] from None
        from poller.config import ConfigErrors

        raise ConfigErrors(errors) from None


def unwatched(options: Any, watch: Iterable[str], *, field: str) -> list[ConfigError]:
    """What a handler's options need from `[poller] watch` and do not get: personal
    routing (`to`, `mention`) needs the stored `people`. Options say so with
    `needs_watch() -> {setting: watch entry}`."""
    needs = getattr(options, "needs_watch", None)
    if not callable(needs):
        return []
    watched = set(watch)
    return [
        ConfigError(
            f"{field}.{setting}",
            f"needs {kind!r} in [poller] watch: the people named are looked up among the"
            f" {kind} the poller stores (add {kind!r} to watch, or leave watch out: all)",
        )
        for setting, kind in needs().items()
        if kind not in watched
    ]
