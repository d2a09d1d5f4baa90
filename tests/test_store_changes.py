"""The store's change counter (``Store.changed_since``), on both backends: every insert and update of a
task or resource row takes a new, higher rev from one store-wide counter (triggers set it, so a
writer cannot forget); a purged resource leaves a tombstone; ``changed_since(marks)`` returns exactly the
rows written since those marks, and the marks to ask from next."""

from __future__ import annotations

from dataclasses import replace

import pytest

from reconciler.kinds import DEFAULT_NAMESPACE, Kind, TaskPhase
from reconciler.records import TaskRecord
from reconciler.store import Marks, Store

from test_store import job, manifest, task


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    yield s
    s.close()


def insert(store: Store, *tasks: TaskRecord) -> None:
    with store.transaction() as db:
        for t in tasks:
            store.insert_task(db, t)


def revs(store: Store, table: str) -> dict[str, int]:
    key = "id" if table == "tasks" else "name"
    return {r[key]: r["rev"] for r in store._rows(f"SELECT {key}, rev FROM {table}")}


def test_every_insert_and_update_takes_a_higher_rev_from_one_counter(store):
    store.apply([job("a"), job("b")])
    insert(store, task("a", 0), task("a", 1))
    first = {**revs(store, "resources"), **revs(store, "tasks")}
    assert first["a"] < first["b"] < first["a-abcde-0-1"] < first["a-abcde-1-1"]  # one sequence for both tables
    with store.transaction() as db:
        store.update_task(db, "a-abcde-0-1", phase=TaskPhase.RUNNING)
    with store.transaction() as db:
        store.set_status(db, Kind.JOB, "a", {"phase": "Running"})
    after = {**revs(store, "resources"), **revs(store, "tasks")}
    assert after["a-abcde-0-1"] > first["a-abcde-1-1"] and after["a"] > after["a-abcde-0-1"]
    assert after["b"] == first["b"] and after["a-abcde-1-1"] == first["a-abcde-1-1"]  # untouched rows keep theirs


def test_changes_returns_only_rows_written_since_the_marks(store):
    store.apply([job("a"), job("b")])
    insert(store, task("a", 0), task("b", 0))
    full = store.changed_since()
    assert {r.name for _, r in full.resources} == {"a", "b", DEFAULT_NAMESPACE}
    assert {t.id for t in full.tasks} == {"a-abcde-0-1", "b-abcde-0-1"}
    assert store.changed_since(full.marks) == (full.marks, [], [], [])  # nothing since: nothing read

    with store.transaction() as db:
        store.update_task(db, "b-abcde-0-1", phase=TaskPhase.SUCCEEDED, exit_code=0)
    store.apply([job("c")])
    insert(store, task("c", 0))
    since = store.changed_since(full.marks)
    assert [t.id for t in since.tasks] == ["b-abcde-0-1", "c-abcde-0-1"]
    assert since.tasks[0].phase is TaskPhase.SUCCEEDED and since.tasks[0].exit_code == 0
    assert [r.name for _, r in since.resources] == ["c"]
    assert since.marks.tasks > full.marks.tasks and since.marks.resources > full.marks.resources
    assert store.changed_since(since.marks) == (since.marks, [], [], [])


def test_a_purge_leaves_a_tombstone_and_its_tasks_go(store):
    store.apply([job("a")])
    insert(store, task("a", 0))
    marks = store.changed_since().marks
    store.purge(Kind.JOB, "a")
    since = store.changed_since(marks)
    assert since.tasks == [] and since.resources == []
    assert [key for _, key in since.gone] == [(Kind.JOB, DEFAULT_NAMESPACE, "a")]
    assert since.marks.gone > marks.gone
    # Re-created under the same name: the new row's rev is above the tombstone's.
    store.apply([job("a")])
    again = store.changed_since(since.marks)
    assert [r.name for _, r in again.resources] == ["a"] and again.resources[0][0] > since.gone[0][0]


def test_a_first_read_counts_rows_written_before_the_counter(store):
    """Rows that predate the counter have rev 0: the first read (marks None) still returns them."""
    store.apply([job("a")])
    insert(store, task("a", 0))
    with store.transaction() as db:  # as if migrated from an older store: rev 0
        db.execute("UPDATE tasks SET rev = 0")  # an explicit rev is left as written
    assert revs(store, "tasks") == {"a-abcde-0-1": 0}
    assert [t.id for t in store.changed_since().tasks] == ["a-abcde-0-1"]
    assert store.changed_since(Marks()).tasks == []  # above rev 0: none


