"""Who a task may run as: each namespace's ``runAs`` held against the users of what goes into it.

Called inside the write transactions that could break the rule: ``resources.apply`` (Jobs and
Services against their namespace's ``runAs``, as it is after the call; a Namespace whose new
``runAs`` would refuse what it holds) and ``revisions.rollback`` (an earlier template put back).
The rule itself is ``spec.namespace.user_refusal``; ``ops.sync`` asks it too, before its transaction.
"""

from __future__ import annotations

import json

from ..errors import Forbidden, combined
from ..kinds import NAMESPACED_KINDS, WORKLOAD_KINDS, Kind, object_ref
from .db import fetch_all


def check_run_as(db, resources: list, where: list[str] | None = None) -> None:
    """Refuse (nothing written) a Job or Service of ``resources`` whose template user its namespace's
    ``runAs`` does not allow, and a Namespace whose new ``runAs`` would not allow the user of a Job or
    Service it holds (one not among ``resources``, which are checked as they come). ``where``: how
    the caller names each resource (``job.yaml: document 2 (Job/nightly)``)."""
    from ..spec.models import user_refusal

    names = {res.namespace for res in resources if res.kind in NAMESPACED_KINDS}
    names |= {res.metadata.name for res in resources if res.kind == Kind.NAMESPACE.value}
    if not names:
        return
    stored = stored_run_as(db, names)
    policy = dict(stored)
    policy.update({res.metadata.name: res.spec.runAs for res in resources if res.kind == Kind.NAMESPACE.value})
    problems = []
    for i, res in enumerate(resources):
        what = where[i] if where else res.ref
        if res.kind in WORKLOAD_KINDS:
            user = res.spec.template.user
            if refusal := user_refusal(policy.get(res.namespace), user, res.namespace):
                problems.append(Forbidden.run_as(what, res.namespace, user, *refusal))
        elif res.kind == Kind.NAMESPACE.value and res.spec.runAs not in (None, stored.get(res.metadata.name)):
            # A new or changed runAs (dropping it allows everyone) may refuse what the namespace holds.
            coming = {r.key for r in resources}
            if refused := _refused_inside(db, res.metadata.name, res.spec.runAs, coming):
                problems.append(Forbidden.run_as_strands(what, res.metadata.name, refused))
    if problems:
        raise combined(problems)


def check_template_user(db, namespace: str, user: str | None, what: str) -> None:
    """Refuse a template about to be written for a resource of ``namespace`` (a rollback's) whose
    ``user`` the namespace's ``runAs`` does not allow."""
    from ..spec.models import user_refusal

    if user is not None and (refusal := user_refusal(stored_run_as(db, {namespace}).get(namespace), user, namespace)):
        raise Forbidden.run_as(what, namespace, user, *refusal)


def stored_run_as(db, names: set[str]) -> dict:
    """Namespace name -> its stored ``runAs`` (a ``RunAs``, or None), for those of ``names`` that exist."""
    from ..spec.models import STORED, RunAs

    marks = ", ".join("?" for _ in names)
    rows = fetch_all(db, f"SELECT name, spec FROM resources WHERE kind='Namespace' AND namespace='' "
                         f"AND name IN ({marks})", sorted(names))
    out = {}
    for r in rows:
        run_as = json.loads(r["spec"]).get("runAs")
        out[r["name"]] = None if run_as is None else RunAs.model_validate(run_as, context=STORED)
    return out


def _refused_inside(db, namespace: str, run_as, coming: set) -> list[tuple[str, str]]:
    """(``job/x``, user) of each Job and Service in ``namespace`` (not being deleted, not in ``coming``)
    whose template user ``run_as`` refuses."""
    from ..spec.models import user_refusal

    rows = fetch_all(db, "SELECT kind, name, spec FROM resources WHERE namespace=? AND kind IN ('Job', 'Service') "
                         "AND deleted_at IS NULL ORDER BY kind, name", [namespace])
    refused = []
    for r in rows:
        if (r["kind"], namespace, r["name"]) in coming:
            continue
        user = json.loads(r["spec"]).get("template", {}).get("user")
        if user_refusal(run_as, user, namespace):
            refused.append((object_ref(r["kind"], "", r["name"]), user))
    return refused
