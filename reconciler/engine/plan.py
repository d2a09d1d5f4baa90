"""The pure planner: ``plan(resources, tasks, snapshot, now, store_id, mark_key) -> Plan``.

Called by the controller once per reconcile pass, after observing the hosts. No I/O, no clock
reads: everything it needs is passed in, so the same inputs always give the same plan. It sets
aside containers that carry our store label but are not ours (``records.distrust``: reported on
their Node, never adopted or touched), matches tasks to the containers seen on the hosts
(adopting, collecting finished ones, removing orphans), asks ``workloads`` what each Job and
Service needs, places waiting tasks through the ``scheduler`` and returns the changes for
``act`` to carry out.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace

from . import workloads
from .actions import STOP_GRACE_SECONDS, Collect, Event, Plan, Remove, Start
from ..spec.models import Kind, TaskPhase, template_hash
from ..records import (
    LABEL_ATTEMPT, LABEL_INDEX, LABEL_MARK, LABEL_OWNER, LABEL_STORE, LABEL_TASK, LABEL_TEMPLATE,
    ContainerSpec, ResourceRecord, Snapshot, TaskRecord, container_mark, container_name, distrust,
)
from .scheduler import NodeView, Request, default_pipeline

PORT_RETRY_SECONDS = 60.0  # a node whose host port was taken outside brokerctl is avoided this long
FENCE_SETTLE_SECONDS = 2.0  # a returning node's stale Job containers are killed only after this
UNTRUSTED_SHOWN = 20  # untrusted container names kept in a Node's status


def plan(resources: list[ResourceRecord], tasks: list[TaskRecord], snapshot: Snapshot,
         now: float, store_id: str, mark_key: str) -> Plan:
    """``mark_key``: the store's secret (hex) for ``records.container_mark``."""
    p = Plan()
    owners = {(r.kind, r.name): r for r in resources if r.kind is not Kind.NODE}
    nodes = {r.name: r for r in resources if r.kind is Kind.NODE}
    by_id = {t.id: t for t in tasks}
    twin_of = workloads.twins(list(nodes.values()), snapshot)
    snapshot = _set_aside_twins(snapshot, twin_of)
    snapshot, untrusted = _set_aside_untrusted(snapshot, by_id, store_id, mark_key)
    conditions, ready_since, statuses = {}, {}, {}
    for node in nodes.values():
        obs = snapshot.nodes.get(node.name)
        status = statuses[node.name] = workloads.node_status(node, obs, now, snapshot.lost_after,
                                                             twin_of.get(node.name))
        _report_untrusted(p, node, status, untrusted.get(node.name))
        conditions[node.name] = status["condition"]
        ready_since[node.name] = status["since"]
        if status != node.status:
            p.statuses.append((Kind.NODE, node.name, status))
            _node_events(p, node, status)
        if (when := workloads.lost_at(node, obs, snapshot.lost_after)) is not None and when > now:
            p.wake_at(when)
    lost = {n for n, c in conditions.items() if c == "Lost"}
    current, fencing = _observe_tasks(p, tasks, by_id, snapshot, nodes, owners, lost, ready_since, now)
    by_owner: dict[tuple[Kind, str], list[TaskRecord]] = defaultdict(list)
    for t in current.values():
        by_owner[(t.owner_kind, t.owner_name)].append(t)
    draining = {n: r.drain_deadline for n, r in nodes.items() if r.drain_deadline is not None}
    unlisted = frozenset(n for n in nodes if conditions[n] != "Lost"
                         and (snapshot.nodes.get(n) is None or snapshot.nodes[n].containers is None))
    for key, res in owners.items():
        workloads.reconcile(p, res, by_owner.get(key, []), snapshot, now, draining, unlisted)
    for tid, changes in p.task_updates.items():  # e.g. a waiting replica switched to the new template
        if "template_hash" in changes and tid in current:
            current[tid] = replace(current[tid], template_hash=changes["template_hash"])
    for t in p.new_tasks:
        current[t.id] = t
    _place(p, current, owners, nodes, statuses, snapshot, now, store_id, mark_key, fencing)
    return p


def _set_aside_twins(snapshot: Snapshot, twin_of: dict[str, tuple[str, str]]) -> Snapshot:
    """The snapshot as if each twin node (see ``workloads.twins``) did not answer: its containers
    are the first node's, seen in that node's list; under the twin's name they would count twice."""
    aside = {name: (first, daemon) for name, (first, daemon) in twin_of.items() if name in snapshot.nodes}
    if not aside:
        return snapshot
    nodes = dict(snapshot.nodes)
    for name, (first, daemon) in aside.items():
        nodes[name] = replace(nodes[name], ready=False, containers=None, message=workloads.twin_message(first, daemon))
    return replace(snapshot, nodes=nodes)


