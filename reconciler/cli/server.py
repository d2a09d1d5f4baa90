"""The `server` command: the HTTP API (and, by default, the controller and the GitOps watcher) in one process.

Registered by ``app``. Sets up logging and hands its options to ``api.server.serve``, imported only
when the command runs: FastAPI, uvicorn and prometheus-client never load for the other commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from . import common
from .common import half_life_option, lease_duration_option, namespace, namespace_option, queue_option


def server(
    listen: str = typer.Option("127.0.0.1:8080", "--listen", help="HOST:PORT to serve on ([::1]:8080 for IPv6; "
                               "port 0 takes a free one)."),
    tls_cert: Optional[Path] = typer.Option(None, "--tls-cert", help="Serve HTTPS with this certificate (PEM, "
                                            "with its chain)."),
    tls_key: Optional[Path] = typer.Option(None, "--tls-key", help="The private key of --tls-cert (PEM)."),
    no_controller: bool = typer.Option(False, "--no-controller", help="Serve the API only; a `brokerctl "
                                       "controller` runs elsewhere on the store."),
    metrics_token: bool = typer.Option(False, "--metrics-token", help="/metrics needs a token too (by default "
                                       "it answers without one, as /healthz and /readyz do)."),
    admin_token: Optional[Path] = typer.Option(None, "--admin-token-file", help="Where the first admin token is "
                                               "written on a store without tokens (default: "
                                               "$XDG_STATE_HOME/brokerctl/admin.token)."),
    watch: Optional[Path] = typer.Option(None, "--watch", help="Keep this directory of manifests synced (GitOps), "
                                         "as `brokerctl controller --watch`."),
    poll: bool = typer.Option(False, "--poll", help="With --watch: poll for changes (network filesystems)."),
    sync_interval: float = typer.Option(10.0, help="With --watch: also sync this often, which undoes drift."),
    allow_mass_prune: bool = typer.Option(False, "--allow-mass-prune", help="With --watch: see `brokerctl sync`."),
    namespace_: str = namespace_option("With --watch: namespace of the directory's Jobs and Services that name "
                                       "none (default: default)."),
    resync: float = typer.Option(5.0, help="Seconds between full resyncs when nothing is running."),
    probe_interval: float = typer.Option(1.0, help="Seconds between health probes (/_ping) of each node."),
    probe_timeout: float = typer.Option(1.0, help="Timeout of one health probe."),
    lost_after: float = typer.Option(3.0, help="A node without a successful probe for this long is Lost."),
    docker_timeout: float = typer.Option(10.0, help="Timeout of every other Docker API call."),
    queue: str = queue_option(),
    fair_share_half_life: str = half_life_option(),
    cb_namespace: str = typer.Option("default", "--cb-namespace", help="Namespace of the Jobs that Container "
                                     "Broker's POST /tasks creates."),
    storage_mount: list[str] = typer.Option([], "--storage-mount", help="NAME=PATH: Container Broker's storage "
                                            "mount NAME is the host path PATH (repeatable)."),
    lease_duration: float = lease_duration_option(),
) -> None:
    """Serve the HTTP API, with the controller loop in the same process (until SIGINT/SIGTERM).

    Every request needs a token (`brokerctl token create`) except /healthz, /readyz and /metrics. On a
    store without tokens, an admin token is made and written to a file (never printed).
    """
    import logging

    common.store_command("server")
    from ..api.server import ServerSettings, serve
    from ..ops.containerbroker import parse_storage_mount
    from ..ops.controller import Settings, lease_setting, queue_settings
    from ..ops.refs import namespace_name

    lease_duration = lease_setting(lease_duration)
    order, half_life = queue_settings(queue, fair_share_half_life)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    loop = Settings(resync=resync, probe_interval=probe_interval, probe_timeout=probe_timeout, lost_after=lost_after,
                    docker_timeout=docker_timeout, watch=watch, poll=poll, sync_interval=sync_interval,
                    allow_mass_prune=allow_mass_prune, namespace=namespace(namespace_),
                    queue=order, fair_share_half_life=half_life, lease_duration=lease_duration)
    settings = ServerSettings(db=common.db_path, secrets_key=common.secrets_key, listen=listen, tls_cert=tls_cert,
                              tls_key=tls_key,
                              controller=not no_controller, metrics_token=metrics_token, admin_token=admin_token,
                              loop=loop, cb_namespace=namespace_name(cb_namespace),
                              storage_mounts=tuple(parse_storage_mount(m) for m in storage_mount))
    serve(settings, lambda text: typer.echo(text, err=True))
