"""Container Broker's nodes as Nodes: a node's uuid is its Node's name, its ``hostname`` the Node's
address (``tcp://HOST:2375`` for a bare host name); and the pool's health check.

Called by ``api.containerbroker``. ``node_object`` and the address mapping are pure.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

from ...errors import Conflict, UsageError
from ...kinds import Kind, NodeCondition
from ...records import ResourceRecord, TaskRecord
from ...views import iso
from ..tokens import author
from . import Created, Settings, create_once
from .tasks import JOB_PREFIX, is_task_job

DOCKER_PORT = 2375  # a hostname without a port is a Docker daemon on its plain-HTTP port

# -- nodes -------------------------------------------------------------------------------------------


def address_of(hostname) -> str:
    """A node's ``hostname`` as a Docker address: ``tcp://``/``unix://`` as given, ``http://H:P`` as
    ``tcp://H:P``, ``H:P`` as ``tcp://H:P``, a bare ``H`` as ``tcp://H:2375``."""
    if not isinstance(hostname, str) or not hostname.strip():
        raise UsageError("POST /nodes: hostname is required: a Docker host, e.g. docker1.example.com, "
                         "10.0.0.5:2375 or tcp://10.0.0.5:2375")
    text = hostname.strip().rstrip("/")
    if text.startswith(("tcp://", "unix://")):
        return text
    if text.startswith("https://"):
        raise UsageError(f"POST /nodes: hostname {hostname!r}: a daemon behind TLS needs the Node's tls files; "
                         "apply it as a Node manifest (`brokerctl apply`)")
    text = text.removeprefix("http://")
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and not host.endswith(":"):
        return f"tcp://{text}"
    return f"tcp://{text}:{DOCKER_PORT}"


def hostname_of(address: str) -> str:
    return address


def node_name_of(hostname: str) -> str:
    """A Node name from a hostname: lowercase, each run of other characters a '-', at most 63."""
    text = address_of(hostname).removeprefix("tcp://").removeprefix("unix://")
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if len(name) > 63:
        import hashlib

        name = name[:54].rstrip("-") + "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return name or "node"


def _slots(value, where: str) -> dict[str, int]:
    if not isinstance(value, dict) or not value:
        raise UsageError(f"{where}: slots_execution_types is required: an object of EXECUTION_TYPE: slot count, "
                         'e.g. {"cpu": 2, "network": 10}')
    for etype, count in value.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise UsageError(f"{where}: slots_execution_types.{etype}: a whole number of slots, 0 or more")
    return dict(value)


def node_model(name: str, address: str, slots: dict[str, int], settings: Settings, spec: dict | None = None):
    """A Node manifest: ``spec`` (a stored Node's) with its address and slots; a new Node may bind-mount
    the storage mount paths, so the tasks that name them can run there."""
    from pydantic import ValidationError

    from ...spec.models import Node

    spec = dict(spec) if spec is not None else {
        "allowedMounts": sorted({path for _, path in settings.storage_mounts})}
    spec.update(address=address, slots=slots)
    try:
        return Node.model_validate({"apiVersion": "broker/v1", "kind": "Node", "metadata": {"name": name},
                                    "spec": spec})
    except ValidationError as exc:
        names = {("spec", "address"): "hostname", ("spec", "slots"): "slots_execution_types"}
        problems = []
        for e in exc.errors():
            loc = tuple(str(x) for x in e["loc"])
            field = next((f for path, f in names.items() if loc[:2] == path), ".".join(loc))
            problems.append(f"{field}: {e['msg'].removeprefix('Value error, ')}")
        raise UsageError("POST /nodes: " + "; ".join(problems)) from None


def add_node(store, body, settings: Settings, key: str | None = None, by: str | None = None,
             now: float | None = None) -> Created:
    """POST /nodes {hostname, slots_execution_types}: a Node named after its hostname."""
    if not isinstance(body, dict):
        raise UsageError("POST /nodes: the body is a JSON object {hostname, slots_execution_types}")
    body = body["node"] if isinstance(body.get("node"), dict) and "hostname" not in body else body
    address = address_of(body.get("hostname"))
    name = node_name_of(address)
    model = node_model(name, address, _slots(body.get("slots_execution_types"), "POST /nodes"), settings)
    now = time.time() if now is None else now
    answer = node_object(_new_node(model, now), [], {})
    try:
        return create_once(store, [model], answer, f"{by or ''} POST /nodes", key, by, now)
    except Conflict as exc:
        if not str(exc).endswith("exists already"):  # being deleted
            raise
        raise Conflict(f"{exc}; PATCH /nodes/{name} changes its slots") from None


def _new_node(model, now: float) -> ResourceRecord:
    return ResourceRecord(Kind.NODE, model.metadata.name, "", {}, model.spec.model_dump(mode="json"), 1, now, now)


