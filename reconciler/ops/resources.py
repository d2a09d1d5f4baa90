"""The resource verbs: apply, get (resources, tasks, events), describe, delete, diff, and a kind's schema.

Called by the CLI's resource commands (``cli/resources.py``, ``cli/controller.py`` for ``schema``)
and meant for the HTTP API's routes: each takes an open store and plain values and returns data,
the stable objects of ``views`` where a front end shows them as they are. Manifests are read by
``read_manifests`` before a store is opened, so bad input never creates one.

The result types are NamedTuples rather than dataclasses: `get` imports this module on every call,
and defining a frozen dataclass costs about 0.6 ms of start-up, a NamedTuple a tenth of that.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, NamedTuple, TextIO

from .. import views
from ..errors import NotFound, UsageError
from ..kinds import Kind, TaskPhase
from ..records import ResourceRecord, TaskRecord
from .refs import parse_kind


def read_manifests(files: list[str], stdin: TextIO | None = None) -> list:
    """Load and validate every document of ``files`` (``-``: ``stdin``) as one set: a list of
    ``manifests.Loaded``, or a ``ManifestError`` naming file, document, line and field."""
    from ..spec import manifests

    return manifests.load_paths(files, stdin=stdin)


# -- apply -----------------------------------------------------------------------------------------


class Applied(NamedTuple):
    results: list[tuple[str, str]]  # (kind/name, created | configured | unchanged), in manifest order
    warnings: list[str]  # what was applied but cannot run as it stands (see ``unplaceable``)
    jobs: list[str]  # names of the Jobs applied, for a caller that waits for them


def apply(store, loaded: list) -> Applied:
    """Write every loaded resource in one transaction (all or none)."""
    resources = [item.resource for item in loaded]
    results = store.apply(resources)
    return Applied(results, unplaceable(store, resources),
                   [r.metadata.name for r in resources if r.kind == Kind.JOB.value])


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


def get_resources(store, kind: Kind, name: str | None = None, selector: dict[str, str] | None = None) -> list[dict]:
    """The resources of ``kind`` (or the one named) whose labels include ``selector``, as view objects."""
    items = [store.resource(kind, name)] if name else store.resources(kind)
    items = [r for r in items if (selector or {}).items() <= r.labels.items()]
    if kind is Kind.NODE:
        return _node_objects(store, items)
    return [views.resource_object(r) for r in items]


def _node_objects(store, nodes: list[ResourceRecord]) -> list[dict]:
    """Nodes with their slots in use, which needs each active task's execution type."""
    tasks = store.tasks(active_only=True)
    types = {r.ref: r.spec.get("executionType", "default") for r in store.resources() if r.kind is not Kind.NODE}
    return [views.resource_object(r, views.node_used(r.name, tasks, types)) for r in nodes]


def get_tasks(store, task_id: str | None = None, selector: dict[str, str] | None = None) -> list[TaskRecord]:
    """Every task (or the one named) whose labels include ``selector``, oldest first."""
    tasks = [store.task(task_id)] if task_id else store.tasks()
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


def get_events(store, ref: tuple[Kind, str] | None = None, limit: int = 0) -> Events:
    """The last ``limit`` events (0: all), only those of ``ref`` (kind, name) when given."""
    kind, name = (ref[0].value, ref[1]) if ref else (None, None)
    rows = store.events(kind, name, limit=limit + 1 if limit else None)  # one more: are there older ones?
    older = bool(limit) and len(rows) > limit
    return Events(rows[1:] if older else rows, older)


# -- describe --------------------------------------------------------------------------------------


class Description(NamedTuple):
    record: ResourceRecord
    object: dict  # views.resource_object of the record
    tasks: list[TaskRecord]  # a Node's active tasks; a Job's or Service's tasks, history included
    events: list[dict]  # its last 20 events, oldest first

    @property
    def pending(self) -> list[TaskRecord]:
        """Tasks waiting for a node, with the scheduler's reason."""
        return [t for t in self.tasks if t.phase is TaskPhase.PENDING and t.message]


def describe(store, kind: Kind, name: str) -> Description:
    r = store.resource(kind, name)
    if kind is Kind.NODE:
        tasks = [t for t in store.tasks(active_only=True) if t.node == name]
    else:
        tasks = store.tasks(owner=(kind, name))
    return Description(r, views.resource_object(r), tasks, store.events(kind.value, name, limit=20))


