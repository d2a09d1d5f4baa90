"""The vocabulary of a reconcile pass: the Plan and the actions in it.

Produced by ``plan`` and the per-resource steps it calls (``jobs``, ``services``, ``nodes``,
``matching``, ``placement``), all pure; carried out by ``runtime.act``. Plain dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from ..kinds import Kind
from ..records import ContainerSpec, TaskRecord

STOP_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class Start:
    """Make sure the task's container exists on ``node`` and is running."""

    task_id: str
    node: str
    spec: ContainerSpec


@dataclass(frozen=True)
class Collect:
    """The container finished: record exit code and output, then remove it."""

    task_id: str
    node: str
    container_id: str


@dataclass(frozen=True)
class Remove:
    """Stop (SIGTERM, then kill after ``grace``) and remove a container."""

    node: str
    container_id: str
    task_id: str | None
    reason: str
    grace: float = STOP_GRACE_SECONDS
    keep_output: bool = False  # save the container's output on the task before removing it


@dataclass(frozen=True)
class Event:
    kind: str
    name: str
    reason: str
    message: str
    type: str = "Normal"
    task_id: str | None = None
    namespace: str = ""  # of a Job's or Service's event; '' for a cluster-scoped object


class Rollback(NamedTuple):
    """Put a stable template back into a Service's spec (``autoRollback``)."""

    service: str
    template: str  # the template hash to return to
    why: str
    namespace: str


Key = tuple[Kind, str, str]  # a resource's identity: (kind, namespace, name); namespace '' if cluster-scoped


@dataclass
class Plan:
    new_tasks: list[TaskRecord] = field(default_factory=list)
    task_updates: dict[str, dict] = field(default_factory=dict)
    statuses: list[tuple[Kind, str, str, dict]] = field(default_factory=list)  # (kind, namespace, name, status)
    purges: list[Key] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    starts: list[Start] = field(default_factory=list)
    collects: list[Collect] = field(default_factory=list)
    removals: list[Remove] = field(default_factory=list)
    rollbacks: list[Rollback] = field(default_factory=list)
    next_wake: float | None = None
    # Jobs that are over and were left untouched by this pass: their tasks cannot change what the next
    # pass does until something about the Job changes, so the caller may stop giving them (``plan``).
    settled: set[Key] = field(default_factory=set)

    def update(self, task_id: str, **changes) -> None:
        self.task_updates.setdefault(task_id, {}).update(changes)

    def wake_at(self, when: float) -> None:
        self.next_wake = when if self.next_wake is None else min(self.next_wake, when)

    @property
    def docker_actions(self) -> int:
        return len(self.starts) + len(self.collects) + len(self.removals)
