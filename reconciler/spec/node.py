"""A Node's spec: the Docker address, TLS, slots, health settings and the allowlists (mounts,
networks, volumes) that bound what its tasks may touch. Used by ``spec.models`` and the scheduler's
checks (through ``mount_rules`` and ``guarded_network``).
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from typing import Annotated, Literal, NamedTuple

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .fields import Bool, Float, Int, SpecModel, applying


class TLS(SpecModel):
    """How the controller reaches a daemon that serves TLS (dockerd --tlsverify, port 2376 by convention).

    The files are read by the controller (and by ``logs -f`` and ``drain``), so paths are absolute;
    ``apply`` checks that they exist where it runs.
    """

    caFile: str | None = Field(
        default=None, description="PEM file of the CA that signed the daemon's certificate (default: the "
                                  "default CA bundle).")
    certFile: str | None = Field(default=None, description="PEM client certificate the daemon's CA signed.")
    keyFile: str | None = Field(default=None, description="PEM private key of certFile.")

    @field_validator("caFile", "certFile", "keyFile")
    @classmethod
    def _absolute(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and applying(info) and not v.startswith("/"):
            raise ValueError(f"{v!r} must be an absolute path: the controller reads it, and a relative one would "
                             "depend on the directory it was started in")
        return v

    @model_validator(mode="after")
    def _pair(self, info: ValidationInfo) -> "TLS":
        if applying(info) and bool(self.certFile) != bool(self.keyFile):
            given, missing = ("certFile", "keyFile") if self.certFile else ("keyFile", "certFile")
            raise ValueError(f"{given} needs {missing}: a client certificate and its key go together")
        return self

    def files(self) -> list[tuple[str, str]]:
        """(field, path) of each file named."""
        return [(f, getattr(self, f)) for f in ("caFile", "certFile", "keyFile") if getattr(self, f)]


class AllowedMount(SpecModel):
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


class NodeSpec(SpecModel):
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
            if applying(info) and (problem := _host_problem(m.group(1))):
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
