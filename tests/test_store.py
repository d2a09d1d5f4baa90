"""Tests for reconciler.store: apply, delete, tasks, output, lease, concurrency, wake-ups.

Tests on the ``store`` fixture (or ``db_url``) run on both backends, a real SQLite file and a real
PostgreSQL database (``[sqlite]``, ``[postgresql]``); what only one backend has (SQLite's file
modes and WAL, PostgreSQL's connection errors and reconnects) is tested on that one."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from helpers import wait_for
from reconciler.errors import Conflict, NotFound, StoreError
from reconciler.spec.models import Kind, Resource, TaskPhase, template_hash
from reconciler.records import TaskRecord
from reconciler.store import LOG_LIMIT_BYTES, Store

_RESOURCE = TypeAdapter(Resource)

# -- factories ----------------------------------------------------------------------------


def manifest(kind: str, name: str, labels: dict | None = None, **spec):
    """A validated model, as ``manifests`` hands it to ``Store.apply``."""
    if kind == "Node":
        body = {"address": "tcp://127.0.0.1:2375", **spec}
    else:
        body = {"template": {"image": "busybox"}, **spec}
    return _RESOURCE.validate_python({"apiVersion": "broker/v1", "kind": kind,
                                      "metadata": {"name": name, "labels": labels or {}}, "spec": body})


def job(name: str = "job", labels: dict | None = None, **spec):
    return manifest("Job", name, labels, **spec)


def task(owner: str = "job", index: int = 0, attempt: int = 1, phase: TaskPhase = TaskPhase.PENDING,
         kind: Kind = Kind.JOB, **kw) -> TaskRecord:
    return TaskRecord(id=f"{owner}-abcde-{index}-{attempt}", owner_kind=kind, owner_name=owner, owner_uid="abcde12345",
                      index=index, attempt=attempt, phase=phase, created_at=kw.pop("created_at", 100.0 + index), **kw)


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    yield s
    s.close()


def on_sqlite(store: Store) -> bool:
    return store.dialect == "sqlite"


# What only SQLite has (data_version, the nudge socket): these tests run on the [sqlite] store only.
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def insert(store: Store, *tasks: TaskRecord) -> None:
    with store.transaction() as db:
        for t in tasks:
            store.insert_task(db, t)


# -- opening and migrations -----------------------------------------------------------------


def test_new_store_records_every_migration_once(store, db_url):
    """A new store file is created with its parent directory, in WAL mode, with each migration recorded once
    (on PostgreSQL: in the empty database)."""
    from reconciler.store.migrations import MIGRATIONS

    rows = store._rows("SELECT version, name FROM migrations")
    assert rows == [{"version": i, "name": name} for i, (name, _) in enumerate(MIGRATIONS, start=1)]
    assert rows[:2] == [{"version": 1, "name": "initial"}, {"version": 2, "name": "job retries"}]
    if on_sqlite(store):
        assert store.db.journal_mode == "wal"
    assert len(store.store_id) == 12 and store.created

    again = Store(db_url)
    try:
        assert again._rows("SELECT version FROM migrations") == [{"version": v} for v in range(1, len(MIGRATIONS) + 1)]
        assert again.store_id == store.store_id
    finally:
        again.close()


def test_a_file_that_is_not_sqlite_is_refused(tmp_path):
    """Opening a file that is not a SQLite database raises StoreError naming the path."""
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database at all" * 100)

    with pytest.raises(StoreError, match="junk.db is not a usable brokerctl store"):
        Store(path)


# -- apply --------------------------------------------------------------------------------


def test_apply_reports_created_configured_unchanged(store):
    """apply says what it did per resource; generation moves only when the spec changes."""
    assert store.apply([job(completions=2), manifest("Node", "a")], now=10.0) == [
        ("job/job", "created"), ("node/a", "created")]
    first = store.resource(Kind.JOB, "job")
    assert (first.generation, first.created_at, first.updated_at, first.spec["completions"]) == (1, 10.0, 10.0, 2)

    assert store.apply([job(completions=2)], now=20.0) == [("job/job", "unchanged")]
    assert store.resource(Kind.JOB, "job") == first

    assert store.apply([job(labels={"team": "x"}, completions=2)], now=30.0) == [("job/job", "configured")]
    relabelled = store.resource(Kind.JOB, "job")
    assert (relabelled.generation, relabelled.labels, relabelled.updated_at) == (1, {"team": "x"}, 30.0)

    assert store.apply([job(labels={"team": "x"}, completions=3)], now=40.0) == [("job/job", "configured")]
    changed = store.resource(Kind.JOB, "job")
    assert (changed.generation, changed.spec["completions"], changed.uid, changed.created_at) == (
        2, 3, first.uid, 10.0)


def test_explicit_default_is_the_same_spec(store):
    """Writing a default value explicitly is not a spec change (specs are stored with defaults filled in)."""
    store.apply([job()])

    assert store.apply([job(completions=1, parallelism=1)]) == [("job/job", "unchanged")]
    assert store.resource(Kind.JOB, "job").generation == 1


def test_apply_is_all_or_none(store):
    """When one resource in an apply is refused, none of the others is written."""
    store.apply([job("old")])
    insert(store, task("old"))
    assert store.mark_deleted(Kind.JOB, "old") == "deleting"

    with pytest.raises(Conflict, match="Job 'old' is being deleted"):
        store.apply([job("new"), job("old", completions=5)])

    assert [r.name for r in store.resources(Kind.JOB)] == ["old"]
    assert store.resource(Kind.JOB, "old").spec["completions"] == 1
    with pytest.raises(NotFound):
        store.resource(Kind.JOB, "new")
    assert store.apply([job("new")]) == [("job/new", "created")], "the store is usable after the rollback"


def test_applying_a_new_resource_reads_the_resources_table_through_indexes_only(tmp_path):
    """Each statement of an apply (the new uid's check against every resource of its name among them)
    searches an index: none scans the table, so applies do not slow down as resources accumulate."""
    store = Store(tmp_path / "s.db")
    store.apply([job(f"job-{i}") for i in range(20)])
    statements: list[str] = []
    store.db.conn.set_trace_callback(statements.append)
    try:
        store.apply([job("one-more")])
    finally:
        store.db.conn.set_trace_callback(None)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "resources" in s]
    plans = {s: [row[-1] for row in store.db.conn.execute("EXPLAIN QUERY PLAN " + s)] for s in reads}
    store.close()
    assert any("substr(uid" in s for s in reads), reads  # the uid check is among them
    assert not [s for s, plan in plans.items() if any(step.startswith("SCAN resources") for step in plan)], plans


def test_resources_are_listed_by_kind_then_name(store):
    """resources() lists Jobs, Nodes and Services sorted by kind and name, optionally of one kind (the
    `default` Namespace is in every store)."""
    store.apply([manifest("Service", "web"), job("b"), manifest("Node", "n1"), job("a")])

    assert [r.ref for r in store.resources()] == ["Job/a", "Job/b", "Namespace/default", "Node/n1", "Service/web"]
    assert [r.ref for r in store.resources(Kind.JOB)] == ["Job/a", "Job/b"]
    assert store.resource(Kind.SERVICE, "web").model.spec.replicas == 1


def test_status_is_written_inside_a_transaction(store):
    """set_status replaces a resource's status, which reads back as a dict."""
    store.apply([job()])

    with store.transaction() as db:
        store.set_status(db, Kind.JOB, "job", {"phase": "Running", "active": 1})

    assert store.resource(Kind.JOB, "job").status == {"phase": "Running", "active": 1}


# -- delete -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tasks, outcome",
    [
        ([], "deleted"),
        ([task(phase=TaskPhase.SUCCEEDED, finished_at=5.0, container_id="c")], "deleted"),
        ([task(phase=TaskPhase.FAILED, finished_at=5.0), task(index=1, phase=TaskPhase.LOST, finished_at=5.0)],
         "deleted"),
        ([task(phase=TaskPhase.PENDING)], "deleting"),
        ([task(phase=TaskPhase.RUNNING, container_id="c")], "deleting"),
        ([task(phase=TaskPhase.STOPPED, container_id="c")], "deleting"),  # stopped, container not yet gone
    ],
)
def test_mark_deleted_deletes_at_once_only_when_nothing_may_run(store, tasks, outcome):
    """A Job with no live task is deleted with its tasks and output; otherwise it is marked for the controller."""
    store.apply([job(), job("other")])
    insert(store, *tasks, task("other"))
    with store.transaction() as db:
        for t in tasks:
            store.save_output(db, t.id, b"out", False)

    assert store.mark_deleted(Kind.JOB, "job", now=50.0) == outcome

    if outcome == "deleted":
        with pytest.raises(NotFound):
            store.resource(Kind.JOB, "job")
        assert store.tasks((Kind.JOB, "job")) == []
        assert all(store.output(t.id) is None for t in tasks)
    else:
        r = store.resource(Kind.JOB, "job")
        assert (r.deleted_at, r.updated_at) == (50.0, 50.0)
        assert store.mark_deleted(Kind.JOB, "job", now=60.0).startswith("still ")  # never purged by a second delete
        assert store.resource(Kind.JOB, "job").deleted_at == 50.0, "a second delete keeps the first time"
    assert len(store.tasks((Kind.JOB, "other"))) == 1, "another Job's tasks are untouched"


def test_a_job_stopped_within_its_grace_period_is_not_deleted_at_once(store):
    """A task stopped 5 s ago with a 30 s grace may still have a running container: the first delete
    leaves the Job to the controller; once the grace period has passed it is deleted at once."""
    store.apply([job(terminationGracePeriodSeconds=30)])
    insert(store, task(phase=TaskPhase.STOPPED, node="a", container_id="c", finished_at=45.0))

    assert store.mark_deleted(Kind.JOB, "job", now=50.0) == "deleting"

    store.apply([job("later", terminationGracePeriodSeconds=30)])
    insert(store, task("later", phase=TaskPhase.STOPPED, node="a", container_id="c", finished_at=10.0))
    assert store.mark_deleted(Kind.JOB, "later", now=50.0) == "deleted"


