"""The pure planner: ``plan(resources, tasks, snapshot, now, store_id, mark_key, ...) -> Plan``.

Called by the controller once per reconcile pass, after observing the hosts. No I/O, no clock
reads: everything it needs is passed in, so the same inputs always give the same plan. One pass,
in order: judge the Nodes (``nodes``: conditions, twins, containers that are not ours set
aside), match tasks with the containers seen (``matching``), ask each Job and Service what it
needs (``jobs``, ``services``; a deleted one has its tasks stopped, then is purged), place the
waiting tasks (``placement``, through the ``scheduler``), purge Namespaces being deleted once
nothing is left in them, and return the changes for ``act``. Jobs and Services are told apart by
their key (kind, namespace, name): ``team-a``'s and ``team-b``'s Job/nightly are two owners.

``tasks`` are the tasks of every owner except the ``settled`` ones: Jobs an earlier pass found over
and left untouched (``Plan.settled``, ``jobs.settles``), whose tasks the controller stops reading
until something about them changes; such a Job keeps its stored status and only its TTL purge is
left. What their tasks add to budget use and fair-share usage comes as ``settled_usage``
(``settled.SettledUsage``, carried by the controller). Finished history costs a pass nothing once
its Job is over.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from .actions import STOP_GRACE_SECONDS, Key, Plan
from .fairshare import FAIR, QueuePolicy
from .jobs import keep_settled, reconcile_job, settles
from .matching import match_tasks
from .nodes import NodeStates, judge_nodes
from .placement import place, placer
from .room import Room
from .secrets import secret_index
from .services import reconcile_service
from .settled import SettledUsage
from .tasks import event, set_status, stop_task
from ..kinds import Kind, TaskReason
from ..records import ResourceRecord, Snapshot, TaskRecord


def plan(resources: list[ResourceRecord], tasks: list[TaskRecord], snapshot: Snapshot,
         now: float, store_id: str, mark_key: str, secrets_unreadable: str | None = None,
         queue: QueuePolicy = QueuePolicy(), settled: frozenset[Key] = frozenset(),
         settled_usage: SettledUsage | None = None) -> Plan:
    """``mark_key``: the store's secret (hex) for ``records.container_mark``; ``secrets_unreadable``:
    why the controller cannot decrypt the store's Secrets (None: it can, or there are none); ``queue``:
    the order of waiting tasks (``fairshare.QueuePolicy``: fair share by default, or FIFO);
    ``settled``: the Jobs whose tasks are not given (see above; a deleted one is not settled: give its tasks);
    ``settled_usage``: what those tasks add to budget and fair-share usage (at ``queue``'s rate)."""
    if settled_usage is not None and queue.order == FAIR and settled_usage.rate != queue.rate:
        raise ValueError(f"settled usage decays at {settled_usage.rate!r}, the queue at {queue.rate!r}")
    p = Plan()
    owners = {r.key: r for r in resources if r.kind.workload}
    namespaces = {r.name: r for r in resources if r.kind is Kind.NAMESPACE}
    by_id = {t.id: t for t in tasks}
    nodes = judge_nodes(p, {r.name: r for r in resources if r.kind is Kind.NODE}, snapshot, by_id, now,
                        store_id, mark_key)
    current, fencing = match_tasks(p, tasks, by_id, nodes, owners, now)
    by_owner: dict[Key, list[TaskRecord]] = defaultdict(list)
    for t in current.values():
        by_owner[t.owner_key].append(t)
    places = placer(p, current, owners, nodes, now, store_id, mark_key, fencing, namespaces)
    room = Room(places.views, places.namespaces)
    for key, res in owners.items():
        if key in settled and res.kind is Kind.JOB and res.deleted_at is None:
            keep_settled(p, res, now)
            p.settled.add(key)
            continue
        reconcile(p, res, by_owner.get(key, []), nodes, now, room)
    for tid, changes in p.task_updates.items():  # e.g. a waiting replica switched to the new template
        if "template_hash" in changes and tid in current:
            current[tid] = replace(current[tid], template_hash=changes["template_hash"])
    for t in p.new_tasks:
        current[t.id] = t
    place(places, current, secret_index(resources), secrets_unreadable, queue, settled_usage)
    purge_emptied_namespaces(p, namespaces.values(), owners)
    settle_jobs(p, owners, by_owner, current, nodes.snapshot)  # our containers only
    return p


def settle_jobs(p: Plan, owners: dict[Key, ResourceRecord], by_owner: dict[Key, list[TaskRecord]],
                current: dict[str, TaskRecord], snapshot: Snapshot) -> None:
    """Add to ``p.settled`` the Jobs this pass found over and left untouched (``jobs.settles``)."""
    touched = {(kind, namespace, name) for kind, namespace, name, _ in p.statuses} | set(p.purges)
    touched |= {t.owner_key for t in p.new_tasks}
    touched |= {current[tid].owner_key for tid in p.task_updates if tid in current}
    for key, res in owners.items():
        if res.kind is Kind.JOB and key not in p.settled and settles(res, by_owner.get(key, []), snapshot, touched):
            p.settled.add(key)
    p.settled -= set(p.purges)  # purged (a TTL passed): nothing left to settle


def purge_emptied_namespaces(p: Plan, namespaces, owners: dict[Key, ResourceRecord]) -> None:
    """A Namespace being deleted goes once nothing is left in it (what was in it is purged in this
    pass or was before: its resources were all marked deleted with it)."""
    purged = set(p.purges)
    left = {key[1] for key in owners if key not in purged}
    for ns in namespaces:
        if ns.deleted_at is not None and ns.name not in left:
            p.purges.append(ns.key)
            p.events.append(event(ns, "Deleted", f"{ns.ref} deleted; everything in it is gone"))


def reconcile(p: Plan, res: ResourceRecord, tasks: list[TaskRecord], nodes: NodeStates, now: float,
              room: Room) -> None:
    """What one Job or Service needs this pass, given its tasks as this pass sees them; ``room``: how
    many of its tasks may wait for a node."""
    if res.deleted_at is not None:
        delete(p, res, tasks, nodes.snapshot, now, nodes.unlisted)
    elif res.kind is Kind.JOB:
        reconcile_job(p, res, tasks, nodes.snapshot, now, nodes.draining, room)
    elif res.kind is Kind.SERVICE:
        reconcile_service(p, res, tasks, nodes.snapshot, now, room, frozenset(nodes.draining))


def delete(p: Plan, res: ResourceRecord, tasks: list[TaskRecord], snapshot: Snapshot, now: float,
           unlisted: frozenset[str] = frozenset()) -> None:
    """Stop a deleted resource's tasks; purge it only once none of its containers is seen.

    A container in its grace period stays tracked (and its stop goes on) however long the grace.
    A node that could not be listed (``unlisted``) may still hold one stopped less than a grace
    period ago: the purge waits for that node's next list, or for that grace period to pass.
    The count of containers still seen is kept in the status (``stoppingContainers``) for
    ``brokerctl delete`` to report.
    """
    live = [t for t in tasks if t.active]
    grace = getattr(res.model.spec, "terminationGracePeriodSeconds", STOP_GRACE_SECONDS)
    for t in live:
        stop_task(p, t, snapshot, now, TaskReason.DELETED, f"{res.ref} was deleted", grace)
    seen = snapshot.by_task
    stopping = sum(t.id in seen for t in tasks)
    hidden = [t for t in tasks if t.node in unlisted and t.container_id and t.exit_code is None
              and (t.active or (t.finished_at or now) + grace > now)]
    if not live and not stopping and not hidden:
        p.purges.append(res.key)
        p.events.append(event(res, "Deleted", f"{res.ref} deleted; its containers are gone"))
        return
    for t in hidden:
        p.wake_at((t.finished_at or now) + grace)
    set_status(p, res, {**res.status, "stoppingContainers": stopping + len(hidden)})
