"""`brokerctl store migrate`: a SQLite store copied into an empty PostgreSQL database (``store.transfer``),
checked row by row on real SQLite files and a real PostgreSQL cluster. The end-to-end move of a store
with running containers is tests/test_e2e_postgres.py."""

from __future__ import annotations

import os
import socket
import time

import pytest

from helpers import cli
from reconciler.errors import StoreError
from reconciler.kinds import Kind, TaskPhase
from reconciler.records import TaskRecord, TokenRecord
from reconciler.store import Once, Store
from reconciler.store.transfer import TABLES, copy_store
from test_store import job, manifest

KEYS = {"meta": "key", "resources": "kind, name", "tasks": "id", "task_logs": "task_id", "events": "id",
        "revisions": "uid, hash", "lease": "id", "syncs": "source", "tokens": "id",
        "idempotency_keys": "scope, key"}


def every_row(store: Store) -> dict[str, list[dict]]:
    """Each data table's rows, in key order, with bytes as bytes (BLOB and BYTEA alike)."""
    return {t: [{k: bytes(v) if isinstance(v, memoryview) else v for k, v in row.items()}
                for row in store._rows(f"SELECT * FROM {t} ORDER BY {KEYS[t]}")] for t in TABLES}


def filled_store(path) -> Store:
    """A store with every table holding rows: Jobs, a Service with two revisions, a Node, tasks of every kind
    of value (labels, floats, booleans, NULLs), binary output, events, a sync record, a stale lease and an
    API token and an idempotency key."""
    store = Store(path)
    store.apply([manifest("Node", "n1", labels={"zone": "a"}), job("a", completions=3),
                 manifest("Service", "web", template={"image": "busybox:1"})], now=10.5)
    store.apply([manifest("Service", "web", template={"image": "busybox:2"})], now=20.25)
    uid = store.resource(Kind.JOB, "a").uid
    with store.transaction() as db:
        for i in range(3):
            store.insert_task(db, TaskRecord(
                id=f"a-{uid[:5]}-{i}-1", owner_kind=Kind.JOB, owner_name="a", owner_uid=uid, index=i, attempt=1,
                phase=TaskPhase.SUCCEEDED if i else TaskPhase.FAILED, node="n1", container_id=f"{i:064x}",
                exit_code=i - 1 if i else 137, oom_killed=not i, reason="Completed", message="exit code é",
                created_at=100.0 + i / 3, started_at=101.125, finished_at=102.0, labels={"k": "v"} if i else {}))
            store.save_output(db, f"a-{uid[:5]}-{i}-1", bytes(range(256)) * (i + 1), truncated=bool(i))
        for i in range(5):
            store.add_event(db, "Job", "a", f"R{i}", f"message {i}", ts=200.0 + i)
        store.set_status(db, Kind.JOB, "a", {"phase": "Complete", "succeeded": 2})
        store.record_sync(db, "/src", 300.0, "abc123", {"a.yaml": {"state": "ok"}}, None, 1)
    store.claim_lease("gone", 10, now=50.0)  # a controller that stopped long ago
    store.add_token(TokenRecord("0123456789ab", "alice", "edit", ("default",), "ab" * 32, 60.5, "local:root"))
    store.create([job("keyed")], Once("alice POST /tasks default", "k1", {"uuid": "u1"}), now=time.time())
    return store


def test_every_table_moves_with_its_rows_its_store_id_and_its_secret(tmp_path, pg_url):
    """Each table arrives row for row (floats, bytes, NULLs, JSON text as they were); the store id and the
    container-mark secret are the source's; new events continue after the copied ids; the source is
    marked moved, so a controller refuses it and starts on the target."""
    source = filled_store(tmp_path / "s.db")
    before = every_row(source)
    source.close()

    copied = copy_store(tmp_path / "s.db", pg_url)

    target, source = Store(pg_url, create=False), Store(tmp_path / "s.db", create=False)
    try:
        assert copied.rows == {t: len(before[t]) for t in TABLES}
        assert copied.rows["tasks"] == 3 and copied.rows["events"] == 5 and copied.rows["revisions"] == 2
        assert (copied.store_id, copied.source, copied.target) == (source.store_id, tmp_path / "s.db", pg_url)
        assert every_row(target) == before
        assert (target.store_id, target.mark_key) == (source.store_id, source.mark_key)
        assert target.tasks() == source.tasks() and target.resources() == source.resources()
        assert target.output(source.tasks()[2].id) == (bytes(range(256)) * 3, True)

        with target.transaction() as db:
            target.add_event(db, "Job", "a", "After", "m", ts=400.0)
        assert [e["id"] for e in target.events(limit=None)] == [1, 2, 3, 4, 5, 6]

        with pytest.raises(StoreError) as refused:
            source.claim_lease("new", 10)
        assert str(refused.value) == (f"store {tmp_path / 's.db'} was moved to {pg_url} by `brokerctl store migrate`; "
                                      f"run the controller there (`brokerctl --db {pg_url} controller`)")
        target.claim_lease("new", 10)  # the stale lease copied along is taken over
        assert target.lease()["holder"] == "new"
    finally:
        target.close()
        source.close()


