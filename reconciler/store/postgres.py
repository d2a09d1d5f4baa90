"""The PostgreSQL backend: a store in a PostgreSQL database, through psycopg 3, and its NOTIFY wake-ups.

``PgBackend`` is what ``db.Connection`` opens for ``postgresql://USER@HOST:PORT/DB`` (or
``postgres://``); this module is imported only then, so psycopg never loads for a SQLite store or
for ``brokerctl --help``. It keeps the store's semantics as the SQLite backend has them:

* the nouns' SQL runs as written: ``PgDatabase.execute`` turns their ``?`` placeholders into
  psycopg's ``%s`` (``translate``); the schema is the same migrations with the column types
  translated (``migrations.ddl``);
* every write transaction first takes one transaction-level advisory lock
  (``pg_advisory_xact_lock``), so writes are serialised as SQLite's ``BEGIN IMMEDIATE``
  serialises them and a read-then-write in one transaction is safe under READ COMMITTED; reads
  run outside transactions (autocommit) and take no lock; a write waits at most the lock timeout
  (30 s, as SQLite's busy timeout) and then fails with ``LockTimeout``;
* a commit by a connection whose ``nudge`` is on notifies the channel ``brokerctl_<store id>``
  (``pg_notify`` in the same round trip as the lock, delivered by PostgreSQL at commit and
  dropped at rollback); the controller's ``PgSubscription`` listens on a connection of its own,
  from any machine;
* a connection found broken (the server restarted) is made again before the next read or
  transaction, which then runs once more; what failed inside a transaction fails the transaction.

The hot bulk reader (``tuples``) fetches in binary: numbers and text need no parsing.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Callable, Iterable

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from ..errors import StoreError
from .db import BUSY_TIMEOUT_MS, LockTimeout
from .location import POSTGRESQL, Location

WRITE_LOCK = 0x62726F6B  # the advisory lock of every write transaction ("brok"); one store per database
CONNECT_TIMEOUT = 10  # seconds, unless the URL says (libpq's default is to wait as long as TCP does)
LISTEN_POLL = 0.5  # seconds the listener waits for a notification before checking whether to stop


@lru_cache(maxsize=4096)
def translate(statement: str) -> str:
    """The nouns' SQL for psycopg: ``?`` placeholders become ``%s`` and a literal ``%`` is doubled,
    outside quoted strings only (inside them both are text)."""
    parts = statement.split("'")  # even parts are outside quotes ('' inside a string splits into two odd parts)
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("%", "%%").replace("?", "%s")
    return "'".join(parts)


def channel(store_id: str) -> str:
    """The NOTIFY channel of a store's commits."""
    return f"brokerctl_{store_id}"


class PgDatabase:
    """What the nouns write through (``db`` in ``with store.transaction() as db``): ``execute``
    with ``?`` placeholders, returning a psycopg cursor (``fetchone``, ``fetchall``,
    ``description``, ``rowcount``), as sqlite-utils' ``Database.execute`` returns sqlite3's."""

    def __init__(self, backend: "PgBackend"):
        self._backend = backend

    def execute(self, statement: str, params: Iterable = ()):
        return self._backend.execute(statement, params)


