"""The resource verbs: apply, get (resources, tasks, events), describe, delete, and a kind's schema
(``diff`` has a module of its own).

Called by the CLI's resource commands (``cli/resources.py``, ``cli/controller.py`` for ``schema``)
and meant for the HTTP API's routes: each takes an open store and plain values and returns data,
the stable objects of ``views`` where a front end shows them as they are. Manifests are read by
``read_manifests`` before a store is opened, so bad input never creates one.

Namespaced verbs take ``namespace`` (the ``-n`` of the CLI, ``default`` unless given): where
manifests without one go, or which namespace a name is looked up in; listings take None for every
namespace (``-A``). A Namespace that holds resources is deleted only when the caller confirms
(``yes``), since everything in it goes with it.

The result types are NamedTuples rather than dataclasses: `get` imports this module on every call,
and defining a frozen dataclass costs about 0.6 ms of start-up, a NamedTuple a tenth of that.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, NamedTuple, TextIO

from .. import views
from ..errors import Conflict, ManifestError, UsageError
from ..kinds import DEFAULT_NAMESPACE, Kind, TaskPhase, scope
from ..records import ResourceRecord, TaskRecord
from .refs import parse_kind
from .tokens import author

Key = tuple[Kind, str, str]  # (kind, namespace, name); namespace '' for Nodes and Namespaces


def read_manifests(files: list[str], stdin: TextIO | None = None, namespace: str = DEFAULT_NAMESPACE,
                   applying: bool = False) -> list:
    """Load and validate every document of ``files`` (``-``: ``stdin``) as one set: a list of
    ``manifests.Loaded``, or a ``ManifestError`` naming file, document, line and field. Jobs and
    Services that name no namespace go into ``namespace``. ``applying``: the files a Node's ``tls``
    names must also be readable here (see ``unreadable_tls_files``)."""
    from ..spec import manifests

    loaded = manifests.load_paths(files, stdin=stdin, namespace=namespace)
    if applying and (problems := unreadable_tls_files(loaded)):
        raise ManifestError(problems)
    return loaded


def unreadable_tls_files(loaded: list) -> list[str]:
    """A Node whose ``tls`` names a file that is not there would only ever be NotReady: refuse it at
    apply, naming the file. The controller reads these files, so this holds where it runs the apply;
    the controller reports a file it cannot read in the Node's status all the same."""
    problems = []
    for item in loaded:
        res = item.resource
        if res.kind != Kind.NODE.value or res.spec.tls is None:
            continue
        for field, path in res.spec.tls.files():
            if not os.path.isfile(path) or not os.access(path, os.R_OK):
                why = "no such file" if not os.path.exists(path) else "not a readable file"
                problems.append(f"{item.source}: document {item.document} (Node/{res.metadata.name}): "
                                f"spec.tls.{field}: {path}: {why}; the controller reads it to reach the daemon: "
                                "give the path of the PEM file there")
    return problems


def load_manifest_models() -> None:
    """Import the manifest loader now (the kinds' pydantic models are built as it loads, and YAML): a
    server does it at start-up, so that its first `apply` does not wait for it."""
    from ..spec import manifests  # noqa: F401  (imported for what importing it builds)


def read_manifest_text(text: str, source: str = "<request>", namespace: str = DEFAULT_NAMESPACE) -> list:
    """``read_manifests`` of text a front end received (an HTTP request's body): ``source`` names it in
    the messages, as a file's path does."""
    from ..spec import manifests

    return manifests.load_text(text, source, namespace)


def read_manifest_sources(sources: list[dict], namespace: str = DEFAULT_NAMESPACE, applying: bool = False) -> list:
    """``read_manifests`` of files read elsewhere (``spec.sources.Source.to_json`` objects a remote CLI
    sent): the messages name them as that command line did."""
    from ..spec import manifests
    from ..spec.sources import Source

    try:
        read = [Source.from_json(obj) for obj in sources]
    except (KeyError, TypeError, AttributeError):
        raise UsageError('each of "sources" is {"given", "name", "text", "inDirectory", "problem"}') from None
    loaded = manifests.load_sources(read, namespace=namespace)
    if applying and (problems := unreadable_tls_files(loaded)):
        raise ManifestError(problems)
    return loaded


