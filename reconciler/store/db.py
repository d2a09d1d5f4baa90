"""The store's connection: opening a store, transactions, wake-ups and row helpers, whatever the backend.

``Connection`` opens the store a location names (``location.Location``: a SQLite file or a
PostgreSQL database) through its backend (``sqlite.SqliteBackend``, ``postgres.PgBackend``, each
imported only when used, so a command on one backend never loads the other's driver), applies
the migrations (``migrations.migrate``, for the backend's dialect), and gives every write a short
transaction (``transaction``) that holds the store's one write lock from its first statement
(SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-level advisory lock), so concurrent CLI
processes and the controller can read, then write, without a lost update. Reads take no lock.

The nouns of the store (``resources``, ``tasks``, ``events``, ``revisions``, ``lease``, ``syncs``)
are mixins over it, composed into ``Store`` by the package; they speak only through
``transaction``, ``_rows``, ``_tuples`` and the row helpers below (``fetch_one``, ``fetch_all``,
``insert``, ``upsert``), writing ``?`` placeholders and SQLite's spelling of the few things the
two dialects share (``ON CONFLICT ... DO UPDATE``); the PostgreSQL backend translates the
placeholders. What differs between backends stays in the backend: PRAGMAs and WAL, the busy
timeout, the advisory lock, the wake-ups.

Wake-ups: a commit by any connection whose ``nudge`` is on tells the store's controller at once
(SQLite: a datagram to an abstract Unix socket named after the store id, sent after the commit;
PostgreSQL: ``NOTIFY`` on a channel named after it, delivered with the commit). The controller's
own connection sends none (``nudge = False``) and calls ``subscribe``: a ``Subscription`` that
calls ``wake`` on each commit of another process and whose ``version()`` moves with them, so a
commit made while the controller was busy is not missed. Nobody listening costs nothing.
"""

from __future__ import annotations

import gc
import json
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

from ..errors import StoreError
from .location import Location
from .migrations import migrate

BUSY_TIMEOUT_MS = 30_000  # how long a write waits for another process's write lock


class LockTimeout(StoreError):
    """A write waited longer than its lock timeout for another process's write lock. A noun that
    gives up rather than fails (``release_lease``) catches it; elsewhere it is the CLI's one-line error."""

    @classmethod
    def waited(cls, path, ms: float) -> "LockTimeout":
        return cls(f"store {path} is busy: another process held its write lock for {ms / 1000:g}s; try again")


class Subscription(Protocol):
    """What ``Connection.subscribe`` returns: ``wake`` is called on each commit of another process."""

    listening: bool  # commits of other processes wake at once (else only ``version`` and the resync find them)

    def version(self) -> object:
        """Differs from an earlier answer once another connection committed since (or may have)."""

    def stop(self) -> None: ...


class Backend(Protocol):
    """What ``Connection`` asks of a backend (``sqlite.SqliteBackend``, ``postgres.PgBackend``)."""

    dialect: str  # "sqlite" or "postgresql": which text of a migration it runs (``migrations.ddl``)
    errors: tuple[type[BaseException], ...]  # the driver's errors: a store that raises one at open is not usable
    db: object  # what the nouns write through: ``execute(sql with ?, params)`` returning a DB-API cursor
    created: bool  # this connection made the store
    lock_timeout_ms: float

    def prepare(self) -> None:
        """Session settings before the first transaction."""

    def check_store(self, create: bool) -> None:
        """In the first transaction: refuse a missing store unless ``create`` (where the open could not)."""

    def begin(self, wake: str | None) -> None:
        """Begin a transaction holding the store's write lock; ``LockTimeout`` past the lock timeout.
        ``wake``: the store id whose controller this transaction's commit wakes (None: nobody)."""

    def commit(self, wake: str | None) -> None: ...

    def rollback(self) -> None: ...

    def set_lock_timeout(self, ms: float) -> None: ...

    def set_idle_limit(self, ms: float) -> None:
        """End a transaction of this connection left idle longer than ``ms`` (where the backend can)."""

    def tuples(self, sql: str, params: list) -> list[tuple]:
        """The fastest fetch of a bulk read, rows as tuples."""

    def data_version(self) -> int: ...

    def subscribe(self, store_id: str, wake: Callable[[], None], lock) -> Subscription: ...

    def tables(self) -> set[str]: ...

    def copy_rows(self, table: str, columns: list[str], rows: Iterable[tuple]) -> None:
        """Insert many rows inside the current transaction (``transfer``)."""

    def after_copy(self, table: str) -> None:
        """Make the table's generated ids continue after the rows copied in."""

    def close(self) -> None: ...


def open_backend(location: Location, create: bool) -> Backend:
    """The backend for ``location``, connected (its driver imported now, not before)."""
    if location.is_postgresql:
        from .postgres import PgBackend

        return PgBackend(location, create)
    from .sqlite import SqliteBackend

    return SqliteBackend(location, create)


