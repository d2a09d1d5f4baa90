"""Plain records shared by the store, the planner and the actor.

``ResourceRecord`` and ``TaskRecord`` are rows of the store as Python values; ``ContainerObs``,
``NodeObs`` and ``Snapshot`` are what one observation of the Docker hosts saw (``Sighting``: where
a task's container was seen); ``ContainerExit`` is what collecting a finished container read. All are
immutable so that ``plan`` can be a pure function of them. ``container_mark`` and
``distrust`` decide which containers carrying our store label are really ours (the planner and
``brokerctl drain`` ask). ``TokenRecord`` is an API token's row. No I/O here.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

from .kinds import DEFAULT_NAMESPACE, Kind, TaskPhase, scope

# Container labels: the world can be rebuilt from these alone.
LABEL_STORE = "brokerctl.store"
LABEL_OWNER = "brokerctl.owner"  # Kind/name, as before namespaces; the namespace has a label of its own
LABEL_NAMESPACE = "brokerctl.namespace"
LABEL_TASK = "brokerctl.task"
LABEL_INDEX = "brokerctl.index"
LABEL_ATTEMPT = "brokerctl.attempt"
LABEL_TEMPLATE = "brokerctl.template"  # hash of the template the container was made from
LABEL_MARK = "brokerctl.mark"  # container_mark(): proves the store made this container for this task and node


@dataclass(frozen=True)
class ResourceRecord:
    kind: Kind
    name: str
    uid: str
    labels: dict
    spec: dict
    generation: int
    created_at: float
    updated_at: float
    deleted_at: float | None = None
    status: dict = field(default_factory=dict)
    retried_at: float | None = None  # `brokerctl retry`: failures before this no longer count
    drain_deadline: float | None = None  # a Node being drained: Job tasks there are moved after this
    source: str | None = None  # the synced directory that created it (None: applied by hand)
    namespace: str | None = None  # '' for cluster-scoped kinds; None is read as `default` for namespaced ones
    created_by: str = ""  # who applied it first: a token's user, or ``local:<OS user>``; '' before this was kept
    updated_by: str = ""  # who changed it last (spec, labels, deletion, cordon, scale, retry, undo)

    def __post_init__(self) -> None:
        object.__setattr__(self, "namespace", scope(self.kind, self.namespace))

    @property
    def ref(self) -> str:
        return f"{self.kind.value}/{self.name}"

    @property
    def key(self) -> tuple[Kind, str, str]:
        """Its identity: (kind, namespace, name); the planner's owner key of its tasks."""
        return self.kind, self.namespace, self.name

    @cached_property
    def model(self):
        """The validated pydantic model (Node, Job, Service, Namespace, or a Secret as sealed) of this row.

        Validated as stored (``models.STORED``): the checks made at apply are not repeated."""
        from .spec.models import STORED, STORED_MODELS  # imported on use: read-only commands never load pydantic

        metadata = {"name": self.name, "labels": self.labels}
        if self.namespace:
            metadata["namespace"] = self.namespace
        return STORED_MODELS[self.kind].model_validate(
            {"apiVersion": "broker/v1", "kind": self.kind.value, "metadata": metadata, "spec": self.spec},
            context=STORED,
        )


@dataclass(frozen=True)
class TaskRecord:
    id: str
    owner_kind: Kind
    owner_name: str
    owner_uid: str
    index: int
    attempt: int
    phase: TaskPhase = TaskPhase.PENDING
    node: str | None = None
    container_id: str | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    reason: str = ""
    message: str = ""
    created_at: float = 0.0
    not_before: float = 0.0
    scheduled_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    generation: int = 1
    labels: dict = field(default_factory=dict)
    template_hash: str = ""  # ``models.template_hash`` of the spec this attempt was made from
    namespace: str = DEFAULT_NAMESPACE  # its owner's

    @property
    def owner(self) -> str:
        """``Job/name``: the owner within its namespace (the ``brokerctl.owner`` label, JSON ``owner``)."""
        # ``_value_`` is a plain attribute; ``.value`` goes through Enum's descriptor, ~1 us a call,
        # which counts in `get tasks` over 100,000 rows.
        return f"{self.owner_kind._value_}/{self.owner_name}"

    @property
    def owner_key(self) -> tuple[Kind, str, str]:
        """The owner's identity, (kind, namespace, name): equal to its ``ResourceRecord.key``."""
        return self.owner_kind, self.namespace, self.owner_name

    @property
    def active(self) -> bool:
        return self.phase.active


@dataclass(frozen=True)
class ContainerObs:
    """One container as the sparse, label-filtered list reported it."""

    id: str
    name: str
    task_id: str | None
    owner: str | None
    state: str  # created | running | exited | dead | paused | restarting | removing
    exit_code: int | None = None
    health: str | None = None  # starting | healthy | unhealthy; None: no health check
    mark: str = ""  # its brokerctl.mark label

    @property
    def finished(self) -> bool:
        return self.state in ("exited", "dead")


@dataclass(frozen=True)
class NodeObs:
    name: str
    ready: bool
    message: str = ""
    docker_version: str | None = None
    cpus: int | None = None
    memory: int | None = None
    containers: tuple[ContainerObs, ...] | None = None  # None: the host could not be listed
    daemon_id: str | None = None  # who the daemon is (``dockerhost.daemon_identity``): two Nodes may reach one
    failures: int = 0  # consecutive failed probes
    last_ok: float | None = None  # last successful probe
    failing_since: float | None = None  # first failed probe of the current streak


