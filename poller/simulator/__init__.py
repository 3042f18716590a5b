"""A stateful Basecamp 2 ("BCX") simulator, served in-process or over loopback.

    account = Account(clock=ManualClock())          # the fake account (mutate it directly)
    account.changes                                  # every mutation since, as `SimChange`s
    app = SimulatorApp(account)                      # the HTTP rules, faults, request log
    transport = SimulatorTransport(app)              # httpx, no sockets
    with serve(app) as base_url: ...                 # real HTTP on 127.0.0.1

Modules: clock (time and formats), model (records), state (storage and shared
rules), account + content (mutations), queries (read side, snapshot), populate (bulk and
demo data), render (JSON shapes), routes (GET endpoints), auth (credentials, Launchpad),
faults, requestlog, api (`SimulatorApp`), transport, server.
"""

from poller.simulator.account import UNSET, Account, Moved, NotFound
from poller.simulator.api import DEMO_PASSWORD, DEMO_USERNAME, SimResponse, SimulatorApp
from poller.simulator.auth import Credentials, Launchpad
from poller.simulator.clock import ManualClock, SystemClock, format_timestamp, parse_timestamp
from poller.simulator.faults import FAULT_KINDS, Fault, FaultSet, SimRequest
from poller.simulator.model import OPS, SimChange
from poller.simulator.populate import demo_account, populate
from poller.simulator.requestlog import LoggedRequest, RequestLog
from poller.simulator.server import account_base_url, main, run, serve
from poller.simulator.state import ERAS, Era
from poller.simulator.transport import SimulatorTransport, SyncSimulatorTransport

__all__ = [
    "DEMO_PASSWORD",
    "DEMO_USERNAME",
    "ERAS",
    "FAULT_KINDS",
    "OPS",
    "UNSET",
    "Account",
    "Credentials",
    "Era",
    "Fault",
    "FaultSet",
    "Launchpad",
    "LoggedRequest",
    "ManualClock",
    "Moved",
    "NotFound",
    "RequestLog",
    "SimChange",
    "SimRequest",
    "SimResponse",
    "SimulatorApp",
    "SimulatorTransport",
    "SyncSimulatorTransport",
    "SystemClock",
    "account_base_url",
    "demo_account",
    "format_timestamp",
    "main",
    "parse_timestamp",
    "populate",
    "run",
    "serve",
]
