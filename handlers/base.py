"""The handler contract.

A handler type is a class with

* `Options`: a pydantic model of its type-specific settings (validated at start-up;
  unknown keys are rejected), and
* `__init__(self, options, context)`, and
* `async deliver(self, event) -> None`: deliver one event envelope (a JSON-ready dict).
  Return to mark it delivered; raise `HandlerError` (optionally with `retry_after`) to have
  the dispatcher retry it later, `PermanentHandlerError` to dead-letter it at once.
* `async aclose(self) -> None`: release resources (files, connections).
* optionally `preview(self, event) -> str`: what `deliver` would send (body, headers, the
  mail...), without sending it and without credentials; `bcx-poller render` prints it.
* optionally `async probe(self) -> str`: reach the target without sending an event
  (connect, handshake, log in) and say what was reached, or raise `HandlerError`;
  `bcx-poller check --online` calls it.
* optionally `start(self, settings) -> None`: called once the handlers are built (`run`,
  `once`, a reload, `check --online`, `test-handler`, `render`), with the handler's
  `HandlerSettings` (its retry policy included), before any delivery. Raise `ConfigError`
  (the field relative to the handler: `"stream"`) to refuse to start: the command exits 2
  naming `handlers[N].stream`, and a reload keeps the running handlers. It runs
  synchronously inside the event loop, so it must be quick and bounded (the broker
  handlers check with a short-lived connection of their own in a worker thread).

An event with `"test": true` is a test sent by `bcx-poller test-handler`: a handler that
writes for people shows it (the built-ins put `[test]` before who did it).

The dispatcher calls `deliver` for one handler's events in detection order; a handler
never sees two of its own deliveries at once (that is what keeps them in order).

`context.people` (when the handler runs beside a state database) looks up the Basecamp
people the poller stores (`/people.json`, `[poller] watch` has `people`), read-only: what
personal routing (`email` `to = "assignee"`, `slack` `mention`) turns into addresses.
It blocks briefly (an SQLite read): call it in a worker thread from `deliver`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict


class HandlerOptions(BaseModel):
    """Base for each handler's `Options`: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Person:
    """A Basecamp person as the poller stores it."""

    id: int
    name: str
    email: str | None  # None: Basecamp gave none
    removed: bool = False  # trashed or gone from the account's people


class People(Protocol):
    """Read-only look-up of the stored people of an account."""

    def person(self, account_id: int, person_id: int) -> Person | None:
        """The person, or None when the poller stores no such person."""
        ...


@dataclass(frozen=True)
class HandlerContext:
    """What a handler may know about its surroundings."""

    name: str
    state_dir: Path
    people: People | None = None  # None: no state database to read people from


@runtime_checkable
class Handler(Protocol):
    """Delivers events to one target. See the module docstring for the contract."""

    Options: ClassVar[type[HandlerOptions]]

    async def deliver(self, event: dict[str, Any]) -> None: ...

    async def aclose(self) -> None: ...
