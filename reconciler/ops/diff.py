"""`diff`: what `apply -f` (or `sync DIR`, for a directory) would change in the store, nothing written.

Called by ``brokerctl diff`` (``cli/resources.py``) and the API's diff route (``api/resources.py``).
Files are read by ``read_diff_inputs`` before a store is opened (as ``resources.read_manifests``);
a directory is compared as a sync of it would apply it, prunes included. Secrets are compared by
their keys' sizes and digests, never their values.
"""

from __future__ import annotations

from typing import NamedTuple, TextIO

from .. import views
from ..errors import NotFound, UsageError
from ..kinds import DEFAULT_NAMESPACE, Kind, object_ref
from .resources import read_manifest_text, read_manifests


class DiffInput(NamedTuple):
    directory: object | None  # sync.DirState of a directory (its deletions are prunes), None for files
    models: list  # the validated resources to compare


class Change(NamedTuple):
    ref: str  # kind/name, as `apply` prints it
    outcome: str  # created | configured | pruned
    fields: tuple[str, ...] = ()  # configured: "+ path: new", "- path: old", "~ path: old -> new"


def read_diff_inputs(files: list[str], stdin: TextIO | None = None,
                     namespace: str = DEFAULT_NAMESPACE) -> list[DiffInput]:
    """Read every input before a store is opened; a directory loads as `sync` would load it (Jobs and
    Services without a namespace go into ``namespace``)."""
    from pathlib import Path

    from . import sync

    inputs = []
    for given in files:
        if given != "-" and Path(given).is_dir():
            state = sync.read_dir(given, namespace)
            if state.held:
                raise UsageError("\n".join(f"{state.source}/{p}" if p.startswith(f) else f"{state.source}/{f}: {p}"
                                            for f, p in sorted(state.held.items())))
            inputs.append(DiffInput(state, [m for _, m in state.items]))
        else:
            inputs.append(DiffInput(None, [i.resource for i in read_manifests([given], stdin, namespace)]))
    return inputs


def read_diff_text(text: str, source: str = "<request>", namespace: str = DEFAULT_NAMESPACE) -> list[DiffInput]:
    """``read_diff_inputs`` of text a front end received: a set of manifests (no directory, so no prunes)."""
    return [DiffInput(None, [i.resource for i in read_manifest_text(text, source, namespace)])]


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
    from .sync import parse_ref, sync_items

    report = sync_items(store, state.source, state.items, {}, dry_run=True, allow_mass_prune=True)
    if report["problems"]:
        raise UsageError("\n".join(f"{f}: {p}" for f, p in sorted(report["problems"].items())))
    return [Change(object_ref(*parse_ref(ref)), "pruned") for ref, _ in report["pruned"]]


def _diff_one(store, model) -> Change | None:
    ref = object_ref(*model.key)
    try:
        r = store.resource(Kind(model.kind), model.metadata.name, namespace=model.namespace)
    except NotFound:
        return Change(ref, "created")
    if model.kind == Kind.SECRET.value:  # compared sealed: sizes and keyed digests, never a value
        (model,) = store.seal([model], create=False)
        changes = field_changes({"metadata.labels": r.labels}, {"metadata.labels": dict(model.metadata.labels)})
        changes += secret_changes(r.spec, model.spec.model_dump(mode="json"))
    else:
        new = {"metadata.labels": dict(model.metadata.labels), "spec": model.spec.model_dump(mode="json")}
        changes = field_changes({"metadata.labels": r.labels, "spec": r.spec}, new)
    return Change(ref, "configured", tuple(changes)) if changes else None


def secret_changes(old: dict, new: dict) -> list[str]:
    """What changes between two sealed Secret specs, each value shown as its size: ``~ spec.data.password:
    <8 bytes> -> <9 bytes>`` (a value of the same size that changed says so)."""
    out = field_changes({k: v for k, v in old.items() if k != "data"}, {k: v for k, v in new.items() if k != "data"},
                        "spec")
    before, after = old.get("data", {}), new.get("data", {})
    for key in sorted(set(before) | set(after)):
        path = f"spec.data.{key}"
        if key not in before:
            out.append(f"+ {path}: {views.secret_size(after[key])}")
        elif key not in after:
            out.append(f"- {path}: {views.secret_size(before[key])}")
        elif before[key] != after[key]:
            out.append(f"~ {path}: {views.secret_size(before[key])} -> {views.secret_size(after[key])}"
                       + (" (another value)" if before[key]["bytes"] == after[key]["bytes"] else ""))
    return sorted(out, key=lambda line: line[2:])


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
