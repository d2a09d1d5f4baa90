"""The process verbs: run the reconcile loop (and the GitOps watcher) until a signal, and report the
store's status (which controller leads, at which epoch, the standbys, how busy, node and task counts),
its controller's heartbeat (the server's readiness) and the figures of the server's ``/metrics``.

Called by the CLI's ``controller`` and ``status`` commands (``cli/controller.py``) and by ``brokerctl
server`` (``api.server``), which runs the same loop beside its API (``run_beside``). Several processes
may run it on one store: one leads, the others stand by (``runtime.leader``); the watcher runs only
in the leader.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

from ..errors import UsageError
from ..kinds import Kind
from .polling import SYSTEM, Clock


# --lease-duration's bounds: renewed every second (every third of a shorter lease), so a shorter lease
# would be lost to a busy moment; a longer one would leave the store without a leader that long.
LEASE_MIN, LEASE_MAX = 0.5, 600.0


@dataclass(frozen=True)
class Settings:
    """How the controller runs (the `brokerctl controller` options)."""

    resync: float = 5.0  # seconds between full resyncs when nothing is running
    probe_interval: float = 1.0
    probe_timeout: float = 1.0
    lost_after: float = 3.0  # a node without a successful probe this long is Lost
    docker_timeout: float = 10.0
    watch: Path | None = None  # a directory of manifests to keep synced (GitOps)
    poll: bool = False  # with watch: poll for changes (network filesystems)
    sync_interval: float = 10.0  # with watch: sync this often too, which undoes drift
    allow_mass_prune: bool = False
    namespace: str = "default"  # with watch: where the directory's Jobs and Services that name none go
    lease_duration: float = 3.0  # seconds the leader's lease outlives its last renewal (a standby's takeover)
    queue: str = "fair"  # the order of waiting tasks: fair (fair share within a priority) or fifo
    fair_share_half_life: float = 3600.0  # seconds for a namespace's past use to weigh half


def lease_setting(seconds: float) -> float:
    """``--lease-duration`` checked against its bounds."""
    if not LEASE_MIN <= seconds <= LEASE_MAX:
        raise UsageError.out_of_range("lease-duration", seconds,
                                      f"must be between {LEASE_MIN:g} and {LEASE_MAX:g} seconds")
    return seconds


def queue_settings(queue: str, half_life: str) -> tuple[str, float]:
    """``--queue`` and ``--fair-share-half-life`` (a duration: 1h, 30m, 2d) checked: (order, seconds)."""
    from ..engine.fairshare import FAIR, FIFO
    from ..spec.fields import parse_duration

    if queue not in (FAIR, FIFO):
        raise UsageError(f"--queue {queue}: use fair (fair share between namespaces within a priority) or fifo "
                         "(priority, then first come)", option="queue", value=queue)
    try:
        seconds = parse_duration(half_life)
    except ValueError as exc:
        raise UsageError(f"--fair-share-half-life {half_life}: {exc}", option="fair-share-half-life",
                         value=half_life) from None
    return queue, seconds


def run(store, settings: Settings) -> None:
    """Run the reconcile loop until SIGINT/SIGTERM (containers keep running), with the watcher when
    ``settings.watch`` names a directory."""
    from ..runtime.controller import SignalShutdown

    ctl = _loop(store, settings)
    shutdown = SignalShutdown(ctl.stop, ctl.wake, release=lambda: ctl.release_lease(wait=0.2)).install()
    ctl.run()  # the watcher runs while this process leads
    shutdown.finish()


LIVE_HEARTBEAT = 10.0  # seconds: a controller whose heartbeat is younger is running


def heartbeat_age(store, clock: Clock = SYSTEM) -> float | None:
    """Seconds since the controller's last heartbeat; None when no controller holds the store's lease
    (a read of one row: the server's readiness asks it often)."""
    lease = store.lease()
    return None if lease is None else clock.time() - lease["heartbeat"]


class Figures(NamedTuple):
    """What the server's ``/metrics`` reports, read at each scrape."""

    tasks: dict[tuple[str, str], int]  # (namespace, phase) -> tasks, history included
    nodes: list[dict]  # node view objects: condition, slots, slotsUsed
    namespaces: list[tuple[dict, dict]]  # (namespace view object with its use, its quota: cpus, memory, tasks, slots)
    lease: dict | None  # the controller's lease with its stats (passes, pass histogram, Docker calls)
    heartbeat_age: float | None


def figures(store, clock: Clock = SYSTEM) -> Figures:
    from .resources import get_resources, namespace_objects

    records = store.resources(Kind.NAMESPACE)
    quotas = []
    for r in records:
        quota = r.model.spec.quota
        quotas.append({} if quota is None else {"cpus": quota.cpus, "memory": quota.memory_bytes(),
                                                "tasks": quota.tasks, "slots": dict(quota.slots)})
    lease = store.lease()
    return Figures(store.task_counts(), get_resources(store, Kind.NODE),
                   list(zip(namespace_objects(store, records), quotas)), lease,
                   None if lease is None else clock.time() - lease["heartbeat"])


def _loop(store, settings: Settings):
    """The controller of ``store`` with, when ``settings.watch`` names a directory, its GitOps watcher
    (started each time it takes the lead, stopped when it steps down)."""

    watcher = None
    if settings.watch is not None:
        from ..runtime.watch import Watcher
        from .sync import source_of, watch_step

        source = source_of(settings.watch)
        watcher = Watcher(store.location, source, watch_step(source, settings.allow_mass_prune, settings.namespace),
                          interval=settings.sync_interval, poll=settings.poll, secrets_key=store.secrets_key_path)
    return controller_for(store, settings, companions=(watcher,) if watcher is not None else ())


SERVER_EXIT_DEADLINE = 2.0  # seconds from SIGTERM/SIGINT to the end of `brokerctl server`, whatever it is doing


def run_beside(front: Callable[[threading.Event], None], store=None, settings: Settings | None = None) -> None:
    """Run ``front(stop)`` on this thread (the main one: `brokerctl server` serves its API there) and, given
    a ``store``, the reconcile loop (and the watcher) on threads beside it, until SIGINT/SIGTERM sets
    ``stop``; ``front`` returns soon after. Its controller leads, or stands by while another server or
    controller on the store leads (``runtime.leader``; the API serves either way); its first look at the
    lease is made before ``front`` starts, so a store moved elsewhere is refused at once (StoreError
    naming it). Whatever is still running ``SERVER_EXIT_DEADLINE`` seconds after the signal, the
    process ends then; containers keep running. It does not return: once all has stopped, the process
    ends (``SignalShutdown.end``)."""
    from ..runtime.controller import SignalShutdown

    stop, wake = threading.Event(), threading.Event()
    ctl = thread = None
    if store is not None:
        ctl = _loop(store, settings or Settings())
        ctl.leadership.start()
        wake = ctl.wake
        thread = threading.Thread(target=_logged(ctl.run), args=(stop,), daemon=True, name="controller")
    shutdown = SignalShutdown(stop, wake, deadline=SERVER_EXIT_DEADLINE,
                              release=lambda: ctl.release_lease(wait=0.2) if ctl else None).install()
    if thread is not None:
        thread.start()
    try:
        front(stop)
    finally:
        stop.set()
        wake.set()
        if thread is not None:
            thread.join(1.0)  # the loop checks `stop` between steps; it releases the lease on its way out
    shutdown.finish()
    shutdown.end()


def _logged(run: Callable[[threading.Event], None]) -> Callable[[threading.Event], None]:
    """The controller's thread: a loop that ends by an error is logged (the API goes on; /readyz fails)."""
    import logging

    def target(stop: threading.Event) -> None:
        try:
            run(stop)
        except Exception:
            logging.getLogger("brokerctl.controller").exception("the controller stopped")

    return target


def controller_for(store, settings: Settings, companions: tuple = ()):
    """The reconcile loop ``settings`` describe, on ``store`` (a connection of its own: while it leads,
    each write on it is fenced), with ``companions`` run while it leads (not started)."""
    from ..engine.fairshare import QueuePolicy
    from ..runtime.controller import Controller

    return Controller(store, resync=settings.resync, probe_interval=settings.probe_interval,
                      probe_timeout=settings.probe_timeout, lost_after=settings.lost_after,
                      docker_timeout=settings.docker_timeout, lease_duration=settings.lease_duration,
                      companions=companions, queue=QueuePolicy(settings.queue, settings.fair_share_half_life))


@dataclass(frozen=True)
class Status:
    path: Path | str  # the store as messages name it (a PostgreSQL URL without its password)
    store_id: str
    controller: dict | None  # the leader's lease while unexpired (pid, hostname, epoch, heartbeat, expires_at, stats)
    heartbeat_age: float | None  # seconds since its last renewal
    nodes: int
    ready: int  # nodes whose condition is Ready
    tasks: dict[str, int]  # phase -> how many tasks are in it (history included)
    epoch: int = 0  # the last leader's epoch (0: no controller ever led)
    expires_in: float | None = None  # seconds until the held lease expires (negative: expired that long ago)
    expired: dict | None = None  # a held lease that expired (its leader stopped renewing; a standby takes over)
    standbys: tuple[dict, ...] = ()  # the other controllers recently alive (pid, hostname, heartbeat, seen: age)


def status(store, clock: Clock = SYSTEM) -> Status:
    """The leader is the holder of an unexpired lease; the standbys, the other candidates whose
    heartbeat row is recent (they write it every ``runtime.leader.STANDBY_BEAT`` s)."""
    from ..runtime.leader import STANDBY_BEAT

    now = clock.time()
    lease = store.lease()
    row = store.lease_row()
    expires_in = lease["expires_at"] - now if lease else None
    running = lease if expires_in is not None and expires_in >= 0 else None
    standbys = tuple({**c, "seen": now - c["heartbeat"]} for c in store.candidates()
                     if now - c["heartbeat"] < 3 * STANDBY_BEAT and not (lease and c["holder"] == lease["holder"]))
    nodes = store.resources(Kind.NODE)
    ready = sum(n.status.get("condition") == "Ready" for n in nodes)
    counts = Counter(t.phase.value for t in store.tasks())
    return Status(store.path, store.store_id, running, now - lease["heartbeat"] if running else None, len(nodes),
                  ready, dict(counts), epoch=row["epoch"] if row else 0, expires_in=expires_in,
                  expired=lease if lease and not running else None, standbys=standbys)
