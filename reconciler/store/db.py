"""The store's connection: opening a store file, transactions, commit nudges and row helpers.

``Connection`` opens (or creates, private to its owner) a SQLite file through sqlite-utils, in
WAL mode with a busy timeout, applies the migrations (``migrations.migrate``), and gives every
write a short ``BEGIN IMMEDIATE`` transaction (``transaction``), so concurrent CLI processes and
the controller never hit "database is locked" on read-then-write. The nouns of the store
(``resources``, ``tasks``, ``events``, ``revisions``, ``lease``, ``syncs``) are mixins over it,
composed into ``Store`` by the package; they speak only through ``transaction``, ``_rows`` and the
row helpers below (``fetch_one``, ``fetch_all``, ``insert``, ``upsert``), so a second backend
provides these and keeps the nouns' SQL. What is SQLite's own stays here: PRAGMAs, WAL, the
busy timeout and the nudge socket.

Commit nudges, sender side: after each commit a connection sends a one-byte datagram to the
controller of its store (``nudge_address``: a Linux abstract socket named after the store id),
so a controller wakes at once instead of at its next ``PRAGMA data_version`` poll. The listener
is ``runtime.wakeups.NudgeListener``, run by the controller, whose own connection sends none
(``nudge = False``). Nobody listening costs nothing.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import sqlite3
import sys
import threading
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterable, Iterator

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
from .migrations import migrate

BUSY_TIMEOUT_MS = 30_000
# What a write raises when another process kept the write lock past the busy timeout
# ("database is locked"), for the nouns that give up rather than fail (``release_lease``).
LockTimeout = sqlite3.OperationalError


def default_db_path() -> Path:
    """``--db`` wins, then ``BROKER_DB``, then the per-user XDG state file."""
    env = os.environ.get("BROKER_DB")
    if env:
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(state) / "brokerctl" / "broker.db"


class Connection:
    """One connection to the store. Thread-safe: a lock serialises use of the connection."""

    def __init__(self, path: str | Path, create: bool = True):
        """Open the store at ``path``; ``create``: make it (and its directory) if missing, else
        a missing file is a StoreError naming the path. ``created`` says whether this call made it."""
        self.path = Path(path)
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
        self._lock = threading.RLock()
        self.store_id: str | None = None
        self.nudge = True  # the controller turns this off for its own connection
        self._nudge_socket: socket.socket | None = None
        self.db = sqlite_utils.Database(conn, execute_plugins=False)
        try:
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._enable_wal()
            self.db.execute("PRAGMA synchronous = NORMAL")
            with self.transaction() as db:
                migrate(db)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable brokerctl store: {exc}") from exc
        self.store_id = self._meta("store_id")
        # Signs the containers this store makes (records.container_mark). Whoever can read the store
        # file can forge marks; its permissions are what protect it.
        self.mark_key = self._meta("mark_key")

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

    def close(self) -> None:
        self.db.conn.close()
        if self._nudge_socket is not None:
            self._nudge_socket.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """A write transaction; BEGIN IMMEDIATE takes the write lock up front. Any exception
        rolls it back; a commit nudges the store's controller (unless ``nudge`` is off)."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            else:
                self.db.execute("COMMIT")
                if self.nudge and self.store_id:
                    self._send_nudge()

    def _send_nudge(self) -> None:
        """Tell a controller listening on this store (``runtime.wakeups.NudgeListener``) that we committed."""
        try:
            if self._nudge_socket is None:
                self._nudge_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._nudge_socket.setblocking(False)
            self._nudge_socket.sendto(b"!", nudge_address(self.store_id))
        except (OSError, AttributeError):  # no controller listening, queue full, or no AF_UNIX here
            pass

    def set_busy_timeout(self, ms: int) -> None:
        """How long a write waits for another process's write lock (the default: ``BUSY_TIMEOUT_MS``)."""
        self.db.execute(f"PRAGMA busy_timeout = {int(ms)}")

    def _meta(self, key: str) -> str:
        return fetch_one(self.db, "SELECT value FROM meta WHERE key = ?", [key])["value"]

    def data_version(self) -> int:
        """Changes whenever another connection commits (SQLite's PRAGMA data_version)."""
        with self._lock:
            return fetch_one(self.db, "PRAGMA data_version")["data_version"]

    def _rows(self, sql: str, params: Iterable = ()) -> list[dict]:
        """A read outside any transaction: each row as a dict by column name."""
        with self._lock:
            return fetch_all(self.db, sql, params)


def nudge_address(store_id: str) -> str:
    """Where a store's controller listens for commit nudges: an abstract (nameless) Unix socket.
    Sent to by ``Connection._send_nudge``; bound by ``runtime.wakeups.NudgeListener``."""
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


# -- row helpers: the nouns read rows by column name and write them as dicts ----------------------


def _columns(cursor) -> list[str]:
    return [d[0] for d in cursor.description]


def fetch_one(db, sql: str, params: Iterable = ()) -> dict | None:
    """The first row of ``sql`` as a dict by column name, or None."""
    cur = db.execute(sql, list(params))
    row = cur.fetchone()
    return None if row is None else dict(zip(_columns(cur), row))


def fetch_all(db, sql: str, params: Iterable = ()) -> list[dict]:
    """Every row of ``sql`` as a dict by column name."""
    cur = db.execute(sql, list(params))
    names = _columns(cur)
    return [dict(zip(names, row)) for row in cur.fetchall()]


def insert(db, table: str, row: dict) -> None:
    """Insert ``row`` (column -> value, already encoded) into ``table``."""
    marks = ", ".join("?" * len(row))
    db.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})", list(row.values()))


def upsert(db, table: str, row: dict, key: str) -> None:
    """Insert ``row``, or update the other columns of the row with the same ``key`` column."""
    sets = ", ".join(f"{column} = excluded.{column}" for column in row if column != key)
    marks = ", ".join("?" * len(row))
    db.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks}) ON CONFLICT ({key}) DO UPDATE SET {sets}",
               list(row.values()))


def dump(value) -> str:
    """JSON as stored: sorted keys, no spaces (so equal values are equal text)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def encode(value):
    """A Python value as its column holds it: JSON text for dicts and lists, str enums by value,
    booleans as 0/1."""
    if isinstance(value, (dict, list)):
        return dump(value)
    if hasattr(value, "value") and isinstance(value.value, str):  # str enums
        return value.value
    if isinstance(value, bool):
        return int(value)
    return value


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while many acyclic objects are built at once (task
    records, their JSON objects). Each allocation burst otherwise triggers collections that
    re-walk everything already built: about 0.4 s of `get tasks -o json` over 100,000 rows."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
