"""GitOps: keep the store following a directory of manifests, and the policy that decides how.

Called by ``brokerctl sync DIR`` (one shot), ``brokerctl diff`` (a dry run) and the GitOps
watcher (``runtime.watch``, a thread of ``brokerctl controller --watch DIR`` with its own store
connection, so that its commits wake the reconcile loop like any other writer). ``read_dir``
loads every manifest file of the directory separately, so one invalid file holds back only what
it defines. ``sync_items`` runs one sync in one store transaction: ``syncpolicy.decide`` (pure:
the directory's models and the stored rows in, a ``SyncDecision`` out) says what to apply, prune
or hold back and whether a mass prune is refused; the store's primitives carry it out
(``apply_one``, ``claim``, ``delete``, ``record_sync``, ``add_event``). A directory owns what it
created and nothing else: resources applied by hand or by another directory are never touched.

Namespaces: a document's own ``metadata.namespace`` wins; the others go into the namespace the
sync is given (``sync DIR -n N``, ``controller --watch DIR --namespace N``; default ``default``).
A file whose Job or Service goes into a namespace that neither exists nor is defined in the
directory, or does not request the cpus or memory that namespace's quota caps, is held back like an
invalid one, and so is one that breaks a namespace's ``runAs``. The directory may define Namespaces;
one it no longer defines is pruned only when nothing else is left in it (pruning it would delete
what others made).
Resources are written ``Job/name`` in the report, ``team-a/Job/name`` outside ``default``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import NamedTuple

from ..errors import Conflict, ManifestError, UsageError
from ..kinds import (
    DEFAULT_NAMESPACE,
    NAMESPACED_KINDS,
    Kind,
    object_ref,
)
from ..spec import manifests
from ..spec.sources import Source, directory_sources
from .checkout import git_commit, source_of
from .syncpolicy import Key, SyncDecision, add_problem, decide, model_ref
from .tokens import author

log = logging.getLogger("brokerctl.gitops")



@dataclass
class DirState:
    source: str  # the directory, absolute
    items: list = field(default_factory=list)  # (file, model) of every valid file
    held: dict = field(default_factory=dict)  # file -> problem, for files that did not load
    commit: str | None = None


def read_dir(directory: str | Path, namespace: str = DEFAULT_NAMESPACE) -> DirState:
    """Load each manifest file of ``directory`` on its own (see ``dir_state``)."""
    source = source_of(directory)
    return dir_state(source, directory_sources(source), namespace, git_commit(source))


def dir_state(source: str, files: list[Source], namespace: str = DEFAULT_NAMESPACE,
              commit: str | None = None) -> DirState:
    """The directory ``source`` (an absolute path) from its files as read (here, or by a remote client:
    each named by its path under ``source``): each file loaded on its own, a resource defined twice
    holding back the later file. Jobs and Services that name no namespace go into ``namespace``."""
    if not PurePath(source).is_absolute():
        raise UsageError(f"directory {source!r}: a synced directory is named by its absolute path")
    state = DirState(source, commit=commit)
    seen: dict[str, str] = {}
    for file in files:
        name = _name_in(source, file.name)
        if name.endswith(manifests.EDITOR_TEMP):
            continue
        try:
            loaded = manifests.load_sources([file], allow_empty=True,  # a file all commented out is fine
                                            namespace=namespace)
        except ManifestError as exc:
            state.held[name] = "; ".join(line.replace(file.name, name, 1) for line in exc.problems)
            continue
        twice = [f"{model_ref(i.resource)} is also defined in {seen[i.resource.key]}" for i in loaded
                 if i.resource.key in seen]
        if twice:
            state.held[name] = "; ".join(twice)
            continue
        for item in loaded:
            seen[item.resource.key] = name
            state.items.append((name, item.resource))
    return state


def _name_in(source: str, path: str) -> str:
    """A file's name in the directory: its path under ``source``."""
    try:
        return str(PurePath(path).relative_to(source))
    except ValueError:
        raise UsageError(f"{path}: not a file of the directory {source}") from None


