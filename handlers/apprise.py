"""`apprise`: reach about a hundred more services (Teams, Discord, Telegram, ntfy, ...)
through the optional `apprise` library (`pip install 'bcx-poller[apprise]'`).

Options: `urls` (list of Apprise URLs; secrets inside them, so they are `SecretStr`),
`title_template` / `body_template` (Jinja2, sandboxed; defaults: the readable summary).
Apprise reports only success or failure, so every failure is retried.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field, SecretStr, field_validator

from handlers import format as fmt
from handlers.base import HandlerContext, HandlerOptions
from poller.errors import HandlerError

MISSING = "the apprise handler needs the optional dependency: pip install 'bcx-poller[apprise]'"


def _apprise() -> Any:
    try:
        import apprise
    except ImportError:
        return None
    return apprise


class AppriseOptions(HandlerOptions):
    urls: list[SecretStr] = Field(min_length=1, description="Apprise service URLs")

    @field_validator("urls")
    @classmethod
    def _usable(cls, value: list[SecretStr]) -> list[SecretStr]:
        lib = _apprise()
        if lib is None:
            raise ValueError(MISSING)
        probe = lib.Apprise()
        for index, url in enumerate(value):
            if not probe.add(url.get_secret_value()):
                raise ValueError(f"urls[{index}] is not a URL Apprise understands")
        return value


class AppriseHandler:
    Options = AppriseOptions

    def __init__(self, options: AppriseOptions, context: HandlerContext) -> None:
        lib = _apprise()
        if lib is None:  # validated at start-up; kept for callers that skip validation
            raise HandlerError(MISSING)
        self.name = context.name
        self._apobj = lib.Apprise()
        for url in options.urls:
            self._apobj.add(url.get_secret_value())

    def __repr__(self) -> str:
        return f"AppriseHandler(name={self.name!r}, urls={len(self._apobj)})"

    @staticmethod
    def notification(event: dict[str, Any]) -> tuple[str, str]:
        """(title, body) of the notification for `event`."""
        title = f"{fmt.project_name(event) or 'Basecamp'}: {fmt.clean(event.get('kind'))}"
        body = f"{fmt.who(event)} {fmt.what(event)}"
        link = (event.get("recording") or {}).get("app_url")
        if isinstance(link, str) and link.startswith(("http://", "https://")):
            body += f"\n{link}"
        return title, body

    def preview(self, event: dict[str, Any]) -> str:
        title, body = self.notification(event)
        return f"to {len(self._apobj)} Apprise URL(s) (not shown: credentials)\n{title}\n\n{body}"

    async def deliver(self, event: dict[str, Any]) -> None:
        title, body = self.notification(event)
        ok = await asyncio.to_thread(self._apobj.notify, body=body, title=title)
        if not ok:
            raise HandlerError(f"apprise could not notify every service of {event.get('id')}")

    async def aclose(self) -> None:
        return None
