"""Field types and parsers every manifest kind shares: names, labels and env names, strict numbers,
sizes, ports and image references, and the caps checked at apply.

Used by the kind modules of ``spec`` (``node``, ``workload``, ``models``); ``parse_memory`` and ``parse_port``
also by the engine. Checks that guard what a manifest may ask for run at apply only (see ``STORED``).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
)

from ..kinds import NAME_RE  # noqa: F401  (re-exported: the models and schemas name it here)

API_VERSION = "broker/v1"


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


def applying(info: ValidationInfo) -> bool:
    """True when validating a manifest, False when re-reading a stored spec (see the module doc)."""
    return not (info.context or {}).get("stored")


# Strict scalars: `completions: true` or `"3"` is an error, not 1 or 3. A strict float still takes
# an integer (`timeoutSeconds: 5`).
Int = Annotated[int, Strict()]


Float = Annotated[float, Strict()]


Bool = Annotated[bool, Strict()]


def at_most(limit: int):
    """An upper bound checked at apply only; ``le=`` would also refuse a stored spec."""
    def check(v: int, info: ValidationInfo) -> int:
        if applying(info) and v > limit:
            raise ValueError(f"{v} is more than the limit of {limit:,}")
        return v

    return AfterValidator(check)


def _label_key(key: str, info: ValidationInfo) -> str:
    if applying(info) and key.startswith(RESERVED_LABEL_PREFIX):
        raise ValueError(f"{key!r}: label keys starting with '{RESERVED_LABEL_PREFIX}' are reserved "
                         "(brokerctl sets them on every container); use another key")
    return key


def _env_name(key: str, info: ValidationInfo) -> str:
    if not applying(info):
        return key
    if not key or "=" in key:
        raise ValueError(f"{key!r} is not an environment variable name: it must be non-empty and have no '='")
    if key.startswith(RESERVED_ENV_PREFIX):
        raise ValueError(f"{key!r}: names starting with '{RESERVED_ENV_PREFIX}' are reserved (brokerctl sets "
                         "BROKER_TASK_ID, BROKER_TASK_INDEX, BROKER_ATTEMPT and BROKER_OWNER); use another name")
    return key


LabelKey = Annotated[str, AfterValidator(_label_key)]


EnvName = Annotated[str, AfterValidator(_env_name)]


class SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def dns_label(v: str) -> str:
    """``v`` if it is a lowercase DNS label (names of resources and namespaces), else ValueError."""
    if len(v) > 63 or not NAME_RE.match(v):
        raise ValueError(
            f"{v!r} is not a lowercase DNS label (a-z, 0-9 and '-', starting and ending "
            "with a letter or digit, at most 63 characters)"
        )
    return v


# The metadata of a cluster-scoped kind (Node, Namespace): it belongs to no namespace. (Comments,
# not docstrings, here: a model's docstring becomes its description in the JSON Schema.)
class ClusterMetadata(SpecModel):
    name: str = Field(description="Lowercase DNS label, at most 63 characters.")
    labels: dict[LabelKey, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _dns_label(cls, v: str) -> str:
        return dns_label(v)

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_text(cls, v):
        return scalars_as_text(v)


# The metadata of a namespaced kind (Job, Service). ``namespace`` None: the namespace the caller
# names (``-n``), else ``default``; ``manifests`` fills it in when loading.
class Metadata(ClusterMetadata):
    namespace: str | None = Field(
        default=None, description="Lowercase DNS label; default: the -n/--namespace of the command, else `default`.")

    @field_validator("namespace")
    @classmethod
    def _namespace_label(cls, v: str | None) -> str | None:
        return v if v is None else dns_label(v)


def scalars_as_text(v):
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


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(v: str) -> float:
    """`30d`, `12h`, `90m`, `45s`, `2w` -> seconds; raises ValueError naming the value and the form."""
    m = _DURATION_RE.match(v) if isinstance(v, str) else None
    if not m:
        raise ValueError(f"duration {v!r} is not a number and a unit (s, m, h, d or w), e.g. 30d, 12h, 90m")
    seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError(f"duration {v!r} must be longer than 0")
    return seconds


VOLUME_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")  # Docker's rule for volume names


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


IMAGE_SHAPE = "[registry[:port]/]name[:tag][@sha256:digest], e.g. busybox:1.36 or registry.example.com:5000/team/app"


def image_problem(ref: str) -> str | None:
    """Why ``ref`` is not an image reference Docker would accept; None if it is one."""
    m = IMAGE_RE.fullmatch(ref)
    if m and len(m.group("name")) <= 255:
        return None
    if any(c.isspace() for c in ref):
        return f"image {ref!r} contains whitespace; an image reference is {IMAGE_SHAPE}"
    if m is None and IMAGE_RE.fullmatch(ref.lower()):
        return f"image {ref!r}: repository names must be lowercase ({ref.lower()!r}?)"
    if m is not None:
        return f"image {ref!r}: the repository name is longer than 255 characters"
    return f"image {ref!r} is not an image reference; expected {IMAGE_SHAPE}"


def image_registry(ref: str) -> str:
    """The registry an image reference pulls from: its first component when that is a host (it has a
    '.' or a ':', or is localhost), else Docker Hub, ``docker.io`` (Docker's own rule)."""
    first, sep, _ = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


_REGISTRY_RE = re.compile(rf"(?:[a-z]+://)?(?P<host>{_REGISTRY})/?")


def registry_problem(server: str) -> str | None:
    """Why ``server`` does not name a registry (``host[:port]``, as an image reference starts); None if it does."""
    if _REGISTRY_RE.fullmatch(server.strip()):
        return None
    return (f"server {server!r} is not a registry host[:port] as image references name it, e.g. "
            "registry.example.com:5000 or docker.io")


# Docker's `user` form: a user and optionally a group, each a numeric id or a name (ASCII digits: a
# user of other digits would be taken for a name).
_ID_OR_NAME = r"(?:[0-9]+|[A-Za-z_][A-Za-z0-9_.-]*\$?)"
USER_RE = re.compile(rf"^{_ID_OR_NAME}(?::{_ID_OR_NAME})?$")


def user_problem(user: str) -> str | None:
    """Why ``user`` is not Docker's ``uid[:gid]`` form (numbers or names), or None."""
    if USER_RE.match(user):
        return None
    return f"user {user!r} is not uid[:gid] or a name, e.g. \"1000:1000\" or \"builder\""


def is_root(user: str) -> bool:
    """``0``, ``00``, ``root``, ``0:0``, ``root:wheel``...: the user part is root (Docker reads a
    numeric user as a number, so ``00`` is uid 0 too)."""
    name = user.partition(":")[0]
    return name == "root" or (name.isascii() and name.isdigit() and int(name) == 0)


def is_numeric_user(user: str) -> bool:
    """``1000`` or ``1000:1000``: the user part is a uid, which needs no lookup in the image."""
    name = user.partition(":")[0]
    return name.isascii() and name.isdigit()


def ids_as_text(v):
    """`1001` written without quotes is a number in YAML; a user id is text to Docker."""
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if isinstance(v, list):
        return [ids_as_text(x) for x in v]
    return v
