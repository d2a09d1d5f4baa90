"""Resources: the Nodes, Namespaces, Jobs, Services and Secrets as applied, and the status the controller writes.

``ResourceStore`` is mixed into ``Store`` (see the package): ``apply`` (all or none), ``resource``
and ``resources`` (records), ``mark_deleted`` and its primitive ``delete``, ``purge``, ``retry_job``,
``cordon`` (Nodes), ``scale`` (Services) and ``set_status``. Called by the CLI, the controller
(statuses, purges), act and ``ops.sync`` (``apply_one`` and ``delete`` inside its transaction).
A Service's every new template is a revision (``revisions.record_revision``); a Job's template
cannot change while the Job exists (``template_changes``).

A resource is identified by (kind, namespace, name): Jobs and Services live in a namespace, which
must exist when they are applied (``check_namespaces``); Nodes and Namespaces are stored under
namespace ''. The ``namespace`` argument of the methods is ignored for cluster-scoped kinds and is
``default`` when not given. Deleting a Namespace deletes everything in it; ``default`` cannot be.
"""

from __future__ import annotations

import json
import time
import uuid

from ..errors import BrokerError, Conflict, NotFound, UsageError, combined
from ..kinds import DEFAULT_NAMESPACE, NAMESPACED_KINDS, WORKLOAD_KINDS, Kind, object_ref, scope
from ..records import ResourceRecord
from .db import dump, fetch_all, fetch_one, insert
from .revisions import delete_revisions_of, live_service, record_revision
from .runas import check_run_as
from .tasks import count_active_on, count_live, delete_tasks_of

_KEY = "kind=? AND namespace=? AND name=?"  # one resource, by its identity


