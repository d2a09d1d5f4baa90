"""Manifest models: the desired-state vocabulary of brokerctl (Node, Job, Service).

Pydantic v2 models with ``extra="forbid"`` and camelCase field names as they appear in YAML.
Called by ``manifests`` (to validate documents), ``store`` (to round-trip specs) and by the
planner, which reads specs through these types. JSON Schemas in ``schemas/`` are generated
from here (``brokerctl schema KIND``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import posixpath
import re
from enum import Enum
from typing import Annotated, Literal, NamedTuple, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .kinds import JobPhase, Kind, TaskPhase  # noqa: F401  (re-exported: part of the model vocabulary)

API_VERSION = "broker/v1"
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DEFAULT_EXECUTION_TYPE = "default"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Metadata(_Model):
    name: str = Field(description="Lowercase DNS label, at most 63 characters.")
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _dns_label(cls, v: str) -> str:
        if len(v) > 63 or not NAME_RE.match(v):
            raise ValueError(
                f"{v!r} is not a lowercase DNS label (a-z, 0-9 and '-', starting and ending "
                "with a letter or digit, at most 63 characters)"
            )
        return v

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_text(cls, v):
        return _scalars_as_text(v)


def _scalars_as_text(v):
    """YAML users write `DEBUG: 1` or `tier: true`; env and labels are strings to Docker."""
    if isinstance(v, dict):
        out = {}
        for key, val in v.items():
            if isinstance(val, bool):
                val = "true" if val else "false"
            elif isinstance(val, (int, float)):
                val = str(val)
            out[str(key)] = val
        return out
    return v


class TLS(_Model):
    caFile: str | None = None
    certFile: str | None = None
    keyFile: str | None = None


class AllowedMount(_Model):
    """A host path tasks may bind-mount: exactly this path, or with subpaths anything below it read-only."""

    path: str = Field(description="Absolute host path.")
    subpaths: bool = Field(
        default=False,
        description="Tasks may also mount any path below this one, always read-only (no task can then write "
                    "in this tree, so the symbolic links the daemon follows there are only the operator's).",
    )
    readOnly: bool | None = Field(
        default=None, description="Tasks must mount it read-only (default false; always true with subpaths).")

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"allowedMounts path {v!r} must be an absolute host path")
        return v


def path_below(path: str, ancestor: str) -> bool:
    """``path`` lies strictly below ``ancestor`` (both normalised)."""
    return path != ancestor and path.startswith(ancestor.rstrip("/") + "/")


class MountRule(NamedTuple):
    """One allowedMounts entry as placement reads it: a normalised path and what it allows."""

    path: str
    subpaths: bool
    read_only: bool  # tasks must mount read-only (always true with subpaths)


def guarded_network(network: str | None) -> str | None:
    """The allowedNetworks entry a template's ``network`` needs: ``host``, ``container`` or None (any node)."""
    if network == "host":
        return "host"
    if network and network.startswith("container:"):
        return "container"
    return None


def mount_rules(entries: list) -> tuple[MountRule, ...]:
    """allowedMounts entries (strings or ``AllowedMount``) with lexically normalised paths."""
    return tuple(
        MountRule(posixpath.normpath(e), False, False) if isinstance(e, str)
        else MountRule(posixpath.normpath(e.path), e.subpaths, e.subpaths or bool(e.readOnly))
        for e in entries
    )


def _no_writable_ancestor(rules: tuple[MountRule, ...]) -> None:
    """A task that may write in a directory can replace what lies below it with a symbolic link,
    which the daemon follows when another task bind-mounts that path: the escape to the host that
    exact paths exist to prevent. So an entry with another one below it must be read-only, and
    below a subpaths entry every entry must be read-only too."""
    for i, outer in enumerate(rules):
        for j, inner in enumerate(rules):
            if i < j and inner.path == outer.path:
                raise ValueError(f"allowedMounts lists {outer.path} twice; keep one entry")
            if not path_below(inner.path, outer.path):
                continue
            if not outer.read_only:
                raise ValueError(
                    f"allowedMounts {outer.path} is writable and {inner.path} lies below it: a task could replace "
                    f"{inner.path} with a symbolic link to anywhere on the host; make {outer.path} readOnly: true "
                    "or list only one of them")
            if outer.subpaths and not inner.read_only:
                raise ValueError(
                    f"allowedMounts {inner.path} is writable and lies below {outer.path}, whose subpaths tasks may "
                    f"mount: a task could plant a symbolic link there that a subpath mount would follow; "
                    f"make {inner.path} readOnly: true")


