"""Placement: feasibility checks, then scoring, then a deterministic pick. Pure.

Called by ``plan`` with the tasks waiting for a node (in queue order) and a view of every node.
Each check either passes a node or names why it cannot take the task; a task no node can take
stays Pending with a summary such as ``0/3 nodes: 2 no free cpu slot, 1 not ready``. The
pipeline is assembled in ``default_pipeline``; later checks (selectors, resources, pins) and
scorers (binpack) plug in there.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable


@dataclass
class NodeView:
    """What placement needs to know about one node; ``used`` is updated as tasks are placed."""

    name: str
    ready: bool
    schedulable: bool
    slots: dict[str, int]
    used: Counter = field(default_factory=Counter)

    def free(self, execution_type: str) -> int:
        return self.slots.get(execution_type, 0) - self.used[execution_type]


@dataclass(frozen=True)
class Request:
    """One task asking for a node."""

    task_id: str
    execution_type: str


@dataclass(frozen=True)
class Placement:
    task_id: str
    node: str | None
    reason: str  # why this node, or why none


Check = Callable[[Request, NodeView], str | None]  # None: feasible, else the rejection reason
Scorer = Callable[[Request, NodeView], float]  # lower is better


def check_ready(req: Request, node: NodeView) -> str | None:
    return None if node.ready else "not ready"


def check_schedulable(req: Request, node: NodeView) -> str | None:
    return None if node.schedulable else "unschedulable"


def check_slot(req: Request, node: NodeView) -> str | None:
    if req.execution_type not in node.slots:
        return f"no {req.execution_type} slots"
    return None if node.free(req.execution_type) > 0 else f"no free {req.execution_type} slot"


def score_spread(req: Request, node: NodeView) -> float:
    """Least busy first: fraction of this execution type's slots in use."""
    total = node.slots.get(req.execution_type, 0)
    return node.used[req.execution_type] / total if total else 1.0


@dataclass
class Pipeline:
    checks: list[Check]
    scorer: Scorer

    def place_one(self, req: Request, nodes: Iterable[NodeView]) -> Placement:
        rejections: Counter = Counter()
        best: tuple[float, str, NodeView] | None = None
        count = 0
        for node in nodes:
            count += 1
            reason = next((r for check in self.checks if (r := check(req, node))), None)
            if reason:
                rejections[reason] += 1
                continue
            key = (self.scorer(req, node), node.name, node)
            if best is None or key[:2] < best[:2]:
                best = key
        if best is None:
            return Placement(req.task_id, None, summarise(count, rejections))
        node = best[2]
        node.used[req.execution_type] += 1
        return Placement(req.task_id, node.name, f"least busy of {count - sum(rejections.values())} feasible")

    def place(self, requests: Iterable[Request], nodes: list[NodeView]) -> list[Placement]:
        """Place in order; each placement consumes a slot seen by the next request."""
        return [self.place_one(req, nodes) for req in requests]


def summarise(total: int, rejections: Counter) -> str:
    if total == 0:
        return "0/0 nodes: no nodes; apply a Node manifest"
    parts = ", ".join(f"{n} {reason}" for reason, n in sorted(rejections.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"0/{total} nodes: {parts}"


def default_pipeline() -> Pipeline:
    return Pipeline(checks=[check_ready, check_schedulable, check_slot], scorer=score_spread)
