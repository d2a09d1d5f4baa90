"""Placement bookkeeping for one pass: node views, requests, queue order, starts. Pure.

Called by ``plan`` last, once the Job and Service steps made their new tasks. Active tasks with a
node count against that node's capacity (``scheduler.NodeView``) and their namespace's quota
(``quotas.NamespaceLimits``); a placed task without a running container gets its idempotent Start
again; waiting tasks are queued (higher priority first, then first come first served; with the
``fair`` queue, within a priority, from the namespace furthest below its fair share: ``fairshare``)
and handed to the ``scheduler`` as ``Request``s, which carry what earlier attempts taught: the
sticky node of the last attempt, and the nodes where a host port was taken outside brokerctl. A
namespace whose budget is used up starts nothing (``quotas.budget_use``, over the tasks given, plus
the settled Jobs' part, ``settled.SettledUsage``, which also adds to the fair-share usage).
Each placement becomes a task update, an event and a Start. Owners are keyed by (kind, namespace,
name); a task's namespace adds its ``nodeSelector`` and ``mounts`` to what the task asks of a node,
and ``colocateWith`` names a resource of the task's own namespace. A task whose Secrets are not all
there (``secrets.secret_problem``) is neither queued nor started: it waits Pending with the reason.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from .actions import Event, Key, Plan, Start
from .containers import container_spec, task_mounts
from .fairshare import FAIR, FairQueue, QueuePolicy, usage
from .nodes import NodeStates
from .quotas import NamespaceLimits, budget_use
from .scheduler import NodeView, Placement, Request, default_pipeline
from .secrets import SecretIndex, secret_problem
from .settled import SettledUsage
from .tasks import set_task
from ..kinds import Kind, TaskPhase, TaskReason
from ..records import ResourceRecord, TaskRecord
from ..spec.models import NamespaceSpec, template_hash

PORT_RETRY_SECONDS = 60.0  # a node whose host port was taken outside brokerctl is avoided this long

Owner = Key  # (kind, namespace, name)
Slot = tuple[Owner, int]  # (owner, index): one Job completion or Service replica, across its attempts


def placer(p: Plan, current: dict[str, TaskRecord], owners: dict[Owner, ResourceRecord], nodes: NodeStates,
           now: float, store_id: str, mark_key: str, fencing: set[str] = frozenset(),
           namespaces: dict[str, ResourceRecord] | None = None) -> "Placer":
    """The node views with what the active tasks in ``current`` hold, made before the Job and Service
    steps: they size how many tasks they create by what is free (``room.Room``), and ``place`` then
    places on the same views. ``namespaces``: the Namespace records by name, whose mounts,
    nodeSelector, quota, budget and share apply to their tasks."""
    out = Placer(p, owners, nodes, now, store_id, mark_key, node_views(nodes, fencing), namespaces or {})
    out.count_usage([t for t in current.values() if t.active and t.owner_key in owners])
    return out


def place(placer: "Placer", current: dict[str, TaskRecord], secrets: SecretIndex | None = None,
          secrets_unreadable: str | None = None, queue: QueuePolicy = QueuePolicy(),
          settled_usage: SettledUsage | None = None) -> None:
    """Restart placed tasks without a container, place the waiting ones (``current`` now holds the
    tasks the Job and Service steps made). ``secrets``: the Secrets that exist
    (``secrets.secret_index``); ``secrets_unreadable``: why the controller cannot decrypt them, if it
    cannot; ``queue``: the order of the waiting tasks (``fairshare``); ``settled_usage``: what the
    tasks of settled Jobs, not in ``current``, add to budget use and fair-share usage."""
    p, owners, now = placer.p, placer.owners, placer.now
    placer.settled_usage = settled_usage
    placer.secrets, placer.secrets_unreadable = secrets or {}, secrets_unreadable
    history = _History.of(p, [t for t in current.values() if not t.active and t.node], placer.specs, now)
    active = sorted((t for t in current.values() if t.active and t.owner_key in owners),
                    key=lambda t: (t.created_at, t.id))
    waiting = placer.restart_or_queue(active)
    if waiting:
        placer.check_budgets(current.values(), {t.namespace for t in waiting})
        placer.place(waiting, history, _lost_here(p, current), queue, current.values())


def node_views(nodes: NodeStates, fencing: set[str]) -> list[NodeView]:
    """What the scheduler knows of each node, in name order, before this pass's placements."""
    views = []
    for node in sorted(nodes.records.values(), key=lambda n: n.name):
        obs = nodes.snapshot.nodes.get(node.name)
        status = nodes.statuses[node.name]
        spec = node.model.spec
        schedulable = not spec.unschedulable and node.drain_deadline is None  # a drain lasts until uncordon
        views.append(NodeView(node.name, ready=bool(obs and obs.ready), schedulable=schedulable,
                              fencing=node.name in fencing,
                              slots=status.get("slots", {}), used=Counter(), labels=dict(node.labels),
                              cpus=status.get("cpus"), memory=status.get("memory"),
                              allowed_mounts=spec.mount_rules(), allowed_networks=frozenset(spec.allowedNetworks)))
    return views


