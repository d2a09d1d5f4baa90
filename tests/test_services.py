"""Tests for Services in the pure planner (reconciler.engine.services): restarts, health, scaling,
rolling updates, ports, spread.

Like ``test_plan``, each test builds resource rows, task rows and one observation of the hosts,
calls ``plan`` with an explicit ``now`` and checks the Plan. Rolling updates are followed over
several passes by ``factories.World``, which feeds each pass's decisions back in as the next
pass's tasks, containers and Service status (what ``act`` and the hosts would do).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from factories import (
    NEW, NOW, F, P, R, S, X, World, applied, container, ctr, node_res, obs, removed, run, running, service_res,
    snapshot, status_of, svc, task,
)
from reconciler.engine.actions import Plan, Remove
from reconciler.engine.placement import PORT_RETRY_SECONDS
from reconciler.engine.services import HEALTHY_RUN_SECONDS
from reconciler.records import LABEL_TEMPLATE, TaskRecord
from reconciler.spec.models import Kind, PortBinding, template_hash


def updates(p: Plan, t: TaskRecord) -> dict:
    return p.task_updates.get(t.id, {})


# -- restarts and health ------------------------------------------------------------------


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


@pytest.mark.parametrize("failures, delay", [(1, 3.0), (2, 6.0), (3, 10.0), (6, 10.0)])
def test_restart_backoff_uses_the_spec_restart_values(failures, delay):
    """Quick consecutive exits of a replica delay its replacement by restart.initialSeconds * 2^(n-1), capped at maxSeconds."""
    web = svc(replicas=1, restart={"initialSeconds": 3, "maxSeconds": 10})
    finished = NOW - 0.5
    history = [task(web, 0, a, F, node="a", exit_code=1, started_at=finished - 1, finished_at=finished)
               for a in range(1, failures + 1)]

    p = run([node_res("a"), web], history)

    [new] = p.new_tasks
    assert (new.index, new.attempt, new.not_before) == (0, failures + 1, finished + delay)
    assert (new.reason, new.message) == ("BackOff", f"attempt {failures + 1} after {failures} failure(s); "
                                                    f"waiting {delay:g}s")
    assert p.next_wake == finished + delay and not p.starts
    status = status_of(p, Kind.SERVICE, "web")
    assert (status["restarts"], status["restartBackoffSeconds"], status["running"]) == (failures, delay, 0)


@pytest.mark.parametrize(
    "ran, not_before, started",
    [
        (100.0, NOW, True),  # long healthy run: no backoff
        (5.0, NOW + 1.0, False),  # unhealthy soon after starting: restart.initialSeconds (1 s by default)
    ],
)
def test_unhealthy_replica_is_failed_and_replaced(ran, not_before, started):
    """A replica Docker reports unhealthy is Failed (reason Unhealthy), its container stopped, and a new attempt made."""
    web = svc(replicas=1, terminationGracePeriodSeconds=7)
    sick = running(web, 0, started=NOW - ran)

    p = run([node_res("a"), web], [sick], snapshot(obs("a", ctr(sick, "unhealthy"))))

    after = applied(p, [sick])[sick.id]
    assert (after.phase, after.reason, after.finished_at) == (F, "Unhealthy", NOW)
    assert after.message == f"container {sick.container_id} reported unhealthy; replaced"
    assert p.removals == [Remove("a", sick.container_id, sick.id, after.message, grace=7, keep_output=True)]
    [new] = p.new_tasks
    assert (new.index, new.attempt, new.not_before) == (0, 2, not_before)
    assert [s.task_id for s in p.starts] == ([new.id] if started else [])
    assert [(e.reason, e.type, e.task_id) for e in p.events if e.reason == "Unhealthy"] == [
        ("Unhealthy", "Warning", sick.id)]
    status = status_of(p, Kind.SERVICE, "web")
    assert (status["restarts"], status["ready"]) == (1, 0)


@pytest.mark.parametrize("health, ready", [(None, 1), ("healthy", 1), ("starting", 0)])
def test_starting_health_is_running_but_not_ready(health, ready):
    """A replica whose health check is still starting counts as running, not ready, and is left alone."""
    web = svc(replicas=1)
    t = running(web, 0)

    p = run([node_res("a"), web], [t], snapshot(obs("a", ctr(t, health))))

    status = status_of(p, Kind.SERVICE, "web")
    assert (status["running"], status["ready"], status["updated"]) == (1, ready, ready)
    assert not p.new_tasks and not p.removals and not p.task_updates


# -- scaling ------------------------------------------------------------------------------


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
    "replicas, stopped",
    [
        (4, []),
        (3, [3]),  # the unplaced Pending replica (not ready) goes first
        (2, [3, 1]),  # then the starting one, though it is the oldest
        (1, [3, 1, 2]),  # then the newest ready replica
        (0, [3, 1, 2, 0]),
    ],
)
def test_scale_down_stops_not_ready_replicas_first_then_the_newest(replicas, stopped):
    """Scaling down stops replicas that are not ready before ready ones, and among those the newest start first."""
    web = svc(replicas=replicas)
    tasks = [running(web, 0, started=NOW - 50), running(web, 1, started=NOW - 90), running(web, 2, started=NOW - 10),
             task(web, 3, created_at=NOW - 1)]
    snap = snapshot(obs("a", ctr(tasks[0], "healthy"), ctr(tasks[1], "starting"), ctr(tasks[2], "healthy")))

    p = run([node_res("a"), web], tasks, snap)

    after = applied(p, tasks)
    assert [t.index for t in tasks if after[t.id].phase is X] == sorted(stopped)
    assert all(after[tasks[i].id].reason == "ScaledDown" for i in stopped)
    assert removed(p) == {tasks[i].container_id for i in stopped if tasks[i].container_id}
    assert not p.new_tasks
    assert [s.task_id for s in p.starts] == ([] if 3 in stopped else [tasks[3].id]), "a stopped replica is not placed"


def test_scale_to_zero_keeps_nothing_running():
    """replicas: 0 stops every active replica, starts nothing, and a later pass creates nothing either."""
    web = svc(replicas=0)
    tasks = [running(web, 0), running(web, 1, node="b"), task(web, 2, node="a"), task(web, 3)]
    snap = snapshot(obs("a", ctr(tasks[0])), obs("b", ctr(tasks[1])))
    nodes = [node_res("a"), node_res("b")]

    p = run([*nodes, web], tasks, snap)

    after = applied(p, tasks)
    assert all(t.phase is X and t.reason == "ScaledDown" for t in after.values())
    assert removed(p) == {"c0-1", "c1-1"}
    assert not p.new_tasks and not p.starts
    status = status_of(p, Kind.SERVICE, "web")
    assert (status["replicas"], status["running"], status["ready"], status["rollout"]["state"]) == (0, 0, 0, "Complete")

    later = run([*nodes, replace(web, status=status)], list(after.values()), snapshot(obs("a"), obs("b")), NOW + 5)
    assert not later.new_tasks and not later.starts and not later.task_updates


# -- rolling updates ------------------------------------------------------------------------


def test_rolling_update_surges_one_replica_at_a_time():
    """maxSurge 1, maxUnavailable 0: one new replica next to the old ones, an old one stopped only once it is available."""
    nodes = [node_res(n, {"default": 4}) for n in "ab"]
    world = World(svc(replicas=3), nodes)
    now = world.settle(NOW, passes=4)
    old = template_hash(world.service.model.spec)
    assert world.service.status["stableRevision"] == old and len(world.available(now, 2)) == 3

    new = world.apply(replicas=3, template=NEW)
    world.step(now)
    status = world.service.status
    assert (status["revision"], status["stableRevision"]) == (new, old)
    assert {k: status["rollout"][k] for k in ("revision", "state", "startedAt", "updated")} == {
        "revision": new, "state": "Progressing", "startedAt": now, "updated": 0}
    replaced_order = []
    for _ in range(30):
        world.step(now)
        hashes = Counter(t.template_hash for t in world.active)
        assert len(world.active) <= 3 + 1, "never more than replicas + maxSurge"
        assert len(world.available(now, 2)) >= 3, "never fewer than replicas available"
        assert sum(t.template_hash == new and t not in world.available(now, 2) for t in world.active) <= 1
        replaced_order += [t.index for t in world.tasks.values() if t.reason == "Replaced" and t.finished_at == now]
        if hashes == {new: 3} and world.service.status["rollout"]["state"] == "Complete":
            break
        now += 1.0
    else:
        pytest.fail(f"rollout did not complete: {world.service.status['rollout']}")

    assert replaced_order == [0, 1, 2]
    status = world.service.status
    assert (status["revision"], status["stableRevision"], status["updated"], status["ready"]) == (new, new, 3, 3)
    assert status["rollout"]["message"] == f"3 replica(s) ready at template {new}"
    assert [e.reason for e in world.events].count("RolloutComplete") == 2  # the first rollout, then this one
    stopped = [t for t in world.tasks.values() if t.template_hash == old]
    assert len(stopped) == 3 and all(t.phase is X and t.reason == "Replaced" for t in stopped)
    assert all(c.task_id in {t.id for t in world.active} for cs in world.containers.values() for c in cs.values())


def test_rolling_update_without_surge_stops_an_old_replica_first():
    """maxSurge 0, maxUnavailable 1: an old replica is stopped before its replacement starts, one at a time."""
    nodes = [node_res(n, {"default": 4}) for n in "ab"]
    update = {"maxSurge": 0, "maxUnavailable": 1}
    world = World(svc(replicas=3, update=update), nodes)
    now = world.settle(NOW, passes=2)

    new = world.apply(replicas=3, update=update, template=NEW)
    first = world.step(now)
    stopped = [t for t in world.tasks.values() if updates(first, t).get("reason") == "Replaced"]
    assert [t.index for t in stopped] == [0]
    assert [(t.index, t.template_hash) for t in first.new_tasks] == [(0, new)]
    for _ in range(30):
        assert len(world.active) <= 3, "never more than replicas"
        assert len(world.available(now, 2)) >= 3 - 1, "never more than maxUnavailable below replicas"
        if world.service.status["rollout"]["state"] == "Complete":
            break
        now += 1.0
        world.step(now)
    else:
        pytest.fail(f"rollout did not complete: {world.service.status['rollout']}")
    assert sorted((t.index, t.template_hash) for t in world.active) == [(0, new), (1, new), (2, new)]


def test_new_replica_must_stay_ready_min_ready_seconds_before_the_old_one_stops():
    """The old replica of an index is stopped only once the new one has been ready for minReadySeconds."""
    update = {"minReadySeconds": 30}
    before = svc(replicas=1, update=update)
    web = svc(replicas=1, update=update, template=NEW)
    old = running(before, 0, started=NOW - 1000)
    new = running(web, 0, 2, started=NOW - 10)
    snap = snapshot(obs("a", ctr(old), ctr(new)))

    early = run([node_res("a"), web], [old, new], snap)

    assert not early.task_updates and not early.removals
    assert early.next_wake == new.started_at + 30
    assert status_of(early, Kind.SERVICE, "web")["updated"] == 0

    due = run([node_res("a"), web], [old, new], snap, now=new.started_at + 30)

    assert (updates(due, old)["phase"], updates(due, old)["reason"]) == (X, "Replaced")
    assert removed(due) == {old.container_id} and new.id not in due.task_updates
    assert status_of(due, Kind.SERVICE, "web")["rollout"]["state"] == "Complete"


def _stuck_rollout(progress_at: float, *, auto: bool, stable: str | None):
    """A Service mid-rollout whose one new replica never turns healthy."""
    before = svc(replicas=1)
    web = svc(replicas=1, template=NEW, update={"autoRollback": auto}, healthCheck={"command": "true"})
    want = template_hash(web.model.spec)
    web = replace(web, status={"stableRevision": stable, "rollout": {
        "revision": want, "state": "Progressing", "startedAt": progress_at, "progressAt": progress_at,
        "updated": 0, "message": ""}})
    old = running(before, 0, started=NOW - 1000)
    new = running(web, 0, 2, started=progress_at + 1)
    snap = snapshot(obs("a", ctr(old, "healthy"), ctr(new, "starting")))
    return web, want, old, new, snap


def test_progress_deadline_pauses_the_rollout():
    """No new replica ready for progressDeadlineSeconds: the rollout is Paused with a message and a Warning event."""
    web, want, old, new, snap = _stuck_rollout(NOW - 120, auto=False, stable=template_hash(svc().model.spec))

    waiting = run([node_res("a"), web], [old, new], snap, now=NOW - 1)
    assert status_of(waiting, Kind.SERVICE, "web")["rollout"]["state"] == "Progressing"
    assert waiting.next_wake == NOW and not waiting.events

    p = run([node_res("a"), web], [old, new], snap)

    rollout = status_of(p, Kind.SERVICE, "web")["rollout"]
    assert rollout["state"] == "Paused"
    assert rollout["message"] == (f"ProgressDeadlineExceeded: no new replica became ready in 120s; "
                                  f"task {new.id} is starting")
    assert [(e.reason, e.type, e.message) for e in p.events] == [("RolloutPaused", "Warning", rollout["message"])]
    assert p.rollbacks == [], "autoRollback is off"
    assert not p.task_updates and not p.removals, "both replicas are left as they are"


@pytest.mark.parametrize("stable, rolls_back", [("0123456789", True), (None, False)])
def test_auto_rollback_returns_to_the_stable_revision(stable, rolls_back):
    """autoRollback: a paused rollout asks for the last complete revision back (when there is one)."""
    web, want, old, new, snap = _stuck_rollout(NOW - 500, auto=True, stable=stable)

    p = run([node_res("a"), web], [old, new], snap)

    message = status_of(p, Kind.SERVICE, "web")["rollout"]["message"]
    if rolls_back:
        assert p.rollbacks == [("web", stable, f"autoRollback from {want}: {message}", "default")]
        assert ("RollingBack", f"returning to template {stable}") in [(e.reason, e.message) for e in p.events]
    else:
        assert p.rollbacks == [] and "RollingBack" not in [e.reason for e in p.events]


def test_paused_rollout_starts_no_more_new_replicas():
    """While Paused, indexes still on the old template are not surged, though maxSurge would allow it."""
    before = svc(replicas=2)
    web = svc(replicas=2, template=NEW, update={"maxSurge": 2})
    want = template_hash(web.model.spec)
    web = replace(web, status={"rollout": {"revision": want, "state": "Paused", "startedAt": NOW - 500,
                                           "progressAt": NOW - 500, "updated": 0, "message": "stuck"}})
    old = [running(before, i) for i in range(2)]
    new = running(web, 0, 2, started=NOW - 400)
    snap = snapshot(obs("a", ctr(old[0]), ctr(old[1]), ctr(new, "starting")))

    p = run([node_res("a"), web], [*old, new], snap)

    assert not p.new_tasks and not p.task_updates and not p.starts
    unpaused = run([node_res("a"), replace(web, status={})], [*old, new], snap)
    assert [(t.index, t.template_hash) for t in unpaused.new_tasks] == [(1, want)], "Progressing: index 1 surges"


def test_duplicate_current_template_replica_of_an_index_is_superseded():
    """Two tasks of the current template at one index: the ready (then oldest) is kept, the other Superseded."""
    web = svc(replicas=1)
    want = template_hash(web.model.spec)
    starting = running(web, 0, 1, started=NOW - 60)
    ready = running(web, 0, 2, started=NOW - 30, node="b")
    waiting = task(web, 0, 3, created_at=NOW - 5)
    snap = snapshot(obs("a", ctr(starting, "starting")), obs("b", ctr(ready, "healthy")))

    p = run([node_res("a"), node_res("b"), web], [starting, ready, waiting], snap)

    after = applied(p, [starting, ready, waiting])
    assert [(after[t.id].phase, after[t.id].reason) for t in (starting, ready, waiting)] == [
        (X, "Superseded"), (R, ""), (X, "Superseded")]
    assert after[starting.id].message == f"index 0 already has {ready.id} at template {want}"
    assert removed(p) == {starting.container_id} and not p.new_tasks and not p.starts


def test_unplaced_pending_replica_takes_the_new_template():
    """A replica still waiting for a node is switched to the new template instead of being replaced."""
    before = svc(replicas=1)
    web = svc(replicas=1, template=NEW)
    want = template_hash(web.model.spec)
    waiting = task(before, 0, created_at=NOW - 5)
    assert waiting.template_hash != want

    p = run([node_res("a"), web], [waiting])

    assert updates(p, waiting)["template_hash"] == want and updates(p, waiting)["node"] == "a"
    assert not p.new_tasks
    [start] = p.starts
    assert (start.task_id, start.spec.image) == (waiting.id, "nginx:2")
    assert start.spec.labels[LABEL_TEMPLATE] == want


@pytest.mark.parametrize("health", ["starting", None])
def test_old_replica_that_is_not_available_is_replaced_at_once(health):
    """An old-template replica that is not available (placed but not started, or not ready) has nothing to
    protect: it is Replaced in the same pass, without waiting for a surge slot."""
    before = svc(replicas=2)
    web = svc(replicas=2, template=NEW, update={"maxSurge": 1, "maxUnavailable": 0})
    want = template_hash(web.model.spec)
    up = running(before, 0)
    other = running(before, 1) if health else task(before, 1, node="a", scheduled_at=NOW - 1, created_at=NOW - 2)
    snap = snapshot(obs("a", ctr(up), *([ctr(other, health)] if health else [])))

    p = run([node_res("a"), web], [up, other], snap)

    assert (updates(p, other)["phase"], updates(p, other)["reason"]) == (X, "Replaced")
    assert removed(p) == ({other.container_id} if health else set())
    assert sorted((t.index, t.template_hash) for t in p.new_tasks) == [(0, want), (1, want)], "index 0 surges"
    assert {s.spec.labels[LABEL_TEMPLATE] for s in p.starts} == {want}
    assert {s.spec.image for s in p.starts} == {"nginx:2"}
    assert up.id not in p.task_updates, "the available old replica stays until its replacement is available"


# -- status ---------------------------------------------------------------------------------


def test_service_status_fields():
    """status: replicas, running, ready, updated (available at the current template), restarts, backoff, revision."""
    web = svc(replicas=3, restart={"initialSeconds": 4, "maxSeconds": 60})
    want = template_hash(web.model.spec)
    tasks = [running(web, 0), running(web, 1, node="b"),
             task(web, 2, 1, F, node="a", exit_code=1, started_at=NOW - 10, finished_at=NOW - 9),
             task(web, 2, 2, F, node="a", exit_code=1, started_at=NOW - 3, finished_at=NOW - 2)]
    snap = snapshot(obs("a", ctr(tasks[0], "healthy")), obs("b", ctr(tasks[1], "starting")))

    p = run([node_res("a"), node_res("b"), web], tasks, snap)

    [retry] = p.new_tasks
    assert (retry.index, retry.attempt, retry.not_before) == (2, 3, NOW - 2 + 8)
    status = status_of(p, Kind.SERVICE, "web")
    rollout = status.pop("rollout")
    assert status == {"replicas": 3, "running": 2, "ready": 1, "updated": 1, "revision": want, "stableRevision": None,
                      "restarts": 2, "restartBackoffSeconds": 8.0}
    assert (rollout["revision"], rollout["state"], rollout["updated"], rollout["startedAt"]) == (
        want, "Progressing", 1, NOW)


# -- placement: ports, maxPerNode, spread -------------------------------------------------------


def test_port_in_use_retry_avoids_that_node_without_backoff():
    """A replica that failed with PortInUse is retried at once, on another node, for PORT_RETRY_SECONDS."""
    web = svc(replicas=1, template={"image": "nginx", "ports": ["8080:80"]})
    failed = task(web, 0, 1, F, node="a", reason="PortInUse", message="port is already allocated",
                  started_at=None, finished_at=NOW - 5)
    nodes = [node_res("a", {"default": 4}), node_res("b", {"default": 1})]  # a is the less busy

    p = run([*nodes, web], [failed])

    [new] = p.new_tasks
    assert (new.attempt, new.not_before, new.reason) == (2, NOW, "")
    assert [s.node for s in p.starts] == ["b"]
    assert p.next_wake == NOW - 5 + PORT_RETRY_SECONDS
    assert status_of(p, Kind.SERVICE, "web")["restarts"] == 0

    alone = run([nodes[0], web], [failed])
    [new] = alone.new_tasks
    assert applied(alone, [failed])[new.id].message == "0/1 nodes: 1 host port in use outside brokerctl"

    later = run([nodes[0], web], [failed], now=NOW - 5 + PORT_RETRY_SECONDS)
    assert [s.node for s in later.starts] == ["a"], "the node is tried again once the retry window passed"


@pytest.mark.parametrize(
    "port, placed, reason",
    [
        ("8080:80", 2, "0/2 nodes: 2 host port 8080/tcp in use"),
        ("127.0.0.1:8080:80/udp", 2, "0/2 nodes: 2 host port 8080/udp in use"),
        ("80", 3, None),  # Docker picks a free host port: no conflict
    ],
)
def test_replicas_publishing_one_host_port_cannot_share_a_node(port, placed, reason):
    """Replicas that publish the same host port go to different nodes; one with nowhere left stays Pending."""
    web = svc(replicas=3, template={"image": "nginx", "ports": [port]})

    p = run([node_res("a", {"default": 4}), node_res("b", {"default": 4}), web], [])

    assert len(p.starts) == placed
    after = applied(p, [])
    waiting = [t for t in after.values() if t.node is None]
    assert len(waiting) == 3 - placed
    assert all((t.phase, t.reason, t.message) == (P, "Unschedulable", reason) for t in waiting)
    if reason:
        assert len({s.node for s in p.starts}) == 2


def test_host_port_of_a_running_replica_blocks_its_node():
    """A host port published by a replica already running on a node keeps a new replica off that node."""
    web = svc(replicas=2, template={"image": "nginx", "ports": ["9000:80"]})
    up = running(web, 0, node="a")

    p = run([node_res("a", {"default": 8}), node_res("b", {"default": 1}), web], [up],
            snapshot(obs("a", ctr(up)), obs("b")))

    assert [s.node for s in p.starts] == ["b"]


@pytest.mark.parametrize("max_per_node, placed", [(1, 2), (2, 4), (None, 5)])
def test_max_per_node_caps_replicas_on_each_node(max_per_node, placed):
    """maxPerNode: at most that many replicas per node; the rest wait with the reason."""
    spec = {"replicas": 5} | ({"maxPerNode": max_per_node} if max_per_node else {})
    web = svc(**spec)

    p = run([node_res("a", {"default": 8}), node_res("b", {"default": 8}), web], [])

    per_node = Counter(s.node for s in p.starts)
    assert sum(per_node.values()) == placed
    assert max(per_node.values()) <= (max_per_node or 5)
    waiting = [t for t in applied(p, []).values() if t.node is None]
    assert [t.message for t in waiting] == [f"0/2 nodes: 2 maxPerNode {max_per_node} reached"] * (5 - placed)


def test_replicas_being_replaced_do_not_count_toward_max_per_node():
    """During an update, a surge replica may join a node whose only replica of the Service is being replaced."""
    before = svc(replicas=2, maxPerNode=1)
    web = svc(replicas=2, maxPerNode=1, template=NEW)
    old = [running(before, 0, node="a"), running(before, 1, node="b")]

    p = run([node_res("a"), node_res("b"), web], old, snapshot(obs("a", ctr(old[0])), obs("b", ctr(old[1]))))

    [new] = p.new_tasks
    assert new.index == 0 and [s.node for s in p.starts] == ["a"]


def test_replicas_spread_one_per_node_before_a_second():
    """Spread places a Service's replicas one per node first, even on a node busier with other work."""
    nodes = [node_res("a", {"default": 10}), node_res("b", {"default": 10}), node_res("c", {"default": 10})]
    other = svc("other", replicas=6, nodeName="b")
    busy = [running(other, i, node="b") for i in range(6)]
    snap = snapshot(obs("a"), obs("b", *(ctr(t) for t in busy)), obs("c"))

    three = run([*nodes, other, svc(replicas=3)], busy, snap)
    assert sorted(s.node for s in three.starts) == ["a", "b", "c"]

    six = run([*nodes, other, svc(replicas=6)], busy, snap)
    assert Counter(s.node for s in six.starts) == {"a": 2, "b": 2, "c": 2}


