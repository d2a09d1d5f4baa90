"""Tests for reconciler.engine.plan and reconciler.engine.workloads: the pure reconcile pass, no Docker.

Each test builds a small world (resource rows, task rows, one observation of the hosts), calls
``plan`` with an explicit ``now`` and checks the Plan it returns.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from reconciler.engine.actions import STOP_GRACE_SECONDS, Plan, Remove
from reconciler.spec.models import Kind, Resource, TaskPhase, template_hash
from reconciler.engine.plan import plan
from reconciler.records import (
    LABEL_ATTEMPT, LABEL_INDEX, LABEL_MARK, LABEL_OWNER, LABEL_STORE, LABEL_TASK, LABEL_TEMPLATE,
    ContainerObs, NodeObs, ResourceRecord, Snapshot, TaskRecord, container_mark, container_name,
)
from reconciler.engine.services import HEALTHY_RUN_SECONDS

NOW = 1_000.0
STORE_ID = "store1"
MARK_KEY = "5e" * 32  # the store's secret for container marks
P, R, S, F, L, X = (TaskPhase.PENDING, TaskPhase.RUNNING, TaskPhase.SUCCEEDED, TaskPhase.FAILED,
                    TaskPhase.LOST, TaskPhase.STOPPED)

# -- factories ----------------------------------------------------------------------------

_RESOURCE = TypeAdapter(Resource)


def resource(doc: dict, *, uid: str | None = None, generation: int = 1, status: dict | None = None,
             deleted_at: float | None = None) -> ResourceRecord:
    """A store row for a manifest dict, validated through the models as ``apply`` would store it."""
    model = _RESOURCE.validate_python({"apiVersion": "broker/v1", **doc})
    return ResourceRecord(
        kind=Kind(model.kind), name=model.name, uid=uid or hashlib.sha1(model.name.encode()).hexdigest()[:10],
        labels=dict(model.metadata.labels), spec=model.spec.model_dump(mode="json"), generation=generation,
        created_at=0.0, updated_at=0.0, deleted_at=deleted_at, status=status or {},
    )


def node_res(name: str, slots: dict | None = None, **spec) -> ResourceRecord:
    status = spec.pop("status", None)
    body = {"address": "tcp://127.0.0.1:2375", **spec}
    if slots is not None:
        body["slots"] = slots
    return resource({"kind": "Node", "metadata": {"name": name}, "spec": body}, status=status)


def job_res(name: str = "job", *, deleted_at: float | None = None, status: dict | None = None,
            labels: dict | None = None, **spec) -> ResourceRecord:
    body = {"template": {"image": "busybox", "command": ["true"]}, **spec}
    return resource({"kind": "Job", "metadata": {"name": name, "labels": labels or {}}, "spec": body},
                    deleted_at=deleted_at, status=status)


def service_res(name: str = "web", *, deleted_at: float | None = None, **spec) -> ResourceRecord:
    body = {"template": {"image": "nginx"}, **spec}
    return resource({"kind": "Service", "metadata": {"name": name}, "spec": body}, deleted_at=deleted_at)


def task(owner: ResourceRecord, index: int = 0, attempt: int = 1, phase: TaskPhase = P, **kw) -> TaskRecord:
    """A task row of ``owner``, with the id scheme workloads uses, made from its current template."""
    kw.setdefault("template_hash", template_hash(owner.model.spec))
    return TaskRecord(
        id=f"{owner.name}-{owner.uid[:5]}-{index}-{attempt}", owner_kind=owner.kind, owner_name=owner.name,
        owner_uid=owner.uid, index=index, attempt=attempt, phase=phase, **kw,
    )


def container(t: TaskRecord | None, state: str = "running", cid: str | None = None,
              mark: str | None = None) -> ContainerObs:
    """The container of task ``t`` (None: a brokerctl container without a task label), as the store
    made it: ``obs`` signs it for the node it is seen on unless ``mark`` is given."""
    cid = cid or (t.container_id if t and t.container_id else f"c-{t.id if t else 'x'}")
    return ContainerObs(id=cid, name=f"bk-{STORE_ID}-{t.id if t else 'x'}", task_id=t.id if t else None,
                        owner=t.owner if t else None, state=state, exit_code=0 if state == "exited" else None,
                        mark=mark)


def obs(name: str, *containers: ContainerObs, ready: bool = True, cpus: int | None = 4,
        listed: bool = True) -> NodeObs:
    """What probing node ``name`` saw; ``listed=False``: its containers could not be listed."""
    signed = tuple(replace(c, mark=container_mark(MARK_KEY, STORE_ID, c.task_id, name)) if c.mark is None else c
                   for c in containers)
    return NodeObs(name, ready=ready, docker_version="27.0" if ready else None, cpus=cpus if ready else None,
                   memory=8 << 30 if ready else None, message="" if ready else "connection refused",
                   containers=signed if listed else None)


def snapshot(*nodes: NodeObs, at: float = NOW) -> Snapshot:
    return Snapshot(nodes={n.name: n for n in nodes}, taken_at=at)


def run(resources: list[ResourceRecord], tasks: list[TaskRecord], snap: Snapshot | None = None,
        now: float = NOW) -> Plan:
    if snap is None:
        snap = snapshot(*(obs(r.name) for r in resources if r.kind is Kind.NODE))
    return plan(resources, tasks, snap, now, STORE_ID, MARK_KEY)


def applied(p: Plan, tasks: list[TaskRecord]) -> dict[str, TaskRecord]:
    """The task rows after the plan's decisions are recorded (what ``act.record_decisions`` does)."""
    out = {t.id: t for t in [*tasks, *p.new_tasks]}
    for tid, changes in p.task_updates.items():
        out[tid] = replace(out[tid], **changes)
    return out


