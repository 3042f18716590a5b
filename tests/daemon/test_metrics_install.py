"""Metrics work on a default install, and /metrics never answers 200 with no metric."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from poller import metrics as metrics_module
from poller.metrics import Metrics, serve
from tests.daemon._support import http_get

ROOT = Path(__file__).resolve().parents[2]


def test_prometheus_client_is_a_plain_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [d.split(">")[0].split("=")[0].split("[")[0].strip() for d in project["dependencies"]]
    assert "prometheus-client" in names
    assert project["optional-dependencies"].get("metrics", []) == []  # old extra still valid


def test_metrics_without_prometheus_client_answer_503_not_an_empty_200(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics_module, "_prometheus", lambda: None)
    m = Metrics(wanted=True)
    assert not m.enabled
    server = serve("127.0.0.1:0", m, lambda: (True, {}))
    try:
        port = server.server_address[1]
        status, body = http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 503 and b"prometheus-client is not installed" in body
        status, _body = http_get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_on_a_default_install_answer_with_metrics() -> None:
    m = Metrics(wanted=True)
    assert m.enabled
    m.observe_cycle(1, True, 0.1, None, ["todo_completed"])
    server = serve("127.0.0.1:0", m, lambda: (True, {}))
    try:
        status, body = http_get(f"http://127.0.0.1:{server.server_address[1]}/metrics")
        assert status == 200 and b"bcx_poller_events_total" in body
    finally:
        server.shutdown()
        server.server_close()
