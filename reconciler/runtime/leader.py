"""Leadership among the controllers on one store: stand by, take over, renew, step down.

Used by ``runtime.controller`` (so by ``brokerctl controller`` and any process that runs the loop
through ``ops.controller``). Any number of controllers may run on one store, on one machine or
several; one leads (runs the reconcile loop and the GitOps watcher), the others stand by. The
lease lives in the store (``store.lease``: holder, epoch, expiry). A thread of each controller:

* as **standby** reads the lease every ``renew_every`` seconds (a read: no lock, no wake-up of the
  leader) and at its expiry, claims it once it is free, expired, or held by a dead process on
  this host; it records its own heartbeat row every ``STANDBY_BEAT`` seconds (``brokerctl status``);
* as **leader** renews the lease every ``renew_every`` seconds (publishing the controller's figures).
  The controller's store connection is fenced with the epoch (``Store.fence``): each of its write
  transactions checks, under the write lock, that the epoch is still the lease's. A renewal or a
  write that finds another epoch steps down at once (``step_down``), and the controller stands by.

``holds()`` answers whether Docker calls may go out: the epoch is ours and the last renewal began
less than ``duration`` ago by this process's monotonic clock. A leader paused past its expiry
(SIGSTOP, a long GC, a partition) therefore sends nothing once it wakes, even before it learns
that it was overtaken, and its next write is refused (``Fenced``). A store out of reach (a
PostgreSQL server restarting) is not a loss: the leader keeps trying to renew, and keeps the lead
if nobody took it meanwhile.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Callable

from ..errors import StoreError
from ..store import Store
from ..store.lease import live

log = logging.getLogger("brokerctl.leader")

LEASE_SECONDS = 3.0  # how long a lease lasts after its last renewal (`brokerctl controller --lease-duration`)
RENEW_EVERY = 1.0  # the leader renews (and a standby looks) this often, at most a third of the lease
STANDBY_BEAT = 5.0  # a standby writes its heartbeat row this often: a commit wakes a leader on SQLite


class Leadership:
    """``holder``: this controller's id; ``stats()``: what the leader publishes with each renewal;
    ``on_change()``: called when this controller becomes leader or steps down; ``on_fatal(exc)``:
    called (and the thread ends) when the store refuses leadership for good (moved elsewhere)."""

    def __init__(self, store: Store, holder: str, *, duration: float = LEASE_SECONDS,
                 clock: Callable[[], float] = time.time, stats: Callable[[], dict] = dict,
                 on_change: Callable[[], None] = lambda: None,
                 on_fatal: Callable[[BaseException], None] = lambda exc: None):
        if duration <= 0:
            raise ValueError("the lease duration must be positive")
        self.store, self.holder, self.duration, self.clock = store, holder, duration, clock
        self.stats, self.on_change, self.on_fatal = stats, on_change, on_fatal
        self.renew_every = min(RENEW_EVERY, duration / 3)
        self.epoch: int | None = None  # while leading
        self.started_at = clock()
        self._valid_until = 0.0  # monotonic: the last renewal's start + duration
        self._leading = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shown: tuple | None = None  # the leader last logged as standby
        self._beat_at = float("-inf")
        self._unreachable = False
        self._host = socket.gethostname()

    # -- the controller's side -----------------------------------------------------------------

    def start(self) -> "Leadership":
        """Try once now (a moved store raises here, before the thread), then keep trying in the thread.
        Once started, a second call does nothing (a server makes the first before its API serves)."""
        if self._thread is not None:
            return self
        # A leader paused inside a transaction would hold the write lock, and no standby could claim.
        self.store.set_idle_limit(self.duration)
        self._step()
        self._thread = threading.Thread(target=self._run, daemon=True, name="leader")
        self._thread.start()
        return self

    def stop(self, wait: float = 2.0) -> None:
        """End the thread (waiting at most ``wait`` s for a step under way)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=wait)

    def holds(self) -> bool:
        """Leading, and the lease surely not expired yet: Docker calls may go out."""
        return self.epoch is not None and time.monotonic() < self._valid_until

    def wait_leading(self, stop: threading.Event, timeout: float | None = None) -> int | None:
        """Block until this controller leads (its epoch), ``stop`` is set or ``timeout`` passed (None)."""
        end = None if timeout is None else time.monotonic() + timeout
        while not stop.is_set() and (end is None or time.monotonic() < end):
            if self._leading.wait(0.05):
                epoch = self.epoch
                if epoch is not None:
                    return epoch
        return None

    def step_down(self, epoch: int, why: str) -> None:
        """Give up leading at ``epoch`` (nothing if already done, or leading at another epoch now)."""
        with self._lock:
            if self.epoch != epoch:
                return
            self.epoch = None
            self._leading.clear()
            # The fence stays: a pass of the old term still under way must find its writes refused.
            self._shown, self._beat_at = None, float("-inf")
        log.warning("stepped down from epoch %d: %s; standby", epoch, why)
        self.on_change()

    def release(self, wait: float) -> bool:
        """Give up the lease and the candidate row (at shutdown), waiting at most ``wait`` s for the store."""
        self.stop(wait)
        with self._lock:
            self.epoch = None
            self._leading.clear()
        return self.store.release_lease(self.holder, wait=wait)

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self._pause):
            try:
                self._step()
            except StoreError as exc:  # only a moved store gets here
                self.on_fatal(exc)
                return
            except Exception:  # noqa: BLE001 - the thread must live on
                log.exception("leader election step failed; trying again")

    _pause = 0.0

    def _step(self) -> None:
        """One renewal (leader) or one look at the lease (standby); sets ``_pause`` until the next."""
        try:
            self._pause = self._renew() if self.epoch is not None else self._stand_by()
            if self._unreachable:
                log.info("store reachable again")
            self._unreachable = False
        except StoreError as exc:
            if getattr(exc, "step", None) == "use-moved-store":
                raise
            if not self._unreachable:  # out of reach for now (a database restarting): try again shortly
                log.warning("lease not renewed or read: %s", exc)
            self._unreachable = True
            self._pause = self.renew_every

    def _renew(self) -> float:
        epoch, began = self.epoch, time.monotonic()
        if self.store.renew_lease(self.holder, epoch, self.duration, self.clock(), self.stats()):
            with self._lock:
                if self.epoch == epoch:
                    self._valid_until = began + self.duration
        else:
            self.step_down(epoch, "another controller holds the lease")
        # A steady cadence from the start of each renewal: a slow renewal must not stretch the
        # interval, since the lease expires ``duration`` after the last one.
        return max(0.0, began + self.renew_every - time.monotonic())

    def _stand_by(self) -> float:
        now = self.clock()
        row = self.store.lease_row()
        if row is not None and row["holder"] != self.holder and live(row, now, self._host):
            self._show_standby(row, now)
            if now - self._beat_at >= STANDBY_BEAT:
                self.store.beat_candidate(self.holder, self.started_at, now, self.stats())
                self._beat_at = now
            # Look again at the lease's expiry if that comes sooner.
            return max(0.01, min(self.renew_every, row["expires_at"] - now + 0.005))
        began = time.monotonic()
        epoch = self.store.claim_lease(self.holder, self.duration, now)
        if epoch is None:  # claimed by another between our read and our claim
            return 0.01
        with self._lock:
            self._valid_until = began + self.duration
            self.epoch = epoch
            self.store.fence(self.holder, epoch)
            self._leading.set()
        took = (f"took over from pid {row['pid']} on {row['hostname']} (epoch {row['epoch']})"
                if row is not None and row["holder"] else "the lease was free")
        log.info("leader at epoch %d: %s", epoch, took)
        self.on_change()
        return self.renew_every

    def _show_standby(self, row: dict, now: float) -> None:
        shown = (row["holder"], row["epoch"])
        if shown != self._shown:
            self._shown = shown
            log.info("standby: pid %s on %s leads at epoch %d (lease expires in %.1fs); taking over if it is "
                     "not renewed", row["pid"], row["hostname"], row["epoch"], row["expires_at"] - now)
