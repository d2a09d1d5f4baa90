"""Container Broker's API on brokerctl's nouns: its tasks are Jobs, its nodes are Nodes.

Called by ``api.containerbroker`` (the routes Container Broker clients call, served as is). A
Container Broker task becomes a one-completion Job named ``cb-<uuid>`` (the task's uuid, made here)
in the namespace the server was given (``--cb-namespace``), with ``backoffLimit`` 3 (Container
Broker's three retries); its ``cmd`` runs with ``sh -c`` (as Container Broker runs it), its
``execution_type`` is the Job's slot type, its ``storage_mounts`` (name -> path in the container)
are bind mounts of the host paths the server maps those names to (``--storage-mount NAME=PATH``), its
``tags`` are the Job's labels, beside ``containerbroker.name`` (the task's name). A node's uuid is
its Node's name; its ``hostname`` is the Node's address (``tcp://HOST:2375`` for a bare host name).

The pure part (``task_status``, ``task_object``, ``node_object``...) maps records to Container
Broker's objects without I/O or clock (``now`` is passed in), and is unit-tested as such.
"""

from __future__ import annotations

import math
import re
import time
import uuid as uuids
from typing import Iterable, NamedTuple

from ..errors import BrokerError, Conflict, NotFound, UsageError
from ..kinds import Kind, NodeCondition, TaskPhase
from ..records import ResourceRecord, TaskRecord
from ..views import iso
from .tokens import author

JOB_PREFIX = "cb-"  # a task's Job is cb-<uuid>
NAME_LABEL = "containerbroker.name"  # the task's name, kept as a label of its Job
RESERVED_TAG_PREFIXES = ("brokerctl.", "containerbroker.")
RETRIES = 3  # Container Broker's task_retry_count: a failed attempt is retried three times
STATUSES = ("waiting", "starting", "started", "retry", "failed", "completed", "error")
STATUS_LIMIT = 200  # GET /status/tasks: the newest this many (Container Broker's LIMIT_TASKS)
DOCKER_PORT = 2375  # a hostname without a port is a Docker daemon on its plain-HTTP port
TAG_KEY_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_./-]{0,251}[A-Za-z0-9_])?$")
MAX_KEY = 255  # characters of an idempotency key


class Settings(NamedTuple):
    """What the server was told: the namespace of the tasks, and storage mount names -> host paths."""

    namespace: str = "default"
    storage_mounts: tuple[tuple[str, str], ...] = ()

    @property
    def mounts(self) -> dict[str, str]:
        return dict(self.storage_mounts)


def parse_storage_mount(text: str) -> tuple[str, str]:
    """``--storage-mount NAME=PATH`` -> (NAME, PATH); PATH absolute."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path.startswith("/"):
        raise UsageError(f"--storage-mount {text!r}: use NAME=PATH with an absolute host path, e.g. "
                         "shared=/srv/shared")
    return name, path


# -- tasks: a request becomes a Job ------------------------------------------------------------------


def job_name(task_uuid: str) -> str:
    return JOB_PREFIX + task_uuid


def task_fields(body) -> dict:
    """The task of a POST /tasks body: its fields at the top, or under ``task`` (as Rails wraps them)."""
    if isinstance(body, dict) and isinstance(body.get("task"), dict) and "image" not in body:
        body = body["task"]
    if not isinstance(body, dict):
        raise UsageError("POST /tasks: the body is a JSON object {name, image, cmd, execution_type, "
                         "storage_mounts, tags, persist_logs}")
    return body


def _text(fields: dict, name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"POST /tasks: {name} is required, a non-empty string")
    return value


def _tags(value) -> dict[str, str]:
    """Tags as labels: values as text (Container Broker keeps ``to_s`` of each); keys checked."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError("POST /tasks: tags is an object of KEY: VALUE")
    out = {}
    for key, val in value.items():
        if any(key.startswith(p) for p in RESERVED_TAG_PREFIXES):
            raise UsageError(f"POST /tasks: tag {key!r}: keys starting with {' or '.join(RESERVED_TAG_PREFIXES)} "
                             "are reserved (brokerctl sets them); use another key")
        if not TAG_KEY_RE.match(key):
            raise UsageError(f"POST /tasks: tag {key!r} is not a label key: 1 to 253 letters, digits and . _ / -, "
                             "starting with a letter or digit")
        if isinstance(val, bool):
            val = "true" if val else "false"
        elif isinstance(val, (int, float)) and not isinstance(val, bool):
            val = str(val)
        elif val is None:
            val = ""
        if not isinstance(val, str):
            raise UsageError(f"POST /tasks: tag {key!r}: the value is text, a number or a boolean")
        out[key] = val
    return out


