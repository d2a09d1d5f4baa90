"""Tests for reconciler.engine.plan: the whole pure reconcile pass, no Docker. Containers started,
placed, collected and adopted (``matching``, ``placement``, ``containers``), tasks and containers
that no longer match, deletion, and properties over random small worlds. Jobs, Services and
Nodes have their own modules (``test_jobs``, ``test_services``, ``test_nodes``).

Each test builds a small world (resource rows, task rows, one observation of the hosts), calls
``plan`` with an explicit ``now`` and checks the Plan it returns.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factories import (
    MARK_KEY, NOW, STORE_ID, F, L, P, R, S, X, applied, container, job_res, node_res, obs, removed, resource, run,
    service_res, snapshot, status_of, task,
)
from reconciler.engine.actions import STOP_GRACE_SECONDS, Remove
from reconciler.engine.plan import plan
from reconciler.records import (
    LABEL_ATTEMPT, LABEL_INDEX, LABEL_MARK, LABEL_NAMESPACE, LABEL_OWNER, LABEL_STORE, LABEL_TASK, LABEL_TEMPLATE,
    ContainerObs, ResourceRecord, Snapshot, container_mark, container_name,
)
from reconciler.spec.models import Kind, TaskPhase


# -- containers: start, place, collect, adopt ----------------------------------------------


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
    assert spec.labels == {"team": "x", LABEL_STORE: STORE_ID, LABEL_OWNER: "Job/j", LABEL_NAMESPACE: "default",
                           LABEL_TASK: t.id,
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
    assert gone.purges == [(Kind.JOB, "default", "job")]
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

    assert p.purges == ([(Kind.JOB, "default", "job")] if purged else [])
    if not purged:
        assert status_of(p, Kind.JOB, "job")["stoppingContainers"] == 1 and p.next_wake == NOW - 10 + grace


def test_deleted_service_with_nothing_left_is_purged_at_once():
    """A deleted Service with no tasks and no containers is purged in one pass."""
    svc = service_res(replicas=2, deleted_at=NOW - 1)

    p = run([node_res("a"), svc], [])

    assert p.purges == [(Kind.SERVICE, "default", "web")] and not p.new_tasks


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
    statuses = {name: s for kind, _, name, s in p.statuses if kind is Kind.NODE}
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
