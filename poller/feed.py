"""The activity feed: `GET /events.json?since=` with every page, an overlap and de-duplication.

The cursor is the server's own `created_at` string of the newest activity processed. Each
poll asks from `cursor - overlap` (Basecamp lets an event be edited for 15 minutes and
several events share a second), fetches every page (more than 50 new events must never
drop any), and drops what was processed before by (activity id, updated_at).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from poller.client import PAGE_SIZE, BasecampClient, NotModified
from poller.errors import BadResponse
from poller.payloads import Activity, parse_activity, parse_ts

FEED_PATH = "/events.json"


@dataclass
class FeedPage:
    """What one poll of the feed found."""

    all: list[Activity] = field(default_factory=list)  # everything returned, newest first
    cursor: str | None = None  # newest created_at returned (server string), or the old one


def shift_ts(value: str, seconds: float) -> str:
    """`value` moved back by `seconds`, rendered in the same offset and style."""
    if parse_ts(value) is None:
        raise ValueError(f"not a timestamp: {value!r}")
    original_tz = value.endswith("Z")
    try:
        local = datetime.fromisoformat(value.replace("Z", "+00:00")) - timedelta(seconds=seconds)
    except OverflowError:  # a cursor at the very start of the calendar: ask from there
        return value
    text = local.isoformat(timespec="milliseconds")
    if original_tz:
        text = text.replace("+00:00", "Z")
    return text


def newest(a: str | None, b: str | None) -> str | None:
    """The later of two server timestamps (by instant), keeping its original string."""
    if a is None:
        return b
    if b is None:
        return a
    ta, tb = parse_ts(a), parse_ts(b)
    if ta is None or tb is None:
        return a
    return b if tb > ta else a


async def poll_feed(
    client: BasecampClient,
    cursor: str | None,
    *,
    overlap: float,
    max_pages: int = 2000,
    first_page_only: bool = False,
) -> FeedPage:
    """Fetch the feed since `cursor - overlap` (every page); newest first in `all`.

    `first_page_only` (baseline): page 1 without `since`, to learn where "now" is (and,
    when page 1 is full, everything inside the overlap window behind it, to mark it seen).
    The caller picks the new ones with `unseen()` once it has looked the keys up.
    """
    if first_page_only:
        fetched = await client.get(FEED_PATH)
        if isinstance(fetched, NotModified):
            return FeedPage(cursor=cursor)
        if not isinstance(fetched.data, list) or not all(isinstance(i, dict) for i in fetched.data):
            raise BadResponse("expected a JSON array of event objects", url=fetched.url)
        items, url = list(fetched.data), fetched.url
        first = [parse_activity(item, url) for item in items]
        top = None
        for act in first:
            top = newest(top, act.created_at)
        if top is not None and overlap and len(items) >= PAGE_SIZE:
            # Page 1 is full: more activity lies inside the overlap window the next poll
            # reads again. Read all of it now, so it counts as seen (part of the baseline)
            # instead of coming back as "new" activity that happened before the baseline.
            listing = await client.get_list(
                FEED_PATH, params={"since": shift_ts(top, overlap)}, max_pages=max_pages
            )
            if not isinstance(listing, NotModified):
                items += listing.items
    else:
        params = {"since": shift_ts(cursor, overlap) if overlap else cursor} if cursor else None
        listing = await client.get_list(FEED_PATH, params=params, max_pages=max_pages)
        if isinstance(listing, NotModified):  # we never send validators; be safe anyway
            return FeedPage(cursor=cursor)
        items, url = listing.items, listing.url
    parsed = [parse_activity(item, url) for item in items]
    activities = list({a.key: a for a in parsed}.values())  # page 1 and `since` overlap
    page = FeedPage(all=activities, cursor=cursor)
    for act in activities:
        page.cursor = newest(page.cursor, act.created_at)
    return page


def unseen(activities: list[Activity], seen: set[tuple[int, str]]) -> list[Activity]:
    """The activities not processed before, oldest first."""
    return sorted(
        (a for a in activities if a.key not in seen),
        key=lambda a: (parse_ts(a.created_at), a.id),
    )
