"""The store connections of the API's handlers: a small pool, so that concurrent requests read in parallel.

A ``Store`` connection is thread-safe but serialises its users; opening one takes the store's write
lock (it checks the migrations). So the API keeps up to ``size`` connections, opened on first need
and kept: a request takes an idle one for its duration (``use``), or opens another while fewer
than ``size`` exist, or, when all are busy, shares the least busy one (never waiting, never
opening more: a watch or a followed log may hold one for hours). Both backends alike: each SQLite
connection reads in parallel under WAL; each PostgreSQL one is a server session.

A commit through any of these connections wakes the store's controller, also one running in this
process (``brokerctl server``): its wake-up listener is a socket (SQLite) or a ``LISTEN`` session
(PostgreSQL) of its own. Called by ``auth``, the route modules and ``app``.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from .. import ops


class Stores:
    def __init__(self, location: str, size: int = 8, secrets_key: str | None = None):
        self.location, self.size, self.secrets_key = location, size, secrets_key
        self._lock = threading.Lock()
        self._users: dict[int, int] = {}  # id(store) -> requests using it now
        self._all: list = []
        self._opening = 0  # connections being opened now (they count against ``size``)

    @contextmanager
    def use(self) -> Iterator:
        """A connection for the caller's work; given back when the block ends."""
        store = self._take()
        try:
            yield store
        finally:
            with self._lock:
                self._users[id(store)] -= 1

    def _take(self):
        with self._lock:
            idle = next((s for s in self._all if not self._users[id(s)]), None)
            if idle is None and self._all and len(self._all) + self._opening >= self.size:
                idle = min(self._all, key=lambda s: self._users[id(s)])
            if idle is not None:
                self._users[id(idle)] += 1
                return idle
            self._opening += 1
        try:
            # outside the lock: opening waits for the store's write lock
            store = ops.open_store(self.location, secrets_key=self.secrets_key)
        finally:
            with self._lock:
                self._opening -= 1
        with self._lock:
            self._all.append(store)
            self._users[id(store)] = 1
        return store

    @property
    def opened(self) -> int:
        return len(self._all)

    def close(self) -> None:
        with self._lock:
            for store in self._all:
                store.close()
            self._all.clear()
            self._users.clear()
