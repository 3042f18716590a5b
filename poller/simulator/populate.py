"""Bulk builders: big accounts for benchmarks and a small demo account for humans."""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from poller.simulator.account import Account

_WORDS = (
    "design",
    "review",
    "ship",
    "test",
    "write",
    "plan",
    "call",
    "budget",
    "deploy",
    "draft",
    "fix",
    "polish",
    "launch",
    "sketch",
    "invoice",
    "order",
    "print",
    "check",
    "update",
)


def _phrase(n: int, words: int = 3) -> str:
    picked = [_WORDS[(n * 7 + i * 13) % len(_WORDS)] for i in range(words)]
    return " ".join(picked).capitalize() + f" #{n}"


def populate(
    account: Account,
    *,
    projects: int = 3,
    todos_per_project: int = 20,
    todos_per_list: int = 50,
    messages: int = 2,
    documents: int = 1,
    calendar_events: int = 1,
    comments_per_message: int = 1,
    people: int = 3,
    events: bool = False,
) -> list[int]:
    """Add `projects` projects, each with `todos_per_project` to-dos split into lists of
    `todos_per_list`, plus `messages`, `documents` and `calendar_events` per project.

    Every 3rd to-do is completed, every 4th assigned, every 5th has a due date. Feed events
    are recorded only with `events=True` (default off: a populated account is a baseline,
    and a quiet feed keeps builds fast). 20 projects x 500 to-dos build in well under a
    second or two. Returns the new project ids.
    """
    silent = not events
    with account.lock:
        staff = [account.add_person(f"Person {i + 1}") for i in range(people)]
        today = account.now().date()
        made: list[int] = []
        counter = 0
        for p in range(projects):
            project = account.create_project(f"Project {p + 1}", _phrase(p), silent=silent)
            made.append(project)
            for person in staff:
                account.grant_access(project, person, silent=silent)
            list_id = 0
            for t in range(todos_per_project):
                if t % todos_per_list == 0:
                    name = f"List {t // todos_per_list + 1}"
                    list_id = account.create_todolist(project, name, silent=silent)
                counter += 1
                assignee = staff[counter % len(staff)] if staff and counter % 4 == 0 else None
                due = today + timedelta(days=counter % 30) if counter % 5 == 0 else None
                todo = account.create_todo(
                    list_id, _phrase(counter), assignee=assignee, due_on=due, silent=silent
                )
                if counter % 3 == 0:
                    account.complete_todo(todo, silent=silent)
            for m in range(messages):
                message = account.create_message(
                    project, f"Message {m + 1}", _phrase(m, 8), silent=silent
                )
                for c in range(comments_per_message):
                    account.add_comment("message", message, _phrase(c, 5), silent=silent)
            for d in range(documents):
                account.create_document(project, f"Document {d + 1}", _phrase(d, 10), silent=silent)
            for e in range(calendar_events):
                account.create_calendar_event(
                    project, f"Meeting {e + 1}", today + timedelta(days=e + 1), silent=silent
                )
        return made


def demo_account(
    account_id: int = 999_999_999, *, owner_email: str = "demo@example.com"
) -> Account:
    """A small, lively account for `bcx-poller simulate`: 2 active projects and 1 archived,
    4 people, lists, to-dos (open, done, assigned, due), messages with comments, a
    document, an upload and calendar entries, all with feed events.
    """
    from poller.simulator.account import Account

    account = Account(account_id, name="Demo Co.", owner_name="Demo Owner", owner_email=owner_email)
    jane = account.add_person("Jane Doe", "jane@example.com")
    sam = account.add_person("Sam O'Neil", "sam@example.com")
    ana = account.add_person("Ana Lima", "ana@example.com", admin=True)
    launch = account.create_project("Website launch", "Everything for the new site")
    ops = account.create_project("Operations", None)
    old = account.create_project("Last year's plans", "Kept for reference")
    for project in (launch, ops):
        for person in (jane, sam, ana):
            account.grant_access(project, person)
    account.archive_project(old)

    content = account.create_todolist(launch, "Content", "Pages and copy")
    tech = account.create_todolist(launch, "Tech")
    account.create_todo(content, "Write the About page", assignee=jane, due_on=date.today())
    done = account.create_todo(content, "Collect product photos", assignee=sam)
    account.complete_todo(done, by=sam)
    account.create_todo(content, "Proof-read the pricing page")
    dns = account.create_todo(tech, "Switch DNS", assignee=ana)
    account.add_comment("todo", dns, "Waiting for the registrar's OK.", by=ana)
    account.create_todo(tech, "Set up TLS certificates", due_on=date.today() + timedelta(days=7))
    chores = account.create_todolist(ops, "Weekly chores")
    account.create_todo(chores, "Back up the shared drive", assignee=jane)

    kickoff = account.create_message(launch, "Kick-off", "Launch is planned for next month.")
    account.add_comment("message", kickoff, "Sounds good, I'll be there!", by=jane)
    account.add_comment("message", kickoff, "Count me in.", by=sam)
    account.create_message(ops, "New supplier", "We switch paper suppliers in March.")
    account.create_document(launch, "Style guide", "Use <b>short</b> sentences.")
    account.create_upload(
        launch, "The new logo", "logo.png", content_type="image/png", byte_size=48213
    )
    account.create_calendar_event(launch, "Launch day", date.today() + timedelta(days=30))
    review = account.create_calendar_event(
        ops, "Quarterly review", date.today() + timedelta(days=3), description="Room 2"
    )
    account.add_comment("calendar_event", review, "Can we move it to the afternoon?", by=ana)
    return account
