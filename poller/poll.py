"""One polling cycle of one account, top-down. No I/O of its own.

    feed      what happened since the cursor (every page, overlap, de-duplicated)
    targeted  refetch what the new activity points at (conditional GETs, up to
              `max_in_flight` at once), and re-list the sections a 404 or a project's own
              activity points at
    commit    records + validators + cursor + events + delivery rows, one transaction
    re-list   when due (always on the first sync): /projects.json and /people.json, then
              each project (its changed sections only; every `full_recheck_interval` all
              of them, without validators), each committed on its own, in order, while
              the next `max_in_flight` projects are fetched; the account's markers
              ("first sync done", "last re-list at") when every project is done

The feed-driven part is atomic with its cursor: any error before its commit leaves the
account as it was. A re-list is atomic per project: interrupted (an error, a deadline, a
kill), the next cycle resumes with the projects not done yet, and a project committed
twice (killed between its commit and the next) re-emits nothing: event ids are
deterministic and its records are stored. During a first sync the feed is not read again:
the cursor stays the one taken before the sync began, so nothing said during it is missed.
What a project needs is loaded for it and released after it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from poller.client import BasecampClient, request_priority
from poller.collections import (
    TYPE_WATCH,
    Cycle,
    ProjectFetch,
    apply_activities,
    apply_project,
    drop_fetch,
    drop_listings,
    fetch_project,
    prefetch_people,
    relist_forced,
    sync_people,
    sync_projects,
)
from poller.config import PollerSettings
from poller.detect import Detector, relaxed_gc
from poller.feed import newest, poll_feed, unseen
from poller.match import activity_key
from poller.payloads import Activity, kind_prefix, parse_ts
from poller.store import AccountState, Relist, Router, Store

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CycleReport:
    account_id: int
    baseline: bool
    reconciled: bool
    activities: int
    events: int
    added: int
    requests: int
    seconds: float


def _event_watched(kind: str, watch: frozenset[str]) -> bool:
    if kind.endswith("_activity"):
        return True
    for rtype, name in TYPE_WATCH.items():
        if kind.startswith(kind_prefix(rtype) + "_"):
            return name in watch
    return True


def _ts(value: str) -> float:
    parsed = parse_ts(value)
    return parsed.timestamp() if parsed else 0.0


async def poll_account(
    client: BasecampClient,
    store: Store,
    settings: PollerSettings,
    route: Router,
    *,
    now: float | None = None,
) -> CycleReport:
    """Run one cycle for the client's account and commit it. Raises on any failure
    (what was committed before it stays: the feed part, and each re-listed project)."""
    started = time.monotonic()
    # several independent GETs of a step in flight at once (poller.collections.fetch_each),
    # all inside the account's rate limiter and Retry-After gate
    client.set_max_in_flight(settings.max_in_flight)
    requests_before = client.stats.requests
    account_id = client.account.id
    wall = time.time() if now is None else now
    state = store.account(account_id)
    baseline = not state.baseline_done
    relist = state.relist()
    bound = log.bind(account=account_id)
    totals = {"events": 0, "added": 0}

    def new_cycle() -> Cycle:
        detector = Detector(
            store,
            account_id,
            emit=not baseline or settings.first_sync == "emit",
            api_root=client.account.api_root,
        )
        return Cycle(
            client=client,
            store=store,
            detector=detector,
            watch=frozenset(settings.watch),
            api_root=client.account.api_root,
            max_pages=settings.max_pages,
            baseline=baseline,
        )

    late_since: str | None = None  # the cursor step 1 committed (None: no late reads)

    async def commit(cycle: Cycle, write_extra: dict[str, Any]) -> None:
        if late_since is not None and not baseline:
            late = await _late(cycle, late_since, settings.feed_overlap)
            write_extra = {
                **write_extra,
                "seen_activity": write_extra.get("seen_activity", [])
                + [(a.id, a.updated_at, _ts(a.created_at)) for a in late],
            }
        write = cycle.detector.to_write()
        write.events = [e for e in write.events if _event_watched(e["kind"], cycle.watch)]
        write.validators = cycle.validators
        write.drop_validators = cycle.drop_validators
        for key, value in write_extra.items():
            setattr(write, key, value)
        totals["events"] += len(write.events)
        totals["added"] += len(store.commit_cycle(write, route))

    # 1. the feed and what it points at: one transaction with its cursor. A first sync
    #    under way reads no feed: its cursor is the one taken before it began.
    new: list[Activity] = []
    backlog = False
    due = relist is not None
    if not (baseline and relist is not None):
        cycle = new_cycle()
        new, cursor, backlog, processed = await _feed(cycle, state, settings, baseline)
        # the full re-list when due (always on the first sync; a backlog first)
        due = not backlog and (
            relist is not None
            or baseline
            or state.last_reconcile_at is None
            or wall - state.last_reconcile_at >= settings.reconcile_interval
        )
        if new:
            await apply_activities(cycle, new)
        if cycle.forced:
            await relist_forced(cycle)
        extra: dict[str, Any] = {
            "partial": due,  # the re-list's last commit marks the cycle done
            "cursor": cursor,
            "cursor_changed": cursor != state.cursor,
            "baseline_done": state.baseline_done,
            "seen_activity": [(a.id, a.updated_at, _ts(a.created_at)) for a in processed],
        }
        if cursor is not None:  # relative to Basecamp's clock, not ours
            extra["prune_activity_before"] = _ts(cursor) - 2 * settings.feed_overlap - 3600
        # a backlog is being caught up: what happened since is for the next slices
        late_since = None if backlog else cursor
        await commit(cycle, extra)

    # 2. the full re-list, or the rest of one under way: project by project
    if due:
        with relaxed_gc():  # fewer collections of a heap with nothing to collect
            await _relist(new_cycle, commit, state, settings, wall, baseline, relist, started)

    report = CycleReport(
        account_id=account_id,
        baseline=baseline,
        reconciled=due,
        activities=len(new),
        events=totals["events"],
        added=totals["added"],
        requests=client.stats.requests - requests_before,
        seconds=round(time.monotonic() - started, 3),
    )
    fields = {k: v for k, v in report.__dict__.items() if k != "account_id"}
    if report.events or report.baseline or report.activities:
        bound.info("cycle_committed", **fields)
    else:
        bound.debug("cycle_committed", **fields)
    return report


async def _feed(
    cycle: Cycle, state: AccountState, settings: PollerSettings, baseline: bool
) -> tuple[list[Activity], str | None, bool, list[Activity]]:
    """The new activities (oldest first), the cursor to commit, whether a backlog is
    being sliced, and the activities to mark seen."""
    store, account_id = cycle.store, cycle.account_id
    page = await poll_feed(
        cycle.client, state.cursor, overlap=settings.feed_overlap, first_page_only=baseline
    )
    seen = store.seen_activity(account_id, [a.key for a in page.all])
    new = [] if baseline else unseen(page.all, seen)
    cursor = page.cursor
    backlog = len(new) > settings.max_activities
    if backlog:
        # a slice, oldest first; the cursor moves only as far as what was processed,
        # and the rest comes back (after the overlap, de-duplicated) next cycle. An item
        # is read at its state now, so every later activity about an item in the slice
        # joins it: each is explained this cycle, with the state it produced.
        cursor = state.cursor
        for act in new[: settings.max_activities]:
            cursor = newest(cursor, act.created_at)
        keys = {activity_key(a) for a in new[: settings.max_activities]}
        new = new[: settings.max_activities] + [
            a for a in new[settings.max_activities :] if activity_key(a) in keys
        ]
        log.info(
            "feed_backlog",
            account=account_id,
            processing=len(new),
            pending=len(page.all) - len(seen) - len(new),
        )
    processed = new if backlog else [a for a in page.all if a.key not in seen]
    return new, cursor, backlog, processed


async def _late(cycle: Cycle, cursor: str, overlap: float) -> list[Activity]:
    """Activities written while this cycle fetched, that explain changes its fetches saw
    without a word: read (one feed request, only when there are such changes), registered
    with the cycle's detector and returned, to be marked seen in the same commit. The
    cursor does not move for them: what they do not explain comes again next cycle."""
    detector = cycle.detector
    waiting = detector.unexplained() if detector.emit else {}
    if not waiting:
        return []
    page = await poll_feed(cycle.client, cursor, overlap=overlap)
    seen = cycle.store.seen_activity(cycle.account_id, [a.key for a in page.all])
    taken = detector.late(unseen(page.all, seen), waiting)
    if taken:
        log.debug("late_activities", account=cycle.account_id, taken=len(taken))
    return taken


def show_progress(
    account_id: int, *, done: int, total: int, client: BasecampClient, started: float
) -> None:
    """One line per project of a first sync: on a terminal, one line rewritten in place
    on stderr (a log line per project would scroll a big account's sync away); else a
    structured log line."""
    stats = client.stats
    fields = {
        "projects_done": done,
        "projects": total,
        "requests": stats.requests,
        "elapsed": round(time.monotonic() - started, 1),
        "rate_limit_waits": stats.rate_limited,
    }
    if not _stderr_is_terminal():
        log.info("first_sync_progress", account=account_id, **fields)
        return
    log.debug("first_sync_progress", account=account_id, **fields)
    end = "\n" if done == total else ""
    line = (
        f"\rfirst sync of account {account_id}: {done}/{total} projects,"
        f" {stats.requests} requests, {fields['elapsed']:.0f} s,"
        f" {stats.rate_limited} rate-limit waits{end}"
    )
    try:
        sys.stderr.write(line)
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed terminal never stops the sync
        pass


async def _abandon(fetching: dict[int, asyncio.Task[ProjectFetch]]) -> None:
    """Cancel the projects fetched ahead and not committed (the re-list failed or was
    cancelled): nothing is left running, no failure goes unretrieved. Their listings are
    dropped; the next cycle fetches those projects again."""
    tasks = list(fetching.values())
    fetching.clear()
    for task in tasks:
        task.cancel()
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, ProjectFetch):  # it had finished: drop what it started
            await drop_fetch(result)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


async def _relist(
    new_cycle: Callable[[], Cycle],
    commit: Callable[[Cycle, dict[str, Any]], Awaitable[None]],
    state: AccountState,
    settings: PollerSettings,
    wall: float,
    baseline: bool,
    relist: Relist | None,
    started: float,
) -> None:
    """A full re-list, committed project by project (see the module docstring)."""
    if relist is None:
        # once every `full_recheck_interval` the re-list ignores stored validators
        unconditional = (
            baseline
            or state.last_full_recheck_at is None
            or wall - state.last_full_recheck_at >= settings.full_recheck_interval
        )
        cycle = new_cycle()
        cycle.unconditional = unconditional
        prefetch_people(cycle)  # read while the projects are: diffed after them
        try:
            projects = await sync_projects(cycle)
            if cycle.watched("Person"):
                await sync_people(cycle)
        finally:
            await drop_listings(cycle)
        relist = Relist(projects=projects, unconditional=unconditional)
        await commit(cycle, {"partial": True, "relist": relist, "relist_changed": True})
    total = len(relist.projects)
    # Several projects in flight: the next `ahead` projects are fetched (their own GET and
    # their section listings, `fetch_project`) while the first not done is diffed and
    # committed. Each is diffed by a cycle made after the previous project's commit and
    # committed in the order of `relist.projects`, so what is detected and committed, and
    # where an interrupt resumes, are those of one project at a time.
    ahead = settings.max_in_flight if settings.max_in_flight > 1 else 0
    fetching: dict[int, asyncio.Task[ProjectFetch]] = {}
    unconditional = relist.unconditional

    def fetch(pid: int, place: int) -> asyncio.Task[ProjectFetch]:
        cycle = new_cycle()
        cycle.unconditional = unconditional
        # its requests wait for a slot behind those of the projects before it
        token = request_priority.set(place)
        try:
            return asyncio.ensure_future(fetch_project(cycle, pid, set()))
        finally:
            request_priority.reset(token)

    try:
        while relist.projects:
            first = 1 + total - len(relist.projects)  # its place in the re-list
            for n, pid in enumerate(relist.projects[: 1 + ahead]):
                if pid not in fetching:
                    fetching[pid] = fetch(pid, first + n)
            pid = relist.projects[0]
            fetched = await fetching.pop(pid)
            cycle = new_cycle()
            cycle.unconditional = relist.unconditional
            token = request_priority.set(first)
            try:
                await apply_project(cycle, fetched)
            finally:
                request_priority.reset(token)
            relist = Relist(projects=relist.projects[1:], unconditional=relist.unconditional)
            await commit(cycle, {"partial": True, "relist": relist, "relist_changed": True})
            if baseline:  # a first sync of a big account takes a while: show progress
                show_progress(
                    cycle.account_id,
                    done=total - len(relist.projects),
                    total=total,
                    client=cycle.client,
                    started=started,
                )
    finally:
        await _abandon(fetching)
    done = new_cycle()
    await commit(
        done,
        {
            "baseline_done": True,
            "reconciled_at": wall,
            "full_recheck_at": wall if relist.unconditional else None,
            "relist": None,
            "relist_changed": True,
        },
    )
