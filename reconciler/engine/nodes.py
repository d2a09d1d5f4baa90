"""Nodes as one pass judges them: condition, slots, twins and the containers that are not ours. Pure.

Called by ``plan`` first in every pass (``judge_nodes``), before anything reads the snapshot: a Node
whose daemon an older Node already uses (a twin) is set aside as if it did not answer, and every
container that carries our store label without being ours (``records.distrust``) is taken out of
the snapshot and reported on its Node. The ``NodeStates`` it returns are what ``matching``,
``placement`` and the Job/Service steps read: which nodes are Lost, draining, not listed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

from .actions import Event, Plan
from ..kinds import Kind, NodeCondition
from ..records import NodeObs, ResourceRecord, Snapshot, TaskRecord, distrust

UNTRUSTED_SHOWN = 20  # untrusted container names kept in a Node's status

Untrusted = dict[str, list[tuple[str, str]]]  # node -> (container name, why it is not ours), for listed nodes


@dataclass(frozen=True)
class NodeStates:
    """Every Node's record and new status, and the snapshot with only our containers of answering nodes."""

    records: dict[str, ResourceRecord]
    statuses: dict[str, dict]
    snapshot: Snapshot

    @cached_property
    def lost(self) -> frozenset[str]:
        return frozenset(n for n, s in self.statuses.items() if s["condition"] == NodeCondition.LOST)

    def ready_since(self, name: str, default: float) -> float:
        """Since when node ``name`` has had its condition (``default`` for an unknown node)."""
        status = self.statuses.get(name)
        return status["since"] if status is not None else default

    @cached_property
    def draining(self) -> dict[str, float]:
        """Node -> drain deadline, for the nodes whose tasks must move off."""
        return {n: r.drain_deadline for n, r in self.records.items() if r.drain_deadline is not None}

    @cached_property
    def unlisted(self) -> frozenset[str]:
        """Nodes whose containers this pass could not see (not answering, not yet Lost)."""
        nodes = self.snapshot.nodes
        return frozenset(n for n in self.records if n not in self.lost
                         and (nodes.get(n) is None or nodes[n].containers is None))


def judge_nodes(p: Plan, nodes: dict[str, ResourceRecord], snapshot: Snapshot, by_id: dict[str, TaskRecord],
          now: float, store_id: str, mark_key: str) -> NodeStates:
    """Each Node's status from this pass's observation (recorded with its events when it changed)."""
    twin_of = twins(list(nodes.values()), snapshot)
    snapshot = set_aside_twins(snapshot, twin_of)
    snapshot, untrusted = set_aside_untrusted(snapshot, by_id, store_id, mark_key)
    statuses = {node.name: node_status(node, snapshot.nodes.get(node.name), now, snapshot.lost_after,
                                       twin_of.get(node.name)) for node in nodes.values()}
    lost_together(nodes, statuses, snapshot, now)
    for node in nodes.values():
        obs, status = snapshot.nodes.get(node.name), statuses[node.name]
        report_untrusted(p, node, status, untrusted.get(node.name))
        if status != node.status:
            p.statuses.append((Kind.NODE, "", node.name, status))
            node_events(p, node, status)
        if (when := lost_at(node, obs, snapshot.lost_after)) is not None and when > now:
            p.wake_at(when)
    return NodeStates(nodes, statuses, snapshot)


def node_status(node: ResourceRecord, obs: NodeObs | None, now: float, lost_after: float = 3.0,
                twin_of: tuple[str, str] | None = None) -> dict:
    """The status a Node should have given what the probes and the last list saw.

    ``Ready`` while probes succeed; ``NotReady`` while they fail; ``Lost`` once at least two
    probes failed and none succeeded for ``lostAfterSeconds`` (the Node's, else ``lost_after``).
    ``twin_of`` (node, daemon id): an older Node reaches the same daemon (see ``twins``); this
    one is NotReady with no slots, so the daemon's capacity is counted once.
    Stable while nothing changes, so an unchanged node is not rewritten every pass.
    """
    prev = node.status
    spec = node.model.spec
    cpus = (obs.cpus if obs else None) or prev.get("cpus")
    message = obs.message if obs else ""
    condition = _condition(node, obs, now, lost_after)
    slots = dict(spec.slots) if spec.slots is not None else ({"default": cpus} if cpus else {})
    if twin_of is not None and condition != NodeCondition.LOST:
        condition, slots = NodeCondition.NOT_READY, {}
        message = twin_message(*twin_of)
    status = {
        "condition": condition,
        "since": prev.get("since", now) if prev.get("condition") == condition else now,
        "message": message,
        "dockerVersion": (obs.docker_version if obs else None) or prev.get("dockerVersion"),
        "daemonId": (obs.daemon_id if obs else None) or prev.get("daemonId"),
        "cpus": cpus,
        "memory": (obs.memory if obs else None) or prev.get("memory"),
        "slots": slots,
    }
    if twin_of is not None:
        status["twinOf"] = twin_of[0]
    return status


def _condition(node: ResourceRecord, obs: NodeObs | None, now: float, lost_after: float) -> NodeCondition:
    if obs is None:
        return NodeCondition.UNKNOWN
    if obs.ready:
        return NodeCondition.READY
    silent_since = obs.last_ok if obs.last_ok is not None else obs.failing_since
    limit = node.model.spec.lostAfterSeconds or lost_after
    lost = obs.failures >= 2 and silent_since is not None and now - silent_since >= limit
    return NodeCondition.LOST if lost else NodeCondition.NOT_READY


