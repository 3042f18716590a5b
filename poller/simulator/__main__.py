"""`python -m poller.simulator [--host H] [--port N] [--account-id ID]`: run the demo."""

from poller.simulator.server import main

raise SystemExit(main())
