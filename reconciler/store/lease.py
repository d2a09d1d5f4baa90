"""The controller lease: which controller process owns the store, with its heartbeat and stats.

``LeaseStore`` is mixed into ``Store`` (see the package). The controller takes the lease at start
(``acquire_lease``), refreshes it every second with its figures (``heartbeat``, inside its
transaction), and gives it up on the way out (``release_lease``); ``brokerctl status`` reads it
(``lease``). A second controller on the same store is refused while the holder is alive, and any
controller on a store that ``brokerctl store migrate`` copied elsewhere.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import suppress

from ..errors import StoreError
from .db import BUSY_TIMEOUT_MS, fetch_one, upsert


class LeaseStore:
    """Reads and writes of the one-row ``lease`` table (a mixin of ``Store``)."""

    def acquire_lease(self, holder: str, stale_after: float, now: float | None = None) -> None:
        """Take the controller lease, or raise StoreError naming the live holder."""
        now = time.time() if now is None else now
        host = socket.gethostname()
        with self.transaction() as db:
            moved = fetch_one(db, "SELECT value FROM meta WHERE key = 'moved_to'")  # by transfer.copy_store
            if moved is not None:
                raise StoreError.moved(self.path, moved["value"])
            row = fetch_one(db, "SELECT holder, pid, hostname, heartbeat FROM lease WHERE id = 1")
            if (row and row["holder"] != holder and now - row["heartbeat"] < stale_after
                    and _maybe_alive(row["pid"], row["hostname"], host)):
                raise StoreError.lease_held(row["pid"], row["hostname"], self.path)
            # A new holder starts with no stats.
            upsert(db, "lease", {"id": 1, "holder": holder, "pid": os.getpid(), "hostname": host, "started_at": now,
                                 "heartbeat": now, "stats": "{}"}, key="id")

    def heartbeat(self, db, holder: str, now: float, stats: dict | None = None) -> bool:
        """Refresh the lease (and the controller's ``stats``) inside the caller's transaction;
        False if another holder took it."""
        cur = db.execute("UPDATE lease SET heartbeat = ?, stats = ? WHERE id = 1 AND holder = ?",
                         [now, json.dumps(stats or {}), holder])
        return cur.rowcount == 1

    def release_lease(self, holder: str, wait: float | None = None) -> bool:
        """Give up the lease. With ``wait``, give up (False) rather than wait longer than that for
        this connection's lock or another process's write: a controller shutting down must not hang.
        A store out of reach (a PostgreSQL server down) is False too: the lease then expires."""
        if not self._lock.acquire(timeout=-1 if wait is None else wait):
            return False
        try:
            if wait is not None:
                self.set_busy_timeout(wait * 1000)
            with self.transaction() as db:
                db.execute("DELETE FROM lease WHERE id = 1 AND holder = ?", [holder])
            return True
        except StoreError:  # another writer kept the lock (LockTimeout), or the database is out of reach
            return False
        finally:
            if wait is not None:
                with suppress(StoreError):
                    self.set_busy_timeout(BUSY_TIMEOUT_MS)
            self._lock.release()

    def lease(self) -> dict | None:
        """The lease row (holder, pid, hostname, started_at, heartbeat, stats), or None when free."""
        rows = self._rows("SELECT * FROM lease WHERE id = 1")
        if not rows:
            return None
        rows[0]["stats"] = json.loads(rows[0].get("stats") or "{}")
        return rows[0]


def _maybe_alive(pid: int, hostname: str, this_host: str) -> bool:
    """A lease held by a dead process on this host is stale at once; elsewhere trust the heartbeat."""
    if hostname != this_host:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