def test_a_second_delete_reports_what_is_still_stopping_and_never_purges(store):
    """Deleting a Job that is already being deleted says how many containers are still stopping
    (the controller's count once it has one, the store's guess before) and keeps the record."""
    store.apply([job(terminationGracePeriodSeconds=3600)])
    insert(store, task(phase=TaskPhase.RUNNING, node="a", container_id="c0"),
           task(index=1, phase=TaskPhase.RUNNING, node="a", container_id="c1"))
    assert store.mark_deleted(Kind.JOB, "job", now=50.0) == "deleting"
    with store.transaction() as db:  # the controller stopped both (a 3600 s grace period begins)
        for i in (0, 1):
            store.update_task(db, f"job-abcde-{i}-1", phase=TaskPhase.STOPPED, finished_at=51.0)

    assert store.mark_deleted(Kind.JOB, "job", now=60.0) == \
        "still stopping (2 containers); pass --force to abandon them"
    with store.transaction() as db:  # what the controller saw in its last pass
        store.set_status(db, Kind.JOB, "job", {"phase": "Running", "stoppingContainers": 1})
    assert store.mark_deleted(Kind.JOB, "job", now=5000.0) == \
        "still stopping (1 container); pass --force to abandon them"
    r = store.resource(Kind.JOB, "job")
    assert r.deleted_at == 50.0 and len(store.tasks((Kind.JOB, "job"))) == 2


def test_force_purges_a_deleting_job_and_says_its_containers_are_no_longer_tracked(store):
    store.apply([job(terminationGracePeriodSeconds=3600), job("fresh")])
    insert(store, task(phase=TaskPhase.STOPPED, node="a", container_id="c0", finished_at=51.0),
           task("fresh", phase=TaskPhase.RUNNING, node="a", container_id="c1"))
    assert store.mark_deleted(Kind.JOB, "job", now=50.0) == "deleting"
    with store.transaction() as db:
        store.save_output(db, "job-abcde-0-1", b"out", False)

    outcome = store.mark_deleted(Kind.JOB, "job", now=60.0, force=True)

    assert outcome == ("deleted (--force); 1 container may still run, no longer tracked: a running controller "
                       "removes them as orphans (SIGTERM, kill after 10s), without their grace period")
    with pytest.raises(NotFound):
        store.resource(Kind.JOB, "job")
    assert store.tasks((Kind.JOB, "job")) == [] and store.output("job-abcde-0-1") is None
    assert store.mark_deleted(Kind.JOB, "fresh", force=True).startswith("deleted (--force); 1 container ")
    assert store.resources(Kind.JOB) == []


def test_mark_deleted_node_and_unknown(store):
    """A Node is always deleted at once; deleting something unknown raises NotFound naming it."""
    store.apply([manifest("Node", "a")])

    assert store.mark_deleted(Kind.NODE, "a") == "deleted"
    assert store.resources(Kind.NODE) == []
    with pytest.raises(NotFound, match="Node 'a' not found"):
        store.mark_deleted(Kind.NODE, "a")


def test_purge_removes_a_deleting_job_and_a_new_apply_starts_over(store):
    """After the controller purges a deleted Job, applying the same name creates a fresh resource."""
    store.apply([job()])
    old_uid = store.resource(Kind.JOB, "job").uid
    insert(store, task(phase=TaskPhase.RUNNING))
    store.mark_deleted(Kind.JOB, "job")

    store.purge(Kind.JOB, "job")

    assert store.tasks() == []
    assert store.apply([job()]) == [("job/job", "created")]
    fresh = store.resource(Kind.JOB, "job")
    assert (fresh.generation, fresh.deleted_at) == (1, None) and fresh.uid != old_uid


# -- tasks and output ---------------------------------------------------------------------


def test_task_round_trips_through_insert_and_update(store):
    """A task reads back equal to what was inserted and updated: enums, booleans, labels and floats intact."""
    t = task(phase=TaskPhase.RUNNING, node="a", container_id="c" * 64, reason="Scheduled", message="m",
             not_before=1.5, scheduled_at=2.5, started_at=3.5, generation=4, labels={"team": "x", "n": "1"})
    insert(store, t)
    assert store.task(t.id) == t

    changes = dict(phase=TaskPhase.FAILED, exit_code=137, oom_killed=True, reason="OOMKilled",
                   message="exit code 137", finished_at=9.25, labels={"team": "y"})
    with store.transaction() as db:
        store.update_task(db, t.id, **changes)

    got = store.task(t.id)
    assert got == replace(t, **changes)
    assert isinstance(got.phase, TaskPhase) and got.owner_kind is Kind.JOB and got.oom_killed is True
    assert store._rows("SELECT phase, idx, oom_killed FROM tasks") == [
        {"phase": "Failed", "idx": 0, "oom_killed": 1}]


def test_tasks_filter_by_owner_and_activity(store):
    """tasks() lists in creation order, filtered by owner and to Pending/Running ones on request."""
    rows = [task("a", 0, phase=TaskPhase.SUCCEEDED, created_at=3.0), task("a", 1, phase=TaskPhase.RUNNING,
            created_at=1.0), task("b", 0, phase=TaskPhase.PENDING, created_at=2.0),
            task("web", 0, kind=Kind.SERVICE, phase=TaskPhase.RUNNING, created_at=0.5)]
    insert(store, *rows)

    assert [t.id for t in store.tasks()] == [rows[3].id, rows[1].id, rows[2].id, rows[0].id]
    assert [t.id for t in store.tasks((Kind.JOB, "a"))] == [rows[1].id, rows[0].id]
    assert [t.id for t in store.tasks(active_only=True)] == [rows[3].id, rows[1].id, rows[2].id]
    assert store.tasks((Kind.JOB, "web")) == []
    with pytest.raises(NotFound, match="task 'nope' not found"):
        store.task("nope")


@pytest.mark.parametrize(
    "size, host_truncated, stored_size, truncated",
    [
        (0, False, 0, False),
        (100, False, 100, False),
        (100, True, 100, True),  # the host already cut it short
        (LOG_LIMIT_BYTES, False, LOG_LIMIT_BYTES, False),
        (LOG_LIMIT_BYTES + 1, False, LOG_LIMIT_BYTES, True),
        (3 * LOG_LIMIT_BYTES, False, LOG_LIMIT_BYTES, True),
    ],
)
def test_output_is_bounded_keeping_the_tail(store, size, host_truncated, stored_size, truncated):
    """Task output longer than LOG_LIMIT_BYTES is cut to its last LOG_LIMIT_BYTES bytes and flagged truncated."""
    output = bytes(i % 251 for i in range(size))

    with store.transaction() as db:
        store.save_output(db, "t1", output, host_truncated)

    got, flag = store.output("t1")
    assert (len(got), flag) == (stored_size, truncated)
    assert got == output[len(output) - stored_size:]


def test_output_is_replaced_and_missing_output_is_none(store):
    """Saving output again replaces it; a task without saved output has None."""
    with store.transaction() as db:
        store.save_output(db, "t1", b"first", True)
        store.save_output(db, "t1", b"second", False)

    assert store.output("t1") == (b"second", False)
    assert store.output("t2") is None


def test_events_are_returned_oldest_first_within_the_limit(store):
    """events() returns the most recent events, oldest first, optionally for one object."""
    with store.transaction() as db:
        for i in range(5):
            store.add_event(db, "Job", "a" if i % 2 == 0 else "b", f"R{i}", f"m{i}", ts=float(i))

    assert [e["reason"] for e in store.events()] == ["R0", "R1", "R2", "R3", "R4"]
    assert [e["reason"] for e in store.events(limit=2)] == ["R3", "R4"]
    assert [e["reason"] for e in store.events("Job", "a")] == ["R0", "R2", "R4"]
    assert store.events()[0]["type"] == "Normal" and store.events()[0]["ts"] == 0.0


# -- lease --------------------------------------------------------------------------------


@pytest.fixture
def other(db_url, store):
    """A second connection to the same store, as a second process would have."""
    s = Store(db_url)
    yield s
    s.close()


def test_a_second_candidate_stands_by_while_the_lease_is_live(store, other):
    """A claim of a live lease held by another is refused (None) and changes nothing; the holder renews,
    and may claim again (a new term: the next epoch)."""
    assert store.claim_lease("first", 3.0, now=100.0) == 1
    assert store.renew_lease("first", 1, 3.0, now=101.0)

    assert other.claim_lease("second", 3.0, now=103.5) is None

    lease = store.lease()
    assert (lease["holder"], lease["epoch"], lease["expires_at"], lease["pid"]) == ("first", 1, 104.0, os.getpid())
    assert store.claim_lease("first", 3.0, now=103.6) == 2


def test_the_epoch_goes_up_at_each_takeover_and_the_old_holder_cannot_renew(store, other):
    """An expired lease is claimed with the next epoch; renewal by anyone but the holder of that epoch
    fails and writes nothing."""
    assert store.claim_lease("first", 3.0, now=100.0) == 1
    assert other.claim_lease("second", 3.0, now=103.0) == 2  # expired at 103.0
    assert store.claim_lease("first", 3.0, now=105.9) is None  # second's lease runs to 106.0
    assert store.claim_lease("first", 3.0, now=106.0) == 3

    before = store.lease()
    assert store.renew_lease("second", 2, 3.0, now=106.5) is False  # no longer the holder
    assert store.renew_lease("first", 2, 3.0, now=106.5) is False  # the holder, at another epoch
    assert store.renew_lease("intruder", 3, 3.0, now=106.5) is False
    assert store.lease() == before
    assert store.renew_lease("first", 3, 3.0, now=106.5, stats={"passes": 7}) is True
    lease = store.lease()
    assert (lease["heartbeat"], lease["expires_at"], lease["stats"]) == (106.5, 109.5, {"passes": 7})


