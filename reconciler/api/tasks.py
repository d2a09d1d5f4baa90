"""Routes of tasks and their output: list, get, a task's logs, and the logs of a Job's or Service's tasks.

Registered by ``app``; the verbs are those of `brokerctl get tasks` and `brokerctl logs`
(``ops.resources.get_tasks``, ``ops.tasks.task_logs``/``owner_logs``). Task ids are unique across
namespaces, so a task asked for under a namespace that is not its own is not found there: a token
of one namespace cannot read another's tasks or output by id. Logs are the bytes the container
wrote (``follow=true`` streams a running task's until it stops); a Job's or Service's are prefixed
``[TASK-ID] `` line by line, as `brokerctl logs job/NAME` prints them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from ..errors import NotFound
from ..kinds import Kind
from ..ops import resources, tasks
from ..ops.refs import namespace_name
from ..ops.tokens import READ, Identity, allow
from ..records import TaskRecord
from . import schemas
from .auth import Caller, Store
from .lists import Json, chunks, list_body, page, selector, watch
from .resources import WATCH_EXAMPLE, Continue, Limit, Selector, Watch, WatchTimeout

router = APIRouter(prefix="/api/v1")

Follow = Annotated[bool, Query(description="Keep streaming a running task's output until it stops")]
TEXT = {"text/plain": {"schema": {"type": "string"}}}


def task_key(t: TaskRecord) -> list:
    """The order the store lists tasks in (creation, then owner, index, attempt): the key of their pages."""
    return [t.created_at, t.owner_kind._value_, t.namespace, t.owner_name, t.index, t.attempt, t.id]


def _tasks(request: Request, who: Identity, namespace: str | None, want: dict, limit: int | None,
           after: str | None, follow: bool, timeout: float | None) -> Json:
    stores = request.app.state.stores

    def read(store) -> list[TaskRecord]:
        found = resources.get_tasks(store, None, want, namespace)
        return found if namespace is not None or who.role == "admin" else [t for t in found
                                                                           if who.reaches(t.namespace)]

    if follow:
        def snapshot() -> dict:
            with stores.use() as store:
                found = read(store)
            return dict(zip((t.id for t in found), resources.task_objects(found)))

        return watch(request, snapshot, timeout)
    with stores.use() as store:
        shown, token = page(read(store), task_key, limit, after)
    return Json(list_body("Task", resources.task_objects(shown), token))


@router.get("/namespaces/{namespace}/tasks", responses=schemas.responses(schemas.TaskList, stream=WATCH_EXAMPLE))
def list_tasks(request: Request, namespace: str, who: Caller, labelSelector: Selector = None, limit: Limit = None,
               continue_: Continue = None, watch: Watch = False, timeout: WatchTimeout = None) -> Json:
    """The tasks of a namespace, oldest first, as `brokerctl get tasks -n NS`."""
    ns = namespace_name(namespace)
    allow(who, READ, ns, "list tasks")
    return _tasks(request, who, ns, selector(labelSelector), limit, continue_, watch, timeout)


@router.get("/tasks", responses=schemas.responses(schemas.TaskList, stream=WATCH_EXAMPLE))
def list_all_tasks(request: Request, who: Caller, labelSelector: Selector = None, limit: Limit = None,
                   continue_: Continue = None, watch: Watch = False, timeout: WatchTimeout = None) -> Json:
    """The tasks of every namespace the token reaches, oldest first, as `brokerctl get tasks -A`."""
    return _tasks(request, who, None, selector(labelSelector), limit, continue_, watch, timeout)


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
def task_logs(namespace: str, task_id: str, who: Caller, store: Store, follow: Follow = False):
    """A task's output (kept after its container is gone), as `brokerctl logs ID`."""
    t = _task_in(store, namespace, task_id, who, f"read the logs of task {task_id}")
    return chunks(chunk.data for chunk in tasks.task_logs(store, t.id, follow))


def _owner_logs(kind: Kind):
    plural = "jobs" if kind is Kind.JOB else "services"

    @router.get(f"/namespaces/{{namespace}}/{plural}/{{name}}/logs", name=f"{kind.value.lower()}_logs",
                responses=schemas.responses(extra={200: {"description": "Each line prefixed [TASK-ID]",
                                                         "content": TEXT}}))
    def owner_logs(namespace: str, name: str, who: Caller, store: Store, follow: Follow = False):
        ns = namespace_name(namespace)
        allow(who, READ, ns, f"read the logs of {kind.value.lower()} {name}")
        return chunks(tasks.prefixed(chunk) for chunk in tasks.owner_logs(store, kind, name, follow, ns))

    owner_logs.__doc__ = (f"The output of every task of a {kind.value.lower()}, oldest task first, each line "
                          f"prefixed [TASK-ID], as `brokerctl logs {kind.value.lower()}/NAME`.")


_owner_logs(Kind.JOB)
_owner_logs(Kind.SERVICE)