def sync(store, directory: str | Path, allow_mass_prune: bool = False, dry_run: bool = False,
         namespace: str = DEFAULT_NAMESPACE, by: str | None = None) -> dict:
    """Read ``directory`` and make the store follow it (``sync_items``); its Jobs and Services that
    name no namespace go into ``namespace``."""
    return sync_state(store, read_dir(directory, namespace), allow_mass_prune, dry_run, by)


def sync_sources(store, directory: str, files: list[dict], commit: str | None, allow_mass_prune: bool = False,
                 namespace: str = DEFAULT_NAMESPACE, by: str | None = None) -> dict:
    """``sync`` of a directory read elsewhere (a remote CLI's: ``directory`` its absolute path there, the
    sync's source; ``files`` as ``spec.sources.directory_sources`` read them there, in their JSON form)."""
    state = dir_state(directory, [Source.from_json(f) for f in files], namespace, commit)
    return sync_state(store, state, allow_mass_prune, by=by)


def sync_state(store, state: DirState, allow_mass_prune: bool = False, dry_run: bool = False,
               by: str | None = None) -> dict:
    return sync_items(store, state.source, state.items, state.held, allow_mass_prune=allow_mass_prune,
                      commit=state.commit, dry_run=dry_run, by=by)


class _Rollback(Exception):
    """Raised inside the sync's transaction to undo it: a dry run writes, to learn the outcomes, then undoes."""


def sync_items(store, source: str, items: list[tuple[str, object]], held: dict[str, str], *,
               allow_mass_prune: bool = False, commit: str | None = None, dry_run: bool = False,
               now: float | None = None, by: str | None = None) -> dict:
    """Make the store follow directory ``source`` in one transaction.

    ``items``: (file, model) for every resource of the directory's valid files; ``held``:
    file -> problem for files that did not validate (what they defined keeps its last good
    state: not changed, not pruned). Resources this directory created and no longer defines
    are pruned (deleted; the controller stops their containers). A sync that would prune more
    than half, or all, of what the directory owns is refused unless ``allow_mass_prune``: it
    changes no resource and records only the refusal. A resource changed by hand since the last
    sync is put back and a DriftCorrected event recorded. With ``dry_run`` nothing is written.
    Returns a report: results per resource, pruned, kept, problems, refused, drift, files, owned.
    ``by``: who syncs (``metadata.createdBy``/``updatedBy``; the watcher's is ``gitops:DIR``).
    """
    now = time.time() if now is None else now
    # Secrets are compared and recorded sealed: neither the spec nor the last-synced copy holds a value.
    items = list(zip([f for f, _ in items], store.seal([m for _, m in items], create=not dry_run)))
    try:
        with store.transaction() as db:
            decision = decide(source, items, held, store.sourced_rows(db), allow_mass_prune)
            report = {"source": source, "results": [], "pruned": [], "kept": decision.kept,
                      "problems": decision.problems, "refused": decision.refused, "drift": [],
                      "files": decision.files, "owned": decision.owned}
            if decision.refused is None:
                _carry_out(store, db, source, decision, now, report, author(by))
            if dry_run:
                raise _Rollback
            store.record_sync(db, source, now, commit, report["files"], report["refused"], report["owned"])
            for e in sync_events(source, report):
                store.add_event(db, e.kind, e.name, e.reason, e.message, e.type, ts=now, namespace=e.namespace)
    except _Rollback:
        pass
    return report


def _carry_out(store, db, source: str, decision: "SyncDecision", now: float, report: dict, by: str) -> None:
    """Apply and prune as decided, inside the sync's transaction; outcomes go into ``report``."""
    for change in decision.changes:
        if change.waiting:
            report["results"].append((change.ref, "waiting: being deleted"))
            continue
        outcome = store.apply_one(db, change.model, now, cause=f"sync {change.file}", by=by)
        store.claim(db, change.kind, change.namespace, change.name, source, change.file, change.wanted)
        if outcome == "configured" and change.drifted:
            outcome = "drift corrected"
            report["drift"].append(change.ref)
        report["results"].append((change.ref, outcome))
    for row in decision.prune:
        try:
            outcome = store.delete(db, Kind(row.kind), row.name, now, namespace=row.namespace, by=by)
        except Conflict as exc:  # e.g. a Node that still runs tasks: reported against its file
            add_problem(report["problems"], row.source_file or source, str(exc))
            continue
        report["pruned"].append((object_ref(*row.key, lower=False), outcome))


