"""`get` over several kinds at once: what each kind lists, filtered, sorted (``--sort-by``), cut
(``--limit``), and the ``kind/name`` of each item (``-o name``).

Called by the CLI's ``get`` (``cli/resources.py``) and meant for the HTTP API's list routes. The
items of a listing are what the single-kind verbs of ``resources`` return: the view objects of
resources, ``TaskRecord``s of tasks (a front end builds their objects only if it prints them), the
store's rows of events.

``--sort-by`` takes a field path of the objects ``-o json`` prints (``.metadata.name``,
``{.status.phase}`` as kubectl writes it, ``.status.rollout.state``) or the name of a table column
(``PHASE``, ``AGE``), which stands for the field that column shows (``COLUMN_FIELDS``; AGE is the
creation time, so oldest first). Sorting is ascending and stable; numbers compare as numbers,
items without the field come last. ``--limit N`` keeps the first N after sorting (events: the last
N, newest, as before).
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import UsageError
from ..kinds import DEFAULT_NAMESPACE, Kind, TaskPhase
from .refs import EVENTS, TASKS

NAMESPACED = (Kind.JOB.value, Kind.SERVICE.value, Kind.SECRET.value, TASKS)  # listed with a NAMESPACE column under -A
EVENTS_LIMIT = 500  # `get events` shows the last this many unless --limit says otherwise

_META = {"NAME": ".metadata.name", "AGE": ".metadata.createdAt", "NAMESPACE": ".metadata.namespace",
         "IMAGE": ".spec.template.image", "MESSAGE": ".status.message"}
COLUMN_FIELDS = {
    Kind.NODE.value: {**_META, "STATUS": ".status.condition", "DOCKER": ".status.dockerVersion",
                      "ADDRESS": ".spec.address"},
    Kind.JOB.value: {**_META, "PHASE": ".status.phase", "COMPLETIONS": ".status.succeeded", "ACTIVE": ".status.active",
                     "FAILED": ".status.failed"},
    Kind.SERVICE.value: {**_META, "DESIRED": ".spec.replicas", "RUNNING": ".status.running", "READY": ".status.ready",
                         "UP-TO-DATE": ".status.updated", "RESTARTS": ".status.restarts",
                         "ROLLOUT": ".status.rollout.state", "TEMPLATE": ".status.revision",
                         "BACKOFF": ".status.restartBackoffSeconds"},
    Kind.NAMESPACE.value: {**_META, "STATUS": ".status.phase", "TASKS": ".status.running", "SHARE": ".spec.share"},
    Kind.SECRET.value: {"NAME": ".metadata.name", "AGE": ".metadata.createdAt", "NAMESPACE": ".metadata.namespace",
                        "TYPE": ".spec.type", "SERVER": ".spec.server"},
    TASKS: {"ID": ".id", "NAME": ".id", "OWNER": ".owner", "PHASE": ".phase", "NODE": ".node", "EXIT": ".exitCode",
            "AGE": ".createdAt", "REASON": ".reason", "ATTEMPT": ".attempt", "CONTAINER": ".containerId",
            "MESSAGE": ".message", "NAMESPACE": ".namespace"},
    EVENTS: {"AGE": ".time", "OBJECT": ".object", "TYPE": ".type", "REASON": ".reason", "MESSAGE": ".message",
             "NAMESPACE": ".namespace"},
}


class Listing(NamedTuple):
    kind: str  # a Kind value, TASKS or EVENTS
    items: list  # resources: view objects; tasks: TaskRecords; events: store rows
    total: int  # how many matched before --limit
    older: bool = False  # events: there are older ones than those listed


class Filters(NamedTuple):
    """What narrows a listing besides its namespace: labels, and for tasks phases and an owner."""

    selector: dict[str, str] = {}
    phases: frozenset[TaskPhase] = frozenset()
    owner: tuple[Kind, str] | None = None
    events_for: tuple[Kind, str] | None = None  # `get events --for KIND/NAME`


def check(kinds: list[str], name: str | None, filters: Filters, namespace: str | None) -> None:
    """Refuse the combinations that mean nothing, before the store is opened."""
    if name and len(kinds) > 1:
        raise UsageError(f"get {','.join(k.lower() for k in kinds)} {name}: a name is looked up in one kind; "
                         "name the kind alone, e.g. `get job NAME`")
    if name and namespace is None and kinds != [TASKS]:
        raise UsageError(f"get {kinds[0].lower()} {name}: a name is looked up in one namespace; use -n NAMESPACE, "
                         "not -A")
    if (filters.phases or filters.owner) and kinds != [TASKS]:
        raise UsageError("--phase and --owner filter tasks: use them with `get tasks`")
    if filters.events_for and kinds != [EVENTS]:
        raise UsageError("--for names the object whose events are wanted: use it with `get events`")


def get(store, kinds: list[str], name: str | None = None, filters: Filters = Filters(),
        namespace: str | None = DEFAULT_NAMESPACE, sort_by: str | None = None,
        limit: int | None = None) -> list[Listing]:
    """One ``Listing`` per kind of ``kinds``, in that order: of ``namespace`` (None: every namespace),
    filtered, sorted by ``sort_by`` and cut to ``limit`` (None: every item; events: the last 500)."""
    check(kinds, name, filters, namespace)
    return [_listing(store, kind, name, filters, namespace, sort_by, limit) for kind in kinds]


def _listing(store, kind: str, name, filters: Filters, namespace, sort_by, limit) -> Listing:
    from . import resources

    if kind == EVENTS:
        limit = EVENTS_LIMIT if limit is None else limit
        events = resources.get_events(store, filters.events_for, limit, namespace)
        rows = sort(events.rows, sort_by, kind) if sort_by else events.rows
        return Listing(kind, rows, len(rows), events.older)
    if kind == TASKS:
        items = tasks(store, name, filters, namespace)
    else:
        items = resources.get_resources(store, Kind(kind), name, filters.selector, namespace)
    if sort_by:
        items = sort(items, sort_by, kind)
    return Listing(kind, items[:limit] if limit else items, len(items))


def tasks(store, task_id: str | None, filters: Filters, namespace: str | None) -> list:
    """The tasks of ``namespace`` (or the one named) matching ``filters``: phases and owner are asked
    of the store, so `get tasks --phase Running` reads only those rows."""
    if task_id:
        found = [store.task(task_id)]
        found = [t for t in found if not filters.phases or t.phase in filters.phases]
    elif filters.owner and namespace is None:  # -A: that owner's name in every namespace
        kind, owner = filters.owner
        found = [t for t in store.tasks(phases=filters.phases or None)
                 if t.owner_kind is kind and t.owner_name == owner]
    else:
        found = store.tasks(owner=filters.owner, namespace=namespace, phases=filters.phases or None)
    want = filters.selector.items()
    return [t for t in found if want <= t.labels.items()] if want else found


# -- --sort-by -------------------------------------------------------------------------------------


def field_path(kind: str, text: str) -> list[str]:
    """``--sort-by``: a column name of ``kind``'s table or a path (``.a.b``, ``{.a.b}``, ``a.b``) -> keys."""
    columns = COLUMN_FIELDS[kind]
    path = columns.get(text.strip().upper(), text.strip())
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    keys = path.removeprefix(".").split(".")
    if not all(keys):
        raise UsageError(f"--sort-by {text!r} is not a field path or column: use e.g. .metadata.name, or one of "
                         + ", ".join(columns))
    return keys


