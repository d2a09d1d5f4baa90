"""What changed in the store since a controller's last pass: the reader of the change counter.

``ChangeStore`` is mixed into ``Store``. Every insert or update of a task or resource row sets its
``rev`` to the next value of one store-wide counter, and every purged resource leaves its key in
``resources_gone`` under a rev of its own (triggers made by the ``change counter`` migration, so
no writer can forget). Writes hold the store's write lock, so revs are handed out in commit order:
a read sees every rev up to some value and none above it. A reader that keeps, per table, the
highest rev it was given (``Marks``) and next asks for the rows above it misses nothing, even
though each table is read in its own statement. Called by ``runtime.ledger`` (the controller's
copy of what it needs between passes) through ``changed_since``, and by the API's list routes
through ``current_rev`` (the counter's value now: a rendered list is reused while it stays the same).
(``Connection.changes`` is the other reader, for a poller such as ``get -w``: a version that moves
on any commit, no rows.)
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

from ..kinds import Kind
from ..records import ResourceRecord, TaskRecord
from .resources import resource_record

Key = tuple[Kind, str, str]  # (kind, namespace, name)
CHANGES_PAGE = 5000  # changed tasks read at a time


class Marks(NamedTuple):
    """The highest rev read so far from each table."""

    resources: int = 0
    tasks: int = 0
    gone: int = 0


class Changes(NamedTuple):
    """Rows changed above ``since`` (everything when ``since`` was None), and the marks to ask from next."""

    marks: Marks
    resources: list[tuple[int, ResourceRecord]]  # (rev, record) of each resource inserted or updated
    tasks: list[TaskRecord]  # each task inserted or updated
    gone: list[tuple[int, Key]]  # (rev, key) of each resource purged (a task goes only with its resource)


class ChangeStore:
    """Reads by change counter (a mixin of ``Store``)."""

    def changed_since(self, since: Marks | None = None) -> Changes:
        """What changed above ``since``; None: every resource and task (a controller's first pass)."""
        base = since or Marks()
        # Tombstones are read first: one that falls between this read and the resources' is read
        # next time and then ignored for a resource held at a higher rev (re-created meanwhile).
        if since is None:
            gone, gone_mark = [], self._rows("SELECT coalesce(max(rev), 0) AS rev FROM resources_gone")[0]["rev"]
        else:
            gone_rows = self._rows("SELECT rev, kind, namespace, name FROM resources_gone WHERE rev > ? ORDER BY rev",
                                   [base.gone])
            gone = [(r["rev"], (Kind(r["kind"]), r["namespace"], r["name"])) for r in gone_rows]
            gone_mark = max((rev for rev, _ in gone), default=base.gone)
        rows = self._rows("SELECT * FROM resources WHERE rev > ? ORDER BY rev", [base.resources]) \
            if since is not None else self._rows("SELECT * FROM resources ORDER BY rev", [])
        resources = [(row["rev"], resource_record(row)) for row in rows]
        tasks, task_mark = self._changed_tasks(base.tasks) if since is not None else self._select_tasks_with_rev([], [])
        marks = Marks(max((rev for rev, _ in resources), default=base.resources), max(task_mark, base.tasks),
                      gone_mark)
        return Changes(marks, resources, tasks, gone)

    def current_rev(self) -> int:
        """The highest rev of any task, resource or tombstone: it moves with every commit that inserts,
        updates or deletes a task or resource row (tasks go only with their resource, whose purge
        leaves a tombstone), and never otherwise. Three index look-ups, no scan. Read before the rows
        it stands for, what they show is at least as new as it (revs follow commit order). Both
        backends alike (PostgreSQL's sequence hands out values before their commit, so its own
        ``last_value`` could name a write not yet visible)."""
        return self._tuples(
            "SELECT coalesce(max(rev), 0) FROM (SELECT max(rev) AS rev FROM tasks UNION ALL SELECT max(rev) FROM "
            "resources UNION ALL SELECT max(rev) FROM resources_gone) AS revs")[0][0]

    def _changed_tasks(self, since: int) -> tuple[list[TaskRecord], int]:
        """Tasks above rev ``since``, in pages in rev order: ``ORDER BY rev LIMIT`` walks the rev index
        on both backends, whatever PostgreSQL's statistics say of ``rev > ?`` (a fresh table's guess, a
        third of its rows, would otherwise make it scan all of them)."""
        out: list[TaskRecord] = []
        while True:
            page, mark = self._read_tasks_by_rev(since, CHANGES_PAGE)
            out += page
            if len(page) < CHANGES_PAGE:
                return out, max(mark, since)
            since = mark

    def tasks_of(self, owners: Iterable[Key]) -> list[TaskRecord]:
        """Every task of each owner (one indexed query per owner)."""
        out: list[TaskRecord] = []
        for kind, namespace, name in owners:
            out += self.tasks((kind, name), namespace=namespace)
        return out

    def tasks_by_id(self, ids: Iterable[str]) -> list[TaskRecord]:
        """The tasks of these ids that the store has (the others are unknown to it)."""
        ids = sorted(set(ids))
        out: list[TaskRecord] = []
        for start in range(0, len(ids), 500):  # well under both backends' limits on parameters
            chunk = ids[start:start + 500]
            out += self._select_tasks([f"id IN ({', '.join('?' * len(chunk))})"], chunk)
        return out
