"""Revisions: each template a Service has had, so that a rollout can be undone.

``RevisionStore`` is mixed into ``Store`` (see the package): ``revisions`` (``rollout history``),
``undo`` (``rollout undo``) and ``rollback`` (also the controller's automatic rollback, inside its
transaction). ``record_revision`` is called by ``resources`` whenever a Service's template is
written; ``live_service`` reads the Service that ``scale`` and ``rollback`` change. A Service is
named by its namespace and name (``namespace`` None: ``default``).
"""

from __future__ import annotations

import json
import time

from ..errors import Conflict, NotFound
from ..kinds import DEFAULT_NAMESPACE
from .db import dump, fetch_all, fetch_one, insert
from .runas import check_template_user

_SERVICE = "kind='Service' AND namespace=? AND name=?"


class RevisionStore:
    """Reads and writes of the ``revisions`` table (a mixin of ``Store``)."""

    def revisions(self, name: str, namespace: str | None = None) -> list[dict]:
        """A Service's template revisions, oldest first: revision, hash, template, created_at, cause."""
        namespace = namespace or DEFAULT_NAMESPACE
        rows = self._rows(
            f"SELECT revision, hash, template, created_at, cause FROM revisions WHERE {_SERVICE} "
            f"AND uid=(SELECT uid FROM resources WHERE {_SERVICE}) ORDER BY revision",
            [namespace, name, namespace, name],
        )
        for r in rows:
            r["template"] = json.loads(r["template"])
        return rows

    def undo(self, name: str, to: int | None = None, now: float | None = None, namespace: str | None = None,
             by: str = "") -> dict:
        """``rollout undo``: the previous revision (or ``to``) becomes the desired template again."""
        now = time.time() if now is None else now
        with self.transaction() as db:
            return self.rollback(db, name, to, now, f"rollout undo{f' --to-revision {to}' if to else ''}", namespace,
                                 by)

    def rollback(self, db, name: str, to: int | str | None, now: float, cause: str,
                 namespace: str | None = None, by: str = "") -> dict:
        """Within the caller's transaction: put an earlier revision's template back into the spec.

        ``to``: a revision number, a template hash, or None for the revision before the current
        one; ``by``: who asks (``updatedBy``). Returns that revision; raises NotFound/Conflict naming
        what exists, Forbidden when the namespace's ``runAs`` no longer allows that template's user.
        """
        namespace = namespace or DEFAULT_NAMESPACE
        service = live_service(db, name, namespace)
        spec = service["spec"]
        revs = fetch_all(db, "SELECT revision, hash, template FROM revisions WHERE uid=? ORDER BY revision",
                         [service["uid"]])
        target = _target(name, revs, to, current=_spec_hash(spec))
        template = json.loads(target["template"])
        check_template_user(db, namespace, template["template"].get("user"), f"Service/{name}")
        spec.update({"healthCheck": None, **template})
        db.execute(f"UPDATE resources SET spec=?, generation=generation+1, updated_at=?, updated_by=? WHERE {_SERVICE}",
                   [dump(spec), now, by, namespace, name])
        return record_revision(db, service["uid"], name, spec, now, cause, namespace)


def _target(name: str, revs: list[dict], to: int | str | None, current: str) -> dict:
    """The revision ``to`` names (number or hash), or the newest one other than ``current``."""
    if to is None:
        earlier = [r for r in revs if r["hash"] != current]
        if not earlier:
            raise Conflict.no_earlier_revision(name)
        return earlier[-1]
    found = [r for r in revs if r["revision"] == to or r["hash"] == to]
    if not found:
        have = ", ".join(str(r["revision"]) for r in revs) or "none"
        raise NotFound(f"Service '{name}' has no revision {to}; it has: {have}")
    return found[0]


def live_service(db, name: str, namespace: str = DEFAULT_NAMESPACE) -> dict:
    """The Service's ``uid`` and ``spec`` (parsed), to be changed: NotFound if there is none,
    Conflict if it is being deleted."""
    row = fetch_one(db, f"SELECT uid, spec, deleted_at FROM resources WHERE {_SERVICE}", [namespace, name])
    if row is None:
        raise NotFound.resource("Service", name, namespace)
    if row["deleted_at"] is not None:
        where = "" if namespace == DEFAULT_NAMESPACE else f" in namespace '{namespace}'"
        raise Conflict(f"Service '{name}' is being deleted{where}")
    return {"uid": row["uid"], "spec": json.loads(row["spec"])}


def record_revision(db, uid: str, name: str, spec: dict, now: float, cause: str,
                    namespace: str = DEFAULT_NAMESPACE) -> dict:
    """The spec's template becomes the newest revision (an old template seen again moves to the top)."""
    digest = _spec_hash(spec)
    top = fetch_one(db, "SELECT max(revision) AS top FROM revisions WHERE uid=?", [uid])["top"] or 0
    row = fetch_one(db, "SELECT revision FROM revisions WHERE uid=? AND hash=?", [uid, digest])
    template = {k: spec[k] for k in ("template", "healthCheck") if spec.get(k) is not None}
    if row is None:
        insert(db, "revisions", {"uid": uid, "kind": "Service", "namespace": namespace, "name": name,
                                 "revision": top + 1, "hash": digest, "template": dump(template), "created_at": now,
                                 "cause": cause})
        return {"revision": top + 1, "hash": digest}
    if row["revision"] != top:
        db.execute("UPDATE revisions SET revision=?, created_at=?, cause=? WHERE uid=? AND hash=?",
                   [top + 1, now, cause, uid, digest])
        return {"revision": top + 1, "hash": digest}
    return {"revision": row["revision"], "hash": digest}


def delete_revisions_of(db, kind: str, namespace: str, name: str) -> None:
    db.execute("DELETE FROM revisions WHERE kind=? AND namespace=? AND name=?", [kind, namespace, name])


def _spec_hash(spec: dict) -> str:
    from ..spec.models import STORED, ServiceSpec, template_hash  # only writes of Services need the models

    return template_hash(ServiceSpec.model_validate(spec, context=STORED))