def status_of(p: Plan, kind: Kind, name: str) -> dict | None:
    found = [s for k, n, s in p.statuses if (k, n) == (kind, name)]
    assert len(found) <= 1
    return found[0] if found else None


def removed(p: Plan) -> set[str]:
    return {r.container_id for r in p.removals}


# -- Jobs ---------------------------------------------------------------------------------


def test_new_job_creates_parallelism_tasks_and_places_them():
    """A new Job with completions=5, parallelism=2 gets tasks for indexes 0 and 1 (attempt 1), each placed and started."""
    nodes = [node_res("a", {"default": 4}), node_res("b", {"default": 4})]
    job = job_res(completions=5, parallelism=2, labels={"team": "x"})

    p = run([*nodes, job], [])

    assert [(t.index, t.attempt, t.phase, t.not_before, t.created_at) for t in p.new_tasks] == [
        (0, 1, P, NOW, NOW), (1, 1, P, NOW, NOW)]
    assert all(t.owner == "Job/job" and t.labels == {"team": "x"} for t in p.new_tasks)
    after = applied(p, [])
    assert sorted(t.node for t in after.values()) == ["a", "b"]  # spread
    assert all(t.scheduled_at == NOW and t.reason == "Scheduled" for t in after.values())
    assert {(s.task_id, s.node) for s in p.starts} == {(t.id, t.node) for t in after.values()}
    assert status_of(p, Kind.JOB, "job") == {
        "phase": "Pending", "active": 2, "succeeded": 0, "failed": 0, "reason": "", "message": "",
        "startTime": None, "completionTime": None}
    assert {e.reason for e in p.events} == {"Scheduled"}


def test_start_carries_the_container_spec():
    """A Start names the container deterministically and carries labels and env that identify the task."""
    job = resource({"kind": "Job", "metadata": {"name": "j", "labels": {"team": "x"}}, "spec": {
        "template": {"image": "busybox", "command": "echo hi", "env": {"A": 1}, "workingDir": "/w", "user": "1000",
                     "mounts": [{"source": "/data", "target": "/d", "readOnly": True}],
                     "resources": {"cpus": 0.5, "memory": "64m"}}}})

    p = run([node_res("a", allowedMounts=["/data"]), job], [])

    [start] = p.starts
    [t] = p.new_tasks
    spec = start.spec
    assert spec.name == container_name(STORE_ID, t.id) == f"bk-{STORE_ID}-{t.id}"
    assert (spec.image, spec.command, spec.working_dir, spec.user) == ("busybox", ["sh", "-c", "echo hi"], "/w", "1000")
    assert spec.env == {"A": "1", "BROKER_TASK_ID": t.id, "BROKER_TASK_INDEX": "0", "BROKER_ATTEMPT": "1",
                        "BROKER_OWNER": "Job/j"}
    assert spec.labels == {"team": "x", LABEL_STORE: STORE_ID, LABEL_OWNER: "Job/j", LABEL_TASK: t.id,
                           LABEL_INDEX: "0", LABEL_ATTEMPT: "1", LABEL_TEMPLATE: t.template_hash,
                           LABEL_MARK: container_mark(MARK_KEY, STORE_ID, t.id, "a")}
    assert spec.mounts == (("/data", "/d", True),)
    assert (spec.nano_cpus, spec.mem_limit) == (500_000_000, 64 << 20)


def test_start_carries_the_nodes_allowed_volumes():
    """The node's allowedVolumes travel with the Start (Host.start checks named volumes against them)."""
    job = job_res(template={"image": "busybox", "mounts": [{"source": "etc-config", "target": "/c"}]})

    [start] = run([node_res("a", allowedVolumes=["etc-config"]), job], []).starts
    [plain] = run([node_res("a"), job], []).starts

    assert (start.spec.allowed_volumes, plain.spec.allowed_volumes) == (("etc-config",), ())