def _set_aside_untrusted(snapshot: Snapshot, by_id: dict[str, TaskRecord], store_id: str,
                         mark_key: str) -> tuple[Snapshot, dict[str, list[tuple[str, str]]]]:
    """The snapshot with only our containers, and per listed node the others: (name, why).

    Anyone who can reach a node's Docker API can start a container with our labels; one that is
    not ours is never adopted, collected, counted or removed (it is not ours to touch), only
    reported. Nodes that were not listed have no entry (what they hold is unknown this pass).
    """
    untrusted: dict[str, list[tuple[str, str]]] = {}
    nodes = dict(snapshot.nodes)
    for name, obs in snapshot.nodes.items():
        if obs.containers is None:
            continue
        ours, others = [], untrusted.setdefault(name, [])
        for c in obs.containers:
            why = distrust(c, name, by_id.get(c.task_id), mark_key, store_id)
            if why is None:
                ours.append(c)
            else:
                others.append((c.name, why))
        if others:
            nodes[name] = replace(obs, containers=tuple(ours))
    if not any(untrusted.values()):
        return snapshot, untrusted
    return Snapshot(nodes=nodes, taken_at=snapshot.taken_at, lost_after=snapshot.lost_after), untrusted


def _report_untrusted(p: Plan, node: ResourceRecord, status: dict, seen: list[tuple[str, str]] | None) -> None:
    """Put the untrusted containers seen on ``node`` in its status (kept while it is not listed) and
    record an event for each one not reported before."""
    before = node.status.get("untrusted") or []
    names = before if seen is None else sorted(name for name, _ in seen)[:UNTRUSTED_SHOWN]
    if names:
        status["untrusted"] = names
    for name, why in sorted(seen or ()):
        if name in names and name not in before:
            p.events.append(Event("Node", node.name, "UntrustedContainer",
                                  f"container {name} on node {node.name} carries this store's label but is not "
                                  f"one of its containers ({why}); not adopted, left alone", "Warning"))


def _node_events(p: Plan, node: ResourceRecord, status: dict) -> None:
    if status.get("twinOf") and status["twinOf"] != node.status.get("twinOf"):
        p.events.append(Event("Node", node.name, "SameDaemon", f"node {node.name}: {status['message']}", "Warning"))
        return
    old, new = node.status.get("condition"), status["condition"]
    if old == new or old is None:  # first sight of a node is not news
        return
    if new == "Lost":
        p.events.append(Event("Node", node.name, "NodeLost", f"node {node.name} lost: {status['message']}; "
                              "its tasks are rescheduled (onNodeLost: wait keeps them bound)", "Warning"))
    elif new == "NotReady":
        p.events.append(Event("Node", node.name, "NodeNotReady", f"node {node.name}: {status['message']}", "Warning"))
    elif new == "Ready":
        p.events.append(Event("Node", node.name, "NodeReady", f"node {node.name} answers again (was {old})"))


