from __future__ import annotations

from typing import Any

import pytest

from handlers import format as fmt
from handlers.templates import (
    compile_template,
    default_source,
    digest_context,
    event_context,
    mrkdwn,
    mrkdwn_url,
    render,
)


def test_context_names(event: dict[str, Any]) -> None:
    from handlers.format import set_timezone

    set_timezone("UTC")
    try:
        ctx = event_context(event)
    finally:
        set_timezone(None)
    assert ctx["who"] == "Jason Fried"
    assert ctx["action"] == "completed a to-do"
    assert ctx["what"] == "completed a to-do: Design it"
    assert ctx["title"] == "Design it"
    assert ctx["project_name"] == "BCX"
    assert ctx["link"] == event["recording"]["app_url"]
    assert ctx["time"] == "16:00:50"  # 11:00:50-05:00, in the reader's zone
    assert ctx["when"] == "2012-03-24 16:00:50 UTC"


def test_sparse_envelope_never_raises() -> None:
    ctx = event_context({"kind": "calendar_event_created"})
    assert ctx["who"] == "Someone"
    assert ctx["action"] == "created an event"
    assert ctx["link"] == ""
    assert fmt.action({"kind": "widget_exploded"}) == "exploded widget"


def test_non_http_link_is_dropped(event: dict[str, Any]) -> None:
    evil = {**event, "recording": {**event["recording"], "app_url": "javascript:alert(1)"}}
    assert event_context(evil)["link"] == ""


def test_syntax_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"template error \(line 1\)"):
        compile_template("{{ who ")


def test_unknown_variable_is_reported() -> None:
    with pytest.raises(ValueError, match=r"unknown variable.*tilte"):
        compile_template("{{ tilte }}")
    with pytest.raises(ValueError, match=r"unknown variable.*events"):
        compile_template("{{ events|length }}")  # only email (digest) templates get events
    assert render(compile_template("{{ count }}", digest=True), digest_context([{}] * 3)) == "3"


def test_sandbox_blocks_internals() -> None:
    with pytest.raises(ValueError, match="fails on a sample event"):
        compile_template("{{ event.__class__.__mro__[1].__subclasses__() }}")


def test_missing_attributes_render_empty(event: dict[str, Any]) -> None:
    template = compile_template("[{{ event.project.name }}|{{ event.changes.title[1] }}]")
    assert render(template, event_context({**event, "project": None})) == "[|]"


def test_html_is_autoescaped_text_is_not(event: dict[str, Any]) -> None:
    ctx = event_context({**event, "recording": {**event["recording"], "title": "<b>&"}})
    assert render(compile_template("{{ title }}", html=True), ctx) == "&lt;b&gt;&amp;"
    assert render(compile_template("{{ title }}"), ctx) == "<b>&"


def test_mrkdwn_escaping() -> None:
    assert mrkdwn("a <b> & c") == "a &lt;b&gt; &amp; c"
    assert mrkdwn_url("https://x.test/a|b c>") == "https://x.test/a%7Cb%20c&gt;"
    assert mrkdwn_url("ftp://x") == ""


def test_default_templates_compile() -> None:
    for name in ("slack.txt",):
        compile_template(default_source(name))
