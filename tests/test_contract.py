"""The event contract (tests/contract.py) catches what it is there to catch."""

from __future__ import annotations

from poller.events import sample_event
from tests.contract import problems


def test_a_good_event_passes_and_each_kind_of_breakage_is_named() -> None:
    good = {**sample_event(), "source": "diff"}  # the sample carries no activity payload
    assert problems(good) == []
    null_link = {**good, "recording": {**good["recording"], "app_url": None}}
    assert any("recording.app_url" in p for p in problems(null_link))
    api_link = {**good, "recording": {**good["recording"], "app_url": good["recording"]["url"]}}
    assert any("web link" in p for p in problems(api_link))
    borrowed = {**good, "summary": "Jason Fried commented on something else"}
    assert any("is not about" in p for p in problems(borrowed))
    markup = {**good, "summary": "Jason Fried completed <b>Design it</b>"}
    assert any("plain text" in p for p in problems(markup))
    wrong_who = {**good, "summary": "Someone completed a to-do: Design it"}
    assert any("who did it" in p for p in problems(wrong_who))
    no_activity = {**good, "source": "activity+diff", "details": {}}
    assert any("details.activity" in p for p in problems(no_activity))