def _observe_tasks(p: Plan, tasks: list[TaskRecord], by_id: dict[str, TaskRecord], snapshot: Snapshot,
                   nodes: dict[str, ResourceRecord], owners: dict, lost: set[str], ready_since: dict[str, float],
                   now: float) -> tuple[dict[str, TaskRecord], set[str]]:
    """Match tasks with observed containers; returns the tasks as this pass sees them, and the
    nodes being fenced (containers of replaced tasks still there: no new work this pass)."""
    seen = snapshot.by_task
    current: dict[str, TaskRecord] = {}
    fencing: set[str] = set()
    succeeded = None  # (owner, index) of Job successes: needed only for a late result, built then
    for t in tasks:
        node_obs = snapshot.nodes.get(t.node) if t.node else None
        hit = seen.get(t.id)
        owner = owners.get((t.owner_kind, t.owner_name))
        if t.active and t.node and t.node not in nodes:
            t = _set(p, t, phase=TaskPhase.LOST, reason="NodeDeleted", finished_at=now,
                     message=f"node {t.node} was deleted")
            p.events.append(Event(t.owner_kind.value, t.owner_name, "TaskLost", f"{t.id}: {t.message}", "Warning", t.id))
        elif t.active and t.node in lost and (owner is None or owner.model.spec.onNodeLost == "reschedule"):
            t = _set(p, t, phase=TaskPhase.LOST, reason="NodeLost", finished_at=now,
                     message=f"node {t.node} was lost; replaced elsewhere")
            p.events.append(Event(t.owner_kind.value, t.owner_name, "TaskLost", f"{t.id}: {t.message}", "Warning", t.id))
        elif hit and t.active:
            node, c = hit
            if c.finished:
                p.collects.append(Collect(t.id, node, c.id))
            elif c.state == "running" and (t.phase is TaskPhase.PENDING or t.container_id != c.id):
                t = _set(p, t, phase=TaskPhase.RUNNING, container_id=c.id, node=node,
                         started_at=t.started_at or now, reason="", message="")
        elif hit and t.phase is TaskPhase.LOST and t.reason == "NodeLost" and hit[1].finished:
            # It ran on while its node could not be reached. A Job's success still counts if no other
            # attempt of that index succeeded (the replacement is then stopped); keep its output.
            node, c = hit
            if succeeded is None:
                succeeded = {(x.owner, x.index) for x in tasks if x.phase is TaskPhase.SUCCEEDED}
            if t.owner_kind is Kind.JOB and c.exit_code == 0 and (t.owner, t.index) not in succeeded:
                succeeded.add((t.owner, t.index))
                t = _set(p, t, phase=TaskPhase.SUCCEEDED, exit_code=0, reason="SucceededWhileLost",
                         message=f"finished on node {node} while it could not be reached; result kept")
                p.events.append(Event(t.owner_kind.value, t.owner_name, "SucceededWhileLost",
                                      f"{t.id}: {t.message}", task_id=t.id))
            p.collects.append(Collect(t.id, node, c.id))
        elif (hit and t.phase is TaskPhase.LOST and t.reason == "NodeLost" and t.owner_kind is Kind.JOB
              and now < ready_since.get(hit[0], now) + FENCE_SETTLE_SECONDS):
            # A daemon that was hung reports exits it missed only after it resumes: give it a moment,
            # so an attempt that finished meanwhile is collected rather than killed. No new work there yet.
            fencing.add(hit[0])
            p.wake_at(ready_since[hit[0]] + FENCE_SETTLE_SECONDS)
        elif hit:  # a container for a task that is over: stop it (fencing, failed starts, deletes)
            node, c = hit
            fence = t.reason == "NodeLost"  # replaced elsewhere: it must not run twice, kill at once
            if fence:
                fencing.add(node)
                p.events.append(Event(t.owner_kind.value, t.owner_name, "Fenced",
                                      f"{t.id}: stopping its container on {node}, which answers again", "Warning", t.id))
            p.removals.append(Remove(node, c.id, t.id, f"task {t.id} is {t.phase.value}",
                                     grace=0 if c.finished or fence else _grace_left(t, owner, now)))
        elif t.phase is TaskPhase.RUNNING and node_obs is not None and node_obs.containers is not None:
            t = _set(p, t, phase=TaskPhase.LOST, reason="ContainerVanished", finished_at=now,
                     message=f"container {(t.container_id or '')[:12]} disappeared from node {t.node}")
            p.events.append(Event(t.owner_kind.value, t.owner_name, "TaskLost", f"{t.id}: {t.message}", "Warning", t.id))
        current[t.id] = t
    for node in snapshot.nodes.values():
        for c in node.containers or ():
            if c.task_id not in by_id:
                p.removals.append(Remove(node.name, c.id, c.task_id, "orphan: its task is not in the store",
                                         grace=0 if c.finished else STOP_GRACE_SECONDS))
    return current, fencing


def _grace_left(t: TaskRecord, owner: ResourceRecord | None, now: float) -> float:
    """What is left of the grace period of a stop that began when ``t`` was stopped (``finished_at``).

    The stop may have been issued by an earlier pass or an earlier controller: the container then
    gets SIGTERM again but is killed at the deadline of that first stop, not 10 s from now, and
    not at once.
    """
    grace = owner.model.spec.terminationGracePeriodSeconds if owner is not None else STOP_GRACE_SECONDS
    return max(0.0, (t.finished_at if t.finished_at is not None else now) + grace - now)


def _set(p: Plan, t: TaskRecord, **changes) -> TaskRecord:
    p.update(t.id, **changes)
    return replace(t, **changes)


