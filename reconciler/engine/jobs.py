"""What a Job needs this pass: run its completions, retry failures, end when it is over. Pure.

Called by ``plan`` for every Job that is not being deleted, with the Job's tasks as this pass
sees them. A Job keeps up to ``parallelism`` tasks active until ``completions`` indexes
succeeded, retrying failures with exponential backoff until more than ``backoffLimit`` attempts
failed. The steps: move tasks off draining nodes; then either the Job has an end (complete,
failed, past ``activeDeadlineSeconds``, suspended) and its active tasks are stopped, or it runs
on (stop attempts no longer needed, time out long ones, fill free indexes); then its status, and
its purge once ``ttlSecondsAfterFinished`` passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import NamedTuple

from .actions import Plan
from .room import Room
from .tasks import Attempts, event, new_task, set_status, stop_task, unplaced
from ..kinds import JobPhase, JobReason, TaskPhase, TaskReason
from ..records import ResourceRecord, Snapshot, TaskRecord


def reconcile_job(p: Plan, res: ResourceRecord, tasks: list[TaskRecord], snapshot: Snapshot, now: float,
                  draining: dict[str, float], room: Room) -> None:
    """``draining``: node -> drain deadline, for nodes whose tasks must move off; ``room``: how many
    of its tasks may wait for a node (``room.Room``), told how many do once the pass made its own."""
    job = _JobPass.of(p, res, _drain(p, res, tasks, snapshot, now, draining), snapshot, now)
    end = job.ending()
    if end is not None:
        for t in job.active:
            stop_task(p, t, snapshot, now, end.stop_reason, end.stop_message, job.grace)
        job.active = []
        phase, reason, message = end.phase, end.reason, end.message
    else:
        job.run_on(room)
        phase, reason, message = job.running_phase(), "", ""
    status = job.status(phase, reason, message)
    set_status(p, res, status)
    job.expire(status["completionTime"])


def _drain(p: Plan, res: ResourceRecord, tasks: list[TaskRecord], snapshot: Snapshot, now: float,
           draining: dict[str, float]) -> list[TaskRecord]:
    """Job tasks on a draining node may finish until its deadline; then they are moved (no retry spent)."""
    out = []
    for t in tasks:
        deadline = draining.get(t.node) if t.active and t.node else None
        if deadline is not None:
            if now >= deadline:
                t = stop_task(p, t, snapshot, now, TaskReason.DRAINED,
                              f"node {t.node} was drained; rescheduled elsewhere",
                              res.model.spec.terminationGracePeriodSeconds, phase=TaskPhase.LOST)
                p.events.append(event(res, "Drained", f"{t.id} moved off draining node {t.node}", task_id=t.id))
            else:
                p.wake_at(deadline)
        out.append(t)
    return out


class _Ending(NamedTuple):
    """How a Job ends (or pauses): its status, and why its active tasks are stopped."""

    phase: str
    reason: str
    message: str
    stop_reason: TaskReason
    stop_message: str


@dataclass
class _JobPass:
    """One Job in one pass: its tasks sorted by what they count for."""

    p: Plan
    res: ResourceRecord
    tasks: list[TaskRecord]
    snapshot: Snapshot
    now: float
    succeeded: set[int]  # indexes with a successful attempt
    failed: list[TaskRecord]  # failed attempts since the last `brokerctl retry`
    active: list[TaskRecord]
    start: float | None  # first start since the last retry: activeDeadlineSeconds counts from it

    @classmethod
    def of(cls, p: Plan, res: ResourceRecord, tasks: list[TaskRecord], snapshot: Snapshot, now: float) -> "_JobPass":
        epoch = res.retried_at or 0.0  # attempts created before a retry are history, not budget
        counted = [t for t in tasks if t.created_at >= epoch]
        return cls(p, res, tasks, snapshot, now,
                   succeeded={t.index for t in tasks if t.phase is TaskPhase.SUCCEEDED},
                   failed=[t for t in counted if t.phase is TaskPhase.FAILED],
                   active=[t for t in tasks if t.active],
                   start=min((t.started_at for t in counted if t.started_at), default=None))

    @property
    def spec(self):
        return self.res.model.spec

    @property
    def grace(self) -> float:
        return self.spec.terminationGracePeriodSeconds

    @property
    def deadline(self) -> float | None:
        limit = self.spec.activeDeadlineSeconds
        return self.start + limit if self.start is not None and limit else None

    def ending(self) -> _Ending | None:
        """Complete, failed, past its deadline or suspended (None: it runs on)."""
        spec, ref = self.spec, self.res.ref
        if len(self.succeeded) >= spec.completions:  # an attempt still active is not needed any more
            return _Ending(JobPhase.COMPLETE, "", "", TaskReason.JOB_COMPLETE, f"{ref} is complete")
        if len(self.failed) > spec.backoffLimit:
            last = max(self.failed, key=lambda t: (t.finished_at or 0, t.id))
            message = (f"{len(self.failed)} failed attempts, backoffLimit {spec.backoffLimit}; last: task {last.id} "
                       f"{_exit_text(last)}")
            return _Ending(JobPhase.FAILED, JobReason.BACKOFF_LIMIT_EXCEEDED, message, TaskReason.JOB_FAILED, message)
        if self.deadline is not None and self.now >= self.deadline:
            message = (f"activeDeadlineSeconds {spec.activeDeadlineSeconds:g} passed; "
                       f"{len(self.succeeded)}/{spec.completions} succeeded")
            return _Ending(JobPhase.FAILED, JobReason.DEADLINE_EXCEEDED, message, TaskReason.DEADLINE_EXCEEDED, message)
        if spec.suspend:
            return _Ending(self.res.status.get("phase", JobPhase.PENDING), JobReason.SUSPENDED,
                           "suspend: true; set it to false to resume", TaskReason.SUSPENDED, f"{ref} is suspended")
        return None

    def run_on(self, room: Room) -> None:
        """Not over: stop attempts no longer needed, time out long ones, fill free indexes."""
        if self.deadline is not None:
            self.p.wake_at(self.deadline)
        self._stop_superseded()
        self._time_out()
        self._fill(room)

    def _stop_superseded(self) -> None:
        """An index that succeeded needs no other attempt (e.g. a lost one finished after all)."""
        for t in [t for t in self.active if t.index in self.succeeded]:
            stop_task(self.p, t, self.snapshot, self.now, TaskReason.SUPERSEDED, f"index {t.index} already succeeded",
                      self.grace)
            self.active.remove(t)

    def _time_out(self) -> None:
        """Fail (and stop) running attempts older than ``timeoutSeconds``."""
        limit = self.spec.timeoutSeconds
        if not limit:
            return
        keep = []
        for t in self.active:
            if t.phase is TaskPhase.RUNNING and t.started_at is not None:
                if self.now >= t.started_at + limit:
                    stop_task(self.p, t, self.snapshot, self.now, TaskReason.TIMEOUT,
                              f"ran longer than timeoutSeconds {limit:g}", self.grace, phase=TaskPhase.FAILED)
                    self.p.events.append(event(self.res, "Timeout", f"{t.id} ran longer than {limit:g}s; stopped",
                                               "Warning", t.id))
                    continue
                self.p.wake_at(t.started_at + limit)
            keep.append(t)
        self.active = keep

    def _fill(self, free: Room) -> None:
        """New attempts for the lowest indexes neither succeeded nor active, up to ``parallelism``,
        as many as may wait for a node (``room.Room``: what the nodes could take now, at least
        ``MAX_UNPLACED``)."""
        spec, epoch = self.spec, self.res.retried_at or 0.0
        taken = self.succeeded | {t.index for t in self.active}
        waiting = unplaced(self.active)
        wanted = max(0, min(spec.parallelism - len(self.active), spec.completions - len(taken)))
        more = min(wanted, free.limit(self.res, waiting, wanted) - waiting)
        free.claim(self.res, waiting + max(0, more))
        attempts = Attempts(self.tasks)
        # range() is lazy: this looks at most at len(taken) + more indexes, whatever `completions` says.
        todo = (i for i in range(spec.completions) if i not in taken)
        for index in islice(todo, max(0, more)):
            new = new_task(self.res, index, attempts.of(index), self.now, spec.backoff,
                           lambda t: t.phase is TaskPhase.FAILED and t.created_at >= epoch)
            self.p.new_tasks.append(new)
            self.active.append(new)
            if new.not_before > self.now:
                self.p.events.append(event(self.res, "BackOff", f"{new.id}: {new.message}", task_id=new.id))

    def running_phase(self) -> JobPhase:
        started = any(t.started_at for t in self.tasks)
        return JobPhase.RUNNING if started or self.succeeded or self.failed else JobPhase.PENDING

    def status(self, phase: str, reason: str, message: str) -> dict:
        ends = [t.finished_at for t in self.tasks if t.finished_at]
        return {
            "phase": phase,
            "active": len(self.active),
            "succeeded": len(self.succeeded),
            "failed": len(self.failed),
            "reason": reason,
            "message": message,
            "startTime": self.start,
            "completionTime": max(ends) if phase in (JobPhase.COMPLETE, JobPhase.FAILED) and ends else None,
        }

    def expire(self, completed: float | None) -> None:
        expire(self.p, self.res, completed, self.now, any(t.id in self.snapshot.by_task for t in self.tasks))


def expire(p: Plan, res: ResourceRecord, completed: float | None, now: float, seen: bool) -> None:
    """Purge a finished Job once ``ttlSecondsAfterFinished`` passed and none of its containers is
    seen (``seen``: one is)."""
    ttl = res.model.spec.ttlSecondsAfterFinished
    if ttl is None or completed is None:
        return
    expires = completed + ttl
    if now >= expires and not seen:
        p.purges.append(res.key)
        p.events.append(event(res, "Expired", f"ttlSecondsAfterFinished {ttl:g} passed; deleted"))
    else:
        p.wake_at(max(expires, now + 1.0))


def keep_settled(p: Plan, res: ResourceRecord, now: float) -> None:
    """A settled Job (see ``settles``), whose tasks the caller no longer gives: its status stands as
    stored; only its TTL purge is left, counted from the ``completionTime`` in that status."""
    expire(p, res, res.status.get("completionTime"), now, seen=False)


def settles(res: ResourceRecord, tasks: list[TaskRecord], snapshot: Snapshot, touched: set) -> bool:
    """Whether Job ``res`` is over and quiet after this pass: its status says Complete or Failed,
    none of its ``tasks`` is active or has a container seen, and this pass wrote nothing of it
    (``touched``: the owners it wrote statuses, tasks or purges for). Until something about it
    changes (the Job's row, one of its tasks, one of its containers seen), its tasks cannot change
    what a pass does, except its TTL purge, which its status is enough for (``keep_settled``). Each
    task that ran has its end, so its part of budget and fair-share usage is fixed
    (``settled.SettledUsage``)."""
    return (res.deleted_at is None and res.status.get("phase") in (JobPhase.COMPLETE, JobPhase.FAILED)
            and res.key not in touched
            and not any(t.active or t.id in snapshot.by_task or (t.started_at is not None and t.finished_at is None)
                        for t in tasks))


def _exit_text(t: TaskRecord) -> str:
    if t.exit_code is not None:
        return f"exited with code {t.exit_code}" + (" (OOM-killed)" if t.oom_killed else "")
    return f"failed: {t.reason} {t.message}".strip()
