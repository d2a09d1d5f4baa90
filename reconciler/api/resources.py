"""Routes of manifests and workloads: apply, diff, events, and the Jobs and Services of a namespace
(list, get, delete, retry).

Registered by ``app``. Each handler checks the caller's role (``ops.tokens.allow``) where the verb
acts, then calls the verb the CLI command calls (``ops.resources``, ``ops.tasks``) and returns what
it returns. ``apply`` and ``diff`` take a body of multi-document YAML or JSON, validated by the same
loader as ``brokerctl apply -f`` (errors name ``<request>``, or ``filename``, then document, line
and field); every document is checked against the caller's role before anything is written.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from .. import views
from ..kinds import NAMESPACED_KINDS, Kind, object_ref
from ..ops import diff as diffs
from ..ops import listing, resources, tasks
from ..ops.refs import namespace_name, parse_kind, parse_ref
from ..ops.tokens import READ, WRITE, Identity, allow
from . import schemas
from .auth import Caller, Store
from .errors import BadRequest
from .limits import FILES_TYPE, manifest_text
from .lists import Json, list_body, page, selector, watch

router = APIRouter(prefix="/api/v1")

PLURALS = {Kind.JOB: "jobs", Kind.SERVICE: "services", Kind.SECRET: "secrets"}
Filename = Annotated[str, Query(max_length=255, pattern=r"^[^\x00-\x1f]*$",
                                description="How error messages name the body, as a file's path (default <request>)")]
ManifestNamespace = Annotated[str, Query(description="Namespace of the Jobs and Services that name none")]
Selector = Annotated[str | None, Query(description="key=value[,key=value]: every label must match")]
MAX_INT = 2**31 - 1  # bounds every integer a request passes: the store's columns and SQLite's take no more
Limit = Annotated[int | None, Query(ge=1, le=MAX_INT, description="At most this many items; `metadata.continue` fetches more")]
Continue = Annotated[str | None, Query(alias="continue", description="The `metadata.continue` of the page before")]
SortBy = Annotated[str | None, Query(description="Sort by a field of the objects (.metadata.name) or a column of "
                                                 "`brokerctl get` (PHASE, AGE), as `--sort-by`; with `limit`, the "
                                                 "first of that order (no `continue`)")]
Watch = Annotated[bool, Query(description="Stream changes as NDJSON (ADDED, MODIFIED, DELETED) instead of a list")]
WatchTimeout = Annotated[float | None, Query(alias="timeoutSeconds", gt=0, description="End a watch after this long")]
Force = Annotated[bool, Query(description="Remove the record now; its containers are no longer tracked (as "
                                          "`brokerctl delete --force`)")]
WATCH_EXAMPLE = '{"type": "ADDED", "object": {...}}\n{"type": "MODIFIED", "object": {...}}\n'
MANIFEST_BODY = {"requestBody": {"required": True, "description": "Multi-document YAML, or JSON (one resource or a "
                                 "list of them), as `brokerctl apply -f` reads a file",
                                 "content": {"application/yaml": {"schema": {"type": "string"}},
                                             "application/json": {"schema": {}}}}}


def resource_key(obj: dict) -> list:
    """The order lists come in (by namespace, then name): the key of their pages and watches."""
    return [obj["metadata"].get("namespace", ""), obj["metadata"]["name"]]


def reachable(who: Identity, namespace: str | None, plural: str) -> str | None:
    """The namespace a list route reads (None: every namespace), once the caller may read it; a caller
    who is not an admin reads every namespace as the ones its token reaches."""
    if namespace is not None:
        ns = namespace_name(namespace)
        allow(who, READ, ns, f"list {plural}")
        return ns
    return None


def namespace_of(obj: dict) -> str:
    return obj["metadata"]["namespace"]


def list_route(request: Request, who: Identity, kind_name: str, read, namespace: str | None, limit: int | None,
               after: str | None, follow: bool, timeout: float | None, space_of=namespace_of,
               sort_by: str | None = None) -> Json:
    """A list of view objects (``read(store)``) of ``namespace`` (None: every namespace, of which a caller
    who is not an admin sees those its token reaches: ``space_of`` an object), as a page or a watch."""

    def visible(store) -> list[dict]:
        objects = read(store)
        if namespace is None and who.role != "admin":
            objects = [o for o in objects if who.reaches(space_of(o))]
        return objects

    stores = request.app.state.stores
    if follow:
        def snapshot() -> dict:
            with stores.use() as store:
                return {tuple(resource_key(o)): o for o in visible(store)}

        return watch(request, snapshot, timeout)
    with stores.use() as store:
        found = visible(store)
    return Json(sorted_page(kind_name, found, resource_key, limit, after, sort_by))


def sorted_page(kind: str, found: list, key, limit: int | None, after: str | None, sort_by: str | None,
                objects=lambda items: items) -> dict:
    """The list body of ``found`` (in ``key`` order): one page of it, or with ``sort_by`` (`--sort-by`,
    ``ops.listing.sort``) its first ``limit`` in that order. ``metadata.remainingItemCount`` says how
    many more there are (`brokerctl get --limit` tells how many it leaves out)."""
    if sort_by:
        if after:
            raise BadRequest("sortBy lists are not paged: list with sortBy and limit alone")
        ordered = listing.sort(found, sort_by, kind)
        shown, token = (ordered[:limit] if limit else ordered), None
    else:
        shown, token = page(found, key, limit, after)
    extra = {"remainingItemCount": len(found) - len(shown)} if len(shown) < len(found) and not after else {}
    return list_body(kind, objects(shown), token, **extra)


# -- apply and diff ---------------------------------------------------------------------------------


def read_body(request: Request, text: str, filename: str, namespace: str, applying: bool = False) -> list:
    """The manifests of a body: YAML or JSON text named ``filename``, or (``limits.FILES_TYPE``) the
    files a remote CLI read, each named by its path (``ops.resources.read_manifest_sources``).
    ``applying``: a Node's TLS files must be readable here, where the controller reads them."""
    from ..errors import ManifestError

    ns = namespace_name(namespace)
    if request.headers.get("content-type", "").split(";")[0].strip().lower() == FILES_TYPE:
        return resources.read_manifest_sources(_sources(text), ns, applying)
    loaded = resources.read_manifest_text(text, filename, ns)
    if applying and (problems := resources.unreadable_tls_files(loaded)):
        raise ManifestError(problems)
    return loaded


