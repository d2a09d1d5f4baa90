"""The controller loop: wake -> observe -> plan -> act, until asked to stop.

Called by ``brokerctl controller`` (through ``ops.controller``). Several controllers may run on one
store: one leads and runs the loop, the others stand by (``runtime.leader``: the lease, its epoch,
the fence on every write); a standby keeps probing the nodes, so it takes over with their health
known, and a leader overtaken steps down and stands by again. While it leads, it wakes at once on
a commit by another process (``Store.subscribe``: a nudge datagram on
SQLite, a NOTIFY on PostgreSQL; the subscription's ``version``, polled every 50 ms, also catches a
commit made while a pass ran, and on SQLite any writer that sends no nudge),
when a Docker host reports a container event, when a retry backoff expires, and on a periodic
resync. A node's container list is reused, not re-read, while that node's event stream has
stayed open and reported nothing since the list, for at most ``resync`` seconds and never after
acting on that node; so a commit is acted on without waiting for a round of lists. A container
the list shows running after the event stream reported its ``die`` is taken as exited (the
daemon's list lags its events by a few milliseconds).
A pass reads from the store only what changed since the last one (``ledger.Ledger``; the first
pass of a controller reads everything), so its cost follows what is active and what changed, not
the history kept. One dead host or one bad resource never stops the loop for the others. On SIGINT/SIGTERM
(``SignalShutdown``) it stops between the steps of a pass, abandons the Docker calls still under
way (graceful stops included: the daemon goes on with a stop it was sent, and the next
controller re-issues it with what is left of its grace period) and releases its lease (a standby
takes over at once),
leaving containers running; whatever it is doing, the process is gone ``EXIT_DEADLINE`` seconds
after the signal.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable, Protocol

from .act import Actor, wait_or_stop
from .leader import LEASE_SECONDS, Leadership
from .ledger import Ledger
from .quiet import Quiet
from ..engine.actions import Plan
from ..engine.fairshare import QueuePolicy
from ..errors import StoreError
from ..docker.client import CALLS
from ..docker.host import Host, HostPool
from ..docker.events import EventWatcher
from ..docker.probe import Prober
from ..spec.models import Kind
from ..engine.plan import plan
from ..records import NodeObs, Snapshot
from ..store import Fenced, Store, Subscription

log = logging.getLogger("brokerctl.controller")

EXIT_DEADLINE = 1.5  # seconds from SIGTERM/SIGINT to the end of the process, whatever it is doing
# Upper bounds (seconds) of the pass-duration histogram published with the stats (`/metrics` of the server).
# Passes a node's container list is reused while its event stream stays open and quiet (see ``observe``).
RELIST_PASSES = 10
PASS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class _Listing:
    """A node's container list under way, and its event mark when the list was issued."""

    call: Future
    mark: tuple[int, int] | None  # None: no event stream vouches for the node (a twin, or not yet watched)


@dataclass(frozen=True)
class _Listed:
    """A node's last complete list, reused while its event mark stays ``mark`` (see ``observe``)."""

    mark: tuple[int, int]
    obs: NodeObs
    round: int  # the observation (pass) that listed it


class Companion(Protocol):
    """What runs beside the loop only while this controller leads (the GitOps watcher): started with
    the leader's holder and epoch (to fence its own store connection) and the lease's duration (the
    longest a transaction of it may idle), stopped when it steps down."""

    def start(self, holder: str, epoch: int, idle_limit: float) -> object: ...

    def stop(self) -> None: ...


