"""The GitOps policy, pure: from a directory's models (and the files held back) and the rows the store
holds for it, a ``SyncDecision``: what to apply, prune or hold back, and whether a mass prune is refused.

Called by ``ops.sync`` (``sync_items`` carries the decision out in one store transaction); unit-tested
on its own (tests/test_sync_policy.py). A directory owns what it created and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import Conflict, Forbidden, NotFound
from ..kinds import (
    DEFAULT_NAMESPACE,
    NAMESPACED_KINDS,
    WORKLOAD_KINDS,
    Kind,
    object_ref,
)
from ..spec.models import STORED, RunAs, user_refusal
from ..store.resources import template_changes
from ..store.syncs import SourcedRow

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


def model_ref(model) -> str:
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
            add_problem(held, file, str(Conflict.namespace_being_deleted(ns, model_ref(model))))
        elif ns not in existing and ns not in defined:
            add_problem(held, file, str(NotFound.namespace(ns, model_ref(model))))
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
            add_problem(held, file, str(Conflict.quota_needs_request(model.namespace, field_name, cap, model_ref(model))))
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
                    add_problem(newly, file, str(Forbidden.run_as(model_ref(model), model.namespace, user, *refusal)))
            elif model.kind == Kind.NAMESPACE.value and model.spec.runAs not in (None, stored.get(model.metadata.name)):
                name = model.metadata.name
                if name not in inside:
                    inside[name] = _live_workloads_in(rows, name)
                refused = [(object_ref(r.kind, "", r.name), r.spec.get("template", {}).get("user"))
                           for r in inside[name] if r.key not in coming]
                refused = [(ref, user) for ref, user in refused if user_refusal(model.spec.runAs, user, name)]
                if refused:
                    add_problem(newly, file, str(Forbidden.run_as_strands(model_ref(model), name, refused)))
        if not newly:
            return held
        for file, problem in newly.items():
            add_problem(held, file, problem)


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
            add_problem(problems, r.source_file or source,
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
            add_problem(held, file, str(Conflict.immutable_template(model.metadata.name, changed)))
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
            problem = (f"{model_ref(model)} already exists, created by {owner}; this directory "
                       "only manages what it created: delete that one or rename this one")
            entry.update(state="invalid", message="; ".join(filter(None, [entry["message"], problem])))
            problems[file] = entry["message"]
            continue
        entry["resources"].append(model_ref(model))
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


def add_problem(problems: dict[str, str], file: str, problem: str) -> None:
    problems[file] = "; ".join(filter(None, [problems.get(file), problem]))
