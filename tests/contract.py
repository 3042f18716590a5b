"""The event contract every produced event must keep, whatever produced it.

`tests/conftest.py` runs `problems()` over every event any test commits to a state
database (an autouse fixture wraps `Store.commit_cycle`), so a change that emits a
null link or a summary about something else fails the test that produced it.
"""

from __future__ import annotations

import re
from typing import Any

from poller.events import plain_text
from poller.payloads import parse_ts

FIELDS = {
    "id",
    "kind",
    "account_id",
    "project",
    "recording",
    "creator",
    "changes",
    "created_at",
    "detected_at",
    "summary",
    "source",
    "details",
    "private",
}
_ID = re.compile(r"^bcx_[0-9a-f]{32}$")
_KIND = re.compile(r"^[a-z]+(?:_[a-z]+)*$")
_TAG = re.compile(r"<[a-zA-Z/][^>]*>")


def _person_ok(value: Any) -> bool:
    return value is None or (
        isinstance(value, dict) and isinstance(value.get("id"), int) and "name" in value
    )


def problems(event: dict[str, Any]) -> list[str]:
    """What is wrong with one event envelope ([] when it keeps the contract)."""
    out: list[str] = []
    if set(event) != FIELDS:
        out.append(f"fields {sorted(set(event) ^ FIELDS)} differ from the envelope")
        return out
    if not _ID.match(str(event["id"])):
        out.append(f"id {event['id']!r}")
    if not _KIND.match(str(event["kind"])):
        out.append(f"kind {event['kind']!r}")
    if not isinstance(event["account_id"], int):
        out.append("account_id not an int")
    project = event["project"]
    if project is not None and not (isinstance(project, dict) and isinstance(project["id"], int)):
        out.append(f"project {project!r}")
    rec = event["recording"]
    if not isinstance(rec, dict) or set(rec) != {"id", "type", "url", "app_url", "title"}:
        out.append(f"recording {rec!r}")
        return out
    for link in ("url", "app_url"):
        if not isinstance(rec[link], str) or not rec[link].startswith("http"):
            out.append(f"recording.{link} is {rec[link]!r}")
    if isinstance(rec["app_url"], str) and ("/api/v1/" in rec["app_url"] or "#" in rec["app_url"]):
        out.append(f"recording.app_url is not the item's web link: {rec['app_url']}")
    if not _person_ok(event["creator"]):
        out.append(f"creator {event['creator']!r}")
    changes = event["changes"]
    if not isinstance(changes, dict) or any(
        not isinstance(v, list) or len(v) != 2 for v in changes.values()
    ):
        out.append(f"changes {changes!r}")
    for when in ("created_at", "detected_at"):
        if parse_ts(event[when]) is None:
            out.append(f"{when} {event[when]!r}")
    summary = event["summary"]
    if not isinstance(summary, str) or not summary.strip():
        out.append("summary empty")
    elif plain_text(summary) != summary or _TAG.search(summary):
        out.append(f"summary not plain text: {summary!r}")
    details = event["details"] if isinstance(event["details"], dict) else {}
    activity = details.get("activity")
    source = event["source"]
    if source not in ("activity", "diff", "activity+diff"):
        out.append(f"source {source!r}")
    elif ("activity" in source) != (activity is not None):
        out.append(f"source {source} but details.activity is {'set' if activity else 'missing'}")
    # about this event: its item's title (or, told in the activity's own words, the
    # activity's target: the item may have been renamed since)
    about = {plain_text(rec.get("title"))}
    if isinstance(activity, dict):
        about.add(plain_text(activity.get("target")))
    about.discard("")
    if isinstance(summary, str) and about and not any(a in summary for a in about):
        out.append(f"summary {summary!r} is not about {sorted(about)!r}")
    creator = event["creator"] or {}
    if (
        isinstance(summary, str)
        and creator.get("name")
        and not summary.startswith(str(creator["name"]))
    ):
        out.append(f"summary {summary!r} does not start with who did it ({creator['name']!r})")
    if str(event["kind"]).startswith("comment_") and details.get("comment") is not None:
        comment_url = details.get("comment_url")
        if not isinstance(comment_url, str) or "#comment_" not in comment_url:
            out.append(f"details.comment_url is {comment_url!r}")
    if not isinstance(event["private"], bool):
        out.append("private not a bool")
    return out