def test_unplaceable_task_waits_with_reason_once():
    """A task no node can take stays Pending with the scheduler's summary; an unchanged summary is not re-recorded."""
    nodes = [node_res("a", {"default": 0}), node_res("b", {"default": 1}, unschedulable=True), node_res("c")]
    job = job_res()
    snap = snapshot(obs("a"), obs("b"), obs("c", ready=False, listed=False))

    p = run([*nodes, job], [], snap)

    [t] = applied(p, []).values()
    assert (t.phase, t.node, t.reason) == (P, None, "Unschedulable")
    assert t.message == "0/3 nodes: 1 no free default slot, 1 not ready, 1 unschedulable"
    assert not p.starts and [e.reason for e in p.events] == ["FailedScheduling"]

    again = run([*nodes, job], [t], snap)
    assert not again.new_tasks and not again.task_updates and not again.starts
    assert not [e for e in again.events if e.reason == "FailedScheduling"]


@pytest.mark.parametrize("state", ["exited", "dead"])
def test_finished_container_is_collected(state):
    """A task whose container finished gets a Collect (never a second Start), whatever phase the store had."""
    job = job_res()
    running = task(job, 0, phase=R, node="a", container_id="c0", started_at=1.0)
    pending = task(job, 1, phase=P, node="a")  # finished before we ever saw it running
    job = job_res(completions=2, parallelism=2)

    p = run([node_res("a"), job], [running, pending], snapshot(obs("a", container(running, state),
                                                                    container(pending, state, "c1"))))

    assert sorted((c.task_id, c.node, c.container_id) for c in p.collects) == [
        (running.id, "a", "c0"), (pending.id, "a", "c1")]
    assert not p.starts and not p.removals and not p.new_tasks


def test_slot_of_an_exited_container_goes_to_the_next_task_in_the_same_pass():
    """A full node whose task's container exited starts the next queued task while collecting the old one."""
    job = job_res(completions=3, parallelism=3)
    done = task(job, 0, phase=R, node="a", container_id="c0", started_at=1.0)
    busy = task(job, 1, phase=R, node="a", container_id="c1", started_at=1.0)
    queued = task(job, 2, phase=P, created_at=2.0)

    p = run([node_res("a", {"default": 2}), job], [done, busy, queued],
            snapshot(obs("a", container(done, "exited"), container(busy))))

    assert [c.task_id for c in p.collects] == [done.id]
    assert [(s.task_id, s.node) for s in p.starts] == [(queued.id, "a")]
    # With both containers still running, the queued task waits.
    p = run([node_res("a", {"default": 2}), job], [done, busy, queued],
            snapshot(obs("a", container(done), container(busy))))
    assert not p.starts and applied(p, [done, busy, queued])[queued.id].reason == "Unschedulable"


def test_running_container_adopts_pending_task():
    """A container seen running for a Pending task marks the task Running with that container."""
    job = job_res()
    t = task(job, phase=P, node="a", scheduled_at=NOW - 5)

    p = run([node_res("a"), job], [t], snapshot(obs("a", container(t, cid="abc"))))

    after = applied(p, [t])[t.id]
    assert (after.phase, after.container_id, after.node, after.started_at) == (R, "abc", "a", NOW)
    assert not p.starts and not p.removals
    assert status_of(p, Kind.JOB, "job")["phase"] == "Running"


@pytest.mark.parametrize("listed, restarted", [(True, True), (False, False)])
def test_placed_task_without_container_is_started_again_only_if_its_node_answers(listed, restarted):
    """A placed Pending task with no container gets a (re)Start when its node was listed, nothing when it was not."""
    job = job_res()
    t = task(job, phase=P, node="a", scheduled_at=NOW - 5)

    p = run([node_res("a"), job], [t], snapshot(obs("a", listed=listed)))

    assert [s.task_id for s in p.starts] == ([t.id] if restarted else [])
    assert not p.new_tasks and t.id not in p.task_updates


@pytest.mark.parametrize(
    "failures, delay",
    [(1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0), (5, 10.0)],  # initialSeconds 2, maxSeconds 10
)
def test_failed_task_is_retried_after_exponential_backoff(failures, delay):
    """The n-th consecutive failure of an index delays the next attempt by initial * 2^(n-1), capped at max."""
    job = job_res(backoffLimit=10, backoff={"initialSeconds": 2, "maxSeconds": 10})
    finished = NOW - 1
    history = [task(job, 0, a, F, node="a", exit_code=1, started_at=finished - 2, finished_at=finished)
               for a in range(1, failures + 1)]

    p = run([node_res("a"), job], history)

    [new] = p.new_tasks
    assert (new.index, new.attempt, new.phase, new.node) == (0, failures + 1, P, None)
    assert new.not_before == finished + delay
    assert (new.reason, new.message) == ("BackOff", f"attempt {failures + 1} after {failures} failure(s); "
                                                    f"waiting {delay:g}s")
    assert p.next_wake == finished + delay
    assert not p.starts, "not started before its backoff expires"
    assert [e.reason for e in p.events] == ["BackOff"]
    assert status_of(p, Kind.JOB, "job")["failed"] == failures


def test_retry_is_placed_once_its_backoff_has_passed():
    """A waiting retry is placed on the pass after not_before, and no wake-up is asked for."""
    job = job_res(backoffLimit=3)
    failed = task(job, 0, 1, F, node="a", finished_at=NOW - 100)
    retry = task(job, 0, 2, P, created_at=NOW - 100, not_before=NOW - 98)

    p = run([node_res("a"), job], [failed, retry])

    assert [s.task_id for s in p.starts] == [retry.id]
    assert p.next_wake is None and not p.new_tasks


