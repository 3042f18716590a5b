"""Human-facing times in the reader's zone (`[poller] timezone`), envelopes untouched."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from handlers import format as fmt
from handlers.console import format_line
from poller.config import parse_settings
from poller.errors import ConfigError
from poller.events import sample_event


@pytest.fixture(autouse=True)
def machine_zone() -> Iterator[None]:
    yield
    fmt.set_timezone(None)


def test_times_are_shown_in_the_configured_zone_and_envelopes_keep_their_offset() -> None:
    event = sample_event()  # created_at 2012-03-24T11:00:50-05:00
    fmt.set_timezone("UTC")
    assert fmt.clock(event) == "16:00:50"
    assert fmt.when(event) == "2012-03-24 16:00:50 UTC"
    fmt.set_timezone("Europe/Berlin")
    assert fmt.clock(event) == "17:00:50"
    assert fmt.when(event) == "2012-03-24 17:00:50 CET"
    assert format_line(event).startswith("17:00:50  todo_completed")
    assert event["created_at"] == "2012-03-24T11:00:50-05:00"
    # a detection time in UTC ("Z") is shown in the same zone as Basecamp's times
    assert fmt.clock({"detected_at": "2026-07-01T10:00:00.000Z"}) == "12:00:00"


def test_an_unknown_zone_is_a_configuration_error_naming_the_field() -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(
            {
                "poller": {"timezone": "Mars/Olympus"},
                "accounts": [
                    {
                        "id": 1,
                        "user_agent": "t (t@example.com)",
                        "username": "u",
                        "password": "p",
                    }
                ],
            }
        )
    assert "poller.timezone" in str(err.value) and "Mars/Olympus" in str(err.value)


def test_the_cli_shows_the_console_line_in_the_configured_zone(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "\n".join(
            [
                "[poller]",
                f'state_path = "{tmp_path / "state.db"}"',
                'timezone = "Asia/Tokyo"',
                "[[accounts]]",
                "id = 999999999",
                'user_agent = "t (t@example.com)"',
                'username = "u"',
                'password = "p"',
                "[[handlers]]",
                'name = "screen"',
                'type = "console"',
                'color = "never"',
            ]
        )
        + "\n"
    )
    config.chmod(0o600)
    out = subprocess.run(
        [sys.executable, "-m", "poller", "test-handler", "screen", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "01:00:50  todo_completed" in out.stdout  # 16:00:50 UTC is 01:00:50 in Tokyo