def test_a_write_fenced_with_an_old_epoch_is_refused_and_leaves_the_store_unchanged(store, other):
    """A connection fenced at epoch 1 writes while it leads; once another claimed epoch 2, each of its
    write transactions fails with Fenced before anything is written, and nothing of it is committed."""
    from reconciler.store import Fenced

    store.claim_lease("old", 3.0, now=100.0)
    store.fence("old", 1)
    with store.transaction() as db:
        store.add_event(db, "Job", "j", "Written", "while leading")
    assert other.claim_lease("new", 3.0, now=104.0) == 2
    events, tasks, lease = store.events(), store.tasks(), store.lease()

    with pytest.raises(Fenced, match=r"lease \(epoch 1\) was taken over \(epoch 2 held by pid \d+ on "):
        with store.transaction() as db:
            store.add_event(db, "Job", "j", "Fenced", "after the takeover")
            store.insert_task(db, task())
    with pytest.raises(Fenced):
        store.apply([job("fenced")])
    assert store.renew_lease("old", 1, 3.0, now=104.5) is False

    assert (store.events(), store.tasks(), store.lease()) == (events, tasks, lease)
    assert [r.name for r in store.resources(Kind.JOB)] == []
    other.fence("new", 2)  # the new leader's writes go through
    with other.transaction() as db:
        other.add_event(db, "Job", "j", "New", "by the leader")
    assert [e["reason"] for e in store.events()] == ["Written", "New"]
    store.unfence()  # a connection that does not lead (a CLI) is never fenced
    store.apply([job("by-hand")])


def test_a_released_lease_keeps_its_epoch_and_is_claimed_at_once(store, other):
    """Release frees the lease for any candidate (no wait for the expiry), only by its holder, and keeps
    the epoch so that the next term's is higher than every earlier one."""
    store.claim_lease("first", 3.0, now=100.0)
    other.release_lease("someone-else")
    assert store.lease()["holder"] == "first"

    assert store.release_lease("first") is True
    assert store.lease() is None and store.lease_row()["epoch"] == 1
    assert other.claim_lease("second", 3.0, now=100.5) == 2


def test_candidates_record_their_heartbeat_and_long_silent_ones_are_forgotten(store, other):
    store.beat_candidate("a", started_at=10.0, now=100.0)
    other.beat_candidate("b", started_at=20.0, now=150.0)
    other.beat_candidate("b", started_at=20.0, now=170.0)
    assert [(c["holder"], c["heartbeat"], c["pid"]) for c in store.candidates()] == [("b", 170.0, os.getpid())]
    store.beat_candidate("a", started_at=10.0, now=171.0)
    store.release_lease("a")  # also removes the candidate row
    assert [c["holder"] for c in store.candidates()] == ["b"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lease(store: Store, pid: int, hostname: str, now: float) -> None:
    from reconciler.store.db import upsert

    with store.transaction() as db:
        upsert(db, "lease", {"id": 1, "holder": "ghost", "pid": pid, "hostname": hostname, "started_at": now,
                             "heartbeat": now, "expires_at": now + 3.0, "epoch": 4}, key="id")


def test_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(store):
    """An unexpired lease whose pid no longer exists on this host is free immediately."""
    _write_lease(store, _dead_pid(), socket.gethostname(), now=100.0)

    assert store.claim_lease("mine", 3.0, now=101.0) == 5

    lease = store.lease()
    assert (lease["holder"], lease["pid"], lease["heartbeat"]) == ("mine", os.getpid(), 101.0)


def test_lease_of_another_host_is_trusted_until_it_expires(store):
    """A holder on another host cannot be checked, so only the expiry frees its lease."""
    _write_lease(store, _dead_pid(), "some-other-host", now=100.0)

    assert store.claim_lease("mine", 3.0, now=102.9) is None
    assert store.claim_lease("mine", 3.0, now=103.0) == 5


# -- concurrency --------------------------------------------------------------------------


def test_concurrent_stores_on_one_file_never_hit_database_is_locked(db_url):
    """Eight threads, each opening its own Store on the same new file (or empty database) and applying, all
    succeed, and the migrations are applied once."""
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait()
            s = Store(db_url)
            try:
                for round in range(5):
                    s.apply([job(f"job-{i}-{round}"), manifest("Node", f"node-{i}")])
                    insert(s, task(f"job-{i}-{round}"))
                    s.resources()
            finally:
                s.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert errors == []
    check = Store(db_url)
    try:
        assert len(check.resources(Kind.JOB)) == 40 and len(check.resources(Kind.NODE)) == 8
        assert len(check.tasks()) == 40
        from reconciler.store.migrations import MIGRATIONS

        assert check._rows("SELECT count(*) AS n FROM migrations") == [{"n": len(MIGRATIONS)}]
    finally:
        check.close()


def test_stores_opening_one_new_file_at_once_all_switch_it_to_wal(tmp_path):
    """Connections racing to switch a new file to WAL: SQLite answers the losers "database is
    locked" without waiting for the busy timeout, so Store retries. 300 rounds of eight at once
    (without the retry one round in about 200 failed here; the next test pins the retry itself)."""
    for round in range(300):
        path = tmp_path / f"r{round}" / "broker.db"
        barrier = threading.Barrier(8)
        errors: list[BaseException] = []
        opened: list[Store] = []

        def worker() -> None:
            try:
                barrier.wait()
                opened.append(Store(path))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        try:
            assert errors == [], f"round {round}: {errors}"
            assert len(opened) == 8
            assert {s.db.journal_mode for s in opened} == {"wal"}
            assert len({s.store_id for s in opened}) == 1
        finally:
            for s in opened:
                s.close()


def test_a_locked_wal_switch_is_retried_until_it_succeeds(tmp_path, monkeypatch):
    """The retry itself: the switch is refused twice with "database is locked", then succeeds."""
    import sqlite3

    import sqlite_utils

    real = sqlite_utils.Database.enable_wal
    refusals = []

    def flaky(self):
        if len(refusals) < 2:
            refusals.append(1)
            raise sqlite3.OperationalError("database is locked")
        real(self)

    monkeypatch.setattr(sqlite_utils.Database, "enable_wal", flaky)
    s = Store(tmp_path / "s.db")
    try:
        assert len(refusals) == 2 and s.db.journal_mode == "wal"
    finally:
        s.close()


@sqlite_only
def test_data_version_changes_when_another_connection_commits(store, other):
    """data_version moves after another connection's commit, and not for a read or one's own commit."""
    before = store.data_version()
    store.resources()
    store.apply([job("mine")])
    assert store.data_version() == before

    other.apply([job("theirs")])

    after = store.data_version()
    assert after != before
    assert store.data_version() == after


def test_node_with_active_tasks_is_not_deleted_without_force(store):
    """Deleting a Node that runs active tasks is refused unless forced."""
    node = {"apiVersion": "broker/v1", "kind": "Node", "metadata": {"name": "h1"},
            "spec": {"address": "tcp://127.0.0.1:2375"}}
    job = {"apiVersion": "broker/v1", "kind": "Job", "metadata": {"name": "j"},
           "spec": {"template": {"image": "busybox"}}}
    store.apply([TypeAdapter(Resource).validate_python(d) for d in (node, job)])
    uid = store.resource(Kind.JOB, "j").uid
    with store.transaction() as db:
        store.insert_task(db, TaskRecord(id="j-1", owner_kind=Kind.JOB, owner_name="j", owner_uid=uid, index=0,
                                         attempt=1, phase=TaskPhase.RUNNING, node="h1", created_at=1.0))
    with pytest.raises(Conflict, match="Node 'h1' has 1 active task"):
        store.mark_deleted(Kind.NODE, "h1")
    assert store.resource(Kind.NODE, "h1").name == "h1"
    assert store.mark_deleted(Kind.NODE, "h1", force=True) == "deleted"
    assert [r.name for r in store.resources(Kind.NODE)] == []


def test_a_version_1_store_is_migrated_on_open(tmp_path):
    """A store created before the retry migration gains the column when opened, keeping its rows."""
    import sqlite3

    from reconciler.store.migrations import MIGRATIONS

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)")
    for statement in filter(str.strip, MIGRATIONS[0][1].split(";")):
        conn.execute(statement)
    conn.execute("INSERT INTO migrations VALUES (1, 'initial', 0)")
    conn.execute("INSERT INTO meta VALUES ('store_id', 'abcdefabcdef')")
    conn.execute("INSERT INTO resources (kind, name, uid, labels, spec, generation, created_at, updated_at) "
                 "VALUES ('Job', 'old', 'u1', '{}', '{\"template\": {\"image\": \"busybox\"}}', 1, 0, 0)")
    conn.commit()
    conn.close()
    store = Store(path)
    try:
        [job] = store.resources(Kind.JOB)
        assert job.name == "old" and job.retried_at is None and store.store_id == "abcdefabcdef"
        assert [r["version"] for r in store._rows("SELECT version FROM migrations")] == list(
            range(1, len(MIGRATIONS) + 1))
        assert len(bytes.fromhex(store.mark_key)) == 32  # an old store gets its container-mark secret too
    finally:
        store.close()


# -- services: revisions, undo, scale -----------------------------------------------------------


def web(image: str = "nginx:1", labels: dict | None = None, **spec):
    return manifest("Service", "web", labels, template={"image": image}, **spec)


def revs(store: Store, name: str = "web") -> list[tuple[int, str, str, float, str]]:
    """(revision, hash, image, created_at, cause) per revision, oldest first."""
    return [(r["revision"], r["hash"], r["template"]["template"]["image"], r["created_at"], r["cause"])
            for r in store.revisions(name)]


def hash_of(store: Store, name: str = "web") -> str:
    return template_hash(store.resource(Kind.SERVICE, name).model.spec)


