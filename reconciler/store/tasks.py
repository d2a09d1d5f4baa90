"""Tasks: one row per attempt to run one container, kept as history, and their bounded output.

``TaskStore`` is mixed into ``Store`` (see the package): ``tasks``/``task``/``tasks_on`` read
records, ``task_counts`` counts them by namespace and phase, ``insert_task``/``update_task``/``task_state``/``save_output`` work inside the caller's
transaction (act records a pass's decisions and each outcome that way), ``output`` reads what a
finished container printed. The module functions count and delete a resource's tasks for
``resources`` (deletion, purge). Called by the controller, act and the CLI.

Reading every task row is the controller's hottest path (100,000 rows a pass on a long-lived
store), so ``tasks`` selects the columns in the record's field order and builds each record from
the positional row directly (``_task_from_tuple``); everything else reads rows by column name.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Iterable, NamedTuple

from ..errors import NotFound
from ..kinds import DEFAULT_NAMESPACE, Kind, TaskPhase
from ..records import TaskRecord
from .db import encode, fetch_one, gc_paused, upsert

LOG_LIMIT_BYTES = 1024 * 1024
ACTIVE = "phase IN ('Pending', 'Running')"  # TaskPhase.active, as SQL

# TaskRecord attribute -> column, where they differ.
_COLUMN_OF = {"index": "idx"}
_FIELDS = tuple(f.name for f in fields(TaskRecord))
_COLUMNS = ", ".join(_COLUMN_OF.get(name, name) for name in _FIELDS)  # selected in field order
_INSERT = f"INSERT INTO tasks ({_COLUMNS}) VALUES ({', '.join('?' * len(_FIELDS))})"


class TaskState(NamedTuple):
    """What act needs to know of a task when an outcome arrives."""

    phase: TaskPhase
    owner_kind: str
    owner_name: str
    namespace: str


class TaskStore:
    """Reads and writes of the ``tasks`` and ``task_logs`` tables (a mixin of ``Store``)."""

    def tasks(self, owner: tuple[Kind, str] | None = None, active_only: bool = False,
              namespace: str | None = None, phases: Iterable[TaskPhase] | None = None) -> list[TaskRecord]:
        """Tasks in creation order; only ``namespace``'s (None: every namespace's, unless ``owner``
        is given: then ``default``), only ``owner``'s (kind, name), only the active ones, only those
        in ``phases``, if asked."""
        params, where = [], []
        if phases is not None:
            phases = sorted(p.value for p in phases)
            where.append(f"phase IN ({', '.join('?' * len(phases))})" if phases else "1 = 0")
            params += phases
        if owner is not None:
            namespace = namespace or DEFAULT_NAMESPACE
            where.append("owner_kind = ? AND owner_name = ?")
            params += [owner[0].value, owner[1]]
        if namespace is not None:
            where.append("namespace = ?")
            params.append(namespace)
        if active_only:
            where.append(ACTIVE)
        return self._select_tasks(where, params)

    def task(self, task_id: str) -> TaskRecord:
        rows = self._select_tasks(["id = ?"], [task_id])
        if not rows:
            raise NotFound.task(task_id)
        return rows[0]

    def task_counts(self) -> dict[tuple[str, str], int]:
        """How many tasks (history included) each namespace has in each phase: (namespace, phase) -> n."""
        rows = self._tuples("SELECT namespace, phase, count(*) FROM tasks GROUP BY namespace, phase")
        return {(namespace, phase): n for namespace, phase, n in rows}

    def tasks_on(self, node: str) -> list[TaskRecord]:
        """Active tasks bound to a node."""
        return self._select_tasks(["node = ?", ACTIVE], [node])

    def _select_tasks(self, where: list[str], params: list) -> list[TaskRecord]:
        return self._read_tasks(_COLUMNS, where, params)[0]

    def _select_tasks_with_rev(self, where: list[str], params: list) -> tuple[list[TaskRecord], int]:
        """The tasks, and the highest change-counter rev among them (0: none), read in one statement."""
        return self._read_tasks(_COLUMNS + ", rev", where, params)

    def _read_tasks_by_rev(self, since: int, limit: int) -> tuple[list[TaskRecord], int]:
        """At most ``limit`` tasks above rev ``since``, in rev order, and the highest rev among them."""
        return self._read_tasks(_COLUMNS + ", rev", ["rev > ?"], [since, limit], order=" ORDER BY rev LIMIT ?")

    def _read_tasks(self, columns: str, where: list[str], params: list,
                    order: str = "") -> tuple[list[TaskRecord], int]:
        sql = f"SELECT {columns} FROM tasks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with gc_paused():
            # Tasks created in one pass share created_at: then by owner, index and attempt as
            # numbers (by id text, job-x-10-1 would come before job-x-2-1).
            order = order or " ORDER BY created_at, owner_kind, namespace, owner_name, idx, attempt, id"
            rows = self._tuples(sql + order, params)
            rev = max((r[_REV_AT] for r in rows), default=0) if columns != _COLUMNS else 0
            return [_task_from_tuple(r) for r in rows], rev  # zip() in _task_from_tuple leaves a trailing rev out

    def insert_task(self, db, task: TaskRecord) -> None:
        db.execute(_INSERT, [encode(getattr(task, name)) for name in _FIELDS])

    def update_task(self, db, task_id: str, **changes) -> None:
        """Set the given TaskRecord fields of one task (the caller's transaction)."""
        cols = {_COLUMN_OF.get(k, k): encode(v) for k, v in changes.items()}
        sets = ", ".join(f"{c} = ?" for c in cols)
        db.execute(f"UPDATE tasks SET {sets} WHERE id = ?", [*cols.values(), task_id])

    def task_state(self, db, task_id: str) -> TaskState | None:
        """The task's phase and owner (None: purged meanwhile), read in the caller's transaction."""
        row = fetch_one(db, "SELECT phase, owner_kind, owner_name, namespace FROM tasks WHERE id = ?", [task_id])
        return None if row is None else TaskState(TaskPhase(row["phase"]), row["owner_kind"], row["owner_name"],
                                                  row["namespace"])

    def save_output(self, db, task_id: str, output: bytes, truncated: bool) -> None:
        """Keep a container's output, at most ``LOG_LIMIT_BYTES`` of its tail."""
        if len(output) > LOG_LIMIT_BYTES:
            output, truncated = output[-LOG_LIMIT_BYTES:], True
        upsert(db, "task_logs", {"task_id": task_id, "output": output, "truncated": int(truncated)}, key="task_id")

    def output(self, task_id: str) -> tuple[bytes, bool] | None:
        """(output, whether it was cut) of a task whose container was collected, else None."""
        rows = self._rows("SELECT output, truncated FROM task_logs WHERE task_id = ?", [task_id])
        return (bytes(rows[0]["output"]), bool(rows[0]["truncated"])) if rows else None


# -- a resource's tasks, for resources.py ----------------------------------------------------


def count_live(db, kind: str, namespace: str, name: str, stopped_after: float) -> tuple[int, int]:
    """(how many of the resource's tasks may still have a container running, how many of those
    were placed on a node): the active ones, and those stopped after ``stopped_after`` (within
    their grace period) whose container was not collected (no exit code)."""
    row = fetch_one(
        db,
        "SELECT count(*) AS live, count(node) AS placed FROM tasks WHERE owner_kind=? AND namespace=? AND "
        f"owner_name=? AND ({ACTIVE} OR (container_id IS NOT NULL AND finished_at IS NULL) "
        " OR (container_id IS NOT NULL AND exit_code IS NULL AND finished_at > ?))",
        [kind, namespace, name, stopped_after],
    )
    return row["live"], row["placed"]


def count_active_on(db, node: str) -> int:
    return fetch_one(db, f"SELECT count(*) AS n FROM tasks WHERE node=? AND {ACTIVE}", [node])["n"]


def delete_tasks_of(db, kind: str, namespace: str, name: str) -> None:
    """Forget a resource's tasks and their output."""
    owner = "owner_kind=? AND namespace=? AND owner_name=?"
    db.execute(f"DELETE FROM task_logs WHERE task_id IN (SELECT id FROM tasks WHERE {owner})", [kind, namespace, name])
    db.execute(f"DELETE FROM tasks WHERE {owner}", [kind, namespace, name])


# -- the hot reader: positional rows straight into records ---------------------------------------

_KINDS = {k.value: k for k in Kind}
_PHASES = {p.value: p for p in TaskPhase}
# Positions, in a row selected as _COLUMNS, of the columns that need converting.
_LABELS_AT, _KIND_AT, _PHASE_AT, _OOM_AT = map(_FIELDS.index, ("labels", "owner_kind", "phase", "oom_killed"))
_REV_AT = len(_FIELDS)  # where a trailing `rev` column lands (``_select_tasks_with_rev``)
_new_task = object.__new__


def _task_from_tuple(row: tuple) -> TaskRecord:
    values = list(row)
    values[_KIND_AT] = _KINDS[values[_KIND_AT]]  # dict lookups: Enum(value) is slow at 100,000 rows
    values[_PHASE_AT] = _PHASES[values[_PHASE_AT]]
    values[_OOM_AT] = bool(values[_OOM_AT])
    labels = values[_LABELS_AT]
    values[_LABELS_AT] = json.loads(labels) if labels != "{}" else {}
    # The frozen dataclass's __init__ sets each field through object.__setattr__; filling __dict__
    # at once makes the same record about twice as fast, which counts at 100,000 rows a pass.
    record = _new_task(TaskRecord)
    record.__dict__.update(zip(_FIELDS, values))
    return record
