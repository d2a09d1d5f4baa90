"""The stable JSON objects: what ``-o json|yaml`` prints now, and what the HTTP API and a dashboard
will return later.

``*_object`` functions turn store records and rows into objects with the field names tests pin
(every time ISO 8601); ``dump`` writes a list of them as JSON or YAML. Called by the CLI's
commands and by the ``ops`` verbs that hand objects back. No store access and no clock here.
Namespaced objects say their namespace: ``metadata.namespace`` of a Job, Service or Secret,
``namespace`` of a task and of an event (null for a cluster-scoped object's event). A Secret shows
no value: each is ``<N bytes>``.
"""

from __future__ import annotations

import json
import functools
import math
from datetime import datetime, timezone
from typing import NamedTuple

from .kinds import Kind, TaskPhase
from .records import ResourceRecord, TaskRecord


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    # What datetime.fromtimestamp(ts, utc).isoformat(timespec="milliseconds") gives, at a fraction
    # of its cost for the 300,000 stamps of a large `get tasks -o json`.
    frac, whole = math.modf(ts)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        whole, us = whole + 1, us - 1_000_000
    elif us < 0:
        whole, us = whole - 1, us + 1_000_000
    return f"{_second(int(whole))}.{us // 1000:03d}Z"


@functools.lru_cache(maxsize=4096)  # tasks are created, started and finished in bursts
def _second(whole: int) -> str:
    return datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def task_object(t: TaskRecord) -> dict:
    return {
        "id": t.id, "owner": t.owner, "namespace": t.namespace, "index": t.index, "attempt": t.attempt, "node": t.node,
        "containerId": t.container_id, "phase": t.phase._value_, "exitCode": t.exit_code,
        "oomKilled": t.oom_killed, "reason": t.reason, "message": t.message,
        "createdAt": iso(t.created_at), "startedAt": iso(t.started_at), "finishedAt": iso(t.finished_at),
        "notBefore": iso(t.not_before) if t.not_before > t.created_at else None, "labels": t.labels,
    }