class Controller:
    """``store``: a connection of the controller's own (while it leads, every write on it is fenced).
    ``lease_duration``: how long its lease outlives its last renewal (a standby's takeover time)."""

    def __init__(self, store: Store, *, resync: float = 5.0, busy_resync: float = 1.0,
                 probe_interval: float = 1.0, probe_timeout: float = 1.0, lost_after: float = 3.0,
                 docker_timeout: float = 10.0, list_wait: float = 2.0, lease_duration: float = LEASE_SECONDS,
                 companions: tuple[Companion, ...] = (), clock: Callable[[], float] = time.time, workers: int = 32,
                 queue: QueuePolicy = QueuePolicy(), relist_passes: int = RELIST_PASSES):
        self.store, self.clock = store, clock
        self.queue = queue  # the order of waiting tasks: fair share (and its half-life) or FIFO
        store.nudge = False  # our own commits must not wake us
        self.resync, self.busy_resync = resync, busy_resync
        self.relist_passes = max(1, relist_passes)
        self._round = 0  # observations made: the age of a list is counted in them
        self.lost_after, self.list_wait, self.probe_interval = lost_after, list_wait, probe_interval
        self.holder = uuid.uuid4().hex
        self.companions = companions
        self.wake = threading.Event()
        self.fatal: BaseException | None = None
        self.leadership = Leadership(store, self.holder, duration=lease_duration, clock=clock, stats=self.stats,
                                     on_change=self.wake.set, on_fatal=self._fatal)
        # Every request that changes a host asks first whether the lease is surely still ours.
        self.pool = HostPool(timeout=docker_timeout, gate=self.leadership.holds)
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="act")
        self.stopper = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stop")
        self.actor = Actor(store, self.executor, clock, stopper=self.stopper, on_stopped=self.wake.set,
                           leading=self.leadership.holds, on_fenced=self._fenced)
        self.watcher = EventWatcher(store.store_id, self.wake)
        self.prober = Prober(probe_interval, probe_timeout, on_change=self.wake.set, clock=clock)
        self._listing: dict[str, _Listing] = {}
        self._listed: dict[str, _Listed] = {}
        self.passes, self.lists, self.pass_seconds, self.last_pass = 0, 0, 0.0, 0.0
        self.took_over_at: float | None = None  # when this term of leadership began (``stats``)
        self.first_pass_at: float | None = None  # when its first pass ended
        self.pass_cpu_seconds = 0.0
        self.pass_counts = [0] * (len(PASS_BUCKETS) + 1)  # passes per bucket of PASS_BUCKETS, the last one over them
        self.changes: Subscription | None = None
        self.stop = threading.Event()
        self._twins: set[str] = set()
        self.ledger = Ledger(store, queue)  # what a pass needs of the store, kept between passes
        self.quiet = Quiet()  # whether a pass may skip planning (nothing changed since one that did nothing)
        self.quiet_passes = 0
        self._busy = False  # whether the last plan had anything active: a quiet pass is as busy as it

    def run(self, stop: threading.Event | None = None) -> None:
        """Lead or stand by until ``stop`` (or a store that refuses leadership for good: raised)."""
        self.stop = stop = stop or self.stop
        self.leadership.start()  # a store moved elsewhere raises here
        log.info("controller started on store %s (id %s); lease %gs", self.store.path, self.store.store_id,
                 self.leadership.duration)
        try:
            while not stop.is_set():
                epoch = self._stand_by(stop)
                if epoch is None:
                    break
                self._lead(epoch, stop)
        finally:
            self.leadership.stop(wait=0.5)
            self.watcher.stop()
            self.prober.stop()
            # Calls still under way are not waited for: a graceful stop can take its whole grace
            # period and a call to a hung daemon its timeout. The daemon goes on with a stop it
            # was sent; the next controller re-issues it with what is left of its grace period.
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.stopper.shutdown(wait=False, cancel_futures=True)
            self.release_lease(wait=0.5)
            log.info("controller stopped; containers keep running")
        if self.fatal is not None:
            raise self.fatal

    def _stand_by(self, stop: threading.Event) -> int | None:
        """Wait until this controller leads (its epoch; None once ``stop`` is set). Meanwhile keep
        probing and watching the nodes, so that a takeover starts with their health known."""
        next_look = 0.0
        while not stop.is_set():
            if (epoch := self.leadership.epoch) is not None:
                return epoch
            if time.monotonic() >= next_look:
                next_look = time.monotonic() + 1.0
                try:
                    self._track(self.store.resources(Kind.NODE))
                except StoreError:
                    pass  # out of reach for now; the leadership thread says so
            self.leadership.wait_leading(stop, timeout=0.1)
        return None

    def _lead(self, epoch: int, stop: threading.Event) -> None:
        """Run passes while this controller leads at ``epoch``, with its companions (the watcher)."""
        # Lists and marks from an earlier term may be stale: another leader acted meanwhile.
        self._listed.clear()
        self.took_over_at, self.first_pass_at = self.clock(), None
        self.changes = self.store.subscribe(self.wake.set)
        self.ledger.reset()  # a controller that (again) leads reads the whole store first: others wrote meanwhile
        self.quiet.forget()
        for companion in self.companions:
            companion.start(self.holder, epoch, self.leadership.duration)
        try:
            while not stop.is_set() and self.leadership.epoch == epoch:
                seen_version = self.changes.version()
                try:
                    p = self.reconcile_once()
                except Fenced as exc:  # overtaken: nothing of this pass was committed or sent
                    self._fenced(exc)
                    break
                except Exception:  # one bad pass must not end the loop
                    log.exception("reconcile pass failed; retrying")
                    self.ledger.reset()  # it may have stopped half-way through taking changes in
                    self.quiet.forget()
                    p = Plan(next_wake=self.clock() + 1.0)
                self._wait(stop, p, seen_version)
        finally:
            for companion in self.companions:
                companion.stop()
            self.changes.stop()

    def _fenced(self, exc: Fenced) -> None:
        self.leadership.step_down(exc.epoch, str(exc))

    def _fatal(self, exc: BaseException) -> None:
        """The store refuses leadership for good (moved elsewhere): end the process with that error."""
        log.error("%s", exc)
        self.fatal = exc
        self.stop.set()
        self.wake.set()

    def release_lease(self, wait: float) -> bool:
        """Give up the lease unless the store stays busy for ``wait`` seconds (then it expires, or the
        next controller on this host takes the lease of our dead pid at once)."""
        released = self.leadership.release(wait=wait)
        if not released:
            log.warning("store busy: lease left to expire (a controller on this host takes it over at once)")
        return released

    def reconcile_once(self) -> Plan:
        began, cpu = time.perf_counter(), time.thread_time()
        self.ledger.refresh()  # only what changed since the last pass (everything on the first)
        hosts = self._hosts(list(self.ledger.resources.values()))
        snapshot = self.observe(hosts)
        if self.stop.is_set():
            return Plan()
        self.ledger.see(snapshot)  # the tasks of containers seen that it does not hold
        secrets = any(key[0] is Kind.SECRET for key in self.ledger.resources)
        unreadable = self.store.secrets_problem() if secrets else None
        if self.quiet.holds(self.ledger.rows_read, snapshot, unreadable):
            self.quiet_passes += 1  # nothing it plans from changed since a pass that did nothing
            p, busy = self.quiet.skipped(), self._busy
        else:
            resources, tasks, settled, settled_usage = self.ledger.planner_input()
            p = plan(resources, tasks, snapshot, snapshot.taken_at, self.store.store_id, self.store.mark_key,
                     unreadable, self.queue, settled=settled, settled_usage=settled_usage)
            self.quiet.remember(p, snapshot, tasks, settled, unreadable)
            busy = self._busy = any(t.active for t in tasks) or bool(p.new_tasks) or p.docker_actions > 0
        if self.stop.is_set():  # acting is safe to skip: the next controller plans it again
            return Plan()
        answering = {n: h for n, h in hosts.items() if snapshot.nodes[n].ready}
        self._forget_lists(p)
        done = self.actor.execute(p, answering, self.stop)  # a host that does not answer gets no calls this pass
        for e in p.events:
            log.info("%s/%s %s: %s", e.kind, e.name, e.reason, e.message)
        self.ledger.settle(p.settled)
        self.passes += 1
        if self.first_pass_at is None:
            self.first_pass_at = self.clock()
            if self.took_over_at is not None:
                log.info("first pass as leader done %.2fs after taking over", self.first_pass_at - self.took_over_at)
        p.wake_at(snapshot.taken_at + (self.busy_resync if busy else self.resync))
        if done:  # what we just did changes the world: look again at once
            p.wake_at(self.clock())
        self._count_pass(time.perf_counter() - began)
        self.pass_cpu_seconds += time.thread_time() - cpu  # this thread's CPU: the pass without waiting for the machine
        return p

    def _count_pass(self, seconds: float) -> None:
        self.last_pass = seconds
        self.pass_seconds += seconds
        self.pass_counts[bisect.bisect_left(PASS_BUCKETS, seconds)] += 1

    def _forget_lists(self, p: Plan) -> None:
        """A node this pass acts on must be listed again next pass (not every change makes an event)."""
        for a in [*p.collects, *p.removals, *p.starts]:
            self._listed.pop(a.node, None)

    def stats(self) -> dict:
        """Published with each renewal of the lease, and by a standby with its heartbeat (``brokerctl
        status``, the server's ``/metrics``): passes, lists, Docker calls, CPU, ``passBuckets``: passes
        that took at most each bound of ``PASS_BUCKETS`` (cumulative, as a Prometheus histogram counts),
        when the last term began and its first pass ended (takeover times), and when the last request
        that changes a host was sent."""
        cumulative = list(itertools.accumulate(self.pass_counts[:-1]))
        return {"passes": self.passes, "quietPasses": self.quiet_passes, "lists": self.lists, "passSeconds": round(self.pass_seconds, 4),
                "passBuckets": {f"{bound:g}": n for bound, n in zip(PASS_BUCKETS, cumulative)},
                "lastPassSeconds": round(self.last_pass, 4),
                "passCpuSeconds": round(self.pass_cpu_seconds, 4), "cpuSeconds": round(time.process_time(), 3),
                "lastPassRowsRead": self.ledger.rows_read, "tasksHeld": len(self.ledger.tasks),
                "dockerCalls": CALLS.snapshot(), "nudges": bool(self.changes and self.changes.listening),
                "tookOverAt": self.took_over_at, "firstPassAt": self.first_pass_at,
                "lastChangeAt": CALLS.last_change_at}

    def _hosts(self, resources) -> dict[str, Host]:
        hosts = self._track(resources)
        self.prober.wait_first(set(hosts), self.prober.timeout + 0.2, self.stop)  # new nodes: one probe before judging them
        return hosts

    def _track(self, resources) -> dict[str, Host]:
        """The Nodes' hosts, with the prober and the event watcher following them."""
        hosts = {}
        for r in resources:
            if r.kind is Kind.NODE:
                spec = r.model.spec
                tls = spec.tls.model_dump() if spec.tls else None
                hosts[r.name] = self.pool.get(r.name, spec.address, tls)
        # A Node whose daemon an older Node uses (``engine.nodes.twins``) is not listed and its events
        # are not watched: the older Node sees that daemon's containers.
        self._twins = {r.name for r in resources if r.kind is Kind.NODE and r.status.get("twinOf")}
        self.pool.retain(set(hosts))
        self.watcher.track({n: h for n, h in hosts.items() if n not in self._twins})
        self.prober.track(hosts)
        return hosts

    def observe(self, hosts: dict[str, Host]) -> Snapshot:
        """List every node the prober finds answering, in parallel, waiting at most ``list_wait``.

        A node that stops answering mid-list is simply not listed this pass (its tasks are left
        as they are); its list call finishes in the background and is not issued again until then.
        A node whose event stream reported nothing since its last list keeps that list for
        ``relist_passes`` observations; lists older than that are read again oldest first, at most
        ``ceil(nodes / relist_passes)`` a pass, so no list is older than ``2 * relist_passes`` passes
        and a pass lists a bounded share of the nodes.
        """
        now = self.clock()
        self._round += 1
        futures, nodes, due = {}, {}, []
        for name, host in hosts.items():
            probe = self.prober.state(name)
            health = {"failures": probe.failures, "last_ok": probe.last_ok, "failing_since": probe.failing_since}
            if not probe.ok:
                self._listed.pop(name, None)
                nodes[name] = NodeObs(name, ready=False, message=probe.message, **health)
                continue
            twin = name in self._twins
            mark = None if twin else self.watcher.mark(name)
            listed = self._listed.get(name)
            if mark is not None and listed is not None and listed.mark == mark:
                if self._round - listed.round >= self.relist_passes:
                    due.append((listed.round, name, health))
                nodes[name] = replace(self._with_exits(listed.obs), **health)
                continue
            futures[name] = (self._list(name, host, mark, twin, now), health)
        for _, name, health in sorted(due, key=lambda d: d[:2])[:-(-len(hosts) // self.relist_passes)]:
            futures[name] = (self._list(name, hosts[name], self._listed[name].mark, False, now), health)  # oldest first
        wait_or_stop([pending.call for pending, _ in futures.values()], self.list_wait, self.stop)
        for name, (pending, health) in futures.items():
            f = pending.call
            if f.done() and f.exception() is None:
                obs = f.result()
                nodes[name] = replace(self._with_exits(obs), **health)
                self._listing.pop(name, None)
                if obs.ready and pending.mark is not None:
                    self._listed[name] = _Listed(pending.mark, obs, self._round)
            elif name in nodes:  # a list read again when due, not back yet: the last one stands
                pass
            else:
                nodes[name] = NodeObs(name, ready=True, message="container list did not finish in time", **health)
        return Snapshot(nodes=nodes, taken_at=now, lost_after=self.lost_after,
                        probe_interval=self.probe_interval)

    def _list(self, name: str, host: Host, mark: tuple[int, int] | None, twin: bool, now: float) -> _Listing:
        """The node's container list: the one under way, or a new one (of a twin: its info only)."""
        pending = self._listing.get(name)
        if pending is None or pending.call.done():
            call = (self.executor.submit(host.observe, self.store.store_id, now, list_containers=False)
                    if twin else self.executor.submit(host.observe, self.store.store_id, now))
            pending = self._listing[name] = _Listing(call, mark)
            self.lists += not twin
        return pending

    def _with_exits(self, obs: NodeObs) -> NodeObs:
        """A container the list shows running after its ``die`` event is taken as exited."""
        exits = self.watcher.exits(obs.name)
        if not exits or not obs.containers:
            return obs
        return replace(obs, containers=tuple(
            replace(c, state="exited", exit_code=exits[c.id]) if c.id in exits and not c.finished else c
            for c in obs.containers))

    def _wait(self, stop: threading.Event, p: Plan, seen_version: object) -> None:
        """Sleep until the store changes, a host event, the plan's wake time, a change of leadership,
        or stop. (The lease is renewed by the leadership thread, whatever the loop does.)"""
        deadline = p.next_wake if p.next_wake is not None else self.clock() + self.resync
        self.wake.clear()
        while not stop.is_set() and not self.wake.is_set():
            now = self.clock()
            if now >= deadline or self.changes.version() != seen_version:
                break
            self.wake.wait(min(0.05, max(0.0, deadline - now)))


class SignalShutdown:
    """SIGTERM and SIGINT end the controller process within ``deadline`` seconds, whatever it does.

    The first signal sets ``stop`` (the loop checks it between the steps of a pass and while it
    waits) and wakes the loop. The signal is read on a thread of its own from the wakeup fd of
    Python's C-level handler, so it is seen at once even while the main thread is blocked in a C
    call (a SQLite busy wait) or busy in a long pass. ``deadline`` seconds after it, or at once on
    a second signal, the process exits: logs flushed, the lease released if the store is free
    within 0.2 s, then ``os._exit``. A transaction in flight is rolled back (by SQLite, or by
    PostgreSQL when the connection drops), and
    a lease held by a dead pid on this host is taken over at once, so nothing is lost.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, stop: threading.Event, wake: threading.Event, deadline: float = EXIT_DEADLINE,
                 release: Callable[[], object] = lambda: None):
        self.stop, self.wake, self.deadline, self.release = stop, wake, deadline, release
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)

    def install(self) -> "SignalShutdown":
        """Call from the main thread before the loop starts."""
        for sig in self.SIGNALS:
            signal.signal(sig, lambda *_: self.stop.set())
        signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        threading.Thread(target=self._watch, daemon=True, name="shutdown").start()
        return self

    def _watch(self) -> None:
        received = 0
        first_at = None
        while True:
            timeout = None if first_at is None else max(0.0, first_at + self.deadline - time.monotonic())
            self._reader.settimeout(timeout)
            try:
                data = self._reader.recv(64)
            except socket.timeout:
                self.exit(f"still busy {self.deadline:g}s after the signal")
                return
            received += sum(1 for b in data if b in self.SIGNALS)
            if received and first_at is None:
                first_at = time.monotonic()
                self.stop.set()
                self.wake.set()
            if received > 1:
                self.exit("second signal")
                return

    def finish(self) -> None:
        """After the loop returned: exit now if Docker calls still linger in worker threads
        (the interpreter would otherwise join them at exit, for up to a grace period)."""
        end = time.monotonic() + 0.2  # idle workers are leaving already
        for t in self._workers():
            t.join(max(0.0, end - time.monotonic()))
        if busy := self._workers():
            self.exit(f"{len(busy)} Docker call(s) still under way abandoned", release=False)

    @staticmethod
    def _workers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if not t.daemon and t is not threading.main_thread() and t.is_alive()]

    def exit(self, why: str, release: bool = True) -> None:
        if release:
            self.release()
        log.warning("exiting: %s; containers keep running", why)
        self.end()

    @staticmethod
    def end() -> None:
        """End the process now, its logs flushed. `brokerctl server` ends so once everything has
        stopped: the interpreter's own finalisation, after uvicorn and anyio, can take a second more."""
        logging.shutdown()  # flushes every handler
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(0)
