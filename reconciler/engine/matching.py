"""Tasks matched with the containers this pass saw: adopt, collect, lose, fence, remove. Pure.

Called by ``plan`` after ``nodes.judge_nodes`` (so the snapshot holds only our containers), before
the Job and Service steps, which then see each task as it really is: a task whose container runs
is Running; a finished container is collected; a task of a deleted or Lost node, or whose
container vanished, is Lost (replaced without spending a retry). A container of a task that is
over is stopped; on a node that answers again after being Lost that is fencing, and the node
takes no new work this pass. A container whose task the store does not know is an orphan.
"""

from __future__ import annotations

from .actions import STOP_GRACE_SECONDS, Collect, Event, Key, Plan, Remove
from .nodes import NodeStates
from .tasks import set_task
from ..kinds import Kind, TaskPhase, TaskReason
from ..records import ResourceRecord, Sighting, TaskRecord

FENCE_SETTLE_SECONDS = 2.0  # a returning node's stale Job containers are killed only after this


def match_tasks(p: Plan, tasks: list[TaskRecord], by_id: dict[str, TaskRecord], nodes: NodeStates,
                owners: dict[Key, ResourceRecord], now: float) -> tuple[dict[str, TaskRecord], set[str]]:
    """The tasks as this pass sees them, and the nodes being fenced (containers of replaced tasks
    still there: no new work this pass)."""
    matcher = _Matcher(p, tasks, nodes, owners, now)
    current = {t.id: matcher.see(t) for t in tasks}
    remove_orphans(p, nodes, by_id)
    return current, matcher.fencing


