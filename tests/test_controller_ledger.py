"""The controller reads only what changed (``runtime.ledger``), without Docker: no Nodes, so tasks
wait for one, which is enough to see what each pass plans from. On both backends.

Proves: a steady pass reads no finished history (counted through an instrumented store, not
timed); writes by the CLI (apply, retry, delete, scale, a purge and a re-apply under the same name)
are acted on by the next pass; a restarted controller (a takeover is the same: a controller
starting) rebuilds what it holds, settles the same Jobs and makes no duplicate tasks; what the
ledger holds always equals a full read of the store, minus the settled Jobs' tasks, whose part of
budget and fair-share usage it carries (equal to the planner's sums over them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.engine.fairshare import usage
from reconciler.engine.quotas import budget_use
from reconciler.kinds import DEFAULT_NAMESPACE, Kind, TaskPhase
from reconciler.records import ContainerObs, NodeObs, Snapshot, TaskRecord
from reconciler.runtime.controller import Controller
from reconciler.runtime.ledger import Ledger
from reconciler.store import Store

ROOT = Path(__file__).resolve().parent.parent
HISTORY = 300  # finished tasks of a Job that is over


class CountingStore(Store):
    """A Store that records every read: the statement and the rows it returned."""

    def __init__(self, *a, **kw):
        self.reads: list[tuple[str, int]] = []
        self.transactions = 0  # write transactions begun
        super().__init__(*a, **kw)

    def _rows(self, sql, params=()):
        rows = super()._rows(sql, params)
        self.reads.append((sql, len(rows)))
        return rows

    def _tuples(self, sql, params=()):
        rows = super()._tuples(sql, params)
        self.reads.append((sql, len(rows)))
        return rows

    def transaction(self, *a, **kw):
        self.transactions += 1
        return super().transaction(*a, **kw)

    def task_rows_read(self) -> int:
        return sum(n for sql, n in self.reads if " FROM tasks" in sql)


def cli(url, *args: str, stdin: str | None = None) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "reconciler", "--db", str(url), *args], input=stdin, text=True,
                         capture_output=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def job(name: str, **spec) -> str:
    return json.dumps({"apiVersion": "broker/v1", "kind": "Job", "metadata": {"name": name},
                       "spec": {"template": {"image": "busybox"}, **spec}})


def service(name: str, replicas: int) -> str:
    return json.dumps({"apiVersion": "broker/v1", "kind": "Service", "metadata": {"name": name},
                       "spec": {"replicas": replicas, "template": {"image": "busybox"}}})


def fill_history(store: Store, name: str, n: int, phase: TaskPhase = TaskPhase.SUCCEEDED) -> None:
    """``n`` finished attempts of Job ``name``, one per index, as if it ran long ago (each a little
    longer than the last: the settled usage sums different spans)."""
    res = store.resource(Kind.JOB, name)
    code = 0 if phase is TaskPhase.SUCCEEDED else 1
    with store.transaction() as db:
        for i in range(n):
            store.insert_task(db, TaskRecord(
                id=f"{name}-{res.uid[:5]}-{i}-1", owner_kind=Kind.JOB, owner_name=name, owner_uid=res.uid, index=i,
                attempt=1, phase=phase, node="gone", container_id=f"{i:064x}", exit_code=code, created_at=1.0,
                started_at=2.0 + i, finished_at=3.0 + 2 * i))


@pytest.fixture
def url(db_url):
    return db_url


def controller(store: Store) -> Controller:
    c = Controller(store, resync=5.0)
    return c


def close(c: Controller) -> None:
    c.watcher.stop()
    c.prober.stop()
    c.executor.shutdown()
    c.stopper.shutdown()


@pytest.fixture
def ctl(url):
    Store(url).close()  # made (and migrated) before the CLI writes to it
    cli(url, "apply", "-f", "-", stdin=job("old", completions=HISTORY, parallelism=10) + "\n---\n"
        + job("live", completions=5, parallelism=2))
    store = CountingStore(url)
    fill_history(store, "old", HISTORY)
    c = controller(store)
    yield c
    close(c)
    store.close()


def steady(c: Controller, passes: int = 4) -> None:
    for _ in range(passes):
        c.reconcile_once()


def key(name: str, kind: Kind = Kind.JOB) -> tuple:
    return kind, DEFAULT_NAMESPACE, name


def assert_matches_the_store(c: Controller) -> None:
    """What the ledger holds is a full read of the store, without the settled Jobs' tasks, and what it
    carries of those tasks' usage is the planner's sums over them (``budget_use``, ``usage``)."""
    fresh = Store(c.store.location)
    try:
        held = {t.id: t for t in fresh.tasks() if t.owner_key not in c.ledger.settled}
        assert c.ledger.tasks == held
        assert c.ledger.resources == {r.key: r for r in fresh.resources()}
        settled = [t for t in fresh.tasks() if t.owner_key in c.ledger.settled]
        carried = c.ledger.usage
        assert {k for k in c.ledger.settled if k in carried} == {t.owner_key for t in settled if t.started_at}
        cpus = {k: c.ledger.resources[k].model.spec.template.resources.cpus for k in c.ledger.settled}
        for now, window in ((400.0, 1000.0), (400.0, 150.0), (5000.0, 4800.0)):
            assert carried.budget_use(DEFAULT_NAMESPACE, window, now) == pytest.approx(
                budget_use(settled, {DEFAULT_NAMESPACE: window}, cpus, now)[DEFAULT_NAMESPACE])
        for now in (700.0, 5000.0):  # after every span ended, as a pass is
            assert carried.fair_usage(DEFAULT_NAMESPACE, now) == pytest.approx(
                usage(settled, {DEFAULT_NAMESPACE}, now, c.queue)[DEFAULT_NAMESPACE])
    finally:
        fresh.close()


def test_a_steady_pass_reads_no_finished_history(ctl):
    ctl.reconcile_once()  # the first pass reads everything
    assert ctl.store.task_rows_read() >= HISTORY
    steady(ctl, 3)  # the old Job's status is stored (Complete), then it settles
    assert key("old") in ctl.ledger.settled and key("live") not in ctl.ledger.settled
    assert not any(t.owner_name == "old" for t in ctl.ledger.tasks.values())
    ctl.store.reads.clear()
    ctl.reconcile_once()
    task_reads = [(sql, n) for sql, n in ctl.store.reads if " FROM tasks" in sql]
    assert all("rev > " in sql for sql, _ in task_reads), task_reads  # only rows changed since the last pass
    assert ctl.store.task_rows_read() == 0 and ctl.ledger.rows_read == 0
    assert all("rev > " in sql for sql, _ in ctl.store.reads if " FROM resources" in sql)
    assert len(ctl.ledger.tasks) == 2  # the live Job's two waiting tasks
    ctl.ledger.refresh()
    assert_matches_the_store(ctl)


def test_a_steady_pass_commits_nothing(ctl, url):
    """Once the old Job settled and the live one's tasks wait with their reason recorded, a pass has
    nothing to record and no Docker call to make: it takes no write lock and commits nothing. A pass
    with something to record (a new Job's tasks) still commits it."""
    steady(ctl, 4)
    before = ctl.store.transactions
    steady(ctl, 3)
    assert ctl.store.transactions == before
    cli(url, "apply", "-f", "-", stdin=job("next"))
    ctl.reconcile_once()
    assert ctl.store.transactions == before + 1
    assert any(t.owner_name == "next" for t in ctl.store.tasks())


def test_the_cli_writes_are_acted_on_by_the_next_pass(ctl, url):
    steady(ctl)
    store = ctl.store

    cli(url, "apply", "-f", "-", stdin=job("new", completions=3, parallelism=3))
    ctl.reconcile_once()
    assert len(store.tasks((Kind.JOB, "new"))) == 3

    cli(url, "apply", "-f", "-", stdin=service("web", 1))
    ctl.reconcile_once()
    cli(url, "scale", "service", "web", "--replicas", "3")
    ctl.reconcile_once()
    assert len(store.tasks((Kind.SERVICE, "web"), active_only=True)) == 3

    # A Job that failed and settled, then `brokerctl retry job`: the next pass makes a new attempt.
    cli(url, "apply", "-f", "-", stdin=job("flaky", completions=2, parallelism=2, backoffLimit=0))
    store.reads.clear()
    fill_history(store, "flaky", 1, TaskPhase.FAILED)
    steady(ctl)
    assert key("flaky") in ctl.ledger.settled
    assert store.resource(Kind.JOB, "flaky").status["phase"] == "Failed"
    before = {t.id for t in store.tasks((Kind.JOB, "flaky"))}
    cli(url, "retry", "job", "flaky")
    ctl.reconcile_once()
    after = store.tasks((Kind.JOB, "flaky"))
    assert key("flaky") not in ctl.ledger.settled
    assert {t.id for t in after} > before and all(t.phase is TaskPhase.PENDING for t in after if t.id not in before)

    # Deleting a settled Job: its tasks are read again and it is purged (no container anywhere).
    assert key("old") in ctl.ledger.settled
    cli(url, "delete", "job", "old")
    steady(ctl, 2)
    assert key("old") not in ctl.ledger.resources and store.tasks((Kind.JOB, "old")) == []

    # Purged and applied again under the same name between two passes: only the new one's tasks.
    cli(url, "delete", "job", "new", "--force")
    cli(url, "apply", "-f", "-", stdin=job("new", completions=1))
    steady(ctl, 2)  # the second pass reads the tasks the first made
    new_uid = store.resource(Kind.JOB, "new").uid
    assert {t.owner_uid for t in ctl.ledger.tasks.values() if t.owner_name == "new"} == {new_uid}
    assert len(store.tasks((Kind.JOB, "new"))) == 1
    ctl.ledger.refresh()  # what the last pass wrote
    assert_matches_the_store(ctl)


def test_a_restarted_controller_rebuilds_and_makes_no_duplicates(ctl, url):
    steady(ctl)
    settled, count = set(ctl.ledger.settled), len(Store(url).tasks())
    close(ctl)
    cli(url, "apply", "-f", "-", stdin=job("meanwhile", completions=1))  # written while no controller runs
    again = controller(CountingStore(url))
    try:
        again.reconcile_once()
        assert again.store.task_rows_read() >= HISTORY  # the first pass of a controller reads everything
        steady(again, 2)
        assert again.ledger.settled == settled
        assert len(again.store.tasks()) == count + 1  # only the new Job's task
        again.ledger.refresh()
        assert_matches_the_store(again)
    finally:
        close(again)
        again.store.close()


def test_a_container_seen_of_a_settled_job_brings_its_tasks_back(url):
    """A node that comes back may hold a container of a finished task (a late result, a leftover):
    the owner is unsettled and its tasks read with one query before the pass plans."""
    store = Store(url)
    try:
        cli(url, "apply", "-f", "-", stdin=job("old", completions=3))
        fill_history(store, "old", 3)
        ledger = Ledger(store)
        ledger.refresh()
        ledger.settle([key("old")])
        assert key("old") in ledger.settled and ledger.tasks == {}
        tid = store.tasks((Kind.JOB, "old"))[1].id
        seen = ContainerObs(id="c1", name=f"bk-{store.store_id}-{tid}", task_id=tid, owner="Job/old", state="exited",
                            exit_code=0)
        read = ledger.rows_read
        ledger.see(Snapshot(nodes={"gone": NodeObs("gone", ready=True, containers=(seen,))}, taken_at=10.0))
        assert key("old") not in ledger.settled and len(ledger.tasks) == 3
        assert ledger.rows_read - read == 1 + 3  # the task by its id, then its owner's three
        orphan = ContainerObs(id="c2", name="x", task_id="nobody-12345-0-1", owner="Job/nobody", state="exited")
        ledger.see(Snapshot(nodes={"gone": NodeObs("gone", ready=True, containers=(seen, orphan))}, taken_at=11.0))
        assert "nobody-12345-0-1" not in ledger.tasks  # unknown to the store: the planner removes it as an orphan
    finally:
        store.close()
