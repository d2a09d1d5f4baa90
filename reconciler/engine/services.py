"""What a Service needs this pass: ``replicas`` ready tasks of its current template. Pure.

Called by ``plan`` for every Service that is not being deleted, with its tasks as this pass sees
them. Level-triggered, in named steps (as Nomad's reconciler): replace unhealthy replicas, stop
duplicates, scale down, fill missing indexes, roll indexes still on an old template (surge, stop
first, or wait), then the rollout state (Progressing / Complete / Paused, with ``autoRollback``)
and the status. A replica on a draining node is treated like one of an old template: replaced
elsewhere first, then stopped, under the same surge and availability rules.
"""

from __future__ import annotations

from enum import StrEnum
from itertools import count, islice

from .actions import Plan, Rollback
from .room import Room
from .tasks import MAX_UNPLACED, Attempts, event, failure_streak, new_task, set_status, set_task, stop_task, unplaced
from ..kinds import RolloutState, TaskPhase, TaskReason
from ..records import ResourceRecord, Snapshot, TaskRecord
from ..spec.models import template_hash

HEALTHY_RUN_SECONDS = 60.0  # a replica that ran this long resets its restart backoff


class Readiness(StrEnum):
    """What a Running replica's container reports (see ``readiness``)."""

    READY = "ready"
    STARTING = "starting"
    UNHEALTHY = "unhealthy"


def readiness(t: TaskRecord, snapshot: Snapshot) -> Readiness | None:
    """Whether a Running task is ready, starting or unhealthy (None: not Running).

    A container without a health check is ready while it runs; with one (the spec's or the
    image's HEALTHCHECK), only once Docker reports it healthy. A task whose node could not be
    listed this pass keeps counting as ready while its row says Running.
    """
    if t.phase is not TaskPhase.RUNNING:
        return None
    seen = snapshot.by_task.get(t.id)
    health = seen.container.health if seen else None
    if health == "unhealthy":
        return Readiness.UNHEALTHY
    return Readiness.STARTING if health == "starting" else Readiness.READY


def reconcile_service(p: Plan, res: ResourceRecord, tasks: list[TaskRecord], snapshot: Snapshot, now: float,
                      room: Room, draining: frozenset[str] = frozenset()) -> None:
    """Keep ``replicas`` indexes with a ready task of the current template; roll updates in batches
    of what may wait for a node (``room``: what the nodes could take now, at least ``MAX_UNPLACED``)."""
    s = _ServicePass(p, res, tasks, snapshot, now, draining)
    s.group_active(tasks)
    s.stop_duplicates()
    s.scale_down()
    s.limit = room.limit(res, s.unplaced, s.wanted())
    s.fill_missing()
    s.roll()
    room.claim(res, s.unplaced)
    s.record_status()


def _crashed(t: TaskRecord) -> bool:
    """A replica that finished after a short run counts toward its restart backoff."""
    if t.phase not in (TaskPhase.FAILED, TaskPhase.SUCCEEDED) or t.reason == TaskReason.PORT_IN_USE:
        return False  # a taken host port is a placement problem: the next attempt goes elsewhere
    return (t.finished_at or 0) - (t.started_at or t.finished_at or 0) < HEALTHY_RUN_SECONDS


