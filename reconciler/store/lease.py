"""The leader lease: which of the controllers on a store runs the loop, its epoch, and the fence on its writes.

``LeaseStore`` is mixed into ``Store`` (see the package). Any number of controllers (or servers) may
run on one store; the one holding the one-row ``lease`` leads (``runtime.leader``). A candidate
claims a free or expired lease (``claim_lease``), which makes it leader with the next **epoch**
(one more at every claim, never reset: a released lease keeps its row); the leader renews it about
every second (``renew_lease``, which also publishes its figures), and a renewal by anyone but the
holder of that epoch fails. The lease expires ``duration`` seconds after its last renewal; a lease
held by a dead process on this host is free at once.

**Fencing.** While a connection leads, ``fence(holder, epoch)`` makes every one of its write
transactions first check that the lease row still names that holder and epoch; the check runs
under the store's write lock (``db.Connection.transaction``), which a takeover needs too, so it
cannot be overtaken between the check and the commit. A leader that was paused past its expiry
and overtaken gets ``Fenced`` from its next write: the transaction is rolled back, nothing of it is
committed; the fence stays until the next claim, so nothing still under way in a stepped-down
leader can write. Each candidate records a heartbeat row (``beat_candidate``); ``leadership`` reads the
lease and the standbys for ``brokerctl status``. A store that ``brokerctl store migrate`` copied
elsewhere refuses every claim.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import suppress

from ..errors import StoreError
from .db import BUSY_TIMEOUT_MS, fetch_one, upsert

CANDIDATE_FORGET_SECONDS = 60.0  # a candidate row this old belongs to a process that is gone


class Fenced(StoreError):
    """A write by a leader whose epoch is no longer the lease's: another controller took over.
    Nothing of the transaction was committed; the writer must step down."""

    def __init__(self, message: str, epoch: int):
        super().__init__(message)
        self.epoch = epoch

    @classmethod
    def superseded(cls, path, epoch: int, row: dict | None) -> "Fenced":
        now = (f"epoch {row['epoch']} held by pid {row['pid']} on {row['hostname']}" if row and row["holder"]
               else "no leader")
        return cls(f"store {path}: this controller's lease (epoch {epoch}) was taken over ({now}); "
                   "write refused, stepping down", epoch)


class LeaseStore:
    """Reads and writes of the ``lease`` row and the ``candidates`` rows (a mixin of ``Store``)."""

    def claim_lease(self, holder: str, duration: float, now: float | None = None) -> int | None:
        """Become leader if the lease is free, expired or held by a dead process on this host: returns
        the new epoch; None while another holder's lease is live. StoreError for a moved store."""
        now = time.time() if now is None else now
        host = socket.gethostname()
        with self.transaction(fenced=False) as db:
            moved = fetch_one(db, "SELECT value FROM meta WHERE key = 'moved_to'")  # by transfer.copy_store
            if moved is not None:
                raise StoreError.moved(self.path, moved["value"])
            row = fetch_one(db, "SELECT holder, pid, hostname, epoch, expires_at FROM lease WHERE id = 1")
            if row and live(row, now, host) and row["holder"] != holder:
                return None
            epoch = (row["epoch"] if row else 0) + 1
            # A new term starts with no stats.
            upsert(db, "lease", {"id": 1, "holder": holder, "pid": os.getpid(), "hostname": host, "started_at": now,
                                 "heartbeat": now, "expires_at": now + duration, "epoch": epoch, "stats": "{}"},
                   key="id")
            db.execute("DELETE FROM candidates WHERE holder = ?", [holder])  # the lease row speaks for the leader
            return epoch

    def renew_lease(self, holder: str, epoch: int, duration: float, now: float | None = None,
                    stats: dict | None = None) -> bool:
        """Extend the lease ``duration`` seconds from ``now`` and publish the leader's ``stats``; False
        (nothing written) unless ``holder`` holds it at ``epoch``."""
        now = time.time() if now is None else now
        with self.transaction(fenced=False) as db:
            cur = db.execute("UPDATE lease SET heartbeat = ?, expires_at = ?, stats = ? "
                             "WHERE id = 1 AND holder = ? AND epoch = ?",
                             [now, now + duration, json.dumps(stats or {}), holder, epoch])
            return cur.rowcount == 1

    def release_lease(self, holder: str, wait: float | None = None) -> bool:
        """Give up the lease (a standby may claim it at once; the epoch stays) and the candidate row.
        With ``wait``, give up (False) rather than wait longer than that for this connection's lock
        or another process's write: a controller shutting down must not hang. A store out of reach
        (a PostgreSQL server down) is False too: the lease then expires."""
        if not self._lock.acquire(timeout=-1 if wait is None else wait):
            return False
        try:
            if wait is not None:
                self.set_busy_timeout(wait * 1000)
            with self.transaction(fenced=False) as db:
                db.execute("UPDATE lease SET holder = '', expires_at = 0 WHERE id = 1 AND holder = ?", [holder])
                db.execute("DELETE FROM candidates WHERE holder = ?", [holder])
            return True
        except StoreError:  # another writer kept the lock (LockTimeout), or the database is out of reach
            return False
        finally:
            if wait is not None:
                with suppress(StoreError):
                    self.set_busy_timeout(BUSY_TIMEOUT_MS)
            self._lock.release()

    def beat_candidate(self, holder: str, started_at: float, now: float | None = None,
                       stats: dict | None = None) -> None:
        """Record that candidate ``holder`` (this process) is alive, with its ``stats``; forget
        candidates long silent."""
        now = time.time() if now is None else now
        with self.transaction(fenced=False) as db:
            upsert(db, "candidates", {"holder": holder, "pid": os.getpid(), "hostname": socket.gethostname(),
                                      "started_at": started_at, "heartbeat": now, "stats": json.dumps(stats or {})},
                   key="holder")
            db.execute("DELETE FROM candidates WHERE heartbeat < ?", [now - CANDIDATE_FORGET_SECONDS])

    # -- fencing -------------------------------------------------------------------------------

    def fence(self, holder: str, epoch: int) -> None:
        """From now on every write transaction of this connection (but the lease's own) checks, under
        the write lock, that ``holder`` still leads at ``epoch``; ``Fenced`` (and a rollback) otherwise.
        A leader that steps down keeps its fence (a pass still under way must not write unfenced);
        the next claim moves it to the new epoch."""
        def check(db) -> None:
            row = fetch_one(db, "SELECT holder, pid, hostname, epoch FROM lease WHERE id = 1")
            if row is None or row["holder"] != holder or row["epoch"] != epoch:
                raise Fenced.superseded(self.path, epoch, row)

        self.fence_check = check

    def unfence(self) -> None:
        self.fence_check = None

    # -- reads ---------------------------------------------------------------------------------

    def lease(self) -> dict | None:
        """The held lease (holder, pid, hostname, started_at, heartbeat, expires_at, epoch, stats), or
        None when it is free."""
        rows = self._rows("SELECT * FROM lease WHERE id = 1 AND holder <> ''")
        if not rows:
            return None
        rows[0]["stats"] = json.loads(rows[0].get("stats") or "{}")
        return rows[0]

    def lease_row(self) -> dict | None:
        """The lease row even when released (its epoch is the last one); None before any claim."""
        rows = self._rows("SELECT holder, pid, hostname, epoch, expires_at, heartbeat FROM lease WHERE id = 1")
        return rows[0] if rows else None

    def candidates(self) -> list[dict]:
        """Every candidate's heartbeat row (holder, pid, hostname, started_at, heartbeat, stats), oldest first."""
        rows = self._rows("SELECT * FROM candidates ORDER BY started_at, holder")
        for row in rows:
            row["stats"] = json.loads(row["stats"] or "{}")
        return rows


def live(row: dict, now: float, this_host: str) -> bool:
    """Does the lease ``row`` still bind the others: held, not expired, and (on this host) its pid alive."""
    return bool(row["holder"]) and now < row["expires_at"] and _maybe_alive(row["pid"], row["hostname"], this_host)


def _maybe_alive(pid: int, hostname: str, this_host: str) -> bool:
    """A lease held by a dead process on this host is stale at once; elsewhere trust the expiry."""
    if hostname != this_host:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
