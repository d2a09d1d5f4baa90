"""What each resource needs this pass: Job and Service logic, node status. Pure.

Called by ``plan`` for every resource with that resource's tasks (as this pass sees them). A Job
keeps up to ``parallelism`` tasks active until ``completions`` indexes succeeded, retrying
failures with exponential backoff until ``backoffLimit`` failures; a Service keeps ``replicas``
tasks active, replacing any that exit. A deleted resource has its tasks stopped, then is
purged. Results go into the ``Plan`` (new tasks, task updates, statuses, removals, events).
"""

from __future__ import annotations

from dataclasses import replace
from .actions import STOP_GRACE_SECONDS, Event, Plan, Remove
from .models import Backoff, Kind, TaskPhase
from .records import NodeObs, ResourceRecord, Snapshot, TaskRecord

SERVICE_RESTART = Backoff(initialSeconds=1, maxSeconds=60)
HEALTHY_RUN_SECONDS = 60.0  # a replica that ran this long resets its restart backoff


def node_status(node: ResourceRecord, obs: NodeObs | None, now: float) -> dict:
    """The status a Node should have given what the last probe saw (stable while nothing changes)."""
    prev = node.status
    spec = node.model.spec
    cpus = (obs.cpus if obs else None) or prev.get("cpus")
    condition = "Unknown" if obs is None else ("Ready" if obs.ready else "NotReady")
    slots = dict(spec.slots) if spec.slots is not None else ({"default": cpus} if cpus else {})
    return {
        "condition": condition,
        "since": prev.get("since", now) if prev.get("condition") == condition else now,
        "message": obs.message if obs else "",
        "dockerVersion": (obs.docker_version if obs else None) or prev.get("dockerVersion"),
        "cpus": cpus,
        "memory": (obs.memory if obs else None) or prev.get("memory"),
        "slots": slots,
    }


def reconcile(p: Plan, res: ResourceRecord, tasks: list[TaskRecord], snapshot: Snapshot, now: float) -> None:
    if res.deleted_at is not None:
        _delete(p, res, tasks, snapshot, now)
    elif res.kind is Kind.JOB:
        _job(p, res, tasks, snapshot, now)
    elif res.kind is Kind.SERVICE:
        _service(p, res, tasks, snapshot, now)


def _delete(p: Plan, res: ResourceRecord, tasks: list[TaskRecord], snapshot: Snapshot, now: float) -> None:
    live = [t for t in tasks if t.active]
    grace = getattr(res.model.spec, "terminationGracePeriodSeconds", STOP_GRACE_SECONDS)
    for t in live:
        stop_task(p, t, snapshot, now, "Deleted", f"{res.ref} was deleted", grace)
    seen = snapshot.by_task
    if not live and not any(t.id in seen for t in tasks):
        p.purges.append((res.kind, res.name))
        p.events.append(_event(res, "Deleted", f"{res.ref} deleted; its containers are gone"))


def stop_task(p: Plan, t: TaskRecord, snapshot: Snapshot, now: float, reason: str, message: str,
              grace: float = STOP_GRACE_SECONDS, phase: TaskPhase = TaskPhase.STOPPED) -> TaskRecord:
    """End the task (Stopped, or Failed for a timeout) and stop its container, keeping its output."""
    p.update(t.id, phase=phase, reason=reason, message=message, finished_at=now)
    hit = snapshot.by_task.get(t.id)
    if hit:
        node, c = hit
        p.removals.append(Remove(node, c.id, t.id, message, grace=0 if c.finished else grace, keep_output=True))
    elif t.container_id and t.node:
        p.removals.append(Remove(t.node, t.container_id, t.id, message, grace=grace, keep_output=True))
    return replace(t, phase=phase)


