"""Container events of each host, streamed on a thread per host, wake the controller. Called
by the controller."""

from __future__ import annotations

import threading
from ..records import LABEL_STORE
from .client import TRANSPORT_ERRORS, connect
from .host import Host
from .threads import PerHost


class EventWatcher(PerHost):
    """One thread per host streaming container events of our store; each event sets ``wake``.

    Lets the controller see a container exit at once instead of at the next resync. A host that
    is down is retried every second; a thread whose host left the pool ends at its next event
    or error. ``mark(name)`` is (stream, events seen so far) while the host's stream is open, None
    otherwise: equal marks before a container list and now mean nothing changed since that list.

    ``exits(name)`` are the containers whose latest event is ``die``, with the exit code it
    carried. The daemon sends ``die`` a few milliseconds before its container list says
    "exited", so a list taken on that wake-up can still say "running"; the controller trusts
    the event over such a list.
    """

    EVENTS = ["create", "start", "die", "destroy", "oom", "pause", "unpause", "rename", "health_status"]

    def __init__(self, store_id: str, wake: threading.Event):
        super().__init__(self._watch, "events")
        self.store_id, self.wake = store_id, wake
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._marks: dict[str, tuple[int, int]] = {}
        self._exits: dict[str, dict[str, int | None]] = {}
        self._streams = 0

    def stop(self) -> None:
        self._stopped.set()
        super().stop()

    def mark(self, name: str) -> tuple[int, int] | None:
        with self._lock:
            return self._marks.get(name)

    def exits(self, name: str) -> dict[str, int | None]:
        with self._lock:
            return dict(self._exits.get(name, {}))

    def _forget(self, name: str) -> None:
        with self._lock:
            self._marks.pop(name, None)
            self._exits.pop(name, None)

    def _seen(self, name: str, event: dict) -> None:
        """Called under the lock for each event of host ``name``."""
        action = event.get("Action") or event.get("status") or ""
        actor = event.get("Actor") or {}
        cid = event.get("id") or actor.get("ID")
        exits = self._exits.setdefault(name, {})
        if action == "die" and cid:
            code = (actor.get("Attributes") or {}).get("exitCode")
            exits[cid] = int(code) if code is not None and str(code).lstrip("-").isdigit() else None
        elif action in ("start", "destroy") and cid:
            exits.pop(cid, None)

    def _watch(self, host: "Host", quit_: threading.Event) -> None:
        filters = {"type": ["container"], "label": [f"{LABEL_STORE}={self.store_id}"], "event": self.EVENTS}
        while not quit_.is_set() and not self._stopped.is_set():
            client = None
            try:
                client = connect(host.address, host.tls, timeout=None)
                stream = client.api.events(filters=filters, decode=True)  # returns once the daemon answered
                with self._lock:
                    self._streams += 1
                    self._marks[host.name] = stream_id = (self._streams, 0)
                for event in stream:
                    if quit_.is_set():
                        return
                    with self._lock:
                        seen = self._marks.get(host.name)
                        if seen is not None and seen[0] == stream_id[0]:
                            self._marks[host.name] = (seen[0], seen[1] + 1)
                            self._seen(host.name, event)
                    self.wake.set()
            except TRANSPORT_ERRORS:
                pass
            finally:
                with self._lock:
                    self._marks.pop(host.name, None)
                    self._exits.pop(host.name, None)
                if client is not None:
                    client.close()
            quit_.wait(1.0)

