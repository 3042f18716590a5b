"""The configuration: `config.example.toml` documents and loads, bad files are exit code 2
naming the field, the environment overrides the file, and secrets stay out of reprs and
output."""

from __future__ import annotations

import os
import re
import stat
import textwrap
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from pydantic import BaseModel

from handlers.registry import handler_class, known_types, validate_handler_settings
from poller import logs
from poller.cli import main
from poller.config import (
    CONFIG_ENV,
    AccountSettings,
    HandlerSettings,
    LoggingSettings,
    MetricsSettings,
    OAuthSettings,
    PollerSettings,
    Settings,
    load_settings,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
EXAMPLE_ENV = {
    "BCX_BASECAMP_PASSWORD": "example-password-from-env",
    "BCX_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/EXAMPLE",
    "BCX_SMTP_PASSWORD": "example-smtp-password",
}

ACCOUNT = """
[[accounts]]
id = 1
user_agent = "Config Tests (tests@example.com)"
username = "bot@example.com"
password = "pw-in-file"
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No BCX_POLLER_* or CREDENTIALS_DIRECTORY from the developer's shell; the CLI's global
    logging set-up (pointed at capsys's stream) and registered secrets are undone after."""
    for name in list(os.environ):
        if name.startswith("BCX_POLLER_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)
    monkeypatch.setattr(logs, "_secrets", set())
    yield
    structlog.reset_defaults()


def write(tmp_path: Path, text: str, *, mode: int = 0o600, name: str = "bcx.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    path.chmod(mode)
    return path


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["check", "--config", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


# -- the example ----------------------------------------------------------------------


def example_text() -> str:
    return EXAMPLE.read_text(encoding="utf-8")


@pytest.fixture
def example_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(name, value)


def test_example_loads_into_settings(example_env: None) -> None:
    settings = load_settings(EXAMPLE)
    assert isinstance(settings, Settings)
    (account,) = settings.accounts
    assert account.password is not None
    assert account.password.get_secret_value() == EXAMPLE_ENV["BCX_BASECAMP_PASSWORD"]
    assert account.oauth is None
    names = [h.name for h in settings.handlers]
    assert len(names) == len(set(names)) >= 5


def test_example_passes_check(example_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check(EXAMPLE, capsys)
    assert code == 0, err
    assert "configuration OK: 1 account(s)" in out


def _options_model(type_name: str) -> type[BaseModel]:
    options: type[BaseModel] = handler_class(type_name).Options
    return options


_HEADER = re.compile(r"^[ \t]*#?[ \t]*(\[\[?[A-Za-z_.]+\]\]?)[ \t]*$", re.M)


def sections(text: str) -> list[tuple[str, str]]:
    """(header, body) per table of the example; commented-out tables count."""
    marks = list(_HEADER.finditer(text))
    return [
        (m.group(1), text[m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(text)])
        for i, m in enumerate(marks)
    ]


def section(header: str) -> str:
    bodies = [body for head, body in sections(example_text()) if head == header]
    assert bodies, f"config.example.toml has no {header} table"
    return "\n".join(bodies)


def handler_section(type_name: str) -> str:
    bodies = [
        body
        for head, body in sections(example_text())
        if head == "[[handlers]]"
        and re.search(rf'^[ \t]*#?[ \t]*type[ \t]*=[ \t]*"{type_name}"', body, re.M)
    ]
    assert bodies, f"config.example.toml has no [[handlers]] example of type {type_name!r}"
    return "\n".join(bodies)


def mentioned(key: str, text: str) -> bool:
    """`key = ...` (or its `_env` / `_file` form) as a line of its own, commented out or not."""
    pattern = rf"^[ \t]*(?:#[ \t]*)?{re.escape(key)}(?:_env|_file)?[ \t]*="
    return re.search(pattern, text, re.M) is not None


TABLES: list[tuple[type[BaseModel], str]] = [
    (PollerSettings, "[poller]"),
    (AccountSettings, "[[accounts]]"),
    (OAuthSettings, "[accounts.oauth]"),
    (MetricsSettings, "[metrics]"),
    (LoggingSettings, "[logging]"),
    (HandlerSettings, "[[handlers]]"),
]


@pytest.mark.parametrize(("model", "header"), TABLES, ids=[h for _, h in TABLES])
def test_example_documents_every_setting(model: type[BaseModel], header: str) -> None:
    body = section(header)
    subtables = {head for head, _ in sections(example_text())}
    table = header.strip("[]")
    missing = [
        name
        for name in model.model_fields
        if not mentioned(name, body) and f"[{table}.{name}]" not in subtables
    ]
    assert not missing, f"config.example.toml {header} does not mention {missing}"


def test_example_has_every_top_level_table() -> None:
    headers = {head.strip("[]") for head, _ in sections(example_text())}
    missing = [name for name in Settings.model_fields if name not in headers]
    assert not missing, f"config.example.toml lacks tables {missing}"


@pytest.mark.parametrize("type_name", known_types())
def test_example_documents_every_handler_option(type_name: str) -> None:
    options = _options_model(type_name)
    body = handler_section(type_name)
    missing = [name for name in options.model_fields if not mentioned(name, body)]
    assert not missing, f"config.example.toml's {type_name!r} handler does not mention {missing}"


@pytest.mark.parametrize("type_name", known_types())
def test_example_configures_every_handler_type(type_name: str, example_env: None) -> None:
    """Each registered type has a live (not commented-out) entry, so its example
    options are validated by loading the file."""
    _options_model(type_name)
    types = {h.type for h in load_settings(EXAMPLE).handlers}
    assert type_name in types


def test_example_commented_templates_are_valid(example_env: None) -> None:
    """The templates shown commented out compile when put into their handler's entry."""
    settings = load_settings(EXAMPLE)
    tried = 0
    for head, body in sections(example_text()):
        if head != "[[handlers]]":
            continue
        for match in re.finditer(r"^[ \t]*#[ \t]*(\w*template[ \t]*=.*)$", body, re.M):
            extra = tomllib.loads(match.group(1))
            name_line = re.search(r"^name = .*$", body, re.M)
            assert name_line is not None
            name = tomllib.loads(name_line.group(0))["name"]
            handler = next(h for h in settings.handlers if h.name == name)
            validate_handler_settings(handler.model_copy(update=extra), field=f"handlers.{name}")
            tried += 1
    assert tried >= 4


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("[[accounts]]", "password"),
        ("[[accounts]]", "token"),
        ("[accounts.oauth]", "client_secret"),
        ("[accounts.oauth]", "refresh_token"),
    ],
)
def test_example_shows_every_secret_source(header: str, key: str) -> None:
    body = section(header)
    for variant in (key, f"{key}_env", f"{key}_file"):
        assert re.search(rf"#?[ \t]*{variant}[ \t]*=", body), f"{variant} not shown in {header}"


def test_example_oauth_block_is_valid_when_uncommented(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = section("[accounts.oauth]")
    lines = [
        line.strip()[1:].strip()
        for line in body.splitlines()
        if re.match(r"^\s*#\s*[a-z_]+\s*=", line)
    ]
    data = tomllib.loads("\n".join(lines))
    for key, value in data.items():
        if key.endswith("_env"):
            monkeypatch.setenv(value, f"secret-for-{key}")
        elif key.endswith("_file"):
            (tmp_path / value).write_text(f"secret-for-{key}\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    oauth = OAuthSettings(**data)
    assert oauth.client_id
    assert oauth.client_secret.get_secret_value().startswith("secret-for-client_secret")


# -- bad configurations: exit code 2, the field named -----------------------------------

GOOD_HANDLER = """
[[handlers]]
name = "out"
type = "console"
"""

BAD: list[tuple[str, str, list[str]]] = [
    (
        "missing-user-agent",
        '[[accounts]]\nid = 1\nusername = "u"\npassword = "p"\n',
        ["accounts[0].user_agent", "required setting is missing"],
    ),
    (
        "user-agent-without-contact",
        ACCOUNT.replace("Config Tests (tests@example.com)", "Config Tests"),
        ["accounts[0].user_agent", "contact"],
    ),
    (
        "password-and-token",
        ACCOUNT + 'token = "tok"\n',
        ["accounts[0]", "password", "token", "only one"],
    ),
    (
        "password-without-username",
        ACCOUNT.replace('username = "bot@example.com"\n', ""),
        ["accounts[0]", "password needs username"],
    ),
    (
        "password-file-missing",
        ACCOUNT.replace('password = "pw-in-file"', 'password_file = "/nonexistent/bcx/pw"'),
        ["accounts[0]", "password_file", "unreadable", "/nonexistent/bcx/pw"],
    ),
    (
        "password-env-unset",
        ACCOUNT.replace('password = "pw-in-file"', 'password_env = "BCX_TEST_UNSET_PASSWORD"'),
        ["accounts[0]", "password_env", "BCX_TEST_UNSET_PASSWORD", "not set"],
    ),
    (
        "unknown-watch-entry",
        '[poller]\nwatch = ["todos", "wikis"]\n' + ACCOUNT,
        ["poller.watch", "unknown watch entry 'wikis'"],
    ),
    ("unknown-top-level-key", 'colour = "blue"\n' + ACCOUNT, ["colour", "unknown setting"]),
    (
        "unknown-poller-key",
        "[poller]\nintervall = 10\n" + ACCOUNT,
        ["poller.intervall", "unknown setting"],
    ),
    (
        "negative-interval",
        "[poller]\ninterval = -5\n" + ACCOUNT,
        ["poller.interval", "greater than 0"],
    ),
    (
        "first-sync-not-baseline-or-emit",
        '[poller]\nfirst_sync = "everything"\n' + ACCOUNT,
        ["poller.first_sync", "'baseline'", "'emit'"],
    ),
    ("max-in-flight-zero", "[poller]\nmax_in_flight = 0\n" + ACCOUNT, ["poller.max_in_flight"]),
    ("max-in-flight-17", "[poller]\nmax_in_flight = 17\n" + ACCOUNT, ["poller.max_in_flight"]),
    ("duplicate-account-id", ACCOUNT + ACCOUNT, ["error: accounts: duplicate id 1"]),
    (
        "duplicate-handler-name",
        ACCOUNT + GOOD_HANDLER + GOOD_HANDLER,
        ["error: handlers: duplicate name 'out'"],
    ),
    (
        "missing-required-handler-option",
        ACCOUNT + '[[handlers]]\nname = "file"\ntype = "jsonl"\n',
        ["handlers[0].path", "required setting is missing"],
    ),
    (
        "unknown-handler-option",
        ACCOUNT + GOOD_HANDLER + 'colour = "never"\n',
        ["handlers[0].colour", "unknown setting for handler type 'console'"],
    ),
    (
        "webhook-ftp-url",
        ACCOUNT + '[[handlers]]\nname = "hook"\ntype = "webhook"\nurl = "ftp://example.com/x"\n'
        'secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]\n',
        ["handlers[0].url", "http:// or https://"],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [(t, e) for _, t, e in BAD], ids=[i for i, _, _ in BAD]
)
def test_bad_config_is_exit_code_2_naming_the_field(
    text: str, expected: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = check(write(tmp_path, text), capsys)
    assert code == 2
    assert "configuration OK" not in out
    assert "configuration error" in err
    for fragment in expected:
        assert fragment in err, f"{fragment!r} not in {err!r}"


def test_unknown_handler_type_lists_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = ACCOUNT + '[[handlers]]\nname = "pager"\ntype = "pagerduty"\n'
    code, _, err = check(write(tmp_path, text), capsys)
    assert code == 2
    assert "handlers[0].type" in err
    assert "unknown handler type 'pagerduty'" in err
    known = err.split("known:", 1)[1]
    for type_name in ("jsonl", "script", "webhook", "slack", "email", "console"):
        assert type_name in known


def test_malformed_toml_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[poller]\ninterval = 30\nfirst_sync = "emit\n' + ACCOUNT)
    code, _, err = check(path, capsys)
    assert code == 2
    assert str(path) in err
    assert "malformed TOML" in err
    assert "line 3" in err


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can read a mode-000 file"
)
def test_password_file_without_read_permission(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    secret.chmod(0)
    text = ACCOUNT.replace('password = "pw-in-file"', f'password_file = "{secret}"')
    code, _, err = check(write(tmp_path, text), capsys)
    assert code == 2
    assert "password_file" in err
    assert "unreadable" in err


def test_no_config_and_no_env_is_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, ACCOUNT)  # a config in the working directory is not picked up
    assert main(["check"]) == 2
    err = capsys.readouterr().err
    assert "--config" in err
    assert CONFIG_ENV in err


def test_config_from_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(write(tmp_path, ACCOUNT)))
    assert main(["check"]) == 0
    assert "configuration OK: 1 account(s), 0 handler(s)" in capsys.readouterr().out


# -- environment overrides and credentials ----------------------------------------------


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[poller]\ninterval = 30\nfirst_sync = "emit"\n' + ACCOUNT)
    assert load_settings(path).poller.interval == 30
    monkeypatch.setenv("BCX_POLLER_POLLER__INTERVAL", "7")
    settings = load_settings(path)
    assert settings.poller.interval == 7
    assert settings.poller.first_sync == "emit"  # the rest of [poller] still from the file
    assert settings.accounts[0].id == 1


def test_bad_environment_override_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BCX_POLLER_POLLER__INTERVAL", "-1")
    code, _, err = check(write(tmp_path, ACCOUNT), capsys)
    assert code == 2
    assert "poller.interval" in err


def test_password_file_relative_to_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "basecamp-password").write_text("pw-from-credentials\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    text = ACCOUNT.replace('password = "pw-in-file"', 'password_file = "basecamp-password"')
    (account,) = load_settings(write(tmp_path, text)).accounts
    assert account.password is not None
    assert account.password.get_secret_value() == "pw-from-credentials"


def test_password_env_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BCX_TEST_PASSWORD", "pw-from-env")
    text = ACCOUNT.replace('password = "pw-in-file"', 'password_env = "BCX_TEST_PASSWORD"')
    (account,) = load_settings(write(tmp_path, text)).accounts
    assert account.password is not None
    assert account.password.get_secret_value() == "pw-from-env"


# -- secrets ----------------------------------------------------------------------------

SECRETS = {
    "password": "pw-VERY-SECRET-1",
    "token": "tok-VERY-SECRET-2",
    "client_secret": "cs-VERY-SECRET-3",
    "refresh_token": "rt-VERY-SECRET-4",
    "whsec": "whsec_c2VjcmV0LWtleS1mb3ItdGhlLXRlc3RzLW9ubHk=",
    "slack": "https://hooks.slack.com/services/T0/B0/SLACK-VERY-SECRET-5",
    "header": "Bearer HDR-VERY-SECRET-6",
}

SECRET_CONFIG = f"""
[[accounts]]
id = 1
user_agent = "Config Tests (tests@example.com)"
username = "bot@example.com"
password = "{SECRETS["password"]}"

[[accounts]]
id = 2
user_agent = "Config Tests (tests@example.com)"
token = "{SECRETS["token"]}"

[[accounts]]
id = 3
user_agent = "Config Tests (tests@example.com)"
[accounts.oauth]
client_id = "abc"
client_secret = "{SECRETS["client_secret"]}"
refresh_token = "{SECRETS["refresh_token"]}"

[[handlers]]
name = "hook"
type = "webhook"
url = "https://example.com/hook"
secrets = ["{SECRETS["whsec"]}"]
headers = {{ Authorization = "{SECRETS["header"]}" }}

[[handlers]]
name = "team"
type = "slack"
webhook_url = "{SECRETS["slack"]}"
"""


def _leaks(text: str) -> list[str]:
    return [name for name, value in SECRETS.items() if value in text]


def test_reprs_hide_secrets(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, SECRET_CONFIG))
    assert settings.accounts[0].password is not None
    assert settings.accounts[0].password.get_secret_value() == SECRETS["password"]
    assert settings.handlers[0].options["secrets"] == [SECRETS["whsec"]]
    shown = [str(settings), repr(settings)]
    for obj in (*settings.accounts, *settings.handlers):
        shown += [str(obj), repr(obj)]
    assert "hook" in shown[0] and "team" in shown[0]
    for text in shown:
        assert not _leaks(text), text


def test_check_output_hides_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, SECRET_CONFIG, mode=0o666)  # writable: the warning is logged too
    code = main(["check", "--config", str(path), "--log-level", "debug"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "configuration OK: 3 account(s), 2 handler(s)" in out
    assert "config_writable_by_others" in err
    assert not _leaks(out + err)


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666])
def test_config_writable_by_others_warns(
    mode: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = check(write(tmp_path, ACCOUNT, mode=mode), capsys)
    assert code == 0
    assert "config_writable_by_others" in err
    assert str(tmp_path) in err


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644])
def test_config_not_writable_by_others_does_not_warn(
    mode: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, ACCOUNT, mode=mode)
    assert not stat.S_IMODE(path.stat().st_mode) & (stat.S_IWGRP | stat.S_IWOTH)
    code, _, err = check(path, capsys)
    assert code == 0
    assert "config_writable_by_others" not in err