class _Matcher:
    def __init__(self, p: Plan, tasks: list[TaskRecord], nodes: NodeStates,
                 owners: dict[Key, ResourceRecord], now: float):
        self.p, self.tasks, self.nodes, self.owners, self.now = p, tasks, nodes, owners, now
        self.seen = nodes.snapshot.by_task
        self.fencing: set[str] = set()
        self._succeeded: set[tuple[str, int]] | None = None  # built only when a late result needs it

    def see(self, t: TaskRecord) -> TaskRecord:
        """Task ``t`` as this pass sees it, with what that takes recorded in the plan."""
        seen = self.seen.get(t.id)
        owner = self.owners.get(t.owner_key)
        if t.active and t.node and t.node not in self.nodes.records:
            return self.lose(t, TaskReason.NODE_DELETED, f"node {t.node} was deleted")
        if t.active and t.node in self.nodes.lost and (owner is None or owner.model.spec.onNodeLost == "reschedule"):
            return self.lose(t, TaskReason.NODE_LOST, f"node {t.node} was lost; replaced elsewhere")
        if seen and t.active:
            return self.follow(t, seen)
        lost_with_node = t.phase is TaskPhase.LOST and t.reason == TaskReason.NODE_LOST
        if seen and lost_with_node and seen.container.finished:
            return self.late_result(t, seen)
        if seen and lost_with_node and t.owner_kind is Kind.JOB and self.settling(seen.node):
            return t
        if seen:
            self.stop_leftover(t, seen, owner)
        elif t.phase is TaskPhase.RUNNING and self.listed(t.node):
            return self.lose(t, TaskReason.CONTAINER_VANISHED,
                             f"container {(t.container_id or '')[:12]} disappeared from node {t.node}")
        return t

    def listed(self, node: str | None) -> bool:
        obs = self.nodes.snapshot.nodes.get(node) if node else None
        return obs is not None and obs.containers is not None

    def lose(self, t: TaskRecord, reason: TaskReason, message: str) -> TaskRecord:
        """Lost: the Job or Service replaces it without spending a retry."""
        t = set_task(self.p, t, phase=TaskPhase.LOST, reason=reason, finished_at=self.now, message=message)
        self.p.events.append(Event(t.owner_kind.value, t.owner_name, "TaskLost", f"{t.id}: {t.message}", "Warning",
                                   t.id, t.namespace))
        return t

    def follow(self, t: TaskRecord, seen: Sighting) -> TaskRecord:
        """An active task's container: collect it once finished; adopt it when it runs."""
        c = seen.container
        if c.finished:
            self.p.collects.append(Collect(t.id, seen.node, c.id))
        elif c.state == "running" and (t.phase is TaskPhase.PENDING or t.container_id != c.id):
            t = set_task(self.p, t, phase=TaskPhase.RUNNING, container_id=c.id, node=seen.node,
                         started_at=t.started_at or self.now, reason="", message="")
        return t

    def late_result(self, t: TaskRecord, seen: Sighting) -> TaskRecord:
        """It ran on while its node could not be reached. A Job's success still counts if no other
        attempt of that index succeeded (the replacement is then stopped); its output is kept."""
        if self._succeeded is None:
            self._succeeded = {(x.owner_key, x.index) for x in self.tasks if x.phase is TaskPhase.SUCCEEDED}
        if t.owner_kind is Kind.JOB and seen.container.exit_code == 0 and (t.owner_key, t.index) not in self._succeeded:
            self._succeeded.add((t.owner_key, t.index))
            t = set_task(self.p, t, phase=TaskPhase.SUCCEEDED, exit_code=0, reason=TaskReason.SUCCEEDED_WHILE_LOST,
                         message=f"finished on node {seen.node} while it could not be reached; result kept")
            self.p.events.append(Event(t.owner_kind.value, t.owner_name, "SucceededWhileLost",
                                       f"{t.id}: {t.message}", task_id=t.id, namespace=t.namespace))
        self.p.collects.append(Collect(t.id, seen.node, seen.container.id))
        return t

    def settling(self, node: str) -> bool:
        """A daemon that was hung reports exits it missed only after it resumes: give it a moment,
        so an attempt that finished meanwhile is collected rather than killed. No new work there yet."""
        since = self.nodes.ready_since(node, self.now)
        if self.now >= since + FENCE_SETTLE_SECONDS:
            return False
        self.fencing.add(node)
        self.p.wake_at(since + FENCE_SETTLE_SECONDS)
        return True

    def stop_leftover(self, t: TaskRecord, seen: Sighting, owner: ResourceRecord | None) -> None:
        """A container for a task that is over: stop it (fencing, failed starts, deletes)."""
        c = seen.container
        fence = t.reason == TaskReason.NODE_LOST  # replaced elsewhere: it must not run twice, kill at once
        if fence:
            self.fencing.add(seen.node)
            self.p.events.append(Event(t.owner_kind.value, t.owner_name, "Fenced",
                                       f"{t.id}: stopping its container on {seen.node}, which answers again",
                                       "Warning", t.id, t.namespace))
        self.p.removals.append(Remove(seen.node, c.id, t.id, f"task {t.id} is {t.phase.value}",
                                      grace=0 if c.finished or fence else grace_left(t, owner, self.now)))


def grace_left(t: TaskRecord, owner: ResourceRecord | None, now: float) -> float:
    """What is left of the grace period of a stop that began when ``t`` was stopped (``finished_at``).

    The stop may have been issued by an earlier pass or an earlier controller: the container then
    gets SIGTERM again but is killed at the deadline of that first stop, not 10 s from now, and
    not at once.
    """
    grace = owner.model.spec.terminationGracePeriodSeconds if owner is not None else STOP_GRACE_SECONDS
    return max(0.0, (t.finished_at if t.finished_at is not None else now) + grace - now)


def remove_orphans(p: Plan, nodes: NodeStates, by_id: dict[str, TaskRecord]) -> None:
    """Remove containers whose task the store does not know."""
    for node in nodes.snapshot.nodes.values():
        for c in node.containers or ():
            if c.task_id not in by_id:
                p.removals.append(Remove(node.name, c.id, c.task_id, "orphan: its task is not in the store",
                                         grace=0 if c.finished else STOP_GRACE_SECONDS))
