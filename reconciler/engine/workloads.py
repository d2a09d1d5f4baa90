"""What each resource needs this pass: Job and Service logic, node status. Pure.

Called by ``plan`` for every resource with that resource's tasks (as this pass sees them). A Job
keeps up to ``parallelism`` tasks active until ``completions`` indexes succeeded, retrying
failures with exponential backoff until ``backoffLimit`` failures; a Service keeps ``replicas``
tasks active, replacing any that exit. A deleted resource has its tasks stopped, then is
purged. Results go into the ``Plan`` (new tasks, task updates, statuses, removals, events).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from itertools import count, islice

from .actions import STOP_GRACE_SECONDS, Event, Plan, Remove
from ..spec.models import Backoff, Kind, TaskPhase, template_hash
from ..records import NodeObs, ResourceRecord, Snapshot, TaskRecord

HEALTHY_RUN_SECONDS = 60.0  # a replica that ran this long resets its restart backoff
# At most this many tasks of one Job or Service wait for a node at once; more are created as these
# are placed (as Kubernetes creates a controller's pods in batches). A pass so costs what is active
# and what changed, never the declared `completions`, `parallelism` or `replicas`.
MAX_UNPLACED = 100


def node_status(node: ResourceRecord, obs: NodeObs | None, now: float, lost_after: float = 3.0,
                twin_of: tuple[str, str] | None = None) -> dict:
    """The status a Node should have given what the probes and the last list saw.

    ``Ready`` while probes succeed; ``NotReady`` while they fail; ``Lost`` once at least two
    probes failed and none succeeded for ``lostAfterSeconds`` (the Node's, else ``lost_after``).
    ``twin_of`` (node, daemon id): an older Node reaches the same daemon (see ``twins``); this
    one is NotReady with no slots, so the daemon's capacity is counted once.
    Stable while nothing changes, so an unchanged node is not rewritten every pass.
    """
    prev = node.status
    spec = node.model.spec
    cpus = (obs.cpus if obs else None) or prev.get("cpus")
    message = obs.message if obs else ""
    if obs is None:
        condition = "Unknown"
    elif obs.ready:
        condition = "Ready"
    else:
        silent_since = obs.last_ok if obs.last_ok is not None else obs.failing_since
        limit = spec.lostAfterSeconds or lost_after
        lost = obs.failures >= 2 and silent_since is not None and now - silent_since >= limit
        condition = "Lost" if lost else "NotReady"
    slots = dict(spec.slots) if spec.slots is not None else ({"default": cpus} if cpus else {})
    if twin_of is not None and condition != "Lost":
        condition, slots = "NotReady", {}
        message = twin_message(*twin_of)
    status = {
        "condition": condition,
        "since": prev.get("since", now) if prev.get("condition") == condition else now,
        "message": message,
        "dockerVersion": (obs.docker_version if obs else None) or prev.get("dockerVersion"),
        "daemonId": (obs.daemon_id if obs else None) or prev.get("daemonId"),
        "cpus": cpus,
        "memory": (obs.memory if obs else None) or prev.get("memory"),
        "slots": slots,
    }
    if twin_of is not None:
        status["twinOf"] = twin_of[0]
    return status


def twins(nodes: list[ResourceRecord], snapshot: Snapshot) -> dict[str, tuple[str, str]]:
    """Nodes whose daemon an older Node already uses: name -> (that node, daemon id).

    Two Nodes can name one daemon (a tcp and a unix address, or the same address twice). Only
    the Node applied first (older ``created_at``, then name) uses it; the others are NotReady,
    not listed and get no work, or the daemon's slots, containers and events would count twice.
    A daemon's ID comes from this pass's observation, else from the Node's last status.
    """
    first: dict[str, str] = {}
    out: dict[str, tuple[str, str]] = {}
    for node in sorted(nodes, key=lambda n: (n.created_at, n.name)):
        obs = snapshot.nodes.get(node.name)
        daemon = (obs.daemon_id if obs else None) or node.status.get("daemonId")
        if daemon is None:
            continue
        if daemon in first:
            out[node.name] = (first[daemon], daemon)
        else:
            first[daemon] = node.name
    return out


def twin_message(first: str, daemon_id: str) -> str:
    docker_id = daemon_id.split(" ", 1)[0]
    short = docker_id if len(docker_id) <= 12 else docker_id[:12] + "…"
    return f"same Docker daemon as node {first} (ID {short}); remove one of them"


def lost_at(node: ResourceRecord, obs: NodeObs | None, lost_after: float) -> float | None:
    """When a NotReady node will count as Lost if its probes keep failing (None: not failing)."""
    if obs is None or obs.ready or obs.failures < 2:
        return None
    since = obs.last_ok if obs.last_ok is not None else obs.failing_since
    return None if since is None else since + (node.model.spec.lostAfterSeconds or lost_after)


def reconcile(p: Plan, res: ResourceRecord, tasks: list[TaskRecord], snapshot: Snapshot, now: float,
              draining: dict[str, float] | None = None, unlisted: frozenset[str] = frozenset()) -> None:
    """``draining``: node -> drain deadline, for nodes whose tasks must move off; ``unlisted``:
    nodes whose containers this pass could not see (not answering, not yet Lost)."""
    draining = draining or {}
    if res.deleted_at is not None:
        _delete(p, res, tasks, snapshot, now, unlisted)
    elif res.kind is Kind.JOB:
        _job(p, res, _drain_jobs(p, res, tasks, snapshot, now, draining), snapshot, now)
    elif res.kind is Kind.SERVICE:
        _service(p, res, tasks, snapshot, now, frozenset(draining))


def _drain_jobs(p: Plan, res: ResourceRecord, tasks: list[TaskRecord], snapshot: Snapshot, now: float,
                draining: dict[str, float]) -> list[TaskRecord]:
    """Job tasks on a draining node may finish until its deadline; then they are moved (no retry spent)."""
    out = []
    for t in tasks:
        deadline = draining.get(t.node) if t.active and t.node else None
        if deadline is not None:
            if now >= deadline:
                t = stop_task(p, t, snapshot, now, "Drained", f"node {t.node} was drained; rescheduled elsewhere",
                              res.model.spec.terminationGracePeriodSeconds, phase=TaskPhase.LOST)
                p.events.append(_event(res, "Drained", f"{t.id} moved off draining node {t.node}", task_id=t.id))
            else:
                p.wake_at(deadline)
        out.append(t)
    return out


def _delete(p: Plan, res: ResourceRecord, tasks: list[TaskRecord], snapshot: Snapshot, now: float,
            unlisted: frozenset[str] = frozenset()) -> None:
    """Stop a deleted resource's tasks; purge it only once none of its containers is seen.

    A container in its grace period stays tracked (and its stop goes on) however long the grace.
    A node that could not be listed may still hold one stopped less than a grace period ago:
    the purge waits for that node's next list, or for that grace period to pass.
    The count of containers still seen is kept in the status (``stoppingContainers``) for
    ``brokerctl delete`` to report.
    """
    live = [t for t in tasks if t.active]
    grace = getattr(res.model.spec, "terminationGracePeriodSeconds", STOP_GRACE_SECONDS)
    for t in live:
        stop_task(p, t, snapshot, now, "Deleted", f"{res.ref} was deleted", grace)
    seen = snapshot.by_task
    stopping = sum(t.id in seen for t in tasks)
    hidden = [t for t in tasks if t.node in unlisted and t.container_id and t.exit_code is None
              and (t.active or (t.finished_at or now) + grace > now)]
    if not live and not stopping and not hidden:
        p.purges.append((res.kind, res.name))
        p.events.append(_event(res, "Deleted", f"{res.ref} deleted; its containers are gone"))
        return
    for t in hidden:
        p.wake_at((t.finished_at or now) + grace)
    _set_status(p, res, {**res.status, "stoppingContainers": stopping + len(hidden)}, now)


def stop_task(p: Plan, t: TaskRecord, snapshot: Snapshot, now: float, reason: str, message: str,
              grace: float = STOP_GRACE_SECONDS, phase: TaskPhase = TaskPhase.STOPPED) -> TaskRecord:
    """End the task (Stopped, or Failed for a timeout) and stop its container, keeping its output."""
    p.update(t.id, phase=phase, reason=reason, message=message, finished_at=now)
    done = replace(t, phase=phase, reason=reason, message=message, finished_at=now)
    hit = snapshot.by_task.get(t.id)
    if hit:
        node, c = hit
        p.removals.append(Remove(node, c.id, t.id, message, grace=0 if c.finished else grace, keep_output=True))
    elif t.container_id and t.node:
        p.removals.append(Remove(t.node, t.container_id, t.id, message, grace=grace, keep_output=True))
    return done


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
        for t in [t for t in active if t.index in succeeded]:  # e.g. the lost attempt finished after all
            stop_task(p, t, snapshot, now, "Superseded", f"index {t.index} already succeeded", grace)
            active.remove(t)
        active = _time_out(p, res, active, snapshot, now, grace)
        taken = succeeded | {t.index for t in active}
        room = min(spec.parallelism - len(active), MAX_UNPLACED - _unplaced(active))
        attempts = _Attempts(tasks)
        # range() is lazy: this looks at most at len(taken) + room indexes, whatever `completions` says.
        todo = (i for i in range(spec.completions) if i not in taken)
        for index in islice(todo, max(0, room)):
            new = _new_task(res, index, attempts.of(index), now, spec.backoff,
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


def readiness(t: TaskRecord, snapshot: Snapshot) -> str:
    """``ready``, ``starting`` or ``unhealthy`` for a Running task ("" otherwise).

    A container without a health check is ready while it runs; with one (the spec's or the
    image's HEALTHCHECK), only once Docker reports it healthy. A task whose node could not be
    listed this pass keeps counting as ready while its row says Running.
    """
    if t.phase is not TaskPhase.RUNNING:
        return ""
    hit = snapshot.by_task.get(t.id)
    health = hit[1].health if hit else None
    return {"unhealthy": "unhealthy", "starting": "starting"}.get(health or "", "ready")


def _service(p: Plan, res: ResourceRecord, tasks: list[TaskRecord], snapshot: Snapshot, now: float,
             draining: frozenset[str] = frozenset()) -> None:
    """Keep ``replicas`` indexes with a ready task of the current template; roll updates in batches.

    A replica on a draining node is treated like one of an old template: replaced elsewhere
    first, then stopped, under the same surge and availability rules.
    """
    spec = res.model.spec
    want = template_hash(spec)

    def current(t: TaskRecord) -> bool:
        return t.template_hash == want and t.node not in draining

    grace = spec.terminationGracePeriodSeconds
    history = _Attempts(tasks)

    def stop(t: TaskRecord, reason: str, message: str, phase: TaskPhase = TaskPhase.STOPPED, wait: float = grace):
        history.put(stop_task(p, t, snapshot, now, reason, message, wait, phase))

    by_index: dict[int, list[TaskRecord]] = {}
    for t in tasks:
        if not t.active:
            continue
        if readiness(t, snapshot) == "unhealthy":
            stop(t, "Unhealthy", f"container {(t.container_id or '')[:12]} reported unhealthy; replaced",
                 TaskPhase.FAILED)
            p.events.append(_event(res, "Unhealthy", f"{t.id} on {t.node} is unhealthy; replacing it", "Warning", t.id))
            continue
        if t.phase is TaskPhase.PENDING and t.node is None and t.template_hash != want:
            t = replace(t, template_hash=want)  # not placed yet: it can take the new template
            history.put(t)
            p.update(t.id, template_hash=want)
        by_index.setdefault(t.index, []).append(t)
    for i, ts in by_index.items():
        # Two tasks of the current template for one index (a rollback made a waiting replacement
        # current again): keep the most ready, oldest one.
        same = sorted((t for t in ts if current(t)),
                      key=lambda t: (readiness(t, snapshot) != "ready", t.phase is not TaskPhase.RUNNING,
                                     t.created_at, t.id))
        for t in same[1:]:
            stop(t, "Superseded", f"index {i} already has {same[0].id} at template {want}")
        by_index[i] = [t for t in ts if t not in same[1:]]

    # Scale down: replicas that are not ready go first, then the newest.
    def rank(i: int):
        ts = by_index[i]
        return (any(readiness(t, snapshot) == "ready" for t in ts),
                -max(t.started_at or t.created_at for t in ts), -i)

    for i in sorted(by_index, key=rank)[: max(0, len(by_index) - spec.replicas)]:
        for t in by_index.pop(i):
            stop(t, "ScaledDown", f"{res.ref} scaled to {spec.replicas}")

    unplaced = _unplaced(t for ts in by_index.values() for t in ts)

    def add(index: int) -> TaskRecord:
        nonlocal unplaced
        new = _new_task(res, index, history.of(index), now, spec.restart, _crashed, want)
        history.put(new)
        p.new_tasks.append(new)
        by_index.setdefault(index, []).append(new)
        unplaced += 1
        return new

    free = (i for i in count() if i not in by_index)
    for index in islice(free, max(0, min(spec.replicas - len(by_index), MAX_UNPLACED - unplaced))):
        add(index)

    upd = spec.update
    rollout = dict(res.status.get("rollout") or {})
    if rollout.get("revision") != want:
        rollout = {"revision": want, "state": "Progressing", "startedAt": now, "progressAt": now, "updated": 0,
                   "message": ""}

    def available(t: TaskRecord) -> bool:
        if readiness(t, snapshot) != "ready":
            return False
        since = (t.started_at or now) + upd.minReadySeconds
        if since > now:
            p.wake_at(since)
            return False
        return True

    total = sum(len(ts) for ts in by_index.values())
    up = sum(available(t) for ts in by_index.values() for t in ts)
    for i in sorted(by_index):
        old = [t for t in by_index[i] if not current(t)]
        if not old:
            continue
        if unplaced >= MAX_UNPLACED and not any(current(t) for t in by_index[i]):
            continue  # its replacement would wait for a node too: a later pass goes on with it
        new = [t for t in by_index[i] if current(t)]
        if new:
            if any(available(t) for t in new):
                for t in old:
                    stop(t, "Replaced", f"replaced by {new[0].id} ({_why_replaced(t, want, draining)})")
                    up, total = up - available(t), total - 1
                by_index[i] = new
            continue
        if not any(available(t) for t in old):  # nothing to protect: replace at once
            for t in old:
                stop(t, "Replaced", _why_replaced(t, want, draining))
            total -= len(old)
            by_index[i] = []
        elif rollout["state"] == "Paused":
            continue
        elif total < spec.replicas + upd.maxSurge:
            pass  # surge: start the new one next to the old
        elif up - 1 >= spec.replicas - upd.maxUnavailable:
            for t in old:
                stop(t, "Replaced", _why_replaced(t, want, draining))
            up, total = up - 1, total - len(old)
            by_index[i] = []
        else:
            continue
        add(i)
        total += 1

    active = [t for ts in by_index.values() for t in ts]
    updated = sum(current(t) and available(t) for t in active)
    stale = any(not current(t) for t in active)
    stable = res.status.get("stableRevision")
    if rollout["state"] != "Complete":
        if not stale and updated >= spec.replicas:
            rollout.update(state="Complete", message=f"{spec.replicas} replica(s) ready at template {want}")
            stable = want
            p.events.append(_event(res, "RolloutComplete", rollout["message"]))
        else:
            if updated > rollout["updated"]:
                rollout.update(progressAt=now, state="Progressing", message="")
            if rollout["state"] == "Progressing" and now >= rollout["progressAt"] + upd.progressDeadlineSeconds:
                why = _stuck(active, want, snapshot)
                rollout.update(state="Paused", message=(
                    f"ProgressDeadlineExceeded: no new replica became ready in {upd.progressDeadlineSeconds:g}s"
                    + (f"; {why}" if why else "")))
                p.events.append(_event(res, "RolloutPaused", rollout["message"], "Warning"))
                if upd.autoRollback and stable and stable != want:
                    p.rollbacks.append((res.name, stable, f"autoRollback from {want}: {rollout['message']}"))
                    p.events.append(_event(res, "RollingBack", f"returning to template {stable}", "Warning"))
            elif rollout["state"] == "Progressing":
                p.wake_at(rollout["progressAt"] + upd.progressDeadlineSeconds)
    rollout["updated"] = updated

    waiting = [t for t in active if t.phase is TaskPhase.PENDING and t.not_before > now]
    backoff = max((spec.restart.delay(_failures([h for h in history.of(t.index) if h.attempt < t.attempt], _crashed))
                   for t in waiting), default=0)
    _set_status(p, res, {
        "replicas": spec.replicas,
        "running": sum(t.phase is TaskPhase.RUNNING for t in active),
        "ready": sum(readiness(t, snapshot) == "ready" for t in active),
        "updated": updated,
        "revision": want,
        "stableRevision": stable,
        "restarts": sum(_crashed(t) or t.reason == "Unhealthy" for t in history.all()),
        "restartBackoffSeconds": backoff,
        "rollout": rollout,
    }, now)


def _why_replaced(t: TaskRecord, want: str, draining: frozenset[str]) -> str:
    return f"node {t.node} is being drained" if t.node in draining else f"template changed to {want}"


def _stuck(active: list[TaskRecord], want: str, snapshot: Snapshot) -> str:
    """Why the newest replica of the new template is not ready, for the paused rollout's message."""
    for t in sorted(active, key=lambda t: (t.created_at, t.id), reverse=True):
        if t.template_hash == want:
            state = readiness(t, snapshot) or t.phase.value
            detail = f": {t.reason} {t.message}".rstrip() if t.reason or t.message else ""
            return f"task {t.id} is {state}{detail}"
    return ""


def _crashed(t: TaskRecord) -> bool:
    """A replica that finished after a short run counts toward its restart backoff."""
    if t.phase not in (TaskPhase.FAILED, TaskPhase.SUCCEEDED) or t.reason == "PortInUse":
        return False  # a taken host port is a placement problem: the next attempt goes elsewhere
    return (t.finished_at or 0) - (t.started_at or t.finished_at or 0) < HEALTHY_RUN_SECONDS


def _unplaced(tasks) -> int:
    """Tasks waiting for a node (in a backoff or not): bounded by ``MAX_UNPLACED`` per resource."""
    return sum(1 for t in tasks if t.phase is TaskPhase.PENDING and t.node is None)


class _Attempts:
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

    def all(self):
        return (t for ts in self._by_index.values() for t in ts.values())


def _failures(attempts: list[TaskRecord], counts_as_failure) -> int:
    """Consecutive recent failures among one index's ``attempts`` (a live attempt, a success or a
    healthy run ends the streak)."""
    failures = 0
    for t in sorted(attempts, key=lambda t: t.attempt, reverse=True):
        if t.active or not counts_as_failure(t):
            break
        failures += 1
    return failures


def _new_task(res: ResourceRecord, index: int, attempts: list[TaskRecord], now: float,
              backoff: Backoff, counts_as_failure, template: str = "") -> TaskRecord:
    """The next attempt for ``index`` (``attempts``: that index's earlier ones), delayed by the
    backoff its recent failures earned."""
    history = sorted(attempts, key=lambda t: t.attempt)
    failures = _failures(history, counts_as_failure)
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
        template_hash=template or template_hash(res.model.spec),
    )


def _set_status(p: Plan, res: ResourceRecord, status: dict, now: float) -> None:
    if status == res.status:
        return
    p.statuses.append((res.kind, res.name, status))
    old = res.status.get("phase")
    if res.kind is Kind.JOB and status.get("phase") != old and status.get("phase") in ("Complete", "Failed"):
        kind = "Normal" if status["phase"] == "Complete" else "Warning"
        text = status["message"] or f"{status['succeeded']} completion(s) succeeded"
        p.events.append(_event(res, status["reason"] or status["phase"], text, type=kind))


def _event(res: ResourceRecord, reason: str, message: str, type: str = "Normal", task_id: str | None = None):
    return Event(res.kind.value, res.name, reason, message, type, task_id)


def _exit_text(t: TaskRecord) -> str:
    if t.exit_code is not None:
        return f"exited with code {t.exit_code}" + (" (OOM-killed)" if t.oom_killed else "")
    return f"failed: {t.reason} {t.message}".strip()