class NodeSpec(_Model):
    address: str = Field(description="Docker API address: unix:///path or tcp://host:port.")
    tls: TLS | None = None
    slots: dict[str, Annotated[int, Field(ge=0)]] | None = Field(
        default=None,
        description="Execution type -> slot count. Omitted: {default: CPUs the host reports}.",
    )
    unschedulable: bool = False
    lostAfterSeconds: float | None = Field(
        default=None, gt=0,
        description="Without a successful health probe for this long the node is Lost and its tasks are "
                    "rescheduled (default: the controller's --lost-after, 3 s).",
    )
    allowedMounts: list[str | AllowedMount] = Field(
        default_factory=list,
        description="Host paths tasks may bind-mount (default: none). A string allows exactly that path; "
                    "{path, subpaths: true} also allows any path below it, read-only.",
    )
    allowedNetworks: list[Literal["host", "container"]] = Field(
        default_factory=list,
        description="Network modes tasks may use here besides the default and user-defined networks: host "
                    "(the host's network stack, and so the daemon's local API) and container (container:NAME, "
                    "another container's network namespace). Default: neither.",
    )
    allowedVolumes: list[str] = Field(
        default_factory=list,
        description="Existing named volumes tasks may mount although brokerctl did not create them (default: "
                    "none; volumes brokerctl creates are always allowed).",
    )

    @field_validator("allowedMounts")
    @classmethod
    def _allowed_mounts(cls, v: list) -> list:
        for entry in v:
            if isinstance(entry, str) and not entry.startswith("/"):
                raise ValueError(f"allowedMounts entry {entry!r} must be an absolute host path")
            if isinstance(entry, AllowedMount) and entry.subpaths and entry.readOnly is False:
                raise ValueError(f"allowedMounts {entry.path}: subpaths are always read-only (a task that could "
                                 "write below it could plant a symbolic link the daemon would follow); drop "
                                 "readOnly: false")
        _no_writable_ancestor(mount_rules(v))
        return v

    def mount_rules(self) -> tuple[MountRule, ...]:
        return mount_rules(self.allowedMounts)

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        if v.startswith("unix://"):
            if not v[len("unix://"):].startswith("/"):
                raise ValueError(f"{v!r}: a unix address needs an absolute path, e.g. unix:///var/run/docker.sock")
            return v
        m = re.match(r"^tcp://([^/:]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$", v)
        if m and 0 < int(m.group(2)) < 65536:
            return v
        raise ValueError(f"{v!r} is not a Docker address; use unix:///path or tcp://host:port")

    @model_validator(mode="after")
    def _tls_needs_tcp(self) -> "NodeSpec":
        if self.tls is not None and not self.address.startswith("tcp://"):
            raise ValueError("tls applies only to tcp:// addresses")
        return self


class Mount(_Model):
    source: str = Field(description="Host path (bind mount) or Docker volume name.")
    target: str = Field(description="Absolute path inside the container.")
    readOnly: bool = False

    @field_validator("target")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"mount target {v!r} must be an absolute path")
        return v


class Resources(_Model):
    cpus: float | None = Field(default=None, gt=0, description="CPU limit (Docker NanoCpus).")
    memory: str | int | None = Field(
        default=None, description="Memory limit: bytes, or a size such as 256m, 1g, 512Mi."
    )

    @field_validator("memory")
    @classmethod
    def _memory(cls, v):
        if v is None:
            return v
        parse_memory(v)
        return v

    def memory_bytes(self) -> int | None:
        return None if self.memory is None else parse_memory(self.memory)


_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_memory(v: str | int) -> int:
    """`256m`, `1g`, `512Mi`, `1073741824` -> bytes; raises ValueError naming the value."""
    if isinstance(v, bool):
        raise ValueError(f"memory {v!r} is not a size")
    if isinstance(v, int):
        if v <= 0:
            raise ValueError(f"memory {v!r} must be positive")
        return v
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtKMGT]?)(?:i?[bB]?)?\s*$", str(v))
    if not m:
        raise ValueError(f"memory {v!r} is not a size; write bytes or e.g. 256m, 1g, 512Mi")
    size = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if size <= 0:
        raise ValueError(f"memory {v!r} must be positive")
    return size


_PORT_RE = re.compile(r"^(?:(?:(?P<ip>[0-9.]+):)?(?P<host>\d{1,5}):)?(?P<container>\d{1,5})(?:/(?P<proto>tcp|udp|sctp))?$")


class PortBinding(NamedTuple):
    """``[ip:][hostPort:]containerPort[/proto]`` parsed; ``host_port`` None: Docker picks one."""

    ip: str
    host_port: int | None
    container_port: int
    proto: str


