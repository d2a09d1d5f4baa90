"""What the controller holds between passes, so that a pass reads only what changed.

Called by ``runtime.controller`` once per pass. A ``Ledger`` holds every resource and the tasks of
every owner except the settled ones (Jobs the planner found over and untouched: ``Plan.settled``),
kept current from the store's change counter (``Store.changed_since``): each pass reads the rows written
since the last one, whoever wrote them (this controller's act, the CLI, GitOps, another server),
and the keys of the resources purged meanwhile. A settled Job's tasks are not held and not read;
anything about it that changes (its row: a retry, an apply, a delete; one of its tasks; one of its
containers seen on a node) unsettles it, and its tasks are read again, with one indexed query for
that owner, before the pass plans. So a pass reads what changed, and finished history is read
once, by the first pass of a controller (a restart, a takeover), which reads everything.

What the settled Jobs' tasks add to budget use and fair-share usage is carried in a
``SettledUsage`` (``engine.settled``), put in when a Job settles and taken out when it unsettles or
is purged, and given to the planner with the tasks: a budget or fair share costs a pass what
changed too, not the history.

Tasks are deleted only with their resource (``resources.purge_rows``): a purged resource's key
(a tombstone) drops its tasks here, and a resource found with a new uid (purged and made again
between two passes) drops those of the old one.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from ..engine.actions import Key
from ..engine.fairshare import QueuePolicy
from ..engine.settled import SettledUsage
from ..records import ResourceRecord, Snapshot, TaskRecord
from ..store import Marks, Store


def _task_order(t: TaskRecord) -> tuple:
    """The store's order of tasks (``TaskStore._select_tasks``), which the planner was always given."""
    return t.created_at, t.owner_kind.value, t.namespace, t.owner_name, t.index, t.attempt, t.id


class Ledger:
    """The store as the controller holds it between passes (see the module docstring)."""

    def __init__(self, store: Store, queue: QueuePolicy = QueuePolicy()):
        self.store = store
        self.rate = queue.rate  # the fair-share decay the settled usage is carried at
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next ``refresh`` reads the whole store (a new controller, a takeover,
        a pass that failed half-way)."""
        self.marks: Marks | None = None
        self.resources: dict[Key, ResourceRecord] = {}
        self._revs: dict[Key, int] = {}  # the rev each held resource was read at
        self.tasks: dict[str, TaskRecord] = {}
        self._by_owner: dict[Key, set[str]] = defaultdict(set)
        self.settled: set[Key] = set()
        self.usage = SettledUsage(self.rate)  # the settled Jobs' tasks' part of budget and fair-share usage
        self.rows_read = 0  # rows the last pass read: changes, owners unsettled, containers' tasks looked up

    def refresh(self) -> None:
        """Read what changed since the last refresh (everything, the first time) and take it in."""
        ch = self.store.changed_since(self.marks)
        self.rows_read = len(ch.resources) + len(ch.tasks) + len(ch.gone)
        unsettle: set[Key] = set()
        for rev, key in ch.gone:
            if self._revs.get(key, -1) < rev:  # else it was made again since, and read at that higher rev
                self.resources.pop(key, None)
                self._revs.pop(key, None)
                self.settled.discard(key)
                self.usage.remove(key)
            self._forget_tasks(key, keep_uid=self.resources[key].uid if key in self.resources else None)
        for rev, res in ch.resources:
            old = self.resources.get(res.key)
            if old is not None and old.uid != res.uid:  # purged and made again: its old tasks went with it
                self._forget_tasks(res.key, keep_uid=res.uid)
            self.resources[res.key], self._revs[res.key] = res, rev
            if res.key in self.settled:
                unsettle.add(res.key)
        for t in ch.tasks:
            if t.owner_key in self.settled:
                unsettle.add(t.owner_key)
            else:
                self._put(t)
        self.marks = ch.marks
        self._unsettle(unsettle)

    def see(self, snapshot: Snapshot) -> None:
        """Before planning: the task of each container seen that is not held (a settled Job's, or one
        the store does not know: an orphan). A settled owner's container unsettles it."""
        missing = [tid for tid in snapshot.by_task if tid not in self.tasks]
        if not missing:
            return
        found = self.store.tasks_by_id(missing)
        self.rows_read += len(found)
        unsettle = {t.owner_key for t in found if t.owner_key in self.settled}
        for t in found:
            if t.owner_key not in unsettle:
                self._put(t)
        self._unsettle(unsettle)

    def settle(self, keys: Iterable[Key]) -> None:
        """After a pass: stop holding the tasks of the Jobs it settled (none of them is active)."""
        for key in keys:
            if key in self.resources and key not in self.settled:
                self.settled.add(key)
                res = self.resources[key]
                self.usage.add(key, (self.tasks[tid] for tid in self._by_owner.get(key, ())),
                               res.model.spec.template.resources.cpus)
                self._forget_tasks(key, keep_uid=None)

    def planner_input(self) -> tuple[list[ResourceRecord], list[TaskRecord], frozenset[Key], SettledUsage]:
        """(resources, tasks, settled, settled_usage) for ``engine.plan``, in the store's orders."""
        resources = sorted(self.resources.values(), key=lambda r: (r.kind.value, r.namespace, r.name))
        return resources, sorted(self.tasks.values(), key=_task_order), frozenset(self.settled), self.usage

    def _unsettle(self, keys: set[Key]) -> None:
        """Hold these settled owners' tasks again, read with one query per owner."""
        if not keys:
            return
        self.settled -= keys
        for key in keys:
            self.usage.remove(key)
            self._forget_tasks(key, keep_uid=None)  # read afresh below
        loaded = self.store.tasks_of(sorted(keys, key=lambda k: (k[0].value, k[1], k[2])))
        self.rows_read += len(loaded)
        for t in loaded:
            self._put(t)

    def _put(self, t: TaskRecord) -> None:
        self.tasks[t.id] = t
        self._by_owner[t.owner_key].add(t.id)

    def _forget_tasks(self, key: Key, keep_uid: str | None) -> None:
        """Drop the held tasks of owner ``key``, except those of the incarnation ``keep_uid``."""
        ids = self._by_owner.get(key)
        if not ids:
            return
        for tid in list(ids):
            if keep_uid is None or self.tasks[tid].owner_uid != keep_uid:
                del self.tasks[tid]
                ids.discard(tid)
        if not ids:
            del self._by_owner[key]
