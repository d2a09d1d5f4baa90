"""Routes of Nodes: list, get, delete, cordon, uncordon, drain. Nodes are cluster-wide: admin tokens only.

Registered by ``app``. ``drain`` cordons at once; with ``wait=true`` it streams the notes
``brokerctl drain`` prints while it waits for the node to empty (NDJSON, ``lists.progress``).
Created and changed through ``apply``.
"""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Query, Request

from ..kinds import Kind
from ..ops import nodes, resources
from ..ops.refs import node_name
from ..ops.tokens import READ, WRITE, allow
from . import schemas
from .auth import Caller, Store
from .lists import Json, collect, progress
from .resources import (
    WATCH_EXAMPLE, Continue, Force, Limit, Selector, SortBy, Watch, WatchTimeout, list_route, selector,
)

router = APIRouter(prefix="/api/v1")


@router.get("/nodes", responses=schemas.responses(schemas.ResourceList, stream=WATCH_EXAMPLE))
def list_nodes(request: Request, who: Caller, labelSelector: Selector = None, limit: Limit = None,
               continue_: Continue = None, watch: Watch = False, timeout: WatchTimeout = None,
               sortBy: SortBy = None) -> Json:
    """The nodes with their condition and slots in use, as `brokerctl get nodes`."""
    allow(who, READ, None, "list nodes")
    want = selector(labelSelector)
    return list_route(request, who, "Node", lambda store: resources.get_resources(store, Kind.NODE, None, want),
                      None, limit, continue_, watch, timeout, sort_by=sortBy)


@router.get("/nodes/{name}", responses=schemas.responses(schemas.Resource))
def get_node(name: str, who: Caller, store: Store) -> Json:
    """One node, as `brokerctl get node NAME -o json`."""
    allow(who, READ, None, f"get node {name}")
    return Json(resources.get_resources(store, Kind.NODE, node_name(name))[0])


@router.delete("/nodes/{name}", responses=schemas.responses(schemas.Outcome))
def delete_node(name: str, who: Caller, store: Store, force: Force = False) -> Json:
    """Delete a node; one with active tasks needs a drain first, or `force`, as `brokerctl delete node NAME`."""
    allow(who, WRITE, None, f"delete node {name}")
    ((_, _, outcome),) = resources.delete(store, [(Kind.NODE, "", node_name(name))], force=force, by=who.user)
    return Json({"kind": "Node", "namespace": None, "name": name, "outcome": outcome})


@router.post("/nodes/{name}/cordon", responses=schemas.responses(schemas.Outcome))
def cordon(name: str, who: Caller, store: Store) -> Json:
    """No new tasks on the node; running ones stay, as `brokerctl cordon NODE`."""
    allow(who, WRITE, None, f"cordon node {name}")
    changed = nodes.cordon(store, node_name(name), by=who.user)
    return Json({"kind": "Node", "namespace": None, "name": name,
                 "outcome": "cordoned" if changed else "already cordoned"})


@router.post("/nodes/{name}/uncordon", responses=schemas.responses(schemas.Outcome))
def uncordon(name: str, who: Caller, store: Store) -> Json:
    """The node takes new tasks again (a drain ends), as `brokerctl uncordon NODE`."""
    allow(who, WRITE, None, f"uncordon node {name}")
    changed = nodes.uncordon(store, node_name(name), by=who.user)
    return Json({"kind": "Node", "namespace": None, "name": name,
                 "outcome": "uncordoned" if changed else "already schedulable"})


@router.post("/nodes/{name}/drain", responses=schemas.responses(schemas.Progress, stream='{"type": "NOTE", ...}\n'))
async def drain(name: str, who: Caller, store: Store,
                timeout: Annotated[float, Query(ge=0, description="Job tasks may finish for this long, then are "
                                                                  "rescheduled")] = 300.0,
                wait: Annotated[bool, Query(description="Stream progress until the node is empty")] = False) -> Json:
    """Cordon the node and move its tasks off, as `brokerctl drain NODE` (`--no-wait` unless `wait=true`)."""
    allow(who, WRITE, None, f"drain node {name}")
    events = nodes.drain(store, node_name(name), timeout, wait, by=who.user)
    if wait:
        return await progress(events)
    notes, result = await anyio.to_thread.run_sync(collect, events)
    return Json({"notes": notes, "result": result})
