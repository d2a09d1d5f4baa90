"""Idempotency keys: the first answer to a POST that carried one, so that the same request sent again
(a client retrying after a timeout) gets that answer instead of creating a twin.

``IdempotencyStore`` is mixed into ``Store`` (see the package). ``create`` writes new resources as
``apply`` does and records the answer under (``scope``, ``key``) in the same transaction; a key seen
within ``window`` seconds returns the answer recorded then and writes nothing. The store's write lock
makes the look-up and the write one step, so two servers of one store given the same key at once
create one resource. Keys older than the window are deleted as new ones are recorded. Called by
``ops.containerbroker`` (Container Broker's ``X-Idempotency-Key``).
"""

from __future__ import annotations

import json
import time
from typing import NamedTuple

from ..errors import Conflict
from .db import dump, fetch_one, insert

DAY = 86400.0


class Once(NamedTuple):
    """Who asks what (``scope``: the caller and route), the client's ``key``, and the ``answer`` to
    record if this request is the first."""

    scope: str
    key: str
    answer: dict


class IdempotencyStore:
    """Reads and writes of the ``idempotency_keys`` table (a mixin of ``Store``)."""

    def create(self, resources: list, once: Once | None = None, now: float | None = None, by: str = "",
               window: float = DAY) -> dict | None:
        """Create ``resources`` (``Conflict`` if one exists already: nothing is written) and record
        ``once.answer``, unless ``once.key`` was recorded for ``once.scope`` less than ``window``
        seconds ago: then return that earlier answer and write nothing (None: created)."""
        now = time.time() if now is None else now
        resources = self.seal(resources)
        with self.transaction() as db:
            if once is not None:
                db.execute("DELETE FROM idempotency_keys WHERE created_at < ?", [now - window])
                row = fetch_one(db, "SELECT answer FROM idempotency_keys WHERE scope = ? AND key = ?",
                                [once.scope, once.key])
                if row is not None:
                    return json.loads(row["answer"])
            for res, (ref, outcome) in zip(resources, self.apply_in(db, resources, now, by=by)):
                if outcome != "created":  # rolls the transaction back
                    raise Conflict(f"{ref} exists already", kind=res.kind, name=res.metadata.name)
            if once is not None:
                insert(db, "idempotency_keys", {"scope": once.scope, "key": once.key, "answer": dump(once.answer),
                                                "created_at": now})
            return None
