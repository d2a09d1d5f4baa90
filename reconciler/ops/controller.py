"""The process verbs: run the reconcile loop (and the GitOps watcher) until a signal, and report the
store's status (is a controller running, how busy, node and task counts).

Called by the CLI's ``controller`` and ``status`` commands (``cli/controller.py``); an API server
will start the same loop in its own process.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..kinds import Kind
from .polling import SYSTEM, Clock


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


def run(store, settings: Settings) -> None:
    """Run the reconcile loop until SIGINT/SIGTERM (containers keep running), with the watcher when
    ``settings.watch`` names a directory."""
    from ..runtime.controller import Controller, SignalShutdown

    watcher = None
    if settings.watch is not None:
        from ..runtime.watch import Watcher
        from .sync import source_of, watch_step

        source = source_of(settings.watch)
        watcher = Watcher(store.location, source, watch_step(source, settings.allow_mass_prune, settings.namespace),
                          interval=settings.sync_interval, poll=settings.poll, secrets_key=store.secrets_key_path)
    ctl = Controller(store, resync=settings.resync, probe_interval=settings.probe_interval,
                     probe_timeout=settings.probe_timeout, lost_after=settings.lost_after,
                     docker_timeout=settings.docker_timeout)
    shutdown = SignalShutdown(ctl.stop, ctl.wake, release=lambda: ctl.release_lease(wait=0.2)).install()
    if watcher is not None:
        watcher.start()
    try:
        ctl.run()
    finally:
        if watcher is not None:
            watcher.stop()
    shutdown.finish()


@dataclass(frozen=True)
class Status:
    path: Path | str  # the store as messages name it (a PostgreSQL URL without its password)
    store_id: str
    controller: dict | None  # the running controller's lease (pid, hostname, heartbeat, started_at, stats)
    heartbeat_age: float | None  # seconds since its last heartbeat
    nodes: int
    ready: int  # nodes whose condition is Ready
    tasks: dict[str, int]  # phase -> how many tasks are in it (history included)


def status(store, clock: Clock = SYSTEM) -> Status:
    """A controller counts as running while its heartbeat is under 10 s old."""
    lease = store.lease()
    age = clock.time() - lease["heartbeat"] if lease else None
    running = lease if age is not None and age < 10 else None
    nodes = store.resources(Kind.NODE)
    ready = sum(n.status.get("condition") == "Ready" for n in nodes)
    counts = Counter(t.phase.value for t in store.tasks())
    return Status(store.path, store.store_id, running, age if running else None, len(nodes), ready, dict(counts))