def test_apply_records_a_revision_only_when_the_template_or_health_check_changes(store):
    """A Service's first apply is revision 1; replicas, labels or update changes add none; template and
    healthCheck changes each add the next revision, storing what makes the container."""
    store.apply([web()], now=10.0)
    h1 = hash_of(store)
    assert revs(store) == [(1, h1, "nginx:1", 10.0, "apply")]

    assert store.apply([web(replicas=3)], now=20.0) == [("service/web", "configured")]
    assert store.apply([web(labels={"team": "x"}, replicas=3, update={"maxSurge": 2})], now=25.0) == [
        ("service/web", "configured")]
    assert revs(store) == [(1, h1, "nginx:1", 10.0, "apply")]

    store.apply([web("nginx:2", replicas=3)], now=30.0)
    h2 = hash_of(store)
    store.apply([web("nginx:2", replicas=3, healthCheck={"command": ["true"], "retries": 5})], now=40.0)
    h3 = hash_of(store)
    assert len({h1, h2, h3}) == 3
    assert revs(store) == [(1, h1, "nginx:1", 10.0, "apply"), (2, h2, "nginx:2", 30.0, "apply"),
                           (3, h3, "nginx:2", 40.0, "apply")]
    assert store.revisions("web")[2]["template"]["healthCheck"]["retries"] == 5
    assert "healthCheck" not in store.revisions("web")[1]["template"]
    assert store.revisions("other") == []
    store.apply([job()])
    assert store._rows("SELECT count(*) AS n FROM revisions WHERE kind != 'Service'") == [{"n": 0}]


def test_reapplying_an_old_template_moves_it_to_the_top(store):
    """Applying an earlier template again renumbers that revision as the newest; no duplicate row is made."""
    store.apply([web("nginx:1")], now=10.0)
    h1 = hash_of(store)
    store.apply([web("nginx:2")], now=20.0)
    h2 = hash_of(store)

    store.apply([web("nginx:1")], now=30.0)

    assert revs(store) == [(2, h2, "nginx:2", 20.0, "apply"), (3, h1, "nginx:1", 30.0, "apply")]
    store.apply([web("nginx:1", replicas=2)], now=40.0)
    assert [r[0] for r in revs(store)] == [2, 3], "the top revision applied again keeps its number"


def test_undo_returns_to_the_previous_revision(store):
    """rollout undo puts the previous template back (keeping replicas), bumps generation and records the revision."""
    store.apply([web("nginx:1")], now=10.0)
    h1 = hash_of(store)
    store.apply([web("nginx:2", healthCheck={"command": "true"})], now=20.0)
    h2 = hash_of(store)
    store.scale("web", 4, now=25.0)
    generation = store.resource(Kind.SERVICE, "web").generation

    assert store.undo("web", now=30.0) == {"revision": 3, "hash": h1}

    res = store.resource(Kind.SERVICE, "web")
    assert (res.spec["template"]["image"], res.model.spec.healthCheck, res.spec["replicas"]) == ("nginx:1", None, 4)
    assert (res.generation, res.updated_at, hash_of(store)) == (generation + 1, 30.0, h1)
    assert revs(store) == [(2, h2, "nginx:2", 20.0, "apply"), (3, h1, "nginx:1", 30.0, "rollout undo")]

    assert store.undo("web", now=40.0) == {"revision": 4, "hash": h2}, "a second undo goes back again"
    res = store.resource(Kind.SERVICE, "web")
    assert (res.spec["template"]["image"], res.model.spec.healthCheck.command) == ("nginx:2", "true")


def test_reapplying_the_rolled_back_to_manifest_is_unchanged(store):
    """After an undo to a template without healthCheck, applying that manifest again changes nothing."""
    store.apply([web("nginx:1")], now=10.0)
    store.apply([web("nginx:2", healthCheck={"command": "true"})], now=20.0)
    store.undo("web", now=30.0)
    generation = store.resource(Kind.SERVICE, "web").generation

    assert store.apply([web("nginx:1")], now=40.0) == [("service/web", "unchanged")]
    assert store.resource(Kind.SERVICE, "web").generation == generation


def test_undo_to_a_revision_by_number_or_hash(store):
    """--to-revision picks a revision by number; Store.rollback also takes a template hash (autoRollback)."""
    for at, image in enumerate(["nginx:1", "nginx:2", "nginx:3"], start=1):
        store.apply([web(image)], now=float(at))
    h1, h2 = (r[1] for r in revs(store)[:2])

    assert store.undo("web", to=1, now=10.0) == {"revision": 4, "hash": h1}
    assert store.resource(Kind.SERVICE, "web").spec["template"]["image"] == "nginx:1"
    assert revs(store)[-1][2:] == ("nginx:1", 10.0, "rollout undo --to-revision 1")

    with store.transaction() as db:
        assert store.rollback(db, "web", h2, 20.0, "autoRollback") == {"revision": 5, "hash": h2}
    assert store.resource(Kind.SERVICE, "web").spec["template"]["image"] == "nginx:2"
    assert [(r[0], r[2], r[4]) for r in revs(store)] == [
        (3, "nginx:3", "apply"), (4, "nginx:1", "rollout undo --to-revision 1"), (5, "nginx:2", "autoRollback")]


def test_undo_errors_name_what_exists(store):
    """undo refuses with no earlier revision, an unknown revision, an unknown or deleting Service, changing nothing."""
    store.apply([web()], now=10.0)
    with pytest.raises(Conflict, match=r"^Service 'web' has no earlier revision to roll back to; "
                                       r"`brokerctl rollout history service/web` lists them$"):
        store.undo("web")
    store.apply([web("nginx:2")], now=20.0)
    with pytest.raises(NotFound, match=r"^Service 'web' has no revision 9; it has: 1, 2$"):
        store.undo("web", to=9)
    with pytest.raises(NotFound, match=r"^Service 'nope' not found; `brokerctl get services` lists them$"):
        store.undo("nope")
    assert store.resource(Kind.SERVICE, "web").generation == 2
    assert [r[0] for r in revs(store)] == [1, 2]

    insert(store, task("web", kind=Kind.SERVICE, phase=TaskPhase.RUNNING))
    assert store.mark_deleted(Kind.SERVICE, "web") == "deleting"
    with pytest.raises(Conflict, match="Service 'web' is being deleted"):
        store.undo("web")


def test_scale_returns_old_and_new_and_bumps_generation(store):
    """scale sets replicas and returns (old, new); generation moves only on a change; revisions are untouched."""
    store.apply([web()], now=10.0)

    assert store.scale("web", 3, now=20.0) == (1, 3)
    res = store.resource(Kind.SERVICE, "web")
    assert (res.spec["replicas"], res.generation, res.updated_at) == (3, 2, 20.0)
    assert store.scale("web", 3, now=30.0) == (3, 3)
    assert store.resource(Kind.SERVICE, "web").generation == 2
    assert store.scale("web", 0, now=40.0) == (3, 0)
    assert store.resource(Kind.SERVICE, "web").model.spec.replicas == 0
    assert [r[0] for r in revs(store)] == [1]
    with pytest.raises(NotFound, match="Service 'nope' not found"):
        store.scale("nope", 2)


def test_purge_removes_a_services_revisions(store):
    """Deleting a Service removes its revisions; applying the name again starts at revision 1."""
    store.apply([web("nginx:1"), manifest("Service", "api")], now=10.0)
    store.apply([web("nginx:2")], now=20.0)
    old_uid = store.resource(Kind.SERVICE, "web").uid

    assert store.mark_deleted(Kind.SERVICE, "web") == "deleted"

    assert store._rows("SELECT name FROM revisions") == [{"name": "api"}]
    store.apply([web("nginx:3")], now=30.0)
    assert store.resource(Kind.SERVICE, "web").uid != old_uid
    assert [(r[0], r[2]) for r in revs(store)] == [(1, "nginx:3")]


def test_task_template_hash_round_trips(store):
    """A task's template hash (migration 3) is stored and read back; it defaults to empty."""
    insert(store, task(template_hash="0123456789"), task(index=1))

    assert [t.template_hash for t in store.tasks()] == ["0123456789", ""]
    with store.transaction() as db:
        store.update_task(db, task(index=1).id, template_hash="abcdefabcd")
    assert store.task(task(index=1).id).template_hash == "abcdefabcd"


# -- nodes: cordon, drain -------------------------------------------------------------------


def node_row(store: Store, name: str = "a") -> tuple:
    r = store.resource(Kind.NODE, name)
    return r.spec["unschedulable"], r.drain_deadline, r.generation, r.updated_at


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param([  # (on, drain_timeout, now) -> (changed, unschedulable, drain_deadline, generation, updated_at)
            ((True, None, 20.0), (True, True, None, 2, 20.0)),  # cordon
            ((True, None, 30.0), (False, True, None, 2, 20.0)),  # again: nothing to do
            ((False, None, 40.0), (True, False, None, 3, 40.0)),  # uncordon
            ((False, None, 50.0), (False, False, None, 3, 40.0)),  # again: nothing to do
        ], id="cordon-uncordon"),
        pytest.param([
            ((True, 60.0, 20.0), (True, True, 80.0, 2, 20.0)),  # drain a schedulable node
            ((True, None, 30.0), (False, True, 80.0, 2, 20.0)),  # cordon keeps the drain going
            ((True, 5.0, 40.0), (True, True, 45.0, 2, 40.0)),  # drain again: a new deadline, no generation bump
            ((False, None, 50.0), (True, False, None, 3, 50.0)),  # uncordon ends the drain
        ], id="drain-redrain-uncordon"),
        pytest.param([
            ((True, None, 20.0), (True, True, None, 2, 20.0)),
            ((True, 0.0, 30.0), (True, True, 30.0, 2, 30.0)),  # drain a cordoned node: deadline only
            ((False, None, 40.0), (True, False, None, 3, 40.0)),
        ], id="cordon-then-drain"),
    ],
)
def test_cordon_and_drain_report_changes_and_bump_generation_only_when_unschedulable_flips(store, steps):
    """cordon returns whether anything changed; generation moves only when unschedulable flips; drain sets now + timeout."""
    store.apply([manifest("Node", "a", labels={"zone": "x"}, slots={"default": 2})], now=10.0)

    for (on, timeout, now), (changed, *row) in steps:
        assert store.cordon("a", on, drain_timeout=timeout, now=now) is changed
        assert node_row(store) == tuple(row)

    node = store.resource(Kind.NODE, "a")
    assert (node.labels, node.spec["slots"], node.spec["address"]) == ({"zone": "x"}, {"default": 2},
                                                                       "tcp://127.0.0.1:2375")


