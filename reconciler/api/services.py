"""Routes of a Service's replicas and rollouts: scale, rollout status, history and undo.

Registered by ``app``; the verbs are ``ops.rollout``'s, as `brokerctl scale` and `brokerctl rollout`
call them. ``rollout`` answers where the rollout stands after one look, or with ``watch=true``
streams the notes `brokerctl rollout status` prints until it completes or pauses.
"""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Query

from ..ops import rollout
from ..ops.refs import namespace_name
from ..ops.tokens import READ, WRITE, allow
from . import schemas
from .auth import Caller, Store
from .lists import Json, collect, list_body, progress
from .resources import MAX_INT

router = APIRouter(prefix="/api/v1/namespaces/{namespace}/services/{name}")


@router.put("/scale", responses=schemas.responses(schemas.Scaled))
def scale(namespace: str, name: str, body: schemas.Scale, who: Caller, store: Store) -> Json:
    """Set the replica count (0 stops every replica and keeps the Service), as `brokerctl scale`."""
    ns = namespace_name(namespace)
    allow(who, WRITE, ns, f"scale service {name}")
    old, new = rollout.scale(store, name, body.replicas, ns, by=who.user)
    return Json({"namespace": ns, "name": name, "previous": old, "replicas": new})


@router.get("/rollout", responses=schemas.responses(schemas.Progress, stream='{"type": "NOTE", ...}\n'))
async def rollout_status(namespace: str, name: str, who: Caller, store: Store,
                         watch: Annotated[bool, Query(description="Stream notes until the rollout completes or "
                                                                  "pauses")] = False,
                         timeout: Annotated[float, Query(ge=0, description="With watch: give up after this long "
                                                                           "(0: no limit)")] = 0) -> Json:
    """Whether every replica runs the current template (`result` true), as `brokerctl rollout status`."""
    ns = namespace_name(namespace)
    allow(who, READ, ns, f"read the rollout of service {name}")
    events = rollout.status(store, name, watch, timeout, namespace=ns)
    if watch:
        return await progress(events)
    notes, done = await anyio.to_thread.run_sync(collect, events)
    return Json({"notes": notes, "result": done})


@router.get("/rollout/history", responses=schemas.responses(schemas.RevisionList))
def history(namespace: str, name: str, who: Caller, store: Store,
            revision: Annotated[int | None, Query(le=MAX_INT, description="Only this revision")] = None) -> Json:
    """The Service's template revisions, oldest first, the current one marked, as `brokerctl rollout history`."""
    ns = namespace_name(namespace)
    allow(who, READ, ns, f"read the rollout history of service {name}")
    return Json(list_body("Revision", rollout.history(store, name, revision, ns).objects))


@router.post("/rollout/undo", responses=schemas.responses(schemas.Undone))
def undo(namespace: str, name: str, who: Caller, store: Store,
         toRevision: Annotated[int | None, Query(le=MAX_INT, description="The revision to return to (default: "
                                                                        "the previous)")] = None) -> Json:
    """Make an earlier template the desired one again, as `brokerctl rollout undo`."""
    ns = namespace_name(namespace)
    allow(who, WRITE, ns, f"undo the rollout of service {name}")
    rev = rollout.undo(store, name, toRevision, ns, by=who.user)
    return Json({"revision": rev["revision"], "template": rev["hash"]})
