"""The broker handlers' settings, without a server: config errors name the field, the
retry span the windows are checked against, the message and entry layouts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from handlers import nats as nats_handler
from handlers import redis_stream
from handlers._brokers import human_seconds, render_name, retry_span
from handlers.base import HandlerContext
from poller.config import HandlerSettings, parse_settings
from poller.dispatch import build_targets
from poller.errors import ConfigError
from poller.events import sample_event
from tests.handlers._smtp import free_port


def errors_of(handler: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_settings({"handlers": [{"name": "bus", **handler}]})
    return str(info.value)


NATS = {"type": "nats", "stream": "BCX"}
REDIS = {"type": "redis_stream"}


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"type": "nats"}, "handlers[0].stream: required setting is missing"),
        ({**NATS, "stream": "a.b"}, "handlers[0].stream: 'a.b' is not a JetStream stream name"),
        ({**NATS, "servers": ["http://x:4222"]}, "handlers[0].servers: servers[0] must be a"),
        ({**NATS, "servers": []}, "handlers[0].servers: "),
        ({**NATS, "subject": "bcx.{who}"}, "handlers[0].subject: unknown placeholder {who}"),
        ({**NATS, "subject": "bcx.>"}, "handlers[0].subject: 'bcx.>' is not a subject"),
        ({**NATS, "timeout": 0}, "handlers[0].timeout: "),
        ({**NATS, "token": "t0k3n-x", "creds_file": "a.creds"}, "handlers[0]: give only one of"),
        ({**NATS, "username": "u"}, "handlers[0]: username and password go together"),
        ({**NATS, "colour": "red"}, "handlers[0].colour: unknown setting for handler type"),
        ({**REDIS, "url": "http://127.0.0.1"}, "handlers[0].url: must be a redis://"),
        ({**REDIS, "maxlen": 0}, "handlers[0].maxlen: "),
        ({**REDIS, "dedupe_ttl": 0}, "handlers[0].dedupe_ttl: "),
        ({**REDIS, "idmp": "maybe"}, "handlers[0].idmp: "),
        ({**REDIS, "stream": "bcx:{project}"}, "handlers[0].stream: unknown placeholder"),
        ({**REDIS, "username": "u"}, "handlers[0]: username needs password"),
    ],
)
def test_config_errors_name_the_field(settings: dict[str, Any], expected: str) -> None:
    assert expected in errors_of(settings)


def test_credentials_in_urls_are_refused_without_echoing_them() -> None:
    nats = errors_of({**NATS, "servers": ["nats://bob:s3cr3t-pw@127.0.0.1:4222"]})
    assert nats.startswith("handlers[0].servers: servers[0] must not carry credentials")
    redis = errors_of({**REDIS, "url": "redis://:s3cr3t-pw@127.0.0.1:6379/0"})
    assert redis.startswith("handlers[0].url: must not carry credentials")
    assert "s3cr3t-pw" not in nats + redis


def test_secrets_come_from_env_and_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUS_TOKEN", "nats-T0ken-4fd1")
    monkeypatch.setenv("BUS_PASSWORD", "redis-Pa55-9e2c")
    settings = parse_settings(
        {
            "handlers": [
                {"name": "n", **NATS, "token_env": "BUS_TOKEN"},
                {"name": "r", **REDIS, "username": "u", "password_env": "BUS_PASSWORD"},
            ]
        }
    )
    from poller.cli import _secret_values

    assert {"nats-T0ken-4fd1", "redis-Pa55-9e2c"} <= set(_secret_values(settings))
    assert "nats-T0ken-4fd1" not in repr(settings) and "redis-Pa55-9e2c" not in repr(settings)
    unset = errors_of({**NATS, "token_env": "BUS_TOKEN_UNSET"})
    assert "token_env names environment variable 'BUS_TOKEN_UNSET', which is not set" in unset


def test_the_retry_span_follows_the_dispatch_policy() -> None:
    def span(timeout: float = 5, **policy: Any) -> float:
        return retry_span(HandlerSettings(name="h", type="nats", **policy), timeout)

    # defaults: delays 6, 12, 24, ..., 768 s, then 11 x 900 s (all at +20 % jitter), plus
    # 20 attempts of at most 5 s each
    assert span() == 1530 + 11 * 900 + 20 * 5 == 11530
    assert human_seconds(span()) == "3h12m10s"
    assert span(max_attempts=1) == 5  # one attempt, no retry
    assert span(max_age=600) == 600 + 5  # the last retry is no later than max_age
    assert span(max_attempts=10**9, max_age=10**12) > 10**11  # capped delays: no loop
    # 0.05 s x 1.2, then retry_max (jitter never goes past it), 99 attempts of 2 s, +2 s
    assert span(timeout=2, retry_initial=0.05, retry_max=0.1, max_attempts=100) == (
        pytest.approx(0.06 + 98 * 0.1 + 99 * 2 + 2)
    )


def test_human_seconds() -> None:
    assert [human_seconds(s) for s in (0, 0.2, 59, 120, 3600, 3661, 11530)] == [
        "0s",
        "1s",
        "59s",
        "2m",
        "1h",
        "1h1m1s",
        "3h12m10s",
    ]


def test_a_dedupe_ttl_shorter_than_the_retry_span_refuses_to_build(tmp_path: Path) -> None:
    """Checked before any connection: the Redis port here is closed."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    settings = parse_settings(
        {
            "handlers": [
                {"name": "j", "type": "jsonl", "path": str(tmp_path / "e.jsonl")},
                {"name": "r", **REDIS, "url": url, "dedupe_ttl": 11529},
            ]
        }
    )
    with pytest.raises(ConfigError) as info:
        build_targets(settings.handlers, tmp_path)
    assert info.value.field == "handlers[1].dedupe_ttl"
    assert "11529 s (3h12m9s) is shorter than this handler's longest retry span 3h12m10s" in (
        info.value.reason
    )
    ok = parse_settings({"handlers": [{"name": "r", **REDIS, "url": url, "dedupe_ttl": 11530}]})
    targets = build_targets(ok.handlers, tmp_path)  # unreachable: starts, checks later
    assert list(targets) == ["r"]


