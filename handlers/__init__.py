"""Delivery targets for bcx-poller events.

Every handler implements `handlers.base.Handler` and is registered in the entry-point group
`bcx_poller.handlers` (the built-ins too, see pyproject.toml), so a third-party package adds a
handler type by declaring one entry point.
"""

from handlers.base import Handler, HandlerContext

__all__ = ["Handler", "HandlerContext"]
