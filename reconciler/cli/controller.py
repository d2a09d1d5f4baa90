"""The process commands: controller (run the reconcile loop), status, schema.

Registered by ``app``. ``controller`` sets up logging and hands its options to
``ops.controller.run``; ``status`` prints ``ops.controller.status``; ``schema`` prints a kind's
JSON Schema.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .common import (
    half_life_option, lease_duration_option, namespace, namespace_option, open_store, queue_option, remote,
    store_command,
)


def status() -> None:
    """Store path, the leading controller (epoch, lease expiry) and the standbys, node and task counts."""
    if (server := remote()) is not None:
        st = _remote_status(server.status())
    else:
        from ..ops import controller

        st = controller.status(open_store())
    typer.echo(f"store:      {st.path} (id {st.store_id})")
    if st.controller:
        lease = st.controller
        typer.echo(f"controller: running (pid {lease['pid']} on {lease['hostname']}, "
                   f"heartbeat {st.heartbeat_age:.1f}s ago)")
        typer.echo(f"leader:     epoch {st.epoch}, lease expires in {st.expires_in:.1f}s")
        _show_stats(lease)
    elif st.expired:
        typer.echo(f"controller: none leads (the lease of pid {st.expired['pid']} on {st.expired['hostname']}, "
                   f"epoch {st.epoch}, expired {-st.expires_in:.1f}s ago; a standby takes it over)")
    else:
        typer.echo("controller: not running (start one with `brokerctl controller`)")
    if st.standbys:
        typer.echo("standbys:   " + ", ".join(f"pid {c['pid']} on {c['hostname']} (seen {c['seen']:.1f}s ago)"
                                              for c in st.standbys))
    elif st.controller:
        typer.echo("standbys:   none (each `brokerctl controller` on this store beside the leader is one)")
    typer.echo(f"nodes:      {st.nodes} ({st.ready} ready)")
    typer.echo("tasks:      " + (", ".join(f"{n} {p}" for p, n in sorted(st.tasks.items())) or "0"))


def _remote_status(body: dict):
    """The server's `/api/v1/status` in the shape of ``ops.controller.Status``, which ``status`` prints."""
    from types import SimpleNamespace

    lease = body["controller"]
    if lease is not None:
        lease = {**lease, "started_at": lease["startedAt"]}
    expired = body.get("expired")
    return SimpleNamespace(path=body["store"], store_id=body["storeId"], controller=lease,
                           heartbeat_age=body["heartbeatAge"], nodes=body["nodes"], ready=body["ready"],
                           tasks=body["tasks"], epoch=body["epoch"], expires_in=body["expiresIn"],
                           expired=expired, standbys=tuple(body["standbys"]))


def _show_stats(lease: dict) -> None:
    """The counters the controller publishes with its heartbeat."""
    stats = lease["stats"]
    if not stats:
        return
    up = max(lease["heartbeat"] - lease["started_at"], 1e-9)
    calls = stats.get("dockerCalls", {})
    typer.echo(f"            {stats['passes']} passes (last {stats['lastPassSeconds'] * 1000:.0f} ms), "
               f"{stats['lists']} container lists, CPU {100 * stats['cpuSeconds'] / up:.1f}% of a core "
               f"since start")
    if calls:
        typer.echo("            Docker API calls: " + ", ".join(
            f"{k} {n}" for k, n in sorted(calls.items(), key=lambda kv: -kv[1])))


def schema(kind: str = typer.Argument(..., help="node, job or service")) -> None:
    """Print the JSON Schema of a manifest kind."""
    from ..ops import resources
    from ..ops.refs import parse_kind

    typer.echo(resources.schema(parse_kind(kind)), nl=False)


def controller(
    resync: float = typer.Option(5.0, help="Seconds between full resyncs when nothing is running."),
    probe_interval: float = typer.Option(1.0, help="Seconds between health probes (/_ping) of each node."),
    probe_timeout: float = typer.Option(1.0, help="Timeout of one health probe."),
    lost_after: float = typer.Option(3.0, help="A node without a successful probe for this long is Lost and its "
                                                "tasks are rescheduled (a Node's spec.lostAfterSeconds overrides)."),
    docker_timeout: float = typer.Option(10.0, help="Timeout of every other Docker API call."),
    watch: Optional[Path] = typer.Option(None, "--watch", help="Keep this directory of manifests synced (GitOps)."),
    poll: bool = typer.Option(False, "--poll", help="With --watch: poll for changes (network filesystems)."),
    sync_interval: float = typer.Option(10.0, help="With --watch: also sync this often, which undoes drift."),
    allow_mass_prune: bool = typer.Option(False, "--allow-mass-prune", help="With --watch: see `brokerctl sync`."),
    namespace_: str = namespace_option("With --watch: namespace of the directory's Jobs and Services that name "
                                       "none (a document's own metadata.namespace wins; default: default)."),
    queue: str = queue_option(),
    fair_share_half_life: str = half_life_option(),
    lease_duration: float = lease_duration_option(),
) -> None:
    """Run the reconcile loop until SIGINT/SIGTERM (containers keep running). Several on one store:
    one leads, the others stand by and take over within --lease-duration when it stops."""
    import logging

    from ..ops import controller as loop

    store_command("controller")
    lease_duration = loop.lease_setting(lease_duration)
    order, half_life = loop.queue_settings(queue, fair_share_half_life)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    settings = loop.Settings(resync=resync, probe_interval=probe_interval, probe_timeout=probe_timeout,
                             lost_after=lost_after, docker_timeout=docker_timeout, watch=watch, poll=poll,
                             sync_interval=sync_interval, allow_mass_prune=allow_mass_prune,
                             namespace=namespace(namespace_), queue=order, fair_share_half_life=half_life,
                             lease_duration=lease_duration)
    loop.run(open_store(create=True), settings)
