"""``/metrics`` in Prometheus' text format (prometheus-client), and the counting of the API's own requests.

Registered by ``app``. Each app has a registry of its own with:

* ``brokerctl_api_requests_total{method, route, status}`` and
  ``brokerctl_api_request_duration_seconds{method, route}`` (a histogram of the time to the response's
  first byte: a watch or a followed log counts its start, not its length), counted by the
  ``RequestMetrics`` middleware; ``route`` is the route's template (``/api/v1/nodes/{name}``), so
  the labels stay few whatever the names;
* read from the store at each scrape (``ops.controller.figures``): ``brokerctl_tasks{namespace,
  phase}``, ``brokerctl_node_condition{node, condition}`` (1 for the node's condition),
  ``brokerctl_node_slots`` and ``brokerctl_node_slots_used{node, execution_type}``,
  ``brokerctl_namespace_used`` and ``brokerctl_namespace_quota{namespace, resource}`` (cpus,
  memory_bytes, tasks) with ``brokerctl_namespace_slots_used``/``_quota{namespace, execution_type}``;
  and from the controller's lease, whichever process runs it: ``brokerctl_reconcile_pass_seconds``
  (histogram), ``brokerctl_docker_api_calls_total{endpoint}``,
  ``brokerctl_controller_heartbeat_age_seconds``. ``brokerctl_store_up`` is 0 while the store cannot
  be read (the request metrics are still served).

No token is needed unless the server runs with ``--metrics-token`` (then any valid token).
"""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from starlette.responses import Response

from ..errors import StoreError
from ..kinds import NodeCondition
from ..ops import controller, tokens

log = logging.getLogger("brokerctl.api")
router = APIRouter()

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """One app's registry: its request counters and the store's figures."""

    def __init__(self, stores):
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("brokerctl_api_requests", "API requests by route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("brokerctl_api_request_duration_seconds", "Time to the first byte of the response",
                                 ["method", "route"], registry=self.registry, buckets=LATENCY_BUCKETS)
        self.registry.register(StoreFigures(stores))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware: counts each request by method, route template and status, and times it."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        began, status = time.perf_counter(), [500]

        async def timed(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                self.metrics.latency.labels(scope["method"], _route(scope)).observe(time.perf_counter() - began)
            await send(message)

        try:
            await self.app(scope, receive, timed)
        finally:
            self.metrics.requests.labels(scope["method"], _route(scope), str(status[0])).inc()


def _route(scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class StoreFigures:
    """A collector that reads the store (through a connection of the app's pool) at each scrape."""

    def __init__(self, stores):
        self.stores = stores

    def describe(self):
        return []  # nothing to read at registration

    def collect(self):
        up = GaugeMetricFamily("brokerctl_store_up", "1 while the store answers")
        try:
            with self.stores.use() as store:
                found = controller.figures(store)
        except StoreError as exc:
            log.warning("metrics: store unreadable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _tasks(found)
        yield from _nodes(found)
        yield from _namespaces(found)
        yield from _controller(found)


def _tasks(found: controller.Figures):
    tasks = GaugeMetricFamily("brokerctl_tasks", "Tasks by namespace and phase (history included)",
                              labels=["namespace", "phase"])
    for (namespace, phase), n in sorted(found.tasks.items()):
        tasks.add_metric([namespace, phase], n)
    yield tasks


def _nodes(found: controller.Figures):
    condition = GaugeMetricFamily("brokerctl_node_condition", "1 for the node's condition", labels=["node", "condition"])
    total = GaugeMetricFamily("brokerctl_node_slots", "Slots a node has per execution type",
                              labels=["node", "execution_type"])
    used = GaugeMetricFamily("brokerctl_node_slots_used", "Slots in use on a node per execution type",
                             labels=["node", "execution_type"])
    for node in found.nodes:
        name, status = node["metadata"]["name"], node["status"]
        for cond in NodeCondition:
            condition.add_metric([name, cond.value], float(status.get("condition") == cond.value))
        slots = status.get("slots") or node["spec"].get("slots") or {}
        for etype in sorted(set(slots) | set(status.get("slotsUsed", {}))):
            total.add_metric([name, etype], slots.get(etype, 0))
            used.add_metric([name, etype], status.get("slotsUsed", {}).get(etype, 0))
    yield from (condition, total, used)


def _namespaces(found: controller.Figures):
    used = GaugeMetricFamily("brokerctl_namespace_used", "What a namespace's active tasks use",
                             labels=["namespace", "resource"])
    quota = GaugeMetricFamily("brokerctl_namespace_quota", "A namespace's quota (absent: no cap)",
                              labels=["namespace", "resource"])
    slots_used = GaugeMetricFamily("brokerctl_namespace_slots_used", "Slots a namespace's tasks hold",
                                   labels=["namespace", "execution_type"])
    slots_quota = GaugeMetricFamily("brokerctl_namespace_slots_quota", "A namespace's cap on slots",
                                    labels=["namespace", "execution_type"])
    for obj, caps in found.namespaces:
        name, use = obj["metadata"]["name"], obj["status"].get("used", {})
        for resource, key in (("cpus", "cpus"), ("memory_bytes", "memory"), ("tasks", "tasks")):
            used.add_metric([name, resource], use.get(key, 0))
            if caps.get(key) is not None:
                quota.add_metric([name, resource], caps[key])
        for etype, n in sorted(use.get("slots", {}).items()):
            slots_used.add_metric([name, etype], n)
        for etype, n in sorted((caps.get("slots") or {}).items()):
            slots_quota.add_metric([name, etype], n)
    yield from (used, quota, slots_used, slots_quota)


def _controller(found: controller.Figures):
    if found.lease is None:
        return
    stats = found.lease.get("stats") or {}
    age = GaugeMetricFamily("brokerctl_controller_heartbeat_age_seconds", "Seconds since the controller's heartbeat")
    age.add_metric([], max(found.heartbeat_age or 0.0, 0.0))
    yield age
    if "passBuckets" in stats:
        buckets = [(bound, n) for bound, n in stats["passBuckets"].items()] + [("+Inf", stats["passes"])]
        passes = HistogramMetricFamily("brokerctl_reconcile_pass_seconds", "Duration of the controller's passes")
        passes.add_metric([], buckets, stats["passSeconds"])
        yield passes
    calls = CounterMetricFamily("brokerctl_docker_api_calls", "Docker API calls of the controller by endpoint",
                                labels=["endpoint"])
    for endpoint, n in sorted((stats.get("dockerCalls") or {}).items()):
        calls.add_metric([endpoint], n)
    yield calls


@router.get("/metrics", tags=["health"], responses={200: {"description": "Prometheus text format",
                                                          "content": {CONTENT_TYPE_LATEST: {"schema": {"type":
                                                                                                      "string"}}}}})
def metrics(request: Request) -> Response:
    """The figures above, for Prometheus (a token only if the server runs with --metrics-token)."""
    if request.app.state.settings.metrics_token:
        scheme, _, text = request.headers.get("Authorization", "").partition(" ")
        with request.app.state.stores.use() as store:
            tokens.authenticate(store, text.strip() if scheme.lower() == "bearer" else None)
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
