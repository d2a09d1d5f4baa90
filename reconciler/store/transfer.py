"""Moving a store to another backend: every table of one store copied into an empty one.

``copy_store`` is ``brokerctl store migrate --from FILE --to URL`` (through ``ops.stores``): a
SQLite store into an empty PostgreSQL database (any store into any empty one works the same way).
The copy keeps the store id and the container-mark secret (the ``meta`` table), so the
containers running on the hosts stay the store's: a controller on the new store adopts them
without restarting them. It refuses a target that holds anything (tables of something else, or
a store with rows), a source with a live controller (what it wrote after the copy would be
lost), and verifies each table's row count before committing. Both sides are read and written
inside one transaction each, holding each store's write lock: the copy is a consistent snapshot,
and a failure leaves the target empty.

Once the target has committed, the source records ``moved_to`` in its ``meta``, and a
controller refuses to lead it (``lease.claim_lease``): two controllers on two stores with
the same id would each remove the other's new containers as orphans.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreError
from .db import fetch_all, fetch_one, open_backend
from .location import Location

# The tables a store's data lives in (every table but ``migrations``, which each store keeps for
# itself and which must agree), in an order that copies a resource before what refers to it.
TABLES = ("meta", "resources", "tasks", "task_logs", "events", "revisions", "lease", "syncs", "tokens",
          "idempotency_keys")
# Tables of a store not copied: which controllers run on a store is that store's own.
LOCAL_TABLES = ("candidates",)
MOVED_TO = "moved_to"  # meta key of a store copied elsewhere: where to
LIVE_LEASE_SECONDS = 10.0  # a heartbeat younger than this is a running controller (as `brokerctl status` says)
BATCH = 1000  # rows read from the source at a time


@dataclass(frozen=True)
class Copied:
    """What ``copy_store`` did: the store's id, both ends as messages show them, and the rows of
    each table (equal on both sides: verified before the commit)."""

    store_id: str
    source: Path | str
    target: Path | str
    rows: dict[str, int]


def copy_store(source: str | Path, target: str | Path, now: float | None = None) -> Copied:
    from . import Store

    now = time.time() if now is None else now
    src = Store(source, create=False)
    try:
        src.nudge = False  # the copy changes nothing a controller acts on
        _refuse_a_live_controller(src, now)
        _refuse_foreign_tables(target)
        dst = Store(target)  # a new store in the empty database (or file), soon overwritten
        try:
            return _copy(src, dst)
        finally:
            dst.close()
    finally:
        src.close()


def _copy(src, dst) -> Copied:
    with src.transaction() as read, dst.transaction() as write:
        _refuse_a_store_with_rows(dst, write)
        ours, theirs = (fetch_all(db, "SELECT version, name FROM migrations ORDER BY version") for db in (read, write))
        if ours != theirs:
            raise StoreError(f"{src.path} and {dst.path} are at different schema versions; open both with "
                             "the same brokerctl and try again")
        write.execute("DELETE FROM meta")  # the new store's own id and secret give way to the source's
        write.execute("DELETE FROM resources")  # and its `default` Namespace to the source's (the only row left)
        rows = {table: _copy_table(src, dst, read, write, table) for table in TABLES}
    with src.transaction() as db:
        db.execute("DELETE FROM meta WHERE key = ?", [MOVED_TO])
        db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", [MOVED_TO, str(dst.path)])
    return Copied(src.store_id, src.path, dst.path, rows)


def _copy_table(src, dst, read, write, table: str) -> int:
    """Stream ``table``'s rows from ``read`` into ``write``; return the count, verified on both."""
    where = f" WHERE key <> '{MOVED_TO}'" if table == "meta" else ""  # an earlier move is the source's own
    cursor = read.execute(f"SELECT * FROM {table}{where}")
    columns = [d[0] for d in cursor.description]
    seen = 0

    def rows():
        nonlocal seen
        while batch := cursor.fetchmany(BATCH):
            seen += len(batch)
            yield from batch

    dst.backend.copy_rows(table, columns, rows())
    dst.backend.after_copy(table)
    expected = fetch_one(read, f"SELECT count(*) AS n FROM {table}{where}")["n"]
    copied = fetch_one(write, f"SELECT count(*) AS n FROM {table}")["n"]
    if not expected == seen == copied:
        raise StoreError(f"copying table {table} of {src.path} to {dst.path}: {expected} rows in the source, "
                         f"{seen} read, {copied} in the target; nothing was copied")
    return copied


def _refuse_a_live_controller(src, now: float) -> None:
    lease = src.lease()
    if lease is not None and now - lease["heartbeat"] < LIVE_LEASE_SECONDS:
        raise StoreError(f"a controller (pid {lease['pid']} on {lease['hostname']}) is running on store {src.path}; "
                         "stop it first: what it wrote after the copy would be lost")


def _refuse_foreign_tables(target: str | Path) -> None:
    """Before a store is made in the target: refuse one holding tables that are not a store's."""
    backend = open_backend(Location.parse(target), create=True)
    try:
        foreign = sorted(backend.tables() - {*TABLES, *LOCAL_TABLES, "migrations"})
    finally:
        backend.close()
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise StoreError(f"{Location.parse(target).display} is not empty (tables {shown}); "
                         "migrate into an empty database")


# What a new store is made with (its id and secret in meta, the `default` Namespace): the copy replaces them.
_NEW_STORE_ROWS = {"resources": " WHERE NOT (kind = 'Namespace' AND namespace = '' AND name = 'default')"}


def _refuse_a_store_with_rows(dst, write) -> None:
    """A store already in the target (its tables are ours) must hold nothing but what a new store is made with."""
    counts = {t: fetch_one(write, f"SELECT count(*) AS n FROM {t}{_NEW_STORE_ROWS.get(t, '')}")["n"]
              for t in TABLES if t != "meta"}
    held = [f"{n} {t}" for t, n in counts.items() if n]
    if held:
        raise StoreError(f"{dst.path} already holds a store ({', '.join(held)}); migrate into an empty database")
