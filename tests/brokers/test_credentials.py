"""Credentials for the brokers: a NATS token from the environment and a Redis password
from a file reach the servers, `check --online` reaches both without publishing, and no
secret shows in any output, even when the credentials are wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.brokers._servers import STREAM, NatsServer, RedisServer
from tests.brokers.test_delivery import FAST, ONLY, todo_ids
from tests.conftest import Harness
from tests.delivery._support import handlers_toml, run_cli

TOKEN = "nats-T0ken-8c41e0"
PASSWORD = "redis-Pa55w0rd-5d2a"


def test_token_and_password_reach_the_servers_and_never_show(
    sim: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nats = NatsServer(tmp_path / "nats", "--auth", TOKEN).start()
    redis = RedisServer(tmp_path / "redis", "--requirepass", PASSWORD).start()
    try:
        nats.add_stream(3600)
        secret = tmp_path / "redis-password"
        secret.write_text(PASSWORD + "\n")
        secret.chmod(0o600)
        monkeypatch.setenv("BUS_NATS_TOKEN", TOKEN)
        handlers = [
            {
                "name": "nats",
                "type": "nats",
                "servers": [nats.url],
                "stream": STREAM,
                "token_env": "BUS_NATS_TOKEN",
                **FAST,
                **ONLY,
            },
            {
                "name": "redis",
                "type": "redis_stream",
                "url": redis.url,
                "password_file": str(secret),
                **FAST,
                **ONLY,
            },
        ]
        a = sim.account
        todolist = a.create_todolist(a.create_project("Ops"), "List")
        a.create_todo(todolist, "Task")
        config = sim.write_config(handlers_toml(handlers), first_sync="emit")

        check = run_cli("check", "--online", "-c", str(config))
        assert check.returncode == 0, check.stdout + check.stderr
        assert "handler nats: OK: connected to nats://127.0.0.1:" in check.stdout
        assert "stream 'BCX' exists, duplicate_window 1h; nothing published" in check.stdout
        assert "handler redis: OK: connected to redis://127.0.0.1:" in check.stdout
        assert nats.messages() == [] and redis.entries() == []

        once = run_cli("once", "-c", str(config), "--deliver-timeout", "10")
        assert once.returncode == 0, once.stderr
        ids = todo_ids(sim)
        assert len(ids) == 1
        assert [m["msg_id"] for m in nats.messages()] == ids
        assert [e["id"] for e in redis.entries()] == ids

        # wrong credentials: the deliveries wait, saying why; still nothing secret shows
        monkeypatch.setenv("BUS_NATS_TOKEN", TOKEN + "-wrong")
        secret.write_text(PASSWORD + "-wrong\n")
        a.create_todo(todolist, "Later")
        bad = run_cli("once", "-c", str(config), "--deliver-timeout", "0.5")
        assert bad.returncode == 0, bad.stderr
        listed = run_cli("deliveries", "-c", str(config))
        errors = {line.split()[1]: line for line in listed.stdout.splitlines() if "error=" in line}
        assert "authorization" in errors["nats"].lower(), listed.stdout
        assert "AuthenticationError" in errors["redis"], listed.stdout
        for text in (check.stdout, check.stderr, once.stderr, bad.stderr, listed.stdout):
            assert TOKEN not in text and PASSWORD not in text
    finally:
        nats.stop()
        redis.stop()
