"""Manifest models: the desired-state vocabulary of brokerctl (Node, Job, Service).

Pydantic v2 models with ``extra="forbid"`` and camelCase field names as they appear in YAML.
Called by ``manifests`` (to validate documents), ``store`` (to round-trip specs) and by the
planner, which reads specs through these types. JSON Schemas in ``schemas/`` are generated
from here (``brokerctl schema KIND``).

Types are strict: a boolean or a string is never read as a number, nor a string as a boolean
(only env and label values, and ports, are deliberately turned into text). Checks that guard
what a manifest may ask for (the field caps, reserved label and env names, image references,
Docker's limits) run at apply only: specs read back from the store are validated with
``context=STORED`` and skip them, so a record written before a check existed still loads and one
stale resource cannot fail every controller pass.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import posixpath
import re
from enum import Enum
from typing import Annotated, Literal, NamedTuple, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, ValidationInfo, field_validator, model_validator

from ..kinds import JobPhase, Kind, TaskPhase  # noqa: F401  (re-exported: part of the model vocabulary)

API_VERSION = "broker/v1"
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DEFAULT_EXECUTION_TYPE = "default"

# Limits enforced at apply (the schemas show them as `maximum`).
MAX_COMPLETIONS = 1_000_000
MAX_PARALLELISM = 1_000_000
MAX_REPLICAS = 1_000_000
# Docker refuses a memory limit below this (6 MiB).
MIN_MEMORY_BYTES = 6 * 1024 * 1024
# Label keys and env names brokerctl sets on every task container itself.
RESERVED_LABEL_PREFIX = "brokerctl."
RESERVED_ENV_PREFIX = "BROKER_"

STORED = {"stored": True}  # validation context of specs read back from the store


def _applying(info: ValidationInfo) -> bool:
    """True when validating a manifest, False when re-reading a stored spec (see the module doc)."""
    return not (info.context or {}).get("stored")


# Strict scalars: `completions: true` or `"3"` is an error, not 1 or 3. A strict float still takes
# an integer (`timeoutSeconds: 5`).
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]


def _at_most(limit: int):
    """An upper bound checked at apply only; ``le=`` would also refuse a stored spec."""
    def check(v: int, info: ValidationInfo) -> int:
        if _applying(info) and v > limit:
            raise ValueError(f"{v} is more than the limit of {limit:,}")
        return v

    return AfterValidator(check)


def _label_key(key: str, info: ValidationInfo) -> str:
    if _applying(info) and key.startswith(RESERVED_LABEL_PREFIX):
        raise ValueError(f"{key!r}: label keys starting with '{RESERVED_LABEL_PREFIX}' are reserved "
                         "(brokerctl sets them on every container); use another key")
    return key


def _env_name(key: str, info: ValidationInfo) -> str:
    if not _applying(info):
        return key
    if not key or "=" in key:
        raise ValueError(f"{key!r} is not an environment variable name: it must be non-empty and have no '='")
    if key.startswith(RESERVED_ENV_PREFIX):
        raise ValueError(f"{key!r}: names starting with '{RESERVED_ENV_PREFIX}' are reserved (brokerctl sets "
                         "BROKER_TASK_ID, BROKER_TASK_INDEX, BROKER_ATTEMPT and BROKER_OWNER); use another name")
    return key


LabelKey = Annotated[str, AfterValidator(_label_key)]
EnvName = Annotated[str, AfterValidator(_env_name)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Metadata(_Model):
    name: str = Field(description="Lowercase DNS label, at most 63 characters.")
    labels: dict[LabelKey, str] = Field(default_factory=dict)

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
    slots: dict[str, Annotated[Int, Field(ge=0)]] | None = Field(
        default=None,
        description="Execution type -> slot count. Omitted: {default: CPUs the host reports}.",
    )
    unschedulable: Bool = False
    lostAfterSeconds: Float | None = Field(
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
    def _address(cls, v: str, info: ValidationInfo) -> str:
        if v.startswith("unix://"):
            if not v[len("unix://"):].startswith("/"):
                raise ValueError(f"{v!r}: a unix address needs an absolute path, e.g. unix:///var/run/docker.sock")
            return v
        m = re.match(r"^tcp://([^/:]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$", v)
        if m and 0 < int(m.group(2)) < 65536:
            if _applying(info) and (problem := _host_problem(m.group(1))):
                raise ValueError(f"{v!r}: {problem}")
            return v
        raise ValueError(f"{v!r} is not a Docker address; use unix:///path or tcp://host:port")

    @model_validator(mode="after")
    def _tls_needs_tcp(self) -> "NodeSpec":
        if self.tls is not None and not self.address.startswith("tcp://"):
            raise ValueError("tls applies only to tcp:// addresses")
        return self


_HOST_LABEL = re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")


def _host_problem(host: str) -> str | None:
    """Why ``host`` (of tcp://host:port) is neither an IP address nor an RFC 1123 host name; None if fine."""
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"{host} is not an IPv6 address"
        return None
    labels = host.split(".")
    if labels[-1].isdigit():  # all-numeric: meant as an IPv4 address (no top-level domain is numeric)
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"{host!r} is not an IPv4 address (four numbers 0-255)"
        return None
    if len(host) > 253 or not all(len(label) <= 63 and _HOST_LABEL.match(label) for label in labels):
        return (f"{host!r} is not a host name (dot-separated labels of letters, digits and '-', "
                "not starting or ending with '-', at most 63 characters each)")
    return None


VOLUME_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")  # Docker's rule for volume names


class Mount(_Model):
    source: str = Field(description="Absolute host path (bind mount) or Docker volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*).")
    target: str = Field(description="Absolute path inside the container (not /).")
    readOnly: Bool = False

    @field_validator("source")
    @classmethod
    def _path_or_volume(cls, v: str, info: ValidationInfo) -> str:
        if _applying(info) and not v.startswith("/") and not VOLUME_NAME_RE.match(v):
            raise ValueError(f"mount source {v!r} is neither an absolute host path nor a volume name "
                             "(letters, digits, '_', '.' and '-', starting with a letter or digit); "
                             f"for a host path write it absolute, e.g. /srv/{v.lstrip('./') or 'data'}")
        return v

    @field_validator("target")
    @classmethod
    def _absolute(cls, v: str, info: ValidationInfo) -> str:
        if not v.startswith("/"):
            raise ValueError(f"mount target {v!r} must be an absolute path")
        if _applying(info) and posixpath.normpath(v) in ("/", "//"):
            raise ValueError(f"mount target {v!r} would cover the container's whole filesystem; "
                             "mount on a directory such as /data")
        return v


class Resources(_Model):
    cpus: Float | None = Field(default=None, gt=0, description="CPU limit (Docker NanoCpus).")
    memory: Annotated[str, Strict()] | Int | None = Field(
        default=None, description="Memory limit: bytes, or a size such as 256m, 1g, 512Mi; at least 6m (Docker's minimum)."
    )

    @field_validator("memory")
    @classmethod
    def _memory(cls, v, info: ValidationInfo):
        if v is None:
            return v
        size = parse_memory(v)
        if _applying(info) and size < MIN_MEMORY_BYTES:
            raise ValueError(f"memory {v!r} is {size} bytes; Docker's minimum is 6m ({MIN_MEMORY_BYTES} bytes)")
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


# Docker's image reference grammar (distribution/reference): [host[:port]/]path[:tag][@digest], where the
# path's components are lowercase letters and digits joined by '.', '_', '__' or '-'s.
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_REGISTRY = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
IMAGE_RE = re.compile(
    rf"(?P<name>(?:{_REGISTRY}/)?{_PATH_PART}(?:/{_PATH_PART})*)"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"  # tag
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"  # digest
)
_IMAGE_SHAPE = "[registry[:port]/]name[:tag][@sha256:digest], e.g. busybox:1.36 or registry.example.com:5000/team/app"


def _image_problem(ref: str) -> str | None:
    """Why ``ref`` is not an image reference Docker would accept; None if it is one."""
    m = IMAGE_RE.fullmatch(ref)
    if m and len(m.group("name")) <= 255:
        return None
    if any(c.isspace() for c in ref):
        return f"image {ref!r} contains whitespace; an image reference is {_IMAGE_SHAPE}"
    if m is None and IMAGE_RE.fullmatch(ref.lower()):
        return f"image {ref!r}: repository names must be lowercase ({ref.lower()!r}?)"
    if m is not None:
        return f"image {ref!r}: the repository name is longer than 255 characters"
    return f"image {ref!r} is not an image reference; expected {_IMAGE_SHAPE}"


class Template(_Model):
    image: str = Field(min_length=1, description=f"Image reference: {_IMAGE_SHAPE}.")
    command: list[str] | str | None = Field(
        default=None, description="Argument list, or a string run with `sh -c`."
    )
    env: dict[EnvName, str] = Field(default_factory=dict)
    workingDir: str | None = None
    user: str | None = None
    mounts: list[Mount] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    ports: list[str] = Field(
        default_factory=list,
        description='Published ports: "8080:80", "127.0.0.1:8080:80/udp", or "80" for a random host port.',
    )
    network: str | None = Field(default=None, description="Docker network to join (default: the daemon's default).")

    @field_validator("image")
    @classmethod
    def _image(cls, v: str, info: ValidationInfo) -> str:
        if _applying(info) and (problem := _image_problem(v)):
            raise ValueError(problem)
        return v

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
    initialSeconds: Float = Field(default=2, ge=0)
    maxSeconds: Float = Field(default=60, ge=0)

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
    priority: Int = Field(default=0, description="Higher is placed first; FIFO within a priority.")
    nodeSelector: dict[str, str] = Field(default_factory=dict, description="Node labels that must all match.")
    nodeName: str | None = Field(default=None, description="Run only on this node.")
    colocateWith: str | None = Field(
        default=None, description="Job/NAME or Service/NAME: run on the node where that resource's task runs."
    )
    sticky: Bool = Field(default=False, description="Keep a replacement on its previous attempt's node while it is Ready.")
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
    completions: Annotated[Int, _at_most(MAX_COMPLETIONS)] = Field(
        default=1, ge=1, json_schema_extra={"maximum": MAX_COMPLETIONS}
    )
    parallelism: Annotated[Int, _at_most(MAX_PARALLELISM)] = Field(
        default=1, ge=1, json_schema_extra={"maximum": MAX_PARALLELISM}
    )
    backoffLimit: Int = Field(default=3, ge=0)
    backoff: Backoff = Field(default_factory=Backoff)
    activeDeadlineSeconds: Float | None = Field(
        default=None, gt=0, description="Past this many seconds since the first start, stop the Job: Failed, DeadlineExceeded."
    )
    timeoutSeconds: Float | None = Field(default=None, gt=0, description="Kill and fail one attempt after this long.")
    ttlSecondsAfterFinished: Float | None = Field(
        default=None, ge=0, description="Delete the finished Job and its tasks after this long (default: keep)."
    )
    suspend: Bool = Field(default=False, description="true: create no tasks and stop active ones; false resumes.")
    terminationGracePeriodSeconds: Float = Field(default=10, ge=0, description="SIGTERM, then kill after this long.")
    template: Template = Field(description="Cannot change while the Job exists: delete and re-create it, or use a new name.")


class Restart(Backoff):
    """A Service replica's restart backoff: doubles per quick exit, reset after 60 s of healthy running."""

    initialSeconds: Float = Field(default=1, ge=0)
    maxSeconds: Float = Field(default=60, ge=0)


class HealthCheck(_Model):
    """Passed to Docker as the container's HEALTHCHECK; a replica is ready only when healthy."""

    command: list[str] | str = Field(description="Argument list (CMD), or a string run by the shell (CMD-SHELL).")
    intervalSeconds: Float = Field(default=10, gt=0)
    timeoutSeconds: Float = Field(default=5, gt=0)
    retries: Int = Field(default=3, ge=1, description="Consecutive failures before the replica is unhealthy.")
    startPeriodSeconds: Float = Field(default=0, ge=0, description="Failures in this first period do not count.")

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

    maxSurge: Int = Field(default=1, ge=0, description="Replicas allowed above `replicas` during an update.")
    maxUnavailable: Int = Field(default=0, ge=0, description="Replicas allowed below `replicas` ready during an update.")
    minReadySeconds: Float = Field(
        default=2, ge=0, description="A new replica must stay ready this long before the next old one is stopped."
    )
    progressDeadlineSeconds: Float = Field(
        default=120, gt=0, description="Pause the rollout when no new replica became ready for this long."
    )
    autoRollback: Bool = Field(default=False, description="On a paused rollout, return to the last complete revision.")

    @model_validator(mode="after")
    def _can_progress(self) -> "Update":
        if self.maxSurge == 0 and self.maxUnavailable == 0:
            raise ValueError("maxSurge and maxUnavailable cannot both be 0; the update could never start a replica")
        return self


class ServiceSpec(_Scheduling):
    replicas: Annotated[Int, _at_most(MAX_REPLICAS)] = Field(
        default=1, ge=0, json_schema_extra={"maximum": MAX_REPLICAS}
    )
    maxPerNode: Int | None = Field(default=None, ge=1, description="At most this many replicas on one node.")
    restart: Restart = Field(default_factory=Restart)
    healthCheck: HealthCheck | None = None
    update: Update = Field(default_factory=Update)
    terminationGracePeriodSeconds: Float = Field(default=10, ge=0, description="SIGTERM, then kill after this long.")
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