def _sources(text: str) -> list[dict]:
    import json

    try:
        sources = json.loads(text)["sources"]
        if isinstance(sources, list) and all(isinstance(item, dict) for item in sources):
            return sources
    except (ValueError, KeyError, TypeError):
        pass
    raise BadRequest(f'a {FILES_TYPE} body is {{"sources": [{{"given", "name", "text", "inDirectory", '
                     '"problem"}, ...]}')


@router.post("/apply", responses=schemas.responses(schemas.Applied), openapi_extra=MANIFEST_BODY)
def apply(request: Request, who: Caller, store: Store, text: Annotated[str, Depends(manifest_text)],
          namespace: ManifestNamespace = "default", filename: Filename = "<request>") -> Json:
    """Create or update resources (all documents or none), as `brokerctl apply -f`."""
    loaded = read_body(request, text, filename, namespace, applying=True)
    for item in loaded:
        res = item.resource
        allow(who, WRITE, res.namespace if res.kind in NAMESPACED_KINDS else None,
              f"apply {res.kind.lower()}/{res.metadata.name}")
    applied = resources.apply(store, loaded, by=who.user)
    results = [{"kind": item.resource.kind, "namespace": item.resource.namespace or None,
                "name": item.resource.metadata.name, "ref": ref, "outcome": outcome}
               for item, (ref, outcome) in zip(loaded, applied.results)]
    return Json({"results": results, "warnings": applied.warnings})