def test_success_resets_the_backoff_count_for_an_index():
    """Only consecutive recent failures count toward an index's backoff."""
    job = job_res(completions=2, backoffLimit=10, backoff={"initialSeconds": 2, "maxSeconds": 100})
    history = [task(job, 0, 1, F, finished_at=NOW - 1), task(job, 0, 2, F, finished_at=NOW - 1),
               task(job, 0, 3, L, finished_at=NOW - 1), task(job, 0, 4, F, finished_at=NOW - 1)]

    p = run([node_res("a"), job], history)

    [new] = p.new_tasks
    assert new.attempt == 5 and new.not_before == NOW - 1 + 2


def test_backoff_limit_exceeded_fails_the_job_and_stops_active_tasks():
    """More failures than backoffLimit: the Job is Failed, its active tasks are stopped and nothing new starts."""
    job = job_res(completions=4, parallelism=3, backoffLimit=1)
    failed = [task(job, 0, 1, F, node="a", exit_code=3, finished_at=NOW - 10),
              task(job, 0, 2, F, node="a", exit_code=3, finished_at=NOW - 5)]
    running = task(job, 1, 1, R, node="a", container_id="run1", started_at=NOW - 20)
    placed = task(job, 2, 1, P, node="a")  # placed, container not created yet
    waiting = task(job, 3, 1, P)  # not placed yet

    tasks = [*failed, running, placed, waiting]
    p = run([node_res("a"), job], tasks, snapshot(obs("a", container(running))))

    status = status_of(p, Kind.JOB, "job")
    assert (status["phase"], status["reason"], status["failed"], status["active"]) == (
        "Failed", "BackoffLimitExceeded", 2, 0)
    assert status["message"] == f"2 failed attempts, backoffLimit 1; last: task {failed[1].id} exited with code 3"
    after = applied(p, tasks)
    for t in (running, placed, waiting):
        assert (after[t.id].phase, after[t.id].reason, after[t.id].finished_at) == (X, "JobFailed", NOW)
    assert p.removals == [Remove("a", "run1", running.id, status["message"], STOP_GRACE_SECONDS, keep_output=True)]
    assert not p.new_tasks and not p.starts
    assert [(e.reason, e.type) for e in p.events if e.task_id is None] == [("BackoffLimitExceeded", "Warning")]


def test_all_completions_succeeded_completes_the_job():
    """When every index succeeded the Job is Complete, with the time of the last finish."""
    job = job_res(completions=3, parallelism=3, status={"phase": "Running"})
    tasks = [task(job, i, 1, S, node="a", exit_code=0, started_at=10.0 + i, finished_at=20.0 + i) for i in range(3)]

    p = run([node_res("a"), job], tasks)

    assert status_of(p, Kind.JOB, "job") == {
        "phase": "Complete", "active": 0, "succeeded": 3, "failed": 0, "reason": "", "message": "",
        "startTime": 10.0, "completionTime": 22.0}
    assert not p.new_tasks and not p.starts and not p.task_updates
    assert [(e.reason, e.message) for e in p.events] == [("Complete", "3 completion(s) succeeded")]


def test_complete_job_stops_a_leftover_duplicate():
    """An active attempt left over when the Job completes is stopped, not started."""
    job = job_res(completions=1, parallelism=1)
    done = task(job, 0, 1, S, finished_at=NOW - 1)
    leftover = task(job, 0, 2, P)

    p = run([node_res("a"), job], [done, leftover])

    assert applied(p, [done, leftover])[leftover.id].phase is X
    assert not p.starts and not p.new_tasks
    assert status_of(p, Kind.JOB, "job")["phase"] == "Complete"


# -- containers and tasks that no longer match ----------------------------------------------


def test_container_whose_task_is_not_in_the_store_is_removed():
    """An orphan container the store made (its name and mark) is removed, a finished one without grace;
    one without a task label is not ours to touch: it is reported instead."""
    stranger, gone = task(job_res("gone"), 0), task(job_res("gone"), 1)
    snap = snapshot(obs("a", container(stranger, "running", "o1"), container(gone, "exited", "o2"),
                        container(None, "exited", "o3")))

    p = run([node_res("a")], [], snap)

    assert sorted((r.container_id, r.task_id, r.grace) for r in p.removals) == [
        ("o1", stranger.id, STOP_GRACE_SECONDS), ("o2", gone.id, 0)]
    assert all(r.reason == "orphan: its task is not in the store" for r in p.removals)
    assert status_of(p, Kind.NODE, "a")["untrusted"] == [f"bk-{STORE_ID}-x"]