def _mounts(value, settings: Settings) -> list[dict]:
    """storage_mounts {NAME: path in the container} -> bind mounts of the configured host paths."""
    if value is None:
        return []
    if not isinstance(value, dict):
        raise UsageError("POST /tasks: storage_mounts is an object of NAME: path in the container")
    configured = settings.mounts
    mounts = []
    for name, target in value.items():
        if name not in configured:
            known = ", ".join(sorted(configured)) or "none (start the server with --storage-mount NAME=PATH)"
            raise UsageError(f"POST /tasks: storage_mounts: no storage mount named {name!r}; this server has: {known}")
        if not isinstance(target, str):
            raise UsageError(f"POST /tasks: storage_mounts.{name}: the path in the container is a string")
        mounts.append({"source": configured[name], "target": target})
    return mounts


# The Job's fields as a Container Broker client names them, for messages.
_FIELD_NAMES = {("spec", "executionType"): "execution_type", ("spec", "template", "image"): "image",
                ("spec", "template", "command"): "cmd", ("spec", "template", "mounts"): "storage_mounts",
                ("metadata", "labels"): "tags"}


def task_job(body, settings: Settings, task_uuid: str):
    """The Job a POST /tasks body asks for, validated as ``apply`` validates a manifest (UsageError
    naming the request's field otherwise)."""
    from pydantic import ValidationError

    from ..spec.models import Job

    fields = task_fields(body)
    name, image, cmd = _text(fields, "name"), _text(fields, "image"), _text(fields, "cmd")
    execution_type = _text(fields, "execution_type")
    persist = fields.get("persist_logs", False)
    if persist is not None and not isinstance(persist, bool):
        raise UsageError("POST /tasks: persist_logs is true or false")
    doc = {"apiVersion": "broker/v1", "kind": "Job",
           "metadata": {"name": job_name(task_uuid), "namespace": settings.namespace,
                        "labels": {**_tags(fields.get("tags")), NAME_LABEL: name}},
           "spec": {"executionType": execution_type, "backoffLimit": RETRIES,
                    "template": {"image": image, "command": cmd,
                                 "mounts": _mounts(fields.get("storage_mounts"), settings)}}}
    try:
        return Job.model_validate(doc)
    except ValidationError as exc:
        raise UsageError("POST /tasks: " + "; ".join(_problem(e) for e in exc.errors())) from None


def _problem(error: dict) -> str:
    loc = tuple(str(x) for x in error["loc"] if x != "[key]")
    where = next((f"{field}{'.' + '.'.join(loc[len(path):]) if loc[len(path):] else ''}"
                  for path, field in _FIELD_NAMES.items() if loc[:len(path)] == path), ".".join(loc))
    return f"{where}: {error['msg'].removeprefix('Value error, ')}"


def idempotency_key(text: str | None) -> str | None:
    if text is not None and not 0 < len(text) <= MAX_KEY:
        raise UsageError(f"X-Idempotency-Key: 1 to {MAX_KEY} characters")
    return text


class Created(NamedTuple):
    answer: dict  # what the first request was answered
    replayed: bool  # the key was seen: nothing was created this time


def create_once(store, models: list, answer: dict, scope: str, key: str | None, by: str | None,
                now: float) -> Created:
    """Create ``models`` (Conflict if one exists), unless ``key`` came with a request of ``scope`` in the
    last day: then the answer that request got (nothing written)."""
    from ..store import Once

    earlier = store.create(models, None if key is None else Once(scope, key, answer), now=now, by=author(by))
    return Created(answer, False) if earlier is None else Created(earlier, True)


def submit_task(store, body, settings: Settings, key: str | None = None, by: str | None = None,
                now: float | None = None) -> Created:
    """POST /tasks: the task's Job created (or, for an idempotency key seen in the last day, the first
    answer); answers the task as GET /tasks/{uuid} shows it, ``waiting``."""
    now = time.time() if now is None else now
    task_uuid = str(uuids.uuid4())
    job = task_job(body, settings, task_uuid)
    answer = task_object(task_uuid, _new_record(job, now), [], now)
    return create_once(store, [job], answer, f"{by or ''} POST /tasks {settings.namespace}", key, by, now)