def test_subject_and_stream_templates() -> None:
    event = sample_event()
    template = "bcx.{account_id}.{project_id}.{kind}"
    assert render_name(template, event) == "bcx.999999999.605816632.todo_completed"
    assert render_name(template, {**event, "project": None}) == "bcx.999999999.none.todo_completed"


def test_the_nats_message(tmp_path: Path) -> None:
    options = nats_handler.NatsOptions(stream="BCX")
    handler = nats_handler.NatsHandler(options, HandlerContext("bus", tmp_path))
    event = sample_event()
    subject, body, headers = handler.message(event)
    assert subject == "bcx.999999999.todo_completed"
    assert headers == {"Nats-Msg-Id": event["id"], "Content-Type": "application/json"}
    assert body.decode().startswith('{"id":"' + event["id"])
    assert "Nats-Msg-Id: " + event["id"] in handler.preview(event)


def test_the_redis_entry_and_script_arguments(tmp_path: Path) -> None:
    options = redis_stream.RedisStreamOptions(maxlen=5000, prefix="p:")
    handler = redis_stream.RedisStreamHandler(options, HandlerContext("bus", tmp_path))
    event = sample_event()
    keys, args = handler.script_call(event)
    assert keys == ["bcx:events", f"p:seen:{event['id']}"]
    assert args[:4] == ["172800", "5000", "", event["id"]]  # no IDMP until a server has it
    fields = dict(zip(args[4::2], args[5::2], strict=True))
    assert list(fields) == ["id", "kind", "account_id", "project_id", "occurred_at", "event"]
    assert fields["project_id"] == "605816632" and fields["occurred_at"] == event["created_at"]
    handler.idmp = True  # what a Redis 8.6+ connection finds in COMMAND DOCS XADD
    assert handler.script_call(event)[1][2] == "bcx-poller:bus"
    without = redis_stream.fields({**event, "project": None})
    assert without["project_id"] == ""


def test_without_the_client_library_the_type_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(nats_handler, "_nats", lambda: None)
    monkeypatch.setattr(redis_stream, "_redis", lambda: None)
    assert "pip install 'bcx-poller[nats]'" in errors_of(NATS)
    assert "pip install 'bcx-poller[redis]'" in errors_of(REDIS)