@pytest.mark.parametrize("phase", [S, F, X])
@pytest.mark.parametrize("state, finished, grace", [
    ("running", NOW - 100, 0),  # its grace period ended long ago: killed
    ("running", NOW - 4, STOP_GRACE_SECONDS - 4),  # the rest of the grace period of the stop that began then
    ("running", None, STOP_GRACE_SECONDS),
    ("exited", NOW - 4, 0),
])
def test_container_of_a_terminal_task_is_removed(phase, state, finished, grace):
    """A container still present for a task that is over is stopped and removed, never collected;
    the stop keeps the deadline of the grace period that began when the task ended."""
    job = job_res(backoffLimit=10)
    t = task(job, 0, 1, phase, node="a", container_id="old", finished_at=finished)

    p = run([node_res("a"), job], [t], snapshot(obs("a", container(t, state))))

    assert p.removals == [Remove("a", "old", t.id, f"task {t.id} is {phase.value}", grace)]
    assert not p.collects and t.id not in p.task_updates


def test_running_task_whose_container_vanished_is_lost_and_replaced():
    """A Running task with no container on a node that answered is Lost; the Job replaces it without a failure."""
    job = job_res(backoffLimit=0)
    t = task(job, phase=R, node="a", container_id="c" * 64, started_at=NOW - 30)

    p = run([node_res("a"), job], [t], snapshot(obs("a")))

    lost = applied(p, [t])[t.id]
    assert (lost.phase, lost.reason, lost.finished_at) == (L, "ContainerVanished", NOW)
    assert lost.message == "container cccccccccccc disappeared from node a"
    [new] = p.new_tasks
    assert (new.index, new.attempt, new.not_before) == (0, 2, NOW)
    assert [s.task_id for s in p.starts] == [new.id]
    status = status_of(p, Kind.JOB, "job")
    assert (status["phase"], status["failed"], status["active"]) == ("Running", 0, 1)


@pytest.mark.parametrize("node_obs", [obs("a", listed=False), obs("a", ready=False, listed=False), None])
def test_tasks_of_a_node_that_could_not_be_listed_are_left_alone(node_obs):
    """When a node's containers could not be listed its tasks keep their phase and are not replaced."""
    job = job_res(completions=2, parallelism=2)
    running = task(job, 0, phase=R, node="a", container_id="c0", started_at=1.0)
    placed = task(job, 1, phase=P, node="a")
    snap = snapshot(*([node_obs] if node_obs else []))

    p = run([node_res("a"), job], [running, placed], snap)

    assert not p.task_updates and not p.new_tasks and not p.starts and not p.removals and not p.collects


def test_task_of_a_deleted_node_is_lost():
    """An active task on a node that is no longer in the store is Lost with reason NodeDeleted, then replaced."""
    job = job_res()
    t = task(job, phase=R, node="gone", container_id="c0", started_at=1.0)

    p = run([node_res("a"), job], [t])

    lost = applied(p, [t])[t.id]
    assert (lost.phase, lost.reason, lost.message, lost.finished_at) == (L, "NodeDeleted", "node gone was deleted", NOW)
    assert [(e.reason, e.type) for e in p.events if e.task_id == t.id] == [("TaskLost", "Warning")]
    assert [n.attempt for n in p.new_tasks] == [2]


# -- deletion -----------------------------------------------------------------------------


def test_deleted_job_stops_its_tasks_then_is_purged():
    """A deleted Job's active tasks are Stopped and their containers removed; once nothing is left it is purged."""
    job = job_res(completions=3, parallelism=3, deleted_at=NOW - 1)
    running = task(job, 0, phase=R, node="a", container_id="c0", started_at=1.0)
    placed = task(job, 1, phase=P, node="a")
    waiting = task(job, 2, phase=P)
    tasks = [running, placed, waiting]

    first = run([node_res("a"), job], tasks, snapshot(obs("a", container(running))))

    after = applied(first, tasks)
    assert {t.phase for t in after.values()} == {X}
    assert all(t.reason == "Deleted" and t.message == "Job/job was deleted" for t in after.values())
    assert removed(first) == {"c0"}
    assert not first.new_tasks and not first.starts and not first.purges

    # The container is still being removed: not purged yet.
    lingering = run([node_res("a"), job], list(after.values()), snapshot(obs("a", container(running))))
    assert not lingering.purges and removed(lingering) == {"c0"}

    gone = run([node_res("a"), job], list(after.values()), snapshot(obs("a")))
    assert gone.purges == [(Kind.JOB, "job")]
    assert [e.reason for e in gone.events] == ["Deleted"]
    assert not gone.task_updates and not gone.starts


def test_a_deleted_jobs_container_in_a_long_grace_period_stays_tracked():
    """Stopped 100 s ago with a 3600 s grace, its container still runs: not purged, the stop goes on
    with the 3500 s left (after a controller restart too), and the status counts it."""
    job = job_res(terminationGracePeriodSeconds=3600, deleted_at=NOW - 101)
    t = task(job, 0, phase=X, node="a", container_id="c0", started_at=1.0, finished_at=NOW - 100)

    p = run([node_res("a"), job], [t], snapshot(obs("a", container(t))))

    assert not p.purges
    assert [(r.container_id, r.grace) for r in p.removals] == [("c0", 3500.0)]
    assert status_of(p, Kind.JOB, "job")["stoppingContainers"] == 1


