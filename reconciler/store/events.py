"""Events: the audit log of what the controller, the GitOps sync and the verbs decided.

``EventStore`` is mixed into ``Store`` (see the package): ``add_event`` writes inside the caller's
transaction (act, ``ops.sync``), ``events`` reads the latest for ``get events`` and ``describe``.
"""

from __future__ import annotations

import time

from .db import insert


class EventStore:
    """Reads and writes of the ``events`` table (a mixin of ``Store``)."""

    def add_event(self, db, kind: str, name: str, reason: str, message: str,
                  type: str = "Normal", task_id: str | None = None, ts: float | None = None) -> None:
        insert(db, "events", {"ts": time.time() if ts is None else ts, "kind": kind, "name": name,
                              "task_id": task_id, "type": type, "reason": reason, "message": message})

    def events(self, kind: str | None = None, name: str | None = None, limit: int | None = 200) -> list[dict]:
        """The last ``limit`` events (None: all), oldest first; only those of ``kind``/``name`` if given."""
        sql, params = "SELECT * FROM events", []
        if kind is not None:
            sql += " WHERE kind = ? AND name = ?"
            params = [kind, name]
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql, params = sql + " LIMIT ?", [*params, limit]
        return self._rows(sql, params)[::-1]