class PgBackend:
    """One psycopg connection (autocommit; transactions are begun explicitly) to a store database."""

    dialect = POSTGRESQL
    errors = (psycopg.Error,)  # what makes a database "not a usable brokerctl store"

    def __init__(self, location: Location, create: bool):
        self.url, self.display = str(location.target), location.display
        self.created = False
        self.lock_timeout_ms: float = BUSY_TIMEOUT_MS
        self.idle_limit_ms: float = 0  # 0: PostgreSQL's default, no limit
        self._in_transaction = False
        self.conn = self.connect()
        self.db = PgDatabase(self)

    def connect(self) -> psycopg.Connection:
        """A new autocommit connection with the store's session settings; StoreError naming the URL
        (without its password) and the fix when the server cannot be reached or refuses."""
        try:
            params = conninfo_to_dict(self.url)
        except psycopg.Error as exc:
            raise StoreError.cannot_open(self.display, _one_line(exc)) from exc
        params.setdefault("connect_timeout", CONNECT_TIMEOUT)
        params.setdefault("application_name", "brokerctl")
        try:
            conn = psycopg.connect(autocommit=True, **params)
            conn.execute(f"SET lock_timeout = {max(1, int(self.lock_timeout_ms))}")
            if self.idle_limit_ms:
                conn.execute(f"SET idle_in_transaction_session_timeout = {int(self.idle_limit_ms)}")
        except psycopg.Error as exc:
            raise StoreError.cannot_connect(self.display, _one_line(exc)) from exc
        return conn

    def prepare(self) -> None:
        """Nothing: the session settings are made by ``connect``."""

    def check_store(self, create: bool) -> None:
        """Inside the first transaction (the write lock held): is there a store in this database
        yet? Without ``create``, a database without one is refused as a missing file is."""
        exists = self.conn.execute("SELECT to_regclass('migrations') IS NOT NULL").fetchone()[0]
        if not exists and not create:
            raise StoreError.missing(self.display, "the database holds no brokerctl store")
        self.created = not exists

    def close(self) -> None:
        self.conn.close()

    # -- statements --------------------------------------------------------------------------

    def execute(self, statement: str, params: Iterable = (), binary: bool = False):
        """Run one statement; outside a transaction, once more on a new connection if the old one
        turns out broken (the server restarted), since a read can be repeated."""
        query, values = translate(statement), list(params)
        if not self._in_transaction:
            self._reconnect_if_broken()
        try:
            return self.conn.execute(query, values, binary=binary)
        except psycopg.OperationalError as exc:
            if not self.conn.broken:
                raise
            if self._in_transaction:
                raise StoreError.cannot_connect(self.display, f"connection lost: {_one_line(exc)}") from exc
        self._reconnect_if_broken()
        return self.conn.execute(query, values, binary=binary)

    def _reconnect_if_broken(self) -> None:
        if self.conn.broken or self.conn.closed:
            self.conn.close()
            self.conn = self.connect()

    # -- transactions ------------------------------------------------------------------------

    def begin(self, wake: str | None) -> None:
        """BEGIN and the write lock (and, with ``wake``, the notification sent at commit) in one
        round trip; waits at most the lock timeout for another writer."""
        self._reconnect_if_broken()
        try:
            self.conn.execute(_begin_statement(wake))
        except psycopg.errors.LockNotAvailable as exc:
            self.conn.execute("ROLLBACK")
            raise LockTimeout.waited(self.display, self.lock_timeout_ms) from exc
        except psycopg.OperationalError as exc:
            if not self.conn.broken:
                raise
            self._reconnect_if_broken()  # nothing was done yet: begin again on a new connection
            self.conn.execute(_begin_statement(wake))
        self._in_transaction = True

    def commit(self, wake: str | None) -> None:
        """COMMIT (the notification, if any, goes out with it)."""
        self._in_transaction = False
        try:
            self.conn.execute("COMMIT")
        except psycopg.OperationalError as exc:
            if self.conn.broken:
                raise StoreError.cannot_connect(
                    self.display, f"connection lost while committing (the commit may not have happened): "
                                  f"{_one_line(exc)}") from exc
            raise

    def rollback(self) -> None:
        self._in_transaction = False
        if not self.conn.broken:
            self.conn.execute("ROLLBACK")

    def set_lock_timeout(self, ms: float) -> None:
        # PostgreSQL's lock_timeout = 0 means "wait for ever": 1 ms is the nearest to "do not wait".
        self.lock_timeout_ms = ms
        self.execute(f"SET lock_timeout = {max(1, int(ms))}")

    def set_idle_limit(self, ms: float) -> None:
        """The server ends this session when a transaction of it idles longer than ``ms`` (a
        process paused inside one), which rolls it back and frees the write lock; kept on reconnect."""
        self.idle_limit_ms = ms
        self.execute(f"SET idle_in_transaction_session_timeout = {int(ms)}")

    # -- reads -------------------------------------------------------------------------------

    def tuples(self, statement: str, params: list) -> list[tuple]:
        """Binary results: integers, floats and text arrive without text parsing."""
        return self.execute(statement, params, binary=True).fetchall()

    def data_version(self) -> int:
        raise NotImplementedError("data_version is SQLite's; on PostgreSQL, subscribe() counts other commits")

    def subscribe(self, store_id: str, wake: Callable[[], None], lock) -> "PgSubscription":
        return PgSubscription(self.connect, channel(store_id), wake)

    # -- copying a whole store (``transfer``) --------------------------------------------------

    def tables(self) -> set[str]:
        return {r[0] for r in self.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()").fetchall()}

    def copy_rows(self, table: str, columns: list[str], rows: Iterable[tuple]) -> None:
        """COPY the rows in (inside the caller's transaction): the fast way in for 100,000 rows."""
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
        with self.conn.cursor() as cur, cur.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    def after_copy(self, table: str) -> None:
        """Identity columns (``events.id``) continue after the highest id copied in."""
        for (column,) in self.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = ? AND is_identity = 'YES'", [table]).fetchall():
            self.conn.execute(sql.SQL("SELECT setval(pg_get_serial_sequence({}, {}), coalesce(max({}), 0) + 1, false) "
                                      "FROM {}").format(sql.Literal(table), sql.Literal(column),
                                                        sql.Identifier(column), sql.Identifier(table)))


@lru_cache(maxsize=64)
def _begin_statement(wake: str | None) -> sql.Composed:
    lock = sql.SQL("BEGIN; SELECT pg_advisory_xact_lock({})").format(sql.Literal(WRITE_LOCK))
    if wake is None:
        return lock
    return lock + sql.SQL(", pg_notify({}, '')").format(sql.Literal(channel(wake)))


class PgSubscription:
    """The controller's wake-ups on PostgreSQL: ``LISTEN`` on the store's channel, on a connection
    of its own, in a thread. Each notification (another process committed) counts one change and
    calls ``wake``. A lost connection is made again (with backoff) and counts as a change, since
    notifications sent meanwhile were lost; the controller's periodic resync covers the gap.
    The first connection is made on the thread too, and counts as a change once it listens: a
    controller that just took over runs its first pass at once instead of waiting for a connection
    (tenths of a second on a busy machine), and passes again if anything committed before the
    ``LISTEN``."""

    def __init__(self, connect: Callable[[], psycopg.Connection], name: str, wake: Callable[[], None]):
        self._connect, self._channel, self._wake = connect, name, wake
        self._changes = 0
        self._stop = threading.Event()
        self._conn: psycopg.Connection | None = None
        self.listening = False
        threading.Thread(target=self._loop, daemon=True, name="notifies").start()

    def _listen(self) -> psycopg.Connection:
        conn = self._connect()
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        return conn

    def _loop(self) -> None:
        pause = 0.1
        while not self._stop.is_set():
            if self._conn is None:
                try:
                    self._conn = self._listen()
                except (StoreError, psycopg.Error):
                    self._stop.wait(pause)
                    pause = min(pause * 2, 2.0)
                    continue
                pause = 0.1
                self._changed()  # commits made while nobody listened (or before the first LISTEN) went unheard
                self.listening = True  # after the change is counted: a caller that saw it listening saw that too
            try:
                for _ in self._conn.notifies(timeout=LISTEN_POLL):
                    self._changed()
            except psycopg.Error:
                self.listening = False
                self._conn.close()
                self._conn = None
        if self._conn is not None:
            self._conn.close()

    def _changed(self) -> None:
        self._changes += 1
        self._wake()

    def version(self) -> int:
        return self._changes

    def stop(self) -> None:
        """The thread leaves (and closes its connection) within ``LISTEN_POLL``; nobody waits for it."""
        self._stop.set()


def _one_line(exc: BaseException) -> str:
    """psycopg's messages span lines (libpq's hints): one line for the CLI."""
    return " ".join(str(exc).split())
