"""bcx-poller: Basecamp 2 (BCX) change events for systems that want webhooks.

The data flow reads top-down in the module names:

    scheduler -> poll (one cycle) -> client (fetch) -> feed / collections
              -> diff -> store (state + outbox, one transaction) -> dispatch -> handlers
"""

__version__ = "0.1.0"
