"""A Namespace's spec: what the teams sharing one pool may use and how. Every field is optional.

``quota`` caps what a namespace's active tasks use at once, ``budget`` the cpu-hours they consume
over a rolling window, ``share`` is its weight in the fair-share queue, ``runAs`` the users its
tasks may run as, ``mounts`` are added to every task of the namespace (still subject to each node's
``allowedMounts``), and ``nodeSelector`` keeps its tasks on matching nodes. Used by ``spec.models``
(the Namespace kind) and by the engine, which reads ``mounts`` and ``nodeSelector`` when it places
and starts a task.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, Strict, field_validator, model_validator

from .fields import (
    Bool, Float, Int, SpecModel, ids_as_text, is_numeric_user, is_root, parse_duration, parse_memory, scalars_as_text,
    user_problem,
)
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


class RunAs(SpecModel):
    """Users the namespace's tasks may run as (``template.user``), checked at apply
    (``user_refusal``); ``default`` is the user of a task that names none."""

    users: Annotated[list[str], Field(min_length=1)] | None = Field(
        default=None, description='Allowed users: "uid[:gid]" or names, e.g. "1000:1000" (omitted: any user, '
                                  'root only if allowRoot).')
    default: str | None = Field(default=None, description="The user of a task that names none; one of users.")
    allowRoot: Bool = Field(default=True, description="false: refuse uid 0, and images that default to root "
                                                      "unless a user is set.")

    @field_validator("users", "default", mode="before")
    @classmethod
    def _as_text(cls, v):
        return ids_as_text(v)

    @field_validator("users")
    @classmethod
    def _users(cls, v: list[str] | None) -> list[str] | None:
        for user in v or ():
            if problem := user_problem(user):
                raise ValueError(problem)
        if v is not None and len(set(v)) != len(v):
            raise ValueError("a user is listed twice; keep one")
        return v

    @field_validator("default")
    @classmethod
    def _default(cls, v: str | None) -> str | None:
        if v is not None and (problem := user_problem(v)):
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "RunAs":
        if self.default is not None and self.users is not None and self.default not in self.users:
            raise ValueError(f"default {self.default!r} is not one of users ({', '.join(self.users)}); "
                             "add it to users or pick one of them")
        if not self.allowRoot and (root := [u for u in self.users or () if is_root(u)]):
            raise ValueError(f"users lists root ({', '.join(root)}) but allowRoot is false; remove it or allow root")
        if not self.allowRoot and self.default is not None and self.users is None and not _non_root_uid(self.default):
            raise ValueError(f"default {self.default!r} may be root (a name, or uid 0) but allowRoot is false; "
                             "set a numeric uid other than 0, or list it in users")
        return self


REQUESTED_CAPS = ("cpus", "memory")  # caps a task can be counted against only if it requests them


def unrequested(quota: dict | None, resources) -> list[tuple[str, object]]:
    """(field, cap) for each cpus or memory cap of ``quota`` (a Namespace's ``spec.quota`` as stored, a
    dict) that a template's ``resources`` does not request. Such a workload is refused at apply, as
    Kubernetes does; one applied before the cap waits with a reason that names the field."""
    if not quota:
        return []
    return [(f, quota[f]) for f in REQUESTED_CAPS if quota.get(f) is not None and getattr(resources, f) is None]


def _non_root_uid(user: str) -> bool:
    return is_numeric_user(user) and not is_root(user)


def user_refusal(run_as: RunAs | None, user: str | None, namespace: str) -> tuple[str, str] | None:
    """Why a task of ``namespace`` may not run as its template's ``user``: (the fault, the fix), or None
    when it may. The store asks at apply, ``ops.sync`` when it decides what a directory may apply.

    Without ``runAs`` any user goes; a task that names no user runs as ``default`` (always allowed)
    or as its image's user, which ``Host.start`` checks when root is forbidden. A name outside
    ``users`` could be root in some image, so where root is forbidden and no list is given only
    numeric uids go.
    """
    if run_as is None or user is None:
        return None
    listed = ", ".join(run_as.users or ())
    leave_out = f", or leave user out to run as the default {run_as.default}" if run_as.default is not None else ""
    subject = f"spec.template.user {user!r}"
    choose = f"use one of runAs.users ({listed})" if listed else "set a numeric uid[:gid] other than 0"
    if not run_as.allowRoot and is_root(user):
        return (f"{subject} is root and namespace '{namespace}' forbids root (runAs.allowRoot: false)",
                choose + leave_out)
    if run_as.users is not None and user not in run_as.users:
        return (f"{subject} is not allowed in namespace '{namespace}' (runAs.users: {listed})",
                f"use one of those users{leave_out}")
    if run_as.users is None and not run_as.allowRoot and not is_numeric_user(user):
        return (f"{subject} is a name, which an image may map to root, and namespace '{namespace}' forbids root "
                "(runAs.allowRoot: false)", choose + leave_out)
    return None


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
