"""Placement: feasibility checks, then scoring, then a deterministic pick. Pure.

Called by ``plan`` with the tasks waiting for a node (in queue order: priority, then FIFO) and
a view of every node. Each check either passes a node or names why it cannot take the task; a
task no node can take stays Pending with a summary such as
``0/3 nodes: 2 no free cpu slot, 1 not ready``. The pipeline is assembled in
``default_pipeline``: checks (ready, schedulable, pins, selector, mounts, network, slot, resources,
maxPerNode, host ports) and one scorer per placement mode (``spread``: fewest tasks of the same
resource, then least busy; ``binpack``: most busy first).

Starvation: a task refused on some nodes only for want of free capacity (a ``Shortage``)
reserves those nodes for this pass: later tasks of the same execution type may not take them
(``Pipeline.place``), so a stream of small tasks cannot keep a large or early one waiting forever.

Namespace limits (``quotas.NamespaceLimits``: quota caps and a spent budget) are the last check,
asked once a node fits, as Nomad's quota iterator: a task no node can take keeps its node summary
(followed by the quota's refusal when there is one), and a task refused by its namespace's limits
waits with their reason (``quota: team-a uses 8/8 cpus``) and reserves no node, since free capacity
would not let it run. The order requests come in is the caller's: priority then first come, or the
fair-share queue (``fairshare.FairQueue``), told of each placement through ``on_placed``.
"""

from __future__ import annotations

import heapq
import operator
import posixpath
from collections import Counter
from dataclasses import dataclass, field, fields, replace
from typing import Callable, Hashable, Iterable

from .quotas import NamespaceLimits
from ..spec.models import MountRule, Placement as PlacementMode, guarded_network, path_below, ports_clash

@dataclass
class NodeView:
    """What placement needs to know about one node; usage counters grow as tasks are placed."""

    name: str
    ready: bool
    schedulable: bool
    slots: dict[str, int]
    used: Counter = field(default_factory=Counter)
    labels: dict[str, str] = field(default_factory=dict)
    cpus: float | None = None  # what the host reports; None: unknown, not checked
    memory: int | None = None
    cpus_used: float = 0.0
    memory_used: int = 0
    allowed_mounts: tuple[MountRule, ...] = ()  # host paths tasks may bind-mount (allowedMounts)
    allowed_networks: frozenset[str] = frozenset()  # "host", "container" (allowedNetworks)
    fencing: bool = False  # stale containers are being stopped there this pass: no new work yet
    owners: Counter = field(default_factory=Counter)  # owner (Request.owner) -> its tasks on this node
    ports: set = field(default_factory=set)  # (host ip, host port, proto) published by tasks here

    def free(self, execution_type: str) -> int:
        return self.slots.get(execution_type, 0) - self.used[execution_type]

    def take(self, req: "Request", spread: bool = True) -> None:
        """Count a task placed here; ``spread=False``: a replica being replaced, which uses capacity
        but no longer counts toward its Service's spread or maxPerNode."""
        self.used[req.execution_type] += 1
        self.cpus_used += req.cpus or 0.0
        self.memory_used += req.memory or 0
        self.owners[req.owner] += spread
        self.ports.update(req.ports)


@dataclass(frozen=True)
class Request:
    """One task asking for a node."""

    task_id: str
    execution_type: str
    cpus: float | None = None
    memory: int | None = None
    selector: tuple[tuple[str, str], ...] = ()
    node_name: str | None = None
    colocate: frozenset[str] | None = None  # nodes where the colocateWith target runs
    colocate_with: str | None = None
    sticky_node: str | None = None  # previous attempt's node, when it is Ready
    placement: str = "spread"
    bind_mounts: tuple[tuple[str, bool], ...] = ()  # (host path, read-only) the task bind-mounts
    network: str | None = None  # template.network
    owner: Hashable = ""  # the owner's key, (kind, namespace, name): spread counts its own tasks on a node first
    max_per_node: int | None = None
    ports: tuple[tuple[str, int, str], ...] = ()  # (host ip, host port, proto) the task publishes
    avoid: frozenset[str] = frozenset()  # nodes where a host port it publishes is taken outside brokerctl
    namespace: str = ""  # whose quota and budget it counts against (``quotas.NamespaceLimits``)
    priority: int = 0  # the owner's; the queue's first key