def epoch(text: str | None) -> float | None:
    """Seconds since the epoch of an ``iso`` time."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def task_record(obj: dict) -> TaskRecord:
    """The ``TaskRecord`` a ``task_object`` was made of, as far as the object shows it (a remote CLI renders
    the API's tasks with the same tables as the local one): ``task_object(task_record(o)) == o``."""
    kind, _, name = obj["owner"].partition("/")
    created = epoch(obj["createdAt"]) or 0.0
    return TaskRecord(
        id=obj["id"], owner_kind=Kind(kind), owner_name=name, owner_uid="", index=obj["index"],
        attempt=obj["attempt"], phase=TaskPhase(obj["phase"]), node=obj["node"], container_id=obj["containerId"],
        exit_code=obj["exitCode"], oom_killed=obj["oomKilled"], reason=obj["reason"], message=obj["message"],
        created_at=created, not_before=epoch(obj["notBefore"]) or created, started_at=epoch(obj["startedAt"]),
        finished_at=epoch(obj["finishedAt"]), labels=obj["labels"], namespace=obj["namespace"])


def event_row(obj: dict) -> dict:
    """The store row an ``event_object`` was made of (as the event tables read it)."""
    kind, _, name = obj["object"].partition("/")
    return {"ts": epoch(obj["time"]), "kind": kind, "name": name, "namespace": obj["namespace"] or "",
            "type": obj["type"], "reason": obj["reason"], "message": obj["message"], "task_id": obj["task"]}


# What a resource's status says before the controller first wrote it.
_STATUS_DEFAULTS = {
    Kind.NODE: {"condition": "Unknown"},
    Kind.JOB: {"phase": "Pending", "active": 0, "succeeded": 0, "failed": 0},
    Kind.SERVICE: {"running": 0, "ready": 0, "updated": 0, "restarts": 0, "restartBackoffSeconds": 0},
    Kind.NAMESPACE: {"phase": "Active"},
}


# Status fields the controller stores as epoch seconds; shown as ISO 8601 like every other time.
_STATUS_TIMES = ("since", "startTime", "completionTime")
_ROLLOUT_TIMES = ("startedAt", "progressAt")


def resource_object(r: ResourceRecord, used: dict[str, int] | None = None) -> dict:
    """The user's view of a resource; ``used`` is a Node's slots in use per execution type (a
    Namespace's status is ``namespace_object``'s)."""
    status = {**_STATUS_DEFAULTS.get(r.kind, {}), **r.status}
    for key in _STATUS_TIMES:
        if isinstance(status.get(key), (int, float)):
            status[key] = iso(status[key])
    if isinstance(status.get("rollout"), dict):
        status["rollout"] = {k: iso(v) if k in _ROLLOUT_TIMES and isinstance(v, (int, float)) else v
                             for k, v in status["rollout"].items()}
    if r.kind is Kind.NODE:
        status["ready"] = status.get("condition") == "Ready"
        status["slotsUsed"] = used or {}
        status["draining"] = r.drain_deadline is not None
        status["drainDeadline"] = iso(r.drain_deadline)
    if r.deleted_at is not None:
        status["terminating"] = True
    metadata = {"name": r.name}
    if r.namespace:
        metadata["namespace"] = r.namespace
    return {
        "apiVersion": "broker/v1", "kind": r.kind.value,
        "metadata": {**metadata, "labels": r.labels, "uid": r.uid, "generation": r.generation,
                     "createdAt": iso(r.created_at), "updatedAt": iso(r.updated_at),
                     "deletedAt": iso(r.deleted_at), "createdBy": r.created_by or None,
                     "updatedBy": r.updated_by or None},
        "spec": secret_spec(r.spec) if r.kind is Kind.SECRET else r.spec, "status": status,
    }


def secret_spec(spec: dict) -> dict:
    """A Secret's spec as shown: its type, a registry's server, and each value as its size
    (``<8 bytes>``). The store keeps no value in a spec; this also leaves out the digests."""
    shown = {"type": spec.get("type", "opaque")}
    if spec.get("server"):
        shown["server"] = spec["server"]
    shown["data"] = {key: secret_size(value) for key, value in spec.get("data", {}).items()}
    return shown


def secret_size(value: dict) -> str:
    """``<N bytes>``: how a Secret's value is shown."""
    return f"<{value['bytes']} bytes>"


def node_used(node: str, tasks: list[TaskRecord], exec_types: dict) -> dict[str, int]:
    """A Node's slots in use per execution type: its active tasks, by their owner's executionType
    (``exec_types``: owner key (kind, namespace, name) -> type; a missing owner counts as ``default``)."""
    used: dict[str, int] = {}
    for t in tasks:
        if t.active and t.node == node:
            key = exec_types.get(t.owner_key, "default")
            used[key] = used.get(key, 0) + 1
    return used


class OwnerRequest(NamedTuple):
    """What one task of an owner asks for, as a namespace's use counts it."""

    cpus: float
    memory: int
    execution_type: str
    requested_cpus: float | None = None  # as the template says (None: no request; a budget counts 1 cpu)


def namespace_usage(name: str, tasks: list[TaskRecord], requests: dict) -> dict:
    """What namespace ``name``'s tasks use now: ``running`` (tasks Running) and ``used``, summed over its
    active tasks that hold a node (cpus and memory as their owners request them, the tasks themselves,
    and the slots per execution type). ``requests``: owner key -> ``OwnerRequest``; a missing owner asks for
    nothing but a ``default`` slot."""
    running, cpus, memory, held, slots = 0, 0.0, 0, 0, {}
    for t in tasks:
        if t.namespace != name or not t.active:
            continue
        running += t.phase._value_ == "Running"
        if t.node is None:
            continue  # waiting for a node: it uses nothing yet
        req = requests.get(t.owner_key, _NOTHING)
        cpus, memory, held = cpus + req.cpus, memory + req.memory, held + 1
        slots[req.execution_type] = slots.get(req.execution_type, 0) + 1
    return {"running": running, "used": {"cpus": round(cpus, 6), "memory": memory, "tasks": held, "slots": slots}}


_NOTHING = OwnerRequest(0.0, 0, "default")


def size_text(n: int) -> str:
    """Bytes as a manifest writes a size: 512m, 1.5g, 16g (`get namespaces`, quota reasons)."""
    for unit, scale in (("t", 1 << 40), ("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def namespace_object(r: ResourceRecord, usage: dict) -> dict:
    """A Namespace with its phase (Active, Terminating) and ``usage`` (``namespace_usage``, with the
    cpu-hours consumed in its budget's window as ``used.cpuHours`` when it has a budget) as status."""
    obj = resource_object(r)
    obj["status"] = {"phase": "Terminating" if r.deleted_at is not None else "Active", **usage}
    return obj


def event_object(e: dict) -> dict:
    """One row of the store's events (``get events -o json``); ``namespace`` is null for a
    cluster-scoped object (a Node, a Namespace, a synced directory)."""
    return {"time": iso(e["ts"]), "object": f"{e['kind']}/{e['name']}", "namespace": e.get("namespace") or None,
            "type": e["type"], "reason": e["reason"], "message": e["message"], "task": e["task_id"]}


def revision_object(rev: dict, current: str) -> dict:
    """One template revision of a Service (``rollout history -o json``); ``current``: the template
    hash the Service wants now."""
    return {"revision": rev["revision"], "template": rev["hash"], "current": rev["hash"] == current,
            "image": rev["template"]["template"]["image"], "createdAt": iso(rev["created_at"]),
            "cause": rev["cause"], "spec": rev["template"]}


def sync_status_object(row: dict, owned: int) -> dict:
    """What the last sync of one directory did (``sync status``): when, from which commit, whether it
    was refused, how many live resources the directory owns, and each file's state."""
    return {"source": row["source"], "syncedAt": iso(row["synced_at"]), "commit": row["commit_id"],
            "refused": row["refused"], "resources": owned, "files": row["files"]}


def token_object(t) -> dict:
    """An API token (``token list -o json``): who, which role where, and when it was made, last used and
    revoked; never its secret nor the secret's hash."""
    return {"id": t.id, "user": t.user, "role": t.role, "namespaces": list(t.namespaces),
            "createdAt": iso(t.created_at), "createdBy": t.created_by or None, "lastUsedAt": iso(t.last_used_at),
            "revokedAt": iso(t.revoked_at)}


LARGE_OUTPUT = 500  # objects; see dump


def dump(objects: list[dict], fmt: str) -> str:
    if fmt == "json":
        if len(objects) > LARGE_OUTPUT:
            # Python's indenting encoder is pure Python; past this size print one compact object per
            # line with the C encoder (about 3x faster, still one JSON array, and easy to grep).
            return "[\n" + ",\n".join(map(json.dumps, objects)) + "\n]\n"
        return json.dumps(objects, indent=2, sort_keys=False) + "\n"
    import yaml

    from .spec.yamlcore import Dumper  # quotes what a YAML 1.2 reader would not read back as a string

    return yaml.dump(objects, Dumper=Dumper, sort_keys=False)


# -- exec over a WebSocket --------------------------------------------------------------------------
# `brokerctl exec` through a server (``api.exec_socket``, ``client.remote``): binary messages whose first
# byte is the channel, as Kubernetes' v4.channel.k8s.io. The client sends STDIN (an empty one: end of
# input); the server sends STDOUT and STDERR as the command writes them, then one STATUS, JSON:
# ``{"exitCode": N}``, or ``{"error", "message", "details", "exitCode"}`` as the API's errors with the
# CLI's exit code; then it closes the socket.
EXEC_STDIN, EXEC_STDOUT, EXEC_STDERR, EXEC_STATUS = 0, 1, 2, 3


def exec_frame(channel: int, data: bytes) -> bytes:
    return bytes((channel,)) + data
