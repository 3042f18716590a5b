"""The Launchpad stand-in (OAuth 2 token flow) and the loopback server / demo runner."""

from __future__ import annotations

import io
import re
import threading
import time

import httpx

from poller.simulator import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    Account,
    ManualClock,
    SimulatorApp,
    account_base_url,
    demo_account,
    run,
    serve,
)
from tests.simulator.conftest import UA


async def test_refresh_flow_after_expiry(account: Account, clock: ManualClock) -> None:
    app = SimulatorApp(account, token_ttl=3600, client_id="cid", client_secret="secret")
    refresh = app.launchpad.issue_refresh_token()
    with serve(app) as base:
        async with httpx.AsyncClient(base_url=base, headers={"User-Agent": UA}) as c:
            params = {
                "type": "refresh",
                "refresh_token": refresh,
                "client_id": "cid",
                "client_secret": "secret",
            }
            token = await c.post("/authorization/token", params=params)
            assert token.status_code == 200
            body = token.json()
            assert set(body) == {"access_token", "expires_in", "refresh_token"}
            assert body["expires_in"] == 3600
            bearer = {"Authorization": f"Bearer {body['access_token']}"}
            auth = await c.get("/authorization.json", headers=bearer)
            bcx = [a for a in auth.json()["accounts"] if a["product"] == "bcx"]
            assert bcx[0]["href"] == account_base_url(base, account.account_id)
            assert auth.json()["identity"]["email_address"] == "demo@example.com"
            api = bcx[0]["href"] + "/projects.json"
            assert (await c.get(api, headers=bearer)).status_code == 200
            clock.advance(3601)
            assert (await c.get(api, headers=bearer)).status_code == 401
            # the old refresh token was used up; the new one works
            assert (await c.post("/authorization/token", params=params)).status_code == 401
            params["refresh_token"] = body["refresh_token"]
            renewed = (await c.post("/authorization/token", params=params)).json()
            assert renewed["access_token"] != body["access_token"]
            fresh = {"Authorization": f"Bearer {renewed['access_token']}"}
            assert (await c.get(api, headers=fresh)).status_code == 200


async def test_web_server_code_exchange_and_errors(app: SimulatorApp) -> None:
    code = app.launchpad.issue_code()
    creds = {"client_id": app.launchpad.client_id, "client_secret": app.launchpad.client_secret}
    with serve(app) as base:
        async with httpx.AsyncClient(base_url=base) as c:
            bad_client = await c.post(
                "/authorization/token",
                params={"type": "web_server", "code": code, "client_id": "x", "client_secret": "y"},
            )
            assert bad_client.status_code == 401
            assert bad_client.json() == {"error": "invalid_client"}
            ok = await c.post(
                "/authorization/token", params={"type": "web_server", "code": code, **creds}
            )
            assert ok.status_code == 200
            reused = await c.post(
                "/authorization/token", params={"type": "web_server", "code": code, **creds}
            )
            assert reused.status_code == 401
            weird = await c.post("/authorization/token", params={"type": "password", **creds})
            assert weird.status_code == 400
            assert (await c.get("/authorization.json")).status_code == 401


async def test_serve_uses_a_free_port_and_real_urls(app: SimulatorApp) -> None:
    app.account.create_project("Over the wire")
    with serve(app) as base:
        assert re.match(r"^http://127\.0\.0\.1:\d+$", base)
        async with httpx.AsyncClient(
            base_url=account_base_url(base, app.account.account_id) + "/",
            auth=(DEMO_USERNAME, DEMO_PASSWORD),
            headers={"User-Agent": UA},
        ) as c:
            (project,) = (await c.get("projects.json")).json()
            assert project["url"].startswith(base + "/")
            # the payload URL is directly usable
            assert (await c.get(project["url"])).json()["name"] == "Over the wire"
    with httpx.Client() as sync:
        try:
            sync.get(base + "/x.json", timeout=0.5)
        except httpx.TransportError:
            pass
        else:
            raise AssertionError("the server should be gone after the with-block")


def test_demo_account_has_every_kind() -> None:
    account = demo_account()
    kinds = {key[0] for key in account.snapshot()}
    assert kinds >= {
        "person",
        "project",
        "todolist",
        "todo",
        "message",
        "comment",
        "document",
        "upload",
        "attachment",
        "calendar_event",
    }
    assert len(account.live_projects(archived=True)) == 1
    assert len(account.events) > 10


def test_run_prints_credentials_and_serves_until_stopped() -> None:
    out = io.StringIO()
    stop = threading.Event()
    worker = threading.Thread(target=run, args=(0,), kwargs={"out": out, "stop": stop})
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while "Ctrl-C" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        text = out.getvalue()
        root = re.search(r"API root\s*: (\S+)", text)
        assert root is not None
        assert "demo@example.com / demo" in text
        with httpx.Client(auth=(DEMO_USERNAME, DEMO_PASSWORD), headers={"User-Agent": UA}) as c:
            projects = c.get(root.group(1) + "/projects.json").json()
        assert {p["name"] for p in projects} == {"Website launch", "Operations"}
    finally:
        stop.set()
        worker.join(timeout=5)
    assert not worker.is_alive()


async def test_mutations_while_serving_stay_consistent(app: SimulatorApp) -> None:
    """The main thread mutates while the server thread renders: every answer is whole."""
    account = app.account
    project = account.create_project("Busy")
    todolist = account.create_todolist(project, "Churn")
    stop = threading.Event()

    def mutate() -> None:
        for n in range(400):
            if stop.is_set():
                return
            todo = account.create_todo(todolist, f"t{n}")
            account.complete_todo(todo)
            time.sleep(0.001)

    writer = threading.Thread(target=mutate)
    with serve(app) as base:
        writer.start()
        try:
            async with httpx.AsyncClient(
                base_url=account_base_url(base, account.account_id) + "/",
                auth=(DEMO_USERNAME, DEMO_PASSWORD),
                headers={"User-Agent": UA},
            ) as c:
                for _ in range(30):
                    body = (await c.get(f"projects/{project}/todolists/{todolist}.json")).json()
                    done = body["todos"]["completed"]
                    # counts and embedded lists come from one consistent state
                    assert body["completed_count"] == len(done)
                    assert body["remaining_count"] == len(body["todos"]["remaining"])
        finally:
            stop.set()
            writer.join(timeout=5)
    assert len(account.todolists[todolist].todo_ids) > 0
