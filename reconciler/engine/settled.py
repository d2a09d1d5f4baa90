"""What the tasks of settled Jobs add to their namespaces' budget use and fair-share usage. Pure.

A settled Job (``jobs.settles``) is planned without its tasks (see ``plan``), but a budget counts the
cpu-seconds of finished tasks inside its window (``quotas.budget_use``) and fair share the decayed
slot-seconds of finished tasks (``fairshare.usage``). ``SettledUsage`` carries those tasks' part
between passes, so that a pass pays for what changed and not for the history: the controller
(``runtime.ledger``) adds a Job's tasks when it settles and takes them out when it unsettles or is
purged; ``plan`` takes it as ``settled_usage`` and ``placement`` adds its figures to what it sums over
the tasks it is given. Every task of a settled Job is over, so each is a fixed span: its start,
its end, and its Job's cpus (``quotas.UNREQUESTED_CPUS`` without a request).

Fair share: one task's decayed slot-seconds at ``now`` are ``(e^(λ·end) - e^(λ·start)) / λ · e^(-λ·now)``,
so a namespace's sum is carried at a reference time and decayed on reading (exactly: decay is
multiplicative). The reference moves forward (every term rescaled) before the exponents grow past
``_REBASE_HALF_LIVES``. Unlike ``fairshare.usage``, spans that ended more than its horizon ago stay
in the sum, weighing under 2^-40 of one slot held now, and a span is not cut at a ``now`` before its
end (a settled Job's tasks ended before the pass that settled it).

Budgets: a task's part in the window ``[since, now]`` is ``cpus · |[start, end] ∩ [since, now]|``,
which is ``g(since) - g(now)`` with ``g(x) = Σ cpus·max(0, end - max(start, x))``. Since a span
starting at or after ``x`` also ends after it, ``g(x) = E1 - S1 - x·(E0 - S0)``, where ``E0``,
``E1`` sum ``cpus`` and ``cpus·end`` over the spans ending after ``x`` and ``S0``, ``S1`` sum
``cpus`` and ``cpus·start`` over those starting at or after it: suffix sums over two sorted
arrays, kept with a cursor per point asked (each window's start, and now) that moves as its point
does (a little each pass). Any window, asked at any time, is answered without reading the spans
again.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Iterable

from .actions import Key
from .quotas import UNREQUESTED_CPUS
from ..records import TaskRecord

_REBASE_HALF_LIVES = 256  # e^(λ·Δ) for Δ up to this many half-lives stays far below a float's range
_BATCH_SORT = 64  # more spans than this waiting to go into an array: append them all and sort once


@dataclass(frozen=True)
class _Owned:
    """One settled Job's part: what ``remove`` takes back out."""

    namespace: str
    cpus: float
    spans: tuple[tuple[float, float], ...]  # (start, end) of each task that ran
    decayed: float  # Σ (e^(λ·(end-ref)) - e^(λ·(start-ref))) / λ at the reference time of ``SettledUsage``


class SettledUsage:
    """The settled Jobs' tasks' part of each namespace's usage, for fair share decaying at ``rate``
    (``QueuePolicy.rate``). Mutated only by ``add`` and ``remove``; reads give the same figures for
    the same spans whatever the order they came in (up to float rounding)."""

    def __init__(self, rate: float):
        self.rate = rate
        self._owners: dict[Key, _Owned] = {}
        self._ref: float | None = None  # reference time of the decayed sums
        self._origin: float | None = None  # the spans' times are kept relative to it (see _SortedSums)
        self._decayed: dict[str, float] = {}  # namespace -> Σ of its owners' ``decayed``
        self._count: dict[str, int] = {}  # namespace -> owners carried
        self._starts: dict[str, _SortedSums] = {}
        self._ends: dict[str, _SortedSums] = {}

    def __len__(self) -> int:
        return len(self._owners)

    def __contains__(self, owner: Key) -> bool:
        return owner in self._owners

    def add(self, owner: Key, tasks: Iterable[TaskRecord], cpus: float | None) -> None:
        """Carry the tasks of settled Job ``owner`` (replacing what it carried); ``cpus``: what its
        template requests. Each task is over: a started one has its ``finished_at`` (``jobs.settles``)."""
        self.remove(owner)
        spans = tuple((t.started_at, t.finished_at) for t in tasks
                      if t.started_at is not None and t.finished_at is not None)
        if not spans:
            return
        namespace = owner[1]
        weight = UNREQUESTED_CPUS if cpus is None else cpus
        if self._ref is None:
            self._ref = self._origin = max(end for _, end in spans)
        self._rebase_for(max(end for _, end in spans))
        owned = _Owned(namespace, weight, spans, sum(self._term(start, end) for start, end in spans))
        self._owners[owner] = owned
        self._decayed[namespace] = self._decayed.get(namespace, 0.0) + owned.decayed
        self._count[namespace] = self._count.get(namespace, 0) + 1
        starts = self._starts.setdefault(namespace, _SortedSums())
        ends = self._ends.setdefault(namespace, _SortedSums())
        for start, end in spans:
            starts.add(start - self._origin, weight)
            ends.add(end - self._origin, weight)

    def remove(self, owner: Key) -> None:
        """Stop carrying ``owner``'s tasks (it unsettled, or was purged with them)."""
        owned = self._owners.pop(owner, None)
        if owned is None:
            return
        ns = owned.namespace
        self._count[ns] -= 1
        # The last one out leaves nothing, not the rounding of the subtractions; else rounding must
        # not make a namespace owe usage.
        self._decayed[ns] = max(self._decayed[ns] - owned.decayed, 0.0) if self._count[ns] else 0.0
        for start, end in owned.spans:
            self._starts[ns].remove(start - self._origin, owned.cpus)
            self._ends[ns].remove(end - self._origin, owned.cpus)

    def fair_usage(self, namespace: str, now: float) -> float:
        """The decayed slot-seconds the carried tasks of ``namespace`` have run, at ``now``."""
        total = self._decayed.get(namespace, 0.0)
        if not total:
            return 0.0
        return total * math.exp(-self.rate * (now - self._ref))

    def budget_use(self, namespace: str, window: float, now: float) -> float:
        """The cpu-seconds the carried tasks of ``namespace`` used in ``[now - window, now]``."""
        if namespace not in self._starts:
            return 0.0
        since = self._beyond(namespace, now - window, window)
        return max(since - self._beyond(namespace, now, 0.0), 0.0)

    def _beyond(self, namespace: str, x: float, cursor: float) -> float:
        """``g(x)``: cpu-seconds of the carried spans after time ``x`` (see the module docstring), with
        the cursors named ``cursor`` (how far before now ``x`` is: each point keeps its own cursor)."""
        x -= self._origin
        e0, e1 = self._ends[namespace].after(x, cursor, strict=True)
        s0, s1 = self._starts[namespace].after(x, cursor, strict=False)
        return e1 - s1 - x * (e0 - s0)

    def _term(self, start: float, end: float) -> float:
        rate, ref = self.rate, self._ref
        return (math.exp(rate * (end - ref)) - math.exp(rate * (start - ref))) / rate

    def _rebase_for(self, latest: float) -> None:
        """Move the reference time to ``latest`` once it is far enough ahead that e^(λ·Δ) would grow
        too large; every carried term is rescaled and each namespace's sum added up afresh."""
        if self.rate * (latest - self._ref) < _REBASE_HALF_LIVES * math.log(2):
            return
        scale = math.exp(-self.rate * (latest - self._ref))
        self._ref = latest
        self._owners = {key: _Owned(o.namespace, o.cpus, o.spans, o.decayed * scale) for key, o in self._owners.items()}
        self._decayed = {}
        for o in self._owners.values():
            self._decayed[o.namespace] = self._decayed.get(o.namespace, 0.0) + o.decayed


