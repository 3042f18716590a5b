"""A stateful fake Basecamp 2 account and the mutations a user could make in it.

Every mutation behaves like Basecamp: it bumps the item's `updated_at`, its project's
`updated_at` and the project's section summary (`todolists`, `topics`, ...), and appends
an activity-feed event unless `silent=True` (Basecamp does not promise events for trash
or archive, so tests need changes that leave no trace in the feed). Every mutation takes
`by=<person id>` (default: the account owner) and returns the id of what it created.
Every call, even one that changes nothing, appends one `SimChange` to `account.changes`
(what it did, to what, by whom, which feed event it appended, which fields moved from
what to what): the oracle for tests that check the poller accounted for each change.

All state is guarded by `account.lock` (re-entrant): mutations take it themselves; the
HTTP app holds it while it renders a response, so a server thread never sees a
half-made change.

Lookups used by the API raise `NotFound` (missing, trashed, or inside something trashed)
or `Moved` (the item lives in another project; carries the right project id).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from poller.simulator.content import ContentMutations
from poller.simulator.model import (
    Project,
    Todo,
    Todolist,
)
from poller.simulator.queries import AccountQueries
from poller.simulator.state import (
    UNSET,
    ListFilter,
    Moved,
    NotFound,
    TodoFilter,
    Unset,
    as_date,
    changed,
    locked,
    render_when,
)

__all__ = ["UNSET", "Account", "ListFilter", "Moved", "NotFound", "TodoFilter"]


class Account(ContentMutations, AccountQueries):
    """One Basecamp 2 account: people, projects and everything in them, plus the feed.

    `Account(account_id=999999999, *, name=..., clock=None, seed=0, offset="-05:00",
    owner_name="Demo Owner", owner_email="demo@example.com", era="current")`.
    `clock` returns aware datetimes (default real time; use `ManualClock` in tests).
    `offset` is how timestamps are rendered: `"-05:00"` (default), `"Z"`, `"+02:00"`...
    `seed` makes ids deterministic. The owner person is created at once (`owner_id`).
    `era="2013"` serves the shapes older accounts answered with: links are `url` only
    (no `app_url`) and feed events have no `eventable` (default `era="current"`).
    Content mutations (messages, comments, documents, uploads, calendar entries) come
    from `ContentMutations`; lookups and `snapshot()` from `AccountQueries`.
    """

    # ------------------------------------------------------------------ people, projects

    @locked
    def add_person(self, name: str, email: str | None = None, *, admin: bool = False) -> int:
        """Add a person to the account (no feed event: people are not in a project)."""
        person_id = self._make_person(name, email, admin=admin)
        at = self.people[person_id].created_at
        self._log("create", "Person", person_id, at=at, by=None, activity_id=None)
        return person_id

    @locked
    def trash_person(self, person_id: int) -> None:
        """Remove a person from the account: their GET answers 404, lists drop them."""
        person = self.people[person_id]
        now = self.now()
        fields = changed(trashed=(person.trashed, True))
        person.trashed = True
        person.updated_at = now
        self._log("trash", "Person", person_id, at=now, by=None, activity_id=None, fields=fields)

    @locked
    def create_project(
        self,
        name: str,
        description: str | None = None,
        *,
        client: bool = False,
        by: int | None = None,
        silent: bool = False,
    ) -> int:
        """Create a project; its creator gets access. Feed: 'created the project'."""
        who = self._by(by)
        now = self.now()
        project = Project(
            id=self.next_id(),
            name=name,
            description=description,
            creator_id=who,
            created_at=now,
            updated_at=now,
            is_client_project=client,
        )
        project.access_ids.append(who)
        project.sections["accesses"] = now
        self.projects[project.id] = project
        ev = ("Project", project.id, f"projects/{project.id}")
        activity = self._event(
            project, who, "created the project", name, ev, now=now, silent=silent
        )
        self._log_project("create", project, who, now, activity)
        return project.id

    def _log_project(
        self,
        op: str,
        project: Project,
        who: int,
        now: datetime,
        activity: int | None,
        fields: dict[str, tuple[Any, Any]] | None = None,
    ) -> None:
        self._log(
            op,
            "Project",
            project.id,
            at=now,
            by=who,
            activity_id=activity,
            fields=fields,
            project_id=project.id,
        )

    def _project_flag(
        self,
        project_id: int,
        op: str,
        attr: str,
        value: bool,
        action: str,
        by: int | None,
        silent: bool,
    ) -> None:
        with self.lock:
            who = self._by(by)
            project = self._live_project(project_id)
            now = self.now()
            fields = changed(**{attr: (getattr(project, attr), value)})
            setattr(project, attr, value)
            project.updated_at = now
            ev = ("Project", project.id, f"projects/{project.id}")
            activity = self._event(project, who, action, project.name, ev, now=now, silent=silent)
            self._log_project(op, project, who, now, activity, fields)

    def archive_project(
        self, project_id: int, *, by: int | None = None, silent: bool = False
    ) -> None:
        """Archive: leaves /projects.json, shows in /projects/archived.json."""
        action = "archived the project"
        self._project_flag(project_id, "archive", "archived", True, action, by, silent)

    def unarchive_project(
        self, project_id: int, *, by: int | None = None, silent: bool = False
    ) -> None:
        """Undo `archive_project`."""
        action = "unarchived the project"
        self._project_flag(project_id, "unarchive", "archived", False, action, by, silent)

    def trash_project(
        self, project_id: int, *, by: int | None = None, silent: bool = False
    ) -> None:
        """Trash: the project and everything in it answer 404 and leave every list."""
        action = "deleted the project"
        self._project_flag(project_id, "trash", "trashed", True, action, by, silent)

    @locked
    def update_project(
        self,
        project_id: int,
        *,
        name: str | None = None,
        description: str | Unset | None = UNSET,
        by: int | None = None,
        silent: bool = False,
    ) -> None:
        """Rename / re-describe a project. Feed: 'edited the project'."""
        who = self._by(by)
        project = self._live_project(project_id)
        now = self.now()
        old = (project.name, project.description)
        if name is not None:
            project.name = name
        if not isinstance(description, Unset):
            project.description = description
        fields = changed(name=(old[0], project.name), description=(old[1], project.description))
        project.updated_at = now
        ev = ("Project", project.id, f"projects/{project.id}")
        action = "edited the project"
        activity = self._event(project, who, action, project.name, ev, now=now, silent=silent)
        self._log_project("update", project, who, now, activity, fields)

    @locked
    def grant_access(
        self, project_id: int, person_id: int, *, by: int | None = None, silent: bool = False
    ) -> None:
        """Give a person access to a project (bumps the `accesses` section)."""
        who = self._by(by)
        project = self._live_project(project_id)
        person = self.people[person_id]
        now = self.now()
        activity = None
        fields = changed(access=(person_id in project.access_ids, True))
        if fields:
            project.access_ids.append(person_id)
            self._bump(project, now, "accesses")
            ev = ("Person", person.id, f"people/{person.slug}")
            action = f"gave {person.name} access to the project"
            activity = self._event(project, who, action, project.name, ev, now=now, silent=silent)
        self._log(
            "grant_access",
            "Person",
            person_id,
            at=now,
            by=who,
            activity_id=activity,
            fields=fields,
            project_id=project.id,
        )

    # ------------------------------------------------------------------ to-do lists

    @locked
    def create_todolist(
        self,
        project_id: int,
        name: str,
        description: str | None = None,
        *,
        private: bool = False,
        by: int | None = None,
        silent: bool = False,
    ) -> int:
        """Create a to-do list at the end of the project's lists."""
        who = self._by(by)
        project = self._live_project(project_id)
        now = self.now()
        todolist = Todolist(
            **self._new_item_common(project_id, who, now),
            name=name,
            description=description,
            private=private,
            position=len(project.item_ids["todolist"]) + 1,
        )
        self._add_item(project, todolist)
        self._touch(todolist, now)
        action = "created a to-do list<span>:</span>"
        activity = self._event(project, who, action, name, todolist, now=now, silent=silent)
        self._log_item("create", todolist, who, now, activity)
        return todolist.id

    @locked
    def update_todolist(
        self,
        list_id: int,
        *,
        name: str | None = None,
        description: str | Unset | None = UNSET,
        by: int | None = None,
        silent: bool = False,
    ) -> None:
        """Rename / re-describe a list."""
        who = self._by(by)
        todolist = self._typed(Todolist, list_id)
        now = self.now()
        old = (todolist.name, todolist.description)
        if name is not None:
            todolist.name = name
        if not isinstance(description, Unset):
            todolist.description = description
        fields = changed(name=(old[0], todolist.name), description=(old[1], todolist.description))
        project = self._touch(todolist, now)
        action = "edited a to-do list<span>:</span>"
        activity = self._event(
            project, who, action, todolist.name, todolist, now=now, silent=silent
        )
        self._log_item("update", todolist, who, now, activity, fields)

    @locked
    def trash_todolist(self, list_id: int, *, by: int | None = None, silent: bool = False) -> None:
        """Trash a list (its to-dos become unreachable with it)."""
        self._trash(self._typed(Todolist, list_id), by, silent, "a to-do list")

    @locked
    def move_todolist(
        self, list_id: int, to_project: int, *, by: int | None = None, silent: bool = False
    ) -> None:
        """Move a list and its to-dos to another project. Ids stay; old URLs answer 301."""
        who = self._by(by)
        todolist = self._typed(Todolist, list_id)
        source = self._live_project(todolist.project_id)
        target = self._live_project(to_project)
        now = self.now()
        source.item_ids["todolist"].remove(list_id)
        target.item_ids["todolist"].append(list_id)
        todolist.project_id = to_project
        todolist.position = len(target.item_ids["todolist"])
        for todo_id in todolist.todo_ids:
            self.todos[todo_id].project_id = to_project
        for topic_id in list(source.topic_ids):
            owner = self._topic_owner(topic_id)
            if owner is not None and owner.project_id == to_project:
                source.topic_ids.remove(topic_id)
                target.topic_ids.append(topic_id)
        self._bump(source, now, "todolists")
        self._touch(todolist, now)
        action = f"moved a to-do list from {source.name}<span>:</span>"
        activity = self._event(target, who, action, todolist.name, todolist, now=now, silent=silent)
        fields = changed(project_id=(source.id, target.id))
        self._log_item("move", todolist, who, now, activity, fields)

    # ------------------------------------------------------------------ to-dos

    @locked
    def create_todo(
        self,
        list_id: int,
        content: str,
        assignee: int | None = None,
        due_on: date | str | None = None,
        *,
        by: int | None = None,
        silent: bool = False,
    ) -> int:
        """Add an open to-do at the end of a list. Feed: 'added a to-do'."""
        who = self._by(by)
        todolist = self._typed(Todolist, list_id)
        project = self.projects[todolist.project_id]
        now = self.now()
        if assignee is not None and assignee not in self.people:
            raise KeyError(f"no person {assignee}")
        todo = Todo(
            **self._new_item_common(todolist.project_id, who, now),
            todolist_id=list_id,
            content=content,
            position=len(todolist.todo_ids) + 1,
            assignee_id=assignee,
            due_on=as_date(due_on),
            private=todolist.private,
        )
        self._add_item(project, todo)
        todolist.todo_ids.append(todo.id)
        if assignee is not None:
            self.assigned.setdefault(assignee, set()).add(todo.id)
        self._touch(todo, now)
        activity = self._event(project, who, "added a to-do", content, todo, now=now, silent=silent)
        self._log_item("create", todo, who, now, activity)
        return todo.id

    @locked
    def update_todo(
        self,
        todo_id: int,
        *,
        content: str | None = None,
        assignee: int | Unset | None = UNSET,
        due_on: date | str | Unset | None = UNSET,
        by: int | None = None,
        silent: bool = False,
    ) -> None:
        """Edit a to-do. `assignee=None` unassigns, `due_on=None` clears the date.

        Feed: 're-assigned a to-do to NAME' when only the assignee changed, 'changed the
        due date' when only the date changed, otherwise 'edited a to-do'.
        """
        who = self._by(by)
        todo = self._typed(Todo, todo_id)
        now = self.now()
        old = (todo.content, todo.assignee_id, todo.due_on)
        if content is not None and content != todo.content:
            todo.content = content
        if not isinstance(assignee, Unset) and assignee != todo.assignee_id:
            if todo.assignee_id is not None:
                self.assigned.get(todo.assignee_id, set()).discard(todo_id)
            if assignee is not None:
                self.assigned.setdefault(assignee, set()).add(todo_id)
            todo.assignee_id = assignee
        if not isinstance(due_on, Unset) and as_date(due_on) != todo.due_on:
            todo.due_on = as_date(due_on)
        fields = changed(
            content=(old[0], todo.content),
            assignee_id=(old[1], todo.assignee_id),
            due_on=(render_when(old[2], self.offset), render_when(todo.due_on, self.offset)),
        )
        project = self._touch(todo, now)
        if list(fields) == ["assignee_id"]:
            name = self.people[assignee].name if isinstance(assignee, int) else "nobody"
            action = f"re-assigned a to-do to {name}<span>:</span>"
        elif list(fields) == ["due_on"]:
            action = "changed the due date of a to-do<span>:</span>"
        else:
            action = "edited a to-do<span>:</span>"
        activity = self._event(project, who, action, todo.content, todo, now=now, silent=silent)
        self._log_item("update", todo, who, now, activity, fields)

    @locked
    def complete_todo(self, todo_id: int, *, by: int | None = None, silent: bool = False) -> None:
        """Complete a to-do (sets `completed_at` and `completer`)."""
        who = self._by(by)
        todo = self._typed(Todo, todo_id)
        now = self.now()
        fields = changed(completed=(todo.completed_at is not None, True))
        todo.completed_at, todo.completer_id = now, who
        project = self._touch(todo, now)
        action = "completed a to-do"
        activity = self._event(project, who, action, todo.content, todo, now=now, silent=silent)
        self._log_item("complete", todo, who, now, activity, fields)

    @locked
    def uncomplete_todo(self, todo_id: int, *, by: int | None = None, silent: bool = False) -> None:
        """Re-open a completed to-do."""
        who = self._by(by)
        todo = self._typed(Todo, todo_id)
        now = self.now()
        fields = changed(completed=(todo.completed_at is not None, False))
        todo.completed_at, todo.completer_id = None, None
        project = self._touch(todo, now)
        action = "re-opened a to-do"
        activity = self._event(project, who, action, todo.content, todo, now=now, silent=silent)
        self._log_item("uncomplete", todo, who, now, activity, fields)

    @locked
    def trash_todo(self, todo_id: int, *, by: int | None = None, silent: bool = False) -> None:
        """Trash a to-do: 404 on GET, only in the list's `todos/trashed.json`."""
        todo = self._typed(Todo, todo_id)
        self._trash(todo, by, silent, "a to-do")
        if todo.assignee_id is not None:
            self.assigned.get(todo.assignee_id, set()).discard(todo_id)

    # ------------------------------------------------------------------ bulk

    def populate(
        self,
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
        """Build many projects fast (see `populate.populate`); returns the project ids."""
        from poller.simulator.populate import populate

        return populate(
            self,
            projects=projects,
            todos_per_project=todos_per_project,
            todos_per_list=todos_per_list,
            messages=messages,
            documents=documents,
            calendar_events=calendar_events,
            comments_per_message=comments_per_message,
            people=people,
            events=events,
        )
