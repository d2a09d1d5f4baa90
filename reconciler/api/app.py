"""The application: ``create_app(settings)`` builds the FastAPI app of ``brokerctl server``.

Called by ``server`` (and by tests, which serve it the same way). The app holds its settings and
its pool of store connections (``app.state``); the routes are those of the route modules, under
``/api/v1/``, plus ``/healthz``, ``/readyz`` and ``/metrics`` (``health``, ``metrics``), and
``/openapi.json`` and ``/docs`` (public: they describe the API and hold no data), and Container
Broker's own routes at the root (``containerbroker``). Handlers are plain functions run on worker threads, so a slow store or Docker host holds one
request, never the server. Bodies over the limit are refused first (``limits.BodyLimit``). Task lists are
kept rendered while the store has not changed (``rendered``, ``app.state.renders``). The server
sets ``app.state.closing`` when it stops, so open watches end at once instead of holding the exit.
At start-up, before any request is accepted, ``warm`` readies what the first one would wait for.
"""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from fastapi import FastAPI

from .. import __version__
from . import (containerbroker, edit, errors, exec_socket, health, metrics, namespaces, nodes, resources, services,
               session, sync, tasks)
from .limits import MAX_BODY, BodyLimit
from .metrics import Metrics, RequestMetrics
from .rendered import Renders
from .stores import Stores

log = logging.getLogger("brokerctl.api")


@dataclass(frozen=True)
class Settings:
    """What the app needs to know of the server it runs in."""

    db: str  # the store (a path or URL), opened by the pool
    controller: bool = True  # a controller runs in this process: /readyz wants its heartbeat fresh
    metrics_token: bool = False  # /metrics needs a token too
    max_body: int = MAX_BODY
    connections: int = 8  # store connections the handlers share (``stores.Stores``)
    secrets_key: str | None = None  # the key file of the store's Secrets (None: $BROKER_SECRETS_KEY, else the default)
    cb_namespace: str = "default"  # where Container Broker's tasks go (``containerbroker``)
    storage_mounts: tuple[tuple[str, str], ...] = ()  # Container Broker's storage mount names -> host paths


DESCRIPTION = """The HTTP API of brokerctl: the verbs of the command line, over HTTP.

Every route needs a token (`Authorization: Bearer bk_...`, made by `brokerctl token create`) except
`/healthz`, `/readyz` and `/metrics`. Roles: `admin` (everything), `edit` (Jobs and Services of its
namespaces), `view` (read them). Errors are `{"error": CODE, "message": TEXT, "details": [...]}`, the
message being what the CLI prints."""


def warm(stores: Stores) -> None:
    """What the first request would otherwise wait for: a connection of the pool opened (it checks
    the migrations under the store's write lock) and the manifest loader imported (the kinds'
    pydantic models are built as it loads, and YAML), which `apply`, `diff` and `delete -f` need. A
    store that cannot be opened now is left for the requests (``/readyz`` names it)."""
    from ..errors import BrokerError
    from ..ops import resources

    resources.load_manifest_models()
    try:
        with stores.use():
            pass
    except BrokerError as exc:
        log.warning("store not opened at start: %s", exc)


def create_app(settings: Settings) -> FastAPI:
    stores = Stores(settings.db, settings.connections, settings.secrets_key)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await anyio.to_thread.run_sync(warm, stores)  # before the first request is accepted
        yield
        stores.close()

    app = FastAPI(title="brokerctl", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings, app.state.stores, app.state.metrics = settings, stores, Metrics(stores)
    app.state.closing = threading.Event()
    app.state.renders = Renders()  # task lists kept as bytes while the store has not changed
    errors.install(app)
    for module in (resources, edit, sync, services, tasks, exec_socket, namespaces, nodes, session, health, metrics,
                   containerbroker):
        app.include_router(module.router)
    app.add_middleware(BodyLimit, limit=settings.max_body)
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)  # outermost: a 413 is counted too
    return app