def test_drain_deadline_is_kept_in_the_store(store, db_url):
    """A drain deadline (migration 4) is read back by a new connection and by resources()."""
    store.apply([manifest("Node", "a"), manifest("Node", "b")], now=10.0)
    store.cordon("a", True, drain_timeout=300.0, now=100.0)

    again = Store(db_url)
    try:
        assert [(r.name, r.drain_deadline) for r in again.resources(Kind.NODE)] == [("a", 400.0), ("b", None)]
        assert again.resource(Kind.NODE, "a").model.spec.unschedulable is True
    finally:
        again.close()


@pytest.mark.parametrize("on, timeout", [(True, None), (False, None), (True, 10.0)])
def test_cordon_of_an_unknown_node_names_it_and_how_to_list_nodes(store, on, timeout):
    """Cordoning, uncordoning or draining a node that does not exist raises NotFound saying how to list nodes."""
    store.apply([job("a")])  # a Job of that name is not a Node

    with pytest.raises(NotFound, match=r"^Node 'a' not found; `brokerctl get nodes` lists them$"):
        store.cordon("a", on, drain_timeout=timeout)
    assert store.resource(Kind.JOB, "a").generation == 1


def test_tasks_on_lists_the_active_tasks_bound_to_a_node(store):
    """tasks_on gives a node's Pending and Running tasks in creation order, none that are over or elsewhere."""
    rows = [task("j", 0, phase=TaskPhase.RUNNING, node="a", created_at=5.0),
            task("j", 1, phase=TaskPhase.PENDING, node="a", created_at=3.0),
            task("j", 2, phase=TaskPhase.PENDING, created_at=1.0),  # not placed
            task("j", 3, phase=TaskPhase.RUNNING, node="b", created_at=2.0),
            task("web", 0, kind=Kind.SERVICE, phase=TaskPhase.RUNNING, node="a", created_at=4.0)]
    rows += [task("old", i, phase=phase, node="a", created_at=0.5)
             for i, phase in enumerate([TaskPhase.SUCCEEDED, TaskPhase.FAILED, TaskPhase.LOST, TaskPhase.STOPPED])]
    insert(store, *rows)

    assert [t.id for t in store.tasks_on("a")] == [rows[1].id, rows[4].id, rows[0].id]
    assert store.tasks_on("a")[0] == rows[1]
    assert [t.id for t in store.tasks_on("b")] == [rows[3].id]
    assert store.tasks_on("nowhere") == []


def test_gc_paused_restores_the_collector_state():
    """Bulk reads pause the cyclic collector and always give it back as it was, even on error."""
    import gc

    from reconciler.store import gc_paused

    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with gc_paused():
            assert not gc.isenabled()
            raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # a caller that had it off keeps it off
    finally:
        gc.enable()


# -- the store file: private modes, created only on purpose ------------------------------------------


def mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def test_a_new_store_is_private_to_its_owner(tmp_path):
    """The store holds env values and task output: a new file is 0600 (and so are SQLite's -wal and -shm
    files), and each directory the store creates is 0700, whatever the umask."""
    (tmp_path / "pre").mkdir()
    os.chmod(tmp_path / "pre", 0o755)
    path = tmp_path / "pre" / "a" / "b" / "broker.db"
    old = os.umask(0o022)
    try:
        s = Store(path)
        s.apply([job()])
    finally:
        os.umask(old)
    try:
        assert s.created
        assert (mode(path), mode(f"{path}-wal"), mode(f"{path}-shm")) == (0o600, 0o600, 0o600)
        assert (mode(path.parent.parent), mode(path.parent)) == (0o700, 0o700)
        assert mode(tmp_path / "pre") == 0o755  # a directory that existed is left alone
    finally:
        s.close()
    again = Store(path, create=False)
    assert not again.created
    again.close()


def test_an_existing_store_keeps_its_mode(tmp_path):
    """A store file made readable on purpose (say, for a group) is not tightened behind the user's back."""
    path = tmp_path / "shared.db"
    Store(path).close()
    os.chmod(path, 0o640)
    s = Store(path)
    s.apply([job()])
    s.close()
    assert mode(path) == 0o640 and not s.created


@pytest.mark.parametrize("where", ["file", "directory"])
def test_a_missing_store_is_an_error_unless_create(tmp_path, where):
    """create=False: a missing file or directory is a StoreError naming the path and the fix; nothing is created."""
    path = tmp_path / "broker.db" if where == "file" else tmp_path / "no" / "such" / "broker.db"
    with pytest.raises(StoreError) as info:
        Store(path, create=False)
    why = "the file does not exist" if where == "file" else f"directory {path.parent} does not exist"
    assert str(info.value) == (f"no store at {path}: {why}. `brokerctl apply`, `sync`, `run` and `controller` "
                               "create one; or pass --db PATH (or set BROKER_DB) to use an existing store")
    assert list(tmp_path.iterdir()) == []


# -- task order -----------------------------------------------------------------------------------


def test_tasks_of_one_pass_sort_by_owner_index_and_attempt_as_numbers(store):
    """Tasks created in one pass share created_at; they sort by index as a number (2 before 10), not by id text."""
    insert(store, *[task(owner=o, index=i, attempt=a, created_at=100.0)
                    for o, i, a in [("job-b", 10, 1), ("job-b", 2, 1), ("job-a", 10, 2), ("job-a", 10, 1),
                                    ("job-a", 9, 1)]])
    insert(store, task(owner="job-a", index=1, created_at=99.0))

    assert [(t.owner_name, t.index, t.attempt) for t in store.tasks()] == [
        ("job-a", 1, 1), ("job-a", 9, 1), ("job-a", 10, 1), ("job-a", 10, 2), ("job-b", 2, 1), ("job-b", 10, 1)]


# -- a Job's template cannot change ---------------------------------------------------------------


def test_a_jobs_template_cannot_change_while_it_exists(store):
    """Re-applying a Job with another template is refused naming the Job, the changed fields and the fix;
    nothing of that call is written (not even the other resources in it)."""
    store.apply([job(completions=2, template={"image": "busybox", "command": ["echo", "one"]})], now=10.0)
    before = store.resource(Kind.JOB, "job")

    changed = job(completions=3, template={"image": "busybox:1.36", "command": ["echo", "two"]})
    with pytest.raises(Conflict) as info:
        store.apply([manifest("Node", "n1"), changed], now=20.0)
    assert str(info.value) == (
        "Job 'job': spec.template cannot change while the Job exists (spec.template.command, spec.template.image "
        "changed); delete it (`brokerctl delete job job`) and apply it again, or apply it under a new name")
    assert store.resource(Kind.JOB, "job") == before
    assert store.resources(Kind.NODE) == []


def test_a_jobs_other_fields_may_change_and_spelled_out_defaults_are_no_change(store):
    """parallelism, suspend, completions and labels still change; a template equal up to defaults is unchanged."""
    store.apply([job(template={"image": "busybox"})], now=10.0)
    assert store.apply([job(parallelism=2, suspend=True, completions=4, labels={"a": "b"},
                            template={"image": "busybox", "env": {}, "mounts": [], "network": None})],
                       now=20.0) == [("job/job", "configured")]
    spec = store.resource(Kind.JOB, "job").spec
    assert (spec["parallelism"], spec["suspend"], spec["completions"]) == (2, True, 4)


def test_a_finished_jobs_template_cannot_change_either(store):
    """Kubernetes semantics: a finished Job is still that Job; a new template needs a new Job."""
    store.apply([job()], now=10.0)
    with store.transaction() as db:
        store.set_status(db, Kind.JOB, "job", {"phase": "Complete", "succeeded": 1})
    with pytest.raises(Conflict, match="spec.template cannot change while the Job exists"):
        store.apply([job(template={"image": "busybox", "command": ["true"]})])


def test_a_services_template_still_rolls(store):
    """Services are not Jobs: a new template is a new revision (a rolling update), as before."""
    store.apply([web("nginx:1")], now=10.0)
    assert store.apply([web("nginx:2")], now=20.0) == [("service/web", "configured")]
    assert [r[0] for r in revs(store)] == [1, 2]


# -- events limit, scale cap -------------------------------------------------------------------------


def test_events_without_a_limit_are_all_of_them(store):
    """limit=None returns every event, oldest first."""
    with store.transaction() as db:
        for i in range(250):
            store.add_event(db, "Job", "a", f"R{i}", "m", ts=float(i))
    assert len(store.events()) == 200 and len(store.events(limit=None)) == 250
    assert store.events(limit=None)[0]["reason"] == "R0"


def test_scale_is_capped_like_replicas_at_apply(store):
    """`scale` cannot go past the cap that `replicas` has in a manifest."""
    from reconciler.errors import UsageError

    store.apply([web()], now=10.0)
    assert store.scale("web", 1_000_000) == (1, 1_000_000)
    with pytest.raises(UsageError, match="a Service has 0 to 1,000,000 replicas"):
        store.scale("web", 1_000_001)
    assert store.resource(Kind.SERVICE, "web").spec["replicas"] == 1_000_000


