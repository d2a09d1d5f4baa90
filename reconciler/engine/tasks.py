"""What Jobs and Services do with their tasks alike: stop one, make the next attempt, set a status. Pure.

Called by ``jobs``, ``services`` and ``plan`` (deletion), and by ``matching`` and ``placement``
for task changes. A new attempt is delayed by the exponential backoff its index's recent failures
earned; what counts as a failure is the caller's rule (a Job's failed attempts since its last
retry, a Service's short runs). Every change goes into the ``Plan``; the ``TaskRecord`` returned
is the task as the rest of this pass sees it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Callable, Iterable

from .actions import STOP_GRACE_SECONDS, Event, Plan, Remove
from ..kinds import JobPhase, Kind, TaskPhase, TaskReason
from ..records import ResourceRecord, Snapshot, TaskRecord
from ..spec.models import Backoff, template_hash

# At most this many tasks of one Job or Service wait for a node at once; more are created as these
# are placed (as Kubernetes creates a controller's pods in batches). A pass so costs what is active
# and what changed, never the declared `completions`, `parallelism` or `replicas`.
MAX_UNPLACED = 100

CountsAsFailure = Callable[[TaskRecord], bool]


def set_task(p: Plan, t: TaskRecord, **changes) -> TaskRecord:
    """Record ``changes`` to task ``t`` and return the task as they leave it."""
    p.update(t.id, **changes)
    return replace(t, **changes)


def stop_task(p: Plan, t: TaskRecord, snapshot: Snapshot, now: float, reason: TaskReason, message: str,
              grace: float = STOP_GRACE_SECONDS, phase: TaskPhase = TaskPhase.STOPPED) -> TaskRecord:
    """End the task (Stopped, or Failed for a timeout) and stop its container, keeping its output."""
    done = set_task(p, t, phase=phase, reason=reason, message=message, finished_at=now)
    seen = snapshot.by_task.get(t.id)
    if seen:
        c = seen.container
        p.removals.append(Remove(seen.node, c.id, t.id, message, grace=0 if c.finished else grace, keep_output=True))
    elif t.container_id and t.node:
        p.removals.append(Remove(t.node, t.container_id, t.id, message, grace=grace, keep_output=True))
    return done


def unplaced(tasks: Iterable[TaskRecord]) -> int:
    """Tasks waiting for a node (in a backoff or not): bounded by ``MAX_UNPLACED`` per resource."""
    return sum(1 for t in tasks if t.phase is TaskPhase.PENDING and t.node is None)


class Attempts:
    """One resource's attempts by index, built once per pass, so the next attempt of an index
    looks only at that index's history (not at every task of the resource)."""

    def __init__(self, tasks: list[TaskRecord]):
        self._by_index: dict[int, dict[str, TaskRecord]] = defaultdict(dict)
        for t in tasks:
            self._by_index[t.index][t.id] = t

    def put(self, t: TaskRecord) -> None:
        """Add a new attempt, or replace one this pass changed (stopped, re-templated)."""
        self._by_index[t.index][t.id] = t

    def of(self, index: int) -> list[TaskRecord]:
        return list(self._by_index[index].values()) if index in self._by_index else []

    def all(self) -> Iterable[TaskRecord]:
        return (t for ts in self._by_index.values() for t in ts.values())


def failure_streak(attempts: list[TaskRecord], counts_as_failure: CountsAsFailure) -> int:
    """Consecutive recent failures among one index's ``attempts`` (a live attempt, a success or a
    healthy run ends the streak)."""
    failures = 0
    for t in sorted(attempts, key=lambda t: t.attempt, reverse=True):
        if t.active or not counts_as_failure(t):
            break
        failures += 1
    return failures


def new_task(res: ResourceRecord, index: int, attempts: list[TaskRecord], now: float,
             backoff: Backoff, counts_as_failure: CountsAsFailure, template: str = "") -> TaskRecord:
    """The next attempt for ``index`` (``attempts``: that index's earlier ones), delayed by the
    backoff its recent failures earned."""
    history = sorted(attempts, key=lambda t: t.attempt)
    failures = failure_streak(history, counts_as_failure)
    attempt = history[-1].attempt + 1 if history else 1
    not_before, reason, message = now, "", ""
    if failures:
        delay = backoff.delay(failures)
        not_before = (history[-1].finished_at or now) + delay
        if not_before > now:
            reason = TaskReason.BACK_OFF
            message = f"attempt {attempt} after {failures} failure(s); waiting {delay:g}s"
    return TaskRecord(
        id=f"{res.name}-{res.uid[:5]}-{index}-{attempt}", owner_kind=res.kind, owner_name=res.name,
        namespace=res.namespace, owner_uid=res.uid, index=index, attempt=attempt, created_at=now, not_before=not_before,
        reason=reason, message=message, generation=res.generation, labels=dict(res.labels),
        template_hash=template or template_hash(res.model.spec),
    )


def set_status(p: Plan, res: ResourceRecord, status: dict) -> None:
    """Record a resource's new status (only if it changed); a Job's end is also an event."""
    if status == res.status:
        return
    p.statuses.append((res.kind, res.namespace, res.name, status))
    old, phase = res.status.get("phase"), status.get("phase")
    if res.kind is Kind.JOB and phase != old and phase in (JobPhase.COMPLETE, JobPhase.FAILED):
        kind = "Normal" if phase == JobPhase.COMPLETE else "Warning"
        text = status["message"] or f"{status['succeeded']} completion(s) succeeded"
        p.events.append(event(res, status["reason"] or phase, text, type=kind))


def event(res: ResourceRecord, reason: str, message: str, type: str = "Normal", task_id: str | None = None) -> Event:
    """An event about resource ``res`` (and one of its tasks)."""
    return Event(res.kind.value, res.name, reason, message, type, task_id, res.namespace)
