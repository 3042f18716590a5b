"""One polling cycle of one account, top-down. No I/O of its own.

    feed      what happened since the cursor (every page, overlap, de-duplicated)
    targeted  refetch what the new activity points at (conditional GETs)
    reconcile full conditional re-list when due (projects -> changed sections only);
              every `full_recheck_interval` an unconditional one (no validators, all sections)
    commit    records + validators + cursor + events + delivery rows, one transaction

Any error before the commit leaves the account's state exactly as it was; the next cycle
starts again from the same cursor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog

from poller.client import BasecampClient
from poller.collections import TYPE_WATCH, Cycle, apply_activities, reconcile
from poller.config import PollerSettings
from poller.detect import Detector
from poller.feed import newest, poll_feed, unseen
from poller.match import activity_key
from poller.payloads import kind_prefix, parse_ts
from poller.store import Router, Store

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
    """Run one cycle for the client's account and commit it. Raises on any failure."""
    started = time.monotonic()
    requests_before = client.stats.requests
    account_id = client.account.id
    wall = time.time() if now is None else now
    state = store.account(account_id)
    baseline = not state.baseline_done
    detector = Detector(
        store,
        account_id,
        emit=not baseline or settings.first_sync == "emit",
        api_root=client.account.api_root,
    )
    cycle = Cycle(
        client=client,
        store=store,
        detector=detector,
        watch=frozenset(settings.watch),
        api_root=client.account.api_root,
        max_pages=settings.max_pages,
        baseline=baseline,
    )
    bound = log.bind(account=account_id)

    # 1. the activity feed
    page = await poll_feed(
        client, state.cursor, overlap=settings.feed_overlap, first_page_only=baseline
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
        bound.info(
            "feed_backlog", processing=len(new), pending=len(page.all) - len(seen) - len(new)
        )

    # 2. targeted refetch of what the new activity points at
    if new:
        await apply_activities(cycle, new)

    # 3. full conditional re-list when due (always on the first sync); a backlog first
    due = not backlog and (
        baseline
        or state.last_reconcile_at is None
        or wall - state.last_reconcile_at >= settings.reconcile_interval
    )
    # once every `full_recheck_interval`, that re-list ignores stored validators
    recheck = due and (
        baseline
        or state.last_full_recheck_at is None
        or wall - state.last_full_recheck_at >= settings.full_recheck_interval
    )
    cycle.unconditional = recheck
    if due or cycle.forced:
        await reconcile(cycle, full=due)

    # 4. one transaction
    write = detector.to_write()
    write.events = [e for e in write.events if _event_watched(e["kind"], cycle.watch)]
    write.cursor = cursor
    write.cursor_changed = cursor != state.cursor
    write.reconciled_at = wall if due else None
    write.full_recheck_at = wall if recheck else None
    write.validators = cycle.validators
    write.drop_validators = cycle.drop_validators
    processed = new if backlog else [a for a in page.all if a.key not in seen]
    write.seen_activity = [(a.id, a.updated_at, _ts(a.created_at)) for a in processed]
    if cursor is not None:  # relative to Basecamp's clock, not ours
        write.prune_activity_before = _ts(cursor) - 2 * settings.feed_overlap - 3600
    added = store.commit_cycle(write, route)
    report = CycleReport(
        account_id=account_id,
        baseline=baseline,
        reconciled=due,
        activities=len(new),
        events=len(write.events),
        added=len(added),
        requests=client.stats.requests - requests_before,
        seconds=round(time.monotonic() - started, 3),
    )
    bound.info("cycle_committed", **{k: v for k, v in report.__dict__.items() if k != "account_id"})
    return report