def test_each_store_has_its_own_container_mark_secret(tmp_path):
    """A new store gets 32 random bytes (hex) for container marks, kept across opens, different per store."""
    first, other = Store(tmp_path / "a.db"), Store(tmp_path / "b.db")
    try:
        assert len(bytes.fromhex(first.mark_key)) == 32
        assert first.mark_key != other.mark_key
        again = Store(tmp_path / "a.db")
        assert again.mark_key == first.mark_key
        again.close()
    finally:
        first.close()
        other.close()


# -- both backends: wake-ups and the write lock --------------------------------------------------


def test_a_commit_by_another_connection_wakes_a_subscriber(db_url):
    """subscribe(): another connection's commit calls wake at once and moves version(); the subscriber's
    own connection (nudge off, as the controller's) wakes nobody (SQLite: a datagram; PostgreSQL: NOTIFY)."""
    writer, own = Store(db_url), Store(db_url)
    own.nudge = False
    woke = threading.Event()
    subscription = own.subscribe(woke.set)
    try:
        wait_for(lambda: subscription.listening, 10, "the subscription to listen", 0.02)
        woke.clear()  # PostgreSQL: the first LISTEN counts as a change
        before = subscription.version()
        own.apply([job("mine")])
        assert not woke.wait(0.3) and subscription.version() == before

        writer.apply([job("theirs")])

        assert woke.wait(2.0)
        assert subscription.version() != before
    finally:
        subscription.stop()
        writer.close()
        own.close()


def test_a_postgresql_subscription_connects_on_its_thread_and_counts_that_as_a_change():
    """subscribe() returns before its LISTEN connection is made, so a controller that just took over
    passes at once; once it listens, the change it counts wakes the controller, which passes again
    for whatever was committed before the LISTEN."""
    from reconciler.store.postgres import PgSubscription

    answer, woke = threading.Event(), threading.Event()

    class Connection:
        def execute(self, statement):
            pass

        def notifies(self, timeout):
            time.sleep(0.05)
            return iter(())

        def close(self):
            pass

    def connect():
        answer.wait(10)  # a server slow to answer
        return Connection()

    subscription = PgSubscription(connect, "brokerctl_x", woke.set)
    try:
        assert not subscription.listening and subscription.version() == 0 and not woke.is_set()
        answer.set()
        assert woke.wait(5)
        wait_for(lambda: subscription.listening, 10, "the subscription to listen", 0.02)
        assert subscription.version() == 1
    finally:
        subscription.stop()
        answer.set()


def test_writes_are_serialised_so_a_read_then_write_loses_no_update(db_url):
    """Four connections each add 1 to a counter ten times, reading it and writing it back in one transaction
    with a pause between: every transaction holds the write lock from its start (SQLite: BEGIN IMMEDIATE;
    PostgreSQL: an advisory lock, whose absence under READ COMMITTED would lose updates), so none is lost."""
    from reconciler.store.db import fetch_one, insert as insert_row

    first = Store(db_url)
    with first.transaction() as db:
        insert_row(db, "meta", {"key": "counter", "value": "0"})
    errors = []

    def add(times: int) -> None:
        s = Store(db_url)
        try:
            for _ in range(times):
                with s.transaction() as db:
                    n = int(fetch_one(db, "SELECT value FROM meta WHERE key = 'counter'")["value"])
                    time.sleep(0.002)
                    db.execute("UPDATE meta SET value = ? WHERE key = 'counter'", [str(n + 1)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=add, args=(10,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        assert first._rows("SELECT value FROM meta WHERE key = 'counter'") == [{"value": "40"}]
    finally:
        first.close()


def test_a_write_gives_up_after_the_lock_timeout_and_reads_do_not_wait(store, other):
    """While another connection holds a write transaction, reads go on, release_lease(wait=) gives up
    (False) and a write past the busy timeout is a LockTimeout naming the store; once it ends, writes go on."""
    from reconciler.store import LockTimeout

    store.apply([job()])
    store.claim_lease("me", 10)
    holding, done = threading.Event(), threading.Event()

    def hold() -> None:
        with other.transaction():
            holding.set()
            done.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(5)
        began = time.monotonic()
        assert [r.name for r in store.resources(Kind.JOB)] == ["job"]  # a read takes no lock
        assert store.release_lease("me", wait=0.3) is False
        store.set_busy_timeout(300)
        with pytest.raises(LockTimeout, match=rf"^store {re.escape(str(store.path))} is busy: another process "
                                              r"held its write lock for 0\.3s; try again$"):
            store.apply([job("late")])
        assert time.monotonic() - began < 3.0
    finally:
        done.set()
        holder.join(10)
    store.apply([job("late")])
    assert store.release_lease("me", wait=0.3) is True and store.lease() is None
    assert [r.name for r in store.resources(Kind.JOB)] == ["job", "late"]


def test_text_sorts_bytewise_on_both_backends(db_url, request):
    """Names sort as SQLite sorts them (bytes), whatever the locale: on PostgreSQL the columns are COLLATE "C",
    so a database whose locale ignores punctuation (ICU en-US, alternate=shifted) still lists a-10 before a1."""
    if not isinstance(db_url, Path):  # a database of its own, with a locale that sorts otherwise
        databases = request.getfixturevalue("pg_databases")
        name, db_url = databases.create("LOCALE_PROVIDER icu ICU_LOCALE 'en-US-u-ka-shifted' LOCALE 'C.UTF-8' "
                                        "TEMPLATE template0")
        request.addfinalizer(lambda: databases.drop(name))
    s = Store(db_url)
    try:
        names = ["a1", "a-10", "b", "a-2", "a"]
        s.apply([job(n) for n in names])
        assert [r.name for r in s.resources(Kind.JOB)] == sorted(names) == ["a", "a-10", "a-2", "a1", "b"]
    finally:
        s.close()


# -- locations ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("given, backend, target, display", [
    ("/s/broker.db", "sqlite", Path("/s/broker.db"), Path("/s/broker.db")),
    ("rel/broker.db", "sqlite", Path("rel/broker.db"), Path("rel/broker.db")),
    ("sqlite:////s/broker.db", "sqlite", Path("/s/broker.db"), Path("/s/broker.db")),
    ("sqlite:///rel.db", "sqlite", Path("rel.db"), Path("rel.db")),
    ("postgresql://bob:secret@db.example:5432/broker", "postgresql", "postgresql://bob:secret@db.example:5432/broker",
     "postgresql://bob@db.example:5432/broker"),
    ("postgres://bob@db.example/broker?password=secret&sslmode=require", "postgresql",
     "postgres://bob@db.example/broker?password=secret&sslmode=require", "postgres://bob@db.example/broker?sslmode=require"),
])
def test_a_location_names_its_backend_and_shows_no_password(given, backend, target, display):
    from reconciler.store.location import Location

    where = Location.parse(given)
    assert (where.backend, where.target, where.display) == (backend, target, display)


@pytest.mark.parametrize("given, message", [
    ("mysql://u@h/db", "store 'mysql://u@h/db': unknown URL scheme mysql://; use a file path, sqlite:///PATH or "
                       "postgresql://USER@HOST:PORT/DB"),
    ("sqlite://broker.db", "store URL 'sqlite://broker.db': write sqlite:///PATH (sqlite:////abs/path for an "
                           "absolute path)"),
])
def test_a_location_of_no_known_form_is_a_usage_error(given, message):
    from reconciler.errors import UsageError
    from reconciler.store.location import Location

    with pytest.raises(UsageError) as info:
        Location.parse(given)
    assert str(info.value) == message


def test_placeholders_are_translated_for_postgresql_outside_quoted_text_only():
    from reconciler.store.postgres import translate

    assert translate("SELECT a FROM t WHERE b = ? AND c IN ('?', 'it''s 100%') AND d % 2 = ?") == (
        "SELECT a FROM t WHERE b = %s AND c IN ('?', 'it''s 100%') AND d %% 2 = %s")


# -- PostgreSQL's own ----------------------------------------------------------------------------------


def _pg_columns(url: str) -> dict[str, list[tuple[str, str, str, str]]]:
    """table -> (column, type, collation, identity) in column order, as PostgreSQL reports them."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name, data_type, coalesce(collation_name, ''), is_identity "
            "FROM information_schema.columns WHERE table_schema = current_schema() "
            "ORDER BY table_name, ordinal_position").fetchall()
    columns: dict[str, list] = {}
    for table, *column in rows:
        columns.setdefault(table, []).append(tuple(column))
    return columns


def test_both_backends_have_the_same_tables_and_columns(tmp_path, pg_url):
    """The migrations build the same tables with the same columns in the same order on both; PostgreSQL's
    types are SQLite's translated (64-bit integers, double precision, bytea, an identity id, C-collated text)."""
    import sqlite3

    Store(tmp_path / "s.db").close()
    Store(pg_url).close()
    conn = sqlite3.connect(tmp_path / "s.db")
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                         "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    on_sqlite = {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in tables}
    conn.close()

    on_postgresql = _pg_columns(pg_url)

    # The change counter is a one-row table on SQLite and a sequence on PostgreSQL (nextval in the trigger).
    assert on_sqlite.pop("store_rev") == ["id", "value"]
    import psycopg

    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.sequences "
                            "WHERE sequence_name = 'store_rev'").fetchone()[0] == 1
    assert {t: [c[0] for c in cols] for t, cols in on_postgresql.items()} == on_sqlite
    types = {(t, c[0]): c[1:] for t, cols in on_postgresql.items() for c in cols}
    assert types[("tasks", "created_at")] == ("double precision", "", "NO")
    assert types[("tasks", "idx")] == ("bigint", "", "NO")
    assert types[("tasks", "id")] == ("text", "C", "NO")
    assert types[("task_logs", "output")] == ("bytea", "", "NO")
    assert types[("events", "id")] == ("bigint", "", "YES")
    assert {v[1] for v in types.values() if v[0] == "text"} == {"C"}


