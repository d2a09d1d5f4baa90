"""Fair share: the order in which waiting tasks are offered to the scheduler. Pure.

Within one priority, the next task comes from the namespace furthest below its fair share, that is
with the least ``usage / share``; within a namespace, first come first served. A namespace's usage
is the slot-seconds its tasks have run, decayed with a half-life (an hour by default: use an hour
ago weighs half), plus what each task holding a slot is committed to if it keeps running: the
decayed slot-seconds of running on forever, ``1/λ = half-life / ln 2``. So what a namespace holds
now dominates and history corrects over the long run; without the commitment a newcomer, having no
history, would take every free slot until its history caught up. Each placement adds its
commitment at once (``FairQueue.placed``), so one pass interleaves namespaces instead of handing
every free slot to the one furthest behind.

``QueuePolicy`` is the controller's choice (``--queue fair|fifo``, ``--fair-share-half-life``);
``placement`` computes ``usage`` from the tasks it is given and, when tasks of two or more
namespaces wait, hands ``scheduler.Pipeline.place`` a ``FairQueue``. ``slot_seconds`` is one
task's part of the usage, so the usage is a sum over tasks.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator

from ..records import TaskRecord
from .scheduler import Request

FAIR, FIFO = "fair", "fifo"
HALF_LIFE = 3600.0  # seconds
# Use older than this many half-lives weighs under 2^-40 of use now: left out of the sum.
_HORIZON_HALF_LIVES = 40


@dataclass(frozen=True)
class QueuePolicy:
    """How waiting tasks are ordered: ``fair`` (fair share within a priority) or ``fifo`` (priority,
    then first come: the order before namespaces had shares)."""

    order: str = FAIR
    half_life: float = HALF_LIFE  # seconds for past use to weigh half

    def __post_init__(self) -> None:
        if self.order not in (FAIR, FIFO):
            raise ValueError(f"queue order {self.order!r}: use {FAIR} or {FIFO}")
        if not self.half_life > 0:
            raise ValueError(f"fair-share half-life {self.half_life!r} must be positive")

    @property
    def rate(self) -> float:
        """λ: use decays as e^(-λ·age)."""
        return math.log(2) / self.half_life

    @property
    def commitment(self) -> float:
        """1/λ: the decayed slot-seconds of one slot held from now on."""
        return self.half_life / math.log(2)


def slot_seconds(t: TaskRecord, now: float, rate: float) -> float:
    """The decayed slot-seconds task ``t`` has run by ``now``: the integral of e^(-λ(now-s)) over its run
    (a task still running counts up to ``now``). One task holds one slot."""
    start = t.started_at
    if start is None:
        return 0.0
    end = now if t.finished_at is None else min(t.finished_at, now)
    if end <= start:
        return 0.0
    return (math.exp(-rate * (now - end)) - math.exp(-rate * (now - start))) / rate


def usage(tasks: Iterable[TaskRecord], namespaces: set[str], now: float, policy: QueuePolicy,
          releasing: frozenset[str] | set[str] = frozenset()) -> dict[str, float]:
    """Each of ``namespaces``' usage: decayed slot-seconds run, plus the commitment of each active task
    holding a node (``releasing``: tasks whose container has exited; their slot is being given up)."""
    rate, commitment = policy.rate, policy.commitment
    horizon = now - _HORIZON_HALF_LIVES * policy.half_life
    out = dict.fromkeys(namespaces, 0.0)
    for t in tasks:
        ns = t.namespace
        if ns not in out:
            continue
        if t.phase.active and t.node is not None and t.id not in releasing:
            out[ns] += commitment
        if t.started_at is not None and (t.finished_at is None or t.finished_at > horizon):
            out[ns] += slot_seconds(t, now, rate)
    return out


class FairQueue:
    """Requests in fair-share order, drawn one at a time: ``placed`` charges a placement to its
    namespace before the next is drawn. ``requests`` come in FIFO order (priority, then first come),
    which is kept within each namespace; ties between namespaces go to the earlier request."""

    def __init__(self, requests: Iterable[Request], usage: dict[str, float], shares: dict[str, float],
                 commitment: float):
        self.lines: dict[str, deque[tuple[int, Request]]] = {}
        for seq, req in enumerate(requests):
            self.lines.setdefault(req.namespace, deque()).append((seq, req))
        self.usage = {ns: usage.get(ns, 0.0) for ns in self.lines}
        self.shares = {ns: shares.get(ns, 1.0) for ns in self.lines}
        self.commitment = commitment

    def _key(self, ns: str) -> tuple:
        seq, head = self.lines[ns][0]
        return -head.priority, self.usage[ns] / self.shares[ns], seq, ns

    def __iter__(self) -> Iterator[Request]:
        heap = [self._key(ns) for ns in self.lines]
        heapq.heapify(heap)
        while heap:
            ns = heapq.heappop(heap)[3]
            line = self.lines[ns]
            yield line.popleft()[1]
            if line:  # its usage may have grown meanwhile (``placed``): its next request queues with it
                heapq.heappush(heap, self._key(ns))

    def placed(self, req: Request) -> None:
        self.usage[req.namespace] += self.commitment