@router.post("/diff", responses=schemas.responses(schemas.Diff), openapi_extra=MANIFEST_BODY)
def diff(request: Request, who: Caller, store: Store, text: Annotated[str, Depends(manifest_text)],
         namespace: ManifestNamespace = "default", filename: Filename = "<request>") -> Json:
    """What `apply` would change (nothing is written), as `brokerctl diff -f`."""
    inputs = [diffs.DiffInput(None, [i.resource for i in read_body(request, text, filename, namespace)])]
    for model in inputs[0].models:
        allow(who, READ, model.namespace if model.kind in NAMESPACED_KINDS else None,
              f"diff {model.kind.lower()}/{model.metadata.name}")
    changes = diffs.diff(store, inputs)
    return Json({"changes": [{"ref": c.ref, "outcome": c.outcome, "fields": list(c.fields)} for c in changes]})


@router.post("/delete", responses=schemas.responses(schemas.Outcomes), openapi_extra=MANIFEST_BODY)
def delete_manifests(request: Request, who: Caller, store: Store, text: Annotated[str, Depends(manifest_text)],
                     namespace: ManifestNamespace = "default", filename: Filename = "<request>", force: Force = False,
                     confirm: Annotated[bool, Query(description="Delete a namespace although it holds Jobs or "
                                                              "Services (the CLI's --yes)")] = False) -> Json:
    """Delete the resources the manifests define (Namespaces last), as `brokerctl delete -f`."""
    keys = sorted((i.resource.key for i in read_body(request, text, filename, namespace)),
                  key=lambda key: key[0] is Kind.NAMESPACE)
    for kind, ns, name in keys:
        allow(who, WRITE, ns if kind in NAMESPACED_KINDS else None, f"delete {kind.value.lower()}/{name}")
    done = resources.delete(store, keys, force=force, yes=confirm, by=who.user)
    return Json({"results": [{"kind": k.value, "namespace": ns or None, "name": n, "ref": object_ref(k, ns, n),
                              "outcome": outcome} for (k, ns, n), (_, _, outcome) in zip(keys, done)]})


# -- describe ---------------------------------------------------------------------------------------


@router.get("/describe/{kind}/{name}", responses=schemas.responses(schemas.Description))
def describe(kind: str, name: str, who: Caller, store: Store, namespace: ManifestNamespace = "default") -> Json:
    """Spec, status, tasks, recent events (and a namespace's contents), as `brokerctl describe KIND NAME`."""
    k, ns = parse_kind(kind), namespace_name(namespace)
    where = name if k is Kind.NAMESPACE else ns if k.namespaced else None
    allow(who, READ, where, f"describe {k.value.lower()} {name}")
    found = resources.describe(store, k, name, ns)
    return Json({"kind": found.record.kind.value, "object": found.object,
                 "tasks": resources.task_objects(found.tasks),
                 "events": [views.event_object(e) for e in found.events],
                 "contents": [{"kind": r["kind"], "name": r["name"], "deleting": bool(r["deleted_at"])}
                              for r in found.contents]})


# -- events ------------------------------------------------------------------------------------------

EventsLimit = Annotated[int, Query(ge=0, le=MAX_INT, description="The last this many (0: all)")]


@router.get("/namespaces/{namespace}/events", responses=schemas.responses(schemas.EventList))
def namespace_events(namespace: str, who: Caller, store: Store,
                     for_: Annotated[str | None, Query(alias="for", description="Only this KIND/NAME")] = None,
                     limit: EventsLimit = 500) -> Json:
    """The namespace's events, oldest first (an admin also sees the cluster's: nodes, namespaces), as
    `brokerctl get events -n NS`."""
    ns = namespace_name(namespace)
    allow(who, READ, ns, "list events")
    found = resources.get_events(store, parse_ref(for_) if for_ else None, limit, ns)
    rows = found.rows if who.role == "admin" else [e for e in found.rows if e["namespace"] == ns]
    return Json(list_body("Event", [views.event_object(e) for e in rows], older=found.older))


