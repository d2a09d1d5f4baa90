"""Waiting: the one polling loop of every verb that waits, on a clock that tests can replace.

``apply --wait``, ``run``, ``wait``, ``drain`` and ``rollout status`` read the store (or a node)
again and again until something is true or time runs out. Each writes its loop as
``for _ in ticks(interval, until, clock):`` over ``ticks`` here, so the order that matters is in
one place (look, then give up if the deadline has passed, then sleep), and a test passes a
``Clock`` whose sleep only moves a number instead of waiting.

While they wait, these verbs yield ``Note``s: a line of progress for people (the CLI prints it; an
API can stream it). Called by the other ``ops`` modules.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator


@dataclass(frozen=True)
class Clock:
    """Where waiting verbs read the time and sleep: the real clock unless a test passes another."""

    monotonic: Callable[[], float] = time.monotonic  # deadlines
    sleep: Callable[[float], None] = time.sleep
    time: Callable[[], float] = time.time  # wall time, as the store records it

    def deadline(self, timeout: float | None) -> float | None:
        """The ``monotonic`` reading ``timeout`` seconds from now; None (no limit) stays None."""
        return None if timeout is None else self.monotonic() + timeout


SYSTEM = Clock()


def ticks(interval: float, until: float | None = None, clock: Clock = SYSTEM) -> Iterator[int]:
    """Yield at once, then again every ``interval`` seconds, for as long as the loop over it goes on.

    After each pass of the caller's loop body that neither returned nor broke out, the deadline
    ``until`` (a ``clock.monotonic()`` reading; None: no limit) is checked before sleeping: once it
    has passed, the iteration ends, and the code after the loop reports the timeout with what the
    last look saw. Yields the number of looks before this one."""
    looks = 0
    while True:
        yield looks
        if until is not None and clock.monotonic() >= until:
            return
        clock.sleep(interval)
        looks += 1


@dataclass(frozen=True)
class Note:
    """A line of progress for people; a ``warning`` says something may be wrong (the CLI shows it on
    stderr as `warning: ...`)."""

    text: str
    warning: bool = False