class ResourceStore:
    """Reads and writes of the ``resources`` table (a mixin of ``Store``)."""

    def apply(self, resources: list, now: float | None = None,
              where: list[str] | None = None, by: str = "") -> list[tuple[str, str]]:
        """Record validated models (all or none); returns (``kind/name``, created|configured|unchanged),
        the ref prefixed with its namespace outside ``default`` (``team-a/job/nightly``). ``where``:
        how the caller names each resource in an error (``job.yaml: document 2 (Job/nightly)``);
        ``by``: who applies them (``metadata.createdBy``/``updatedBy``)."""
        now = time.time() if now is None else now
        resources = self.seal(resources)  # before the transaction: the first Secret makes the key
        with self.transaction() as db:
            return self.apply_in(db, resources, now, where, by)

    def apply_in(self, db, resources: list, now: float, where: list[str] | None = None,
                 by: str = "") -> list[tuple[str, str]]:
        """``apply`` inside the caller's transaction (sealed resources): checks, then each write."""
        self.check_namespaces(db, resources, where)
        check_run_as(db, resources, where)
        return [(object_ref(*res.key), self.apply_one(db, res, now, by=by)) for res in resources]

    def check_namespaces(self, db, resources: list, where: list[str] | None = None) -> None:
        """Every namespaced resource goes into a namespace that exists and is not being deleted, or that
        a Namespace among ``resources`` creates, and requests the cpus and memory its quota caps
        (``namespace.unrequested``); else one error naming each resource and its namespace (NotFound
        when a namespace is missing, Conflict when one is being deleted or a request is missing)."""
        wanted = {res.namespace for res in resources if res.kind in NAMESPACED_KINDS}
        if not wanted:
            return
        from ..spec.namespace import unrequested  # the models are loaded when applying; `get` never needs them

        rows = fetch_all(db, "SELECT name, deleted_at, spec FROM resources WHERE kind='Namespace'")
        stored = {r["name"]: r["deleted_at"] for r in rows}
        quotas = {r["name"]: json.loads(r["spec"]).get("quota") for r in rows}
        created = {res.metadata.name for res in resources if res.kind == Kind.NAMESPACE.value}
        quotas.update({res.metadata.name: res.spec.quota and res.spec.quota.model_dump(mode="json")
                       for res in resources if res.kind == Kind.NAMESPACE.value})
        problems: list[BrokerError] = []
        for i, res in enumerate(resources):
            if res.kind not in NAMESPACED_KINDS:
                continue
            what = where[i] if where else res.ref
            if stored.get(res.namespace) is not None:
                problems.append(Conflict.namespace_being_deleted(res.namespace, what))
            elif res.namespace not in stored and res.namespace not in created:
                problems.append(NotFound.namespace(res.namespace, what))
            if res.kind not in WORKLOAD_KINDS:  # a Secret requests nothing
                continue
            for field, cap in unrequested(quotas.get(res.namespace), res.spec.template.resources):
                problems.append(Conflict.quota_needs_request(res.namespace, field, cap, what))
        if problems:
            raise combined(problems)

    def apply_one(self, db, res, now: float, cause: str = "apply", by: str = "") -> str:
        """Write one model inside the caller's transaction; returns created, configured or unchanged.
        ``cause``: what a Service's new revision says made it (``apply``, ``sync FILE``); ``by``: who
        writes it. The caller has checked its namespace (``check_namespaces``). A Secret comes sealed
        (``seal``): its spec holds no value, its encrypted values go to the row's ``sealed`` column."""
        kind, namespace, name = res.kind, res.namespace, res.metadata.name
        if kind == Kind.SECRET.value and not getattr(res.spec, "sealed", ""):
            raise TypeError(f"{res.ref}: a Secret is written sealed; Store.seal() it first")  # a caller's mistake
        spec = res.spec.model_dump(mode="json", exclude_unset=False)
        labels = dict(res.metadata.labels)
        row = fetch_one(db, f"SELECT spec, labels, generation, deleted_at, uid FROM resources WHERE {_KEY}",
                        [kind, namespace, name])
        if row is None:
            uid = _new_uid(db, name)
            insert(db, "resources", {"kind": kind, "namespace": namespace, "name": name, "uid": uid,
                                     "labels": dump(labels), "spec": dump(spec), "generation": 1, "created_at": now,
                                     "updated_at": now, "deleted_at": None, "status": "{}", "created_by": by,
                                     "updated_by": by})
            if kind == Kind.SERVICE.value:
                record_revision(db, uid, name, spec, now, cause, namespace)
            if kind == Kind.SECRET.value:
                self.write_sealed(db, res)
            return "created"
        if row["deleted_at"] is not None:
            raise Conflict.being_deleted(kind, name, namespace)
        stored = json.loads(row["spec"])
        if kind == Kind.JOB.value and (changed := template_changes(stored, spec)):
            raise Conflict.immutable_template(name, changed)
        if stored == spec and json.loads(row["labels"]) == labels:
            return "unchanged"
        db.execute(f"UPDATE resources SET spec=?, labels=?, generation=?, updated_at=?, updated_by=? WHERE {_KEY}",
                   [dump(spec), dump(labels), row["generation"] + (stored != spec), now, by, kind, namespace, name])
        if kind == Kind.SERVICE.value:
            record_revision(db, row["uid"], name, spec, now, cause, namespace)
        if kind == Kind.SECRET.value:
            self.write_sealed(db, res)
        return "configured"

    def resources(self, kind: Kind | None = None, namespace: str | None = None) -> list[ResourceRecord]:
        """Every resource (of ``kind``), by kind, namespace and name; ``namespace``: only those in it
        (cluster-scoped kinds are never left out by it)."""
        sql, where, params = "SELECT * FROM resources", [], []
        if kind is not None:
            where, params = ["kind = ?"], [kind.value]
        if namespace is not None:
            where.append("namespace IN (?, '')")
            params.append(namespace)
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [resource_record(r) for r in self._rows(sql + " ORDER BY kind, namespace, name", params)]

    def resource(self, kind: Kind, name: str, namespace: str | None = None) -> ResourceRecord:
        """The resource ``kind``/``name`` (of ``namespace``, default ``default``, if namespaced)."""
        namespace = scope(kind, namespace)
        rows = self._rows(f"SELECT * FROM resources WHERE {_KEY}", [kind.value, namespace, name])
        if not rows:
            raise NotFound.resource(kind.value, name, namespace)
        return resource_record(rows[0])

    def set_status(self, db, kind: Kind, name: str, status: dict, namespace: str | None = None) -> None:
        """Within a transaction opened by the caller (see ``record``)."""
        db.execute(f"UPDATE resources SET status=? WHERE {_KEY}",
                   [dump(status), kind.value, scope(kind, namespace), name])

    # -- deletion ---------------------------------------------------------------------------

    def mark_deleted(self, kind: Kind, name: str, now: float | None = None, force: bool = False,
                     namespace: str | None = None, by: str = "") -> str:
        """Delete at once when nothing of it may still run; otherwise leave it to the controller.

        Returns what happened, for ``brokerctl delete`` to print after the resource's ref:
        ``deleted``; ``deleting`` (the controller stops its containers, then purges it); for a
        resource already being deleted, that it is still stopping (never purged here: its
        containers may be in their grace period). ``force`` purges at once whatever may run; the
        containers are then no longer tracked (a running controller removes them as orphans).
        A Node with active tasks is refused unless ``force``: the controller could no longer
        reach its containers to stop them. A Namespace takes everything in it along
        (``_delete_namespace``). ``by``: who deletes it (``updatedBy`` while it is being deleted).
        """
        now = time.time() if now is None else now
        with self.transaction() as db:
            return self.delete(db, kind, name, now, force, namespace, by)

    def delete(self, db, kind: Kind, name: str, now: float, force: bool = False, namespace: str | None = None,
               by: str = "") -> str:
        """``mark_deleted`` inside the caller's transaction (``ops.sync`` prunes with it)."""
        namespace = scope(kind, namespace)
        row = fetch_one(db, f"SELECT deleted_at, spec, status FROM resources WHERE {_KEY}",
                        [kind.value, namespace, name])
        if row is None:
            raise NotFound.resource(kind.value, name, namespace)
        if kind is Kind.NODE:
            return self._delete_node(db, name, force)
        if kind is Kind.NAMESPACE:
            return self._delete_namespace(db, name, row["deleted_at"], now, force, by)
        grace = json.loads(row["spec"]).get("terminationGracePeriodSeconds", 10)
        active, placed = count_live(db, kind.value, namespace, name, stopped_after=now - grace)
        if force:
            self.purge_rows(db, kind, name, namespace)
            if not placed:
                return "deleted"
            return (f"deleted (--force); {_containers(placed)} may still run, no longer tracked: a running "
                    f"controller removes them as orphans (SIGTERM, kill after 10s), without their grace period")
        if row["deleted_at"] is not None:  # already being deleted: the controller purges it once its containers are gone
            seen = json.loads(row["status"]).get("stoppingContainers", placed)
            if not seen:
                return ("still being deleted; the controller removes it at its next pass "
                        "(`brokerctl status` shows whether one is running)")
            return f"still stopping ({_containers(seen)}); pass --force to abandon them"
        if not active:
            self.purge_rows(db, kind, name, namespace)
            return "deleted"
        db.execute(f"UPDATE resources SET deleted_at=?, updated_at=?, updated_by=? WHERE {_KEY}",
                   [now, now, by, kind.value, namespace, name])
        return "deleting"

    def _delete_node(self, db, name: str, force: bool) -> str:
        """A Node goes at once; with active tasks only when forced (its containers stay, untracked)."""
        on_node = count_active_on(db, name)
        if on_node and not force:
            raise Conflict.node_busy(name, on_node)
        self.purge_rows(db, Kind.NODE, name)
        return "deleted"

    def _delete_namespace(self, db, name: str, deleted_at: float | None, now: float, force: bool, by: str) -> str:
        """Mark the Namespace deleting and delete everything in it, each as ``delete`` would (what may
        still run is left to the controller, which stops it and purges the Namespace once it is
        empty). Nothing can be applied into it meanwhile."""
        if name == DEFAULT_NAMESPACE:
            raise Conflict.default_namespace()
        if deleted_at is None:
            db.execute("UPDATE resources SET deleted_at=?, updated_at=?, updated_by=? WHERE kind='Namespace' "
                       "AND namespace='' AND name=?", [now, now, by, name])
        for r in self.contents(db, name):
            self.delete(db, Kind(r["kind"]), r["name"], now, force, name, by)
        left = self.contents(db, name)
        if not left:
            self.purge_rows(db, Kind.NAMESPACE, name)
            return "deleted"
        what = _count_of(left)
        if deleted_at is not None:
            return f"still being deleted ({what} still stopping)"
        return f"deleting ({what} stopping first)"

    def contents(self, db, namespace: str) -> list[dict]:
        """The kind, name and deleted_at of every resource in ``namespace``, by kind and name (the
        caller's transaction; None: outside one)."""
        sql = ("SELECT kind, name, deleted_at FROM resources WHERE namespace = ? "
               "AND kind IN ('Job', 'Secret', 'Service') ORDER BY kind, name")
        return fetch_all(db, sql, [namespace]) if db is not None else self._rows(sql, [namespace])

    def purge(self, kind: Kind, name: str, namespace: str | None = None) -> None:
        with self.transaction() as db:
            self.purge_rows(db, kind, name, namespace)

    @staticmethod
    def purge_rows(db, kind: Kind, name: str, namespace: str | None = None) -> None:
        """Forget a resource with its tasks, their output and its revisions (the caller's transaction)."""
        namespace = scope(kind, namespace)
        delete_tasks_of(db, kind.value, namespace, name)
        delete_revisions_of(db, kind.value, namespace, name)
        db.execute(f"DELETE FROM resources WHERE {_KEY}", [kind.value, namespace, name])

    # -- verbs on one kind: retry a Job, cordon a Node, scale a Service -----------------------

    def retry_job(self, name: str, now: float | None = None, namespace: str | None = None, by: str = "") -> None:
        """Give a Failed Job a fresh failure budget; earlier attempts stay in its history."""
        now = time.time() if now is None else now
        namespace = namespace or DEFAULT_NAMESPACE
        with self.transaction() as db:
            row = fetch_one(db, f"SELECT status FROM resources WHERE {_KEY}", ["Job", namespace, name])
            if row is None:
                raise NotFound.resource("Job", name, namespace)
            phase = json.loads(row["status"]).get("phase", "Pending")
            if phase != "Failed":
                raise Conflict(f"Job '{name}' is {phase}, not Failed; only a Failed job can be retried")
            db.execute(f"UPDATE resources SET retried_at=?, updated_at=?, updated_by=? WHERE {_KEY}",
                       [now, now, by, "Job", namespace, name])

    def cordon(self, name: str, on: bool, drain_timeout: float | None = None, now: float | None = None,
               by: str = "") -> bool:
        """Set a Node unschedulable (``on``) or schedulable again; with ``drain_timeout`` also drain it.

        Draining moves its tasks off: Service replicas are replaced elsewhere before the originals
        stop; Job tasks may finish until ``now + drain_timeout``, then are rescheduled. Uncordon
        ends a drain. Returns whether anything changed.
        """
        now = time.time() if now is None else now
        with self.transaction() as db:
            row = fetch_one(db, "SELECT spec, drain_deadline FROM resources WHERE kind='Node' AND namespace='' "
                                "AND name=?", [name])
            if row is None:
                raise NotFound.resource("Node", name)
            spec = json.loads(row["spec"])
            was = spec.get("unschedulable", False)
            deadline = now + drain_timeout if drain_timeout is not None else (row["drain_deadline"] if on else None)
            if was == on and row["drain_deadline"] == deadline:
                return False
            spec["unschedulable"] = on
            db.execute("UPDATE resources SET spec=?, drain_deadline=?, updated_at=?, updated_by=?, "
                       "generation=generation+? WHERE kind='Node' AND namespace='' AND name=?",
                       [dump(spec), deadline, now, by, int(was != on), name])
            return True

    def scale(self, name: str, replicas: int, now: float | None = None,
              namespace: str | None = None, by: str = "") -> tuple[int, int]:
        """Set a Service's replicas; returns (old, new)."""
        now = time.time() if now is None else now
        namespace = namespace or DEFAULT_NAMESPACE
        with self.transaction() as db:
            spec = live_service(db, name, namespace)["spec"]
            old = spec.get("replicas", 1)
            if old != replicas:
                from ..spec.models import MAX_REPLICAS  # the cap a manifest's replicas has at apply

                if not 0 <= replicas <= MAX_REPLICAS:
                    raise UsageError.out_of_range("replicas", replicas, f"a Service has 0 to {MAX_REPLICAS:,} replicas")
                spec["replicas"] = replicas
                db.execute(f"UPDATE resources SET spec=?, generation=generation+1, updated_at=?, updated_by=? "
                           f"WHERE {_KEY}", [dump(spec), now, by, "Service", namespace, name])
        return old, replicas


