"""`brokerctl sync DIR` and `sync status` through a server: GitOps of a directory the client reads.

Registered by ``app``; the verbs are ``ops.sync``'s, the local `sync`'s. ``POST /api/v1/sync`` takes
``{"directory", "commit", "sources"}``: the directory's absolute path on the client (the sync's
*source*: what it owns and may prune is recorded under that name, as a local sync of that path
records it), its last git commit, and each manifest file as the client read it (``spec.sources``).
The server loads and syncs them as a local sync loads the directory (``ops.sync.sync_sources``: one
file's problem holds back only that file; prune, drift and the mass-prune refusal alike) and answers
the lines `brokerctl sync` prints and whether it failed. ``GET /api/v1/syncs`` is `sync status`.
A sync creates, changes and prunes whatever its directory defines or owns, Nodes and Namespaces too:
both routes need an admin token.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from ..ops.refs import namespace_name
from ..ops.tokens import READ, WRITE, allow
from . import schemas
from .auth import Caller, Store
from .lists import Json
from .resources import ManifestNamespace

router = APIRouter(prefix="/api/v1")

MassPrune = Annotated[bool, Query(alias="allowMassPrune", description="Allow pruning more than half (or all) of "
                                                                     "what the directory owns, as --allow-mass-prune")]


@router.post("/sync", responses=schemas.responses(schemas.SyncReport),
             openapi_extra=schemas.body_of(schemas.SyncRequest))
def sync(request: Annotated[dict, Body()], who: Caller, store: Store, namespace: ManifestNamespace = "default",
         allow_mass_prune: MassPrune = False) -> Json:
    """Apply a directory's files with prune (one transaction), as `brokerctl sync DIR`."""
    allow(who, WRITE, None, "sync a directory")
    body = schemas.request_body(schemas.SyncRequest, request)
    from ..ops import sync as gitops  # the manifest loader: loaded by the server at start-up (app.warm)

    report = gitops.sync_sources(store, body.directory, [s.model_dump() for s in body.sources], body.commit,
                                 allow_mass_prune, namespace_name(namespace), by=who.user)
    return Json({"source": report["source"], "lines": gitops.summary(report),
                 "failed": bool(report["refused"] or report["problems"])})


@router.get("/syncs", responses=schemas.responses(schemas.SyncStatusList))
def sync_status(who: Caller, store: Store,
                directory: Annotated[str | None, Query(description="Only this directory (its absolute "
                                                                   "path)")] = None) -> Json:
    """What the last sync of each directory did, as `brokerctl sync status [DIR]`."""
    allow(who, READ, None, "read the sync status")
    from ..ops import sync as gitops

    return Json({"items": gitops.status(store, directory)})
