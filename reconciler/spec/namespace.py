"""A Namespace's spec: what the teams sharing one pool may use and how. Every field is optional.

``quota`` caps what a namespace's active tasks use at once, ``budget`` the cpu-hours they consume
over a rolling window, ``share`` is its weight in the fair-share queue, ``runAs`` the users its
tasks may run as, ``mounts`` are added to every task of the namespace (still subject to each node's
``allowedMounts``), and ``nodeSelector`` keeps its tasks on matching nodes. Used by ``spec.models``
(the Namespace kind) and by the engine, which reads ``mounts`` and ``nodeSelector`` when it places
and starts a task.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, Strict, field_validator, model_validator

from .fields import Bool, Float, Int, SpecModel, parse_duration, parse_memory, scalars_as_text
from .workload import Mount


class Quota(SpecModel):
    """Hard caps, each summed over the namespace's active tasks (omitted: no cap)."""

    cpus: Float | None = Field(default=None, gt=0, description="CPUs the tasks request, in total.")
    memory: Annotated[str, Strict()] | Int | None = Field(
        default=None, description="Memory the tasks request, in total: bytes, or a size such as 16g, 512Mi.")
    tasks: Int | None = Field(default=None, ge=0, description="Tasks at once (0: none may run).")
    slots: dict[str, Annotated[Int, Field(ge=0)]] = Field(
        default_factory=dict, description="Execution type -> slots its tasks may hold at once.")

    @field_validator("memory")
    @classmethod
    def _memory(cls, v):
        if v is not None:
            parse_memory(v)
        return v

    def memory_bytes(self) -> int | None:
        return None if self.memory is None else parse_memory(self.memory)


class Budget(SpecModel):
    """Cpu-hours the namespace may consume over a rolling window (requested cpus x run time)."""

    cpuHours: Float = Field(gt=0, description="Cpu-hours allowed within the window.")
    window: Annotated[str, Strict()] = Field(description="The rolling window: a number and a unit (s, m, h, d, w), "
                                                         "e.g. 30d, 12h, 90m.")

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        parse_duration(v)
        return v

    def window_seconds(self) -> float:
        return parse_duration(self.window)


# Docker's `user` form: a user and optionally a group, each a numeric id or a name.
_ID_OR_NAME = r"(?:\d+|[A-Za-z_][A-Za-z0-9_.-]*\$?)"
RUN_AS_USER_RE = re.compile(rf"^{_ID_OR_NAME}(?::{_ID_OR_NAME})?$")


def is_root(user: str) -> bool:
    """``0``, ``root``, ``0:0``, ``root:wheel``...: the user part is root."""
    return user.partition(":")[0] in ("0", "root")


def _ids_as_text(v):
    """`1001` written without quotes is a number in YAML; a user id is text to Docker."""
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if isinstance(v, list):
        return [_ids_as_text(x) for x in v]
    return v


class RunAs(SpecModel):
    """Users the namespace's tasks may run as (``template.user``)."""

    users: list[str] = Field(min_length=1, description='Allowed users: "uid[:gid]" or names, e.g. "1000:1000".')
    default: str | None = Field(default=None, description="The user of a task that names none; one of users.")
    allowRoot: Bool = Field(default=True, description="false: refuse uid 0, and images that default to root "
                                                      "unless a user is set.")

    @field_validator("users", "default", mode="before")
    @classmethod
    def _as_text(cls, v):
        return _ids_as_text(v)

    @field_validator("users")
    @classmethod
    def _users(cls, v: list[str]) -> list[str]:
        for user in v:
            if not RUN_AS_USER_RE.match(user):
                raise ValueError(f"user {user!r} is not uid[:gid] or a name, e.g. \"1000:1000\" or \"builder\"")
        if len(set(v)) != len(v):
            raise ValueError("a user is listed twice; keep one")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "RunAs":
        if self.default is not None and self.default not in self.users:
            raise ValueError(f"default {self.default!r} is not one of users ({', '.join(self.users)}); "
                             "add it to users or pick one of them")
        if not self.allowRoot and (root := [u for u in self.users if is_root(u)]):
            raise ValueError(f"users lists root ({', '.join(root)}) but allowRoot is false; remove it or allow root")
        return self


REQUESTED_CAPS = ("cpus", "memory")  # caps a task can be counted against only if it requests them


def unrequested(quota: dict | None, resources) -> list[tuple[str, object]]:
    """(field, cap) for each cpus or memory cap of ``quota`` (a Namespace's ``spec.quota`` as stored, a
    dict) that a template's ``resources`` does not request. Such a workload is refused at apply, as
    Kubernetes does; one applied before the cap waits with a reason that names the field."""
    if not quota:
        return []
    return [(f, quota[f]) for f in REQUESTED_CAPS if quota.get(f) is not None and getattr(resources, f) is None]


class NamespaceSpec(SpecModel):
    quota: Quota | None = Field(default=None, description="Hard caps on what the namespace runs at once.")
    budget: Budget | None = Field(default=None, description="Cpu-hours consumed over a rolling window.")
    share: Float = Field(default=1, gt=0, description="Fair-share weight: a namespace with share 2 gets twice "
                                                      "the slots of one with 1 when both wait.")
    runAs: RunAs | None = Field(default=None, description="Users the tasks may run as (default: any).")
    mounts: list[Mount] = Field(default_factory=list, description="Added to every task of the namespace (bind "
                                                                  "mounts still need the node's allowedMounts).")
    nodeSelector: dict[str, str] = Field(default_factory=dict, description="Node labels every task of the "
                                                                           "namespace needs, besides its own.")

    @field_validator("nodeSelector", mode="before")
    @classmethod
    def _selector_as_text(cls, v):
        return scalars_as_text(v)

    @field_validator("mounts")
    @classmethod
    def _one_mount_per_target(cls, v: list[Mount]) -> list[Mount]:
        seen = set()
        for m in v:
            if m.target in seen:
                raise ValueError(f"mount target {m.target} is listed twice; keep one")
            seen.add(m.target)
        return v
