"""The enumerations every layer shares: kinds, phases, conditions, rollout states and reasons, and
how kinds are scoped (cluster-wide, or in a namespace) and written in messages.

Plain enums with no pydantic (``StrEnum``: ``str()`` and f-strings give the stored value), so that commands which only read the store (``get``,
``describe``, ``logs``, ``status``) start without importing the manifest models. ``models``
re-exports them.
"""

from __future__ import annotations

import re
from enum import Enum, StrEnum


DEFAULT_NAMESPACE = "default"  # always exists; where a namespaced resource goes when none is named
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # a lowercase DNS label: names of resources and namespaces


class Kind(str, Enum):
    NODE = "Node"
    JOB = "Job"
    SERVICE = "Service"
    NAMESPACE = "Namespace"
    SECRET = "Secret"

    @property
    def namespaced(self) -> bool:
        """Jobs, Services and Secrets live in a namespace; Nodes and Namespaces are cluster-scoped."""
        return self is Kind.JOB or self is Kind.SERVICE or self is Kind.SECRET

    @property
    def workload(self) -> bool:
        """Jobs and Services: the kinds that own tasks."""
        return self is Kind.JOB or self is Kind.SERVICE

    @classmethod
    def parse(cls, text: str) -> "Kind":
        """Accept `job`, `jobs`, `Job` (CLI spelling) and return the kind."""
        key = text.strip().lower().rstrip("s")
        for kind in cls:
            if kind.value.lower() == key:
                return kind
        raise ValueError(text)


NAMESPACED_KINDS = ("Job", "Service", "Secret")  # Kind.namespaced, by value (as the store keeps kinds)
WORKLOAD_KINDS = ("Job", "Service")  # Kind.workload, by value: the kinds with a template


def scope(kind: "Kind | str", namespace: str | None) -> str:
    """The namespace a resource of ``kind`` is stored under: '' for cluster-scoped kinds (Nodes,
    Namespaces, and the GitOps ``Directory`` events name), else ``namespace`` (None: ``default``)."""
    value = kind.value if isinstance(kind, Kind) else kind
    if value not in NAMESPACED_KINDS:
        return ""
    return namespace or DEFAULT_NAMESPACE


def object_ref(kind: "Kind | str", namespace: str, name: str, lower: bool = True) -> str:
    """How a resource is written in what the verbs print: ``job/nightly`` (``lower``) or
    ``Job/nightly``, prefixed with its namespace outside ``default`` (``team-a/job/nightly``), so
    output about the default namespace reads as it did before namespaces existed."""
    value = kind.value if isinstance(kind, Kind) else kind
    ref = f"{value.lower() if lower else value}/{name}"
    return ref if namespace in ("", DEFAULT_NAMESPACE) else f"{namespace}/{ref}"


class TaskPhase(str, Enum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    LOST = "Lost"
    STOPPED = "Stopped"

    @property
    def active(self) -> bool:
        return self is _PENDING or self is _RUNNING  # identity: this runs for every task row on every pass


_PENDING, _RUNNING = TaskPhase.PENDING, TaskPhase.RUNNING


class JobPhase(StrEnum):
    """A Job's ``status.phase``."""

    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETE = "Complete"
    FAILED = "Failed"


class NodeCondition(StrEnum):
    """A Node's ``status.condition``: what its health probes and the planner concluded."""

    READY = "Ready"
    NOT_READY = "NotReady"
    LOST = "Lost"  # no successful probe for lostAfterSeconds: its tasks are replaced elsewhere
    UNKNOWN = "Unknown"  # not probed yet


class RolloutState(StrEnum):
    """A Service's ``status.rollout.state``."""

    PROGRESSING = "Progressing"
    COMPLETE = "Complete"
    PAUSED = "Paused"  # progressDeadlineSeconds passed without a new replica becoming ready


class TaskReason(StrEnum):
    """Why a task is where it is (``reason`` of a task row). Stored by value; messages carry the detail."""

    # waiting for a node or an attempt
    SCHEDULED = "Scheduled"
    UNSCHEDULABLE = "Unschedulable"
    BACK_OFF = "BackOff"
    # how an attempt ended
    COMPLETED = "Completed"
    ERROR = "Error"
    OOM_KILLED = "OOMKilled"
    TIMEOUT = "Timeout"
    UNHEALTHY = "Unhealthy"
    SUCCEEDED_WHILE_LOST = "SucceededWhileLost"
    # could not start
    CREATE_FAILED = "CreateFailed"
    START_FAILED = "StartFailed"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    PORT_IN_USE = "PortInUse"  # a host port taken outside brokerctl: the next attempt avoids that node
    VOLUME_NOT_ALLOWED = "VolumeNotAllowed"
    NAME_TAKEN = "NameTaken"
    SECRET_UNAVAILABLE = "SecretUnavailable"  # a Secret it names is missing, lacks the key, or cannot be read: waits
    RUN_AS_ROOT = "RunAsRoot"  # the image runs as root where the namespace forbids it
    # stopped by the controller
    DELETED = "Deleted"
    DRAINED = "Drained"
    JOB_COMPLETE = "JobComplete"
    JOB_FAILED = "JobFailed"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    SUSPENDED = "Suspended"
    SUPERSEDED = "Superseded"
    SCALED_DOWN = "ScaledDown"
    REPLACED = "Replaced"
    # lost: replaced without spending a retry
    NODE_LOST = "NodeLost"
    NODE_DELETED = "NodeDeleted"
    CONTAINER_VANISHED = "ContainerVanished"


class JobReason(StrEnum):
    """Why a Job is in its phase (``status.reason``)."""

    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    SUSPENDED = "Suspended"