@dataclass(frozen=True)
class Placement:
    task_id: str
    node: str | None
    reason: str  # why this node, or why none
    waits_on: frozenset[str] = frozenset()  # nodes that refused it only for want of free capacity


class Shortage(str):
    """A rejection that free capacity would cure (no free slot, not enough cpu or memory left);
    any other rejection is a standing mismatch. The text is the reason, as for any rejection."""

    __slots__ = ()


Check = Callable[[Request, NodeView], str | None]  # None: feasible, else the rejection reason
Scorer = Callable[[Request, NodeView], tuple]  # lower is better


def check_ready(req: Request, node: NodeView) -> str | None:
    if not node.ready:
        return "not ready"
    return "fencing stale containers" if node.fencing else None


def check_schedulable(req: Request, node: NodeView) -> str | None:
    return None if node.schedulable else "unschedulable"


def check_pins(req: Request, node: NodeView) -> str | None:
    if req.node_name is not None and node.name != req.node_name:
        return f"not node {req.node_name} (nodeName)"
    if req.sticky_node is not None and node.name != req.sticky_node:
        return f"not node {req.sticky_node} (sticky)"
    if req.colocate is not None and node.name not in req.colocate:
        return f"not where {req.colocate_with} runs"
    return None


def check_selector(req: Request, node: NodeView) -> str | None:
    return None if all(node.labels.get(k) == v for k, v in req.selector) else "selector mismatch"


def check_mounts(req: Request, node: NodeView) -> str | None:
    """Bind mounts only of the node's allowedMounts: no docker.sock or / unless an operator said so.

    Paths compare lexically, and that is safe because of what may be mounted: an exact entry is
    only that path, and a path below an entry only with ``subpaths`` and read-only, so no task can
    write where a symbolic link would be followed (``NodeSpec`` keeps writable entries from lying
    below others). The daemon resolves only links the operator made."""
    for source, read_only in req.bind_mounts:
        path = posixpath.normpath(source)
        covering = [r for r in node.allowed_mounts if path == r.path or (r.subpaths and path_below(path, r.path))]
        if not covering:
            return (f"bind mount {source} not in allowedMounts "
                    "(exact paths; a subpath needs {path, subpaths: true} and readOnly)")
        if not read_only and all(r.read_only for r in covering):
            rule = covering[0]
            allows = "allows subpaths read-only" if rule.subpaths else "is read-only"
            return f"bind mount {source} must be readOnly (allowedMounts {rule.path} {allows})"
    return None


def check_network(req: Request, node: NodeView) -> str | None:
    """``host`` and ``container:X`` reach past the container (the daemon's local API, another
    workload's namespace): only on nodes that list them in allowedNetworks."""
    need = guarded_network(req.network)
    if need is not None and need not in node.allowed_networks:
        return f"network {req.network} not in allowedNetworks"
    return None


def check_avoid(req: Request, node: NodeView) -> str | None:
    return "host port in use outside brokerctl" if node.name in req.avoid else None


def check_slot_type(req: Request, node: NodeView) -> str | None:
    return None if req.execution_type in node.slots else f"no {req.execution_type} slots"


def check_free_slot(req: Request, node: NodeView) -> str | None:
    return None if node.free(req.execution_type) > 0 else Shortage(f"no free {req.execution_type} slot")


def check_resources(req: Request, node: NodeView) -> str | None:
    if req.cpus and node.cpus is not None:
        if req.cpus > node.cpus:
            return "cpu request exceeds node"
        if node.cpus - node.cpus_used < req.cpus - 1e-9:
            return Shortage("insufficient cpu")
    if req.memory and node.memory is not None:
        if req.memory > node.memory:
            return "memory request exceeds node"
        if node.memory - node.memory_used < req.memory:
            return Shortage("insufficient memory")
    return None


def check_max_per_node(req: Request, node: NodeView) -> str | None:
    if req.max_per_node is not None and node.owners[req.owner] >= req.max_per_node:
        return f"maxPerNode {req.max_per_node} reached"
    return None


