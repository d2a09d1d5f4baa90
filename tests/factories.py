"""Shared builders for the planner's tests: resource rows, task rows, containers, observations,
one pass of ``plan``, and ``World``, which follows one Service over several passes.

Every pure planner test module imports these from here (never from another test module), so a
builder has one definition. Rows are validated through the models as ``apply`` would store them.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from pydantic import TypeAdapter

from reconciler.engine.actions import Plan
from reconciler.engine.plan import plan
from reconciler.kinds import scope
from reconciler.records import ContainerObs, NodeObs, ResourceRecord, Snapshot, TaskRecord, container_mark
from reconciler.spec.models import Kind, Resource, TaskPhase, template_hash

NOW = 1_000.0
STORE_ID = "store1"
MARK_KEY = "5e" * 32  # the store's secret for container marks
P, R, S, F, L, X = (TaskPhase.PENDING, TaskPhase.RUNNING, TaskPhase.SUCCEEDED, TaskPhase.FAILED,
                    TaskPhase.LOST, TaskPhase.STOPPED)

# -- rows and observations --------------------------------------------------------------------

_RESOURCE = TypeAdapter(Resource)


def resource(doc: dict, *, uid: str | None = None, generation: int = 1, status: dict | None = None,
             deleted_at: float | None = None) -> ResourceRecord:
    """A store row for a manifest dict, validated through the models as ``apply`` would store it."""
    model = _RESOURCE.validate_python({"apiVersion": "broker/v1", **doc})
    return ResourceRecord(
        kind=Kind(model.kind), name=model.name, uid=uid or hashlib.sha1(model.name.encode()).hexdigest()[:10],
        labels=dict(model.metadata.labels), spec=model.spec.model_dump(mode="json"), generation=generation,
        created_at=0.0, updated_at=0.0, deleted_at=deleted_at, status=status or {},
    )


def namespace_res(name: str, *, deleted_at: float | None = None, **spec) -> ResourceRecord:
    return resource({"kind": "Namespace", "metadata": {"name": name}, "spec": spec}, deleted_at=deleted_at)


def in_namespace(res: ResourceRecord, namespace: str) -> ResourceRecord:
    """``res`` stored in ``namespace``, with a uid of its own there (as the store gives each resource;
    task ids carry it)."""
    return replace(res, namespace=namespace, uid=hashlib.sha1(f"{namespace}/{res.name}".encode()).hexdigest()[:10])


def node_res(name: str, slots: dict | None = None, **spec) -> ResourceRecord:
    status = spec.pop("status", None)
    body = {"address": "tcp://127.0.0.1:2375", **spec}
    if slots is not None:
        body["slots"] = slots
    return resource({"kind": "Node", "metadata": {"name": name}, "spec": body}, status=status)


def job_res(name: str = "job", *, deleted_at: float | None = None, status: dict | None = None,
            labels: dict | None = None, **spec) -> ResourceRecord:
    body = {"template": {"image": "busybox", "command": ["true"]}, **spec}
    return resource({"kind": "Job", "metadata": {"name": name, "labels": labels or {}}, "spec": body},
                    deleted_at=deleted_at, status=status)


def service_res(name: str = "web", *, deleted_at: float | None = None, **spec) -> ResourceRecord:
    body = {"template": {"image": "nginx"}, **spec}
    return resource({"kind": "Service", "metadata": {"name": name}, "spec": body}, deleted_at=deleted_at)


def task(owner: ResourceRecord, index: int = 0, attempt: int = 1, phase: TaskPhase = P, **kw) -> TaskRecord:
    """A task row of ``owner``, with the id scheme the planner uses, made from its current template."""
    kw.setdefault("template_hash", template_hash(owner.model.spec))
    return TaskRecord(
        id=f"{owner.name}-{owner.uid[:5]}-{index}-{attempt}", owner_kind=owner.kind, owner_name=owner.name,
        namespace=owner.namespace, owner_uid=owner.uid, index=index, attempt=attempt, phase=phase, **kw,
    )


def container(t: TaskRecord | None, state: str = "running", cid: str | None = None,
              mark: str | None = None) -> ContainerObs:
    """The container of task ``t`` (None: a brokerctl container without a task label), as the store
    made it: ``obs`` signs it for the node it is seen on unless ``mark`` is given."""
    cid = cid or (t.container_id if t and t.container_id else f"c-{t.id if t else 'x'}")
    return ContainerObs(id=cid, name=f"bk-{STORE_ID}-{t.id if t else 'x'}", task_id=t.id if t else None,
                        owner=t.owner if t else None, state=state, exit_code=0 if state == "exited" else None,
                        mark=mark)


def obs(name: str, *containers: ContainerObs, ready: bool = True, cpus: int | None = 4,
        listed: bool = True) -> NodeObs:
    """What probing node ``name`` saw; ``listed=False``: its containers could not be listed."""
    signed = tuple(replace(c, mark=container_mark(MARK_KEY, STORE_ID, c.task_id, name)) if c.mark is None else c
                   for c in containers)
    return NodeObs(name, ready=ready, docker_version="27.0" if ready else None, cpus=cpus if ready else None,
                   memory=8 << 30 if ready else None, message="" if ready else "connection refused",
                   containers=signed if listed else None)


def snapshot(*nodes: NodeObs, at: float = NOW) -> Snapshot:
    return Snapshot(nodes={n.name: n for n in nodes}, taken_at=at)


def run(resources: list[ResourceRecord], tasks: list[TaskRecord], snap: Snapshot | None = None,
        now: float = NOW, settled: frozenset = frozenset()) -> Plan:
    if snap is None:
        snap = snapshot(*(obs(r.name) for r in resources if r.kind is Kind.NODE))
    return plan(resources, tasks, snap, now, STORE_ID, MARK_KEY, settled=settled)


def applied(p: Plan, tasks: list[TaskRecord]) -> dict[str, TaskRecord]:
    """The task rows after the plan's decisions are recorded (what ``act.record_decisions`` does)."""
    out = {t.id: t for t in [*tasks, *p.new_tasks]}
    for tid, changes in p.task_updates.items():
        out[tid] = replace(out[tid], **changes)
    return out


