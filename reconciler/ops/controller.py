"""The process verbs: run the reconcile loop (and the GitOps watcher) until a signal, and report the
store's status (which controller leads, at which epoch, the standbys, how busy, node and task counts).

Called by the CLI's ``controller`` and ``status`` commands (``cli/controller.py``); an API server
starts the same loop in its own process. Several processes may run it on one store: one leads,
the others stand by (``runtime.leader``); the watcher runs only in the leader.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

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
                     docker_timeout=settings.docker_timeout, lease_duration=settings.lease_duration,
                     companions=(watcher,) if watcher is not None else ())
    shutdown = SignalShutdown(ctl.stop, ctl.wake, release=lambda: ctl.release_lease(wait=0.2)).install()
    ctl.run()  # the watcher runs while this process leads
    shutdown.finish()


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