def _place(p: Plan, current: dict[str, TaskRecord], owners: dict, nodes: dict, statuses: dict[str, dict],
           snapshot: Snapshot, now: float, store_id: str, mark_key: str, fencing: set[str] = frozenset()) -> None:
    specs = {key: res.model.spec for key, res in owners.items()}
    templates = {key: template_hash(spec) for key, spec in specs.items() if key[0] is Kind.SERVICE}
    views = []
    for node in sorted(nodes.values(), key=lambda n: n.name):
        obs = snapshot.nodes.get(node.name)
        status = statuses[node.name]
        spec = node.model.spec
        schedulable = not spec.unschedulable and node.drain_deadline is None  # a drain lasts until uncordon
        views.append(NodeView(node.name, ready=bool(obs and obs.ready), schedulable=schedulable,
                              fencing=node.name in fencing,
                              slots=status.get("slots", {}), used=Counter(), labels=dict(node.labels),
                              cpus=status.get("cpus"), memory=status.get("memory"),
                              allowed_mounts=spec.mount_rules(), allowed_networks=frozenset(spec.allowedNetworks)))
    by_name = {v.name: v for v in views}
    seen = snapshot.by_task
    # (owner, index) -> (task, node) for tasks lost with their node this pass: their replacements say so.
    lost_here = {(current[tid].owner, current[tid].index): (tid, current[tid].node)
                 for tid, ch in p.task_updates.items() if ch.get("reason") == "NodeLost" and tid in current}
    collecting = {c.task_id for c in p.collects}
    # Tasks ``workloads`` stopped this pass (scale-down, Job done or failed): ``current`` still shows
    # them active. Their containers keep their capacity until removed, but they must not be (re)started.
    stopped = {tid for tid, ch in p.task_updates.items() if "phase" in ch and not ch["phase"].active}
    running_on: dict[str, set[str]] = defaultdict(set)  # "Job/x" -> nodes where its active tasks are
    last_node: dict[tuple, str] = {}  # (owner, index) -> node of the latest attempt that had one
    port_taken: dict[tuple, set[str]] = defaultdict(set)  # (owner, index) -> nodes where its host port was taken
    waiting, active = [], []
    sticky_owners = {key for key, spec in specs.items() if spec.sticky}
    latest: dict[tuple, tuple] = {}  # (owner, index) -> (created_at, id) of the attempt in last_node
    for t in current.values():  # finished attempts (most rows, at scale) only inform the placements
        if t.active:
            active.append(t)
            continue
        if not t.node:
            continue
        key = (t.owner_kind, t.owner_name)
        if key in sticky_owners and latest.get((key, t.index), ()) < (t.created_at, t.id):
            latest[(key, t.index)] = (t.created_at, t.id)
            last_node[(key, t.index)] = t.node
        if t.reason == "PortInUse" and t.finished_at and now < t.finished_at + PORT_RETRY_SECONDS:
            port_taken[(key, t.index)].add(t.node)
            p.wake_at(t.finished_at + PORT_RETRY_SECONDS)
    for t in sorted(active, key=lambda t: (t.created_at, t.id)):
        key = (t.owner_kind, t.owner_name)
        if key not in owners:
            continue
        if t.node:
            running_on[t.owner].add(t.node)
            # A container seen exited holds no capacity: its slot goes to the next task in this
            # pass, while the old one is collected.
            if t.node in by_name and t.id not in collecting:
                replaced = key in templates and t.template_hash != templates[key]
                by_name[t.node].take(_request(t, specs[key]), spread=not replaced)
        if t.id in stopped:
            continue
        if t.node:
            if t.phase is TaskPhase.PENDING and t.id not in collecting:
                _maybe_restart(p, t, owners[key], nodes.get(t.node), snapshot, seen, store_id, mark_key)
        elif t.not_before > now:
            p.wake_at(t.not_before)
        elif owners[key].deleted_at is None:
            waiting.append(t)
    # Queue order: higher priority first, then first come first served.
    waiting.sort(key=lambda t: (-specs[(t.owner_kind, t.owner_name)].priority, t.created_at, t.id))
    ready = {v.name for v in views if v.ready and v.schedulable}
    requests = []
    for t in waiting:
        spec = specs[(t.owner_kind, t.owner_name)]
        sticky = last_node.get(((t.owner_kind, t.owner_name), t.index)) if spec.sticky else None
        colocate = frozenset(running_on.get(spec.colocateWith, ())) if spec.colocateWith else None
        requests.append(_request(t, spec, sticky_node=sticky if sticky in ready else None, colocate=colocate,
                                 avoid=frozenset(port_taken.get(((t.owner_kind, t.owner_name), t.index), ()))))
    for t, placed in zip(waiting, default_pipeline().place(requests, views)):
        if placed.node is None:
            if t.message != placed.reason:
                _set(p, t, reason="Unschedulable", message=placed.reason)
                p.events.append(Event(t.owner_kind.value, t.owner_name, "FailedScheduling",
                                      f"{t.id}: {placed.reason}", "Warning", t.id))
            continue
        res = owners[(t.owner_kind, t.owner_name)]
        t = _set(p, t, node=placed.node, scheduled_at=now, reason="Scheduled", message=placed.reason)
        gone = lost_here.get((t.owner, t.index))
        moved = f"; replaces {gone[0]} from lost node {gone[1]}" if gone else ""
        p.events.append(Event(t.owner_kind.value, t.owner_name, "Scheduled",
                              f"{t.id} on {placed.node} ({placed.reason}{moved})", task_id=t.id))
        p.starts.append(Start(t.id, placed.node, container_spec(t, res, store_id, mark_key, nodes[placed.node])))


