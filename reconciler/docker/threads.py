"""One daemon thread per Docker host, following the node list. Used by the prober and the
event watcher."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .host import Host


class PerHost:
    """One daemon thread per host running ``target(host, quit)``; ``track`` follows the node list
    (a node removed or readdressed has its thread told to quit)."""

    def __init__(self, target: Callable[["Host", threading.Event], None], label: str):
        self._target, self._label = target, label
        self._threads: dict[str, tuple[str, threading.Event]] = {}

    def track(self, hosts: dict[str, "Host"]) -> None:
        for name in list(self._threads):
            address, quit_ = self._threads[name]
            if name not in hosts or hosts[name].address != address:
                quit_.set()
                del self._threads[name]
                self._forget(name)
        for name, host in hosts.items():
            if name not in self._threads:
                quit_ = threading.Event()
                self._threads[name] = (host.address, quit_)
                threading.Thread(target=self._target, args=(host, quit_), daemon=True,
                                 name=f"{self._label}-{name}").start()

    def stop(self) -> None:
        for _, quit_ in self._threads.values():
            quit_.set()

    def _forget(self, name: str) -> None:
        pass