def test_an_empty_database_is_no_store_unless_create(pg_url):
    """create=False on a database without a store is the missing-store error (naming the URL and the fix),
    and creates nothing; apply's create=True makes the store there, and says so."""
    with pytest.raises(StoreError) as info:
        Store(pg_url, create=False)
    assert str(info.value) == (f"no store at {pg_url}: the database holds no brokerctl store. `brokerctl apply`, "
                               "`sync`, `run` and `controller` create one; or pass --db PATH (or set BROKER_DB) to "
                               "use an existing store")
    assert _pg_columns(pg_url) == {}

    made = Store(pg_url)
    again = Store(pg_url, create=False)
    try:
        assert made.created and not again.created and again.store_id == made.store_id
    finally:
        made.close()
        again.close()


def test_a_version_1_postgresql_store_is_migrated_on_open(pg_url):
    """A PostgreSQL store made at version 1 gains every later migration when opened, keeping its rows: the
    migrations run on PostgreSQL from any version, not only on a new database."""
    import psycopg

    from reconciler.store.migrations import MIGRATIONS, ddl

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(ddl("postgresql", "CREATE TABLE migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                                       "applied_at REAL NOT NULL)")[0])
        for statement in ddl("postgresql", MIGRATIONS[0][1]):
            conn.execute(statement)
        conn.execute("INSERT INTO migrations VALUES (1, 'initial', 0)")
        conn.execute("INSERT INTO meta VALUES ('store_id', 'abcdefabcdef')")
        conn.execute("INSERT INTO resources (kind, name, uid, labels, spec, generation, created_at, updated_at) "
                     "VALUES ('Job', 'old', 'u1', '{}', '{\"template\": {\"image\": \"busybox\"}}', 1, 0, 0)")
    store = Store(pg_url)
    try:
        [old] = store.resources(Kind.JOB)
        assert old.name == "old" and old.retried_at is None and store.store_id == "abcdefabcdef"
        assert [r["version"] for r in store._rows("SELECT version FROM migrations ORDER BY version")] == list(
            range(1, len(MIGRATIONS) + 1))
        assert len(bytes.fromhex(store.mark_key)) == 32
    finally:
        store.close()


def test_a_postgresql_store_outlives_a_restart_of_its_server(pg_cluster):
    """The server restarts under an open store: the next read and the next write reconnect and succeed, and
    the subscription listens again, counting the gap as a change (commits during it went unheard)."""
    import pgcluster

    cluster = pgcluster.start_cluster("brokerctl", fast=True)  # a cluster of its own: the session's stays up
    store, woke = None, threading.Event()
    try:
        store = Store(cluster.url)
        subscription = store.subscribe(woke.set)
        wait_for(lambda: subscription.listening, 10, "the subscription to listen", 0.02)
        store.apply([job("before")])
        before = subscription.version()

        cluster.restart()
        assert [r.name for r in store.resources(Kind.JOB)] == ["before"]  # a read on a broken connection

        cluster.restart()
        store.apply([job("after")])  # a transaction begun on a broken connection
        assert [r.name for r in store.resources(Kind.JOB)] == ["after", "before"]
        deadline = time.monotonic() + 10
        while not (subscription.listening and subscription.version() != before):
            assert time.monotonic() < deadline, "the subscription did not listen again"
            time.sleep(0.05)
        woke.clear()
        writer = Store(cluster.url)
        writer.apply([job("third")])
        writer.close()
        assert woke.wait(2.0)
        subscription.stop()
    finally:
        if store is not None:
            store.close()
        cluster.remove()


# -- namespaces ---------------------------------------------------------------------------------


def in_ns(model, namespace: str):
    """``model`` put into ``namespace``, as the loader does for `-n NAMESPACE`."""
    return model.in_namespace(namespace)


def namespace(name: str, **spec):
    return _RESOURCE.validate_python({"apiVersion": "broker/v1", "kind": "Namespace", "metadata": {"name": name},
                                      "spec": spec})


def test_a_new_store_has_the_default_namespace_stored_as_an_empty_namespace_manifest(store):
    """`default` always exists; applying an empty Namespace named default is `unchanged`."""
    [ns] = store.resources(Kind.NAMESPACE)
    assert (ns.name, ns.namespace, ns.deleted_at) == ("default", "", None)
    assert store.apply([namespace("default")]) == [("namespace/default", "unchanged")]


def test_one_name_in_two_namespaces_is_two_resources(store):
    """Identity is (kind, namespace, name): each namespace's Job/nightly has its own row, uid, tasks and
    status; reading or deleting one leaves the other as it was."""
    store.apply([namespace("team-a"), namespace("team-b")])
    assert store.apply([in_ns(job("nightly", completions=2), "team-a"), in_ns(job("nightly"), "team-b")]) == [
        ("team-a/job/nightly", "created"), ("team-b/job/nightly", "created")]
    a, b = (store.resource(Kind.JOB, "nightly", namespace=ns) for ns in ("team-a", "team-b"))
    assert (a.namespace, a.spec["completions"], b.namespace, b.spec["completions"]) == ("team-a", 2, "team-b", 1)
    assert a.uid[:5] != b.uid[:5], "task ids carry the uid's first five digits"
    with pytest.raises(NotFound, match=r"^Job 'nightly' not found in namespace 'team-x'; `brokerctl get jobs -n "
                                       r"team-x` lists them$"):
        store.resource(Kind.JOB, "nightly", namespace="team-x")
    with pytest.raises(NotFound, match=r"^Job 'nightly' not found; `brokerctl get jobs` lists them$"):
        store.resource(Kind.JOB, "nightly")

    insert(store, replace(task("nightly"), id="nightly-aaaaa-0-1", namespace="team-a", phase=TaskPhase.SUCCEEDED),
           replace(task("nightly"), id="nightly-bbbbb-0-1", namespace="team-b", phase=TaskPhase.RUNNING))
    assert [t.id for t in store.tasks(namespace="team-a")] == ["nightly-aaaaa-0-1"]
    assert [t.id for t in store.tasks((Kind.JOB, "nightly"), namespace="team-b")] == ["nightly-bbbbb-0-1"]
    assert [t.namespace for t in store.tasks()] == ["team-a", "team-b"], "no namespace: every namespace's"
    with store.transaction() as db:
        store.set_status(db, Kind.JOB, "nightly", {"phase": "Running"}, namespace="team-b")
    assert store.resource(Kind.JOB, "nightly", namespace="team-a").status == {}

    assert store.mark_deleted(Kind.JOB, "nightly", namespace="team-a") == "deleted"
    assert [t.id for t in store.tasks()] == ["nightly-bbbbb-0-1"]
    assert store.resource(Kind.JOB, "nightly", namespace="team-b").status == {"phase": "Running"}
    assert [(r.namespace, r.name) for r in store.resources(Kind.JOB)] == [("team-b", "nightly")]
    assert [r.ref for r in store.resources(namespace="team-b")] == [
        "Job/nightly", "Namespace/default", "Namespace/team-a", "Namespace/team-b"], \
        "one namespace's resources, with the cluster-scoped ones"


def test_applying_into_a_missing_namespace_names_each_resource_and_writes_nothing(store):
    where = ["job.yaml: document 2 (Job/nightly)", "job.yaml: document 3 (Service/web)"]
    with pytest.raises(NotFound) as info:
        store.apply([in_ns(job("ok"), "default"), in_ns(job("nightly"), "team-x"),
                     in_ns(manifest("Service", "web"), "team-y")], where=["job.yaml: document 1 (Job/ok)", *where])
    assert str(info.value) == (
        "job.yaml: document 2 (Job/nightly): namespace 'team-x' does not exist; apply a Namespace named team-x first "
        "(kind: Namespace), or use -n/--namespace\n"
        "job.yaml: document 3 (Service/web): namespace 'team-y' does not exist; apply a Namespace named team-y first "
        "(kind: Namespace), or use -n/--namespace")
    assert (info.value.step, info.value.about) == ("create-namespace", {"kind": "Namespace", "name": "team-x"})
    assert store.resources(Kind.JOB) == [], "all or none"
    with pytest.raises(NotFound, match=r"^Job/nightly: namespace 'team-x' does not exist; "):
        store.apply([in_ns(job("nightly"), "team-x")])

    # The Namespace may come in the same call, after what goes into it.
    assert store.apply([in_ns(job("nightly"), "team-x"), namespace("team-x")]) == [
        ("team-x/job/nightly", "created"), ("namespace/team-x", "created")]


def test_deleting_a_namespace_deletes_what_is_in_it_and_refuses_new_resources_meanwhile(store):
    store.apply([namespace("team-b"), in_ns(job("done"), "team-b"), in_ns(job("busy"), "team-b"), job("busy")])
    insert(store, replace(task("busy"), id="busy-bbbbb-0-1", namespace="team-b", phase=TaskPhase.RUNNING,
                          node="a", container_id="c1"),
           replace(task("busy"), id="busy-ddddd-0-1", phase=TaskPhase.RUNNING, node="a", container_id="c2"))

    assert store.mark_deleted(Kind.NAMESPACE, "team-b", now=50.0) == "deleting (1 job stopping first)"
    with pytest.raises(NotFound):
        store.resource(Kind.JOB, "done", namespace="team-b")  # nothing could run: gone at once
    assert store.resource(Kind.JOB, "busy", namespace="team-b").deleted_at == 50.0
    assert store.resource(Kind.NAMESPACE, "team-b").deleted_at == 50.0
    assert store.resource(Kind.JOB, "busy").deleted_at is None, "the default namespace's busy is untouched"
    with pytest.raises(Conflict, match=r"^Job/new: namespace 'team-b' is being deleted; wait until "):
        store.apply([in_ns(job("new"), "team-b")])
    assert store.mark_deleted(Kind.NAMESPACE, "team-b", now=60.0) == "still being deleted (1 job still stopping)"
    assert store.resource(Kind.NAMESPACE, "team-b").deleted_at == 50.0

    # What the controller does once the container is gone: purge the Job, then the empty Namespace.
    store.purge(Kind.JOB, "busy", namespace="team-b")
    assert store.mark_deleted(Kind.NAMESPACE, "team-b", now=70.0) == "deleted"
    assert [r.name for r in store.resources(Kind.NAMESPACE)] == ["default"]
    assert [t.id for t in store.tasks()] == ["busy-ddddd-0-1"]


def test_force_deletes_a_namespace_and_everything_in_it_at_once(store):
    store.apply([namespace("team-b"), in_ns(job("busy"), "team-b")])
    insert(store, replace(task("busy"), namespace="team-b", phase=TaskPhase.RUNNING, node="a", container_id="c1"))
    assert store.mark_deleted(Kind.NAMESPACE, "team-b", force=True) == "deleted"
    assert store.resources(Kind.JOB) == [] and store.tasks() == []


def test_the_default_namespace_cannot_be_deleted(store):
    with pytest.raises(Conflict, match="^namespace 'default' cannot be deleted: it is where resources go when "
                                       "none is named; delete what is in it instead$"):
        store.mark_deleted(Kind.NAMESPACE, "default")
    assert [r.name for r in store.resources(Kind.NAMESPACE)] == ["default"]


def test_events_revisions_scale_and_retry_keep_to_their_namespace(store):
    """Each noun takes the namespace: two Services named web roll, scale and undo on their own; events of
    one namespace's Job are not another's; cluster-scoped events have namespace ''."""
    store.apply([namespace("team-a"), in_ns(web("nginx:1"), "team-a"), web("nginx:1")], now=1.0)
    store.apply([in_ns(web("nginx:2"), "team-a")], now=2.0)
    assert [r["revision"] for r in store.revisions("web", namespace="team-a")] == [1, 2]
    assert [r["revision"] for r in store.revisions("web")] == [1]
    store.undo("web", namespace="team-a", now=3.0)
    assert store.resource(Kind.SERVICE, "web", namespace="team-a").spec["template"]["image"] == "nginx:1"
    assert store.scale("web", 3, namespace="team-a") == (1, 3)
    assert store.resource(Kind.SERVICE, "web").spec["replicas"] == 1
    with pytest.raises(NotFound, match="Service 'web' not found in namespace 'team-b'"):
        store.scale("web", 2, namespace="team-b")

    with store.transaction() as db:
        store.add_event(db, "Job", "x", "Started", "in a", namespace="team-a")
        store.add_event(db, "Job", "x", "Started", "in default")
        store.add_event(db, "Node", "h1", "NodeReady", "ready", namespace="team-a")  # ignored: a Node has none
    assert [e["message"] for e in store.events("Job", "x", namespace="team-a")] == ["in a"]
    assert [e["message"] for e in store.events("Job", "x")] == ["in default"]
    assert [(e["namespace"], e["message"]) for e in store.events(namespaces=["team-a", ""])] == [
        ("team-a", "in a"), ("", "ready")]

    store.apply([in_ns(job("j"), "team-a")])
    with store.transaction() as db:
        store.set_status(db, Kind.JOB, "j", {"phase": "Failed"}, namespace="team-a")
    with pytest.raises(NotFound, match="Job 'j' not found; "):
        store.retry_job("j")
    store.retry_job("j", now=9.0, namespace="team-a")
    assert store.resource(Kind.JOB, "j", namespace="team-a").retried_at == 9.0


def test_a_new_resource_never_shares_the_uid_digits_in_task_ids_with_one_of_the_same_name(store, monkeypatch):
    """Task ids are <name>-<uid[:5]>-<index>-<attempt>: two Job/nightly in two namespaces must not
    make the same ids, so a uid whose first five digits another nightly has is drawn again."""
    import uuid

    store.apply([namespace("team-a")])
    draws = iter(["aaaaa11111", "aaaaa22222", "bbbbb33333"])
    monkeypatch.setattr(uuid, "uuid4", lambda: type("U", (), {"hex": next(draws) + "0" * 22})())
    store.apply([in_ns(job("nightly"), "team-a")])  # draws aaaaa11111: no other nightly yet
    store.apply([job("nightly")])  # draws aaaaa22222, taken by team-a's nightly, then bbbbb33333
    assert store.resource(Kind.JOB, "nightly", namespace="team-a").uid == "aaaaa11111"
    assert store.resource(Kind.JOB, "nightly").uid == "bbbbb33333"


def old_store(path, migrations):
    """A store made by an earlier brokerctl: ``migrations`` (a prefix of MIGRATIONS) applied by their own
    runner, with the meta rows they made."""
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)")
    for version, (name, sql) in enumerate(migrations, start=1):
        for statement in filter(str.strip, sql.split(";")):
            conn.execute(statement)
        conn.execute("INSERT INTO migrations VALUES (?, ?, 0)", [version, name])
    conn.execute("INSERT INTO meta VALUES ('store_id', 'abcdefabcdef')")
    conn.execute("INSERT INTO meta VALUES ('mark_key', ?)", ["ab" * 32])
    return conn