# -- apply -----------------------------------------------------------------------------------------


class Applied(NamedTuple):
    results: list[tuple[str, str]]  # (kind/name, created | configured | unchanged), in manifest order
    warnings: list[str]  # what was applied but cannot run as it stands (see ``unplaceable``)
    jobs: list[tuple[str, str]]  # (namespace, name) of the Jobs applied, for a caller that waits for them


def apply(store, loaded: list, by: str | None = None) -> Applied:
    """Write every loaded resource in one transaction (all or none). A Job or Service into a namespace
    that does not exist (and that no Namespace of ``loaded`` creates) is refused, naming its file and
    document. ``by``: who applies (``ops.tokens.author``)."""
    resources = [item.resource for item in loaded]
    where = [f"{i.source}: document {i.document} ({i.resource.kind}/{i.resource.metadata.name})" for i in loaded]
    results = store.apply(resources, where=where, by=author(by))
    return Applied(results, unplaceable(store, resources),
                   [(r.namespace, r.metadata.name) for r in resources if r.kind == Kind.JOB.value])


def unplaceable(store, resources: list) -> list[str]:
    """A Job or Service whose execution type no node declares would wait forever: say so at once."""
    nodes = store.resources(Kind.NODE)
    declared: set[str] = set()
    for n in nodes:
        declared |= set(n.model.spec.slots or {"default": 1})
    warnings = []
    for res in resources:
        etype = getattr(res.spec, "executionType", None)
        if etype and nodes and etype not in declared:
            warnings.append(f"{res.kind} '{res.metadata.name}': executionType '{etype}' — no node declares slots "
                            "for it; its tasks stay Pending until a Node adds such slots (or change the type)")
    return warnings


# -- get -------------------------------------------------------------------------------------------


def get_resources(store, kind: Kind, name: str | None = None, selector: dict[str, str] | None = None,
                  namespace: str | None = DEFAULT_NAMESPACE) -> list[dict]:
    """The resources of ``kind`` (or the one named) whose labels include ``selector``, as view objects;
    of ``namespace`` (None: every namespace; cluster-scoped kinds have none)."""
    if name:
        items = [store.resource(kind, name, namespace=namespace)]
    else:
        items = store.resources(kind, namespace=namespace if kind.namespaced else None)
    items = [r for r in items if (selector or {}).items() <= r.labels.items()]
    if kind is Kind.NODE:
        return _node_objects(store, items)
    if kind is Kind.NAMESPACE:
        return namespace_objects(store, items)
    return [views.resource_object(r) for r in items]


def _node_objects(store, nodes: list[ResourceRecord]) -> list[dict]:
    """Nodes with their slots in use, which needs each active task's execution type."""
    tasks = store.tasks(active_only=True)
    types = {r.key: r.spec.get("executionType", "default") for r in store.resources() if r.kind.workload}
    return [views.resource_object(r, views.node_used(r.name, tasks, types)) for r in nodes]


def namespace_objects(store, namespaces: list[ResourceRecord], now: float | None = None) -> list[dict]:
    """Namespaces with what their active tasks use (``views.namespace_usage``): the requests of each
    task's owner, read through the models (a memory request may be written 256m); and, for one with a
    budget, the cpu-hours consumed in its window up to ``now`` (``engine.quotas.budget_use``, over the
    namespace's tasks, history included: the figure the scheduler holds the budget to)."""
    tasks = store.tasks(active_only=True)
    requests = {}
    for r in store.resources():
        if r.kind.workload:
            spec = r.model.spec
            res = spec.template.resources
            requests[r.key] = views.OwnerRequest(res.cpus or 0.0, res.memory_bytes() or 0, spec.executionType,
                                                 res.cpus)
    objects = []
    for r in namespaces:
        usage = views.namespace_usage(r.name, tasks, requests)
        if (budget := r.model.spec.budget) is not None:
            usage["used"]["cpuHours"] = _budget_use(store, r.name, budget.window_seconds(), requests, now)
        objects.append(views.namespace_object(r, usage))
    return objects


