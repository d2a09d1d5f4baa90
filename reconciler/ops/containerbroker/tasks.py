"""Container Broker's tasks as Jobs: a POST /tasks body becomes a Job, a Job and its attempts a task.

Called by ``api.containerbroker``. A Container Broker task becomes a one-completion Job named
``cb-<uuid>`` (the task's uuid, made here) in the namespace the server was given (``--cb-namespace``),
with ``backoffLimit`` 3 (Container Broker's three retries); its ``cmd`` runs with ``sh -c`` (as
Container Broker runs it), its ``execution_type`` is the Job's slot type, its ``storage_mounts`` (name
-> path in the container) are bind mounts of the host paths the server maps those names to
(``--storage-mount NAME=PATH``), its ``tags`` are the Job's labels, beside ``containerbroker.name``
(the task's name). ``task_status`` and ``task_object`` are pure.
"""

from __future__ import annotations

import math
import re
import time
import uuid as uuids

from ...errors import BrokerError, NotFound, UsageError
from ...kinds import Kind, TaskPhase
from ...records import ResourceRecord, TaskRecord
from ...views import iso
from . import Created, Settings, create_once

JOB_PREFIX = "cb-"  # a task's Job is cb-<uuid>
NAME_LABEL = "containerbroker.name"  # the task's name, kept as a label of its Job
RESERVED_TAG_PREFIXES = ("brokerctl.", "containerbroker.")
RETRIES = 3  # Container Broker's task_retry_count: a failed attempt is retried three times
STATUSES = ("waiting", "starting", "started", "retry", "failed", "completed", "error")
STATUS_LIMIT = 200  # GET /status/tasks: the newest this many (Container Broker's LIMIT_TASKS)
TAG_KEY_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_./-]{0,251}[A-Za-z0-9_])?$")

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

    from ...spec.models import Job

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
    from ..tasks import output

    job = task_job_record(store, settings, task_uuid)
    ran = [t for t in _attempts(store, job) if t.started_at is not None or store.output(t.id) is not None]
    if not ran:
        return None
    data = b"".join(chunk.data for chunk in output(store, ran[-1], follow=False))
    return data.decode("utf-8", errors="replace")


def kill_container(store, settings: Settings, task_uuid: str) -> dict:
    """SIGKILL the running attempt's container, as Container Broker does: the controller collects the
    attempt as failed (exit code 137) and retries it as any failure. Refused unless the task is started."""
    from ..nodes import node_host

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
