"""Carry out a Plan: record its decisions, run its Docker actions in parallel, record outcomes.

Called by the controller after ``plan``. Order matters for crash safety: decisions (new tasks,
placements, phase changes) are committed first, so a container never exists for a task the
store does not know; then the Docker calls run, at most ``per_node`` at a time on each host,
with no transaction held; outcomes are committed as they arrive, those that arrive together in one
transaction (``_record``: a group commit, so 1,000 starts finishing at once take a handful of
commits instead of 1,000, each waiting for the write lock in turn). Every Docker action is
idempotent (containers have deterministic names and labels), so re-running a half-applied plan
converges instead of creating twins. A Start's Secrets are resolved (``secrets.resolve``) in the
worker, just before the container is created, so nothing committed or logged holds a value.

Leadership (``runtime.leader``): the store connection is fenced with the leader's epoch, so a
controller overtaken by another gets ``Fenced`` from ``record_decisions`` and no Docker call of that
pass goes out; each Docker call also waits for ``leading()`` (the lease surely still ours by this
process's clock), so a leader paused past its lease and woken again sends none, even between a
commit and its calls. A batch of outcomes is one fenced transaction like any other: refused by the
fence, none of it is written and each of its outcomes is reported to ``on_fenced``.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from contextlib import nullcontext
import time
from concurrent.futures import Executor, Future, wait
from typing import Callable, Iterable

from ..engine.actions import Collect, Plan, Remove, Start
from ..errors import BrokerError
from ..docker.client import TRANSPORT_ERRORS, Withheld
from ..docker.host import Host, StartError
from ..kinds import TaskPhase, TaskReason
from ..store import LOG_LIMIT_BYTES, Fenced, Store
from .secrets import Unresolved, resolve

log = logging.getLogger("brokerctl.act")

SKIPPED = "skipped"  # an action not carried out: this controller no longer surely leads


def wait_or_stop(futures: Iterable[Future], timeout: float | None, stop: threading.Event | None) -> None:
    """``concurrent.futures.wait`` for all of ``futures`` (at most ``timeout`` seconds), cut short
    within 0.1 s once ``stop`` is set."""
    pending = set(futures)
    deadline = None if timeout is None else time.monotonic() + timeout
    while pending and not (stop is not None and stop.is_set()):
        left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
        if left <= 0:
            return
        _, pending = wait(pending, timeout=left)


class Actor:
    """``stopper`` runs graceful stops (SIGTERM, wait up to the grace period, kill) in the
    background: a pass does not wait for them, and ``on_stopped`` is called when one ends so the
    controller looks again. An action still under way is not issued a second time. No Docker call
    goes out unless ``leading()``; an outcome the fence refuses goes to ``on_fenced``."""

    def __init__(self, store: Store, executor: Executor, clock: Callable[[], float], per_node: int = 8,
                 stopper: Executor | None = None, on_stopped: Callable[[], None] = lambda: None,
                 leading: Callable[[], bool] = lambda: True, on_fenced: Callable[[Fenced], None] = lambda exc: None):
        self.store, self.executor, self.clock, self.per_node = store, executor, clock, per_node
        self.stopper, self.on_stopped = stopper or executor, on_stopped
        self.leading, self.on_fenced = leading, on_fenced
        self._gates: dict[str, threading.Semaphore] = defaultdict(lambda: threading.Semaphore(self.per_node))
        self._inflight: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._unrecorded: list[_Outcome] = []  # finished actions waiting for the next batch (under _lock)
        self._recording = threading.Lock()  # held by the worker committing a batch

    def execute(self, p: Plan, hosts: dict[str, Host], stop: threading.Event | None = None) -> int:
        """Returns how many Docker actions this pass waited for (background stops not counted).

        Once ``stop`` is set it waits no longer: the calls still under way finish (or time out)
        on their own, and their outcomes are recorded if the process is still there.
        """
        self.record_decisions(p)  # Fenced (nothing committed, no call) if another controller took over
        waited = []
        for action in [*p.collects, *p.removals, *p.starts]:
            host = hosts.get(action.node)
            key = ("task", action.task_id) if isinstance(action, Start) else ("container", action.container_id)
            with self._lock:
                if host is None or key in self._inflight:
                    continue
                self._inflight.add(key)
            if isinstance(action, Remove) and action.grace > 0:
                self.stopper.submit(self._work, host, action, key, background=True)
            else:
                waited.append(self.executor.submit(self._work, host, action, key))
        wait_or_stop(waited, None, stop)
        for future in waited:
            if future.done():
                future.result()
        return len(waited)

    def _work(self, host: Host, action, key: tuple[str, str], background: bool = False) -> None:
        """Run one action and record its outcome (in this worker thread)."""
        try:
            status, result = self._run(host, action, gated=not background)
            if status == SKIPPED:
                return
            self._record(action, status, result)
            if isinstance(action, Collect) and status == "ok":
                # Removed only once its result is in the store: a controller killed in between
                # finds the container of a finished task and removes it, never loses the result.
                self._run(host, Remove(action.node, action.container_id, action.task_id, "collected", grace=0))
        except Fenced as exc:  # overtaken while the call ran: its outcome is the new leader's to find
            self.on_fenced(exc)
        except Exception:
            if not background:
                raise
            log.exception("recording the stop of container %s failed", action.container_id[:12])
        finally:
            with self._lock:
                self._inflight.discard(key)
            if background:
                self.on_stopped()

    def record_decisions(self, p: Plan) -> None:
        """Commit the plan's decisions in one (fenced) transaction. A plan with nothing to record and
        no Docker call opens none: most passes of a steady store, which would otherwise take the write
        lock every pass, waiting behind any other writer (and on PostgreSQL a leader paused inside
        that transaction holds the lock its successor's claim waits for)."""
        if not (p.new_tasks or p.task_updates or p.statuses or p.events or p.purges or p.rollbacks
                or p.docker_actions):
            return  # no call goes out, so no fence check is needed before one either
        now = self.clock()
        with self.store.transaction() as db:
            for t in p.new_tasks:
                self.store.insert_task(db, t)
            for task_id, changes in p.task_updates.items():
                self.store.update_task(db, task_id, **changes)
            for kind, namespace, name, status in p.statuses:
                self.store.set_status(db, kind, name, status, namespace)
            for e in p.events:
                self.store.add_event(db, e.kind, e.name, e.reason, e.message, e.type, e.task_id, ts=now,
                                     namespace=e.namespace)
            for kind, namespace, name in p.purges:
                self.store.purge_rows(db, kind, name, namespace)
            for back in p.rollbacks:
                try:
                    rev = self.store.rollback(db, back.service, back.template, now, "autoRollback", back.namespace,
                                              by="controller")
                except BrokerError as exc:  # deleted meanwhile, or its revision purged
                    self.store.add_event(db, "Service", back.service, "RollbackFailed", str(exc), "Warning", ts=now,
                                         namespace=back.namespace)
                else:
                    self.store.add_event(db, "Service", back.service, "RolledBack",
                                         f"template {back.template} is desired again (revision {rev['revision']}); "
                                         f"{back.why}", "Warning", ts=now, namespace=back.namespace)

    def _run(self, host: Host, action, gated: bool = True) -> tuple[str, object]:
        """Runs in a worker thread; returns ("ok", result), ("error", exception) or (SKIPPED, None)
        when this controller no longer surely leads (no call made).

        Starts, collects and forced removals share a per-node limit; graceful stops (mostly
        waiting) do not take from it, so a scale-down cannot hold up starts on that node.
        """
        with self._gates[host.name] if gated else nullcontext():
            if not self.leading():  # the lease may have passed to another controller: the call is its to make
                return SKIPPED, None
            try:
                if isinstance(action, Start):
                    return "ok", host.start(resolve(self.store, action.spec))
                if isinstance(action, Collect):
                    return "ok", host.collect(action.container_id, LOG_LIMIT_BYTES)
                return "ok", host.remove(action.container_id, action.grace, action.keep_output)
            except (StartError, Unresolved) as exc:
                return "error", exc
            except Withheld:  # a step after a pause, when the lease may have passed on: the new leader's to make
                return SKIPPED, None
            except TRANSPORT_ERRORS as exc:
                return "error", exc

    def _record(self, action, status: str, result) -> None:
        """Commit this outcome, with any others finished meanwhile, before returning (a group commit).

        The outcome is queued, then the worker takes the recording lock: whoever holds it commits
        everything queued so far in one transaction, so by the time this worker gets the lock its
        outcome is either committed (by the holder before) or still queued, and it commits the queue.
        If the batch fails for a reason other than the fence, each of its outcomes is tried alone, so
        one outcome that cannot be recorded does not lose the others."""
        mine = _Outcome(action, status, result)
        with self._lock:
            self._unrecorded.append(mine)
        with self._recording:
            with self._lock:
                batch, self._unrecorded = self._unrecorded, []
            if batch:
                self._record_batch(batch)
        if mine.error is not None:
            raise mine.error

    def _record_batch(self, batch: list[_Outcome]) -> None:
        try:
            self._record_outcomes(batch)
        except Fenced as exc:
            for outcome in batch:
                outcome.error = exc
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            for outcome in batch:
                try:
                    self._record_outcomes([outcome])
                except Exception as alone:
                    outcome.error = alone

    def _record_outcomes(self, batch: list[_Outcome]) -> None:
        now = self.clock()
        with self.store.transaction() as db:
            for o in batch:
                self._record_outcome(db, now, o.action, o.status, o.result)

    def _record_outcome(self, db, now: float, action, status: str, result) -> None:
        """Write one outcome inside the batch's transaction ``db``."""
        phase = self.store.task_state(db, action.task_id) if action.task_id else None
        active = phase is not None and phase.phase.active
        owner = (phase.owner_kind, phase.owner_name, phase.namespace) if phase else ("Node", action.node, "")
        event = lambda reason, msg, type="Normal": self.store.add_event(  # noqa: E731
            db, owner[0], owner[1], reason, msg, type, action.task_id, ts=now, namespace=owner[2])
        if isinstance(action, Start):
            if status == "ok" and active:
                self.store.update_task(db, action.task_id, container_id=result, phase=TaskPhase.RUNNING,
                                       started_at=now, reason="", message="")
                event("Started", f"{action.task_id} started on {action.node} (container {result[:12]})")
            elif isinstance(result, Unresolved) and active:
                # Not a failed attempt: it waits, placed, until the planner sees its Secrets again.
                if self.store.task(action.task_id).message != result.message:
                    self.store.update_task(db, action.task_id, reason=TaskReason.SECRET_UNAVAILABLE,
                                           message=result.message)
                    event(TaskReason.SECRET_UNAVAILABLE.value, f"{action.task_id}: {result.message}", "Warning")
            elif isinstance(result, StartError) and active:
                self.store.update_task(db, action.task_id, phase=TaskPhase.FAILED, reason=result.reason,
                                       message=result.message, finished_at=now)
                event(result.reason, f"{action.task_id}: {result.message}", "Warning")
            elif status == "error":
                event("FailedStart", f"{action.task_id} on {action.node}: {result}; will retry", "Warning")
        elif isinstance(action, Collect):
            if status != "ok":
                event("FailedCollect", f"{action.task_id} on {action.node}: {result}; will retry", "Warning")
                return
            self.store.save_output(db, action.task_id, result.output, result.truncated)
            if not active:
                return
            code = result.exit_code
            ok = code == 0
            reason = (TaskReason.COMPLETED if ok
                      else TaskReason.OOM_KILLED if result.oom_killed else TaskReason.ERROR)
            message = f"exit code {code}" + (f": {result.error}" if result.error else "")
            self.store.update_task(
                db, action.task_id, phase=TaskPhase.SUCCEEDED if ok else TaskPhase.FAILED, exit_code=code,
                oom_killed=result.oom_killed, reason=reason, message=message,
                finished_at=result.finished_at or now, container_id=action.container_id,
            )
            event("Succeeded" if ok else "Failed", f"{action.task_id} on {action.node}: {message}",
                  "Normal" if ok else "Warning")
        elif isinstance(action, Remove):
            if status == "ok" and result is not None and action.task_id and phase is not None:
                self.store.save_output(db, action.task_id, result, False)
            if status != "ok":
                event("FailedStop", f"container {action.container_id[:12]} on {action.node}: {result}", "Warning")
            elif action.task_id is None or phase is None:
                event("OrphanRemoved", f"container {action.container_id[:12]} on {action.node}: {action.reason}")


class _Outcome:
    """A finished action waiting to be recorded, and why recording it failed (if it did)."""

    __slots__ = ("action", "status", "result", "error")

    def __init__(self, action, status: str, result):
        self.action, self.status, self.result, self.error = action, status, result, None