def _budget_use(store, namespace: str, window: float, requests: dict, now: float | None) -> float:
    """Cpu-hours namespace ``namespace`` consumed over the last ``window`` seconds."""
    import time

    from ..engine.quotas import budget_use

    cpus = {key: req.requested_cpus for key, req in requests.items() if key[1] == namespace}
    used = budget_use(store.tasks(namespace=namespace), {namespace: window}, cpus, time.time() if now is None else now)
    return round(used[namespace] / 3600, 3)


def get_tasks(store, task_id: str | None = None, selector: dict[str, str] | None = None,
              namespace: str | None = DEFAULT_NAMESPACE) -> list[TaskRecord]:
    """Every task of ``namespace`` (None: of every namespace), or the one named whatever its
    namespace, whose labels include ``selector``, oldest first."""
    tasks = [store.task(task_id)] if task_id else store.tasks(namespace=namespace)
    return [t for t in tasks if (selector or {}).items() <= t.labels.items()]


def task_objects(tasks: list[TaskRecord]) -> list[dict]:
    """The tasks' view objects (built in ``bulk``: 100,000 tasks are a common list)."""
    with bulk():
        return [views.task_object(t) for t in tasks]


@contextmanager
def bulk() -> Iterator[None]:
    """Pause the cyclic GC while many task objects are built and written out: each allocation burst
    otherwise starts collections that walk every object already built (~5% of `get tasks -o json`)."""
    from ..store import gc_paused

    with gc_paused():
        yield


class Events(NamedTuple):
    rows: list[dict]  # the store's event rows, oldest first (``views.event_object`` shows one)
    older: bool  # there are older events than these


def get_events(store, ref: tuple[Kind, str] | None = None, limit: int = 0,
               namespace: str | None = DEFAULT_NAMESPACE) -> Events:
    """The last ``limit`` events (0: all): those of ``ref`` (kind, name) in ``namespace`` when given,
    else those of ``namespace`` and of the cluster-scoped objects (Nodes, Namespaces, synced
    directories); ``namespace`` None: every event."""
    kind, name = (ref[0].value, ref[1]) if ref else (None, None)
    namespaces = None if namespace is None else [namespace, ""]
    rows = store.events(kind, name, limit=limit + 1 if limit else None,  # one more: are there older ones?
                        namespace=namespace, namespaces=namespaces)
    older = bool(limit) and len(rows) > limit
    return Events(rows[1:] if older else rows, older)


# -- describe --------------------------------------------------------------------------------------


class Description(NamedTuple):
    record: ResourceRecord
    object: dict  # views.resource_object of the record (a Namespace's: views.namespace_object)
    tasks: list[TaskRecord]  # a Node's or Namespace's active tasks; a Job's or Service's tasks, history included
    events: list[dict]  # its last 20 events, oldest first
    contents: tuple | list = ()  # a Namespace's resources: kind, name, deleted_at

    @property
    def pending(self) -> list[TaskRecord]:
        """Tasks waiting for a node, with the scheduler's reason."""
        return [t for t in self.tasks if t.phase is TaskPhase.PENDING and t.message]


def describe(store, kind: Kind, name: str, namespace: str = DEFAULT_NAMESPACE) -> Description:
    r = store.resource(kind, name, namespace=namespace)
    events = store.events(kind.value, name, limit=20, namespace=r.namespace)
    if kind is Kind.NODE:
        tasks = [t for t in store.tasks(active_only=True) if t.node == name]
    elif kind is Kind.NAMESPACE:
        tasks = store.tasks(active_only=True, namespace=name)
        return Description(r, namespace_objects(store, [r])[0], tasks, events, store.contents(None, name))
    else:
        tasks = store.tasks(owner=(kind, name), namespace=r.namespace)
    return Description(r, views.resource_object(r), tasks, events)


