"""How many tasks a Job or Service may leave waiting for a node after this pass. Pure.

Made by ``plan`` once per pass from the node views the active tasks fill (``placement.placer``)
and asked by ``jobs`` and ``services`` before they create tasks. A resource may have as many tasks
waiting as the nodes could take now of its template (free slots of its execution type on the
nodes its template fits, as far as their free cpu, memory, maxPerNode and host ports allow),
and never fewer than ``tasks.MAX_UNPLACED``. So a burst of 10,000 completions on 10,000 free slots
is created, placed and started in one pass, while a Job of 10^6 completions on a full cluster
still makes only ``MAX_UNPLACED`` Pending rows: what a pass creates is bounded by what the cluster
can run, never by what was declared.

Free slots are shared: what one resource claims (its waiting tasks, old and new) is taken from
what the next one of that execution type is told, so the resources of one pass together wait for
at most the free slots plus ``MAX_UNPLACED`` each. The nodes are only looked at for a resource that
wants more than ``MAX_UNPLACED`` waiting, once per template shape a pass.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from .actions import Key
from .placement import template_request
from .scheduler import NodeView, Pipeline, Request, default_pipeline
from .tasks import MAX_UNPLACED
from ..records import ResourceRecord
from ..spec.models import NamespaceSpec


class Room:
    def __init__(self, views: list[NodeView], namespaces: dict[str, NamespaceSpec],
                 pipeline: Pipeline | None = None):
        """``views``: every node, with what the active tasks hold; ``namespaces``: Namespace specs
        by name (their nodeSelector and mounts narrow where a template fits)."""
        self.views, self.namespaces = views, namespaces
        self.pipeline = pipeline or default_pipeline()
        self.claimed: Counter = Counter()  # execution type -> waiting tasks claimed this pass
        self._free: dict[Request, int] = {}  # template shape -> what the nodes could take of it

    def limit(self, res: ResourceRecord, waiting: int, wanted: int) -> int:
        """The most tasks of ``res`` that may wait for a node once it created what it needs:
        ``waiting`` of its tasks wait now and it would create ``wanted`` more. ``MAX_UNPLACED``
        when that is enough (the nodes are not looked at), else the free room its template fits
        and no other resource of this pass claimed, never less than ``MAX_UNPLACED``."""
        if waiting + wanted <= MAX_UNPLACED:
            return MAX_UNPLACED
        spec = res.model.spec
        return max(MAX_UNPLACED, self.free(res.key, spec) - self.claimed[spec.executionType])

    def claim(self, res: ResourceRecord, waiting: int) -> None:
        """``res`` leaves ``waiting`` tasks waiting for a node: the next resources are told of that
        much less room."""
        self.claimed[res.model.spec.executionType] += waiting

    def free(self, owner: Key, spec) -> int:
        """How many tasks of ``owner``'s template the nodes could take now."""
        req = template_request(owner, spec, self.namespaces.get(owner[1]))
        shape = req if req.max_per_node is not None else _anyone(req)  # maxPerNode counts the owner's own
        if shape not in self._free:
            self._free[shape] = self.pipeline.capacity(req, self.views)
        return self._free[shape]


def _anyone(req: Request) -> Request:
    """``req`` without what only names its owner: owners of one template shape share the count."""
    return replace(req, owner="", namespace="", priority=0)
