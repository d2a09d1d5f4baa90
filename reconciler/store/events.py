"""Events: the audit log of what the controller, the GitOps sync and the verbs decided.

``EventStore`` is mixed into ``Store`` (see the package): ``add_event`` writes inside the caller's
transaction (act, ``ops.sync``), ``events`` reads the latest for ``get events`` and ``describe``. An
event is about an object (kind, namespace, name): the namespace is '' for cluster-scoped kinds
(Nodes, Namespaces, the GitOps ``Directory``).
"""

from __future__ import annotations

import time

from ..kinds import scope
from .db import insert


class EventStore:
    """Reads and writes of the ``events`` table (a mixin of ``Store``)."""

    def add_event(self, db, kind: str, name: str, reason: str, message: str,
                  type: str = "Normal", task_id: str | None = None, ts: float | None = None,
                  namespace: str | None = None) -> None:
        """``namespace``: of a Job's or Service's event (None: ``default``); ignored for other kinds."""
        insert(db, "events", {"ts": time.time() if ts is None else ts, "kind": kind,
                              "namespace": scope(kind, namespace), "name": name, "task_id": task_id, "type": type,
                              "reason": reason, "message": message})

    def events(self, kind: str | None = None, name: str | None = None, limit: int | None = 200,
               namespace: str | None = None, namespaces: list[str] | None = None) -> list[dict]:
        """The last ``limit`` events (None: all), oldest first; only those of ``kind``/``name`` (in
        ``namespace``, default ``default``) if given, else only those in ``namespaces`` if given
        ('' is the cluster-scoped objects')."""
        sql, where, params = "SELECT * FROM events", [], []
        if kind is not None:
            where, params = ["kind = ? AND namespace = ? AND name = ?"], [kind, scope(kind, namespace), name]
        elif namespaces is not None:
            where, params = [f"namespace IN ({', '.join('?' * len(namespaces))})"], list(namespaces)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql, params = sql + " LIMIT ?", [*params, limit]
        return self._rows(sql, params)[::-1]