class Sighting(NamedTuple):
    """Where a task's container was seen this pass: the node that listed it, and the container."""

    node: str
    container: ContainerObs


@dataclass(frozen=True)
class Snapshot:
    nodes: dict[str, NodeObs]
    taken_at: float
    lost_after: float = 3.0  # seconds without a successful probe before a node is Lost (Node spec may override)
    probe_interval: float = 0.0  # seconds between two probes of a node (0: unknown; see engine.nodes.lost_together)

    @cached_property
    def by_task(self) -> dict[str, Sighting]:
        """Task id -> where its container was seen, computed once per snapshot."""
        out: dict[str, Sighting] = {}
        for node in self.nodes.values():
            for c in node.containers or ():
                if c.task_id:
                    out[c.task_id] = Sighting(node.name, c)
        return out


def container_name(store_id: str, task_id: str) -> str:
    """The deterministic name of a task's container: a crashed start is found again, never twinned."""
    return f"bk-{store_id}-{task_id}"


def container_mark(key: str, store_id: str, task_id: str, node: str) -> str:
    """HMAC-SHA256 of ``<store id>/<task id>/<node>`` keyed with the store's secret (hex).

    Anyone who can reach a Docker API can copy our labels; only the store can make this one, and
    it is bound to one task on one node.
    """
    return hmac.new(bytes.fromhex(key), f"{store_id}/{task_id}/{node}".encode(), hashlib.sha256).hexdigest()


def distrust(c: ContainerObs, node: str, task: TaskRecord | None, key: str, store_id: str) -> str | None:
    """Why a container with our store label seen on ``node`` is not ours, or None if it is.

    Ours: its id is the one recorded for its task on that node (Docker picks ids at random, and
    this keeps containers made before marks existed), or the task is recorded on that node and
    the container has the task's deterministic name and a valid ``container_mark``. A container
    whose task the store no longer has is ours by name and mark alone (the mark names the node).
    """
    if not c.task_id:
        return f"no {LABEL_TASK} label"
    if task is not None and task.container_id == c.id and task.node == node:
        return None
    if task is not None and task.node != node:
        return (f"task {c.task_id} was never placed" if task.node is None
                else f"task {c.task_id} is placed on node {task.node}, not {node}")
    if c.name != container_name(store_id, c.task_id):
        return f"its name is not {container_name(store_id, c.task_id)}"
    if not hmac.compare_digest(c.mark.encode(), container_mark(key, store_id, c.task_id, node).encode()):
        return f"its {LABEL_MARK} label is missing or wrong"
    return None


@dataclass(frozen=True)
class SecretRefs:
    """The Secrets a container's environment and image pull read, by name (never their values)."""

    namespace: str  # of the task, and so of every Secret it names
    env_from: tuple[str, ...] = ()  # Secrets whose every key becomes a variable, in order (a later one wins)
    key_refs: tuple[tuple[str, str, str], ...] = ()  # (variable, secret, key)
    pull: str | None = None  # the registry Secret to pull the image with

    def names(self) -> set[str]:
        return {*self.env_from, *(secret for _, secret, _ in self.key_refs), *([self.pull] if self.pull else [])}


@dataclass(frozen=True)
class ContainerSpec:
    """What a task's container is made of: the planner builds it, ``docker.host`` creates it.

    The planner names Secrets (``secrets``); the runtime puts their values into ``env`` and
    ``pull_auth`` just before ``Host.start``, so a Plan never holds one. Neither is in the repr."""

    name: str
    image: str
    command: list[str] | None
    env: dict[str, str] = field(repr=False)
    labels: dict[str, str]
    working_dir: str | None = None
    user: str | None = None
    mounts: tuple[tuple[str, str, bool], ...] = ()  # (source, target, read_only)
    nano_cpus: int | None = None
    mem_limit: int | None = None
    ports: tuple[tuple[str, int | None, int, str], ...] = ()  # (host ip, host port or None, container port, proto)
    network: str | None = None
    healthcheck: dict | None = None  # Docker's shape: test, interval/timeout/start_period (ns), retries
    allowed_volumes: tuple[str, ...] = ()  # existing named volumes the node allows though brokerctl did not make them
    non_root: bool = False  # its namespace forbids root: without a user, an image that runs as root is refused
    secrets: SecretRefs | None = None  # what the runtime resolves before the start (None: no Secret)
    pull_auth: dict | None = field(default=None, repr=False)  # the registry login, resolved: the SDK's auth_config


class TokenRecord(NamedTuple):
    """An API token as the store keeps it: never its secret, only the secret's SHA-256 (``hash``)."""

    id: str
    user: str
    role: str  # admin | edit | view
    namespaces: tuple[str, ...]  # where an edit or view token reaches; () for admin
    hash: str
    created_at: float
    created_by: str = ""
    last_used_at: float | None = None
    revoked_at: float | None = None


@dataclass(frozen=True)
class ContainerExit:
    """What ``Host.collect`` read from a finished container; ``act`` records it on the task."""

    exit_code: int | None
    oom_killed: bool
    started_at: float | None
    finished_at: float | None
    error: str  # Docker's State.Error ("" when none)
    output: bytes  # the tail of its output, at most the caller's limit
    truncated: bool  # the output was longer than that limit