@pytest.mark.parametrize("grace, condition, purged", [
    (60, "listed", True),  # nothing seen where it ran
    (60, "unlisted", False),  # it may still run there: wait for the node's next list
    (5, "unlisted", True),  # its grace period is over: the daemon killed it
    (60, "lost", True),  # a Lost node's containers are fenced when it returns
])
def test_a_deleted_job_waits_for_the_node_of_a_recent_stop_to_be_listed(grace, condition, purged):
    job = job_res(terminationGracePeriodSeconds=grace, deleted_at=NOW - 11)
    t = task(job, 0, phase=X, node="a", container_id="c0", started_at=1.0, finished_at=NOW - 10)
    node_obs = {"listed": obs("a"), "unlisted": obs("a", listed=False),
                "lost": replace(obs("a", ready=False, listed=False), failures=5, last_ok=NOW - 60)}[condition]

    p = run([node_res("a"), job], [t], snapshot(node_obs))

    assert p.purges == ([(Kind.JOB, "job")] if purged else [])
    if not purged:
        assert status_of(p, Kind.JOB, "job")["stoppingContainers"] == 1 and p.next_wake == NOW - 10 + grace


def test_deleted_service_with_nothing_left_is_purged_at_once():
    """A deleted Service with no tasks and no containers is purged in one pass."""
    svc = service_res(replicas=2, deleted_at=NOW - 1)

    p = run([node_res("a"), svc], [])

    assert p.purges == [(Kind.SERVICE, "web")] and not p.new_tasks


# -- Services -----------------------------------------------------------------------------


def test_service_creates_one_task_per_replica():
    """A Service with replicas=3 gets tasks for indexes 0-2, spread over the nodes."""
    nodes = [node_res(n, {"default": 2}) for n in "abc"]

    p = run([*nodes, service_res(replicas=3)], [])

    assert sorted((t.index, t.attempt) for t in p.new_tasks) == [(0, 1), (1, 1), (2, 1)]
    assert sorted(s.node for s in p.starts) == ["a", "b", "c"]
    assert status_of(p, Kind.SERVICE, "web").items() >= {"replicas": 3, "running": 0, "ready": 0}.items()


def test_service_scale_down_stops_the_newest_replicas():
    """Scaling a Service down stops the newest replicas (by start time, then index) and keeps the rest."""
    svc = service_res(replicas=1)
    tasks = [task(svc, i, phase=R, node="a", container_id=f"c{i}", started_at=1.0) for i in range(3)]

    p = run([node_res("a"), svc], tasks, snapshot(obs("a", *(container(t) for t in tasks))))

    after = applied(p, tasks)
    assert [after[t.id].phase for t in tasks] == [R, X, X]
    assert after[tasks[1].id].reason == "ScaledDown"
    assert removed(p) == {"c1", "c2"}
    assert not p.new_tasks and not p.starts
    assert status_of(p, Kind.SERVICE, "web").items() >= {"replicas": 1, "running": 1, "ready": 1}.items()


def test_service_scale_down_does_not_start_a_stopped_pending_task():
    """A Pending replica above the new replica count is stopped, not placed or started in the same pass."""
    svc = service_res(replicas=1)
    tasks = [task(svc, 0, phase=R, node="a", container_id="c0", started_at=1.0),
             task(svc, 1, phase=P, node="a"), task(svc, 2, phase=P)]

    p = run([node_res("a"), svc], tasks, snapshot(obs("a", container(tasks[0]))))

    after = applied(p, tasks)
    assert [(after[t.id].phase, after[t.id].reason) for t in tasks[1:]] == [(X, "ScaledDown")] * 2
    assert after[tasks[2].id].node is None
    assert not p.starts


@pytest.mark.parametrize(
    "history, delay",
    [
        ([(F, 5.0)], 1.0),  # one quick crash: 1s
        ([(F, 5.0), (S, 5.0)], 2.0),  # exiting 0 quickly is a crash too
        ([(F, 5.0), (F, 5.0), (F, 5.0)], 4.0),
        ([(F, 5.0), (F, HEALTHY_RUN_SECONDS + 1)], 0.0),  # a long healthy run resets the backoff
        ([(F, 5.0), (X, 5.0)], 0.0),  # stopped by us: not a crash
    ],
)
def test_exited_replica_is_replaced_with_restart_backoff(history, delay):
    """A replica that exits is replaced; quick consecutive exits delay the replacement exponentially."""
    svc = service_res(replicas=1)
    finished = NOW - 0.5
    tasks = [task(svc, 0, a, phase, node="a", started_at=finished - ran, finished_at=finished)
             for a, (phase, ran) in enumerate(history, start=1)]

    p = run([node_res("a"), svc], tasks)

    [new] = p.new_tasks
    assert new.attempt == len(history) + 1
    if delay:
        assert new.not_before == finished + delay and p.next_wake == finished + delay and not p.starts
    else:
        assert new.not_before == NOW and [s.task_id for s in p.starts] == [new.id]


