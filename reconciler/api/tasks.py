"""Routes of tasks and their output: list, get, a task's logs, and the logs of a Job's or Service's tasks.

Registered by ``app``; the verbs are those of `brokerctl get tasks` and `brokerctl logs`
(``ops.resources.get_tasks``, ``ops.tasks.task_logs``/``owner_logs``). Task ids are unique across
namespaces, so a task asked for under a namespace that is not its own is not found there: a token
of one namespace cannot read another's tasks or output by id. Logs are the bytes the container
wrote (``follow=true`` streams a running task's until it stops); a Job's or Service's are prefixed
``[TASK-ID] `` line by line, as `brokerctl logs job/NAME` prints them. A list is kept rendered
(``rendered``) while the store's change counter stays where it was, and sent gzipped to a client
that accepts it.
"""

from __future__ import annotations

import base64
from typing import Annotated

import anyio
from fastapi import APIRouter, Body, Query, Request
from starlette.responses import Response

from ..errors import NotFound
from ..kinds import Kind
from ..ops import listing, resources, tasks
from ..ops.refs import TASKS, namespace_name, parse_owner, parse_phases
from ..ops.tokens import READ, WRITE, Identity, allow
from ..records import TaskRecord
from . import schemas
from .auth import Caller, Store
from .lists import Json, chunks, json_bytes, streamed, selector, streams, watch
from .resources import WATCH_EXAMPLE, Continue, Limit, Selector, SortBy, Watch, WatchTimeout, sorted_page

router = APIRouter(prefix="/api/v1")

Follow = Annotated[bool, Query(description="Keep streaming a running task's output until it stops")]
Tail = Annotated[int | None, Query(ge=0, le=2**31 - 1, description="Only the last N lines (of each task), as "
                                                                  "`logs --tail`")]
Since = Annotated[float | None, Query(alias="sinceSeconds", ge=0, description="Only what was written in the last "
                                                                              "this many seconds, as `logs --since`")]
Phases = Annotated[list[str], Query(alias="phase", description="Only tasks in these phases (Running,Pending; "
                                                               "repeatable), as `get tasks --phase`")]
Owner = Annotated[str | None, Query(description="Only the tasks of this job/NAME or service/NAME, as "
                                                "`get tasks --owner`")]
TEXT = {"text/plain": {"schema": {"type": "string"}}}


def task_key(t: TaskRecord) -> list:
    """The order the store lists tasks in (creation, then owner, index, attempt): the key of their pages."""
    return [t.created_at, t.owner_kind._value_, t.namespace, t.owner_name, t.index, t.attempt, t.id]


def _tasks(request: Request, who: Identity, namespace: str | None, want: dict, limit: int | None,
           after: str | None, follow: bool, timeout: float | None, phases: list[str] = (),
           owner: str | None = None, sort_by: str | None = None) -> Response:
    """A list (or watch) of tasks. A list is served from ``app.state.renders`` while the store's change
    counter, read here after the caller's checks, has not moved since it was rendered for the same
    query and the same visible namespaces."""
    stores = request.app.state.stores
    filters = listing.Filters(want, parse_phases(list(phases)), parse_owner(owner) if owner else None)

    def read(store) -> list[TaskRecord]:
        found = listing.tasks(store, None, filters, namespace)
        return found if namespace is not None or who.role == "admin" else [t for t in found
                                                                           if who.reaches(t.namespace)]

    if follow:
        def snapshot() -> dict:
            with stores.use() as store:
                found = read(store)
            return dict(zip((t.id for t in found), resources.task_objects(found)))

        return watch(request, snapshot, timeout)
    def render() -> tuple[int, bytes]:
        with stores.use() as store:
            made_at = store.current_rev()  # on the connection that reads the rows, before them
            found = read(store)
        return made_at, json_bytes(sorted_page(TASKS, found, task_key, limit, after, sort_by, resources.task_objects))

    with stores.use() as store:
        rev = store.current_rev()
    return request.app.state.renders.answer(request, visible_scope(who), rev, render)


def visible_scope(who: Identity) -> tuple[str, ...] | str:
    """What a caller may see of a list: every namespace (an admin), or its token's namespaces."""
    return "*" if who.role == "admin" else tuple(sorted(who.namespaces))


