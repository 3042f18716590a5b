"""Jinja2 templates for the slack and email handlers.

* Rendering is sandboxed (`SandboxedEnvironment`): a template from the configuration cannot
  reach Python internals.
* HTML templates are autoescaped; text templates are not.
* Checked at start-up: a template with a syntax error, an unknown top-level variable (a typo
  like `{{ tilte }}`) or one that fails to render a sample event is a configuration error.
* Missing attributes render as empty (`{{ event.project.name }}` for an event without a
  project gives ""), so optional envelope fields do not break a template at run time.

Context of every template: `event` (the envelope dict), and the convenience strings `who`,
`action`, `what`, `title`, `link`, `project_name`, `kind`, `summary`, `time` (HH:MM:SS)
and `when` (date, time and zone), both in `[poller] timezone`, and `changed` (lines saying
what changed: a comment's text and link, old -> new due date, assignee, title, a word diff
of a text), `mentions` (Slack with `mention`: the `<@U…>` of the people mentioned,
space-separated; "" otherwise). Email
templates also get `events` (a list of such contexts, one per event, capped), `count` (the
number of events) and `omitted` (how many were left out of `events`).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from handlers import format as fmt
from poller.events import sample_event

if TYPE_CHECKING:  # jinja2 is imported when a template is compiled, not with the handlers
    from jinja2 import Template
    from jinja2.sandbox import SandboxedEnvironment

EVENT_NAMES = frozenset(
    {
        "event",
        "who",
        "action",
        "what",
        "title",
        "link",
        "project_name",
        "kind",
        "summary",
        "time",
        "when",
        "changed",
        "mentions",
    }
)
DIGEST_NAMES = EVENT_NAMES | {"events", "groups", "count", "omitted"}


def mrkdwn(value: Any) -> str:
    """Escape text for Slack mrkdwn (`&`, `<`, `>`)."""
    text = "" if value is None else str(value)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn_url(value: Any) -> str:
    """An http(s) URL made safe inside a Slack `<url|label>` link ("" for anything else)."""
    url = "" if value is None else str(value)
    if not url.startswith(("https://", "http://")):
        return ""
    return mrkdwn(url).replace("|", "%7C").replace(" ", "%20")


@cache
def environment(*, html: bool) -> SandboxedEnvironment:
    from jinja2 import ChainableUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(
        autoescape=html,
        undefined=ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["mrkdwn"] = mrkdwn
    env.filters["mrkdwn_url"] = mrkdwn_url
    return env


def default_source(name: str) -> str:
    """The text of a default template shipped in handlers/templates/."""
    return resources.files("handlers").joinpath("templates", name).read_text(encoding="utf-8")


def event_context(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "event": event,
        "who": fmt.who(event),
        "action": fmt.action(event),
        "what": fmt.what(event),
        "title": fmt.title(event),
        "link": fmt.link(event),
        "project_name": fmt.project_name(event),
        "kind": fmt.clean(event.get("kind")),
        "summary": fmt.clean(event.get("summary")),
        "time": fmt.clock(event),
        "when": fmt.when(event),
        "changed": fmt.changed(event),
        "mentions": "",
    }


def _newest_first(ctx: dict[str, Any]) -> float:
    from poller.payloads import parse_ts

    event = ctx["event"] if isinstance(ctx.get("event"), dict) else {}
    moment = parse_ts(event.get("created_at")) or parse_ts(event.get("detected_at"))
    return -moment.timestamp() if moment is not None else 0.0


def group(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Event contexts by project (by name), then by item (the most recently changed
    first), each item's changes newest first: `[{project_name, entries: [{title, link,
    events}]}]`."""
    projects: dict[str, dict[Any, dict[str, Any]]] = {}
    for ctx in items:
        event = ctx["event"] if isinstance(ctx.get("event"), dict) else {}
        recording = event.get("recording")
        if not isinstance(recording, dict):
            recording = {}
        key = (recording.get("type"), recording.get("id"))
        entry = projects.setdefault(ctx["project_name"] or "Basecamp", {}).setdefault(
            key, {"title": ctx["title"], "link": ctx["link"], "events": []}
        )
        entry["events"].append(ctx)
    out = []
    for name in sorted(projects, key=str.lower):
        entries = list(projects[name].values())
        for entry in entries:
            entry["events"].sort(key=_newest_first)
        entries.sort(key=lambda entry: _newest_first(entry["events"][0]))
        out.append({"project_name": name, "entries": entries})
    return out


def digest_context(events: list[dict[str, Any]], *, limit: int = 200) -> dict[str, Any]:
    """Context for the email templates: the first event's names at top level, plus `events`,
    `groups` (see `group`), `count` and `omitted`."""
    items = [event_context(e) for e in events[:limit]]
    context = dict(items[0]) if items else event_context({})
    context.update(
        events=items, groups=group(items), count=len(events), omitted=max(0, len(events) - limit)
    )
    return context


def compile_template(source: str, *, html: bool = False, digest: bool = False) -> Template:
    """Compile and check a template; ValueError with a readable reason if it is bad."""
    from jinja2 import TemplateError, meta

    env = environment(html=html)
    names = DIGEST_NAMES if digest else EVENT_NAMES
    try:
        unknown = meta.find_undeclared_variables(env.parse(source)) - names - set(env.globals)
        template = env.from_string(source)
    except TemplateError as exc:
        lineno = getattr(exc, "lineno", None)
        where = f" (line {lineno})" if lineno else ""
        raise ValueError(f"template error{where}: {exc.message or exc}") from None
    if unknown:
        raise ValueError(
            f"template uses unknown variable(s) {', '.join(sorted(unknown))}; "
            f"available: {', '.join(sorted(names))}"
        )
    sample = sample_event()
    context = digest_context([sample, sample]) if digest else event_context(sample)
    try:
        template.render(context)
        if digest:
            template.render(digest_context([sample]))
    except Exception as exc:  # the template's own fault, whatever it is
        raise ValueError(f"template fails on a sample event: {type(exc).__name__}: {exc}") from None
    return template


def render(template: Template, context: dict[str, Any]) -> str:
    """Render; raises ValueError (with the template's complaint) on failure."""
    try:
        return template.render(context)
    except Exception as exc:
        raise ValueError(f"template failed: {type(exc).__name__}: {exc}") from None