def _request(t: TaskRecord, spec, sticky_node: str | None = None, colocate: frozenset | None = None,
             avoid: frozenset = frozenset()) -> Request:
    res = spec.template.resources
    return Request(
        t.id, spec.executionType, cpus=res.cpus, memory=res.memory_bytes(),
        selector=tuple(sorted(spec.nodeSelector.items())), node_name=spec.nodeName, colocate=colocate,
        colocate_with=spec.colocateWith, sticky_node=sticky_node, placement=spec.placement.value,
        bind_mounts=tuple((m.source, m.readOnly) for m in spec.template.mounts if m.source.startswith("/")),
        network=spec.template.network,
        owner=t.owner, max_per_node=getattr(spec, "maxPerNode", None), avoid=avoid,
        ports=tuple((b.ip, b.host_port, b.proto) for b in spec.template.port_bindings() if b.host_port),
    )


def _maybe_restart(p: Plan, t: TaskRecord, res: ResourceRecord, node: ResourceRecord | None, snapshot: Snapshot,
                   seen: dict, store_id: str, mark_key: str) -> None:
    """A placed task without a running container: (re)issue the idempotent start if its node answers."""
    obs = snapshot.nodes.get(t.node)
    if node is None or obs is None or obs.containers is None or res.deleted_at is not None:
        return
    hit = seen.get(t.id)
    if hit is None or hit[1].state == "created":
        want = template_hash(res.model.spec)
        if hit is None and t.template_hash and t.template_hash != want:  # no container yet: it is made from today's template
            t = _set(p, t, template_hash=want)
        p.starts.append(Start(t.id, t.node, container_spec(t, res, store_id, mark_key, node)))


def container_spec(t: TaskRecord, res: ResourceRecord, store_id: str, mark_key: str,
                   node: ResourceRecord) -> ContainerSpec:
    """What ``Host.start`` creates for task ``t`` on ``node`` (the node it is placed on)."""
    tpl = res.model.spec.template
    env = {
        **tpl.env,
        "BROKER_TASK_ID": t.id,
        "BROKER_TASK_INDEX": str(t.index),
        "BROKER_ATTEMPT": str(t.attempt),
        "BROKER_OWNER": t.owner,
    }
    labels = {
        **res.labels,
        LABEL_STORE: store_id,
        LABEL_OWNER: t.owner,
        LABEL_TASK: t.id,
        LABEL_INDEX: str(t.index),
        LABEL_ATTEMPT: str(t.attempt),
        LABEL_TEMPLATE: t.template_hash,
        LABEL_MARK: container_mark(mark_key, store_id, t.id, node.name),
    }
    health = getattr(res.model.spec, "healthCheck", None)
    return ContainerSpec(
        name=container_name(store_id, t.id),
        image=tpl.image,
        command=tpl.argv(),
        env=env,
        labels=labels,
        working_dir=tpl.workingDir,
        user=tpl.user,
        mounts=tuple((m.source, m.target, m.readOnly) for m in tpl.mounts),
        nano_cpus=int(tpl.resources.cpus * 1e9) if tpl.resources.cpus else None,
        mem_limit=tpl.resources.memory_bytes(),
        ports=tuple(tpl.port_bindings()),
        network=tpl.network,
        allowed_volumes=tuple(node.model.spec.allowedVolumes),
        healthcheck=None if health is None else {
            "test": health.docker_test(), "interval": _ns(health.intervalSeconds),
            "timeout": _ns(health.timeoutSeconds), "retries": health.retries,
            "start_period": _ns(health.startPeriodSeconds),
        },
    )


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)