def test_a_store_moved_to_postgresql_and_back_is_the_same_store(tmp_path, pg_url):
    """SQLite -> PostgreSQL -> SQLite gives back every row exactly: no value changes type or precision."""
    filled_store(tmp_path / "s.db").close()
    copy_store(tmp_path / "s.db", pg_url)
    copy_store(pg_url, tmp_path / "back.db")

    first, back = Store(tmp_path / "s.db"), Store(tmp_path / "back.db")
    try:
        rows = every_row(first)
        rows["meta"] = [r for r in rows["meta"] if r["key"] != "moved_to"]
        assert every_row(back) == rows
    finally:
        first.close()
        back.close()


def test_a_target_holding_anything_is_refused_and_left_as_it_was(tmp_path, pg_url):
    """Tables of something else, or a store with rows: refused naming what is there; nothing is written."""
    import psycopg

    filled_store(tmp_path / "s.db").close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id integer)")
        with pytest.raises(StoreError, match=rf"^{pg_url} is not empty \(tables invoices\); migrate into an empty "
                                             "database$"):
            copy_store(tmp_path / "s.db", pg_url)
        assert [r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables "
                                           "WHERE table_schema = 'public'")] == ["invoices"]
        conn.execute("DROP TABLE invoices")

    other = Store(pg_url)
    other.apply([job("theirs")])
    other.close()
    with pytest.raises(StoreError, match=rf"^{pg_url} already holds a store \(1 resources\); migrate into an "
                                         "empty database$"):
        copy_store(tmp_path / "s.db", pg_url)
    again = Store(pg_url)
    try:
        assert [r.name for r in again.resources(Kind.JOB)] == ["theirs"] and again.store_id == other.store_id
    finally:
        again.close()
    source = Store(tmp_path / "s.db")
    try:
        source.claim_lease("still-mine", 10)  # not marked moved
    finally:
        source.close()


def test_a_source_with_a_live_controller_is_refused(tmp_path, pg_url):
    source = filled_store(tmp_path / "s.db")
    source.claim_lease("live", 10)  # heartbeat now
    source.close()

    with pytest.raises(StoreError) as info:
        copy_store(tmp_path / "s.db", pg_url)

    assert str(info.value) == (f"a controller (pid {os.getpid()} on {socket.gethostname()}) is running on store "
                               f"{tmp_path / 's.db'}; stop it first: what it wrote after the copy would be lost")
    # a missing source is the usual missing-store error, and the target stays empty
    with pytest.raises(StoreError, match="no store at .*none.db: the file does not exist"):
        copy_store(tmp_path / "none.db", pg_url)
    with pytest.raises(StoreError, match="the database holds no brokerctl store"):
        Store(pg_url, create=False)


def test_a_copy_that_fails_midway_leaves_the_target_empty_and_can_be_run_again(tmp_path, pg_url, monkeypatch):
    """One transaction on the target: a failure in the fifth table rolls back the first four, the source is
    not marked moved, and the next attempt copies everything."""
    from reconciler.store.postgres import PgBackend

    filled_store(tmp_path / "s.db").close()
    real = PgBackend.copy_rows

    def failing(self, table, columns, rows):
        if table == "events":
            raise RuntimeError("disk full")
        real(self, table, columns, rows)

    monkeypatch.setattr(PgBackend, "copy_rows", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        copy_store(tmp_path / "s.db", pg_url)
    monkeypatch.setattr(PgBackend, "copy_rows", real)

    target = Store(pg_url, create=False)
    try:
        # as a new store is made: nothing but its meta rows and the `default` Namespace
        assert all(not target._rows(f"SELECT * FROM {t}") for t in TABLES if t not in ("meta", "resources"))
        assert [(r.kind, r.name) for r in target.resources()] == [(Kind.NAMESPACE, "default")]
    finally:
        target.close()
    assert copy_store(tmp_path / "s.db", pg_url).rows["events"] == 5


def test_the_cli_says_what_it_copied_and_what_to_run_next(tmp_path, pg_url):
    filled_store(tmp_path / "s.db").close()

    proc = cli(tmp_path / "unused.db", "store", "migrate", "--from", str(tmp_path / "s.db"), "--to", pg_url)

    assert proc.returncode == 0, proc.stderr
    store_id = Store(pg_url, create=False).store_id
    assert proc.stdout == (
        f"copied store {store_id} from {tmp_path / 's.db'} to {pg_url} (rows: meta 2, resources 5, tasks 3, "
        "task_logs 3, events 5, revisions 2, lease 1, syncs 1, tokens 1, idempotency_keys 1; counts verified)\n"
        f"next: `brokerctl --db {pg_url} controller`\n")
    again = cli(tmp_path / "unused.db", "store", "migrate", "--from", str(tmp_path / "s.db"), "--to", pg_url)
    assert again.returncode == 1 and again.stderr.startswith(f"error: {pg_url} already holds a store (")
    assert not (tmp_path / "unused.db").exists()