def parse_port(text: str) -> PortBinding:
    """`8080:80`, `127.0.0.1:8080:80/udp`, `80` (a random host port) -> PortBinding; ValueError names the fix."""
    m = _PORT_RE.match(str(text).strip())
    if not m:
        raise ValueError(f"port {text!r} is not [ip:][hostPort:]containerPort[/tcp|udp|sctp], e.g. \"8080:80\"")
    host = int(m.group("host")) if m.group("host") else None
    container = int(m.group("container"))
    for value in (host, container):
        if value is not None and not 0 < value < 65536:
            raise ValueError(f"port {text!r}: {value} is not a port number (1-65535)")
    ip = m.group("ip") or ""
    if ip:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise ValueError(f"port {text!r}: {ip!r} is not an IPv4 address") from None
    # 0.0.0.0 binds every address: the same as giving none.
    return PortBinding("" if ip == "0.0.0.0" else ip, host, container, m.group("proto") or "tcp")


def ports_clash(a: tuple[str, int, str], b: tuple[str, int, str]) -> bool:
    """Two (host ip, host port, proto) bindings clash on one host; an empty ip means every address."""
    return a[1] == b[1] and a[2] == b[2] and (not a[0] or not b[0] or a[0] == b[0])


class Template(_Model):
    image: str = Field(min_length=1)
    command: list[str] | str | None = Field(
        default=None, description="Argument list, or a string run with `sh -c`."
    )
    env: dict[str, str] = Field(default_factory=dict)
    workingDir: str | None = None
    user: str | None = None
    mounts: list[Mount] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    ports: list[str] = Field(
        default_factory=list,
        description='Published ports: "8080:80", "127.0.0.1:8080:80/udp", or "80" for a random host port.',
    )
    network: str | None = Field(default=None, description="Docker network to join (default: the daemon's default).")

    @field_validator("ports", mode="before")
    @classmethod
    def _ports_as_text(cls, v):
        if isinstance(v, list):
            return [str(p) if isinstance(p, int) and not isinstance(p, bool) else p for p in v]
        return v

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: list[str]) -> list[str]:
        seen: list[tuple[str, int, str]] = []
        for text in v:
            port = parse_port(text)
            if port.host_port is not None:
                key = (port.ip, port.host_port, port.proto)
                if any(ports_clash(key, other) for other in seen):
                    raise ValueError(f"host port {port.host_port}/{port.proto} is published twice")
                seen.append(key)
        return v

    def port_bindings(self) -> list[PortBinding]:
        return [parse_port(p) for p in self.ports]

    @field_validator("env", mode="before")
    @classmethod
    def _env_as_text(cls, v):
        return _scalars_as_text(v)

    def argv(self) -> list[str] | None:
        if self.command is None:
            return None
        if isinstance(self.command, str):
            return ["sh", "-c", self.command]
        return list(self.command)