def check_ports(req: Request, node: NodeView) -> str | None:
    for want in req.ports:
        if any(ports_clash(want, used) for used in node.ports):
            return f"host port {want[1]}/{want[2]} in use"
    return None


def _busy(req: Request, node: NodeView) -> float:
    total = node.slots.get(req.execution_type, 0)
    return node.used[req.execution_type] / total if total else 1.0


def score_spread(req: Request, node: NodeView) -> tuple[int, float]:
    """Fewest tasks of the same resource first (replicas spread over nodes), then least busy."""
    return (node.owners[req.owner] if req.owner else 0), _busy(req, node)


def score_binpack(req: Request, node: NodeView) -> tuple[int, float]:
    """Most busy first: fill a node before starting on the next."""
    return 0, -_busy(req, node)


@dataclass
class Pipeline:
    """``static`` checks depend only on the request and the node; ``dynamic`` ones on usage,
    which only grows during a pass, so a node they reject stays rejected for that pass."""

    static: list[Check]
    dynamic: list[Check]
    scorers: dict[str, Scorer]

    def place_one(self, req: Request, nodes: Iterable[NodeView], reserved: dict[str, str] | None = None,
                  limits: dict[str, NamespaceLimits] | None = None) -> Placement:
        """Best feasible node for ``req`` by a full scan; ``reserved``: node -> earlier task holding it;
        ``limits``: namespace -> its quota and budget, checked last (see the module)."""
        rejections: Counter = Counter()
        waits_on = []
        scorer = self.scorers.get(req.placement, self.scorers["spread"])
        best: tuple[float, str, NodeView] | None = None
        count = eligible = 0
        for node in nodes:
            count += 1
            reason = next((r for check in self.static if (r := check(req, node))), None)
            if reason is None:
                eligible += 1
                reason = next((r for check in self.dynamic if (r := check(req, node))), None)
            if reason is None and reserved and node.name in reserved:
                reason = "reserved for an earlier task"
            if reason:
                rejections[reason] += 1
                if isinstance(reason, Shortage):
                    waits_on.append(node.name)
                continue
            key = (scorer(req, node), node.name, node)
            if best is None or key[:2] < best[:2]:
                best = key
        ns = limits.get(req.namespace) if limits else None
        refused = ns.refusal(req) if ns is not None else None
        if best is None:
            return _no_node(req, summarise(count, rejections), frozenset(waits_on), refused)
        if refused:
            return Placement(req.task_id, None, refused)
        node = best[2]
        node.take(req)
        if ns is not None:
            ns.take(req)
        return Placement(req.task_id, node.name, _why(req, eligible))

    def capacity(self, req: Request, nodes: Iterable[NodeView]) -> int:
        """How many requests like ``req`` the ``nodes`` could take now: on each node that passes the
        static checks, its free slots of the type, as far as its free cpu and memory, ``maxPerNode``
        and host ports (one task a node) allow. Reservations and namespace limits are not asked:
        this sizes what is worth creating, it places nothing."""
        total = 0
        for node in nodes:
            if not any(check(req, node) for check in self.static):
                total += _fits(req, node)
        return total

    def place(self, requests: Iterable[Request], nodes: list[NodeView],
              limits: dict[str, NamespaceLimits] | None = None,
              on_placed: Callable[[Request], None] | None = None) -> list[Placement]:
        """Place in queue order; each placement consumes capacity (and its namespace's quota) seen
        by the next request. Returns the placements in the order the requests came.

        Gives the same answers as ``place_one`` per request, but keeps, per distinct request
        shape, a heap of the nodes that pass the static checks, so a placement costs O(log n)
        instead of a scan. A request refused only for want of capacity reserves the nodes that
        refused it against later requests of its execution type, so it is first in line when
        they free up. ``on_placed`` hears of each placement before the next request is drawn (a
        fair-share queue charges the namespace with it).
        """
        by_name = {n.name: n for n in nodes}
        reserved: dict[str, dict[str, str]] = {}
        heaps: dict[tuple, _Heap] = {}
        eligible: dict[Request, list[str]] = {}  # static part of a shape -> names of the nodes that pass
        binpack_heaps: dict[str, list[_Heap]] = {}
        out = []
        for req in requests:
            held = reserved.setdefault(req.execution_type, {})
            shape = _shape(req)
            heap = heaps.get(shape)
            if heap is None:
                heap = heaps[shape] = _Heap(self, replace(req, task_id="", namespace="", priority=0, owner=shape[1]),
                                             nodes, eligible)
                if req.placement == PlacementMode.BINPACK:
                    for name in heap.names:
                        binpack_heaps.setdefault(name, []).append(heap)
            heap = heap.wide.get(req.owner, heap)
            ns = limits.get(req.namespace) if limits else None
            refused = ns.refusal(req) if ns is not None else None
            if heap.failed is None:
                node, heap = heap.best(req, by_name, held, nodes, eligible)
                if node is None:  # no node fits this shape for the rest of the pass: say why once
                    heap.failed = self.place_one(req, nodes, held)
            if heap.failed is not None:
                out.append(heap.unplaced(req, held, refused))
                continue
            if refused:  # a node fits, but the namespace's use only grows during the pass
                out.append(Placement(req.task_id, None, refused))
                continue
            node.take(req)
            if ns is not None:
                ns.take(req)
            heap.took(req, node)
            for other in binpack_heaps.get(node.name, ()):
                if other is not heap:  # its score for this node just improved
                    other.push(other.req, node)
            out.append(Placement(req.task_id, node.name, _why(req, heap.size)))
            if on_placed is not None:
                on_placed(req)
        return out