class Connection:
    """One connection to the store. Thread-safe: a lock serialises use of the connection."""

    def __init__(self, path: str | Path, create: bool = True):
        """Open the store at ``path`` (a file path, ``sqlite:///PATH`` or ``postgresql://...``);
        ``create``: make it if missing, else a missing store is a StoreError naming it and the fix.
        ``created`` says whether this call made it. ``path`` then names the store in messages (a
        PostgreSQL URL without its password); ``location`` opens it again (``runtime.watch``)."""
        where = Location.parse(path)
        self.path, self.location = where.display, where.target
        self._lock = threading.RLock()
        self.store_id: str | None = None
        self.nudge = True  # the controller turns this off for its own connection
        # While this connection's controller leads: checks, first in each write transaction, that it
        # still does (``lease.LeaseStore.fence``); raising rolls the transaction back.
        self.fence_check: Callable[[object], None] | None = None
        self.backend: Backend = open_backend(where, create)
        self.db = self.backend.db
        try:
            self.backend.prepare()
            with self.transaction() as db:
                self.backend.check_store(create)
                migrate(db, self.backend.dialect)
        except self.backend.errors as exc:
            self.backend.close()
            raise StoreError(f"{self.path} is not a usable brokerctl store: {exc}") from exc
        except BaseException:
            self.backend.close()
            raise
        self.created = self.backend.created
        self.store_id = self._meta("store_id")
        # Signs the containers this store makes (records.container_mark). Whoever can read the store
        # can forge marks; its permissions are what protect it.
        self.mark_key = self._meta("mark_key")

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.backend.dialect

    def close(self) -> None:
        self.backend.close()

    @contextmanager
    def transaction(self, wake_controller: bool = True, fenced: bool = True) -> Iterator:
        """A write transaction holding the store's write lock from its start. Any exception rolls
        it back; a commit wakes the store's controller (unless ``nudge`` is off, or the caller
        writes what no controller acts on: ``wake_controller=False``). On a leader's connection it
        first checks the fence (``fence_check``), under the lock, so the check and the writes are one
        atomic step; only the lease's own writes (``fenced=False``: a claim, a renewal that checks
        the epoch itself, a candidate's heartbeat, a release) go without it."""
        wake = self.store_id if self.nudge and wake_controller else None
        with self._lock:
            self.backend.begin(wake)  # LockTimeout once the lock timeout passed
            try:
                if fenced and self.fence_check is not None:
                    self.fence_check(self.db)
                yield self.db
            except BaseException:
                self.backend.rollback()
                raise
            else:
                self.backend.commit(wake)

    def subscribe(self, wake: Callable[[], None]) -> Subscription:
        """Call ``wake`` whenever another process commits to this store, until ``stop()``; the
        controller's way of sleeping until something changes (``runtime.controller``)."""
        return self.backend.subscribe(self.store_id, wake, self._lock)

    def changes(self) -> Subscription:
        """A change counter for a reader that polls (`get -w`): ``version()`` moves once another process
        committed. Unlike ``subscribe`` it takes nothing a controller needs: on SQLite it binds no nudge
        address (``PRAGMA data_version`` alone), on PostgreSQL it is one more ``LISTEN``."""
        if self.dialect == "sqlite":
            return _DataVersion(self)
        return self.backend.subscribe(self.store_id, lambda: None, self._lock)

    def set_busy_timeout(self, ms: float) -> None:
        """How long a write waits for another process's write lock (the default: ``BUSY_TIMEOUT_MS``)."""
        with self._lock:
            self.backend.set_lock_timeout(ms)

    def set_idle_limit(self, seconds: float) -> None:
        """A transaction of this connection left idle longer than this is ended by the server,
        freeing the write lock (PostgreSQL; SQLite cannot). A leader paused inside a transaction
        would otherwise keep every other process, its successor included, from writing."""
        with self._lock:
            self.backend.set_idle_limit(seconds * 1000)

    def _meta(self, key: str) -> str:
        return fetch_one(self.db, "SELECT value FROM meta WHERE key = ?", [key])["value"]

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: changes whenever another connection commits. (The
        runtime uses ``subscribe``, which both backends offer; this is the SQLite one's poll.)"""
        with self._lock:
            return self.backend.data_version()

    def _rows(self, sql: str, params: Iterable = ()) -> list[dict]:
        """A read outside any transaction: each row as a dict by column name."""
        with self._lock:
            return fetch_all(self.db, sql, params)

    def _tuples(self, sql: str, params: Iterable = ()) -> list[tuple]:
        """A bulk read outside any transaction, each row a tuple in the selected order: the fastest
        fetch the backend has (``tasks``' hot reader)."""
        with self._lock:
            return self.backend.tuples(sql, list(params))


# -- row helpers: the nouns read rows by column name and write them as dicts ----------------------


class _DataVersion:
    """``Connection.changes`` on SQLite: ``PRAGMA data_version`` of the reader's own connection."""

    listening = False

    def __init__(self, connection: "Connection"):
        self._connection = connection

    def version(self) -> int:
        return self._connection.data_version()

    def stop(self) -> None:
        pass


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