# -- delete ----------------------------------------------------------------------------------------


def delete_targets(kind: str | None, name: str | None, files: list[str],
                   stdin: TextIO | None = None) -> list[tuple[Kind, str]]:
    """What `delete` names: the resources ``files`` define, else KIND NAME."""
    if files:
        return [(parse_kind(i.resource.kind), i.resource.metadata.name) for i in read_manifests(files, stdin)]
    if kind and name:
        return [(parse_kind(kind), name)]
    raise UsageError("name what to delete: `brokerctl delete job NAME` or `brokerctl delete -f FILE`")


def delete(store, targets: list[tuple[Kind, str]], force: bool = False) -> Iterator[tuple[Kind, str, str]]:
    """Mark each target deleted, one at a time, yielding (kind, name, outcome) as each is done, so a
    failure part-way still reports what was deleted before it."""
    for kind, name in targets:
        yield kind, name, store.mark_deleted(kind, name, force=force)


# -- diff ------------------------------------------------------------------------------------------


class DiffInput(NamedTuple):
    directory: object | None  # sync.DirState of a directory (its deletions are prunes), None for files
    models: list  # the validated resources to compare


class Change(NamedTuple):
    ref: str  # kind/name, as `apply` prints it
    outcome: str  # created | configured | pruned
    fields: tuple[str, ...] = ()  # configured: "+ path: new", "- path: old", "~ path: old -> new"


def read_diff_inputs(files: list[str], stdin: TextIO | None = None) -> list[DiffInput]:
    """Read every input before a store is opened; a directory loads as `sync` would load it."""
    from pathlib import Path

    from . import sync

    inputs = []
    for given in files:
        if given != "-" and Path(given).is_dir():
            state = sync.read_dir(given)
            if state.held:
                raise UsageError("\n".join(f"{state.source}/{p}" if p.startswith(f) else f"{state.source}/{f}: {p}"
                                            for f, p in sorted(state.held.items())))
            inputs.append(DiffInput(state, [m for _, m in state.items]))
        else:
            inputs.append(DiffInput(None, [i.resource for i in read_manifests([given], stdin)]))
    return inputs


def diff(store, inputs: list[DiffInput]) -> list[Change]:
    """What `apply -f` (for a directory, `sync`) would change; nothing is written."""
    changes: list[Change] = []
    for given in inputs:
        if given.directory is not None:
            changes += _prunes(store, given.directory)
        for model in given.models:
            change = _diff_one(store, model)
            if change is not None:
                changes.append(change)
    return changes


def _prunes(store, state) -> list[Change]:
    from .sync import sync_items

    report = sync_items(store, state.source, state.items, {}, dry_run=True, allow_mass_prune=True)
    if report["problems"]:
        raise UsageError("\n".join(f"{f}: {p}" for f, p in sorted(report["problems"].items())))
    return [Change(f"{ref.split('/')[0].lower()}/{ref.split('/', 1)[1]}", "pruned") for ref, _ in report["pruned"]]


def _diff_one(store, model) -> Change | None:
    ref = f"{model.kind.lower()}/{model.metadata.name}"
    new = {"metadata.labels": dict(model.metadata.labels), "spec": model.spec.model_dump(mode="json")}
    try:
        r = store.resource(Kind(model.kind), model.metadata.name)
    except NotFound:
        return Change(ref, "created")
    changes = field_changes({"metadata.labels": r.labels, "spec": r.spec}, new)
    return Change(ref, "configured", tuple(changes)) if changes else None


def field_changes(old, new, path: str = "") -> list[str]:
    """Leaf differences between two JSON values, keys sorted: ``+ a.b: 1`` (added), ``- a.b: 1``
    (removed), ``~ a.b: 1 -> 2`` (changed). Lists compare whole."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in old:
                out.append(f"+ {sub}: {new[key]!r}")
            elif key not in new:
                out.append(f"- {sub}: {old[key]!r}")
            else:
                out += field_changes(old[key], new[key], sub)
        return out
    return [] if old == new else [f"~ {path}: {old!r} -> {new!r}"]


# -- schema ----------------------------------------------------------------------------------------


def schema(kind: Kind) -> str:
    """The JSON Schema of a manifest kind, as schemas/KIND.json holds it."""
    from ..spec.schema import render_schema

    return render_schema(kind)