# -- node status --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec_slots, node_obs, slots, condition",
    [
        (None, obs("a", cpus=6), {"default": 6}, "Ready"),
        ({"gpu": 2}, obs("a", cpus=6), {"gpu": 2}, "Ready"),
        ({}, obs("a", cpus=6), {}, "Ready"),
        (None, obs("a", ready=False, listed=False), {}, "NotReady"),  # never probed: no CPU count yet
        (None, None, {}, "Unknown"),
    ],
)
def test_node_status_slots_and_condition(spec_slots, node_obs, slots, condition):
    """Node slots are the spec's, or {default: CPUs the host reports} when the spec omits them."""
    p = run([node_res("a", spec_slots)], [], snapshot(*([node_obs] if node_obs else [])))

    status = status_of(p, Kind.NODE, "a")
    assert (status["slots"], status["condition"], status["since"]) == (slots, condition, NOW)


def test_not_ready_node_keeps_what_it_last_reported():
    """A node that stops answering turns NotReady but keeps its last CPU count (and so its slots)."""
    first = status_of(run([node_res("a")], [], snapshot(obs("a", cpus=3))), Kind.NODE, "a")

    p = run([node_res("a", status=first)], [], snapshot(obs("a", ready=False, listed=False)), now=NOW + 7)

    status = status_of(p, Kind.NODE, "a")
    assert (status["condition"], status["since"], status["slots"], status["cpus"], status["dockerVersion"]) == (
        "NotReady", NOW + 7, {"default": 3}, 3, "27.0")
    assert status["message"] == "connection refused"


def test_statuses_are_not_rewritten_on_an_identical_second_pass():
    """Feeding a pass's statuses back in gives a plan with no status writes and no new events."""
    job = job_res()
    t = task(job, phase=R, node="a", container_id="c0", started_at=NOW - 5)
    snap = snapshot(obs("a", container(t)))
    first = run([node_res("a"), job], [t], snap)
    node_status, job_status = status_of(first, Kind.NODE, "a"), status_of(first, Kind.JOB, "job")
    assert node_status and job_status

    second = run([node_res("a", status=node_status), job_res(status=job_status)], [t], snap, now=NOW + 30)

    assert second.statuses == [] and second.events == [] and second.docker_actions == 0
    assert not second.task_updates and not second.new_tasks


# -- properties over random small worlds -----------------------------------------------------

TYPES = ["default", "gpu"]
CONTAINER_STATES = ["running", "exited", "created", "dead"]


@st.composite
def worlds(draw):
    """A few nodes, a few Jobs, and a consistent-enough history of tasks and containers."""
    node_names = [f"n{i}" for i in range(draw(st.integers(1, 3)))]
    resources, observed = [], {}
    for name in node_names:
        slots = draw(st.one_of(st.none(), st.dictionaries(st.sampled_from(TYPES), st.integers(0, 3), max_size=2)))
        resources.append(node_res(name, slots, unschedulable=draw(st.sampled_from([False, False, False, True]))))
        observed[name] = draw(st.sampled_from(["listed", "listed", "listed", "unlisted", "missing"]))
    containers: dict[str, list[ContainerObs]] = {n: [] for n in node_names}
    tasks = []
    for j in range(draw(st.integers(1, 3))):
        completions, parallelism = draw(st.integers(1, 5)), draw(st.integers(1, 3))
        job = job_res(f"j{j}", completions=completions, parallelism=parallelism, backoffLimit=draw(st.integers(0, 3)),
                      executionType=draw(st.sampled_from(["default", "default", "gpu"])),
                      deleted_at=draw(st.sampled_from([None, None, None, NOW - 1])))
        resources.append(job)
        active = 0
        for index in range(completions):
            for attempt in range(1, draw(st.integers(0, 3)) + 1):
                phase = draw(st.sampled_from(list(TaskPhase)))
                if phase.active and active >= parallelism:
                    phase = F
                active += phase.active
                node = draw(st.sampled_from([None, "gone", *node_names]))
                if phase is R and node is None:
                    node = node_names[0]
                finished = None if phase.active else draw(st.floats(NOW - 100, NOW))
                cid = f"c-{job.name}-{index}-{attempt}" if node and draw(st.booleans()) else None
                t = task(job, index, attempt, phase, node=node, container_id=cid, finished_at=finished,
                         started_at=NOW - 200 if cid else None, created_at=draw(st.floats(0, NOW)),
                         not_before=draw(st.sampled_from([0.0, NOW + 5])) if phase is P and not node else 0.0)
                tasks.append(t)
                if node in containers and draw(st.booleans()):
                    containers[node].append(container(t, draw(st.sampled_from(CONTAINER_STATES)),
                                                      cid or f"x-{t.id}"))
    for name in node_names:  # orphans
        for k in range(draw(st.integers(0, 1))):
            containers[name].append(ContainerObs(f"orphan-{name}-{k}", f"bk-{STORE_ID}-zz-{name}-{k}",
                                                 f"zz-{name}-{k}", "Job/zz", draw(st.sampled_from(CONTAINER_STATES)),
                                                 mark=None))
    for name in node_names:  # made by hand with our labels for some task: never ours
        if tasks and draw(st.booleans()):
            victim = draw(st.sampled_from(tasks))
            containers[name].append(replace(container(victim, draw(st.sampled_from(CONTAINER_STATES)),
                                                      f"forged-{name}"), mark="0" * 64))
    nodes = [obs(n, *containers[n], ready=observed[n] == "listed", listed=observed[n] == "listed",
                 cpus=draw(st.integers(1, 3))) for n in node_names if observed[n] != "missing"]
    return resources, tasks, snapshot(*nodes)


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def exec_type(r: ResourceRecord) -> str:
    return r.spec.get("executionType", "default")