def request(t: TaskRecord, spec, sticky_node: str | None = None, colocate: frozenset | None = None,
            avoid: frozenset = frozenset(), namespace: NamespaceSpec | None = None) -> Request:
    """What task ``t`` of a resource with ``spec`` asks of a node; ``namespace``: its Namespace's spec,
    whose nodeSelector must hold too (with the task's own: a key both name with two values matches no
    node) and whose mounts the node must allow."""
    return template_request(t.owner_key, spec, namespace, t.id, sticky_node=sticky_node, colocate=colocate,
                            avoid=avoid)


def template_request(owner: Owner, spec, namespace: NamespaceSpec | None, task_id: str = "",
                     **pins) -> Request:
    """What any task of ``owner`` (a resource with ``spec``, in a Namespace with spec ``namespace``)
    asks of a node; ``pins``: what one task's history adds (sticky node, colocation, nodes to avoid)."""
    res = spec.template.resources
    selector = set(spec.nodeSelector.items()) | set(namespace.nodeSelector.items() if namespace else ())
    mounts = task_mounts(spec.template, namespace)
    return Request(
        task_id, spec.executionType, cpus=res.cpus, memory=res.memory_bytes(), namespace=owner[1],
        priority=spec.priority,
        selector=tuple(sorted(selector)), node_name=spec.nodeName, colocate_with=spec.colocateWith,
        placement=spec.placement.value,
        bind_mounts=tuple((m.source, m.readOnly) for m in mounts if m.source.startswith("/")),
        network=spec.template.network,
        owner=owner, max_per_node=getattr(spec, "maxPerNode", None),
        ports=tuple((b.ip, b.host_port, b.proto) for b in spec.template.port_bindings() if b.host_port),
        **pins,
    )


def colocated(ref: str, namespace: str) -> Owner:
    """The owner ``colocateWith: Job/NAME`` names: that resource of the task's own namespace."""
    kind, _, name = ref.partition("/")
    return Kind(kind), namespace, name


@dataclass
class _History:
    """What finished attempts (most rows, at scale) teach the next placement of their slot."""

    last_node: dict[Slot, str] = field(default_factory=dict)  # node of the latest attempt (sticky owners)
    port_taken: dict[Slot, set[str]] = field(default_factory=lambda: defaultdict(set))  # nodes to avoid a while

    @classmethod
    def of(cls, p: Plan, finished: list[TaskRecord], specs: dict, now: float) -> "_History":
        """``finished``: attempts that are over and had a node."""
        out = cls()
        latest: dict[Slot, tuple] = {}  # (created_at, id) of the attempt in last_node
        for t in finished:
            key = t.owner_key
            spec = specs.get(key)
            if spec is not None and spec.sticky and latest.get((key, t.index), ()) < (t.created_at, t.id):
                latest[(key, t.index)] = (t.created_at, t.id)
                out.last_node[(key, t.index)] = t.node
            if t.reason == TaskReason.PORT_IN_USE and t.finished_at and now < t.finished_at + PORT_RETRY_SECONDS:
                out.port_taken[(key, t.index)].add(t.node)
                p.wake_at(t.finished_at + PORT_RETRY_SECONDS)
        return out


def _lost_here(p: Plan, current: dict[str, TaskRecord]) -> dict[Slot, tuple[str, str]]:
    """(owner, index) -> (task, node) for tasks lost with their node this pass: their replacements say so."""
    return {(current[tid].owner_key, current[tid].index): (tid, current[tid].node)
            for tid, ch in p.task_updates.items() if ch.get("reason") == TaskReason.NODE_LOST and tid in current}


