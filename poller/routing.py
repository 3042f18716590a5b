"""Which handlers get which events: the `[[handlers]]` filters.

A handler with no filter gets everything. `kinds` are globs (`todo_*`), `projects` and
`accounts` are ids, `exclude_private` skips what Basecamp marks private. All given filters
must match.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

from poller.config import HandlerSettings
from poller.store import Router


def matches(handler: HandlerSettings, event: dict[str, Any]) -> bool:
    if handler.kinds and not any(fnmatchcase(event.get("kind", ""), k) for k in handler.kinds):
        return False
    if handler.accounts and event.get("account_id") not in handler.accounts:
        return False
    if handler.projects and (event.get("project") or {}).get("id") not in handler.projects:
        return False
    return not (handler.exclude_private and event.get("private"))


def router(handlers: Iterable[HandlerSettings]) -> Router:
    """A function naming the handlers an event goes to (used inside the commit)."""
    configured = list(handlers)

    def route(event: dict[str, Any]) -> list[str]:
        return [h.name for h in configured if matches(h, event)]

    return route
