"""Resources: the Nodes, Jobs and Services as applied, and the status the controller writes.

``ResourceStore`` is mixed into ``Store`` (see the package): ``apply`` (all or none), ``resource``
and ``resources`` (records), ``mark_deleted`` and its primitive ``delete``, ``purge``, ``retry_job``,
``cordon`` (Nodes), ``scale`` (Services) and ``set_status``. Called by the CLI, the controller
(statuses, purges), act and ``ops.sync`` (``apply_one`` and ``delete`` inside its transaction).
A Service's every new template is a revision (``revisions.record_revision``); a Job's template
cannot change while the Job exists (``template_changes``).
"""

from __future__ import annotations

import json
import time
import uuid

from ..errors import Conflict, NotFound, UsageError
from ..kinds import Kind
from ..records import ResourceRecord
from .db import dump, fetch_one, insert
from .revisions import delete_revisions_of, live_service, record_revision
from .tasks import count_active_on, count_live, delete_tasks_of


class ResourceStore:
    """Reads and writes of the ``resources`` table (a mixin of ``Store``)."""

    def apply(self, resources: list, now: float | None = None) -> list[tuple[str, str]]:
        """Record validated models (all or none); returns (``kind/name``, created|configured|unchanged)."""
        now = time.time() if now is None else now
        with self.transaction() as db:
            return [(f"{res.kind.lower()}/{res.metadata.name}", self.apply_one(db, res, now)) for res in resources]

    def apply_one(self, db, res, now: float, cause: str = "apply") -> str:
        """Write one model inside the caller's transaction; returns created, configured or unchanged.
        ``cause``: what a Service's new revision says made it (``apply``, ``sync FILE``)."""
        kind, name = res.kind, res.metadata.name
        spec = res.spec.model_dump(mode="json", exclude_unset=False)
        labels = dict(res.metadata.labels)
        row = fetch_one(db, "SELECT spec, labels, generation, deleted_at, uid FROM resources WHERE kind=? AND name=?",
                        [kind, name])
        if row is None:
            uid = uuid.uuid4().hex[:10]
            insert(db, "resources", {"kind": kind, "name": name, "uid": uid, "labels": dump(labels),
                                     "spec": dump(spec), "generation": 1, "created_at": now, "updated_at": now,
                                     "deleted_at": None, "status": "{}"})
            if kind == Kind.SERVICE.value:
                record_revision(db, uid, name, spec, now, cause)
            return "created"
        if row["deleted_at"] is not None:
            raise Conflict.being_deleted(kind, name)
        stored = json.loads(row["spec"])
        if kind == Kind.JOB.value and (changed := template_changes(stored, spec)):
            raise Conflict.immutable_template(name, changed)
        if stored == spec and json.loads(row["labels"]) == labels:
            return "unchanged"
        db.execute("UPDATE resources SET spec=?, labels=?, generation=?, updated_at=? WHERE kind=? AND name=?",
                   [dump(spec), dump(labels), row["generation"] + (stored != spec), now, kind, name])
        if kind == Kind.SERVICE.value:
            record_revision(db, row["uid"], name, spec, now, cause)
        return "configured"

    def resources(self, kind: Kind | None = None) -> list[ResourceRecord]:
        sql, params = "SELECT * FROM resources", []
        if kind is not None:
            sql, params = sql + " WHERE kind = ?", [kind.value]
        return [resource_record(r) for r in self._rows(sql + " ORDER BY kind, name", params)]

    def resource(self, kind: Kind, name: str) -> ResourceRecord:
        rows = self._rows("SELECT * FROM resources WHERE kind=? AND name=?", [kind.value, name])
        if not rows:
            raise NotFound.resource(kind.value, name)
        return resource_record(rows[0])

    def set_status(self, db, kind: Kind, name: str, status: dict) -> None:
        """Within a transaction opened by the caller (see ``record``)."""
        db.execute("UPDATE resources SET status=? WHERE kind=? AND name=?", [dump(status), kind.value, name])

    # -- deletion ---------------------------------------------------------------------------

    def mark_deleted(self, kind: Kind, name: str, now: float | None = None, force: bool = False) -> str:
        """Delete at once when nothing of it may still run; otherwise leave it to the controller.

        Returns what happened, for ``brokerctl delete`` to print after the resource's ref:
        ``deleted``; ``deleting`` (the controller stops its containers, then purges it); for a
        resource already being deleted, that it is still stopping (never purged here: its
        containers may be in their grace period). ``force`` purges at once whatever may run; the
        containers are then no longer tracked (a running controller removes them as orphans).
        A Node with active tasks is refused unless ``force``: the controller could no longer
        reach its containers to stop them.
        """
        now = time.time() if now is None else now
        with self.transaction() as db:
            return self.delete(db, kind, name, now, force)

    def delete(self, db, kind: Kind, name: str, now: float, force: bool = False) -> str:
        """``mark_deleted`` inside the caller's transaction (``ops.sync`` prunes with it)."""
        row = fetch_one(db, "SELECT deleted_at, spec, status FROM resources WHERE kind=? AND name=?",
                        [kind.value, name])
        if row is None:
            raise NotFound.resource(kind.value, name)
        if kind is Kind.NODE:
            return self._delete_node(db, name, force)
        grace = json.loads(row["spec"]).get("terminationGracePeriodSeconds", 10)
        active, placed = count_live(db, kind.value, name, stopped_after=now - grace)
        if force:
            self.purge_rows(db, kind, name)
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
            self.purge_rows(db, kind, name)
            return "deleted"
        db.execute("UPDATE resources SET deleted_at=?, updated_at=? WHERE kind=? AND name=?",
                   [now, now, kind.value, name])
        return "deleting"

    def _delete_node(self, db, name: str, force: bool) -> str:
        """A Node goes at once; with active tasks only when forced (its containers stay, untracked)."""
        on_node = count_active_on(db, name)
        if on_node and not force:
            raise Conflict.node_busy(name, on_node)
        self.purge_rows(db, Kind.NODE, name)
        return "deleted"

    def purge(self, kind: Kind, name: str) -> None:
        with self.transaction() as db:
            self.purge_rows(db, kind, name)

    @staticmethod
    def purge_rows(db, kind: Kind, name: str) -> None:
        """Forget a resource with its tasks, their output and its revisions (the caller's transaction)."""
        delete_tasks_of(db, kind.value, name)
        delete_revisions_of(db, kind.value, name)
        db.execute("DELETE FROM resources WHERE kind=? AND name=?", [kind.value, name])

    # -- verbs on one kind: retry a Job, cordon a Node, scale a Service -----------------------

    def retry_job(self, name: str, now: float | None = None) -> None:
        """Give a Failed Job a fresh failure budget; earlier attempts stay in its history."""
        now = time.time() if now is None else now
        with self.transaction() as db:
            row = fetch_one(db, "SELECT status FROM resources WHERE kind='Job' AND name=?", [name])
            if row is None:
                raise NotFound.resource("Job", name)
            phase = json.loads(row["status"]).get("phase", "Pending")
            if phase != "Failed":
                raise Conflict(f"Job '{name}' is {phase}, not Failed; only a Failed job can be retried")
            db.execute("UPDATE resources SET retried_at=?, updated_at=? WHERE kind='Job' AND name=?", [now, now, name])

    def cordon(self, name: str, on: bool, drain_timeout: float | None = None, now: float | None = None) -> bool:
        """Set a Node unschedulable (``on``) or schedulable again; with ``drain_timeout`` also drain it.

        Draining moves its tasks off: Service replicas are replaced elsewhere before the originals
        stop; Job tasks may finish until ``now + drain_timeout``, then are rescheduled. Uncordon
        ends a drain. Returns whether anything changed.
        """
        now = time.time() if now is None else now
        with self.transaction() as db:
            row = fetch_one(db, "SELECT spec, drain_deadline FROM resources WHERE kind='Node' AND name=?", [name])
            if row is None:
                raise NotFound.resource("Node", name)
            spec = json.loads(row["spec"])
            was = spec.get("unschedulable", False)
            deadline = now + drain_timeout if drain_timeout is not None else (row["drain_deadline"] if on else None)
            if was == on and row["drain_deadline"] == deadline:
                return False
            spec["unschedulable"] = on
            db.execute("UPDATE resources SET spec=?, drain_deadline=?, updated_at=?, "
                       "generation=generation+? WHERE kind='Node' AND name=?",
                       [dump(spec), deadline, now, int(was != on), name])
            return True

    def scale(self, name: str, replicas: int, now: float | None = None) -> tuple[int, int]:
        """Set a Service's replicas; returns (old, new)."""
        now = time.time() if now is None else now
        with self.transaction() as db:
            spec = live_service(db, name)["spec"]
            old = spec.get("replicas", 1)
            if old != replicas:
                from ..spec.models import MAX_REPLICAS  # the cap a manifest's replicas has at apply

                if not 0 <= replicas <= MAX_REPLICAS:
                    raise UsageError.out_of_range("replicas", replicas, f"a Service has 0 to {MAX_REPLICAS:,} replicas")
                spec["replicas"] = replicas
                db.execute(
                    "UPDATE resources SET spec=?, generation=generation+1, updated_at=? WHERE kind='Service' AND name=?",
                    [dump(spec), now, name],
                )
        return old, replicas


def resource_record(row: dict) -> ResourceRecord:
    """A ``SELECT *`` row of ``resources`` as a record."""
    return ResourceRecord(
        kind=Kind(row["kind"]), name=row["name"], uid=row["uid"], labels=json.loads(row["labels"]),
        spec=json.loads(row["spec"]), generation=row["generation"], created_at=row["created_at"],
        updated_at=row["updated_at"], deleted_at=row["deleted_at"], status=json.loads(row["status"]),
        retried_at=row.get("retried_at"), drain_deadline=row.get("drain_deadline"), source=row.get("source"),
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
