"""Wake-ups, listener side: the controller listens for the commit nudges of other processes.

The controller (``runtime.controller``) runs one ``NudgeListener`` on its store's address
(``store.nudge_address``). The sender is every other process's store connection: after each
commit, ``store.db.Connection.transaction`` calls ``_send_nudge``, which sends one datagram there.
"""

from __future__ import annotations

import socket
import threading
from typing import Callable

from ..store import nudge_address


class NudgeListener:
    """Calls ``wake`` whenever another process commits to the store (its connection's
    ``_send_nudge``; the controller's own connection sends none).

    If the address cannot be bound (not Linux, or taken), the controller still has its
    ``data_version`` poll; ``listening`` says which.
    """

    def __init__(self, store_id: str, wake: Callable[[], None]):
        self.wake = wake
        self._stop = threading.Event()
        self.listening = False
        try:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.bind(nudge_address(store_id))
            self._sock.settimeout(0.5)
        except (OSError, AttributeError):
            return
        self.listening = True
        threading.Thread(target=self._loop, daemon=True, name="nudges").start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sock.recv(64)
            except socket.timeout:
                continue
            except OSError:
                return
            self.wake()

    def stop(self) -> None:
        self._stop.set()
        if self.listening:
            self._sock.close()

