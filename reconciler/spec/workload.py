"""What Jobs and Services run and how: the container template (image, command, env, mounts,
resources, ports, network, the Secrets it reads), scheduling fields, Job and Service specs, health
checks, rolling updates, and ``template_hash``. Used by ``spec.models``, the engine and the store
(revisions).

A template names Secrets of its namespace, never their values: an env variable may come from one
key of a Secret (``{secretKeyRef: {name, key}}``), ``envFrom`` takes every key of a Secret, and
``imagePullSecret`` pulls the image with a registry Secret. The values are put in only when the
container is created.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from enum import Enum
from typing import Annotated, Literal

from pydantic import Field, Strict, ValidationInfo, field_validator, model_validator

from .fields import (
    DEFAULT_EXECUTION_TYPE,
    IMAGE_SHAPE,
    MAX_COMPLETIONS,
    MAX_PARALLELISM,
    MAX_REPLICAS,
    MIN_MEMORY_BYTES,
    NAME_RE,
    VOLUME_NAME_RE,
    Bool,
    EnvName,
    Float,
    Int,
    PortBinding,
    SpecModel,
    applying,
    at_most,
    dns_label,
    ids_as_text,
    image_problem,
    parse_memory,
    parse_port,
    ports_clash,
    scalars_as_text,
    user_problem,
)
from .secret import secret_key


class Mount(SpecModel):
    source: str = Field(description="Absolute host path (bind mount) or Docker volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*).")
    target: str = Field(description="Absolute path inside the container (not /).")
    readOnly: Bool = False

    @field_validator("source")
    @classmethod
    def _path_or_volume(cls, v: str, info: ValidationInfo) -> str:
        if applying(info) and not v.startswith("/") and not VOLUME_NAME_RE.match(v):
            raise ValueError(f"mount source {v!r} is neither an absolute host path nor a volume name "
                             "(letters, digits, '_', '.' and '-', starting with a letter or digit); "
                             f"for a host path write it absolute, e.g. /srv/{v.lstrip('./') or 'data'}")
        return v

    @field_validator("target")
    @classmethod
    def _absolute(cls, v: str, info: ValidationInfo) -> str:
        if not v.startswith("/"):
            raise ValueError(f"mount target {v!r} must be an absolute path")
        if applying(info) and posixpath.normpath(v) in ("/", "//"):
            raise ValueError(f"mount target {v!r} would cover the container's whole filesystem; "
                             "mount on a directory such as /data")
        return v


class Resources(SpecModel):
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
        if applying(info) and size < MIN_MEMORY_BYTES:
            raise ValueError(f"memory {v!r} is {size} bytes; Docker's minimum is 6m ({MIN_MEMORY_BYTES} bytes)")
        return v

    def memory_bytes(self) -> int | None:
        return None if self.memory is None else parse_memory(self.memory)


class SecretKeyRef(SpecModel):
    name: str = Field(description="A Secret of the task's namespace.")
    key: str = Field(description="The key of the value in that Secret.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return dns_label(v)

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        return secret_key(v)


# An environment variable whose value is one key of a Secret.
class EnvSecret(SpecModel):
    secretKeyRef: SecretKeyRef


# Every key of a Secret as an environment variable (an `env` entry of the same name wins).
class EnvFrom(SpecModel):
    secretRef: str = Field(description="A Secret of the task's namespace (also written {name: NAME}).")

    @field_validator("secretRef", mode="before")
    @classmethod
    def _name_mapping(cls, v):
        if isinstance(v, dict) and set(v) == {"name"}:  # Kubernetes' spelling
            return v["name"]
        return v

    @field_validator("secretRef")
    @classmethod
    def _name(cls, v: str) -> str:
        return dns_label(v)


class Template(SpecModel):
    image: str = Field(min_length=1, description=f"Image reference: {IMAGE_SHAPE}.")
    command: list[str] | str | None = Field(
        default=None, description="Argument list, or a string run with `sh -c`."
    )
    env: dict[EnvName, str | EnvSecret] = Field(
        default_factory=dict, description="NAME -> value, or {secretKeyRef: {name, key}} for a Secret's value.")
    envFrom: list[EnvFrom] = Field(default_factory=list, description="Secrets whose every key becomes a variable "
                                                                      "(env wins; a later Secret over an earlier).")
    imagePullSecret: str | None = Field(default=None, description="A registry Secret of the task's namespace to "
                                                                  "pull the image with.")
    workingDir: str | None = None
    user: str | None = Field(default=None, description='User to run as: "uid[:gid]" or names (default: the '
                                                       "namespace's runAs.default, else the image's user).")
    mounts: list[Mount] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    ports: list[str] = Field(
        default_factory=list,
        description='Published ports: "8080:80", "127.0.0.1:8080:80/udp", or "80" for a random host port.',
    )
    network: str | None = Field(default=None, description="Docker network to join (default: the daemon's default).")

    @field_validator("imagePullSecret")
    @classmethod
    def _pull_secret(cls, v: str | None) -> str | None:
        return v if v is None else dns_label(v)

    def secret_names(self) -> set[str]:
        """The Secrets it reads (env, envFrom, imagePullSecret)."""
        names = {v.secretKeyRef.name for v in self.env.values() if isinstance(v, EnvSecret)}
        names |= {f.secretRef for f in self.envFrom}
        if self.imagePullSecret:
            names.add(self.imagePullSecret)
        return names

    @field_validator("image")
    @classmethod
    def _image(cls, v: str, info: ValidationInfo) -> str:
        if applying(info) and (problem := image_problem(v)):
            raise ValueError(problem)
        return v

    @field_validator("user", mode="before")
    @classmethod
    def _user_as_text(cls, v):
        return ids_as_text(v)

    @field_validator("user")
    @classmethod
    def _user(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and applying(info) and (problem := user_problem(v)):
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
        return scalars_as_text(v)

    def argv(self) -> list[str] | None:
        if self.command is None:
            return None
        if isinstance(self.command, str):
            return ["sh", "-c", self.command]
        return list(self.command)


class Backoff(SpecModel):
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


class _Scheduling(SpecModel):
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
        return scalars_as_text(v)

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
    completions: Annotated[Int, at_most(MAX_COMPLETIONS)] = Field(
        default=1, ge=1, json_schema_extra={"maximum": MAX_COMPLETIONS}
    )
    parallelism: Annotated[Int, at_most(MAX_PARALLELISM)] = Field(
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


class HealthCheck(SpecModel):
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


class Update(SpecModel):
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
    replicas: Annotated[Int, at_most(MAX_REPLICAS)] = Field(
        default=1, ge=0, json_schema_extra={"maximum": MAX_REPLICAS}
    )
    maxPerNode: Int | None = Field(default=None, ge=1, description="At most this many replicas on one node.")
    restart: Restart = Field(default_factory=Restart)
    healthCheck: HealthCheck | None = None
    update: Update = Field(default_factory=Update)
    terminationGracePeriodSeconds: Float = Field(default=10, ge=0, description="SIGTERM, then kill after this long.")
    template: Template


# Template fields added after Services were first rolled by hash, with their defaults.
_ADDED_SINCE = {"envFrom": [], "imagePullSecret": None}


def template_hash(spec: JobSpec | ServiceSpec) -> str:
    """What makes a replica's container: the normalised template (and health check). Ten hex digits.

    Defaults are filled in before hashing, so spelling out a default does not roll a Service.
    """
    template = spec.template.model_dump(mode="json")
    for name, default in _ADDED_SINCE.items():  # a template without them hashes as it did before they existed
        if template.get(name) == default:
            del template[name]
    what = {"template": template}
    health = getattr(spec, "healthCheck", None)
    if health is not None:
        what["healthCheck"] = health.model_dump(mode="json")
    text = json.dumps(what, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]