def status_of(p: Plan, kind: Kind, name: str, namespace: str | None = None) -> dict | None:
    key = (kind, scope(kind, namespace), name)
    found = [s for k, ns, n, s in p.statuses if (k, ns, n) == key]
    assert len(found) <= 1
    return found[0] if found else None


def removed(p: Plan) -> set[str]:
    return {r.container_id for r in p.removals}

# -- Services ---------------------------------------------------------------------------------


OLD = {"image": "nginx:1"}
NEW = {"image": "nginx:2"}


def svc(name: str = "web", *, status: dict | None = None, **spec) -> ResourceRecord:
    """A Service row (template ``OLD`` unless given), optionally with the status the controller wrote."""
    spec.setdefault("template", OLD)
    res = service_res(name, **spec)
    return replace(res, status=status) if status is not None else res


def ctr(t: TaskRecord, health: str | None = None, state: str = "running") -> ContainerObs:
    """The container of ``t`` with the health Docker reports (None: no health check)."""
    return replace(container(t, state), health=health)


def running(owner: ResourceRecord, index: int, attempt: int = 1, *, node: str = "a", started: float = NOW - 100,
            **kw) -> TaskRecord:
    """A replica of ``owner`` Running on ``node`` since ``started``, with container ``c<index>-<attempt>``."""
    return task(owner, index, attempt, R, node=node, container_id=f"c{index}-{attempt}", started_at=started,
                created_at=kw.pop("created_at", started - 1), **kw)


class World:
    """Nodes, one Service and its tasks and containers, advanced pass by pass.

    After each ``plan``: decisions are recorded, Starts run at once (the task is Running, its
    container appears with ``health``), Removes take the container away, and the Service's new
    status is what the next pass reads.
    """

    def __init__(self, service: ResourceRecord, nodes: list[ResourceRecord], health: str | None = None):
        self.service, self.nodes, self.health = service, nodes, health
        self.tasks: dict[str, TaskRecord] = {}
        self.containers: dict[str, dict[str, ContainerObs]] = {n.name: {} for n in nodes}
        self.events = []

    def step(self, now: float) -> Plan:
        snap = snapshot(*(obs(n, *cs.values()) for n, cs in self.containers.items()), at=now)
        p = plan([*self.nodes, self.service], list(self.tasks.values()), snap, now, STORE_ID, MARK_KEY)
        self.tasks = applied(p, list(self.tasks.values()))
        for r in p.removals:
            self.containers[r.node].pop(r.task_id, None)
        for s in p.starts:
            t = self.tasks[s.task_id]
            self.tasks[t.id] = replace(t, phase=R, container_id=f"c-{t.id}", started_at=now)
            self.containers[s.node][t.id] = replace(container(self.tasks[t.id]), health=self.health)
        status = status_of(p, Kind.SERVICE, self.service.name)
        if status is not None:
            self.service = replace(self.service, status=status)
        self.events += p.events
        return p

    def settle(self, start: float, passes: int = 10, every: float = 1.0) -> float:
        now = start
        for _ in range(passes):
            self.step(now)
            now += every
        return now

    def apply(self, **spec) -> str:
        """A new spec for the Service (keeping its status, as the store does); returns its template hash."""
        self.service = replace(svc(self.service.name, **spec), status=self.service.status)
        return template_hash(self.service.model.spec)

    @property
    def active(self) -> list[TaskRecord]:
        return [t for t in self.tasks.values() if t.active]

    def available(self, now: float, min_ready: float) -> list[TaskRecord]:
        """Active replicas running with a ready container for at least ``min_ready`` seconds."""
        return [t for t in self.active if t.phase is R and t.started_at + min_ready <= now
                and self.containers[t.node][t.id].health in (None, "healthy")]
