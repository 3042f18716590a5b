"""Which activity explains which change: one pure step, no I/O, no clock.

In: this cycle's new activities (the feed) and the changes the diff found (stored version
at the start of the cycle -> what Basecamp returned now). Out: one `Explained` per event
to build, in the order things happened.

The rules, per item (a comment's changes belong to the item it is on):

* Every activity gives exactly one entry, unless it is already reflected in what was
  stored before this cycle (its item was known and its `created_at` is not later than the
  stored `updated_at`: an earlier cycle reported that change; this is an activity edited
  inside Basecamp's 15-minute window, read again).
* An activity whose words name a transition (created, completed, re-opened, re-assigned,
  due date, commented, trashed, archived) takes the diff change of that kind, newest
  activity first: the final state belongs to the last activity that produced it. When the
  diff cannot tell (created then completed: the diff only says "created"; completed then
  re-opened: no diff at all; a comment since trashed), the activity still gives its own
  event of the kind it names, with the change inferred where it is a flag
  (`completed: [false, true]`), else `{}`.
* An activity that only says "edited" (or words we do not know) takes the newest of the
  changes Basecamp has no words of its own for (content, name, description, a move):
  one save that changed several such fields gives one event per kind, each carrying that
  activity. It never takes a completion, assignment, due date, creation or trash: those
  have their own words, so a silent one stays diff-only rather than borrow an editor.
  An older "edited" activity whose change a newer one overwrote, or one that changed
  nothing we track, is `<type>_activity`.
* A change no activity explains is a diff-only event: no activity's creator, summary or
  time is ever borrowed for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from poller.payloads import Activity, Record, kind_prefix, parse_ts

Key = tuple[str, int]

_COMMENT_ANCHOR = re.compile(r"#comment_(\d+)")

# Words in an activity's (undocumented, prose) action that name a transition, checked in
# order. Comments first: "deleted a comment on" is about a comment, not its item.
_HINTS: list[tuple[str, tuple[str, ...]]] = [
    ("uncompleted", ("re-open", "reopen", "uncomplet", "incomplete")),
    ("completed", ("complet",)),
    ("assignment_changed", ("assign",)),
    ("due_date_changed", ("due date", "due", "resched")),
    ("trashed", ("delet", "trash", "remov")),
    ("restored", ("restor", "undelet", "untrash")),
    ("unarchived", ("unarchiv",)),
    ("archived", ("archiv",)),
    ("created", ("creat", "add", "post", "upload", "start", "new")),
    ("changed", ("edit", "updat", "chang", "renam", "mov")),
]
_COMMENT_HINTS: list[tuple[str, tuple[str, ...]]] = [
    ("comment_trashed", ("delet", "trash", "remov")),
    ("comment_changed", ("edit", "updat", "chang")),
    ("comment_created", ("",)),
]
# a flag transition the activity names, when no diff is left to say it
_INFERRED: dict[str, dict[str, list[Any]]] = {
    "completed": {"completed": [False, True]},
    "uncompleted": {"completed": [True, False]},
    "trashed": {"trashed": [False, True]},
    "archived": {"archived": [False, True]},
    "unarchived": {"archived": [True, False]},
    "comment_trashed": {"trashed": [False, True]},
}
_GENERIC = (None, "changed")
# kinds an activity names in words of their own (never taken by a mere "edited")
_NAMED = frozenset(
    {
        "created",
        "trashed",
        "completed",
        "uncompleted",
        "assignment_changed",
        "due_date_changed",
        "archived",
        "unarchived",
    }
)


def _suffix_of(kind: str, prefix: str) -> str:
    if kind.startswith("comment_"):
        return "created"  # never generic: comments have their own words
    return kind[len(prefix) + 1 :] if kind.startswith(prefix + "_") else kind


# flags whose last named transition must agree with what Basecamp shows now:
# field -> kind suffix when it becomes true, when it becomes false
_FLAGS: dict[str, tuple[str, str]] = {
    "completed": ("completed", "uncompleted"),
    "archived": ("archived", "unarchived"),
}


_TAG = re.compile(r"<[^>]*>")
_OBJECT = re.compile(r" (?:to|from) ")


def _says(text: str, words: tuple[str, ...]) -> bool:
    return any(re.search(rf"(?:^|[\s-]){re.escape(w)}", text) for w in words)


def action_hint(action: str) -> str | None:
    """The kind suffix an activity's action words name, or None.

    Only Basecamp's own (lower-case) verb phrase counts: the text after " to " / " from "
    names people and projects ("re-assigned a to-do to Ada Newman", "moved a to-do list
    from Completed work"), so it is cut off, and capitalised names never match.
    """
    text = _OBJECT.split(_TAG.sub("", action), maxsplit=1)[0]
    if "comment" in text:
        for suffix, words in _COMMENT_HINTS:
            if not words[0] or _says(text, words):
                return suffix
    for suffix, words in _HINTS:
        if _says(text, words):
            return suffix
    return None


def comment_anchor(activity: Activity) -> int | None:
    """The comment an activity is about, from its `html_url` (`...#comment_123`)."""
    html_url = activity.raw.get("html_url") if isinstance(activity.raw, dict) else None
    m = _COMMENT_ANCHOR.search(html_url) if isinstance(html_url, str) else None
    return int(m.group(1)) if m else None


def activity_key(activity: Activity) -> Key:
    """The item an activity is about; an activity about nothing we can name is its own."""
    if activity.eventable_id is None:
        return ("Unknown", activity.id)
    return (activity.eventable_type, activity.eventable_id)


@dataclass(frozen=True)
class Observed:
    """One change the diff found."""

    key: Key  # the item it is about; for comment_* the commented item
    kind: str
    changes: dict[str, list[Any]]
    record: Record  # the record that changed (the comment, for comment_*)
    parent: Record | None = None  # for comment_*: the commented item
    discriminator: str = ""
    at: str | None = None  # when, per the payload

    @property
    def comment_id(self) -> int | None:
        return self.record.id if self.record.type == "Comment" else None


@dataclass(frozen=True)
class Explained:
    """One event to build: a change, the activity that explains it, or both."""

    kind: str
    key: Key
    changes: dict[str, list[Any]]
    discriminator: str
    observed: Observed | None = None
    activity: Activity | None = None
    when: str | None = None  # for a change neither an activity nor the diff carries

    @property
    def at(self) -> str | None:
        if self.activity is not None:
            return self.activity.created_at
        return self.observed.at if self.observed is not None else self.when


@dataclass(frozen=True)
class ItemState:
    """What is known of one item apart from its changes."""

    known: bool = False  # stored before this cycle
    updated_before: str | None = None  # its stored `updated_at` then
    fields: Mapping[str, Any] | None = None  # its fields as this cycle read them
    updated_at: str | None = None  # its `updated_at` as this cycle read it
    vanished: bool = False  # never stored, named by the feed, now 404 and not listed


def _later(when: str, than: str | None) -> bool:
    a, b = parse_ts(than), parse_ts(when)
    return a is None or b is None or b > a


def _order(activities: Iterable[Activity]) -> list[Activity]:
    def key(a: Activity) -> tuple[float, int]:
        ts = parse_ts(a.created_at)
        return (ts.timestamp() if ts else float("inf"), a.id)

    return sorted(activities, key=key)


@dataclass
class _Item:
    key: Key
    acts: list[Activity] = field(default_factory=list)
    obs: list[Observed] = field(default_factory=list)


def _claim_specific(
    prefix: str, hint: str, act: Activity, obs: Sequence[Observed], free: set[int]
) -> list[int]:
    if hint.startswith("comment_"):
        candidates = [j for j in sorted(free) if obs[j].kind == hint]
        anchor = comment_anchor(act)
        if anchor is not None:
            exact = [j for j in candidates if obs[j].comment_id == anchor]
            if exact or hint == "comment_created":
                # a comment named by the activity: that one, or none (it is gone again)
                return exact[:1] if exact else []
        same_time = [
            j for j in candidates if obs[j].record.meta.get("created_at") == act.created_at
        ]
        pick = same_time or candidates
        return pick[-1:]
    # a restore from the trash is the item's coming back: `<type>_created` from the diff
    want = f"{prefix}_{'created' if hint == 'restored' else hint}"
    return [j for j in sorted(free) if obs[j].kind == want][-1:]


def _match_item(item: _Item, state: ItemState) -> list[Explained]:
    out = _explain_item(item, state.known)
    out += _reconcile_flags(item.key, out, state)
    if state.vanished and item.acts and not any(e.kind.endswith("_trashed") for e in out):
        # the feed said it was made (or changed); Basecamp now answers 404 and a complete
        # listing lacks it: it was trashed again before the poll, without a word
        last = max(a.id for a in item.acts)
        kind = f"{kind_prefix(item.key[0])}_trashed"
        out.append(Explained(kind, item.key, {"trashed": [False, True]}, f"vanished:{last}"))
    return out


def _reconcile_flags(key: Key, out: list[Explained], state: ItemState) -> list[Explained]:
    """A flag flipped back without a word (completed by A in the feed, re-opened silently):
    the named transitions leave it other than Basecamp shows it now, so the change that
    put it there is one more diff-only event."""
    if not state.fields:
        return []
    prefix = kind_prefix(key[0])
    extra: list[Explained] = []
    for name, (on, off) in _FLAGS.items():
        implied = None
        for e in out:
            if name in e.changes:
                implied = e.changes[name][1]
        now = state.fields.get(name)
        if implied is None or now is None or bool(now) == bool(implied):
            continue
        kind = f"{prefix}_{on if now else off}"
        if kind.startswith("todo_") or key[0] == "Project":
            extra.append(
                Explained(
                    kind,
                    key,
                    {name: [implied, now]},
                    f"{state.updated_at}|{name}:{json.dumps(now)}",
                    when=state.updated_at,
                )
            )
    return extra


def _explain_item(item: _Item, known: bool) -> list[Explained]:
    prefix = kind_prefix(item.key[0])
    acts = _order(item.acts)
    obs = item.obs
    free = set(range(len(obs)))
    hints = [action_hint(a.action) for a in acts]
    taken: dict[int, list[int]] = {}
    # 1. activities naming a transition take that kind, newest first
    for i in reversed(range(len(acts))):
        hint = hints[i]
        if hint in _GENERIC:
            continue
        assert hint is not None
        got = _claim_specific(prefix, hint, acts[i], obs, free)
        free.difference_update(got)
        taken[i] = got
    # 2. the newest "edited" activity (then one with unknown words) takes what is left of
    #    the changes Basecamp has no words of their own for (content, names...): a due
    #    date, an assignment, a completion nobody's activity names stays diff-only rather
    #    than borrow an editor who may not have made it
    generic = [i for i in reversed(range(len(acts))) if hints[i] == "changed"]
    generic += [i for i in reversed(range(len(acts))) if hints[i] is None]
    rest = [j for j in sorted(free) if _suffix_of(obs[j].kind, prefix) not in _NAMED]
    if generic and rest:
        taken[generic[0]] = rest
        free.difference_update(rest)

    out: list[Explained] = []
    created = [j for j in sorted(free) if obs[j].kind.endswith("_created")]
    for j in created:  # a creation nobody's activity names comes before what follows it
        out.append(_diff_only(item.key, obs[j]))
        free.discard(j)
    for i, act in enumerate(acts):
        got = taken.get(i) or []
        for j in got:
            o = obs[j]
            out.append(Explained(o.kind, item.key, o.changes, o.discriminator, o, act))
        if got:
            continue
        hint = hints[i]
        if hint in _GENERIC or hint == "restored" or (hint == "created" and known):
            kind, changes = f"{prefix}_activity", {}
        elif hint is not None and hint.startswith("comment_"):
            kind, changes = hint, dict(_INFERRED.get(hint, {}))
        else:
            kind, changes = f"{prefix}_{hint}", dict(_INFERRED.get(str(hint), {}))
        out.append(Explained(kind, item.key, changes, f"activity:{act.id}", None, act))
    for j in sorted(free):
        out.append(_diff_only(item.key, obs[j]))
    return out


def explains(activity: Activity, observed: Sequence[Observed]) -> bool:
    """Would `activity`, read after the cycle's fetches, explain one of `observed` (the
    changes of its item the cycle saw, see `Detector.unexplained`)? By the rules `match`
    applies: one naming a transition must find that change, a mere "edited" one a change
    Basecamp has no words for. None may be later than every change seen (that one is
    about a change the fetches did not see yet: the next cycle's). A disappearance has
    no time."""
    seen = [t for t in (parse_ts(o.at) for o in observed) if t is not None]
    when = parse_ts(activity.created_at)
    if seen and (when is None or when > max(seen)):
        return False
    prefix = kind_prefix(activity_key(activity)[0])
    hint = action_hint(activity.action)
    if hint in _GENERIC:
        return any(_suffix_of(o.kind, prefix) not in _NAMED for o in observed)
    assert hint is not None
    return bool(_claim_specific(prefix, hint, activity, observed, set(range(len(observed)))))


def _diff_only(key: Key, o: Observed) -> Explained:
    return Explained(o.kind, key, o.changes, o.discriminator, o, None)


def match(
    activities: Iterable[Activity],
    observed: Iterable[Observed],
    states: Mapping[Key, ItemState],
) -> list[Explained]:
    """Explain every new activity and every observed change exactly once.

    `states`: what is known of each item the activities are about (see `ItemState`);
    an item missing there was not known before this cycle. The result is in the order
    things happened (stable for equal times: a creation first, then activities, then
    diff-only changes).
    """
    items: dict[Key, _Item] = {}
    unknown = ItemState()
    for act in activities:
        key = activity_key(act)
        state = states.get(key, unknown)
        if state.known and not _later(act.created_at, state.updated_before):
            continue  # an earlier cycle reported this change
        items.setdefault(key, _Item(key)).acts.append(act)
    for o in observed:
        items.setdefault(o.key, _Item(o.key)).obs.append(o)
    out: list[Explained] = []
    for key, item in items.items():
        out.extend(_match_item(item, states.get(key, unknown)))
    return sort_by_time(out)


def sort_by_time(explained: list[Explained]) -> list[Explained]:
    """Stable sort by when each thing happened; unknown times go last."""

    def key(e: Explained) -> float:
        ts = parse_ts(e.at)
        return ts.timestamp() if ts is not None else float("inf")

    return sorted(explained, key=key)
