"""`console`: one readable line per event on standard output.

    11:00:50  todo_completed      BCX  Jason Fried  completed a to-do: Design it

Columns: the time (HH:MM:SS of `created_at`, else `detected_at`, in `[poller] timezone`),
the kind, the project, who, and what happened. Control characters in Basecamp data are
replaced, so a title cannot inject terminal escape sequences. `color = "auto"` colours
only a terminal (and honours `NO_COLOR`).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Literal, TextIO

from pydantic import Field

from handlers import format as fmt
from handlers.base import HandlerContext, HandlerOptions
from poller.errors import HandlerError

_DIM, _BOLD, _CYAN, _RESET = "\x1b[2m", "\x1b[1m", "\x1b[36m", "\x1b[0m"


class ConsoleOptions(HandlerOptions):
    color: Literal["auto", "always", "never"] = Field("auto", description="ANSI colours")


def format_line(event: dict[str, Any], *, color: bool = False) -> str:
    clock = fmt.clock(event)
    kind = f"{fmt.clean(event.get('kind')) or '?':<18}"
    project = fmt.project_name(event) or "-"
    who = fmt.who(event)
    what = fmt.what(event)
    if color:
        clock = f"{_DIM}{clock}{_RESET}"
        kind = f"{_CYAN}{kind}{_RESET}"
        who = f"{_BOLD}{who}{_RESET}"
    return f"{clock}  {kind}  {project}  {who}  {what}"


class ConsoleHandler:
    Options = ConsoleOptions

    def __init__(
        self, options: ConsoleOptions, context: HandlerContext, *, stream: TextIO | None = None
    ) -> None:
        self.options = options
        self.name = context.name
        self._stream = stream

    def __repr__(self) -> str:
        return f"ConsoleHandler(name={self.name!r})"

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    def _color(self) -> bool:
        if self.options.color != "auto":
            return self.options.color == "always"
        if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
            return False
        try:
            return self.stream.isatty()
        except (OSError, ValueError):
            return False

    async def probe(self) -> str:
        return "standard output" + (" (a terminal)" if self._color() else "")

    def preview(self, event: dict[str, Any]) -> str:
        """What `deliver` would write, without writing it."""
        return "to standard output:\n" + format_line(event, color=False)

    async def deliver(self, event: dict[str, Any]) -> None:
        line = format_line(event, color=self._color())
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError) as exc:  # closed pipe, closed file
            raise HandlerError(f"console {self.name}: cannot write: {exc}") from exc

    async def aclose(self) -> None:
        return None