class _ServicePass:
    """One Service in one pass: its active tasks by index, and what the rollout counts."""

    def __init__(self, p: Plan, res: ResourceRecord, tasks: list[TaskRecord], snapshot: Snapshot, now: float,
                 draining: frozenset[str]):
        self.p, self.res, self.snapshot, self.now, self.draining = p, res, snapshot, now, draining
        self.spec = res.model.spec
        self.want = template_hash(self.spec)
        self.history = Attempts(tasks)
        self.by_index: dict[int, list[TaskRecord]] = {}
        self.unplaced = 0  # tasks waiting for a node: bounded by ``limit``
        self.limit = MAX_UNPLACED  # what may wait for a node after this pass (``room.Room``)
        self.rollout: dict = {}
        self.total = self.up = 0  # active tasks, available ones (during `roll`)

    def current(self, t: TaskRecord) -> bool:
        """Of the current template and not on a draining node."""
        return t.template_hash == self.want and t.node not in self.draining

    def available(self, t: TaskRecord) -> bool:
        """Ready for at least ``minReadySeconds`` (the pass wakes when it will be)."""
        if readiness(t, self.snapshot) != Readiness.READY:
            return False
        since = (t.started_at or self.now) + self.spec.update.minReadySeconds
        if since > self.now:
            self.p.wake_at(since)
            return False
        return True

    def stop(self, t: TaskRecord, reason: TaskReason, message: str, phase: TaskPhase = TaskPhase.STOPPED) -> None:
        grace = self.spec.terminationGracePeriodSeconds
        self.history.put(stop_task(self.p, t, self.snapshot, self.now, reason, message, grace, phase))

    def add(self, index: int) -> TaskRecord:
        """A new task of the current template for ``index``, after the restart backoff it earned."""
        new = new_task(self.res, index, self.history.of(index), self.now, self.spec.restart, _crashed, self.want)
        self.history.put(new)
        self.p.new_tasks.append(new)
        self.by_index.setdefault(index, []).append(new)
        self.unplaced += 1
        return new

    # -- the steps, in order ----------------------------------------------------------------

    def group_active(self, tasks: list[TaskRecord]) -> None:
        """Active tasks by index, once unhealthy ones are replaced and unplaced ones take the new template."""
        for t in tasks:
            if not t.active:
                continue
            if readiness(t, self.snapshot) == Readiness.UNHEALTHY:
                self.replace_unhealthy(t)
                continue
            if t.phase is TaskPhase.PENDING and t.node is None and t.template_hash != self.want:
                t = set_task(self.p, t, template_hash=self.want)  # not placed yet: it can take the new template
                self.history.put(t)
            self.by_index.setdefault(t.index, []).append(t)

    def replace_unhealthy(self, t: TaskRecord) -> None:
        self.stop(t, TaskReason.UNHEALTHY, f"container {(t.container_id or '')[:12]} reported unhealthy; replaced",
                  TaskPhase.FAILED)
        self.p.events.append(event(self.res, "Unhealthy", f"{t.id} on {t.node} is unhealthy; replacing it",
                                   "Warning", t.id))

    def stop_duplicates(self) -> None:
        """Two tasks of the current template for one index (a rollback made a waiting replacement
        current again): keep the most ready, oldest one."""
        for i, ts in self.by_index.items():
            same = sorted((t for t in ts if self.current(t)),
                          key=lambda t: (readiness(t, self.snapshot) != Readiness.READY,
                                         t.phase is not TaskPhase.RUNNING, t.created_at, t.id))
            for t in same[1:]:
                self.stop(t, TaskReason.SUPERSEDED, f"index {i} already has {same[0].id} at template {self.want}")
            self.by_index[i] = [t for t in ts if t not in same[1:]]

    def scale_down(self) -> None:
        """Past ``replicas``: replicas that are not ready go first, then the newest."""
        def rank(i: int):
            ts = self.by_index[i]
            return (any(readiness(t, self.snapshot) == Readiness.READY for t in ts),
                    -max(t.started_at or t.created_at for t in ts), -i)

        replicas = self.spec.replicas
        for i in sorted(self.by_index, key=rank)[: max(0, len(self.by_index) - replicas)]:
            for t in self.by_index.pop(i):
                self.stop(t, TaskReason.SCALED_DOWN, f"{self.res.ref} scaled to {replicas}")
        self.unplaced = unplaced(t for ts in self.by_index.values() for t in ts)

    def wanted(self) -> int:
        """How many new tasks this pass could make at most: one per missing index and one per index
        still on an old template (or a draining node)."""
        stale = sum(1 for ts in self.by_index.values() if any(not self.current(t) for t in ts))
        return max(0, self.spec.replicas - len(self.by_index)) + stale

    def fill_missing(self) -> None:
        """A new task for each missing index, the lowest first, at most ``limit`` waiting."""
        free = (i for i in count() if i not in self.by_index)
        missing = min(self.spec.replicas - len(self.by_index), self.limit - self.unplaced)
        for index in islice(free, max(0, missing)):
            self.add(index)

    def roll(self) -> None:
        """Move each index still on an old template (or a draining node) to a current task."""
        self.rollout = _rollout_of(self.res, self.want, self.now)
        self.total = sum(len(ts) for ts in self.by_index.values())
        self.up = sum(self.available(t) for ts in self.by_index.values() for t in ts)
        for i in sorted(self.by_index):
            self.roll_index(i)

    def roll_index(self, i: int) -> None:
        old = [t for t in self.by_index[i] if not self.current(t)]
        if not old:
            return
        new = [t for t in self.by_index[i] if self.current(t)]
        if self.unplaced >= self.limit and not new:
            return  # its replacement would wait for a node too: a later pass goes on with it
        if new:
            self.retire_replaced(i, old, new)
        elif self.make_room(i, old):
            self.add(i)
            self.total += 1

    def retire_replaced(self, i: int, old: list[TaskRecord], new: list[TaskRecord]) -> None:
        """Stop the old tasks of index ``i`` once its new one is available."""
        if not any(self.available(t) for t in new):
            return
        for t in old:
            self.stop(t, TaskReason.REPLACED, f"replaced by {new[0].id} ({self.why_replaced(t)})")
            self.up, self.total = self.up - self.available(t), self.total - 1
        self.by_index[i] = new

    def make_room(self, i: int, old: list[TaskRecord]) -> bool:
        """Whether index ``i`` may get its new task now: at once when nothing old is available; by
        surging next to the old one while under ``replicas + maxSurge``; by stopping the old one
        first while ``replicas - maxUnavailable`` stay available; else it waits (as when Paused)."""
        upd, replicas = self.spec.update, self.spec.replicas
        if not any(self.available(t) for t in old):  # nothing to protect: replace at once
            self.stop_old(i, old)
            return True
        if self.rollout["state"] == RolloutState.PAUSED:
            return False
        if self.total < replicas + upd.maxSurge:
            return True  # surge: start the new one next to the old
        if self.up - 1 >= replicas - upd.maxUnavailable:
            self.stop_old(i, old)
            self.up -= 1
            return True
        return False

    def stop_old(self, i: int, old: list[TaskRecord]) -> None:
        for t in old:
            self.stop(t, TaskReason.REPLACED, self.why_replaced(t))
        self.total -= len(old)
        self.by_index[i] = []

    def why_replaced(self, t: TaskRecord) -> str:
        return f"node {t.node} is being drained" if t.node in self.draining else f"template changed to {self.want}"

    def record_status(self) -> None:
        active = [t for ts in self.by_index.values() for t in ts]
        updated = sum(self.current(t) and self.available(t) for t in active)
        stable = self.advance_rollout(active, updated)
        self.rollout["updated"] = updated
        waiting = [t for t in active if t.phase is TaskPhase.PENDING and t.not_before > self.now]
        backoff = max((self.spec.restart.delay(failure_streak(
            [h for h in self.history.of(t.index) if h.attempt < t.attempt], _crashed)) for t in waiting), default=0)
        set_status(self.p, self.res, {
            "replicas": self.spec.replicas,
            "running": sum(t.phase is TaskPhase.RUNNING for t in active),
            "ready": sum(readiness(t, self.snapshot) == Readiness.READY for t in active),
            "updated": updated,
            "revision": self.want,
            "stableRevision": stable,
            "restarts": sum(_crashed(t) or t.reason == TaskReason.UNHEALTHY for t in self.history.all()),
            "restartBackoffSeconds": backoff,
            "rollout": self.rollout,
        })

    def advance_rollout(self, active: list[TaskRecord], updated: int) -> str | None:
        """Complete once every replica is current and available; Paused when no new replica became
        ready within ``progressDeadlineSeconds`` (then ``autoRollback`` returns to the stable
        template). Returns the stable revision."""
        rollout, upd, want = self.rollout, self.spec.update, self.want
        stable = self.res.status.get("stableRevision")
        if rollout["state"] == RolloutState.COMPLETE:
            return stable
        if not any(not self.current(t) for t in active) and updated >= self.spec.replicas:
            rollout.update(state=RolloutState.COMPLETE,
                           message=f"{self.spec.replicas} replica(s) ready at template {want}")
            self.p.events.append(event(self.res, "RolloutComplete", rollout["message"]))
            return want
        if updated > rollout["updated"]:
            rollout.update(progressAt=self.now, state=RolloutState.PROGRESSING, message="")
        if rollout["state"] != RolloutState.PROGRESSING:
            return stable
        if self.now < rollout["progressAt"] + upd.progressDeadlineSeconds:
            self.p.wake_at(rollout["progressAt"] + upd.progressDeadlineSeconds)
            return stable
        why = _stuck(active, want, self.snapshot)
        rollout.update(state=RolloutState.PAUSED, message=(
            f"ProgressDeadlineExceeded: no new replica became ready in {upd.progressDeadlineSeconds:g}s"
            + (f"; {why}" if why else "")))
        self.p.events.append(event(self.res, "RolloutPaused", rollout["message"], "Warning"))
        if upd.autoRollback and stable and stable != want:
            self.p.rollbacks.append(Rollback(self.res.name, stable, f"autoRollback from {want}: {rollout['message']}",
                                             self.res.namespace))
            self.p.events.append(event(self.res, "RollingBack", f"returning to template {stable}", "Warning"))
        return stable


def _rollout_of(res: ResourceRecord, want: str, now: float) -> dict:
    """The Service's rollout record, a new one when its template changed."""
    rollout = dict(res.status.get("rollout") or {})
    if rollout.get("revision") != want:
        rollout = {"revision": want, "state": RolloutState.PROGRESSING, "startedAt": now, "progressAt": now,
                   "updated": 0, "message": ""}
    return rollout


def _stuck(active: list[TaskRecord], want: str, snapshot: Snapshot) -> str:
    """Why the newest replica of the new template is not ready, for the paused rollout's message."""
    for t in sorted(active, key=lambda t: (t.created_at, t.id), reverse=True):
        if t.template_hash == want:
            state = readiness(t, snapshot) or t.phase.value
            detail = f": {t.reason} {t.message}".rstrip() if t.reason or t.message else ""
            return f"task {t.id} is {state}{detail}"
    return ""
