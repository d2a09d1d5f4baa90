"""Routes of Namespaces: list, get, delete.

Registered by ``app``. Namespaces are cluster-scoped: only an admin deletes one (with everything in
it: ``confirm=true`` is the CLI's ``--yes``, needed when it holds anything). A token that reaches a
namespace may read that Namespace (its quota and use); a list shows a token the namespaces it
reaches. Created and changed through ``apply``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from ..kinds import Kind
from ..ops import resources
from ..ops.refs import namespace_name
from ..ops.tokens import READ, WRITE, allow
from . import schemas
from .auth import Caller, Store
from .lists import Json
from .resources import (
    WATCH_EXAMPLE, Continue, Force, Limit, Selector, SortBy, Watch, WatchTimeout, list_route, selector,
)

router = APIRouter(prefix="/api/v1")


def _name_of(obj: dict) -> str:
    return obj["metadata"]["name"]


@router.get("/namespaces", responses=schemas.responses(schemas.ResourceList, stream=WATCH_EXAMPLE))
def list_namespaces(request: Request, who: Caller, labelSelector: Selector = None, limit: Limit = None,
                    continue_: Continue = None, watch: Watch = False, timeout: WatchTimeout = None,
                    sortBy: SortBy = None) -> Json:
    """The namespaces (those the token reaches), with what their tasks use, as `brokerctl get namespaces`."""
    want = selector(labelSelector)
    return list_route(request, who, "Namespace", lambda store: resources.get_resources(store, Kind.NAMESPACE, None,
                                                                                       want),
                      None, limit, continue_, watch, timeout, space_of=_name_of, sort_by=sortBy)


@router.get("/namespaces/{namespace}", responses=schemas.responses(schemas.Resource))
def get_namespace(namespace: str, who: Caller, store: Store) -> Json:
    """One namespace with its use against its quota, as `brokerctl get namespace NS -o json`."""
    ns = namespace_name(namespace)
    allow(who, READ, ns, f"get namespace {ns}")
    return Json(resources.get_resources(store, Kind.NAMESPACE, ns)[0])


@router.delete("/namespaces/{namespace}", responses=schemas.responses(schemas.Outcome))
def delete_namespace(namespace: str, who: Caller, store: Store, force: Force = False,
                     confirm: Annotated[bool, Query(description="Delete it although it holds Jobs or Services (the "
                                                              "CLI's --yes)")] = False) -> Json:
    """Delete a namespace and everything in it, as `brokerctl delete namespace NS`."""
    ns = namespace_name(namespace)
    allow(who, WRITE, None, f"delete namespace {ns}")
    ((_, _, outcome),) = resources.delete(store, [(Kind.NAMESPACE, "", ns)], force=force, yes=confirm, by=who.user)
    return Json({"kind": "Namespace", "namespace": None, "name": ns, "outcome": outcome})
