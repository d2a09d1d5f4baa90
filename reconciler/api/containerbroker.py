"""Container Broker's own API, served as is, so its clients can point at brokerctl unchanged.

Registered by ``app`` at the root paths Container Broker serves: ``POST /tasks``, ``GET
/tasks/{uuid}`` (and ``/logs``, ``POST .../kill_container``), ``GET|POST /nodes``, ``GET|PATCH|DELETE
/nodes/{uuid}`` (and ``POST .../accept_new_tasks|reject_new_tasks``), ``GET /status/nodes``, ``GET
/status/tasks?status=&tags[KEY]=VALUE&limit=`` and ``GET /healthcheck``. The token is the API's
(``Authorization: Bearer``) with the same roles: the tasks live in the server's ``--cb-namespace``
(reading them needs view there, writing edit), nodes are an admin's. Each handler checks the role
first, then reads its body (so a request the role refuses is 403 whatever it carries), then calls
one verb of ``ops.containerbroker``, which says how tasks map to Jobs and nodes to Nodes. A POST
that creates (``/tasks``, ``/nodes``) and carries ``X-Idempotency-Key`` (or Container Broker's
``Idempotency-Key``) seen from the same user in the last day gets the first answer again, marked
``Idempotent-Replayed: true``, and creates nothing. Errors are the API's JSON errors.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from ..ops import containerbroker as cb
from ..ops.containerbroker import nodes as cbnodes
from ..ops.containerbroker import tasks as cbtasks
from ..ops.refs import node_name
from ..ops.tokens import READ, WRITE, allow
from . import schemas
from .auth import Caller, Store
from .errors import BadRequest
from .lists import Json

router = APIRouter(tags=["Container Broker"])

Key = Annotated[str | None, Header(alias="X-Idempotency-Key", description="A POST with a key seen from the same user "
                                  "in the last day returns the first answer and creates nothing")]
PlainKey = Annotated[str | None, Header(alias="Idempotency-Key", description="Container Broker's spelling of "
                                        "X-Idempotency-Key")]


# -- the documented shapes ---------------------------------------------------------------------------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class TaskRequest(_Open):
    name: str = Field(description="The task's name (the Job's `containerbroker.name` label)")
    image: str
    cmd: str = Field(description="Run with `sh -c`")
    execution_type: str = Field(description="The slot type (the Job's executionType)")
    storage_mounts: dict[str, str] | None = Field(None, description="NAME -> path in the container; NAME is one "
                                                  "of the server's --storage-mount names")
    tags: dict[str, str | int | float | bool] | None = Field(None, description="The Job's labels")
    persist_logs: bool | None = Field(None, description="Accepted; output is always kept (brokerctl removes a "
                                      "finished container)")


class CbTask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uuid: str
    status: str = Field(description="waiting, starting, started, retry, failed, completed or error")
    exit_code: int | None
    error: str | None
    try_count: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    progress: None
    seconds_running: int | None
    execution_type: str


class CbSlot(BaseModel):
    uuid: str
    name: str


class CbPanelTask(CbTask):
    name: str
    image: str | None
    cmd: str | list[str] | None
    tags: dict[str, str]
    container_id: str | None
    storage_mounts: dict[str, str] = Field(description="Path in the container -> host path")
    slot: CbSlot | None = Field(description="The node of its last attempt")


class CbLogs(BaseModel):
    logs: str | None = Field(description="The output of its last attempt that ran (null before one ran)")


class CbKilled(BaseModel):
    uuid: str
    killed: str = Field(description="The id of the attempt whose container was killed")
    node: str


class NodeRequest(_Open):
    hostname: str = Field(description="A Docker host: HOST (port 2375), HOST:PORT, tcp://HOST:PORT or unix:///PATH")
    slots_execution_types: dict[str, int] = Field(description="Execution type -> slots")


class SlotsRequest(_Open):
    slots_execution_types: dict[str, int]


class CbNode(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uuid: str = Field(description="The Node's name")
    hostname: str = Field(description="The Node's address")
    status: str = Field(description="available (Ready), unstable (NotReady) or unavailable (Lost, Unknown)")
    accept_new_tasks: bool
    slots_execution_types: dict[str, int]
    runner_provider: str
    runner_capacity_reached: bool


class CbPanelSlot(BaseModel):
    name: str
    execution_type: str
    status: str = Field(description="idle or running")
    current_task: dict[str, str] | None


class CbPanelNode(CbNode):
    name: str
    last_error: str | None
    last_success_at: str | None
    usage_per_execution_type: dict[str, int] = Field(description="Percent of the slots busy")
    slots: list[CbPanelSlot]


class CbNodeOutcome(BaseModel):
    uuid: str
    outcome: str


class CbHealth(BaseModel):
    status: str
    nodes: int
    slots: int
    pending_tasks: int


def _body(model: type[BaseModel]) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema(
        ref_template="#/components/schemas/{model}")}}}}


def _created(model) -> dict:
    out = schemas.responses(model)
    return {**out, 201: {"model": model, "description": "Created"}}


# -- helpers -----------------------------------------------------------------------------------------


def settings_of(request: Request) -> cb.Settings:
    s = request.app.state.settings
    return cb.Settings(s.cb_namespace, s.storage_mounts)


async def _raw(request: Request) -> bytes:
    return await request.body()


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not JSON: send the fields as a JSON object (Content-Type: application/json)") \
            from None


def _answer(created: cb.Created, status: int) -> Json:
    headers = {"Idempotent-Replayed": "true"} if created.replayed else None
    return Json(created.answer, status_code=status, headers=headers)


# -- tasks -------------------------------------------------------------------------------------------


@router.post("/tasks", responses=schemas.responses(CbTask), openapi_extra=_body(TaskRequest))
async def create_task(request: Request, who: Caller, key: Key = None, plain_key: PlainKey = None) -> Json:
    """Create a task: a one-completion Job (3 retries) in the server's --cb-namespace; answers the task."""
    import anyio

    settings = settings_of(request)
    allow(who, WRITE, settings.namespace, "create tasks")
    body = _json(await request.body())
    given = cb.idempotency_key(key if key is not None else plain_key)

    def create():
        with request.app.state.stores.use() as store:
            return cbtasks.submit_task(store, body, settings, given, by=who.user)

    return _answer(await anyio.to_thread.run_sync(create), 200)