# -- container spec -------------------------------------------------------------------------


def test_container_spec_carries_health_check_ports_network_and_template_label():
    """A replica's container gets the health check (Docker's shape, nanoseconds), ports, network and template label."""
    web = svc(replicas=1, template={"image": "nginx", "ports": ["8080:80", "127.0.0.1:5353:53/udp", "9000"],
                                    "network": "backend"},
              healthCheck={"command": ["curl", "-f", "http://localhost/"], "intervalSeconds": 2.5,
                           "timeoutSeconds": 1, "retries": 4, "startPeriodSeconds": 0.5})

    p = run([node_res("a"), web], [])

    [start] = p.starts
    spec = start.spec
    assert spec.healthcheck == {"test": ["CMD", "curl", "-f", "http://localhost/"], "interval": 2_500_000_000,
                                "timeout": 1_000_000_000, "retries": 4, "start_period": 500_000_000}
    assert spec.ports == (PortBinding("", 8080, 80, "tcp"), PortBinding("127.0.0.1", 5353, 53, "udp"),
                          PortBinding("", None, 9000, "tcp"))
    assert spec.network == "backend"
    assert spec.labels[LABEL_TEMPLATE] == template_hash(web.model.spec) == p.new_tasks[0].template_hash


@pytest.mark.parametrize(
    "health, test",
    [(None, None), ({"command": "curl -f localhost || exit 1"}, ["CMD-SHELL", "curl -f localhost || exit 1"])],
)
def test_container_spec_health_check_shell_form_and_defaults(health, test):
    """A string health command runs under the shell (CMD-SHELL) with default timings; none gives no healthcheck."""
    web = svc(replicas=1, **({"healthCheck": health} if health else {}))

    [start] = run([node_res("a"), web], []).starts

    if test is None:
        assert start.spec.healthcheck is None and start.spec.ports == () and start.spec.network is None
    else:
        assert start.spec.healthcheck == {"test": test, "interval": 10_000_000_000, "timeout": 5_000_000_000,
                                          "retries": 3, "start_period": 0}