def _job(p: Plan, res: ResourceRecord, tasks: list[TaskRecord], snapshot: Snapshot, now: float) -> None:
    spec = res.model.spec
    succeeded = {t.index for t in tasks if t.phase is TaskPhase.SUCCEEDED}
    epoch = res.retried_at or 0.0  # attempts created before a retry are history, not budget
    counted = [t for t in tasks if t.created_at >= epoch]
    failed = [t for t in counted if t.phase is TaskPhase.FAILED]
    active = [t for t in tasks if t.active]
    grace = spec.terminationGracePeriodSeconds
    reason = message = ""
    start = min((t.started_at for t in counted if t.started_at), default=None)
    deadline = start + spec.activeDeadlineSeconds if start is not None and spec.activeDeadlineSeconds else None
    if len(succeeded) >= spec.completions:
        phase = "Complete"
        for t in active:  # an index that also succeeded elsewhere; nothing more is needed
            stop_task(p, t, snapshot, now, "JobComplete", f"{res.ref} is complete", grace)
        active = []
    elif len(failed) > spec.backoffLimit:
        phase, reason = "Failed", "BackoffLimitExceeded"
        last = max(failed, key=lambda t: (t.finished_at or 0, t.id))
        message = (f"{len(failed)} failed attempts, backoffLimit {spec.backoffLimit}; last: task {last.id} "
                   f"{_exit_text(last)}")
        for t in active:
            stop_task(p, t, snapshot, now, "JobFailed", message, grace)
        active = []
    elif deadline is not None and now >= deadline:
        phase, reason = "Failed", "DeadlineExceeded"
        message = f"activeDeadlineSeconds {spec.activeDeadlineSeconds:g} passed; {len(succeeded)}/{spec.completions} succeeded"
        for t in active:
            stop_task(p, t, snapshot, now, "DeadlineExceeded", message, grace)
        active = []
    elif spec.suspend:
        for t in active:
            stop_task(p, t, snapshot, now, "Suspended", f"{res.ref} is suspended", grace)
        active = []
        phase = res.status.get("phase", "Pending")
        reason, message = "Suspended", "suspend: true; set it to false to resume"
    else:
        if deadline is not None:
            p.wake_at(deadline)
        active = _time_out(p, res, active, snapshot, now, grace)
        busy = {t.index for t in active}
        todo = [i for i in range(spec.completions) if i not in succeeded and i not in busy]
        for index in todo[: max(0, spec.parallelism - len(active))]:
            new = _new_task(res, index, tasks, now, spec.backoff,
                            lambda t: t.phase is TaskPhase.FAILED and t.created_at >= epoch)
            p.new_tasks.append(new)
            active.append(new)
            if new.not_before > now:
                p.events.append(_event(res, "BackOff", f"{new.id}: {new.message}", task_id=new.id))
        started = any(t.started_at for t in tasks)
        phase = "Running" if started or succeeded or failed else "Pending"
    ends = [t.finished_at for t in tasks if t.finished_at]
    status = {
        "phase": phase,
        "active": len(active),
        "succeeded": len(succeeded),
        "failed": len(failed),
        "reason": reason,
        "message": message,
        "startTime": start,
        "completionTime": max(ends) if phase in ("Complete", "Failed") and ends else None,
    }
    _set_status(p, res, status, now)
    if spec.ttlSecondsAfterFinished is not None and status["completionTime"] is not None:
        expires = status["completionTime"] + spec.ttlSecondsAfterFinished
        if now >= expires and not any(t.id in snapshot.by_task for t in tasks):
            p.purges.append((res.kind, res.name))
            p.events.append(_event(res, "Expired", f"ttlSecondsAfterFinished {spec.ttlSecondsAfterFinished:g} passed; deleted"))
        else:
            p.wake_at(max(expires, now + 1.0))


