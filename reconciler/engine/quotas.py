"""A namespace's limits in the scheduler: its quota (hard caps on what its active tasks hold at once)
and its budget (cpu-hours consumed over a rolling window). Pure.

``placement`` makes one ``NamespaceLimits`` per Namespace that has a quota or a budget, counts the
namespace's active tasks into it (``take``) and hands the limits to ``scheduler.Pipeline.place``,
which asks ``refusal`` as the last feasibility check, once a node fits (as Nomad's quota iterator),
and counts each placement in. A refusal is never a capacity shortage: it reserves no node against
other namespaces. ``cpu_seconds`` is one task's share of a budget, so a namespace's use is a sum
over its tasks (``budget_use``); `get namespaces` shows the same figure.

Tasks without a cpu request count one cpu against a budget (``UNREQUESTED_CPUS``). Against a quota
that caps cpus or memory they count nothing and cannot be placed: ``apply`` refuses such a Job or
Service, and one applied before the cap waits with a reason that says which field to set.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Hashable, Iterable, Protocol

from ..records import TaskRecord
from ..spec.namespace import NamespaceSpec
from ..views import size_text

UNREQUESTED_CPUS = 1.0  # what a task without template.resources.cpus counts against a budget
_EPSILON = 1e-9  # cpus are floats: 0.1 * 3 must fit a cap of 0.3


class Asks(Protocol):
    """What a request asks of its namespace (``scheduler.Request`` is one)."""

    namespace: str
    execution_type: str
    cpus: float | None
    memory: int | None
    owner: Hashable


@dataclass
class NamespaceLimits:
    """One namespace's caps (None: no cap) and what its active tasks hold; usage grows as a pass places."""

    name: str
    cpus: float | None = None
    memory: int | None = None
    tasks: int | None = None
    slots: dict[str, int] = field(default_factory=dict)  # execution type -> slots its tasks may hold
    cpus_used: float = 0.0
    memory_used: int = 0
    tasks_used: int = 0
    slots_used: Counter = field(default_factory=Counter)
    spent: str | None = None  # the budget's refusal when the namespace has used it up

    @classmethod
    def of(cls, name: str, spec: NamespaceSpec, used_cpu_seconds: float | None = None) -> "NamespaceLimits | None":
        """The limits of Namespace ``name`` (None: it has neither a quota nor a budget);
        ``used_cpu_seconds``: its ``budget_use``, if known now (else see ``spend``)."""
        quota = spec.quota
        if quota is None and spec.budget is None:
            return None
        out = cls(name)
        if quota is not None:
            out.cpus, out.memory, out.tasks, out.slots = quota.cpus, quota.memory_bytes(), quota.tasks, dict(quota.slots)
        if used_cpu_seconds is not None:
            out.spend(spec, used_cpu_seconds)
        return out

    def spend(self, spec: NamespaceSpec, used_cpu_seconds: float) -> None:
        """Its budget's use (``budget_use``): once it reaches the budget, no task of the namespace may start."""
        budget = spec.budget
        if budget is not None and used_cpu_seconds >= budget.cpuHours * 3600 - _EPSILON:
            self.spent = budget_refusal(self.name, used_cpu_seconds, budget.cpuHours, budget.window)

    def take(self, req: Asks) -> None:
        """Count an active task of the namespace (held before the pass, or placed by it)."""
        self.cpus_used += req.cpus or 0.0
        self.memory_used += req.memory or 0
        self.tasks_used += 1
        self.slots_used[req.execution_type] += 1

    def refusal(self, req: Asks) -> str | None:
        """Why one more task like ``req`` would break a cap or the budget, or None if it may run."""
        name = self.name
        if self.tasks is not None and self.tasks_used + 1 > self.tasks:
            return f"quota: {name} uses {self.tasks_used}/{self.tasks} tasks"
        if self.cpus is not None:
            if req.cpus is None:
                return unrequested(name, "cpus", req.owner)
            if self.cpus_used + req.cpus > self.cpus + _EPSILON:
                return _over(name, f"{self.cpus_used:g}/{self.cpus:g} cpus", self.cpus_used, self.cpus, f"{req.cpus:g}")
        if self.memory is not None:
            if req.memory is None:
                return unrequested(name, "memory", req.owner)
            if self.memory_used + req.memory > self.memory:
                return _over(name, f"{size_text(self.memory_used)}/{size_text(self.memory)} memory",
                             self.memory_used, self.memory, size_text(req.memory))
        cap = self.slots.get(req.execution_type)
        if cap is not None and self.slots_used[req.execution_type] + 1 > cap:
            return f"quota: {name} uses {self.slots_used[req.execution_type]}/{cap} {req.execution_type} slots"
        return self.spent


def _over(name: str, use: str, used: float, cap: float, asked: str) -> str:
    """``quota: team-a uses 8/8 cpus``; when the cap is not full, what the task asks makes the difference."""
    return f"quota: {name} uses {use}" + ("" if used >= cap - _EPSILON else f", a task asks {asked}")


def unrequested(namespace: str, what: str, owner: Hashable) -> str:
    """A task of a workload applied before its namespace capped ``what`` (cpus, memory) asks for none."""
    return (f"quota: {namespace} caps {what}; {owner_ref(owner)} requests none "
            f"(set template.resources.{what})")


def owner_ref(owner: Hashable) -> str:
    """``Job/x`` of an owner key (kind, namespace, name); any other owner as it is written."""
    if isinstance(owner, tuple) and len(owner) == 3:
        kind, _, name = owner
        return f"{getattr(kind, 'value', kind)}/{name}"
    return str(owner)


def budget_refusal(namespace: str, used_cpu_seconds: float, cpu_hours: float, window: str) -> str:
    """``budget: team-a used 500/500 cpu-hours in 30d``."""
    return f"budget: {namespace} used {cpu_hours_text(used_cpu_seconds)}/{cpu_hours:g} cpu-hours in {window}"


def cpu_hours_text(cpu_seconds: float) -> str:
    """Cpu-seconds as cpu-hours, to three significant digits (``0.25``, ``12.5``, ``500``)."""
    return f"{cpu_seconds / 3600:.3g}" if cpu_seconds < 3600 * 1000 else f"{cpu_seconds / 3600:.0f}"


def cpu_seconds(t: TaskRecord, cpus: float | None, since: float, now: float) -> float:
    """What task ``t`` consumed of its namespace's budget in the window ``[since, now]``: its requested
    cpus (``UNREQUESTED_CPUS`` without a request) times the part of its run time inside the window; a
    task still running counts up to ``now``."""
    start = t.started_at
    if start is None:
        return 0.0
    end = now if t.finished_at is None else t.finished_at
    run = min(end, now) - max(start, since)
    return run * (UNREQUESTED_CPUS if cpus is None else cpus) if run > 0 else 0.0


def budget_use(tasks: Iterable[TaskRecord], windows: dict[str, float], cpus_of: dict, now: float) -> dict[str, float]:
    """Cpu-seconds each namespace of ``windows`` (namespace -> its window in seconds) consumed within its
    window; ``cpus_of``: owner key -> the cpus its template requests (None, or missing: none)."""
    used = dict.fromkeys(windows, 0.0)
    since = {ns: now - w for ns, w in windows.items()}
    for t in tasks:
        ns = t.namespace
        if ns in used and t.started_at is not None and (t.finished_at is None or t.finished_at > since[ns]):
            used[ns] += cpu_seconds(t, cpus_of.get(t.owner_key), since[ns], now)
    return used
