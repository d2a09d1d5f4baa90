"""GitOps: keep the store following a directory of manifests, and the policy that decides how.

Called by ``brokerctl sync DIR`` (one shot), ``brokerctl diff`` (a dry run) and the GitOps
watcher (``runtime.watch``, a thread of ``brokerctl controller --watch DIR`` with its own store
connection, so that its commits wake the reconcile loop like any other writer). ``read_dir``
loads every manifest file of the directory separately, so one invalid file holds back only what
it defines. ``sync_items`` runs one sync in one store transaction: ``decide`` (pure: the
directory's models and the stored rows in, a ``SyncDecision`` out) says what to apply, prune or
hold back and whether a mass prune is refused; the store's primitives carry it out
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

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import NamedTuple

from ..errors import Conflict, Forbidden, ManifestError, NotFound, UsageError
from ..kinds import DEFAULT_NAMESPACE, NAMESPACED_KINDS, WORKLOAD_KINDS, Kind, object_ref
from ..spec import manifests
from ..spec.models import STORED, RunAs, user_refusal
from ..spec.sources import Source, directory_sources
from ..store.resources import template_changes
from ..store.syncs import SourcedRow
from .checkout import git_commit, source_of
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
        twice = [f"{_ref(i.resource)} is also defined in {seen[i.resource.key]}" for i in loaded
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
            _add_problem(report["problems"], row.source_file or source, str(exc))
            continue
        report["pruned"].append((object_ref(*row.key, lower=False), outcome))


# -- the policy: pure, from the directory's models and the stored rows ------------------------------


Key = tuple[str, str, str]  # (kind, namespace, name), the kind by value as the store keeps it


@dataclass(frozen=True)
class Change:
    """A resource the directory defines, to be applied from ``file``."""

    kind: str
    namespace: str
    name: str
    file: str
    model: object
    wanted: dict  # {"spec", "labels"} as the directory has them (and as they are recorded when synced)
    drifted: bool  # changed by hand since the last sync: stored differs from what was synced, which is wanted
    waiting: bool  # still being deleted: applied once it is gone

    @property
    def ref(self) -> str:
        return object_ref(self.kind, self.namespace, self.name, lower=False)


@dataclass
class SyncDecision:
    problems: dict[str, str]  # file -> why it (or one of its resources) is held back
    files: dict[str, dict]  # file -> {"state": ok|invalid, "message", "resources"}, as `sync status` shows them
    changes: list[Change]  # Namespaces first, then by kind, namespace and name
    prune: list[SourcedRow]  # what the directory owns and no longer defines
    kept: list[str]  # refs owned and no longer defined whose file is held back: kept as they are
    owned: int  # how many resources the directory owns (not being deleted)
    refused: str | None  # why the sync is refused (a mass prune), or None


def decide(source: str, items: list[tuple[str, object]], held: dict[str, str], rows: list[SourcedRow],
           allow_mass_prune: bool = False) -> SyncDecision:
    """What a sync of ``source`` does, given (file, model) of its valid files, ``held`` (file ->
    problem) and the stored rows (``store.SourcedRow``: every resource with its source columns).

    A file that would change the template of a Job the directory owns is held back whole, like an
    invalid file, and so is one whose Job or Service goes into a namespace that neither exists nor is
    defined by the directory (or is being deleted), or runs as a user its namespace's ``runAs`` refuses,
    and one whose Namespace's new ``runAs`` would refuse a user of what stays in it; a resource that
    exists but was not created by this directory is a problem of its file. What the directory owns and
    no longer defines is pruned, unless its file is held back, or it is a Namespace with something else
    still in it.
    """
    stored = {r.key: r for r in rows}
    held = _hold_template_changes(source, items, held, stored)
    held = _hold_missing_namespaces(items, held, rows)
    held = _hold_unrequested(items, held, rows)
    held = _hold_run_as_refusals(items, held, rows)
    problems = dict(held)
    files = {f: {"state": "invalid", "message": m, "resources": []} for f, m in held.items()}
    desired = _claim_files(source, [(f, m) for f, m in items if f not in held], stored, files, problems)
    live = [k for k, r in stored.items() if r.source == source and r.deleted_at is None]
    gone = [k for k in live if k not in desired]
    prune = _keep_namespaces_in_use([stored[k] for k in gone if stored[k].source_file not in held], rows, desired,
                                    source, problems)
    return SyncDecision(
        problems=problems, files=files, prune=prune, owned=len(live),
        # Namespaces first, then by kind, namespace and name: a Namespace is there before what goes into it.
        changes=[_change(key, *desired[key], stored.get(key))
                 for key in sorted(desired, key=lambda k: (k[0] != Kind.NAMESPACE.value, k))],
        kept=[object_ref(*k, lower=False) for k in gone if stored[k].source_file in held],
        refused=None if allow_mass_prune else _mass_prune_refusal(source, prune, len(live)),
    )


def _key(model) -> Key:
    return model.kind, model.namespace, model.metadata.name


def _ref(model) -> str:
    """``Job/x``, or ``team-a/Job/x`` outside ``default``: how the report names a resource."""
    return object_ref(*_key(model), lower=False)


def _hold_missing_namespaces(items, held: dict[str, str], rows: list[SourcedRow]) -> dict[str, str]:
    """``held`` plus the files with a Job or Service going into a namespace that neither exists in the
    store nor is defined by a file of the directory that is not held back, or that is being deleted."""
    existing = {DEFAULT_NAMESPACE: None}  # always there (the store makes it and refuses to delete it)
    existing.update({r.name: r.deleted_at for r in rows if r.kind == Kind.NAMESPACE.value})
    defined = {m.metadata.name for f, m in items if m.kind == Kind.NAMESPACE.value and f not in held}
    held = dict(held)
    for file, model in items:
        if file in held or model.kind not in NAMESPACED_KINDS:
            continue
        ns = model.namespace
        if existing.get(ns) is not None:
            _add_problem(held, file, str(Conflict.namespace_being_deleted(ns, _ref(model))))
        elif ns not in existing and ns not in defined:
            _add_problem(held, file, str(NotFound.namespace(ns, _ref(model))))
    return held


def _hold_unrequested(items, held: dict[str, str], rows: list[SourcedRow]) -> dict[str, str]:
    """``held`` plus the files with a Job or Service that does not request what its namespace's quota caps
    (``namespace.unrequested``): the quota the directory defines for it, else the stored one."""
    from ..spec.namespace import unrequested

    quotas = {r.name: r.spec.get("quota") for r in rows if r.kind == Kind.NAMESPACE.value}
    quotas.update({m.metadata.name: m.spec.quota and m.spec.quota.model_dump(mode="json") for f, m in items
                   if m.kind == Kind.NAMESPACE.value and f not in held})
    held = dict(held)
    for file, model in items:
        if file in held or model.kind not in WORKLOAD_KINDS:
            continue
        for field_name, cap in unrequested(quotas.get(model.namespace), model.spec.template.resources):
            _add_problem(held, file, str(Conflict.quota_needs_request(model.namespace, field_name, cap, _ref(model))))
    return held


def _hold_run_as_refusals(items, held: dict[str, str], rows: list[SourcedRow]) -> dict[str, str]:
    """``held`` plus the files with a Job or Service whose template user its namespace's ``runAs`` (as
    the sync leaves it) refuses, and the files with a Namespace whose new ``runAs`` would refuse the
    user of a Job or Service that stays in it. Holding a file back may hold back a Namespace the
    others were checked against, so this repeats until nothing more is held."""
    stored = {r.name: r.spec.get("runAs") for r in rows if r.kind == Kind.NAMESPACE.value}
    stored = {name: None if v is None else RunAs.model_validate(v, context=STORED) for name, v in stored.items()}
    held = dict(held)
    inside: dict[str, list[SourcedRow]] = {}  # the Jobs and Services of a namespace whose runAs changes
    while True:
        applied = [(f, m) for f, m in items if f not in held]
        coming = {_key(m): m for _, m in applied}
        policy = {**stored, **{m.metadata.name: m.spec.runAs for _, m in applied if m.kind == Kind.NAMESPACE.value}}
        newly: dict[str, str] = {}
        for file, model in applied:
            if model.kind in WORKLOAD_KINDS:
                user = model.spec.template.user
                if refusal := user_refusal(policy.get(model.namespace), user, model.namespace):
                    _add_problem(newly, file, str(Forbidden.run_as(_ref(model), model.namespace, user, *refusal)))
            elif model.kind == Kind.NAMESPACE.value and model.spec.runAs not in (None, stored.get(model.metadata.name)):
                name = model.metadata.name
                if name not in inside:
                    inside[name] = _live_workloads_in(rows, name)
                refused = [(object_ref(r.kind, "", r.name), r.spec.get("template", {}).get("user"))
                           for r in inside[name] if r.key not in coming]
                refused = [(ref, user) for ref, user in refused if user_refusal(model.spec.runAs, user, name)]
                if refused:
                    _add_problem(newly, file, str(Forbidden.run_as_strands(_ref(model), name, refused)))
        if not newly:
            return held
        for file, problem in newly.items():
            _add_problem(held, file, problem)


def _live_workloads_in(rows: list[SourcedRow], namespace: str) -> list[SourcedRow]:
    return [r for r in rows if r.kind in WORKLOAD_KINDS and r.namespace == namespace and r.deleted_at is None]


def _keep_namespaces_in_use(prune: list[SourcedRow], rows: list[SourcedRow], desired: dict, source: str,
                            problems: dict[str, str]) -> list[SourcedRow]:
    """What to prune, Namespaces last (pruning one deletes what is in it), without a Namespace that
    still holds something this sync neither prunes nor deletes: that is a problem of its file."""
    pruned = {r.key for r in prune}
    staying = {r.key for r in rows if r.deleted_at is None and r.key not in pruned} | set(desired)
    inside: dict[str, list[str]] = {}
    for kind, namespace, name in sorted(staying):
        if kind in NAMESPACED_KINDS:
            inside.setdefault(namespace, []).append(object_ref(kind, namespace, name))
    out = []
    for r in sorted(prune, key=lambda r: r.kind == Kind.NAMESPACE.value):
        if r.kind == Kind.NAMESPACE.value and inside.get(r.name):
            held = inside[r.name]
            _add_problem(problems, r.source_file or source,
                         f"Namespace/{r.name} is no longer in {source} but still holds {', '.join(held[:5])}"
                         f"{', ...' if len(held) > 5 else ''}; not pruned: delete those first, or the namespace "
                         f"with everything in it (`brokerctl delete namespace {r.name} --yes`)")
            continue
        out.append(r)
    return out


def _hold_template_changes(source: str, items, held: dict[str, str],
                           stored: dict[tuple[str, str], SourcedRow]) -> dict[str, str]:
    """``held`` plus the files that change the template of a Job this directory owns."""
    held = dict(held)
    for file, model in items:
        row = stored.get(_key(model))
        if (model.kind == Kind.JOB.value and row is not None and row.source == source and row.deleted_at is None
                and (changed := template_changes(row.spec, model.spec.model_dump(mode="json")))):
            _add_problem(held, file, str(Conflict.immutable_template(model.metadata.name, changed)))
    return held


def _claim_files(source: str, items, stored: dict[tuple[str, str], SourcedRow], files: dict[str, dict],
                 problems: dict[str, str]) -> dict:
    """(kind, name) -> (file, model) of what the directory may manage; each file's entry in ``files``
    lists its resources, or says which of them exist already, created elsewhere (also a problem)."""
    desired = {}
    for file, model in items:
        entry = files.setdefault(file, {"state": "ok", "message": "", "resources": []})
        key = _key(model)
        row = stored.get(key)
        if row is not None and row.source != source:
            owner = f"directory {row.source}" if row.source else "hand (brokerctl apply)"
            problem = (f"{_ref(model)} already exists, created by {owner}; this directory "
                       "only manages what it created: delete that one or rename this one")
            entry.update(state="invalid", message="; ".join(filter(None, [entry["message"], problem])))
            problems[file] = entry["message"]
            continue
        entry["resources"].append(_ref(model))
        desired[key] = (file, model)
    return desired


def _change(key: Key, file: str, model, row: SourcedRow | None) -> Change:
    wanted = {"spec": model.spec.model_dump(mode="json"), "labels": dict(model.metadata.labels)}
    drifted = row is not None and row.synced == wanted and {"spec": row.spec, "labels": row.labels} != wanted
    return Change(*key, file, model, wanted, drifted, waiting=row is not None and row.deleted_at is not None)


def _mass_prune_refusal(source: str, prune: list[SourcedRow], live: int) -> str | None:
    """Pruning all, or more than half, of what a directory owns looks like a bad checkout."""
    if not prune or (len(prune) != live and 2 * len(prune) <= live):
        return None
    names = ", ".join(object_ref(*r.key, lower=False) for r in prune[:5])
    return (f"sync of {source} would prune {len(prune)} of the {live} resources it owns "
            f"({names}{', ...' if len(prune) > 5 else ''}); refused in case of a bad checkout. "
            "Restore the files, or pass --allow-mass-prune if this is intended")


def _add_problem(problems: dict[str, str], file: str, problem: str) -> None:
    problems[file] = "; ".join(filter(None, [problems.get(file), problem]))


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