def _time_out(p: Plan, res: ResourceRecord, active: list[TaskRecord], snapshot: Snapshot, now: float,
              grace: float) -> list[TaskRecord]:
    """Fail (and stop) running attempts older than ``timeoutSeconds``; returns those still active."""
    limit = res.model.spec.timeoutSeconds
    if not limit:
        return active
    keep = []
    for t in active:
        if t.phase is TaskPhase.RUNNING and t.started_at is not None:
            if now >= t.started_at + limit:
                stop_task(p, t, snapshot, now, "Timeout", f"ran longer than timeoutSeconds {limit:g}", grace,
                          phase=TaskPhase.FAILED)
                p.events.append(_event(res, "Timeout", f"{t.id} ran longer than {limit:g}s; stopped", "Warning", t.id))
                continue
            p.wake_at(t.started_at + limit)
        keep.append(t)
    return keep


def _service(p: Plan, res: ResourceRecord, tasks: list[TaskRecord], snapshot: Snapshot, now: float) -> None:
    spec = res.model.spec
    active = [t for t in tasks if t.active]
    for t in active:
        if t.index >= spec.replicas:
            stop_task(p, t, snapshot, now, "ScaledDown", f"{res.ref} scaled to {spec.replicas}",
                      spec.terminationGracePeriodSeconds)
    active = [t for t in active if t.index < spec.replicas]
    busy = {t.index for t in active}
    for index in range(spec.replicas):
        if index not in busy:
            new = _new_task(res, index, tasks, now, SERVICE_RESTART, _crashed)
            p.new_tasks.append(new)
            active.append(new)
    running = sum(t.phase is TaskPhase.RUNNING for t in active)
    _set_status(p, res, {"replicas": spec.replicas, "running": running, "ready": running}, now)


def _crashed(t: TaskRecord) -> bool:
    """A replica that finished after a short run counts toward its restart backoff."""
    if t.phase not in (TaskPhase.FAILED, TaskPhase.SUCCEEDED):
        return False
    return (t.finished_at or 0) - (t.started_at or t.finished_at or 0) < HEALTHY_RUN_SECONDS


def _new_task(res: ResourceRecord, index: int, tasks: list[TaskRecord], now: float,
              backoff: Backoff, counts_as_failure) -> TaskRecord:
    """The next attempt for ``index``, delayed by the backoff its recent failures earned."""
    history = sorted((t for t in tasks if t.index == index), key=lambda t: t.attempt)
    failures = 0
    for t in reversed(history):  # consecutive recent failures only
        if not counts_as_failure(t):
            break
        failures += 1
    attempt = history[-1].attempt + 1 if history else 1
    not_before, reason, message = now, "", ""
    if failures:
        delay = backoff.delay(failures)
        not_before = (history[-1].finished_at or now) + delay
        if not_before > now:
            reason = "BackOff"
            message = f"attempt {attempt} after {failures} failure(s); waiting {delay:g}s"
    return TaskRecord(
        id=f"{res.name}-{res.uid[:5]}-{index}-{attempt}", owner_kind=res.kind, owner_name=res.name,
        owner_uid=res.uid, index=index, attempt=attempt, created_at=now, not_before=not_before,
        reason=reason, message=message, generation=res.generation, labels=dict(res.labels),
    )


def _set_status(p: Plan, res: ResourceRecord, status: dict, now: float) -> None:
    if status == res.status:
        return
    p.statuses.append((res.kind, res.name, status))
    old = res.status.get("phase")
    if res.kind is Kind.JOB and status["phase"] != old and status["phase"] in ("Complete", "Failed"):
        kind = "Normal" if status["phase"] == "Complete" else "Warning"
        text = status["message"] or f"{status['succeeded']} completion(s) succeeded"
        p.events.append(_event(res, status["reason"] or status["phase"], text, type=kind))


def _event(res: ResourceRecord, reason: str, message: str, type: str = "Normal", task_id: str | None = None):
    return Event(res.kind.value, res.name, reason, message, type, task_id)


def _exit_text(t: TaskRecord) -> str:
    if t.exit_code is not None:
        return f"exited with code {t.exit_code}" + (" (OOM-killed)" if t.oom_killed else "")
    return f"failed: {t.reason} {t.message}".strip()