def resource_record(row: dict) -> ResourceRecord:
    """A ``SELECT *`` row of ``resources`` as a record."""
    return ResourceRecord(
        kind=Kind(row["kind"]), name=row["name"], uid=row["uid"], labels=json.loads(row["labels"]),
        spec=json.loads(row["spec"]), generation=row["generation"], created_at=row["created_at"],
        updated_at=row["updated_at"], deleted_at=row["deleted_at"], status=json.loads(row["status"]),
        retried_at=row.get("retried_at"), drain_deadline=row.get("drain_deadline"), source=row.get("source"),
        namespace=row["namespace"], created_by=row.get("created_by") or "", updated_by=row.get("updated_by") or "",
    )


def template_changes(old_spec: dict, new_spec: dict) -> list[str]:
    """Template fields a Job's new spec changes (``new_spec`` is a model dump; the stored one is
    normalised first, so a field added with a default since it was written is no change).
    Also asked by ``ops.sync``, which holds such a file back instead of failing the sync."""
    from ..spec.models import STORED, Template  # only writes of Jobs need the models

    old = Template.model_validate(old_spec["template"], context=STORED).model_dump(mode="json")
    new = new_spec["template"]
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def _containers(n: int) -> str:
    return f"{n} container" + ("" if n == 1 else "s")


def _count_of(rows: list[dict]) -> str:
    """``1 job, 2 services``: what is left in a namespace."""
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    return ", ".join(f"{n} {kind.lower()}{'' if n == 1 else 's'}" for kind, n in kinds.items())


def _new_uid(db, name: str) -> str:
    """A new resource's uid. Task ids are ``<name>-<uid[:5]>-<index>-<attempt>`` (unique across
    namespaces through the uid), so the uid's first five digits differ from those of every other
    resource of that name, in any kind and namespace."""
    while True:
        uid = uuid.uuid4().hex[:10]
        if fetch_one(db, "SELECT 1 AS taken FROM resources WHERE name = ? AND substr(uid, 1, 5) = ?",
                     [name, uid[:5]]) is None:
            return uid