def _new_record(job, now: float) -> ResourceRecord:
    """The Job as the store will hold it, before it is written (for the first answer)."""
    return ResourceRecord(Kind.JOB, job.metadata.name, "", dict(job.metadata.labels),
                          job.spec.model_dump(mode="json"), 1, now, now, namespace=job.namespace)


# -- tasks: a Job becomes a task ---------------------------------------------------------------------


def task_job_record(store, settings: Settings, task_uuid: str) -> ResourceRecord:
    """The Job of task ``task_uuid`` (NotFound naming the task)."""
    name = job_name(task_uuid.lower())
    try:
        return store.resource(Kind.JOB, name, namespace=settings.namespace)
    except NotFound:
        raise NotFound._with_step(f"task {task_uuid!r} not found", "POST /tasks creates tasks; GET /status/tasks "
                                  "lists them", "list", kind="Task", name=task_uuid) from None


def is_task_job(job: ResourceRecord) -> bool:
    return job.name.startswith(JOB_PREFIX) and NAME_LABEL in job.labels


def get_task(store, settings: Settings, task_uuid: str, now: float | None = None) -> dict:
    job = task_job_record(store, settings, task_uuid)
    return task_object(job.name.removeprefix(JOB_PREFIX), job, _attempts(store, job),
                       time.time() if now is None else now)


def _attempts(store, job: ResourceRecord) -> list[TaskRecord]:
    return store.tasks(owner=(Kind.JOB, job.name), namespace=job.namespace)


def task_logs(store, settings: Settings, task_uuid: str) -> str | None:
    """The output of the task's last attempt that ran (stored, or live while it runs); None before any ran."""
    from .tasks import output

    job = task_job_record(store, settings, task_uuid)
    ran = [t for t in _attempts(store, job) if t.started_at is not None or store.output(t.id) is not None]
    if not ran:
        return None
    data = b"".join(chunk.data for chunk in output(store, ran[-1], follow=False))
    return data.decode("utf-8", errors="replace")


def kill_container(store, settings: Settings, task_uuid: str) -> dict:
    """SIGKILL the running attempt's container, as Container Broker does: the controller collects the
    attempt as failed (exit code 137) and retries it as any failure. Refused unless the task is started."""
    from .nodes import node_host

    job = task_job_record(store, settings, task_uuid)
    running = [t for t in _attempts(store, job) if t.phase is TaskPhase.RUNNING and t.container_id and t.node]
    if not running:
        raise BrokerError(f"task {task_uuid} is not started: it has no running container to kill")
    t = running[-1]
    host = node_host(store, t.node)
    try:
        killed = host.kill(t.container_id)
    finally:
        host.close()
    if not killed:
        raise BrokerError(f"task {task_uuid}: its container on node {t.node} was no longer running")
    return {"uuid": task_uuid, "killed": t.id, "node": t.node}


def status_tasks(store, settings: Settings, status: str | None = None, tags: dict[str, str] | None = None,
                 limit: int = STATUS_LIMIT, now: float | None = None) -> list[dict]:
    """GET /status/tasks: the newest tasks first, those whose status is ``status`` and whose tags
    include ``tags``, at most ``limit``; each with its name, image, cmd, tags and node."""
    if status is not None and status not in STATUSES:
        raise UsageError(f"status {status!r}: use one of {', '.join(STATUSES)}")
    now = time.time() if now is None else now
    want = (tags or {}).items()
    jobs = [j for j in store.resources(Kind.JOB, namespace=settings.namespace)
            if is_task_job(j) and want <= j.labels.items()]
    attempts: dict[str, list[TaskRecord]] = {}
    for t in store.tasks(namespace=settings.namespace):
        if t.owner_kind is Kind.JOB:
            attempts.setdefault(t.owner_name, []).append(t)
    out = []
    for job in sorted(jobs, key=lambda j: (j.created_at, j.name), reverse=True):
        obj = panel_task_object(job, attempts.get(job.name, []), now)
        if status is None or obj["status"] == status:
            out.append(obj)
            if len(out) >= limit:
                break
    return out


