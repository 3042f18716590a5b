"""The README's examples of what a reader gets (a Slack thread, an e-mail's plain text, the
console) are what the real renderers make of the same four events: a to-do created and
assigned, a comment on it, its due date moved, its completion.

After changing a renderer or a default template, rewrite the examples with

    BCX_UPDATE_README_EXAMPLES=1 .venv/bin/pytest tests/handlers/test_readme_examples.py
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handlers import format as fmt
from handlers.base import HandlerContext
from handlers.console import format_line
from handlers.email import EmailHandler
from handlers.slack import SlackHandler
from poller.events import Event, event_id

README = Path(__file__).resolve().parents[2] / "README.md"
ACCOUNT, PROJECT, TODO = 1234567, 42, 1001
APP_URL = f"https://basecamp.com/{ACCOUNT}/projects/{PROJECT}/todos/{TODO}"
JASON = {"id": 149087659, "name": "Jason Fried"}
ANN = {"id": 101, "name": "Ann Able"}
BOB = {"id": 102, "name": "Bob Baker"}
_BLOCK = re.compile(
    r"(<!-- readme-example: (?P<name>[a-z-]+) -->\n```text\n)(?P<body>.*?)(```)", re.S
)


def _event(
    kind: str, at: str, creator: dict[str, Any], summary: str, **extra: Any
) -> dict[str, Any]:
    todo = {"id": TODO, "content": "Design it", "assignee": {**ANN, "type": "Person"}}
    fields: dict[str, Any] = {"changes": {}, "details": {"record": todo}, **extra}
    return Event(
        id=event_id(ACCOUNT, kind, "Todo", TODO, at),
        kind=kind,
        account_id=ACCOUNT,
        project={"id": PROJECT, "name": "BCX"},
        recording={
            "id": TODO,
            "type": "Todo",
            "url": f"https://basecamp.com/{ACCOUNT}/api/v1/projects/{PROJECT}/todos/{TODO}.json",
            "app_url": APP_URL,
            "title": "Design it",
        },
        creator=creator,
        created_at=at,
        detected_at=at,
        summary=summary,
        source="activity+diff",
        **fields,
    ).to_dict()


def story() -> list[dict[str, Any]]:
    """The four events every example shows."""
    comment = {"id": 5, "content": "<div>Looks good, ship it on <b>Friday</b></div>"}
    return [
        _event(
            "todo_created", "2024-01-15T09:12:03Z", JASON, "Jason Fried created a to-do: Design it"
        ),
        _event(
            "comment_created",
            "2024-01-15T10:40:27Z",
            BOB,
            "Bob Baker commented on a to-do: Design it",
            details={
                "record": {"id": TODO, "assignee": {**ANN, "type": "Person"}},
                "comment": comment,
                "comment_url": f"{APP_URL}#comment_5",
            },
        ),
        _event(
            "todo_due_date_changed",
            "2024-01-15T11:02:45Z",
            JASON,
            "Jason Fried changed the due date of a to-do: Design it",
            changes={"due_on": ["2024-02-01", "2024-02-02"]},
        ),
        _event(
            "todo_completed",
            "2024-01-19T16:30:00Z",
            JASON,
            "Jason Fried completed a to-do: Design it",
            changes={"completed": [False, True]},
        ),
    ]


@pytest.fixture(autouse=True)
def _utc() -> Iterator[None]:
    fmt.set_timezone("UTC")
    try:
        yield
    finally:
        fmt.set_timezone(None)


def slack_thread(context: HandlerContext) -> str:
    """The thread the `slack` handler (token, `mention = "assignee"`, `reply_broadcast =
    ["todo_completed"]`) posts: the parent, then each reply indented under it."""
    options = SlackHandler.Options(
        token="xoxb-readme",
        channel="#bcx",
        mention=("assignee",),
        reply_broadcast=("todo_completed",),
    )
    handler = SlackHandler(options, context)
    parent, *replies = story()
    out = handler.message(parent, mentions="<@U0ANN>")["text"].splitlines()
    for event in replies:
        payload = handler.reply(event, "C0BCX", "1705309923.000100", mentions="<@U0ANN>")
        first, *rest = payload["text"].splitlines()
        broadcast = "   (also in the channel)" if payload.get("reply_broadcast") else ""
        out.append(f"   ↳ {first}{broadcast}")
        out += [f"     {line}" for line in rest]
    return "\n".join(out) + "\n"


def email_text(context: HandlerContext) -> str:
    """The comment's mail from the `email` handler with `to = "assignee"`: its headers
    and plain text part (the HTML part says the same)."""
    options = EmailHandler.Options(
        host="smtp.example.test", from_addr="bcx-poller <bot@example.test>", to=["assignee"]
    )
    handler = EmailHandler(options, context)
    msg = handler.compose([story()[1]], to=["Ann Able <ann@example.test>"])
    plain = msg.get_body(("plain",))
    assert plain is not None
    head = [f"{name}: {msg[name]}" for name in ("From", "To", "Subject")]
    return "\n".join(head) + "\n\n" + str(plain.get_content())


def console_lines() -> str:
    return "".join(format_line(event) + "\n" for event in story())


def rendered(context: HandlerContext) -> dict[str, str]:
    return {
        "slack-thread": slack_thread(context),
        "email-text": email_text(context),
        "console": console_lines(),
    }


def test_the_readme_shows_what_the_renderers_make(context: HandlerContext) -> None:
    examples = rendered(context)
    text = README.read_text(encoding="utf-8")
    if os.environ.get("BCX_UPDATE_README_EXAMPLES"):

        def update(match: re.Match[str]) -> str:
            body = examples.get(match["name"], match["body"])
            return match.group(1) + body + match.group(4)

        text = _BLOCK.sub(update, text)
        README.write_text(text, encoding="utf-8")
    shown = {m["name"]: m["body"] for m in _BLOCK.finditer(text)}
    assert sorted(shown) == sorted(examples), "each example once in README.md"
    for name, body in examples.items():
        assert shown[name] == body, (
            f"README.md's {name} example is not what the renderer makes; rewrite it with"
            " BCX_UPDATE_README_EXAMPLES=1 (see this test's docstring)"
        )