@router.get("/namespaces/{namespace}/tasks", responses=schemas.responses(schemas.TaskList, stream=WATCH_EXAMPLE))
def list_tasks(request: Request, namespace: str, who: Caller, labelSelector: Selector = None, limit: Limit = None,
               continue_: Continue = None, watch: Watch = False, timeout: WatchTimeout = None, phases: Phases = [],
               owner: Owner = None, sortBy: SortBy = None) -> Response:
    """The tasks of a namespace, oldest first, as `brokerctl get tasks -n NS`."""
    ns = namespace_name(namespace)
    allow(who, READ, ns, "list tasks")
    return _tasks(request, who, ns, selector(labelSelector), limit, continue_, watch, timeout, phases, owner, sortBy)


@router.get("/tasks", responses=schemas.responses(schemas.TaskList, stream=WATCH_EXAMPLE))
def list_all_tasks(request: Request, who: Caller, labelSelector: Selector = None, limit: Limit = None,
                   continue_: Continue = None, watch: Watch = False, timeout: WatchTimeout = None,
                   phases: Phases = [], owner: Owner = None, sortBy: SortBy = None) -> Response:
    """The tasks of every namespace the token reaches, oldest first, as `brokerctl get tasks -A`."""
    return _tasks(request, who, None, selector(labelSelector), limit, continue_, watch, timeout, phases, owner,
                  sortBy)


def _any_task(store, task_id: str, who: Identity) -> TaskRecord:
    """A task by id in whichever namespace it is, if the token reaches that namespace (not found
    otherwise, as under a namespace that is not its own)."""
    (t,) = resources.get_tasks(store, task_id)
    if not who.reaches(t.namespace):
        raise NotFound.task(task_id)
    return t


@router.get("/tasks/{task_id}", responses=schemas.responses(schemas.Task))
def get_any_task(task_id: str, who: Caller, store: Store) -> Json:
    """One task of any namespace the token reaches, as `brokerctl get task ID -o json`."""
    return Json(resources.task_objects([_any_task(store, task_id, who)])[0])


@router.get("/tasks/{task_id}/logs", responses=schemas.responses(extra={200: {
    "description": "The task's output, as the container wrote it", "content": TEXT}}))
def any_task_logs(task_id: str, who: Caller, store: Store, follow: Follow = False, tail: Tail = None,
                  since: Since = None):
    """The output of a task of any namespace the token reaches, as `brokerctl logs ID`."""
    t = _any_task(store, task_id, who)
    return chunks(chunk.data for chunk in tasks.task_logs(store, t.id, follow, tasks.log_window(tail, since)))


def _task_in(store, namespace: str, task_id: str, who: Identity, what: str) -> TaskRecord:
    ns = namespace_name(namespace)
    allow(who, READ, ns, what)
    (t,) = resources.get_tasks(store, task_id)
    if t.namespace != ns:
        raise NotFound.task(task_id)
    return t


@router.get("/namespaces/{namespace}/tasks/{task_id}", responses=schemas.responses(schemas.Task))
def get_task(namespace: str, task_id: str, who: Caller, store: Store) -> Json:
    """One task, as `brokerctl get task ID -o json`."""
    t = _task_in(store, namespace, task_id, who, f"get task {task_id}")
    return Json(resources.task_objects([t])[0])


@router.get("/namespaces/{namespace}/tasks/{task_id}/logs", responses=schemas.responses(extra={200: {
    "description": "The task's output, as the container wrote it", "content": TEXT}}))
def task_logs(namespace: str, task_id: str, who: Caller, store: Store, follow: Follow = False, tail: Tail = None,
              since: Since = None):
    """A task's output (kept after its container is gone), as `brokerctl logs ID`."""
    t = _task_in(store, namespace, task_id, who, f"read the logs of task {task_id}")
    return chunks(chunk.data for chunk in tasks.task_logs(store, t.id, follow, tasks.log_window(tail, since)))