class SyncEvent(NamedTuple):
    kind: str
    name: str
    reason: str
    message: str
    type: str = "Normal"
    namespace: str = ""  # of a pruned Job or Service


def sync_events(source: str, report: dict) -> list[SyncEvent]:
    """The events a sync records: its refusal alone, or what it pruned, the drift it put back and
    each problem (held-back files, resources created elsewhere, prunes refused)."""
    if report["refused"]:
        return [SyncEvent("Directory", source, "SyncRefused", report["refused"], "Warning")]
    events = []
    for ref, outcome in report["pruned"]:
        kind, namespace, name = parse_ref(ref)
        events.append(SyncEvent(kind, name, "Pruned", f"{ref} is no longer in {source}; {outcome}",
                                namespace=namespace))
    for ref in report["drift"]:
        kind, namespace, name = parse_ref(ref)
        events.append(SyncEvent(kind, name, "DriftCorrected",
                                f"{ref} was changed outside {source}; the directory's version is back", "Warning",
                                namespace))
    for file, problem in sorted(report["problems"].items()):
        text = problem if problem.startswith(file) else f"{file}: {problem}"
        events.append(SyncEvent("Directory", source, "InvalidManifest", text, "Warning"))
    return events


def summary(report: dict) -> list[str]:
    """Lines for people: what changed, what was pruned, what was held back and why."""
    def low(ref: str) -> str:
        return object_ref(*parse_ref(ref))

    lines = [f"{low(ref)} {outcome}" for ref, outcome in report["results"] if outcome != "unchanged"]
    lines += [f"{low(ref)} pruned ({outcome})" for ref, outcome in report["pruned"]]
    lines += [f"{low(ref)} kept: its file is invalid" for ref in report["kept"]]
    lines += [f"invalid: {problem if problem.startswith(file) else f'{file}: {problem}'}"
              for file, problem in sorted(report["problems"].items())]
    if report["refused"]:
        lines.append(f"refused: {report['refused']}")
    return lines


def status(store, source: str | None = None) -> list[dict]:
    """What the last sync of each directory (or of ``source``) did, as ``views.sync_status_object``s."""
    from .. import views
    from ..errors import BrokerError

    rows = store.sync_status(source)
    if not rows:
        raise BrokerError("no directory has been synced into this store; run `brokerctl sync DIR` or "
                          "`brokerctl controller --watch DIR`")
    return [views.sync_status_object(r, len([o for o in store.owned_by(r["source"]) if o.deleted_at is None]))
            for r in rows]


def parse_ref(ref: str) -> Key:
    """A report's ``Job/x`` or ``team-a/Job/x`` back into (kind, namespace, name) ('' when none is
    written: ``default`` for a Job or Service, as ``object_ref`` leaves it out)."""
    parts = ref.split("/")
    if len(parts) == 3:
        return parts[1], parts[0], parts[2]
    kind, name = parts
    return kind, DEFAULT_NAMESPACE if kind in NAMESPACED_KINDS else "", name


def watch_step(source: str, allow_mass_prune: bool = False, namespace: str = DEFAULT_NAMESPACE):
    """What the GitOps watcher runs on each change: sync ``source`` and say what happened, as
    (lines for the log, whether something needs a person: an invalid file or a refused prune)."""
    def step(store) -> tuple[list[str], bool]:
        report = sync(store, source, allow_mass_prune, namespace=namespace, by=f"gitops:{source}")
        return summary(report), bool(report["problems"] or report["refused"])

    return step