def lost_together(nodes: dict[str, ResourceRecord], statuses: dict[str, dict], snapshot: Snapshot, now: float) -> None:
    """Declare Lost, with a node declared Lost this pass, every failing node due within one probe interval.

    A probe that answered says its node was alive then; the node may have died at any moment up to
    the next probe, ``snapshot.probe_interval`` later. So nodes that died together (a rack, a
    switch, a killed group) reach their ``lostAfterSeconds`` up to one interval apart, and would be
    declared over two passes, the second waiting for the first one's starts. A NotReady node with at
    least two failed probes whose deadline (``lost_at``) is at most one interval away is therefore
    declared Lost in the pass that declares another, and stays Lost in the passes until its deadline
    (it does not flip back to NotReady). A node failing alone waits its full ``lostAfterSeconds``.
    """
    if snapshot.probe_interval <= 0:
        return
    newly = any(s["condition"] == NodeCondition.LOST and nodes[n].status.get("condition") != NodeCondition.LOST
                for n, s in statuses.items())
    for name, node in nodes.items():
        status = statuses[name]
        if status["condition"] != NodeCondition.NOT_READY or "twinOf" in status:
            continue
        if not (newly or node.status.get("condition") == NodeCondition.LOST):
            continue
        when = lost_at(node, snapshot.nodes.get(name), snapshot.lost_after)
        if when is not None and when - now <= snapshot.probe_interval:
            was_lost = node.status.get("condition") == NodeCondition.LOST
            status.update(condition=NodeCondition.LOST, since=node.status.get("since", now) if was_lost else now)


def lost_at(node: ResourceRecord, obs: NodeObs | None, lost_after: float) -> float | None:
    """When a NotReady node will count as Lost if its probes keep failing (None: not failing)."""
    if obs is None or obs.ready or obs.failures < 2:
        return None
    since = obs.last_ok if obs.last_ok is not None else obs.failing_since
    return None if since is None else since + (node.model.spec.lostAfterSeconds or lost_after)


def twins(nodes: list[ResourceRecord], snapshot: Snapshot) -> dict[str, tuple[str, str]]:
    """Nodes whose daemon an older Node already uses: name -> (that node, daemon id).

    Two Nodes can name one daemon (a tcp and a unix address, or the same address twice). Only
    the Node applied first (older ``created_at``, then name) uses it; the others are NotReady,
    not listed and get no work, or the daemon's slots, containers and events would count twice.
    A daemon's ID comes from this pass's observation, else from the Node's last status.
    """
    first: dict[str, str] = {}
    out: dict[str, tuple[str, str]] = {}
    for node in sorted(nodes, key=lambda n: (n.created_at, n.name)):
        obs = snapshot.nodes.get(node.name)
        daemon = (obs.daemon_id if obs else None) or node.status.get("daemonId")
        if daemon is None:
            continue
        if daemon in first:
            out[node.name] = (first[daemon], daemon)
        else:
            first[daemon] = node.name
    return out


def twin_message(first: str, daemon_id: str) -> str:
    docker_id = daemon_id.split(" ", 1)[0]
    short = docker_id if len(docker_id) <= 12 else docker_id[:12] + "…"
    return f"same Docker daemon as node {first} (ID {short}); remove one of them"


def set_aside_twins(snapshot: Snapshot, twin_of: dict[str, tuple[str, str]]) -> Snapshot:
    """The snapshot as if each twin node (see ``twins``) did not answer: its containers are the
    first node's, seen in that node's list; under the twin's name they would count twice."""
    aside = {name: (first, daemon) for name, (first, daemon) in twin_of.items() if name in snapshot.nodes}
    if not aside:
        return snapshot
    nodes = dict(snapshot.nodes)
    for name, (first, daemon) in aside.items():
        nodes[name] = replace(nodes[name], ready=False, containers=None, message=twin_message(first, daemon))
    return replace(snapshot, nodes=nodes)


def set_aside_untrusted(snapshot: Snapshot, by_id: dict[str, TaskRecord], store_id: str,
                        mark_key: str) -> tuple[Snapshot, Untrusted]:
    """The snapshot with only our containers, and per listed node the others: (name, why).

    Anyone who can reach a node's Docker API can start a container with our labels; one that is
    not ours is never adopted, collected, counted or removed (it is not ours to touch), only
    reported. Nodes that were not listed have no entry (what they hold is unknown this pass).
    """
    untrusted: Untrusted = {}
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
    return replace(snapshot, nodes=nodes), untrusted


def report_untrusted(p: Plan, node: ResourceRecord, status: dict, seen: list[tuple[str, str]] | None) -> None:
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


def node_events(p: Plan, node: ResourceRecord, status: dict) -> None:
    """An event when a Node becomes a twin or changes condition (its first sight is not news)."""
    if status.get("twinOf") and status["twinOf"] != node.status.get("twinOf"):
        p.events.append(Event("Node", node.name, "SameDaemon", f"node {node.name}: {status['message']}", "Warning"))
        return
    old, new = node.status.get("condition"), status["condition"]
    if old == new or old is None:
        return
    if new == NodeCondition.LOST:
        p.events.append(Event("Node", node.name, "NodeLost", f"node {node.name} lost: {status['message']}; "
                              "its tasks are rescheduled (onNodeLost: wait keeps them bound)", "Warning"))
    elif new == NodeCondition.NOT_READY:
        p.events.append(Event("Node", node.name, "NodeNotReady", f"node {node.name}: {status['message']}", "Warning"))
    elif new == NodeCondition.READY:
        p.events.append(Event("Node", node.name, "NodeReady", f"node {node.name} answers again (was {old})"))