@router.get("/tasks/{uuid}", responses=schemas.responses(CbTask))
def get_task(request: Request, uuid: str, who: Caller, store: Store) -> Json:
    """A task: its status, exit code, error, retries and times."""
    settings = settings_of(request)
    allow(who, READ, settings.namespace, f"get task {uuid}")
    return Json(cbtasks.get_task(store, settings, uuid))


@router.get("/tasks/{uuid}/logs", responses=schemas.responses(CbLogs))
def task_logs(request: Request, uuid: str, who: Caller, store: Store) -> Json:
    """A task's output: its last attempt's, kept after its container is gone, live while it runs."""
    settings = settings_of(request)
    allow(who, READ, settings.namespace, f"read the logs of task {uuid}")
    return Json({"logs": cbtasks.task_logs(store, settings, uuid)})


@router.post("/tasks/{uuid}/kill_container", responses=schemas.responses(CbKilled))
def kill_container(request: Request, uuid: str, who: Caller, store: Store) -> Json:
    """Kill a started task's container (SIGKILL): the attempt fails (exit code 137) and is retried as any
    failure, as Container Broker does; 409 unless the task is started."""
    settings = settings_of(request)
    allow(who, WRITE, settings.namespace, f"kill the container of task {uuid}")
    return Json(cbtasks.kill_container(store, settings, uuid))


@router.get("/status/tasks", responses=schemas.responses(list[CbPanelTask]),
            openapi_extra={"parameters": [{"name": "tags", "in": "query", "style": "deepObject", "explode": True,
                                           "schema": {"type": "object", "additionalProperties": {"type": "string"}},
                                           "description": "tags[KEY]=VALUE: only tasks with these tags"}]})
