"""Carry out a Plan: record its decisions, run its Docker actions in parallel, record outcomes.

Called by the controller after ``plan``. Order matters for crash safety: decisions (new tasks,
placements, phase changes) are committed first, so a container never exists for a task the
store does not know; then the Docker calls run, at most ``per_node`` at a time on each host,
with no transaction held; each outcome is committed as it arrives. Every Docker action is
idempotent (containers have deterministic names and labels), so re-running a half-applied plan
converges instead of creating twins.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from concurrent.futures import Executor, as_completed
from typing import Callable

from .actions import Collect, Plan, Remove, Start
from .errors import BrokerError
from .dockerhost import TRANSPORT_ERRORS, Host, StartError
from .models import TaskPhase
from .store import LOG_LIMIT_BYTES, Store


class Actor:
    def __init__(self, store: Store, executor: Executor, clock: Callable[[], float], per_node: int = 8):
        self.store, self.executor, self.clock, self.per_node = store, executor, clock, per_node
        self._gates: dict[str, threading.Semaphore] = defaultdict(lambda: threading.Semaphore(self.per_node))

    def execute(self, p: Plan, hosts: dict[str, Host]) -> None:
        self.record_decisions(p)
        futures = {}
        for action in [*p.collects, *p.removals, *p.starts]:
            host = hosts.get(action.node)
            if host is not None:
                futures[self.executor.submit(self._run, host, action)] = action
        for future in as_completed(futures):
            self._record_outcome(futures[future], *future.result())

    def record_decisions(self, p: Plan) -> None:
        now = self.clock()
        with self.store.transaction() as db:
            for t in p.new_tasks:
                self.store.insert_task(db, t)
            for task_id, changes in p.task_updates.items():
                self.store.update_task(db, task_id, **changes)
            for kind, name, status in p.statuses:
                self.store.set_status(db, kind, name, status)
            for e in p.events:
                self.store.add_event(db, e.kind, e.name, e.reason, e.message, e.type, e.task_id, ts=now)
            for kind, name in p.purges:
                self.store.purge_rows(db, kind, name)
            for name, to, why in p.rollbacks:
                try:
                    rev = self.store.rollback(db, name, to, now, "autoRollback")
                except BrokerError as exc:  # deleted meanwhile, or its revision purged
                    self.store.add_event(db, "Service", name, "RollbackFailed", str(exc), "Warning", ts=now)
                else:
                    self.store.add_event(db, "Service", name, "RolledBack",
                                         f"template {to} is desired again (revision {rev['revision']}); {why}",
                                         "Warning", ts=now)

    def _run(self, host: Host, action) -> tuple[str, object]:
        """Runs in a worker thread; returns ("ok", result) or ("error", exception)."""
        with self._gates[host.name]:
            try:
                if isinstance(action, Start):
                    return "ok", host.start(action.spec)
                if isinstance(action, Collect):
                    return "ok", host.collect(action.container_id, LOG_LIMIT_BYTES)
                return "ok", host.remove(action.container_id, action.grace, action.keep_output)
            except StartError as exc:
                return "error", exc
            except TRANSPORT_ERRORS as exc:
                return "error", exc

    def _record_outcome(self, action, status: str, result) -> None:
        now = self.clock()
        with self.store.transaction() as db:
            phase = db.execute("SELECT phase, owner_kind, owner_name FROM tasks WHERE id = ?",
                               [action.task_id]).fetchone() if action.task_id else None
            active = phase is not None and TaskPhase(phase[0]).active
            owner = (phase[1], phase[2]) if phase else ("Node", action.node)
            event = lambda reason, msg, type="Normal": self.store.add_event(  # noqa: E731
                db, owner[0], owner[1], reason, msg, type, action.task_id, ts=now)
            if isinstance(action, Start):
                if status == "ok" and active:
                    self.store.update_task(db, action.task_id, container_id=result, phase=TaskPhase.RUNNING,
                                           started_at=now, reason="", message="")
                    event("Started", f"{action.task_id} started on {action.node} (container {result[:12]})")
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
                self.store.save_output(db, action.task_id, result["output"], result["truncated"])
                if not active:
                    return
                code = result["exit_code"]
                ok = code == 0
                reason = "Completed" if ok else ("OOMKilled" if result["oom_killed"] else "Error")
                message = f"exit code {code}" + (f": {result['error']}" if result["error"] else "")
                self.store.update_task(
                    db, action.task_id, phase=TaskPhase.SUCCEEDED if ok else TaskPhase.FAILED, exit_code=code,
                    oom_killed=result["oom_killed"], reason=reason, message=message,
                    finished_at=result["finished_at"] or now, container_id=action.container_id,
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