@PROPERTY
@given(worlds())
def test_property_plan_is_deterministic(world):
    """The same resources, tasks and snapshot always give an equal Plan."""
    resources, tasks, snap = world

    first = plan(resources, tasks, snap, NOW, STORE_ID, MARK_KEY)
    again = plan([replace(r) for r in resources], list(tasks), Snapshot(dict(snap.nodes), snap.taken_at), NOW, STORE_ID, MARK_KEY)

    assert first == again


@PROPERTY
@given(worlds())
def test_property_active_tasks_per_job_never_exceed_parallelism(world):
    """After a pass's decisions, no Job has more active tasks than its parallelism."""
    resources, tasks, snap = world
    p = plan(resources, tasks, snap, NOW, STORE_ID, MARK_KEY)

    active = Counter(t.owner_name for t in applied(p, tasks).values() if t.active)
    for r in resources:
        if r.kind is Kind.JOB:
            assert active[r.name] <= r.model.spec.parallelism


@PROPERTY
@given(worlds())
def test_property_placements_never_overfill_a_node(world):
    """Wherever a pass places a task, the node ends with no more active tasks of that type than its
    slots, not counting tasks whose exited containers are being collected."""
    resources, tasks, snap = world
    p = plan(resources, tasks, snap, NOW, STORE_ID, MARK_KEY)

    owners = {r.name: r for r in resources if r.kind is Kind.JOB}
    statuses = {name: s for kind, name, s in p.statuses if kind is Kind.NODE}
    after = applied(p, tasks)
    collected = {c.task_id for c in p.collects}  # their containers have exited: they hold no slot
    used = Counter((t.node, exec_type(owners[t.owner_name])) for t in after.values()
                   if t.active and t.node and t.id not in collected)
    placed = {(after[tid].node, exec_type(owners[after[tid].owner_name]))
              for tid, ch in p.task_updates.items() if "scheduled_at" in ch}
    for node, typ in placed:
        slots = statuses[node]["slots"] if node in statuses else {}
        assert used[(node, typ)] <= slots.get(typ, 0)
        assert node in snap.nodes and snap.nodes[node].ready


@PROPERTY
@given(worlds())
def test_property_only_known_containers_are_touched(world):
    """Every Remove and Collect names a container seen in the snapshot or recorded on a task."""
    resources, tasks, snap = world
    p = plan(resources, tasks, snap, NOW, STORE_ID, MARK_KEY)

    seen = {(n.name, c.id) for n in snap.nodes.values() for c in n.containers or ()}
    recorded = {(t.node, t.container_id) for t in tasks if t.container_id}
    for action in [*p.removals, *p.collects]:
        assert (action.node, action.container_id) in seen | recorded


@PROPERTY
@given(worlds())
def test_property_untrusted_containers_are_never_touched_or_adopted(world):
    """A container with our labels but a bad mark is never removed, collected or recorded on a task."""
    resources, tasks, snap = world
    p = plan(resources, tasks, snap, NOW, STORE_ID, MARK_KEY)

    assert not [a for a in [*p.removals, *p.collects] if a.container_id.startswith("forged-")]
    assert not [ch for ch in p.task_updates.values() if str(ch.get("container_id", "")).startswith("forged-")]
    for n in snap.nodes.values():
        forged = sorted(c.name for c in n.containers or () if c.id.startswith("forged-"))
        status = status_of(p, Kind.NODE, n.name)
        if forged and status is not None:
            assert set(forged) <= set(status["untrusted"])


@PROPERTY
@given(worlds())
def test_property_starts_are_only_for_tasks_that_stay_active(world):
    """A Start is issued only for a task that is active and placed on that node after the pass."""
    resources, tasks, snap = world
    p = plan(resources, tasks, snap, NOW, STORE_ID, MARK_KEY)

    after = applied(p, tasks)
    for start in p.starts:
        t = after[start.task_id]
        assert t.active and t.node == start.node
        assert start.node in snap.nodes and snap.nodes[start.node].containers is not None
        assert start.spec.labels[LABEL_TASK] == t.id
    assert len({s.task_id for s in p.starts}) == len(p.starts)