def status_tasks(request: Request, who: Caller, store: Store,
                 status: Annotated[str | None, Query(description="Only tasks in this status")] = None,
                 limit: Annotated[int, Query(ge=1, le=2**31 - 1, description="At most this many, newest "
                                                                             "first")] = cbtasks.STATUS_LIMIT) -> Json:
    """The newest tasks first, with what they run, their tags and node."""
    settings = settings_of(request)
    allow(who, READ, settings.namespace, "list tasks")
    tags = {k[5:-1]: v for k, v in request.query_params.multi_items() if k.startswith("tags[") and k.endswith("]")}
    return Json(cbtasks.status_tasks(store, settings, status or None, tags, limit))


# -- nodes -------------------------------------------------------------------------------------------


@router.get("/nodes", responses=schemas.responses(list[CbNode]))
def list_nodes(who: Caller, store: Store) -> Json:
    """Every node."""
    allow(who, READ, None, "list nodes")
    return Json(cbnodes.list_nodes(store))


@router.post("/nodes", responses=_created(CbNode), status_code=201, openapi_extra=_body(NodeRequest))
async def add_node(request: Request, who: Caller, key: Key = None, plain_key: PlainKey = None) -> Json:
    """Add a node (a Node named after its hostname, allowed to mount the server's storage mount paths)."""
    import anyio

    allow(who, WRITE, None, "add nodes")
    body = _json(await request.body())
    given, settings = cb.idempotency_key(key if key is not None else plain_key), settings_of(request)

    def create():
        with request.app.state.stores.use() as store:
            return cbnodes.add_node(store, body, settings, given, by=who.user)

    return _answer(await anyio.to_thread.run_sync(create), 201)


@router.get("/nodes/{uuid}", responses=schemas.responses(CbNode))
def get_node(uuid: str, who: Caller, store: Store) -> Json:
    """One node."""
    allow(who, READ, None, f"get node {uuid}")
    return Json(cbnodes.get_node(store, node_name(uuid)))


@router.patch("/nodes/{uuid}", responses=schemas.responses(CbNode), openapi_extra=_body(SlotsRequest))
async def update_node(request: Request, uuid: str, who: Caller) -> Json:
    """Change a node's slots."""
    import anyio

    allow(who, WRITE, None, f"change node {uuid}")
    body, settings = _json(await request.body()), settings_of(request)

    def update():
        with request.app.state.stores.use() as store:
            return cbnodes.update_node(store, node_name(uuid), body, settings, by=who.user)

    return Json(await anyio.to_thread.run_sync(update))


@router.delete("/nodes/{uuid}", responses=schemas.responses(CbNodeOutcome))
def delete_node(uuid: str, who: Caller, store: Store) -> Json:
    """Remove a node; one with active tasks is refused (409: drain it first)."""
    allow(who, WRITE, None, f"delete node {uuid}")
    return Json({"uuid": uuid, "outcome": cbnodes.delete_node(store, node_name(uuid), by=who.user)})


def _acceptance(accept: bool):
    verb = "accept_new_tasks" if accept else "reject_new_tasks"

    @router.post(f"/nodes/{{uuid}}/{verb}", responses=schemas.responses(CbNode), name=verb)
    def route(uuid: str, who: Caller, store: Store) -> Json:
        from ..ops import nodes

        allow(who, WRITE, None, f"{verb.replace('_', ' ')} on node {uuid}")
        name = node_name(uuid)
        (nodes.uncordon if accept else nodes.cordon)(store, name, by=who.user)
        return Json(cbnodes.get_node(store, name))

    route.__doc__ = ("The node takes new tasks again (`brokerctl uncordon`)." if accept else
                     "No new tasks on the node; running ones stay (`brokerctl cordon`).")


_acceptance(True)
_acceptance(False)


@router.get("/status/nodes", responses=schemas.responses(list[CbPanelNode]))
def status_nodes(who: Caller, store: Store) -> Json:
    """Every node with its usage per execution type and its slots."""
    allow(who, READ, None, "list nodes")
    return Json(cbnodes.status_nodes(store))


@router.get("/healthcheck", responses=schemas.responses(CbHealth))
def healthcheck(request: Request, who: Caller, store: Store) -> Json:
    """The store answers: the pool's nodes and slots, the tasks waiting (any valid token)."""
    return Json(cbnodes.healthcheck(store, settings_of(request)))