def task_status(job: ResourceRecord, attempts: list[TaskRecord]) -> str:
    """Container Broker's status of a task from its Job and attempts (oldest first):

    =============================================  ===========
    the Job, its last attempt                      status
    =============================================  ===========
    being deleted                                  error
    phase Complete (or last attempt Succeeded)     completed
    phase Failed (backoffLimit passed)             failed
    last attempt Running                           started
    last attempt Pending, placed on a node         starting
    last attempt Failed, or Pending after one      retry
    no attempt yet, or Pending and none failed     waiting
    =============================================  ===========
    """
    if job.deleted_at is not None:
        return "error"
    phase = job.status.get("phase")
    last = attempts[-1] if attempts else None
    if phase == "Complete" or (last is not None and last.phase is TaskPhase.SUCCEEDED):
        return "completed"
    if phase == "Failed":
        return "failed"
    if last is None:
        return "waiting"
    if last.phase is TaskPhase.RUNNING:
        return "started"
    if last.phase is TaskPhase.PENDING and last.node:
        return "starting"
    if last.phase is TaskPhase.FAILED or _failures(job, attempts):
        return "retry"
    return "waiting"


def _failures(job: ResourceRecord, attempts: list[TaskRecord]) -> int:
    """Failed attempts since the last `brokerctl retry` (a lost one is replaced without counting)."""
    epoch = job.retried_at or 0.0
    return sum(1 for t in attempts if t.phase is TaskPhase.FAILED and t.created_at >= epoch)


def task_object(task_uuid: str, job: ResourceRecord, attempts: list[TaskRecord], now: float) -> dict:
    """GET /tasks/{uuid}: Container Broker's task. ``try_count``: the retries made (failed attempts, at
    most ``backoffLimit``); times, exit code and error are those of the last attempt that started."""
    ran = [t for t in attempts if t.started_at is not None]
    last = ran[-1] if ran else None
    ended = [t for t in attempts if t.finished_at is not None and t.phase is not TaskPhase.SUCCEEDED]
    status = task_status(job, attempts)
    error = None
    if status != "completed" and ended:
        failed = ended[-1]
        error = ": ".join(filter(None, [failed.reason, failed.message])) or None
    if status == "failed" and job.status.get("message"):
        error = job.status["message"]
    started, finished = (last.started_at, last.finished_at) if last else (None, None)
    if started is None:
        seconds = None
    else:
        # never below 0: started_at is the controller's clock, finished_at the daemon's
        seconds = max(0, math.floor((finished if finished is not None else now) - started))
    return {
        "uuid": task_uuid, "status": status,
        "exit_code": last.exit_code if last else None,
        "error": error,
        "try_count": min(_failures(job, attempts), job.spec.get("backoffLimit", RETRIES)),
        "created_at": iso(job.created_at), "started_at": iso(started), "finished_at": iso(finished),
        "progress": None, "seconds_running": seconds,
        "execution_type": job.spec.get("executionType", "default"),
    }


def panel_task_object(job: ResourceRecord, attempts: list[TaskRecord], now: float) -> dict:
    """GET /status/tasks: the task with what it runs, its tags and where."""
    template = job.spec.get("template", {})
    last = attempts[-1] if attempts else None
    tags = {k: v for k, v in job.labels.items() if k != NAME_LABEL}
    return {
        **task_object(job.name.removeprefix(JOB_PREFIX), job, attempts, now),
        "name": job.labels.get(NAME_LABEL, job.name), "image": template.get("image"),
        "cmd": template.get("command"), "tags": tags,
        "container_id": last.container_id if last else None,
        "storage_mounts": {m["target"]: m["source"] for m in template.get("mounts", [])},
        "slot": {"uuid": last.node, "name": last.node} if last and last.node else None,
    }


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

    from ..spec.models import Node

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
    from .resources import delete

    ((_, _, outcome),) = delete(store, [(Kind.NODE, "", name)], by=by)
    return outcome


def healthcheck(store, settings: Settings) -> dict:
    """GET /healthcheck: the store answers, with the pool's size and the tasks not started yet."""
    nodes = store.resources(Kind.NODE)
    waiting = [j for j in store.resources(Kind.JOB, namespace=settings.namespace)
               if is_task_job(j) and j.deleted_at is None and j.status.get("phase", "Pending") == "Pending"]
    return {"status": "OK", "nodes": len(nodes), "slots": sum(sum(node_slots(n).values()) for n in nodes),
            "pending_tasks": len(waiting)}
