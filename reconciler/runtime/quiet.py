"""Whether a pass may skip planning: nothing it would plan from changed since a pass that did nothing.

Called by ``runtime.controller`` once per pass, between observing and planning. ``plan`` is pure:
given the inputs of the last pass it returns the same plan, except where time alone changes it,
which it says itself with ``Plan.next_wake`` (a backoff, a timeout, a deadline, a node counting
towards Lost, a TTL). So when the last plan did nothing, the store gave no changed row since
(``Ledger.rows_read``), every node was seen as before (the same answer to its probe, the same
containers), and its wake time has not come, this pass's plan would do nothing too, and the
controller does not make it. At steady state (10,000 containers running, nothing changing) a pass
so costs its observation, not a plan over every task.

Two things the planner reads move with time and set no wake: a namespace's budget window (what
it spent slides out) and fair-share usage (it decays). Both matter only for tasks waiting for a
node, so a pass after one that left any task waiting always plans.
"""

from __future__ import annotations

from ..engine.actions import Key, Plan
from ..kinds import TaskPhase
from ..records import NodeObs, Snapshot, TaskRecord


def seen_as(obs: NodeObs) -> tuple:
    """What the planner reads of one node's observation. The time of its last good probe matters
    only while its probes fail (``engine.nodes``: towards Lost); a reused list is the same tuple."""
    failing = None if obs.ready else (obs.failures, obs.last_ok, obs.failing_since)
    return (obs.ready, obs.message, obs.docker_version, obs.cpus, obs.memory, obs.daemon_id, obs.containers,
            failing)


def did_nothing(p: Plan, settled: frozenset[Key]) -> bool:
    """Whether plan ``p`` (given ``settled``) changes nothing: no row, status, event or Docker call,
    and no Job newly settled."""
    return not (p.new_tasks or p.task_updates or p.statuses or p.events or p.purges or p.rollbacks
                or p.docker_actions or p.settled != settled)


class Quiet:
    """The inputs of the last pass that did nothing, to tell whether the next may skip its plan."""

    def __init__(self):
        self.forget()

    def forget(self) -> None:
        """The next pass plans (a new term of leadership, a pass that failed, one that did something)."""
        self._seen: dict[str, tuple] | None = None
        self._unreadable: str | None = None
        self._wake: float | None = None

    def remember(self, p: Plan, snapshot: Snapshot, tasks: list[TaskRecord], settled: frozenset[Key],
                 unreadable: str | None) -> None:
        """After planning: keep this pass's inputs if its plan ``p`` did nothing and left no task
        waiting for a node. Call before anything adds to ``p.next_wake`` (the plan's own wake)."""
        if not did_nothing(p, settled) or any(t.phase is TaskPhase.PENDING and t.node is None for t in tasks):
            self.forget()
            return
        self._seen = {name: seen_as(obs) for name, obs in snapshot.nodes.items()}
        self._unreadable, self._wake = unreadable, p.next_wake

    def holds(self, rows_read: int, snapshot: Snapshot, unreadable: str | None) -> bool:
        """Whether this pass may skip planning: the store gave no changed row (``rows_read``), the
        nodes are seen as before, the Secrets as readable, and the last plan's wake has not come."""
        if self._seen is None or rows_read or unreadable != self._unreadable:
            return False
        if self._wake is not None and snapshot.taken_at >= self._wake:
            return False
        nodes = snapshot.nodes
        return nodes.keys() == self._seen.keys() and all(seen_as(nodes[n]) == s for n, s in self._seen.items())

    def skipped(self) -> Plan:
        """The plan of a pass that skipped planning: nothing, and the last plan's wake."""
        return Plan(next_wake=self._wake)
