"""The SQLite backend: a store file, private to its owner, in WAL mode, and its commit nudges.

``SqliteBackend`` is what ``db.Connection`` opens for a path or ``sqlite:///PATH``: it creates the
file (0600, missing directories 0700) when asked, connects through sqlite-utils with a busy
timeout, switches the file to WAL, and takes the write lock with ``BEGIN IMMEDIATE`` (a read
then a write in one transaction never meets "database is locked"). Everything SQLite-specific
lives here: PRAGMAs, WAL, ``data_version``, the nudge socket.

Commit nudges: after each commit a connection whose ``nudge`` is on sends a one-byte datagram to
the controller of its store (``nudge_address``: a Linux abstract socket named after the store id),
so a controller wakes at once instead of at its next ``PRAGMA data_version`` poll. The listener
is ``NudgeListener``, inside the controller's ``SqliteSubscription``. The socket reaches only
processes on the same machine, which is all a SQLite file can serve.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Callable, Iterable

# sqlite-utils imports numpy whenever it is installed, only to store numpy values, which the store
# never passes; that import alone costs ~50 ms on every CLI call. Hide numpy while it loads.
_hide_numpy = "numpy" not in sys.modules
if _hide_numpy:
    sys.modules["numpy"] = None  # type: ignore[assignment]
try:
    import sqlite_utils
finally:
    if _hide_numpy:
        del sys.modules["numpy"]

from ..errors import StoreError
from .db import BUSY_TIMEOUT_MS, LockTimeout
from .location import SQLITE, Location


class SqliteBackend:
    """One sqlite3 connection to a store file (``db``: its sqlite-utils ``Database``)."""

    dialect = SQLITE
    errors = (sqlite3.DatabaseError,)  # what makes a file "not a usable brokerctl store"

    def __init__(self, location: Location, create: bool):
        self.path = Path(location.target)
        self.created = False
        try:
            if not self.path.exists():
                if not create:
                    raise StoreError.missing(self.path, _missing_part(self.path))
                self.created = _create_private(self.path)
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves.
            conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError.cannot_open(self.path, exc) from exc
        self.lock_timeout_ms = BUSY_TIMEOUT_MS
        self._nudge_socket: socket.socket | None = None
        self.db = sqlite_utils.Database(conn, execute_plugins=False)

    def prepare(self) -> None:
        self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._enable_wal()
        self.db.execute("PRAGMA synchronous = NORMAL")

    def _enable_wal(self) -> None:
        """Switch a new store file to WAL. Connections opening the same new file at once race for
        the switch, and SQLite answers the losers "database is locked" at once, without the busy
        timeout; so retry until the timeout (a loser then finds WAL already on)."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        pause = 0.002
        while True:
            try:
                if self.db.journal_mode != "wal":
                    self.db.enable_wal()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.05)

    def check_store(self, create: bool) -> None:
        """Nothing to check: a missing file was refused at open, and an empty file is a new store."""

    def close(self) -> None:
        self.db.conn.close()
        if self._nudge_socket is not None:
            self._nudge_socket.close()

    # -- transactions ----------------------------------------------------------------------

    def begin(self, wake: str | None) -> None:
        """BEGIN IMMEDIATE takes the write lock up front, waiting up to the busy timeout."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise LockTimeout.waited(self.path, self.lock_timeout_ms) from exc
            raise

    def commit(self, wake: str | None) -> None:
        """Commit; then, with ``wake`` (the store id), nudge the store's controller."""
        self.db.execute("COMMIT")
        if wake:
            self._send_nudge(wake)

    def rollback(self) -> None:
        self.db.execute("ROLLBACK")

    def _send_nudge(self, store_id: str) -> None:
        """Tell a controller listening on this store (``NudgeListener``) that we committed."""
        try:
            if self._nudge_socket is None:
                self._nudge_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._nudge_socket.setblocking(False)
            self._nudge_socket.sendto(b"!", nudge_address(store_id))
        except (OSError, AttributeError):  # no controller listening, queue full, or no AF_UNIX here
            pass

    def set_lock_timeout(self, ms: float) -> None:
        self.db.execute(f"PRAGMA busy_timeout = {int(ms)}")
        self.lock_timeout_ms = ms

    def set_idle_limit(self, ms: float) -> None:
        """Nothing: no server can end a SQLite transaction; a process paused inside one keeps the
        file's write lock until it resumes or dies."""

    # -- reads -----------------------------------------------------------------------------

    def tuples(self, sql: str, params: list) -> list[tuple]:
        return self.db.execute(sql, params).fetchall()

    def data_version(self) -> int:
        """Changes whenever another connection commits (SQLite's PRAGMA data_version)."""
        return self.db.execute("PRAGMA data_version").fetchone()[0]

    def subscribe(self, store_id: str, wake: Callable[[], None], lock) -> "SqliteSubscription":
        return SqliteSubscription(self, store_id, wake, lock)

    # -- copying a whole store (``transfer``) --------------------------------------------------

    def tables(self) -> set[str]:
        return {r[0] for r in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").fetchall()}

    def copy_rows(self, table: str, columns: list[str], rows: Iterable[tuple]) -> None:
        self.db.conn.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows)

    def after_copy(self, table: str) -> None:
        """Nothing: an AUTOINCREMENT id inserted explicitly moves SQLite's sequence by itself."""


class SqliteSubscription:
    """The controller's wake-ups on SQLite: nudges from other processes on this machine (at once),
    and ``PRAGMA data_version`` on the controller's own connection, which also catches a writer
    that sent none (``version``; the controller polls it every 50 ms while it waits)."""

    def __init__(self, backend: SqliteBackend, store_id: str, wake: Callable[[], None], lock):
        self._backend, self._lock = backend, lock
        self._nudges = NudgeListener(store_id, wake)
        self.listening = self._nudges.listening

    def version(self) -> int:
        with self._lock:
            return self._backend.data_version()

    def stop(self) -> None:
        self._nudges.stop()


class NudgeListener:
    """Calls ``wake`` whenever another process commits to the store (its backend's
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


def nudge_address(store_id: str) -> str:
    """Where a store's controller listens for commit nudges: an abstract (nameless) Unix socket.
    Sent to by ``SqliteBackend._send_nudge``; bound by ``NudgeListener``."""
    return f"\0brokerctl-{store_id}"


def _create_private(path: Path) -> bool:
    """Create the store file 0600, and each missing directory above it 0700: the store holds env
    values and task output. SQLite gives its -wal and -shm files the main file's mode. Returns
    False if another process created the file first."""
    missing = [d for d in [path.parent, *path.parent.parents] if not d.exists()]
    for directory in reversed(missing):
        with suppress(FileExistsError):
            os.mkdir(directory, 0o700)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return False
    return True  # an empty file is an empty SQLite database


def _missing_part(path: Path) -> str:
    return f"directory {path.parent} does not exist" if not path.parent.is_dir() else "the file does not exist"