@router.get("/events", responses=schemas.responses(schemas.EventList))
def all_events(who: Caller, store: Store, limit: EventsLimit = 500) -> Json:
    """Every event of every namespace and of the cluster (admin), oldest first, as `brokerctl get events -A`."""
    allow(who, READ, None, "list every namespace's events")
    found = resources.get_events(store, None, limit, None)
    return Json(list_body("Event", [views.event_object(e) for e in found.rows], older=found.older))


# -- Jobs and Services -------------------------------------------------------------------------------


def _workload_routes(kind: Kind) -> None:
    plural, word = PLURALS[kind], kind.value.lower()
    many = schemas.responses(schemas.ResourceList, stream=WATCH_EXAMPLE)

    def read(store, ns, want):
        return resources.get_resources(store, kind, None, want, ns)

    @router.get(f"/namespaces/{{namespace}}/{plural}", responses=many, name=f"list_{plural}")
    def list_in(request: Request, namespace: str, who: Caller, labelSelector: Selector = None, limit: Limit = None,
                continue_: Continue = None, watch: Watch = False, timeout: WatchTimeout = None,
                sortBy: SortBy = None) -> Json:
        ns, want = reachable(who, namespace, plural), selector(labelSelector)
        return list_route(request, who, f"{kind.value}", lambda s: read(s, ns, want), ns, limit, continue_, watch,
                          timeout, sort_by=sortBy)

    list_in.__doc__ = f"The {plural} of a namespace, as `brokerctl get {plural} -n NS`."

    @router.get(f"/{plural}", responses=many, name=f"list_all_{plural}")
    def list_all(request: Request, who: Caller, labelSelector: Selector = None, limit: Limit = None,
                 continue_: Continue = None, watch: Watch = False, timeout: WatchTimeout = None,
                 sortBy: SortBy = None) -> Json:
        want = selector(labelSelector)
        return list_route(request, who, f"{kind.value}", lambda s: read(s, None, want), None, limit, continue_,
                          watch, timeout, sort_by=sortBy)

    list_all.__doc__ = (f"The {plural} of every namespace the token reaches, as `brokerctl get {plural} -A`.")

    @router.get(f"/namespaces/{{namespace}}/{plural}/{{name}}", responses=schemas.responses(schemas.Resource),
                name=f"get_{word}")
    def get_one(namespace: str, name: str, who: Caller, store: Store) -> Json:
        ns = namespace_name(namespace)
        allow(who, READ, ns, f"get {word} {name}")
        return Json(resources.get_resources(store, kind, name, None, ns)[0])

    get_one.__doc__ = f"One {word}, as `brokerctl get {word} NAME -o json`."

    @router.delete(f"/namespaces/{{namespace}}/{plural}/{{name}}", responses=schemas.responses(schemas.Outcome),
                   name=f"delete_{word}")
    def delete_one(namespace: str, name: str, who: Caller, store: Store, force: Force = False) -> Json:
        ns = namespace_name(namespace)
        allow(who, WRITE, ns, f"delete {word} {name}")
        ((_, _, outcome),) = resources.delete(store, [(kind, ns, name)], force=force, by=who.user)
        return Json({"kind": kind.value, "namespace": ns, "name": name, "outcome": outcome})

    delete_one.__doc__ = (f"Delete a {word}: its containers are stopped, then it is gone (`deleting` until then); "
                          f"again while they stop says what is left, as `brokerctl delete {word} NAME`.")


_workload_routes(Kind.JOB)
_workload_routes(Kind.SERVICE)
_workload_routes(Kind.SECRET)


@router.post("/namespaces/{namespace}/jobs/{name}/retry", responses=schemas.responses(schemas.Outcome))
def retry(namespace: str, name: str, who: Caller, store: Store) -> Json:
    """Re-run a Failed job's failed completions with a fresh backoffLimit, as `brokerctl retry job NAME`."""
    ns = namespace_name(namespace)
    allow(who, WRITE, ns, f"retry job {name}")
    tasks.retry(store, name, ns, by=who.user)
    return Json({"kind": "Job", "namespace": ns, "name": name, "outcome": "retried"})
