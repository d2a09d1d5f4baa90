"""``brokerctl server``: the API served by uvicorn on the main thread, with the controller loop (and the
GitOps watcher) on threads of the same process unless ``--no-controller``.

Called by the CLI's ``server`` command. In order: the store is opened (made if missing), the listen
address bound and the TLS pair loaded (so a mistake in either is one line and exit 2 before anything
runs), the first admin token made on a store without tokens (written to a file, never printed), the
controller's first look at the lease made (it leads, or stands by while another server or controller
on the store leads; a store moved elsewhere is refused), then the API serves: "serving the API on
URL" is said once the app has started and readied what its first request needs (``app.warm``). The
controller and the API use connections of their own: a write through the API wakes the controller
at once, as a write by another process does. SIGTERM or SIGINT ends the process within two seconds
(``ops.controller.run_beside``): uvicorn stops accepting, gives open requests a second, and the
controller stops as `brokerctl controller` does; containers keep running.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import uvicorn

from .. import ops
from ..errors import UsageError
from ..ops import tokens
from ..ops.controller import Settings as LoopSettings, run_beside
from .app import Settings, create_app

log = logging.getLogger("brokerctl.server")


@dataclass(frozen=True)
class ServerSettings:
    """The options of `brokerctl server`."""

    db: str | Path | None = None  # None: $BROKER_DB, else the per-user state file
    listen: str = "127.0.0.1:8080"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    controller: bool = True
    metrics_token: bool = False
    secrets_key: str | None = None  # the global --secrets-key (None: $BROKER_SECRETS_KEY, else the default)
    admin_token: Path | None = None  # where the first admin token goes (default: tokens.default_admin_token_path)
    loop: LoopSettings = field(default_factory=LoopSettings)  # the controller's options
    cb_namespace: str = "default"  # Container Broker's tasks go there
    storage_mounts: tuple[tuple[str, str], ...] = ()  # Container Broker's storage mount names -> host paths


def serve(settings: ServerSettings, say: Callable[[str], None]) -> None:
    """Serve until SIGTERM/SIGINT; ``say`` tells the operator what happens (stderr)."""
    check_tls(settings.tls_cert, settings.tls_key)
    store = ops.open_store(settings.db, create=True, secrets_key=settings.secrets_key)
    if store.created:
        say(f"created store {store.path}")
    sock, url = bind(settings.listen, tls=settings.tls_cert is not None)
    try:
        written = tokens.create_first_admin(store, settings.admin_token or tokens.default_admin_token_path())
        if written is not None:
            say(f"no API token existed: made an admin token and wrote it to {written} (mode 0600); it is not shown "
                "again (`brokerctl token create` makes more)")
        app = create_app(Settings(db=str(store.location), controller=settings.controller,
                                  metrics_token=settings.metrics_token, secrets_key=settings.secrets_key,
                                  cb_namespace=settings.cb_namespace, storage_mounts=settings.storage_mounts))
        server = Server(uvicorn.Config(app, ssl_certfile=settings.tls_cert, ssl_keyfile=settings.tls_key,
                                       log_level="info", timeout_graceful_shutdown=1, lifespan="on"))

        def front(stop) -> None:
            server.stopping, server.closing = stop, app.state.closing
            server.ready = lambda: say(f"serving the API on {url}/api/v1/ (OpenAPI: {url}/docs)" + (
                "" if settings.controller else "; no controller in this process (--no-controller)"))
            server.run(sockets=[sock])

        if not settings.controller:
            store.close()
        run_beside(front, store if settings.controller else None, settings.loop)
    finally:
        sock.close()


class Server(uvicorn.Server):
    """uvicorn, leaving signals to ``ops.controller.run_beside`` (which ends the controller too) and
    stopping once its ``stopping`` event is set; then it sets the app's ``closing``, which ends the
    open watches (uvicorn gives the other open requests a second, then cancels them). ``ready`` is
    called once the app has started (``app.warm`` done) and the socket accepts: then it serves."""

    stopping = closing = None
    ready: Callable[[], None] = staticmethod(lambda: None)

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:  # a failed start-up sets it
            self.ready()

    @contextlib.contextmanager
    def capture_signals(self):
        yield

    async def on_tick(self, counter: int) -> bool:
        if self.stopping is not None and self.stopping.is_set():
            self.closing.set()
            return True
        return await super().on_tick(counter)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (an IPv6 address in brackets: ``[::1]:8080``); port 0 takes a free one."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen {text!r}: use HOST:PORT, e.g. 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080")
    return host, int(port)


def bind(listen: str, tls: bool) -> tuple[socket.socket, str]:
    """A listening socket on ``listen`` and the URL it serves (the port it got, for port 0)."""
    host, port = parse_listen(listen)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise UsageError(f"--listen {listen}: cannot listen there: {exc.strerror or exc}") from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return sock, f"{'https' if tls else 'http'}://{shown}:{bound}"


def check_tls(cert: Path | None, key: Path | None) -> None:
    """Both or neither, and a pair that loads (the key matches the certificate)."""
    if (cert is None) != (key is None):
        raise UsageError("--tls-cert and --tls-key go together: the server's certificate and its private key")
    if cert is None:
        return
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--tls-cert {cert} --tls-key {key}: cannot load them: {exc}") from None