class _SortedSums:
    """Times in order, each with a weight (cpus): the sums of weight and weight·time over the times
    after a point. Times are relative to ``SettledUsage``'s origin (the first end it was given), so
    the sums stay small enough for float addition to keep a second's fraction. A cursor marks a
    position with the sums before it; asking again near its last point moves it a few places. Each
    point asked (a window's start, now) has its own cursor, or two points asked in turn would walk
    one cursor across the spans between them every time."""

    def __init__(self):
        self.times = array("d")
        self.weights = array("d")
        self.pending: list[tuple[float, float]] = []  # added since the arrays were last put in order
        self.total = [0.0, 0.0]  # Σ weight, Σ weight·time over all
        self.cursors: dict[float, list] = {}  # name -> [cut, Σ weight, Σ weight·time over times[:cut]]

    def add(self, t: float, weight: float) -> None:
        self.pending.append((t, weight))

    def remove(self, t: float, weight: float) -> None:
        self._settle_pending()
        i = bisect_left(self.times, t)
        while self.weights[i] != weight or self.times[i] != t:  # equal times: find one with this weight
            i += 1
        del self.times[i], self.weights[i]
        self.total[0] -= weight
        self.total[1] -= weight * t
        for cursor in self.cursors.values():
            if i < cursor[0]:
                cursor[0] -= 1
                cursor[1] -= weight
                cursor[2] -= weight * t

    def after(self, x: float, name: float, strict: bool) -> tuple[float, float]:
        """(Σ weight, Σ weight·time) over times after ``x`` (``strict``) or at or after it, found
        with cursor ``name``."""
        self._settle_pending()
        target = (bisect_right if strict else bisect_left)(self.times, x)
        if target == len(self.times):  # nothing after x (now, usually): no cursor needed
            return 0.0, 0.0
        cursor = self.cursors.setdefault(name, [0, 0.0, 0.0])
        cut, w, wt = cursor
        times, weights = self.times, self.weights
        while cut < target:
            w += weights[cut]
            wt += weights[cut] * times[cut]
            cut += 1
        while cut > target:
            cut -= 1
            w -= weights[cut]
            wt -= weights[cut] * times[cut]
        cursor[:] = cut, w, wt
        return self.total[0] - w, self.total[1] - wt

    def _settle_pending(self) -> None:
        """Put what was added into the arrays: one by one in place when few, else all sorted once."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        for t, w in pending:
            self.total[0] += w
            self.total[1] += w * t
        if len(pending) <= _BATCH_SORT:
            for t, w in pending:
                i = bisect_right(self.times, t)
                self.times.insert(i, t)
                self.weights.insert(i, w)
                for cursor in self.cursors.values():
                    if i < cursor[0]:
                        cursor[0] += 1
                        cursor[1] += w
                        cursor[2] += w * t
            return
        pairs = sorted([*zip(self.times, self.weights), *pending])
        self.times = array("d", (t for t, _ in pairs))
        self.weights = array("d", (w for _, w in pairs))
        self.cursors = {}
