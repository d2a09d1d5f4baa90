"""`brokerctl exec` over a WebSocket: a command run in a Running task's container, its input and output
relayed as they come, then its exit code.

Registered by ``app``. ``/api/v1/tasks/{id}/exec`` (a task of any namespace the token reaches, as
`brokerctl exec ID` names it) and ``/api/v1/namespaces/{ns}/tasks/{id}/exec``, Kubernetes-shaped:
``?command=sh&command=-c&command=...`` (repeatable, in order), ``stdin``, ``tty``, and the terminal's
``rows`` and ``columns`` (given once, at the start, as the local exec does). The socket is refused
before it is accepted, with the API's JSON error and status (a WebSocket denial response): 401 without
a valid token, 404 for a task the token does not reach, 403 for a role that may not write there (exec
runs anything in the container: a write, as in Kubernetes' RBAC), 422 without a command. Then the
verb of the CLI runs (``ops.tasks.exec_in``) on a stream thread (``lists.streams``) and the messages
are framed as ``views.EXEC_*`` says: the client's STDIN frames are the command's input (an empty one
closes it), its output comes back as STDOUT/STDERR frames, and a STATUS frame ends the exec with the
exit code, or the error (a task that is not Running, a host that fails) with the CLI's exit code.
A client that goes away closes the command's input; its next output ends the relay.
"""

from __future__ import annotations

import json
import logging
import queue
from typing import Annotated, Iterator

import anyio
from fastapi import APIRouter, Query, WebSocket

from .. import views
from ..errors import BrokerError, NotFound
from ..ops import resources, tasks
from ..ops.refs import namespace_name
from ..ops.tokens import WRITE, authenticate, allow
from ..records import TaskRecord
from .auth import bearer_token
from .errors import broker_error, ended_by
from .lists import streams

log = logging.getLogger("brokerctl.api")
router = APIRouter(prefix="/api/v1")

Command = Annotated[list[str], Query(description="The command and its arguments (repeatable, in order)")]
Stdin = Annotated[bool, Query(description="Pass the client's STDIN frames to the command")]
Tty = Annotated[bool, Query(description="Give the command a terminal (its stderr then comes as STDOUT)")]
Size = Annotated[int | None, Query(ge=0, le=65535, description="The terminal's size, with tty (as the client's "
                                                                "terminal reports it)")]


@router.websocket("/tasks/{task_id}/exec")
async def exec_any(websocket: WebSocket, task_id: str, command: Command = [], stdin: Stdin = False,
                   tty: Tty = False, rows: Size = None, columns: Size = None) -> None:
    """Run a command in a Running task of any namespace the token reaches, as `brokerctl exec ID -- CMD`."""
    await _exec(websocket, None, task_id, command, stdin, tty, _size(rows, columns))


@router.websocket("/namespaces/{namespace}/tasks/{task_id}/exec")
async def exec_in_namespace(websocket: WebSocket, namespace: str, task_id: str, command: Command = [],
                            stdin: Stdin = False, tty: Tty = False, rows: Size = None, columns: Size = None) -> None:
    """Run a command in a Running task of ``namespace``, as `brokerctl exec ID -- CMD`."""
    await _exec(websocket, namespace, task_id, command, stdin, tty, _size(rows, columns))


def _size(rows: int | None, columns: int | None) -> tuple[int, int] | None:
    return None if rows is None or columns is None else (rows, columns)


async def _exec(websocket: WebSocket, namespace: str | None, task_id: str, command: list[str], stdin: bool,
                tty: bool, size: tuple[int, int] | None) -> None:
    stores = websocket.app.state.stores
    try:
        task = await anyio.to_thread.run_sync(_admit, stores, websocket.headers.get("authorization"), namespace,
                                              task_id, command)
    except BrokerError as exc:
        await websocket.send_denial_response(broker_error(exc))
        return
    await websocket.accept()
    inputs: queue.Queue = queue.Queue()

    def write(stream: int, data: bytes) -> None:  # on the exec's thread
        anyio.from_thread.run(websocket.send_bytes, views.exec_frame(stream, data))

    def run() -> dict:
        try:
            with stores.use() as store:
                code = tasks.exec_in(store, task.id, command, _input(inputs) if stdin else None, write, tty, size)
            return {"exitCode": code}
        except BrokerError as exc:
            return ended_by(exc)
        finally:
            inputs.put(None)  # the input thread, if the command ended before its input did

    async with anyio.create_task_group() as group:
        group.start_soon(_receive, websocket, inputs)
        try:
            status = await anyio.to_thread.run_sync(run, limiter=streams())
        except Exception as exc:  # noqa: BLE001 - the client left (its output could not be sent), or a bug
            log.warning("exec in task %s ended without its exit code: %r", task.id, exc)
            group.cancel_scope.cancel()
            return
        group.cancel_scope.cancel()
    try:
        await websocket.send_bytes(views.exec_frame(views.EXEC_STATUS, json.dumps(status).encode()))
        await websocket.close()
    except Exception as exc:  # noqa: BLE001 - the client left before the exit code
        log.info("exec in task %s: the client left before its exit code (%s)", task.id, exc)


def _admit(stores, authorization: str | None, namespace: str | None, task_id: str, command: list[str]) -> TaskRecord:
    """Who asks, whether the task is theirs to run a command in, and whether a command is named: the
    refusals sent before the socket is accepted."""
    with stores.use() as store:
        who = authenticate(store, bearer_token(authorization))
        if namespace is not None:
            allow(who, WRITE, namespace_name(namespace), f"exec in task {task_id}")
        tasks.check_command(task_id, command)
        (task,) = resources.get_tasks(store, task_id)
        if (namespace is not None and task.namespace != namespace) or not who.reaches(task.namespace):
            raise NotFound.task(task_id)
        allow(who, WRITE, task.namespace, f"exec in task {task_id}")
        return task


async def _receive(websocket: WebSocket, inputs: queue.Queue) -> None:
    """The client's STDIN frames into ``inputs`` (None: end of input), until it ends its input or leaves."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes") or b""
            if data[:1] == bytes((views.EXEC_STDIN,)):
                inputs.put(data[1:] or None)
    finally:
        inputs.put(None)


def _input(inputs: queue.Queue) -> Iterator[bytes]:
    while (data := inputs.get()) is not None:
        yield data