def sort(items: list, sort_by: str, kind: str) -> list:
    """``items`` sorted by the field ``sort_by`` names; a UsageError when no item has it (a typo)."""
    from .. import views

    keys = field_path(kind, sort_by)
    as_object = {TASKS: views.task_object, EVENTS: views.event_object}.get(kind, lambda o: o)
    values = [_lookup(as_object(item), keys) for item in items]
    if items and all(v is _MISSING for v in values):
        raise UsageError(f"--sort-by {sort_by!r}: no {kind.lower()} has the field .{'.'.join(keys)}; use a field of "
                         "`-o json` or one of the columns " + ", ".join(COLUMN_FIELDS[kind]))
    order = sorted(range(len(items)), key=lambda i: _order(values[i]))
    return [items[i] for i in order]


_MISSING = object()


def _lookup(obj, keys: list[str]):
    for key in keys:
        if not isinstance(obj, dict) or key not in obj:
            return _MISSING
        obj = obj[key]
    return _MISSING if obj is None else obj


def _order(value) -> tuple:
    """Numbers before text, missing values last; other values by their text."""
    if value is _MISSING:
        return (3,)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    return (2, str(value))


# -- -o name ---------------------------------------------------------------------------------------


def item_name(kind: str, item) -> str:
    """``job/hello``, ``node/h1``, ``task/ID``: what `-o name` prints (and other commands take)."""
    if kind == TASKS:
        return f"task/{item.id}"
    if kind == EVENTS:
        raise UsageError("events have no names: use -o table, json or yaml")
    return f"{kind.lower()}/{item['metadata']['name']}"