class Placer:
    """One pass's placement: the node views and namespace limits as the active tasks fill them, then
    the restarts and placements (``placer``, ``place``)."""

    def __init__(self, p: Plan, owners: dict[Owner, ResourceRecord], nodes: NodeStates, now: float,
                 store_id: str, mark_key: str, views: list[NodeView], namespaces: dict[str, ResourceRecord]):
        self.p, self.owners, self.nodes, self.now = p, owners, nodes, now
        self.store_id, self.mark_key = store_id, mark_key
        self.specs = {key: res.model.spec for key, res in owners.items()}
        self.templates = {key: template_hash(spec) for key, spec in self.specs.items() if key[0] is Kind.SERVICE}
        self.namespaces = {name: ns.model.spec for name, ns in namespaces.items()}
        self.limits = {name: limits for name, spec in self.namespaces.items()
                       if (limits := NamespaceLimits.of(name, spec)) is not None}
        self.views = views
        self.by_name = {v.name: v for v in views}
        self.running_on: dict[Owner, set[str]] = defaultdict(set)  # owner -> nodes where its active tasks are
        self.collecting = {c.task_id for c in p.collects}
        self.secrets: SecretIndex = {}
        self.secrets_unreadable: str | None = None
        self._secret_problems: dict[Owner, str | None] = {}  # per owner: its tasks share one template
        self.settled_usage: SettledUsage | None = None

    def count_usage(self, active: list[TaskRecord]) -> None:
        """Active tasks with a node hold its capacity (a replica being replaced no longer counts
        toward its Service's spread) and their namespace's quota. A container seen exited holds
        neither: its slot goes to the next task in this pass, while the old one is collected."""
        # What a task holds (slot type, cpus, memory, owner, host ports) is its owner's: one request
        # per owner, not one per active task, which at 10,000 running tasks was most of a pass.
        holds: dict[Owner, Request] = {}
        for t in active:
            if not t.node:
                continue
            key = t.owner_key
            self.running_on[key].add(t.node)
            if t.id in self.collecting:
                continue
            limits = self.limits.get(t.namespace)
            node = self.by_name.get(t.node)
            if node is None and limits is None:
                continue
            req = holds.get(key)
            if req is None:
                req = holds[key] = request(t, self.specs[key])
            if node is not None:
                replaced = key in self.templates and t.template_hash != self.templates[key]
                node.take(req, spread=not replaced)
            if limits is not None:
                limits.take(req)

    def check_budgets(self, tasks, waiting_in: set[str]) -> None:
        """The budget use of each namespace that has a budget and tasks waiting (``quotas.budget_use``:
        one sum over the tasks, history included, and the settled Jobs' part; only where it can refuse
        something)."""
        windows = {ns: spec.budget.window_seconds() for ns, spec in self.namespaces.items()
                   if spec.budget is not None and ns in waiting_in}
        if not windows:
            return
        cpus = {key: spec.template.resources.cpus for key, spec in self.specs.items() if key[1] in windows}
        for ns, used in budget_use(tasks, windows, cpus, self.now).items():
            if self.settled_usage is not None:
                used += self.settled_usage.budget_use(ns, windows[ns], self.now)
            self.limits[ns].spend(self.namespaces[ns], used)

    def restart_or_queue(self, active: list[TaskRecord]) -> list[TaskRecord]:
        """Start placed tasks again where needed; return those waiting for a node, in queue order."""
        # Tasks the Job and Service steps stopped this pass (scale-down, Job done or failed) still
        # show as active here. Their containers keep their capacity until removed, but they must not
        # be (re)started.
        stopped = {tid for tid, ch in self.p.task_updates.items() if "phase" in ch and not ch["phase"].active}
        waiting = []
        for t in active:
            owner = self.owners[t.owner_key]
            if t.id in stopped:
                continue
            if t.node:
                if t.phase is TaskPhase.PENDING and t.id not in self.collecting:
                    self.restart(t, owner)
            elif t.not_before > self.now:
                self.p.wake_at(t.not_before)
            elif owner.deleted_at is None:
                waiting.append(t)
        # Higher priority first, then first come first served.
        waiting.sort(key=lambda t: (-self.specs[t.owner_key].priority, t.created_at, t.id))
        return waiting

    def restart(self, t: TaskRecord, res: ResourceRecord) -> None:
        """A placed task without a running container: (re)issue the idempotent start if its node answers."""
        node = self.nodes.records.get(t.node)
        obs = self.nodes.snapshot.nodes.get(t.node)
        if node is None or obs is None or obs.containers is None or res.deleted_at is not None:
            return
        seen = self.nodes.snapshot.by_task.get(t.id)
        if seen is None or seen.container.state == "created":
            if self.waits_for_secrets(t):
                return
            want = template_hash(res.model.spec)
            if seen is None and t.template_hash and t.template_hash != want:  # no container yet: made from today's template
                t = set_task(self.p, t, template_hash=want)
            self.p.starts.append(Start(t.id, t.node, container_spec(t, res, self.store_id, self.mark_key, node,
                                                                    self.namespaces.get(t.namespace))))

    def waits_for_secrets(self, t: TaskRecord) -> bool:
        """Whether ``t`` names a Secret or key that is not there (or cannot be read): it then stays
        Pending with the reason, told once in an event."""
        key = t.owner_key
        if key not in self._secret_problems:
            self._secret_problems[key] = secret_problem(self.specs[key].template, t.namespace, self.secrets,
                                                        self.secrets_unreadable)
        problem = self._secret_problems[key]
        if problem is None:
            return False
        if t.message != problem:
            set_task(self.p, t, reason=TaskReason.SECRET_UNAVAILABLE, message=problem)
            self.p.events.append(Event(t.owner_kind.value, t.owner_name, TaskReason.SECRET_UNAVAILABLE.value,
                                       f"{t.id}: {problem}", "Warning", t.id, t.namespace))
        return True

    def schedule(self, requests: list[Request], queue: QueuePolicy, tasks) -> list[Placement]:
        """The scheduler's placements, in the order the queue offered the requests: FIFO (priority,
        then first come), or fair share once tasks of two namespaces wait."""
        pipeline = default_pipeline()
        waiting_in = {r.namespace for r in requests}
        if queue.order != FAIR or len(waiting_in) < 2:
            return pipeline.place(requests, self.views, self.limits)
        used = usage(tasks, waiting_in, self.now, queue, self.collecting)
        if self.settled_usage is not None:
            used = {ns: u + self.settled_usage.fair_usage(ns, self.now) for ns, u in used.items()}
        shares = {ns: spec.share for ns, spec in self.namespaces.items() if ns in waiting_in}
        fair = FairQueue(requests, used, shares, queue.commitment)
        return pipeline.place(fair, self.views, self.limits, on_placed=fair.placed)

    def requests(self, waiting: list[TaskRecord], history: _History) -> list[Request]:
        ready = {v.name for v in self.views if v.ready and v.schedulable}
        out = []
        for t in waiting:
            key = t.owner_key
            spec = self.specs[key]
            sticky = history.last_node.get((key, t.index)) if spec.sticky else None
            colocate = frozenset(self.running_on.get(colocated(spec.colocateWith, t.namespace), ())) \
                if spec.colocateWith else None
            out.append(request(t, spec, sticky_node=sticky if sticky in ready else None, colocate=colocate,
                               avoid=frozenset(history.port_taken.get((key, t.index), ())),
                               namespace=self.namespaces.get(t.namespace)))
        return out

    def place(self, waiting: list[TaskRecord], history: _History, lost_here: dict, queue: QueuePolicy,
              tasks) -> None:
        """Ask the scheduler for a node for each waiting task, in queue order; record where it goes, or
        why nowhere. ``tasks``: every task this pass sees, for the fair-share usage."""
        waiting = [t for t in waiting if not self.waits_for_secrets(t)]
        placements = self.schedule(self.requests(waiting, history), queue, tasks)
        by_id = {t.id: t for t in waiting}
        for placed in placements:
            t = by_id[placed.task_id]
            if placed.node is None:
                if t.message != placed.reason:
                    set_task(self.p, t, reason=TaskReason.UNSCHEDULABLE, message=placed.reason)
                    self.p.events.append(Event(t.owner_kind.value, t.owner_name, "FailedScheduling",
                                               f"{t.id}: {placed.reason}", "Warning", t.id, t.namespace))
                continue
            res = self.owners[t.owner_key]
            t = set_task(self.p, t, node=placed.node, scheduled_at=self.now, reason=TaskReason.SCHEDULED,
                         message=placed.reason)
            gone = lost_here.get((t.owner_key, t.index))
            moved = f"; replaces {gone[0]} from lost node {gone[1]}" if gone else ""
            self.p.events.append(Event(t.owner_kind.value, t.owner_name, "Scheduled",
                                       f"{t.id} on {placed.node} ({placed.reason}{moved})", task_id=t.id,
                                       namespace=t.namespace))
            start = container_spec(t, res, self.store_id, self.mark_key, self.nodes.records[placed.node],
                                   self.namespaces.get(t.namespace))
            self.p.starts.append(Start(t.id, placed.node, start))