def _owner_logs(kind: Kind):
    plural = "jobs" if kind is Kind.JOB else "services"

    @router.get(f"/namespaces/{{namespace}}/{plural}/{{name}}/logs", name=f"{kind.value.lower()}_logs",
                responses=schemas.responses(extra={200: {"description": "Each line prefixed [TASK-ID]",
                                                         "content": TEXT}}))
    def owner_logs(namespace: str, name: str, who: Caller, store: Store, follow: Follow = False, tail: Tail = None,
                   since: Since = None):
        ns = namespace_name(namespace)
        allow(who, READ, ns, f"read the logs of {kind.value.lower()} {name}")
        window = tasks.log_window(tail, since)
        return chunks(tasks.prefixed(chunk) for chunk in tasks.owner_logs(store, kind, name, follow, ns, window))

    owner_logs.__doc__ = (f"The output of every task of a {kind.value.lower()}, oldest task first, each line "
                          f"prefixed [TASK-ID], as `brokerctl logs {kind.value.lower()}/NAME`.")


_owner_logs(Kind.JOB)
_owner_logs(Kind.SERVICE)


# -- run and wait -------------------------------------------------------------------------------------

RUN_STREAM = ('{"type": "NOTE", "text": ..., "warning": ...}\n{"type": "OUTPUT", "task": ID, "data": BASE64}\n'
              '{"type": "RESULT", "result": {"task": ID, "exitCode": 0}}\n')


RUN_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": schemas.RunRequest.model_json_schema()}}}}


@router.post("/namespaces/{namespace}/run", responses=schemas.responses(stream=RUN_STREAM), openapi_extra=RUN_BODY)
def run(namespace: str, request: Annotated[dict, Body()], who: Caller, store: Store):
    """Run a one-off Job (one completion, no retry) and stream its output as it comes, then the task's exit
    code, as `brokerctl run NAME --image IMAGE -- CMD`. A task that ends without one is an ``ERROR`` line
    with ``exitCode`` 125, as `docker run` exits."""
    ns = namespace_name(namespace)
    allow(who, WRITE, ns, "run a job")  # before the body is read: a role that may not run learns nothing more
    body = schemas.run_request(request)
    job = tasks.one_off_job(body.name, body.image, body.command, body.slotsType, body.env, ns)
    return streamed(tasks.run(store, job, by=who.user),
                    result=lambda t: {"task": t.id, "exitCode": t.exit_code},
                    other=lambda chunk: {"type": "OUTPUT", "task": chunk.task,
                                         "data": base64.b64encode(chunk.data).decode()})


WaitTimeout = Annotated[float, Query(ge=0, description="Seconds before giving up")]


@router.get("/namespaces/{namespace}/wait", responses=schemas.responses(schemas.Waited))
async def wait(namespace: str, who: Caller, store: Store,
               target: Annotated[str, Query(description="KIND/NAME, e.g. job/hello")],
               for_: Annotated[str, Query(alias="for", description="condition=Complete|Failed|Ready")],
               timeout: WaitTimeout = 60.0) -> Json:
    """Answer once the resource reaches the condition (an error on timeout or the opposite outcome), as
    `brokerctl wait KIND/NAME --for condition=Complete`."""
    cond = tasks.condition(target, for_, namespace_name(namespace))
    allow(who, READ, cond.namespace if cond.kind.namespaced else None, f"wait for {target}")
    await anyio.to_thread.run_sync(tasks.wait, store, cond, timeout, limiter=streams())
    return Json({"met": cond.want})


@router.get("/jobs/wait", responses=schemas.responses(schemas.Progress, stream='{"type": "NOTE", ...}\n'))
def wait_jobs(who: Caller, store: Store,
              job: Annotated[list[str], Query(description="NAMESPACE/NAME of a Job (repeatable)")],
              timeout: Annotated[float, Query(ge=0, description="Give up after this long (0: no limit)")] = 0):
    """Stream a line as each Job ends; an error if any failed, as `brokerctl apply --wait`."""
    jobs = []
    for text in job:
        ns, _, name = text.rpartition("/")
        ns = namespace_name(ns or "default")
        allow(who, READ, ns, f"wait for job {name}")
        jobs.append((ns, name))
    return streamed(tasks.wait_jobs(store, jobs, timeout))
