"""The enumerations every layer shares: resource kinds and task and job phases.

Plain ``Enum``s with no pydantic, so that commands which only read the store (``get``,
``describe``, ``logs``, ``status``) start without importing the manifest models. ``models``
re-exports them.
"""

from __future__ import annotations

from enum import Enum


class Kind(str, Enum):
    NODE = "Node"
    JOB = "Job"
    SERVICE = "Service"

    @classmethod
    def parse(cls, text: str) -> "Kind":
        """Accept `job`, `jobs`, `Job` (CLI spelling) and return the kind."""
        key = text.strip().lower().rstrip("s")
        for kind in cls:
            if kind.value.lower() == key:
                return kind
        raise ValueError(text)


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


class JobPhase(str, Enum):
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETE = "Complete"
    FAILED = "Failed"