def update_node(store, name: str, body, settings: Settings, by: str | None = None) -> dict:
    """PATCH /nodes/{uuid} {slots_execution_types}: the Node's slots replaced (the rest of it kept)."""
    node = store.resource(Kind.NODE, name)
    if not isinstance(body, dict):
        raise UsageError("PATCH /nodes: the body is a JSON object {slots_execution_types}")
    body = body["node"] if isinstance(body.get("node"), dict) and "slots_execution_types" not in body else body
    spec = {k: v for k, v in node.spec.items() if v is not None}
    model = node_model(name, node.spec["address"], _slots(body.get("slots_execution_types"), "PATCH /nodes"),
                       settings, spec)
    model.metadata.labels.update(node.labels)
    store.apply([model], by=author(by))
    return get_node(store, name)


def get_node(store, name: str) -> dict:
    return node_objects(store, [store.resource(Kind.NODE, name)])[0]


def list_nodes(store) -> list[dict]:
    return node_objects(store, store.resources(Kind.NODE))


def node_objects(store, nodes: list[ResourceRecord], panel: bool = False, now: float | None = None) -> list[dict]:
    """Nodes as Container Broker shows them; ``panel``: with their slots and what runs in them."""
    active = store.tasks(active_only=True)
    types = {r.key: r.spec.get("executionType", "default") for r in store.resources() if r.kind.workload}
    running: dict[str, list[tuple[str, TaskRecord]]] = {}
    for t in active:
        if t.node:
            running.setdefault(t.node, []).append((types.get(t.owner_key, "default"), t))
    if not panel:
        return [node_object(n, running.get(n.name, []), types) for n in nodes]
    return [panel_node_object(n, running.get(n.name, [])) for n in nodes]


# Container Broker's node statuses: available, unstable (failing, not yet given up), unavailable.
_NODE_STATUS = {NodeCondition.READY: "available", NodeCondition.NOT_READY: "unstable",
                NodeCondition.LOST: "unavailable", NodeCondition.UNKNOWN: "unavailable"}


def node_slots(node: ResourceRecord) -> dict[str, int]:
    slots = node.spec.get("slots")
    if slots is None:  # the host's CPUs, once the controller has seen them
        slots = (node.status.get("slots") or {}).get("total") or {"default": 0}
    return dict(slots)


def node_object(node: ResourceRecord, running: Iterable, types: dict) -> dict:
    return {"uuid": node.name, "hostname": hostname_of(node.spec["address"]),
            "status": _NODE_STATUS.get(node.status.get("condition", "Unknown"), "unavailable"),
            "accept_new_tasks": not node.spec.get("unschedulable", False),
            "slots_execution_types": node_slots(node), "runner_provider": "docker",
            "runner_capacity_reached": False}


def panel_node_object(node: ResourceRecord, running: list[tuple[str, TaskRecord]]) -> dict:
    """GET /status/nodes: the node, its usage per execution type (percent of slots busy) and its slots,
    each ``idle`` or ``running`` a task (by uuid, for the tasks of Container Broker's Jobs)."""
    slots = node_slots(node)
    busy: dict[str, list[TaskRecord]] = {}
    for etype, t in running:
        busy.setdefault(etype, []).append(t)
    listed, usage = [], {}
    for etype, count in slots.items():
        tasks = busy.get(etype, [])
        usage[etype] = round(100 * len(tasks) / count) if count else 0
        for i in range(count):
            t = tasks[i] if i < len(tasks) else None
            listed.append({"name": f"{node.name}-{etype}-{i + 1}", "execution_type": etype,
                           "status": "running" if t else "idle",
                           "current_task": None if t is None else
                           {"uuid": t.owner_name.removeprefix(JOB_PREFIX), "id": t.id}})
    ready = node.status.get("condition") == NodeCondition.READY
    return {**node_object(node, running, {}), "name": node.name,
            "last_error": None if ready else (node.status.get("message") or None),
            "last_success_at": iso(node.status.get("since")) if ready else None,
            "usage_per_execution_type": usage, "slots": listed}


def status_nodes(store) -> list[dict]:
    return node_objects(store, store.resources(Kind.NODE), panel=True)


def delete_node(store, name: str, by: str | None = None) -> str:
    """DELETE /nodes/{uuid}: as `brokerctl delete node` (a node with active tasks is refused: drain it)."""
    from ..resources import delete

    ((_, _, outcome),) = delete(store, [(Kind.NODE, "", name)], by=by)
    return outcome


def healthcheck(store, settings: Settings) -> dict:
    """GET /healthcheck: the store answers, with the pool's size and the tasks not started yet."""
    nodes = store.resources(Kind.NODE)
    waiting = [j for j in store.resources(Kind.JOB, namespace=settings.namespace)
               if is_task_job(j) and j.deleted_at is None and j.status.get("phase", "Pending") == "Pending"]
    return {"status": "OK", "nodes": len(nodes), "slots": sum(sum(node_slots(n).values()) for n in nodes),
            "pending_tasks": len(waiting)}