def test_a_store_of_the_previous_schema_migrates_with_everything_in_default(tmp_path):
    """The schema before namespaces (every migration up to `container marks`), with a Node, a Job and a
    Service, their tasks, events and revisions: opened by this code, the Job and the Service are in
    `default` and the Node is cluster-scoped, the task rows are intact (ids, containers, nodes, phases),
    the `default` Namespace exists, and the store keeps its id and mark secret."""
    from reconciler.store.migrations import MIGRATIONS

    names = [name for name, _ in MIGRATIONS]
    previous = MIGRATIONS[:names.index("namespaces")]
    assert [name for name, _ in previous][-1] == "container marks"
    path = tmp_path / "old.db"
    conn = old_store(path, previous)
    spec = '{"template": {"image": "busybox"}}'
    for kind, name, uid in [("Job", "nightly", "aaaaa00001"), ("Service", "web", "bbbbb00002"),
                            ("Node", "h1", "ccccc00003")]:
        conn.execute("INSERT INTO resources (kind, name, uid, labels, spec, generation, created_at, updated_at, "
                     "status, source) VALUES (?, ?, ?, '{\"team\": \"x\"}', ?, 3, 1.0, 2.0, '{\"phase\": \"Running\"}', "
                     "'/srv/manifests')", [kind, name, uid, '{"address": "tcp://127.0.0.1:2375"}' if kind == "Node"
                                          else spec])
    conn.execute("INSERT INTO tasks (id, owner_kind, owner_name, owner_uid, idx, attempt, phase, node, container_id, "
                 "created_at, started_at, labels, template_hash) VALUES ('web-bbbbb-0-1', 'Service', 'web', "
                 "'bbbbb00002', 0, 1, 'Running', 'h1', 'c0ffee', 5.0, 6.0, '{\"team\": \"x\"}', '0123456789')")
    conn.execute("INSERT INTO tasks (id, owner_kind, owner_name, owner_uid, idx, attempt, phase, exit_code, "
                 "created_at, finished_at) VALUES ('nightly-aaaaa-0-1', 'Job', 'nightly', 'aaaaa00001', 0, 1, "
                 "'Succeeded', 0, 5.0, 7.0)")
    conn.execute("INSERT INTO task_logs VALUES ('nightly-aaaaa-0-1', x'6869', 0)")
    conn.execute("INSERT INTO events (ts, kind, name, task_id, type, reason, message) VALUES "
                 "(1.0, 'Service', 'web', NULL, 'Normal', 'Scheduled', 'm1'), "
                 "(2.0, 'Node', 'h1', NULL, 'Normal', 'NodeReady', 'm2')")
    conn.execute("INSERT INTO revisions (uid, kind, name, revision, hash, template, created_at, cause) VALUES "
                 "('bbbbb00002', 'Service', 'web', 1, '0123456789', '{}', 1.0, 'apply')")
    conn.commit()
    before = conn.execute("SELECT * FROM tasks ORDER BY id").fetchall()
    conn.close()

    store = Store(path)
    try:
        assert (store.store_id, store.mark_key) == ("abcdefabcdef", "ab" * 32)
        assert [(r.kind.value, r.namespace, r.name, r.uid, r.generation, r.labels, r.status, r.source)
                for r in store.resources()] == [
            ("Job", "default", "nightly", "aaaaa00001", 3, {"team": "x"}, {"phase": "Running"}, "/srv/manifests"),
            ("Namespace", "", "default", store.resource(Kind.NAMESPACE, "default").uid, 1, {}, {}, None),
            ("Node", "", "h1", "ccccc00003", 3, {"team": "x"}, {"phase": "Running"}, "/srv/manifests"),
            ("Service", "default", "web", "bbbbb00002", 3, {"team": "x"}, {"phase": "Running"}, "/srv/manifests")]
        after = store._rows("SELECT * FROM tasks ORDER BY id")
        assert [tuple(v for k, v in r.items() if k not in ("namespace", "rev")) for r in after] == before, \
            "task rows intact"
        assert [r["namespace"] for r in after] == ["default", "default"]
        web = store.task("web-bbbbb-0-1")
        assert (web.phase, web.node, web.container_id, web.owner_key) == (
            TaskPhase.RUNNING, "h1", "c0ffee", (Kind.SERVICE, "default", "web"))
        assert store.output("nightly-aaaaa-0-1") == (b"hi", False)
        assert [(e["kind"], e["namespace"], e["message"]) for e in store.events(limit=None)] == [
            ("Service", "default", "m1"), ("Node", "", "m2")]
        assert [r["revision"] for r in store.revisions("web")] == [1]
        assert store.apply([job("nightly", labels={"team": "x"})])[0][0] == "job/nightly", "same identity"
        indexes = {r["name"] for r in store._rows("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"tasks_owner", "tasks_phase", "events_object", "revisions_owner", "resources_namespace"} <= indexes
        assert [r["version"] for r in store._rows("SELECT version FROM migrations")] == list(
            range(1, len(MIGRATIONS) + 1))
    finally:
        store.close()