# -- delete ----------------------------------------------------------------------------------------


def delete_targets(kind: str | None, name: str | None, files: list[str], stdin: TextIO | None = None,
                   namespace: str = DEFAULT_NAMESPACE) -> list[Key]:
    """What `delete` names: the resources ``files`` define (Namespaces last, after what may be in them),
    else KIND NAME (in ``namespace``), as keys."""
    if files:
        keys = [i.resource.key for i in read_manifests(files, stdin, namespace)]
        return sorted(keys, key=lambda key: key[0] is Kind.NAMESPACE)
    if kind and name:
        k = parse_kind(kind)
        return [(k, scope(k, namespace), name)]
    raise UsageError("name what to delete: `brokerctl delete job NAME` or `brokerctl delete -f FILE`")


def selected_targets(store, kinds: list[Kind], selector: dict[str, str] | None = None,
                     namespace: str | None = DEFAULT_NAMESPACE) -> list[Key]:
    """`delete KINDS -l key=value` and `delete KINDS --all`: the keys of the resources of ``kinds`` whose
    labels include ``selector`` (empty: every one), Jobs and Services of ``namespace`` (None: of every
    namespace); not those already being deleted; Namespaces last, after what may be in them."""
    want = (selector or {}).items()
    keys = [r.key for kind in kinds for r in store.resources(kind, namespace=namespace if kind.namespaced else None)
            if want <= r.labels.items() and r.deleted_at is None]
    return sorted(keys, key=lambda key: key[0] is Kind.NAMESPACE)


def delete(store, targets: list, force: bool = False, yes: bool = False,
           by: str | None = None) -> Iterator[tuple[Kind, str, str]]:
    """Mark each target (a key, or (kind, name) in ``default``) deleted, one at a time, yielding (kind,
    name, outcome) in target order as each is done, so a failure part-way still reports what was deleted
    before it. A Namespace that holds resources other than targets needs ``yes``: without it nothing
    is deleted and ``Conflict`` says what it holds (``namespace_contents``)."""
    keys = [t if len(t) == 3 else (t[0], scope(t[0], None), t[1]) for t in targets]
    if not yes:
        for kind, _, name in keys:
            if kind is Kind.NAMESPACE and (held := namespace_contents(store, name, besides=keys)):
                raise Conflict.unconfirmed(name, held)
    for kind, namespace, name in keys:
        yield kind, name, store.mark_deleted(kind, name, force=force, namespace=namespace, by=author(by))


SHOWN_NAMES = 5  # names per kind in what a namespace holds; the rest are counted


def namespace_contents(store, name: str, besides=()) -> str:
    """What deleting Namespace ``name`` deletes with it, for people: ``2 jobs (nightly, report), 1 service
    (web)`` (at most ``SHOWN_NAMES`` names per kind); "" when it holds nothing (or does not exist) but
    ``besides`` (keys deleted anyway)."""
    by_kind: dict[str, list[str]] = {}
    for r in store.contents(None, name):
        if (Kind(r["kind"]), name, r["name"]) not in besides:
            by_kind.setdefault(r["kind"], []).append(r["name"])
    parts = []
    for kind, names in by_kind.items():
        shown = ", ".join(names[:SHOWN_NAMES]) + (f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES
                                                 else "")
        parts.append(f"{len(names)} {kind.lower()}{'' if len(names) == 1 else 's'} ({shown})")
    return ", ".join(parts)


# -- schema ----------------------------------------------------------------------------------------


def schema(kind: Kind) -> str:
    """The JSON Schema of a manifest kind, as schemas/KIND.json holds it."""
    from ..spec.schema import render_schema

    return render_schema(kind)
