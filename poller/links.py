"""Links to a Basecamp item when its payload carries none.

Basecamp's single GETs of messages, documents, uploads, to-do lists, projects and people
carry no `url`/`app_url`; listings and the feed's `eventable` do (older listings carry
only `url`). These build the documented URL shapes from ids, and the web link from the
API link. Pure functions.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

# Basecamp type -> URL collection segment of its single resource under a project
SEGMENT = {
    "Todolist": "todolists",
    "Todo": "todos",
    "Message": "messages",
    "Document": "documents",
    "Upload": "uploads",
    "CalendarEvent": "calendar_events",
}


def api_url(api_root: str, rtype: str, rid: int, project_id: int | None) -> str | None:
    """`{api_root}/projects/{P}/{segment}/{id}.json` (people and projects: their own
    forms); None when the type or the project is unknown."""
    root = api_root.rstrip("/")
    if rtype == "Project":
        return f"{root}/projects/{rid}.json"
    if rtype == "Person":
        return f"{root}/people/{rid}.json"
    if rtype in SEGMENT and project_id is not None:
        return f"{root}/projects/{project_id}/{SEGMENT[rtype]}/{rid}.json"
    return None


def app_url_from(url: str | None) -> str | None:
    """The web link of an API link: without `/api/v1`, `.json` and the query string."""
    if not url:
        return None
    parts = urlsplit(url)
    path = parts.path.replace("/api/v1/", "/", 1)
    if path.endswith(".json"):
        path = path[: -len(".json")]
    return urlunsplit((parts.scheme, parts.netloc, path, "", parts.fragment))


def without_query(url: str) -> str:
    """An item's own URL as fetched: a redirect's `?moved=true` dropped."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
