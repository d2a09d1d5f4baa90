"""The controller loop: wake -> observe -> plan -> act, until asked to stop.

Called by ``brokerctl controller``. It holds the store's lease (a second controller refuses to
start), wakes within ~50 ms of any commit by another process (``PRAGMA data_version``), when a
Docker host reports a container event, when a retry backoff expires, and on a periodic resync.
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
from .dockerhost import EventWatcher, Host, HostPool, Prober
from .models import Kind
from .plan import plan
from .records import NodeObs, Snapshot
from .store import Store

log = logging.getLogger("brokerctl.controller")

LEASE_STALE_SECONDS = 10.0


class Controller:
    def __init__(self, store: Store, *, resync: float = 5.0, busy_resync: float = 1.0,
                 probe_interval: float = 1.0, probe_timeout: float = 1.0, lost_after: float = 3.0,
                 docker_timeout: float = 10.0, list_wait: float = 2.0,
                 clock: Callable[[], float] = time.time, workers: int = 32):
        self.store, self.clock = store, clock
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
        self._listing: dict[str, Future] = {}  # node -> container list still under way
        self.passes = 0

    def run(self, stop: threading.Event) -> None:
        self.store.acquire_lease(self.holder, LEASE_STALE_SECONDS)
        log.info("controller started on store %s (id %s)", self.store.path, self.store.store_id)
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
            self.watcher.stop()
            self.prober.stop()
            self.executor.shutdown(wait=True, cancel_futures=False)
            self.stopper.shutdown(wait=True, cancel_futures=False)
            self.store.release_lease(self.holder)
            log.info("controller stopped; containers keep running")

    def reconcile_once(self) -> Plan:
        resources = self.store.resources()
        tasks = self.store.tasks()
        hosts = self._hosts(resources)
        snapshot = self.observe(hosts)
        p = plan(resources, tasks, snapshot, snapshot.taken_at, self.store.store_id)
        answering = {n: h for n, h in hosts.items() if snapshot.nodes[n].ready}
        done = self.actor.execute(p, answering)  # a host that does not answer gets no calls this pass
        for e in p.events:
            log.info("%s/%s %s: %s", e.kind, e.name, e.reason, e.message)
        self.passes += 1
        busy = any(t.active for t in tasks) or bool(p.new_tasks) or p.docker_actions > 0
        p.wake_at(snapshot.taken_at + (self.busy_resync if busy else self.resync))
        if done:  # what we just did changes the world: look again at once
            p.wake_at(self.clock())
        return p

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
        """
        now = self.clock()
        futures, nodes = {}, {}
        for name, host in hosts.items():
            probe = self.prober.state(name)
            health = {"failures": probe.failures, "last_ok": probe.last_ok, "failing_since": probe.failing_since}
            if not probe.ok:
                nodes[name] = NodeObs(name, ready=False, message=probe.message, **health)
                continue
            pending = self._listing.get(name)
            if pending is None or pending.done():
                pending = self._listing[name] = self.executor.submit(host.observe, self.store.store_id, now)
            futures[name] = (pending, health)
        wait([f for f, _ in futures.values()], timeout=self.list_wait)
        for name, (f, health) in futures.items():
            if f.done() and f.exception() is None:
                nodes[name] = replace(f.result(), **health)
                self._listing.pop(name, None)
            else:
                nodes[name] = NodeObs(name, ready=True, message="container list did not finish in time", **health)
        return Snapshot(nodes=nodes, taken_at=now, lost_after=self.lost_after)

    def _wait(self, stop: threading.Event, p: Plan, seen_version: int) -> bool:
        """Sleep until the store changes, a host event, the plan's wake time, or stop."""
        deadline = p.next_wake if p.next_wake is not None else self.clock() + self.resync
        last_beat = 0.0
        self.wake.clear()
        while not stop.is_set() and not self.wake.is_set():
            now = self.clock()
            if now - last_beat >= 1.0:
                with self.store.transaction() as db:
                    if not self.store.heartbeat(db, self.holder, now):
                        return False
                last_beat = now
            if now >= deadline or self.store.data_version() != seen_version:
                break
            self.wake.wait(min(0.05, max(0.0, deadline - now)))
        return True
