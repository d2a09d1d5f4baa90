"""The controller loop: wake -> observe -> plan -> act, until asked to stop.

Called by ``brokerctl controller``. It holds the store's lease (a second controller refuses to
start), wakes at once on a commit by another process (a nudge datagram from the committing
``Store``; ``PRAGMA data_version``, polled every 50 ms, catches any writer that does not send one),
when a Docker host reports a container event, when a retry backoff expires, and on a periodic
resync. A node's container list is reused, not re-read, while that node's event stream has
stayed open and reported nothing since the list, for at most ``resync`` seconds and never after
acting on that node; so a commit is acted on without waiting for a round of lists. A container
the list shows running after the event stream reported its ``die`` is taken as exited (the
daemon's list lags its events by a few milliseconds).
One dead host or one bad resource never stops the loop for the others. On SIGINT/SIGTERM it
finishes the pass and returns, leaving containers running.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Callable

from .act import Actor
from .actions import Plan
from .dockerhost import CALLS, EventWatcher, Host, HostPool, Prober
from .models import Kind
from .plan import plan
from .records import NodeObs, Snapshot
from .store import NudgeListener, Store

log = logging.getLogger("brokerctl.controller")

LEASE_STALE_SECONDS = 10.0


class Controller:
    def __init__(self, store: Store, *, resync: float = 5.0, busy_resync: float = 1.0,
                 probe_interval: float = 1.0, probe_timeout: float = 1.0, lost_after: float = 3.0,
                 docker_timeout: float = 10.0, list_wait: float = 2.0,
                 clock: Callable[[], float] = time.time, workers: int = 32):
        self.store, self.clock = store, clock
        store.nudge = False  # our own commits must not wake us
        self.resync, self.busy_resync = resync, busy_resync
        self.lost_after, self.list_wait = lost_after, list_wait
        self.holder = uuid.uuid4().hex
        self.pool = HostPool(timeout=docker_timeout)
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="act")
        self.stopper = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stop")
        self.wake = threading.Event()
        self.actor = Actor(store, self.executor, clock, stopper=self.stopper, on_stopped=self.wake.set)
        self.watcher = EventWatcher(store.store_id, self.wake)
        self.prober = Prober(probe_interval, probe_timeout, on_change=self.wake.set, clock=clock)
        self._listing: dict[str, tuple[Future, tuple | None]] = {}  # node -> (list under way, event mark before it)
        self._listed: dict[str, tuple[tuple, NodeObs, float]] = {}  # node -> (event mark before, list, when)
        self.passes, self.lists, self.pass_seconds, self.last_pass = 0, 0, 0.0, 0.0
        self.nudges: NudgeListener | None = None

    def run(self, stop: threading.Event) -> None:
        self.store.acquire_lease(self.holder, LEASE_STALE_SECONDS)
        log.info("controller started on store %s (id %s)", self.store.path, self.store.store_id)
        self.nudges = NudgeListener(self.store.store_id, self.wake.set)
        try:
            while not stop.is_set():
                seen_version = self.store.data_version()
                try:
                    p = self.reconcile_once()
                except Exception:  # one bad pass must not end the loop
                    log.exception("reconcile pass failed; retrying")
                    p = Plan(next_wake=self.clock() + 1.0)
                if not self._wait(stop, p, seen_version):
                    log.error("lost the store lease to another controller; stopping")
                    return
        finally:
            self.nudges.stop()
            self.watcher.stop()
            self.prober.stop()
            self.executor.shutdown(wait=True, cancel_futures=False)
            self.stopper.shutdown(wait=True, cancel_futures=False)
            self.store.release_lease(self.holder)
            log.info("controller stopped; containers keep running")

    def reconcile_once(self) -> Plan:
        began = time.perf_counter()
        resources = self.store.resources()
        tasks = self.store.tasks()
        hosts = self._hosts(resources)
        snapshot = self.observe(hosts)
        p = plan(resources, tasks, snapshot, snapshot.taken_at, self.store.store_id, self.store.mark_key)
        answering = {n: h for n, h in hosts.items() if snapshot.nodes[n].ready}
        self._forget_lists(p)
        done = self.actor.execute(p, answering)  # a host that does not answer gets no calls this pass
        for e in p.events:
            log.info("%s/%s %s: %s", e.kind, e.name, e.reason, e.message)
        self.passes += 1
        busy = any(t.active for t in tasks) or bool(p.new_tasks) or p.docker_actions > 0
        p.wake_at(snapshot.taken_at + (self.busy_resync if busy else self.resync))
        if done:  # what we just did changes the world: look again at once
            p.wake_at(self.clock())
        self.last_pass = time.perf_counter() - began
        self.pass_seconds += self.last_pass
        return p

    def _forget_lists(self, p: Plan) -> None:
        """A node this pass acts on must be listed again next pass (not every change makes an event)."""
        for a in [*p.collects, *p.removals, *p.starts]:
            self._listed.pop(a.node, None)

    def stats(self) -> dict:
        """Published with each heartbeat (``brokerctl status``): passes, lists, Docker calls, CPU."""
        return {"passes": self.passes, "lists": self.lists, "passSeconds": round(self.pass_seconds, 4),
                "lastPassSeconds": round(self.last_pass, 4), "cpuSeconds": round(time.process_time(), 3),
                "dockerCalls": CALLS.snapshot(), "nudges": bool(self.nudges and self.nudges.listening)}

    def _hosts(self, resources) -> dict[str, Host]:
        hosts = {}
        for r in resources:
            if r.kind is Kind.NODE:
                spec = r.model.spec
                tls = spec.tls.model_dump() if spec.tls else None
                hosts[r.name] = self.pool.get(r.name, spec.address, tls)
        self.pool.retain(set(hosts))
        self.watcher.track(hosts)
        self.prober.track(hosts)
        self.prober.wait_first(set(hosts), self.prober.timeout + 0.2)  # new nodes: one probe before judging them
        return hosts

    def observe(self, hosts: dict[str, Host]) -> Snapshot:
        """List every node the prober finds answering, in parallel, waiting at most ``list_wait``.

        A node that stops answering mid-list is simply not listed this pass (its tasks are left
        as they are); its list call finishes in the background and is not issued again until then.
        A node whose event stream reported nothing since its last list keeps that list (see above).
        """
        now = self.clock()
        futures, nodes = {}, {}
        for name, host in hosts.items():
            probe = self.prober.state(name)
            health = {"failures": probe.failures, "last_ok": probe.last_ok, "failing_since": probe.failing_since}
            if not probe.ok:
                self._listed.pop(name, None)
                nodes[name] = NodeObs(name, ready=False, message=probe.message, **health)
                continue
            mark = self.watcher.mark(name)
            listed = self._listed.get(name)
            if mark is not None and listed is not None and listed[0] == mark and now - listed[2] < self.resync:
                nodes[name] = replace(self._with_exits(listed[1]), **health)
                continue
            pending = self._listing.get(name)
            if pending is None or pending[0].done():
                pending = self._listing[name] = (self.executor.submit(host.observe, self.store.store_id, now), mark)
                self.lists += 1
            futures[name] = (pending, health)
        wait([f for (f, _), _ in futures.values()], timeout=self.list_wait)
        for name, ((f, mark), health) in futures.items():
            if f.done() and f.exception() is None:
                obs = f.result()
                nodes[name] = replace(self._with_exits(obs), **health)
                self._listing.pop(name, None)
                if obs.ready and mark is not None:
                    self._listed[name] = (mark, obs, now)
            else:
                nodes[name] = NodeObs(name, ready=True, message="container list did not finish in time", **health)
        return Snapshot(nodes=nodes, taken_at=now, lost_after=self.lost_after)

    def _with_exits(self, obs: NodeObs) -> NodeObs:
        """A container the list shows running after its ``die`` event is taken as exited."""
        exits = self.watcher.exits(obs.name)
        if not exits or not obs.containers:
            return obs
        return replace(obs, containers=tuple(
            replace(c, state="exited", exit_code=exits[c.id]) if c.id in exits and not c.finished else c
            for c in obs.containers))

    def _wait(self, stop: threading.Event, p: Plan, seen_version: int) -> bool:
        """Sleep until the store changes, a host event, the plan's wake time, or stop."""
        deadline = p.next_wake if p.next_wake is not None else self.clock() + self.resync
        last_beat = 0.0
        self.wake.clear()
        while not stop.is_set() and not self.wake.is_set():
            now = self.clock()
            if now - last_beat >= 1.0:
                with self.store.transaction() as db:
                    if not self.store.heartbeat(db, self.holder, now, self.stats()):
                        return False
                last_beat = now
            if now >= deadline or self.store.data_version() != seen_version:
                break
            self.wake.wait(min(0.05, max(0.0, deadline - now)))
        return True