class Backoff(_Model):
    initialSeconds: float = Field(default=2, ge=0)
    maxSeconds: float = Field(default=60, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> "Backoff":
        if self.maxSeconds < self.initialSeconds:
            raise ValueError("maxSeconds must be >= initialSeconds")
        return self

    def delay(self, failures: int) -> float:
        """Delay before the attempt that follows the `failures`-th failure (1-based)."""
        if failures <= 0:
            return 0.0
        return min(self.maxSeconds, self.initialSeconds * 2 ** (failures - 1))


class Placement(str, Enum):
    SPREAD = "spread"
    BINPACK = "binpack"


class _Scheduling(_Model):
    """Placement fields shared by Jobs and Services."""

    executionType: str = DEFAULT_EXECUTION_TYPE
    placement: Placement = Field(default=Placement.SPREAD, description="spread: least busy node first; binpack: most busy first.")
    priority: int = Field(default=0, description="Higher is placed first; FIFO within a priority.")
    nodeSelector: dict[str, str] = Field(default_factory=dict, description="Node labels that must all match.")
    nodeName: str | None = Field(default=None, description="Run only on this node.")
    colocateWith: str | None = Field(
        default=None, description="Job/NAME or Service/NAME: run on the node where that resource's task runs."
    )
    sticky: bool = Field(default=False, description="Keep a replacement on its previous attempt's node while it is Ready.")
    onNodeLost: Literal["reschedule", "wait"] = Field(
        default="reschedule",
        description="reschedule: replace tasks of a Lost node elsewhere at once; wait: keep them bound to it "
                    "until it returns (for work that must never run twice).",
    )

    @field_validator("nodeSelector", mode="before")
    @classmethod
    def _selector_as_text(cls, v):
        return _scalars_as_text(v)

    @field_validator("colocateWith")
    @classmethod
    def _colocate_ref(cls, v):
        if v is None:
            return v
        kind, sep, name = v.partition("/")
        if not sep or kind not in ("Job", "Service") or not NAME_RE.match(name):
            raise ValueError(f"{v!r} is not Job/NAME or Service/NAME")
        return v


class JobSpec(_Scheduling):
    completions: int = Field(default=1, ge=1)
    parallelism: int = Field(default=1, ge=1)
    backoffLimit: int = Field(default=3, ge=0)
    backoff: Backoff = Field(default_factory=Backoff)
    activeDeadlineSeconds: float | None = Field(
        default=None, gt=0, description="Past this many seconds since the first start, stop the Job: Failed, DeadlineExceeded."
    )
    timeoutSeconds: float | None = Field(default=None, gt=0, description="Kill and fail one attempt after this long.")
    ttlSecondsAfterFinished: float | None = Field(
        default=None, ge=0, description="Delete the finished Job and its tasks after this long (default: keep)."
    )
    suspend: bool = Field(default=False, description="true: create no tasks and stop active ones; false resumes.")
    terminationGracePeriodSeconds: float = Field(default=10, ge=0, description="SIGTERM, then kill after this long.")
    template: Template


class Restart(Backoff):
    """A Service replica's restart backoff: doubles per quick exit, reset after 60 s of healthy running."""

    initialSeconds: float = Field(default=1, ge=0)
    maxSeconds: float = Field(default=60, ge=0)


class HealthCheck(_Model):
    """Passed to Docker as the container's HEALTHCHECK; a replica is ready only when healthy."""

    command: list[str] | str = Field(description="Argument list (CMD), or a string run by the shell (CMD-SHELL).")
    intervalSeconds: float = Field(default=10, gt=0)
    timeoutSeconds: float = Field(default=5, gt=0)
    retries: int = Field(default=3, ge=1, description="Consecutive failures before the replica is unhealthy.")
    startPeriodSeconds: float = Field(default=0, ge=0, description="Failures in this first period do not count.")

    @field_validator("command")
    @classmethod
    def _non_empty(cls, v):
        if not v:
            raise ValueError("healthCheck.command must not be empty")
        return v

    def docker_test(self) -> list[str]:
        return ["CMD-SHELL", self.command] if isinstance(self.command, str) else ["CMD", *self.command]


class Update(_Model):
    """Rolling update of a Service whose template changed."""

    maxSurge: int = Field(default=1, ge=0, description="Replicas allowed above `replicas` during an update.")
    maxUnavailable: int = Field(default=0, ge=0, description="Replicas allowed below `replicas` ready during an update.")
    minReadySeconds: float = Field(
        default=2, ge=0, description="A new replica must stay ready this long before the next old one is stopped."
    )
    progressDeadlineSeconds: float = Field(
        default=120, gt=0, description="Pause the rollout when no new replica became ready for this long."
    )
    autoRollback: bool = Field(default=False, description="On a paused rollout, return to the last complete revision.")

    @model_validator(mode="after")
    def _can_progress(self) -> "Update":
        if self.maxSurge == 0 and self.maxUnavailable == 0:
            raise ValueError("maxSurge and maxUnavailable cannot both be 0; the update could never start a replica")
        return self


class ServiceSpec(_Scheduling):
    replicas: int = Field(default=1, ge=0)
    maxPerNode: int | None = Field(default=None, ge=1, description="At most this many replicas on one node.")
    restart: Restart = Field(default_factory=Restart)
    healthCheck: HealthCheck | None = None
    update: Update = Field(default_factory=Update)
    terminationGracePeriodSeconds: float = Field(default=10, ge=0, description="SIGTERM, then kill after this long.")
    template: Template


def template_hash(spec: JobSpec | ServiceSpec) -> str:
    """What makes a replica's container: the normalised template (and health check). Ten hex digits.

    Defaults are filled in before hashing, so spelling out a default does not roll a Service.
    """
    what = {"template": spec.template.model_dump(mode="json")}
    health = getattr(spec, "healthCheck", None)
    if health is not None:
        what["healthCheck"] = health.model_dump(mode="json")
    text = json.dumps(what, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


class _Resource(_Model):
    apiVersion: Literal["broker/v1"]
    metadata: Metadata

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.metadata.name}"


class Node(_Resource):
    kind: Literal["Node"]
    spec: NodeSpec


class Job(_Resource):
    kind: Literal["Job"]
    spec: JobSpec


class Service(_Resource):
    kind: Literal["Service"]
    spec: ServiceSpec


Resource = Annotated[Union[Node, Job, Service], Field(discriminator="kind")]
MODELS: dict[Kind, type[_Resource]] = {Kind.NODE: Node, Kind.JOB: Job, Kind.SERVICE: Service}