def _fits(req: Request, node: NodeView) -> int:
    """How many requests like ``req`` fit on ``node`` beside what it holds (``capacity``)."""
    n = node.free(req.execution_type)
    if req.cpus and node.cpus is not None:
        n = min(n, int((node.cpus - node.cpus_used + 1e-9) // req.cpus))
    if req.memory and node.memory is not None:
        n = min(n, (node.memory - node.memory_used) // req.memory)
    if req.max_per_node is not None:
        n = min(n, req.max_per_node - node.owners[req.owner])
    if req.ports:
        n = min(n, 0 if check_ports(req, node) else 1)
    return max(0, n)


class _Heap:
    """Nodes passing the static checks for one request shape, keyed by (score, name); lazy.

    Requests that differ only in owner share one heap, keyed by the score of a request without
    owner. Under ``spread`` a node where the owner has no task yet scores (0, busy) and beats any
    where it has one, so the owner's best node is the first in the heap where it has none
    (``best`` sets aside the few it passes over). An owner with tasks on every node it fits gets a
    heap of its own, keyed by its full score (``wide``)."""

    def __init__(self, pipeline: Pipeline, req: Request, nodes: Iterable[NodeView], eligible: dict[Request, list[str]]):
        self.pipeline, self.req = pipeline, req
        self.scorer = pipeline.scorers.get(req.placement, pipeline.scorers["spread"])
        static = _static_shape(req)
        if static not in eligible:  # shapes differing only in owner or placement share the static checks
            eligible[static] = [n.name for n in nodes if not any(check(req, n) for check in pipeline.static)]
        self.names = eligible[static]
        by_name = {n.name: n for n in nodes}
        self.entries = [(self.scorer(req, by_name[name]), name) for name in self.names]
        heapq.heapify(self.entries)
        self.size = len(self.names)
        # Once refused, a shape stays refused for the rest of the pass (usage only grows); later
        # requests of that shape reuse the summary from its first refusal instead of rescanning.
        self.failed: Placement | None = None
        self.reserving = False  # whether a request of this shape reserved the nodes it waits on
        self.wide: dict[Hashable, _Heap] = {}  # owner -> its own heap, once it has a task on every node

    def unplaced(self, req: Request, held: dict[str, str], refused: str | None) -> Placement:
        """``req`` of this failed shape: the node summary, followed by its namespace's refusal if any.
        The first request the namespace does not refuse reserves the nodes that lack capacity; one
        its namespace refuses reserves none, since free capacity would not let it run."""
        failed = self.failed
        if refused:
            return Placement(req.task_id, None, f"{failed.reason}; {refused}")
        if not self.reserving:
            self.reserving = True
            for name in failed.waits_on:
                held.setdefault(name, req.task_id)
        return replace(failed, task_id=req.task_id)

    def push(self, req: Request, node: NodeView) -> None:
        heapq.heappush(self.entries, (self.scorer(req, node), node.name))

    def took(self, req: Request, node: NodeView) -> None:
        """``node`` (from ``best``) took ``req``: it goes back in at its new score. It is on top of the
        heap unless ``best`` passed over nodes of the owner's; then its old entry is left stale."""
        entry = (self.scorer(self.req, node), node.name)
        if self.entries and self.entries[0][1] == node.name:
            heapq.heapreplace(self.entries, entry)
        else:
            heapq.heappush(self.entries, entry)

    def best(self, req: Request, by_name: dict[str, NodeView], held: dict[str, str], nodes: list[NodeView],
             eligible: dict[Request, list[str]]) -> tuple[NodeView | None, "_Heap"]:
        """The best feasible node for ``req`` and the heap it came from (this one, or the owner's own
        heap once it has a task on every node); a namespace limit may still refuse the request."""
        owner = req.owner if req.placement != PlacementMode.BINPACK and req.owner != self.req.owner else None
        passed: list[tuple[tuple, str]] = []  # fresh entries of nodes where the owner has a task
        found = None
        while self.entries:
            key, name = self.entries[0]
            node = by_name[name]
            if name in held or any(check(self.req, node) for check in self.pipeline.dynamic):
                heapq.heappop(self.entries)  # usage only grows within a pass: gone for good
                continue
            actual = self.scorer(self.req, node)
            if actual != key:
                heapq.heapreplace(self.entries, (actual, name))
                continue
            if owner is not None and node.owners[owner]:
                passed.append(heapq.heappop(self.entries))
                continue
            found = node
            break
        for entry in passed:
            heapq.heappush(self.entries, entry)
        if found is None and passed:  # the owner has a task on every node that fits: it needs its own heap
            own = self.wide[owner] = _Heap(self.pipeline, replace(self.req, owner=owner), nodes, eligible)
            return own.best(req, by_name, held, nodes, eligible)
        return found, self


# What a request's choice of node depends on, but for its owner (see ``_Heap``): not its task,
# namespace (its limits are asked apart) or priority. A field added to Request is part of it.
_shape_fields = operator.attrgetter(*(f.name for f in fields(Request)
                                      if f.name not in ("task_id", "namespace", "priority", "owner")))


def _shape(req: Request) -> tuple:
    """The key of a request's heap: requests of one shape share it. With ``maxPerNode``, a feasibility
    check that counts the owner's tasks, the owner is part of the shape."""
    return _shape_fields(req), (req.owner if req.max_per_node is not None else "")


def _static_shape(req: Request) -> Request:
    """A request without the fields only dynamic checks, scorers and limits read: the static checks
    give the same answer for every request of one static shape (a field added later stays in it)."""
    return replace(req, task_id="", namespace="", priority=0, owner="", placement="spread", cpus=None, memory=None,
                   max_per_node=None, ports=())


def _no_node(req: Request, summary: str, waits_on: frozenset[str], refused: str | None) -> Placement:
    """No node fits. A request its namespace's limits refuse too says both and waits on no node: free
    capacity would not let it run, so it must not hold nodes back from other namespaces."""
    if refused:
        return Placement(req.task_id, None, f"{summary}; {refused}")
    return Placement(req.task_id, None, summary, waits_on)


def _why(req: Request, eligible: int) -> str:
    """Why this node: the scorer's pick among the nodes that pass the static checks."""
    word = "most" if req.placement == PlacementMode.BINPACK else "least"
    return f"{word} busy of {eligible} eligible"


def summarise(total: int, rejections: Counter) -> str:
    if total == 0:
        return "0/0 nodes: no nodes; apply a Node manifest"
    parts = ", ".join(f"{n} {reason}" for reason, n in sorted(rejections.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"0/{total} nodes: {parts}"


def default_pipeline() -> Pipeline:
    return Pipeline(
        static=[check_ready, check_schedulable, check_pins, check_selector, check_mounts, check_network,
                check_avoid, check_slot_type],
        dynamic=[check_free_slot, check_resources, check_max_per_node, check_ports],
        scorers={"spread": score_spread, "binpack": score_binpack},
    )
