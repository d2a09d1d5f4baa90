"""Node health off the loop: one thread per node pings its daemon. Called by the controller."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from .host import Host, Pinger
from .threads import PerHost


@dataclass(frozen=True)
class ProbeState:
    """What the probes of one node found; ``failures`` counts consecutive failed probes."""

    ok: bool = False
    last_ok: float | None = None
    failures: int = 0
    failing_since: float | None = None
    message: str = "not probed yet"


class Prober(PerHost):
    """Pings every node (``/_ping`` with a short timeout) on its own schedule, one thread each.

    A hung or dead daemon costs its own thread a timeout, never the controller's loop or the
    other nodes. ``on_change`` is called when a node starts or stops answering. A probe that did
    not run (a busy machine) is not a failure: only probes that ran and failed count.
    """

    def __init__(self, interval: float = 1.0, timeout: float = 1.0,
                 on_change: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.time):
        super().__init__(self._loop, "probe")
        self.interval, self.timeout, self.on_change, self.clock = interval, timeout, on_change, clock
        self._states: dict[str, ProbeState] = {}
        self._lock = threading.Lock()

    def state(self, name: str) -> ProbeState:
        with self._lock:
            return self._states.get(name, ProbeState())

    def _forget(self, name: str) -> None:
        with self._lock:
            self._states.pop(name, None)

    def wait_first(self, names: set[str], timeout: float, stop: threading.Event | None = None) -> None:
        """Wait (at most ``timeout``, or until ``stop``) until each named node has been probed once."""
        deadline = self.clock() + timeout
        while self.clock() < deadline and not (stop is not None and stop.is_set()):
            with self._lock:
                if names <= self._states.keys():
                    return
            time.sleep(0.01)

    def _loop(self, host: "Host", quit_: threading.Event) -> None:
        pinger = Pinger(host.address, host.tls, self.timeout)
        while not quit_.is_set():
            began = self.clock()
            message = pinger.ping()
            if not quit_.is_set():
                self._record(host.name, message is None, message or "", self.clock())
            quit_.wait(max(0.0, self.interval - (self.clock() - began)))
        pinger.close()

    def _record(self, name: str, ok: bool, message: str, now: float) -> None:
        with self._lock:
            old = self._states.get(name, ProbeState())
            if ok:
                new = ProbeState(ok=True, last_ok=now)
            else:
                new = ProbeState(ok=False, last_ok=old.last_ok, failures=old.failures + 1,
                                 failing_since=old.failing_since if old.failures else now, message=message)
            self._states[name] = new
        if new.ok != old.ok or new.failures == 2:
            self.on_change()


