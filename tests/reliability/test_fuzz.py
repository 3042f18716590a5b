"""Promise 4, hostile input: the payload parsers and the configuration loader fail only
with their typed errors (`BadResponse`, `ConfigError`), whatever they are fed."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poller.config import parse_settings, read_toml
from poller.errors import BadResponse, ConfigError
from poller.feed import shift_ts
from poller.payloads import PARSERS, parse, parse_activity, parse_comments, parse_ts
from tests.reliability.conftest import to_toml

FAST = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))

timestamps = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "2024-01-15T12:00:00.000-05:00",
            "2024-01-15T12:00:00Z",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00Z",
            "2024-13-45T99:00:00Z",
            "",
            "yesterday",
        ]
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    timestamps,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "id", "name", "title", "subject", "content", "description", "summary", "url", "app_url",
    "html_url", "created_at", "updated_at", "completed", "completed_at", "due_on", "due_at",
    "assignee", "creator", "completer", "last_updater", "bucket", "todolist", "todolist_id",
    "comments", "comments_count", "attachments", "private", "trashed", "archived", "admin",
    "email_address", "starts_at", "ends_at", "all_day", "eventable", "action", "target",
    "excerpt", "topics", "todolists", "documents", "calendar_events", "accesses", "type",
]  # fmt: skip
payloads = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=12),
    st.fixed_dictionaries(
        {"id": st.integers(min_value=1, max_value=2**40), "updated_at": timestamps},
        optional={f: json_values for f in FIELDS if f not in ("id", "updated_at")},
    ),
)


@FAST
@given(rtype=st.sampled_from(sorted(PARSERS)), obj=payloads, hint=st.none() | st.integers())
def test_record_parsers_fail_only_with_bad_response(rtype: str, obj: Any, hint: Any) -> None:
    try:
        record = parse(rtype, obj, "https://basecamp.test/x.json", hint)
        parse_comments(record, "https://basecamp.test/x.json")
    except BadResponse as exc:
        assert str(exc)


@FAST
@given(obj=payloads)
def test_activity_parser_fails_only_with_bad_response(obj: Any) -> None:
    try:
        act = parse_activity(obj, "https://basecamp.test/events.json")
    except BadResponse:
        return
    assert parse_ts(act.created_at) is not None  # the feed computes cursors from it
    shift_ts(act.created_at, 900)


def test_timestamps_at_the_edge_of_the_calendar_do_not_overflow() -> None:
    # found by the fuzzer: astimezone() raised OverflowError
    assert parse_ts("0001-01-01T00:00:00+01:00") is None
    assert parse_ts("9999-12-31T23:59:59-01:00") is None
    assert shift_ts("0001-01-01T00:00:00Z", 900) == "0001-01-01T00:00:00Z"
    try:
        parse("Todo", {"id": 1, "updated_at": "0001-01-01T00:00:00+01:00"})
    except BadResponse as exc:
        assert "updated_at" in str(exc)


keys = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=12)
config_values = st.recursive(
    st.one_of(st.booleans(), st.integers(-(2**40), 2**40), st.floats(), st.text(max_size=30)),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=6,
)
SECTIONS = {
    "poller": [
        "state_path", "interval", "reconcile_interval", "first_sync", "watch", "feed_overlap",
        "cycle_timeout", "jitter", "max_pages", "full_recheck_interval", "max_in_flight",
    ],
    "accounts": [
        "id", "name", "base_url", "user_agent", "username", "password", "password_env",
        "password_file", "token", "token_file", "rate_limit", "timeout",
    ],
    "handlers": [
        "name", "type", "kinds", "projects", "max_attempts", "url", "secrets", "command",
        "path", "host", "to", "from_addr", "timeout", "env", "headers", "webhook_url",
    ],
    "logging": ["level", "format"],
    "metrics": ["listen"],
}  # fmt: skip


def section(name: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(SECTIONS[name]) | keys, config_values, max_size=6)


configs = st.one_of(
    st.dictionaries(keys, config_values | st.dictionaries(keys, config_values), max_size=4),
    st.fixed_dictionaries(
        {},
        optional={
            "poller": section("poller"),
            "accounts": st.lists(section("accounts"), max_size=2),
            "handlers": st.lists(section("handlers"), max_size=2),
            "logging": section("logging"),
            "metrics": section("metrics"),
        },
    ),
)


@FAST
@given(data=configs)
def test_config_parser_fails_only_with_config_error(data: dict[str, Any]) -> None:
    try:
        parse_settings(data)
    except ConfigError as exc:
        assert exc.field and exc.reason


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=configs, raw=st.binary(max_size=200), cut=st.integers(0, 400))
def test_config_files_fail_only_with_config_error(
    tmp_path_factory: Any, data: dict[str, Any], raw: bytes, cut: int
) -> None:
    path = Path(tmp_path_factory.mktemp("cfg")) / "config.toml"
    try:
        text = to_toml(data).encode()
    except (TypeError, AttributeError):  # not every generated mapping is a TOML document
        text = b"[poller]\ninterval = 5\n"
    for body in (raw, text[:cut] + raw[:8] + text[cut:]):
        path.write_bytes(body)
        try:
            parse_settings(read_toml(path))
        except ConfigError as exc:
            assert exc.field and exc.reason


def test_hostile_config_files(tmp_path: Path) -> None:
    cases = {
        "not utf-8": b'[poller]\nstate_path = "\xff\xfe"\n',
        "deep": b"a = " + b"[" * 5000 + b"]" * 5000,
        "env file": b'_env_file = "/etc/passwd"\n',
        "argv": b"_cli_parse_args = true\n",
        "secrets dir": b"_secrets_dir = 5\n",
    }
    for name, body in cases.items():
        path = tmp_path / f"{name}.toml"
        path.write_bytes(body)
        try:
            parse_settings(read_toml(path))
        except ConfigError as exc:
            assert exc.reason, name
        else:
            raise AssertionError(f"{name}: accepted")
