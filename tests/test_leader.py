"""Leadership among controllers on one store, without Docker: a standby takes over an expired lease,
the overtaken leader is fenced and steps down, a store out of reach is no loss, a fenced leader makes
no Docker call, the GitOps watcher's syncs are fenced too, and `brokerctl status` names the leader,
its epoch and the standbys. Run on both backends (``db_url``) where the store is involved."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from helpers import cli, job_yaml, wait_for
from reconciler.engine.actions import Plan, Remove, Start
from reconciler.errors import StoreError
from reconciler.kinds import Kind, TaskPhase
from reconciler.ops import controller as ops_controller
from reconciler.records import ContainerSpec, TaskRecord
from reconciler.runtime.act import Actor
from reconciler.runtime.leader import Leadership
from reconciler.runtime.watch import Watcher
from reconciler.store import Fenced, Store

LEASE = 0.6  # short, so that takeovers take a second


@pytest.fixture
def stores(db_url):
    """Two connections to one store, as two controller processes have."""
    first = Store(db_url)
    second = Store(db_url)
    yield first, second
    first.close()
    second.close()


def test_a_standby_takes_over_an_expired_lease_and_the_old_leader_steps_down(stores, caplog):
    """A leads (epoch 1), B stands by. A stops renewing (paused): within its lease B claims epoch 2. A
    no longer `holds()` (no Docker call), its next write is Fenced, its next renewal steps it down to
    standby, after which it records a candidate heartbeat."""
    caplog.set_level(logging.INFO, "brokerctl.leader")
    a_store, b_store = stores
    a = Leadership(a_store, "a", duration=LEASE).start()
    b = Leadership(b_store, "b", duration=LEASE).start()
    try:
        assert (a.epoch, b.epoch) == (1, None) and a.holds()
        time.sleep(2 * LEASE)
        assert (a.epoch, b.epoch) == (1, None), "the leader lost a lease it kept renewing"

        a.stop()  # paused: renews no more
        paused = time.monotonic()
        wait_for(lambda: b.epoch == 2, 5, "the standby's takeover")
        assert time.monotonic() - paused >= LEASE * 0.5
        assert not a.holds() and a.epoch == 1  # it does not know yet, but sends nothing

        with pytest.raises(Fenced):
            with a_store.transaction() as db:
                a_store.add_event(db, "Job", "j", "Late", "written by a paused leader")
        assert a_store.events() == []

        a._step()  # its next renewal: refused, it steps down
        assert a.epoch is None and not a.holds()
        with pytest.raises(Fenced):  # a pass of its term still under way cannot write either
            with a_store.transaction() as db:
                a_store.add_event(db, "Job", "j", "Late", "written after stepping down")
        assert a_store.events() == []
        a._step()  # as standby: the lease is B's and live
        assert a.epoch is None and "a" in [c["holder"] for c in b_store.candidates()]
        assert "stepped down from epoch 1: another controller holds the lease; standby" in caplog.text
        assert "leader at epoch 2: took over from pid" in caplog.text
        assert b_store.lease()["holder"] == "b"
    finally:
        a.stop()
        b.stop()


def test_a_released_lease_is_taken_over_at_once(stores):
    a_store, b_store = stores
    a = Leadership(a_store, "a", duration=30.0).start()
    b = Leadership(b_store, "b", duration=30.0).start()
    try:
        assert b.epoch is None
        assert a.release(wait=1.0)
        wait_for(lambda: b.epoch == 2, 3, "takeover of a released 30 s lease")
    finally:
        a.stop()
        b.stop()


def test_a_renewal_the_store_cannot_take_is_retried_not_a_step_down(stores, monkeypatch, caplog):
    """A renewal failing with a StoreError (a PostgreSQL server restarting) is logged once and tried
    again; the leader keeps its epoch and, once a renewal goes through, its lease."""
    caplog.set_level(logging.INFO, "brokerctl.leader")
    a_store, _ = stores
    a = Leadership(a_store, "a", duration=30.0)
    a._step()
    assert a.epoch == 1
    real, calls = a_store.renew_lease, []

    def flaky(*args, **kwargs):
        calls.append(args)
        if len(calls) <= 2:
            raise StoreError("cannot connect to store postgresql://x@h/db: connection refused")
        return real(*args, **kwargs)

    monkeypatch.setattr(a_store, "renew_lease", flaky)
    a._step()
    a._step()
    assert a.epoch == 1 and caplog.text.count("lease not renewed or read: cannot connect") == 1
    a._step()
    assert a.epoch == 1 and a.holds() and len(calls) == 3 and "store reachable again" in caplog.text


class RecordingHost:
    """A Docker host that records the calls it would make."""

    def __init__(self):
        self.name, self.calls = "n1", []

    def start(self, spec):
        self.calls.append(("start", spec.name))
        return "c" * 64


def _start_plan() -> Plan:
    task = TaskRecord(id="j-abcde-0-1", owner_kind=Kind.JOB, owner_name="j", owner_uid="abcde12345", index=0,
                      attempt=1, phase=TaskPhase.PENDING, node="n1", created_at=1.0, namespace="default")
    spec = ContainerSpec(name="bk-s-j-abcde-0-1", image="busybox", command=["true"], env={}, labels={})
    return Plan(new_tasks=[task], starts=[Start(task.id, "n1", spec)])


def test_a_leader_overtaken_commits_nothing_and_makes_no_docker_call(stores):
    """The pass of a controller whose epoch was overtaken: its decisions are refused (Fenced) before
    any Docker call, the store is unchanged and `on_fenced` is not needed (the pass raises)."""
    a_store, b_store = stores
    assert a_store.claim_lease("a", LEASE, now=100.0) == 1
    a_store.fence("a", 1)
    assert b_store.claim_lease("b", LEASE, now=101.0) == 2
    host = RecordingHost()
    with ThreadPoolExecutor(2) as pool:
        actor = Actor(a_store, pool, clock=lambda: 102.0)
        with pytest.raises(Fenced):
            actor.execute(_start_plan(), {"n1": host})
    assert host.calls == [] and a_store.tasks() == []


def test_a_pass_with_nothing_to_record_or_send_opens_no_write_transaction(stores):
    """A steady pass (an empty plan) takes no write lock and commits nothing: an overtaken leader's
    empty pass therefore raises nothing (it learns of the takeover from its renewal). A plan with a
    Docker call and nothing to record is still fenced before the call."""
    a_store, b_store = stores
    a_store.claim_lease("a", LEASE, now=100.0)
    a_store.fence("a", 1)
    b_store.claim_lease("b", LEASE, now=101.0)
    host = RecordingHost()
    with ThreadPoolExecutor(2) as pool:
        actor = Actor(a_store, pool, clock=lambda: 102.0)
        assert actor.execute(Plan(), {"n1": host}) == 0
        removal = Remove("n1", "c" * 64, None, "orphan", grace=0)
        with pytest.raises(Fenced):
            actor.execute(Plan(removals=[removal]), {"n1": host})
    assert host.calls == []


def test_no_docker_call_goes_out_once_the_lease_may_have_expired(stores):
    """The decisions commit (nobody took over yet) but the lease is not surely ours any more (a pause
    longer than the lease): the start is skipped, not sent and not recorded as failed. The same
    pass while leading sends it."""
    a_store, _ = stores
    a_store.claim_lease("a", LEASE, now=100.0)
    a_store.fence("a", 1)
    leading = [False]
    host = RecordingHost()
    with ThreadPoolExecutor(2) as pool:
        actor = Actor(a_store, pool, clock=lambda: 102.0, leading=lambda: leading[0])
        actor.execute(_start_plan(), {"n1": host})
        assert host.calls == []
        [t] = a_store.tasks()
        assert (t.phase, t.container_id) == (TaskPhase.PENDING, None)
        leading[0] = True
        actor.execute(Plan(starts=_start_plan().starts), {"n1": host})
    assert host.calls == [("start", "bk-s-j-abcde-0-1")]
    assert a_store.tasks()[0].phase is TaskPhase.RUNNING


def test_an_outcome_refused_by_the_fence_steps_the_leader_down(stores):
    """Overtaken while a Docker call ran: recording its outcome is refused and reported to `on_fenced`."""
    a_store, b_store = stores
    a_store.claim_lease("a", LEASE, now=100.0)
    a_store.fence("a", 1)
    fenced = []

    class SlowHost(RecordingHost):
        def start(self, spec):
            b_store.claim_lease("b", LEASE, now=101.0)  # the takeover, while the call is under way
            return super().start(spec)

    with ThreadPoolExecutor(2) as pool:
        actor = Actor(a_store, pool, clock=lambda: 102.0, on_fenced=fenced.append)
        actor.execute(_start_plan(), {"n1": SlowHost()})
    assert [e.epoch for e in fenced] == [1]
    assert a_store.tasks()[0].phase is TaskPhase.PENDING  # the outcome is the new leader's to find


def _start_plans(n: int) -> Plan:
    """A plan placing ``n`` new tasks of Job j on n1 and starting them."""
    tasks = [TaskRecord(id=f"j-abcde-{i}-1", owner_kind=Kind.JOB, owner_name="j", owner_uid="abcde12345", index=i,
                        attempt=1, phase=TaskPhase.PENDING, node="n1", created_at=1.0, namespace="default")
             for i in range(n)]
    starts = [Start(t.id, "n1", ContainerSpec(name=f"bk-s-{t.id}", image="busybox", command=["true"], env={},
                                              labels={})) for t in tasks]
    return Plan(new_tasks=tasks, starts=starts)


def _counting_transactions(store: Store, hold_second=lambda: None) -> list[int]:
    """Counts ``store``'s write transactions; ``hold_second`` runs inside the second one (a pass's first
    outcome: the first is its fence check) before it commits."""
    real, opened = store.transaction, []

    @contextmanager
    def counted(*args, **kwargs):
        with real(*args, **kwargs) as db:
            opened.append(1)
            if len(opened) == 2:
                hold_second()
            yield db

    store.transaction = counted
    return opened


def test_outcomes_that_finish_together_are_recorded_in_one_transaction(stores):
    """Six starts finish while the first outcome's transaction is open: the five others wait for it and
    are then committed together, one transaction for them all (not one each). Each task is Running
    with its container and a Started event, as when each was recorded alone."""
    a_store, _ = stores
    a_store.claim_lease("a", LEASE, now=100.0)
    a_store.fence("a", 1)
    plan = _start_plans(6)
    with ThreadPoolExecutor(6) as pool:
        actor = Actor(a_store, pool, clock=lambda: 102.0, per_node=6)
        actor.record_decisions(Plan(new_tasks=plan.new_tasks))
        opened = _counting_transactions(
            a_store, lambda: wait_for(lambda: len(actor._unrecorded) == 5, 10, "the other five outcomes queued"))
        assert actor.execute(Plan(starts=plan.starts), {"n1": RecordingHost()}) == 6
    assert len(opened) == 3  # the pass's fence check, the first outcome alone, then the five others together
    assert [(t.phase, t.container_id) for t in a_store.tasks()] == [(TaskPhase.RUNNING, "c" * 64)] * 6
    started = [e for e in a_store.events(limit=None) if e["reason"] == "Started"]
    assert sorted(e["task_id"] for e in started) == sorted(t.id for t in plan.new_tasks)


def test_a_batch_of_outcomes_refused_by_the_fence_writes_none_of_them(stores):
    """Overtaken while three starts ran (all three under way when it happens): the fence refuses their
    outcomes, however they are batched; every one is reported to `on_fenced`, and no task is marked
    Running."""
    a_store, b_store = stores
    a_store.claim_lease("a", LEASE, now=100.0)
    a_store.fence("a", 1)
    fenced, plan = [], _start_plans(3)
    takeover = threading.Barrier(3, action=lambda: b_store.claim_lease("b", LEASE, now=101.0))

    class TakenOverHost(RecordingHost):
        def start(self, spec):
            takeover.wait(10)
            return super().start(spec)

    with ThreadPoolExecutor(3) as pool:
        actor = Actor(a_store, pool, clock=lambda: 102.0, per_node=3, on_fenced=fenced.append)
        actor.execute(plan, {"n1": TakenOverHost()})
    assert [e.epoch for e in fenced] == [1, 1, 1]
    assert {t.phase for t in a_store.tasks()} == {TaskPhase.PENDING}


def test_an_outcome_that_cannot_be_recorded_does_not_lose_the_others_of_its_batch(stores, monkeypatch):
    """Three starts: one outcome is committed alone, the other two (one of whose writes fails) finish
    meanwhile and are committed together: that batch is rolled back and each of its outcomes recorded
    alone, so both good tasks are Running and the failure reaches the pass."""
    a_store, _ = stores
    a_store.claim_lease("a", LEASE, now=100.0)
    a_store.fence("a", 1)
    plan = _start_plans(3)
    bad = plan.new_tasks[1].id
    real_update, first_open = a_store.update_task, threading.Event()

    def update_task(db, task_id, **changes):
        if task_id == bad and changes.get("phase") is TaskPhase.RUNNING:
            raise RuntimeError("cannot write this one")
        return real_update(db, task_id, **changes)

    class LateForBad(RecordingHost):
        def start(self, spec):
            if spec.name.endswith(bad):  # finishes once another outcome is being recorded: in the batch
                first_open.wait(10)
            return super().start(spec)

    def hold_first_outcome():
        first_open.set()
        wait_for(lambda: len(actor._unrecorded) == 2, 10, "the other two outcomes queued")

    with ThreadPoolExecutor(3) as pool:
        actor = Actor(a_store, pool, clock=lambda: 102.0, per_node=3)
        actor.record_decisions(Plan(new_tasks=plan.new_tasks))
        monkeypatch.setattr(a_store, "update_task", update_task)
        opened = _counting_transactions(a_store, hold_first_outcome)
        with pytest.raises(RuntimeError, match="cannot write this one"):
            actor.execute(Plan(starts=plan.starts), {"n1": LateForBad()})
    phases = {t.id: t.phase for t in a_store.tasks()}
    assert phases == {t.id: TaskPhase.PENDING if t.id == bad else TaskPhase.RUNNING for t in plan.new_tasks}
    assert len(opened) == 5  # fence check, first outcome, the failed batch of two, then those two alone


def test_the_gitops_watcher_of_an_overtaken_leader_writes_nothing(db_url, tmp_path):
    """The watcher started with epoch 1 after epoch 2 was claimed: its first sync is refused and it ends;
    started with the live epoch it syncs the directory."""
    source = tmp_path / "manifests"
    source.mkdir()
    (source / "job.yaml").write_text(job_yaml("synced"))
    store = Store(db_url)
    try:
        store.claim_lease("old", LEASE, now=100.0)
        store.claim_lease("new", LEASE, now=101.0)
        from reconciler.ops.sync import watch_step

        old = Watcher(db_url, str(source), watch_step(str(source)), interval=60).start("old", 1)
        old._thread.join(10)
        assert not old._thread.is_alive() and old.syncs == 0
        assert store.resources(Kind.JOB) == []

        new = Watcher(db_url, str(source), watch_step(str(source)), interval=60).start("new", 2)
        try:
            wait_for(lambda: store.resources(Kind.JOB), 10, "the sync of the leader's watcher")
        finally:
            new.stop()
        assert [r.name for r in store.resources(Kind.JOB)] == ["synced"]
    finally:
        store.close()


def test_status_names_the_leader_its_epoch_and_the_standbys(db_url):
    """`ops.controller.status` and `brokerctl status`: the leader's pid and host, the epoch, the lease
    expiry, the standbys; then, once the leader stopped renewing, that its lease expired."""
    a_store, b_store = Store(db_url), Store(db_url)
    b = Leadership(b_store, "b", duration=30.0)
    try:
        assert a_store.claim_lease("a", 30.0) == 1
        assert a_store.claim_lease("a", 30.0) == 2  # a second term
        b._step()  # standby: writes its candidate row
        st = ops_controller.status(a_store)
        host = socket.gethostname()
        assert (st.controller["pid"], st.controller["hostname"], st.epoch) == (os.getpid(), host, 2)
        assert 29 < st.expires_in <= 30
        assert [(c["holder"], c["pid"]) for c in st.standbys] == [("b", os.getpid())]

        shown = cli(db_url, "status", check=True).stdout
        assert f"controller: running (pid {os.getpid()} on {host}, heartbeat " in shown
        assert "leader:     epoch 2, lease expires in 2" in shown
        assert f"standbys:   pid {os.getpid()} on {host} (seen " in shown

        with a_store.transaction() as db:  # the leader stopped renewing 31 s ago
            db.execute("UPDATE lease SET expires_at = expires_at - 60, pid = 1")
        shown = cli(db_url, "status", check=True).stdout
        assert f"controller: none leads (the lease of pid 1 on {host}, epoch 2, expired 3" in shown
    finally:
        a_store.close()
        b_store.close()


def test_a_lease_duration_out_of_bounds_is_refused_before_the_store_is_opened(tmp_path):
    db = tmp_path / "broker.db"
    out = cli(db, "controller", "--lease-duration", "0.1")
    assert out.returncode == 2
    assert "--lease-duration 0.1: must be between 0.5 and 600 seconds" in out.stderr
    assert not db.exists()


def test_a_gated_host_withholds_every_request_that_would_change_it():
    """The controller's hosts ask the lease before each request that changes a host (each step of a stop
    then remove, of a create then start): with the gate shut, such a request is not sent (Withheld)
    while reads still are (here refused: nothing listens on the address)."""
    import requests

    from reconciler.docker.client import Withheld
    from reconciler.docker.host import Host

    allowed = [False]
    host = Host("n1", "tcp://127.0.0.1:9", timeout=2, gate=lambda: allowed[0])
    try:
        for change in (lambda api: api.remove_container("x", force=True), lambda api: api.stop("x", timeout=1),
                       lambda api: api.start("x"), lambda api: api.create_container("busybox", name="x")):
            with pytest.raises(Withheld, match="not sent: this controller no longer surely leads"):
                change(host.client.api)
        with pytest.raises(requests.exceptions.ConnectionError):
            host.client.api.inspect_container("x")
        allowed[0] = True
        with pytest.raises(requests.exceptions.ConnectionError):  # sent now, and refused
            host.client.api.remove_container("x", force=True)
    finally:
        host.close()