def test_revs_follow_commit_order_across_connections(db_url):
    """Two connections writing in turn: each later commit's rows are above every earlier one's, so a
    reader holding the marks of its last read sees every later write."""
    one, two = Store(db_url), Store(db_url)
    try:
        marks = one.changed_since().marks
        seen: set[str] = set()
        for i in range(6):
            writer = (one, two)[i % 2]
            writer.apply([job(f"j{i}")])
            insert(writer, task(f"j{i}", 0))
            ch = one.changed_since(marks)
            assert [t.id for t in ch.tasks] == [f"j{i}-abcde-0-1"] and [r.name for _, r in ch.resources] == [f"j{i}"]
            marks = ch.marks
            seen |= {t.id for t in ch.tasks}
        assert len(seen) == 6
    finally:
        one.close()
        two.close()


def test_tasks_of_and_tasks_by_id(store):
    store.apply([job("a"), job("b"), manifest("Service", "s")])
    insert(store, task("a", 0), task("a", 1), task("b", 0), replace(task("s", 0), owner_kind=Kind.SERVICE))
    assert [t.id for t in store.tasks_of([(Kind.JOB, DEFAULT_NAMESPACE, "a")])] == ["a-abcde-0-1", "a-abcde-1-1"]
    assert [t.id for t in store.tasks_of([(Kind.SERVICE, DEFAULT_NAMESPACE, "s"), (Kind.JOB, DEFAULT_NAMESPACE, "b")])] \
        == ["s-abcde-0-1", "b-abcde-0-1"]
    assert {t.id for t in store.tasks_by_id(["b-abcde-0-1", "nope", "a-abcde-1-1"])} == {"b-abcde-0-1", "a-abcde-1-1"}
    assert len(store.tasks_by_id([f"x-{i}" for i in range(1200)] + ["a-abcde-0-1"])) == 1  # chunked


def test_a_store_copy_keeps_the_counter_working(db_url, tmp_path):
    """``store migrate``: the target's triggers give the copied rows revs of its own counter."""
    from reconciler.store.transfer import copy_store

    src = Store(tmp_path / "src.db")
    src.apply([job("a")])
    insert(src, task("a", 0))
    src.close()
    copy_store(tmp_path / "src.db", db_url)
    dst = Store(db_url)
    try:
        full = dst.changed_since()
        assert {t.id for t in full.tasks} == {"a-abcde-0-1"}
        insert(dst, task("a", 1))
        assert [t.id for t in dst.changed_since(full.marks).tasks] == ["a-abcde-1-1"]
    finally:
        dst.close()


def test_claiming_a_resource_again_as_it_is_writes_nothing(store):
    """A GitOps sync claims every resource of its directory on each sync: claiming one already so
    claimed must not count as a change (the controller would read the row, and a settled Job's
    tasks, again at every sync)."""
    store.apply([job("a")])
    with store.transaction() as db:
        store.claim(db, "Job", DEFAULT_NAMESPACE, "a", "/srv/m", "a.yaml", {"spec": 1})
    claimed = revs(store, "resources")["a"]
    with store.transaction() as db:
        store.claim(db, "Job", DEFAULT_NAMESPACE, "a", "/srv/m", "a.yaml", {"spec": 1})
    assert revs(store, "resources")["a"] == claimed
    with store.transaction() as db:
        store.claim(db, "Job", DEFAULT_NAMESPACE, "a", "/srv/m", "b.yaml", {"spec": 1})
    assert revs(store, "resources")["a"] > claimed
    assert store.resource(Kind.JOB, "a").source == "/srv/m"


def test_changes_are_read_in_pages_and_none_is_missed(store, monkeypatch):
    """Changed tasks are read in rev order, a page at a time (the rev index, on both backends)."""
    from reconciler.store import changes

    monkeypatch.setattr(changes, "CHANGES_PAGE", 3)
    store.apply([job("a")])
    marks = store.changed_since().marks
    insert(store, *(task("a", i) for i in range(8)))
    read = store.changed_since(marks)
    assert sorted(t.id for t in read.tasks) == sorted(f"a-abcde-{i}-1" for i in range(8))
    assert read.marks.tasks == max(revs(store, "tasks").values())
    assert store.changed_since(read.marks).tasks == []


def test_current_rev_moves_with_every_task_or_resource_write_and_with_nothing_else(store):
    start = store.current_rev()
    store.apply([job("a")])
    applied = store.current_rev()
    insert(store, task("a", 0))
    inserted = store.current_rev()
    with store.transaction() as db:
        store.update_task(db, "a-abcde-0-1", phase=TaskPhase.RUNNING)
    updated = store.current_rev()
    assert start < applied < inserted < updated
    with store.transaction() as db:  # an event is not a task or resource row: no move
        store.add_event(db, "Job", "a", "Note", "nothing the lists show", "Normal")
    assert store.current_rev() == updated
    store.purge(Kind.JOB, "a")  # its task goes with it: the tombstone moves the counter
    assert store.current_rev() > updated
    assert store.current_rev() == max(r for r, _ in store.changed_since(Marks()).gone)
