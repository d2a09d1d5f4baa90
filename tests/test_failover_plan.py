"""Node health and failover in the pure planner: conditions, Lost tasks, fencing, late results, drain.

Like ``test_plan``, each test builds resource rows, task rows and one observation of the hosts
(now with the prober's ``failures``/``last_ok``/``failing_since``), calls ``plan`` with an
explicit ``now`` and checks the Plan. ``Cluster`` follows an outage over several passes, feeding
each pass's decisions back in the way ``act`` and the hosts would; a drain of a Service is
followed with ``factories.World``.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from factories import (
    MARK_KEY, NOW, STORE_ID, F, L, P, R, S, X, World, applied, container, ctr, job_res, node_res, obs, removed, run,
    running, snapshot, status_of, svc, task,
)
from reconciler.engine.actions import Collect, Plan, Remove
from reconciler.engine.matching import FENCE_SETTLE_SECONDS
from reconciler.engine.nodes import lost_at, node_status
from reconciler.engine.plan import plan
from reconciler.records import ContainerObs, NodeObs, ResourceRecord, Snapshot, TaskRecord
from reconciler.spec.models import Kind

PROBE_ERROR = "Error while fetching server API version: connection refused"


# -- factories ----------------------------------------------------------------------------


def up(name: str, *containers: ContainerObs, at: float = NOW) -> NodeObs:
    """A node whose probes succeed (last one at ``at``) and whose containers were listed."""
    return replace(obs(name, *containers), last_ok=at)


def down(name: str, *, failures: int = 5, last_ok: float | None = NOW - 60,
         failing_since: float | None = None) -> NodeObs:
    """A node whose last ``failures`` probes failed; it is not listed (its containers are unknown)."""
    if failing_since is None and last_ok is not None:
        failing_since = last_ok + 1
    return NodeObs(name, ready=False, message=PROBE_ERROR, containers=None, failures=failures, last_ok=last_ok,
                   failing_since=failing_since)


def lost_node(name: str = "a") -> NodeObs:
    """Silent for a minute: Lost under the default lost_after of 3 s."""
    return down(name, failures=60, last_ok=NOW - 60)


def draining(name: str, deadline: float, **spec) -> ResourceRecord:
    """A Node as ``brokerctl drain`` leaves it: unschedulable, with a drain deadline."""
    return replace(node_res(name, unschedulable=True, **spec), drain_deadline=deadline)


def exited(t: TaskRecord, code: int | None = 0, state: str = "exited") -> ContainerObs:
    return replace(container(t, state), exit_code=code)


def events(p: Plan, reason: str) -> list:
    return [e for e in p.events if e.reason == reason]


# -- node conditions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "node_obs, lost_after_seconds, lost_after, condition",
    [
        pytest.param(up("a"), None, 3.0, "Ready", id="probes-succeed"),
        pytest.param(None, None, 3.0, "Unknown", id="not-observed"),
        pytest.param(down("a", failures=0, last_ok=None, failing_since=None), None, 3.0, "NotReady",
                     id="not-probed-yet"),
        pytest.param(down("a", failures=1, last_ok=NOW - 100), None, 3.0, "NotReady", id="one-failure-is-never-lost"),
        pytest.param(down("a", failures=2, last_ok=NOW - 2.9), None, 3.0, "NotReady", id="two-failures-before-limit"),
        pytest.param(down("a", failures=2, last_ok=NOW - 3.0), None, 3.0, "Lost", id="two-failures-at-limit"),
        pytest.param(down("a", failures=9, last_ok=NOW - 60), None, 3.0, "Lost", id="long-silence"),
        pytest.param(down("a", failures=2, last_ok=NOW - 5), None, 10.0, "NotReady", id="controller-lost-after"),
        pytest.param(down("a", failures=2, last_ok=NOW - 10), None, 10.0, "Lost", id="controller-lost-after-passed"),
        pytest.param(down("a", failures=9, last_ok=NOW - 10), 30.0, 3.0, "NotReady", id="node-override-longer"),
        pytest.param(down("a", failures=9, last_ok=NOW - 30), 30.0, 3.0, "Lost", id="node-override-longer-passed"),
        pytest.param(down("a", failures=2, last_ok=NOW - 1.5), 1.0, 3.0, "Lost", id="node-override-shorter"),
        pytest.param(down("a", failures=2, last_ok=NOW - 1.5), 1.0, 10.0, "Lost", id="node-override-wins"),
        # Never answered since the controller started: the failing streak's start is the clock.
        pytest.param(down("a", failures=5, last_ok=None, failing_since=NOW - 5), None, 3.0, "Lost",
                     id="never-seen-failing-long"),
        pytest.param(down("a", failures=2, last_ok=None, failing_since=NOW - 1), None, 3.0, "NotReady",
                     id="never-seen-failing-briefly"),
        pytest.param(down("a", failures=2, last_ok=None, failing_since=None), None, 3.0, "NotReady",
                     id="no-time-to-measure-from"),
        # Silence is measured from the last success, not from the first failure after it.
        pytest.param(down("a", failures=2, last_ok=NOW - 4, failing_since=NOW - 2.5), None, 3.0, "Lost",
                     id="measured-from-last-ok"),
    ],
)
def test_node_condition(node_obs, lost_after_seconds, lost_after, condition):
    """A node is Ready while probes succeed, NotReady while they fail, Lost after 2+ failures and lostAfterSeconds of silence."""
    node = node_res("a", lostAfterSeconds=lost_after_seconds)

    status = node_status(node, node_obs, NOW, lost_after)

    assert status["condition"] == condition
    assert status["message"] == (node_obs.message if node_obs else "")


@pytest.mark.parametrize(
    "node_obs, lost_after_seconds, when",
    [
        (None, None, None),
        (up("a"), None, None),
        (down("a", failures=1, last_ok=NOW - 1), None, None),  # one failure: not on the way to Lost yet
        (down("a", failures=2, last_ok=NOW - 1), None, NOW + 2),
        (down("a", failures=2, last_ok=NOW - 1), 20.0, NOW + 19),
        (down("a", failures=3, last_ok=None, failing_since=NOW - 2), None, NOW + 1),
        (down("a", failures=3, last_ok=None, failing_since=None), None, None),
    ],
)
def test_lost_at(node_obs, lost_after_seconds, when):
    """lost_at is when a failing node turns Lost (its last success plus lostAfterSeconds), None when it is not failing."""
    assert lost_at(node_res("a", lostAfterSeconds=lost_after_seconds), node_obs, 3.0) == when


def _was(name: str, condition: str, since: float = NOW - 2) -> ResourceRecord:
    """A Node whose recorded status is ``condition`` (since ``since``)."""
    return node_res(name, status={"condition": condition, "since": since, "message": PROBE_ERROR})


def _conditions(p: Plan, nodes: list[ResourceRecord]) -> list[str]:
    """Each Node's condition after the pass: the one it recorded, else the one it had."""
    return [(status_of(p, Kind.NODE, n.name) or n.status)["condition"] for n in nodes]


def test_nodes_whose_probes_failed_together_are_declared_lost_in_one_pass():
    """Probed once a second, four nodes stop answering: a is due now (Lost on its own), b is due within
    the probe interval and is declared with it (both NodeLost, one pass), c (due in 1.5 s) and d (one
    failed probe) stay NotReady. Without a known probe interval, b waits for its own deadline."""
    nodes = [_was(n, "NotReady") for n in "abcd"]
    silent = [down("a", failures=3, last_ok=NOW - 3.0), down("b", failures=2, last_ok=NOW - 2.2),
              down("c", failures=2, last_ok=NOW - 1.5), down("d", failures=1, last_ok=NOW - 2.5)]

    together = run(nodes, [], Snapshot({o.name: o for o in silent}, NOW, probe_interval=1.0))
    unknown = run(nodes, [], Snapshot({o.name: o for o in silent}, NOW))

    assert _conditions(together, nodes) == ["Lost", "Lost", "NotReady", "NotReady"]
    assert sorted(e.name for e in events(together, "NodeLost")) == ["a", "b"]
    assert status_of(together, Kind.NODE, "b")["since"] == NOW
    assert _conditions(unknown, nodes) == ["Lost", "NotReady", "NotReady", "NotReady"]


def test_a_node_failing_alone_waits_its_full_lost_after():
    """No other node is declared Lost this pass (a was Lost before): b, due within the probe interval,
    stays NotReady until its own deadline; a Node's longer lostAfterSeconds is not shortened either."""
    nodes = [_was("a", "Lost", since=NOW - 50), _was("b", "NotReady"), _was("c", "NotReady")]
    patient = node_res("p", lostAfterSeconds=30, status={"condition": "NotReady", "since": NOW - 2})
    silent = {o.name: o for o in [lost_node("a"), down("b", failures=2, last_ok=NOW - 2.2),
                                  down("p", failures=9, last_ok=NOW - 10)]}

    alone = run([*nodes[:2], patient], [], Snapshot(silent, NOW, probe_interval=1.0))
    assert _conditions(alone, [*nodes[:2], patient]) == ["Lost", "NotReady", "NotReady"]
    assert events(alone, "NodeLost") == []

    silent["c"] = down("c", failures=3, last_ok=NOW - 3.0)  # c falls due now: b goes with it, p does not
    with_c = run([*nodes, patient], [], Snapshot(silent, NOW, probe_interval=1.0))
    assert _conditions(with_c, [*nodes, patient]) == ["Lost", "Lost", "Lost", "NotReady"]
    assert sorted(e.name for e in events(with_c, "NodeLost")) == ["b", "c"]


def test_a_node_declared_lost_with_others_stays_lost_until_its_own_deadline():
    """The pass after b was declared Lost with a, b is still short of its own deadline: it stays Lost,
    since it was declared (no NodeNotReady, no second NodeLost)."""
    nodes = [_was("a", "Lost", since=NOW - 0.5), _was("b", "Lost", since=NOW - 0.5)]
    silent = [down("a", failures=4, last_ok=NOW - 3.5), down("b", failures=3, last_ok=NOW - 2.7)]

    p = run(nodes, [], Snapshot({o.name: o for o in silent}, NOW, probe_interval=1.0))

    assert _conditions(p, nodes) == ["Lost", "Lost"] and p.events == []
    assert all(s["since"] == NOW - 0.5 for _, _, _, s in p.statuses)


def test_snapshot_lost_after_is_the_default_limit():
    """plan judges nodes by the snapshot's lost_after unless the Node sets lostAfterSeconds."""
    nodes = [node_res("a"), node_res("b", lostAfterSeconds=4)]
    quiet = [down("a", failures=3, last_ok=NOW - 5), down("b", failures=3, last_ok=NOW - 5)]

    default = run(nodes, [], snapshot(*quiet))
    patient = run(nodes, [], Snapshot({n.name: n for n in quiet}, NOW, lost_after=10.0))

    assert [status_of(default, Kind.NODE, n)["condition"] for n in "ab"] == ["Lost", "Lost"]
    assert [status_of(patient, Kind.NODE, n)["condition"] for n in "ab"] == ["NotReady", "Lost"]


def test_plan_wakes_when_a_failing_node_will_be_lost():
    """A NotReady node with 2 failed probes makes the pass ask to wake at its Lost time, where it then is Lost."""
    job = job_res()
    t = task(job, phase=R, node="a", container_id="c0", started_at=NOW - 50)
    nodes = [node_res("a", status={"condition": "Ready"}), node_res("b")]

    p = run([*nodes, job], [t], snapshot(down("a", failures=2, last_ok=NOW - 1), up("b")))

    assert status_of(p, Kind.NODE, "a")["condition"] == "NotReady"
    assert p.next_wake == NOW + 2
    assert not p.task_updates and not p.new_tasks, "a NotReady node's tasks are left alone"

    later = run([*nodes, job], [t], snapshot(down("a", failures=3, last_ok=NOW - 1), up("b"), at=NOW + 2), NOW + 2)
    assert status_of(later, Kind.NODE, "a")["condition"] == "Lost"
    assert applied(later, [t])[t.id].reason == "NodeLost"


@pytest.mark.parametrize(
    "before, node_obs, expected",
    [
        pytest.param(None, up("a"), [], id="first-sight-ready"),
        pytest.param(None, lost_node(), [], id="first-sight-lost"),
        pytest.param(None, down("a", failures=1), [], id="first-sight-not-ready"),
        pytest.param("Ready", up("a"), [], id="still-ready"),
        pytest.param("Ready", down("a", failures=1, last_ok=NOW - 1), [("NodeNotReady", "Warning")], id="stops"),
        pytest.param("NotReady", down("a", failures=2, last_ok=NOW - 2), [], id="still-not-ready"),
        pytest.param("NotReady", lost_node(), [("NodeLost", "Warning")], id="lost"),
        pytest.param("Ready", lost_node(), [("NodeLost", "Warning")], id="ready-straight-to-lost"),
        pytest.param("Lost", lost_node(), [], id="still-lost"),
        pytest.param("Lost", up("a"), [("NodeReady", "Normal")], id="returns"),
        pytest.param("NotReady", up("a"), [("NodeReady", "Normal")], id="recovers"),
    ],
)
def test_node_events_on_condition_transitions(before, node_obs, expected):
    """NodeNotReady, NodeLost and NodeReady events are emitted when the condition changes, never on first sight."""
    status = {"condition": before, "since": NOW - 100} if before else None
    node = node_res("a", status=status)

    p = run([node], [], snapshot(node_obs))

    assert [(e.kind, e.name, e.reason, e.type) for e in p.events] == [("Node", "a", r, t) for r, t in expected]
    new = status_of(p, Kind.NODE, "a")
    assert new["since"] == (NOW - 100 if new["condition"] == before else NOW)


def test_node_event_messages_name_the_node_and_the_cause():
    """NodeLost carries the probe's error and says tasks are rescheduled; NodeReady says what the node was."""
    lost = run([node_res("a", status={"condition": "NotReady"})], [], snapshot(lost_node()))
    back = run([node_res("a", status={"condition": "Lost"})], [], snapshot(up("a")))

    assert [e.message for e in lost.events] == [
        f"node a lost: {PROBE_ERROR}; its tasks are rescheduled (onNodeLost: wait keeps them bound)"]
    assert [e.message for e in back.events] == ["node a answers again (was Lost)"]


# -- tasks of a Lost node ---------------------------------------------------------------------


@pytest.mark.parametrize("placed_only", [False, True], ids=["running", "placed-not-started"])
def test_service_replica_on_a_lost_node_is_replaced_elsewhere_at_once(placed_only):
    """A replica of a Lost node is Lost (NodeLost) and its replacement is placed on another node in the same pass, with no backoff."""
    web = svc(replicas=1)
    if placed_only:
        t = task(web, 0, 1, P, node="a", scheduled_at=NOW - 30, created_at=NOW - 31)
    else:
        t = running(web, 0, node="a")
    nodes = [node_res("a"), node_res("b")]

    p = run([*nodes, web], [t], snapshot(lost_node("a"), up("b")))

    lost = applied(p, [t])[t.id]
    assert (lost.phase, lost.reason, lost.finished_at) == (L, "NodeLost", NOW)
    assert lost.message == "node a was lost; replaced elsewhere"
    assert [(e.reason, e.type, e.task_id) for e in events(p, "TaskLost")] == [("TaskLost", "Warning", t.id)]
    [new] = p.new_tasks
    assert (new.index, new.attempt, new.not_before, new.reason) == (0, 2, NOW, "")
    assert [(s.task_id, s.node) for s in p.starts] == [(new.id, "b")]
    assert not p.removals, "no Docker call goes to a node that does not answer"
    status = status_of(p, Kind.SERVICE, "web")
    assert (status["restarts"], status["restartBackoffSeconds"]) == (0, 0)


def test_losing_a_node_does_not_add_to_a_crashing_replicas_backoff():
    """A replica that crashed before is replaced without delay when its next attempt is lost with its node."""
    web = svc(replicas=1)
    crash = task(web, 0, 1, F, node="b", exit_code=1, started_at=NOW - 12, finished_at=NOW - 10)
    t = running(web, 0, 2, node="a", started=NOW - 9)

    p = run([node_res("a"), node_res("b"), web], [crash, t], snapshot(lost_node("a"), up("b")))

    [new] = p.new_tasks
    assert (new.attempt, new.not_before) == (3, NOW)
    assert [s.task_id for s in p.starts] == [new.id]
    assert status_of(p, Kind.SERVICE, "web")["restarts"] == 1  # the earlier crash only


def test_job_task_on_a_lost_node_is_replaced_without_spending_a_retry():
    """A Job task of a Lost node is Lost and replaced at once; with backoffLimit 0 the Job keeps running."""
    job = job_res(completions=2, parallelism=2, backoffLimit=0)
    gone = task(job, 0, 1, R, node="a", container_id="c0", started_at=NOW - 50)
    fine = task(job, 1, 1, R, node="b", container_id="c1", started_at=NOW - 50)

    p = run([node_res("a"), node_res("b"), job], [gone, fine], snapshot(lost_node("a"), up("b", container(fine))))

    after = applied(p, [gone, fine])
    assert (after[gone.id].phase, after[gone.id].reason) == (L, "NodeLost")
    assert after[fine.id] == fine
    [new] = p.new_tasks
    assert (new.index, new.attempt, new.not_before) == (0, 2, NOW)
    assert [(s.task_id, s.node) for s in p.starts] == [(new.id, "b")]
    status = status_of(p, Kind.JOB, "job")
    assert (status["phase"], status["failed"], status["active"], status["reason"]) == ("Running", 0, 2, "")


@pytest.mark.parametrize("owner", ["job", "service"])
def test_on_node_lost_wait_keeps_the_task_bound(owner):
    """With onNodeLost: wait a Lost node's task stays Running there: no Lost, no replacement, no Docker calls."""
    res = job_res(onNodeLost="wait") if owner == "job" else svc(replicas=1, onNodeLost="wait")
    t = task(res, 0, 1, R, node="a", container_id="c0", started_at=NOW - 50, created_at=NOW - 51)
    nodes = [node_res("a"), node_res("b")]

    p = run([*nodes, res], [t], snapshot(lost_node("a"), up("b")))

    assert status_of(p, Kind.NODE, "a")["condition"] == "Lost"
    assert t.id not in p.task_updates
    assert not p.new_tasks and not p.starts and not p.removals and not events(p, "TaskLost")

    # When it answers again the container that ran on is simply still there: nothing to fence.
    back = run([*nodes, res], [t], snapshot(up("a", container(t)), up("b")), NOW + 60)
    assert t.id not in back.task_updates and not back.removals and not back.new_tasks


# -- fencing ---------------------------------------------------------------------------------


def test_lost_tasks_container_on_a_returned_node_is_killed_and_the_node_gets_no_new_work_that_pass():
    """A returned node still running a Lost task's container: Remove with grace 0 and nothing placed there that pass."""
    job = job_res(backoffLimit=0)
    stale = task(job, 0, 1, L, node="a", container_id="c0", started_at=NOW - 50, finished_at=NOW - 20,
                 reason="NodeLost")
    replacement = task(job, 0, 2, R, node="b", container_id="c1", started_at=NOW - 19)
    fresh = job_res("fresh")
    back = {"condition": "Ready", "since": NOW - 10}  # it has answered for a while
    nodes = [node_res("a", {"default": 2}, status=back), node_res("b", {"default": 1})]
    tasks = [stale, replacement]

    p = run([*nodes, job, fresh], tasks, snapshot(up("a", container(stale)), up("b", container(replacement))))

    assert p.removals == [Remove("a", "c0", stale.id, f"task {stale.id} is Lost", grace=0)]
    assert not p.removals[0].keep_output
    assert [(e.reason, e.type, e.task_id) for e in events(p, "Fenced")] == [("Fenced", "Warning", stale.id)]
    assert stale.id not in p.task_updates and replacement.id not in p.task_updates
    [waiting] = p.new_tasks
    assert waiting.owner == "Job/fresh" and not p.starts
    after = applied(p, tasks)[waiting.id]
    assert (after.node, after.reason) == (None, "Unschedulable")
    assert "1 fencing stale containers" in after.message

    # Once the container is gone the node takes work again.
    later = run([*nodes, job, fresh], [*tasks, after], snapshot(up("a"), up("b", container(replacement))), NOW + 1)
    assert [(s.task_id, s.node) for s in later.starts] == [(waiting.id, "a")]
    assert not later.removals


def test_fencing_holds_back_only_the_node_with_stale_containers():
    """While one node is fenced, new work still goes to the others in the same pass."""
    web = svc(replicas=1)
    stale = task(web, 0, 1, L, node="a", container_id="c0", started_at=NOW - 50, finished_at=NOW - 20,
                 reason="NodeLost")
    fresh = job_res("fresh")

    back = node_res("a", status={"condition": "Ready", "since": NOW - 10})
    p = run([back, node_res("b"), web, fresh], [stale], snapshot(up("a", ctr(stale)), up("b")))

    assert [(r.node, r.grace) for r in p.removals] == [("a", 0)]
    assert {s.node for s in p.starts} == {"b"} and len(p.starts) == 2  # the replica's replacement and the Job


def test_stale_job_container_on_a_node_that_just_returned_gets_a_moment_to_report_its_exit():
    """A returned node's stale Job container is left FENCE_SETTLE_SECONDS to report an exit, then killed.

    Meanwhile the node is fenced (no new work); an exit reported in that window is collected.
    """
    job = job_res(completions=2, parallelism=1)
    stale = task(job, 0, 1, L, node="a", container_id="c0", started_at=NOW - 50, finished_at=NOW - 20,
                 reason="NodeLost")
    replacement = task(job, 0, 2, R, node="b", container_id="c0-2", started_at=NOW - 19)
    fresh = job_res("fresh")
    tasks = [stale, replacement]
    returned = node_res("a", {"default": 2}, status={"condition": "Lost", "since": NOW - 20})
    nodes = [returned, node_res("b", {"default": 1})]
    on_b = up("b", container(replacement))

    p = run([*nodes, job, fresh], tasks, snapshot(up("a", container(stale)), on_b))

    since = status_of(p, Kind.NODE, "a")
    assert (since["condition"], since["since"]) == ("Ready", NOW)
    assert not p.removals and not p.collects and not events(p, "Fenced")
    assert p.next_wake == NOW + FENCE_SETTLE_SECONDS
    [waiting] = p.new_tasks
    assert not p.starts and "1 fencing stale containers" in applied(p, tasks)[waiting.id].message

    nodes[0] = replace(returned, status=since)
    reported = run([*nodes, job], tasks, snapshot(up("a", exited(stale)), on_b), NOW + 1)
    assert applied(reported, tasks)[stale.id].reason == "SucceededWhileLost"
    assert reported.collects == [Collect(stale.id, "a", "c0")] and not events(reported, "Fenced")

    settled = run([*nodes, job], tasks, snapshot(up("a", container(stale)), on_b), NOW + FENCE_SETTLE_SECONDS)
    assert [(r.container_id, r.grace) for r in settled.removals] == [("c0", 0)]
    assert [e.task_id for e in events(settled, "Fenced")] == [stale.id]


def test_stale_service_container_on_a_node_that_just_returned_is_killed_at_once():
    """A Lost Service replica's container is killed in the very pass its node returns: a replica has no result to wait for."""
    web = svc(replicas=1)
    stale = task(web, 0, 1, L, node="a", container_id="c0", started_at=NOW - 50, finished_at=NOW - 20,
                 reason="NodeLost")
    replacement = running(web, 0, 2, node="b", started=NOW - 19)
    returned = node_res("a", status={"condition": "Lost", "since": NOW - 20})

    p = run([returned, node_res("b"), web], [stale, replacement],
            snapshot(up("a", ctr(stale)), up("b", ctr(replacement))))

    assert p.removals == [Remove("a", "c0", stale.id, f"task {stale.id} is Lost", grace=0)]
    assert [e.task_id for e in events(p, "Fenced")] == [stale.id]


# -- results of tasks that ran on while their node was Lost -------------------------------------


@pytest.mark.parametrize(
    "completions, stop_reason, job_phase",
    [
        (2, "Superseded", "Running"),  # other indexes still to do: only the duplicate of index 0 stops
        (1, "JobComplete", "Complete"),  # that was the last index: the Job is complete
    ],
)
def test_job_success_while_its_node_was_lost_counts_and_the_replacement_stops(completions, stop_reason, job_phase):
    """A Lost Job task whose container exited 0 is Succeeded (SucceededWhileLost), collected, and its index's replacement stopped."""
    job = job_res(completions=completions, parallelism=2, terminationGracePeriodSeconds=5)
    late = task(job, 0, 1, L, node="a", container_id="c0", started_at=NOW - 50, finished_at=NOW - 20,
                reason="NodeLost")
    replacement = task(job, 0, 2, R, node="b", container_id="c0-2", started_at=NOW - 19)
    other = [task(job, 1, 1, R, node="b", container_id="c1", started_at=NOW - 50)] if completions > 1 else []
    tasks = [late, replacement, *other]
    snap = snapshot(up("a", exited(late)), up("b", *(container(t) for t in [replacement, *other])))

    p = run([node_res("a"), node_res("b"), job], tasks, snap)

    after = applied(p, tasks)
    assert (after[late.id].phase, after[late.id].exit_code, after[late.id].reason) == (S, 0, "SucceededWhileLost")
    assert after[late.id].message == "finished on node a while it could not be reached; result kept"
    assert p.collects == [Collect(late.id, "a", "c0")]
    assert [e.task_id for e in events(p, "SucceededWhileLost")] == [late.id]
    assert (after[replacement.id].phase, after[replacement.id].reason) == (X, stop_reason)
    assert Remove("b", "c0-2", replacement.id, after[replacement.id].message, grace=5, keep_output=True) in p.removals
    assert all(after[t.id] == t for t in other)
    assert not p.new_tasks and not p.starts and not events(p, "Fenced")
    status = status_of(p, Kind.JOB, "job")
    assert (status["phase"], status["succeeded"], status["failed"], status["active"]) == (
        job_phase, 1, 0, len(other))


def test_superseded_message_names_the_index():
    """The replacement stopped because the lost attempt succeeded says which index already succeeded."""
    job = job_res(completions=2, parallelism=1)
    late = task(job, 0, 1, L, node="a", container_id="c0", finished_at=NOW - 20, reason="NodeLost")
    replacement = task(job, 0, 2, R, node="b", container_id="c0-2", started_at=NOW - 19)

    p = run([node_res("a"), node_res("b"), job], [late, replacement],
            snapshot(up("a", exited(late)), up("b", container(replacement))))

    after = applied(p, [late, replacement])
    assert (after[replacement.id].reason, after[replacement.id].message) == (
        "Superseded", "index 0 already succeeded")
    [new] = p.new_tasks  # parallelism 1: the freed place goes to index 1
    assert new.index == 1


def test_late_success_when_the_index_already_succeeded_stays_lost():
    """A Lost attempt that exited 0 after another attempt of its index succeeded stays Lost; its output is still collected."""
    job = job_res(status={"phase": "Complete"})
    late = task(job, 0, 1, L, node="a", container_id="c0", finished_at=NOW - 20, reason="NodeLost")
    winner = task(job, 0, 2, S, node="b", exit_code=0, started_at=NOW - 19, finished_at=NOW - 10)

    p = run([node_res("a"), node_res("b"), job], [late, winner], snapshot(up("a", exited(late)), up("b")))

    assert late.id not in p.task_updates and winner.id not in p.task_updates
    assert p.collects == [Collect(late.id, "a", "c0")]
    assert not events(p, "SucceededWhileLost") and not p.removals and not p.new_tasks


def test_two_late_successes_of_one_index_count_once():
    """When two Lost attempts of an index both exited 0, only the first becomes Succeeded; both are collected."""
    job = job_res(completions=2, parallelism=1)
    first = task(job, 0, 1, L, node="a", container_id="c1", finished_at=NOW - 30, reason="NodeLost")
    second = task(job, 0, 2, L, node="b", container_id="c2", finished_at=NOW - 20, reason="NodeLost")

    p = run([node_res("a"), node_res("b"), job], [first, second],
            snapshot(up("a", exited(first)), up("b", exited(second))))

    after = applied(p, [first, second])
    assert [after[t.id].phase for t in (first, second)] == [S, L]
    assert {c.task_id for c in p.collects} == {first.id, second.id}
    assert status_of(p, Kind.JOB, "job")["succeeded"] == 1


@pytest.mark.parametrize("code, state", [(1, "exited"), (137, "exited"), (None, "dead")])
def test_lost_job_task_that_failed_on_its_own_stays_lost_and_is_collected(code, state):
    """A Lost Job task whose container ended without success stays Lost (no failure counted) and its output is collected."""
    job = job_res(backoffLimit=0)
    late = task(job, 0, 1, L, node="a", container_id="c0", finished_at=NOW - 20, reason="NodeLost")
    replacement = task(job, 0, 2, R, node="b", container_id="c0-2", started_at=NOW - 19)

    p = run([node_res("a"), node_res("b"), job], [late, replacement],
            snapshot(up("a", exited(late, code, state)), up("b", container(replacement))))

    assert late.id not in p.task_updates and replacement.id not in p.task_updates
    assert p.collects == [Collect(late.id, "a", "c0")]
    assert not p.removals and not events(p, "Fenced") and not events(p, "SucceededWhileLost")
    status = status_of(p, Kind.JOB, "job")
    assert (status["phase"], status["failed"]) == ("Running", 0)


def test_lost_service_replica_that_exited_is_collected_not_counted():
    """A Service replica only counts while active: one that exited 0 while Lost is collected and stays Lost."""
    web = svc(replicas=1)
    late = task(web, 0, 1, L, node="a", container_id="c0", started_at=NOW - 50, finished_at=NOW - 20,
                reason="NodeLost")
    replacement = running(web, 0, 2, node="b", started=NOW - 19)

    p = run([node_res("a"), node_res("b"), web], [late, replacement],
            snapshot(up("a", exited(late)), up("b", ctr(replacement))))

    assert late.id not in p.task_updates and replacement.id not in p.task_updates
    assert p.collects == [Collect(late.id, "a", late.container_id)]
    assert not p.removals and not p.new_tasks


# -- drain: Jobs -------------------------------------------------------------------------------


def test_job_task_on_a_draining_node_may_finish_until_the_deadline():
    """Before the drain deadline a Job task on a draining node keeps running and the pass wakes at the deadline."""
    job = job_res()
    t = task(job, 0, 1, R, node="a", container_id="c0", started_at=NOW - 50)

    p = run([draining("a", NOW + 30), node_res("b"), job], [t], snapshot(up("a", container(t)), up("b")))

    assert t.id not in p.task_updates
    assert not p.new_tasks and not p.starts and not p.removals
    assert p.next_wake == NOW + 30


@pytest.mark.parametrize("deadline", [NOW, NOW - 30])
def test_job_task_on_a_drained_node_is_moved_without_spending_a_retry(deadline):
    """Once the drain deadline passed the task is Lost (Drained), its container stopped with its grace, and a replacement placed elsewhere."""
    job = job_res(backoffLimit=0, terminationGracePeriodSeconds=20)
    t = task(job, 0, 1, R, node="a", container_id="c0", started_at=NOW - 50)
    nodes = [draining("a", deadline, slots={"default": 4}), node_res("b", {"default": 1})]

    p = run([*nodes, job], [t], snapshot(up("a", container(t)), up("b")))

    moved = applied(p, [t])[t.id]
    assert (moved.phase, moved.reason, moved.finished_at) == (L, "Drained", NOW)
    assert moved.message == "node a was drained; rescheduled elsewhere"
    assert p.removals == [Remove("a", "c0", t.id, moved.message, grace=20, keep_output=True)]
    assert [(e.reason, e.task_id) for e in events(p, "Drained")] == [("Drained", t.id)]
    [new] = p.new_tasks
    assert (new.index, new.attempt, new.not_before) == (0, 2, NOW)
    assert [(s.task_id, s.node) for s in p.starts] == [(new.id, "b")]
    status = status_of(p, Kind.JOB, "job")
    assert (status["phase"], status["failed"], status["active"]) == ("Running", 0, 1)


def test_drain_only_moves_tasks_of_the_draining_node():
    """Job tasks on other nodes are untouched by a drain deadline passing."""
    job = job_res(completions=2, parallelism=2)
    there = task(job, 0, 1, R, node="a", container_id="c0", started_at=NOW - 50)
    elsewhere = task(job, 1, 1, R, node="b", container_id="c1", started_at=NOW - 50)

    p = run([draining("a", NOW - 1), node_res("b", {"default": 4}), job], [there, elsewhere],
            snapshot(up("a", container(there)), up("b", container(elsewhere))))

    assert set(p.task_updates) - {t.id for t in p.new_tasks} == {there.id}
    assert removed(p) == {"c0"}


def test_cordoned_node_without_drain_keeps_its_tasks():
    """Cordoning alone (no drain deadline) leaves tasks where they are and only stops new placements there."""
    job = job_res(completions=2, parallelism=2)
    t = task(job, 0, 1, R, node="a", container_id="c0", started_at=NOW - 50)

    p = run([node_res("a", {"default": 4}, unschedulable=True), node_res("b"), job], [t],
            snapshot(up("a", container(t)), up("b")))

    assert t.id not in p.task_updates and not p.removals
    assert [s.node for s in p.starts] == ["b"]


# -- drain: Services ---------------------------------------------------------------------------


def test_service_replica_on_a_draining_node_is_replaced_before_it_stops():
    """A drained replica keeps running until a replacement elsewhere has been available for minReadySeconds, then stops."""
    web = svc(replicas=1, update={"minReadySeconds": 5}, terminationGracePeriodSeconds=8)
    old = running(web, 0, node="a")
    nodes = [draining("a", NOW + 300, slots={"default": 4}), node_res("b")]

    first = run([*nodes, web], [old], snapshot(up("a", ctr(old)), up("b")))

    assert old.id not in first.task_updates and not first.removals
    [new] = first.new_tasks
    assert (new.index, new.attempt) == (0, 2)
    assert [(s.task_id, s.node) for s in first.starts] == [(new.id, "b")]

    started = replace(applied(first, [old])[new.id], phase=R, container_id="c-new", started_at=NOW + 1)
    tasks = [old, started]
    snap = snapshot(up("a", ctr(old)), up("b", ctr(started)))
    young = run([*nodes, web], tasks, snap, NOW + 5)
    assert old.id not in young.task_updates and not young.removals and not young.new_tasks
    assert young.next_wake == NOW + 6  # when the replacement has been ready for minReadySeconds

    done = run([*nodes, web], tasks, snap, NOW + 6)
    stopped = applied(done, tasks)[old.id]
    assert (stopped.phase, stopped.reason) == (X, "Replaced")
    assert started.id in stopped.message
    assert done.removals == [Remove("a", old.container_id, old.id, stopped.message, grace=8, keep_output=True)]
    assert started.id not in done.task_updates and not done.new_tasks


@pytest.mark.parametrize("health", ["starting", None])
def test_drained_replica_that_is_not_available_is_replaced_at_once(health):
    """A replica on a draining node that is not available (not ready, or not ready long enough) is stopped at once and replaced."""
    web = svc(replicas=1)
    old = running(web, 0, node="a", started=NOW - 1 if health is None else NOW - 100)

    p = run([draining("a", NOW + 300), node_res("b"), web], [old], snapshot(up("a", ctr(old, health)), up("b")))

    stopped = applied(p, [old])[old.id]
    assert (stopped.phase, stopped.reason, stopped.message) == (X, "Replaced", "node a is being drained")
    [new] = p.new_tasks
    assert [(s.task_id, s.node) for s in p.starts] == [(new.id, "b")]


def test_drain_without_surge_stops_first_within_max_unavailable():
    """With maxSurge 0 and maxUnavailable 1 one drained replica is stopped first, saying why, and replaced elsewhere."""
    web = svc(replicas=2, update={"maxSurge": 0, "maxUnavailable": 1})
    olds = [running(web, i, node="a") for i in range(2)]
    nodes = [draining("a", NOW + 300, slots={"default": 4}), node_res("b", {"default": 4})]

    p = run([*nodes, web], olds, snapshot(up("a", *(ctr(t) for t in olds)), up("b")))

    after = applied(p, olds)
    stopped = [t for t in olds if after[t.id].phase is X]
    assert len(stopped) == 1
    assert (after[stopped[0].id].reason, after[stopped[0].id].message) == ("Replaced", "node a is being drained")
    [new] = p.new_tasks
    assert new.index == stopped[0].index
    assert [(s.task_id, s.node) for s in p.starts] == [(new.id, "b")]


def test_simulated_drain_of_a_service_keeps_every_replica_available():
    """Draining a node of 3 replicas moves them all elsewhere one at a time, never with fewer than 3 available."""
    min_ready = 2.0
    a = node_res("a", {"default": 4})
    world = World(svc(replicas=3), [a])
    now = world.settle(NOW, passes=4)
    assert sorted(t.node for t in world.available(now, min_ready)) == ["a", "a", "a"]
    originals = {t.id for t in world.active}

    world.nodes = [draining("a", now + 300, slots={"default": 4}), node_res("b", {"default": 4})]
    world.containers["b"] = {}
    for _ in range(20):
        world.step(now)
        assert len(world.available(now, min_ready)) >= 3, "maxUnavailable 0: never below the replicas available"
        assert len(world.active) <= 4, "maxSurge 1"
        assert not {t.node for t in world.active if t.id not in originals} & {"a"}, "nothing new on a"
        now += 1.0

    assert sorted(t.node for t in world.active) == ["b", "b", "b"]
    assert world.containers["a"] == {}
    assert {world.tasks[i].reason for i in originals} == {"Replaced"}
    assert not any(e.reason in ("Unhealthy", "TaskLost", "BackOff") for e in world.events)


# -- multi-pass outage -------------------------------------------------------------------------


class Cluster:
    """Nodes that can stop answering, some Jobs and Services, their tasks and containers, pass by pass.

    A node probed every second: while ``down`` it fails each probe and is not listed; its
    containers run on regardless. After each ``plan`` the decisions are recorded, node and
    owner statuses fed back, and Docker actions carried out only on nodes that answer (as the
    controller does): Starts run at once, Removes and Collects take the container away, a
    Collect of an active task records its exit code.
    """

    def __init__(self, nodes: list[ResourceRecord], owners: list[ResourceRecord]):
        self.nodes = {n.name: n for n in nodes}
        self.owners = {(o.kind, o.name): o for o in owners}
        self.tasks: dict[str, TaskRecord] = {}
        self.containers: dict[str, dict[str, ContainerObs]] = {n: {} for n in self.nodes}
        self.down: dict[str, float] = {}  # node -> its last successful probe
        self.events = []
        self.plans: list[Plan] = []

    def observe(self, now: float) -> Snapshot:
        seen = []
        for name, cs in self.containers.items():
            if name in self.down:
                last_ok = self.down[name]
                failures = int(now - last_ok)
                seen.append(NodeObs(name, ready=False, message=PROBE_ERROR, containers=None, failures=failures,
                                    last_ok=last_ok, failing_since=last_ok + 1 if failures else None))
            else:
                seen.append(up(name, *cs.values(), at=now))
        return snapshot(*seen, at=now)

    def step(self, now: float) -> Plan:
        p = plan([*self.nodes.values(), *self.owners.values()], list(self.tasks.values()), self.observe(now),
                 now, STORE_ID, MARK_KEY)
        self.tasks = applied(p, list(self.tasks.values()))
        for kind, _, name, status in p.statuses:
            if kind is Kind.NODE:
                self.nodes[name] = replace(self.nodes[name], status=status)
            else:
                self.owners[(kind, name)] = replace(self.owners[(kind, name)], status=status)
        for c in p.collects:
            if c.node not in self.down:
                seen = self.containers[c.node].pop(c.task_id)
                t = self.tasks[c.task_id]
                if t.active:
                    self.tasks[t.id] = replace(t, phase=S if seen.exit_code == 0 else F, exit_code=seen.exit_code,
                                               finished_at=now)
        for r in p.removals:
            if r.node not in self.down:
                self.containers[r.node].pop(r.task_id, None)
        for s in p.starts:
            if s.node not in self.down:
                t = self.tasks[s.task_id] = replace(self.tasks[s.task_id], phase=R, container_id=f"c-{s.task_id}",
                                                    started_at=now)
                self.containers[s.node][t.id] = container(t)
        self.events += p.events
        self.plans.append(p)
        return p

    def condition(self, node: str) -> str:
        return self.nodes[node].status["condition"]

    def active(self, owner: str) -> list[TaskRecord]:
        return [t for t in self.tasks.values() if t.active and t.owner == owner]

    def finish(self, task_id: str, code: int) -> None:
        """The task's container exits (whether or not its node answers)."""
        for cs in self.containers.values():
            if task_id in cs:
                cs[task_id] = replace(cs[task_id], state="exited", exit_code=code)


def test_simulated_outage_moves_replicas_and_fences_them_when_the_node_returns():
    """A node that stops answering is NotReady, then Lost after lost_after; its replica moves; on return its container is fenced."""
    cluster = Cluster([node_res("a", {"default": 2}), node_res("b", {"default": 2})], [svc(replicas=2)])
    cluster.step(NOW)
    on_a = [t for t in cluster.active("Service/web") if t.node == "a"]
    assert len(on_a) == 1 and cluster.condition("a") == "Ready"

    cluster.down["a"] = NOW + 1  # its last successful probe
    for now, condition in [(NOW + 1.5, "NotReady"), (NOW + 2.5, "NotReady"), (NOW + 3.5, "NotReady")]:
        p = cluster.step(now)
        assert cluster.condition("a") == condition
        assert not p.new_tasks and cluster.tasks[on_a[0].id].phase is R
    assert cluster.plans[-1].next_wake == NOW + 4  # last_ok + lost_after

    p = cluster.step(NOW + 4)
    assert cluster.condition("a") == "Lost"
    assert (cluster.tasks[on_a[0].id].phase, cluster.tasks[on_a[0].id].reason) == (L, "NodeLost")
    assert sorted(t.node for t in cluster.active("Service/web")) == ["b", "b"]
    assert on_a[0].id in cluster.containers["a"], "the lost replica's container runs on, unreachable"

    cluster.step(NOW + 5)
    del cluster.down["a"]
    cluster.owners[(Kind.SERVICE, "web")] = replace(svc(replicas=3), status=cluster.owners[(Kind.SERVICE, "web")].status)
    back = cluster.step(NOW + 20)
    assert cluster.condition("a") == "Ready"
    assert [(r.task_id, r.grace) for r in back.removals] == [(on_a[0].id, 0)]
    assert cluster.containers["a"] == {}
    [third] = back.new_tasks
    assert cluster.tasks[third.id].node is None, "b is full and a is being fenced"
    assert "fencing stale containers" in cluster.tasks[third.id].message

    cluster.step(NOW + 21)
    assert sorted(t.node for t in cluster.active("Service/web")) == ["a", "b", "b"]
    node_events = [e.reason for e in cluster.events if e.kind == "Node"]
    assert node_events == ["NodeNotReady", "NodeLost", "NodeReady"]
    assert [e.task_id for e in cluster.events if e.reason == "Fenced"] == [on_a[0].id]
    assert [e.task_id for e in cluster.events if e.reason == "TaskLost"] == [on_a[0].id]


def test_simulated_job_that_finished_while_its_node_was_lost_keeps_its_result():
    """A Job attempt that exits 0 on an unreachable node counts once the node returns; its replacement stops; nothing fails."""
    job = job_res(completions=2, parallelism=2, backoffLimit=0)
    cluster = Cluster([node_res("a", {"default": 1}), node_res("b", {"default": 2})], [job])
    cluster.step(NOW)
    [first] = [t for t in cluster.active("Job/job") if t.node == "a"]

    cluster.down["a"] = NOW
    cluster.step(NOW + 1)
    cluster.step(NOW + 3)  # lost
    assert cluster.tasks[first.id].phase is L
    [replacement] = [t for t in cluster.active("Job/job") if t.index == first.index]
    assert replacement.node == "b" and replacement.attempt == 2

    cluster.finish(first.id, 0)  # it ran on and succeeded while nobody could see it
    cluster.step(NOW + 5)
    assert cluster.tasks[first.id].phase is L, "not known before the node answers"

    del cluster.down["a"]
    cluster.step(NOW + 10)
    assert (cluster.tasks[first.id].phase, cluster.tasks[first.id].reason) == (S, "SucceededWhileLost")
    assert (cluster.tasks[replacement.id].phase, cluster.tasks[replacement.id].reason) == (X, "Superseded")
    assert cluster.containers["a"] == {}, "collected"

    [other] = cluster.active("Job/job")
    cluster.finish(other.id, 0)
    cluster.step(NOW + 11)  # collected
    cluster.step(NOW + 12)
    status = cluster.owners[(Kind.JOB, "job")].status
    assert (status["phase"], status["succeeded"], status["failed"]) == ("Complete", 2, 0)
    assert not any(e.reason == "Fenced" for e in cluster.events)


def test_a_node_that_stays_lost_does_not_wake_the_controller_again_and_again():
    """Once a node is Lost its Lost time is past: the plan asks for no wake-up for it (no busy loop)."""
    node = node_res("a", status={"condition": "Lost"})

    p = run([node], [], snapshot(lost_node("a")))

    assert p.next_wake is None


def test_drained_job_container_still_stopping_is_not_fenced():
    """A drained task's container within its grace period is left to its graceful stop: no kill, no Fenced event."""
    job = job_res(terminationGracePeriodSeconds=30)
    t = task(job, 0, 1, L, node="a", container_id="c0", reason="Drained", finished_at=NOW - 1)
    ready = replace(node_res("a"), status={"condition": "Ready", "since": NOW - 60})

    p = run([ready, job], [t], snapshot(up("a", container(t))))

    assert not events(p, "Fenced")
    assert [r.grace for r in p.removals] == [29.0]  # the rest of the 30 s grace that began at its stop


def test_drained_job_container_that_exits_zero_stays_lost():
    """A drained task that exits 0 on SIGTERM does not count as a success (its stop already kept the output)."""
    job = job_res()
    t = task(job, 0, 1, L, node="a", container_id="c0", reason="Drained", finished_at=NOW - 1)

    p = run([node_res("a"), job], [t], snapshot(up("a", exited(t, 0))))

    assert applied(p, [t])[t.id].phase is L


def test_reapplying_a_draining_node_as_schedulable_keeps_it_drained():
    """A drain lasts until uncordon: a node whose spec says schedulable again still gets no new tasks."""
    job = job_res()
    node = replace(node_res("a"), drain_deadline=NOW - 10)  # unschedulable: false, as a re-apply leaves it

    p = run([node, job], [], snapshot(up("a")))

    [new] = p.new_tasks
    assert not p.starts and "unschedulable" in applied(p, [])[new.id].message


def test_the_replacement_of_a_lost_task_says_where_the_work_went():
    """The Scheduled event of a replacement names the lost task and node it replaces."""
    web = svc(replicas=1)
    t = task(web, 0, 1, R, node="a", container_id="c0", started_at=NOW - 50)

    p = run([node_res("a"), node_res("b"), web], [t], snapshot(lost_node("a"), up("b")))

    [event] = events(p, "Scheduled")
    assert event.message.startswith(f"{p.new_tasks[0].id} on b (") and f"replaces {t.id} from lost node a" in event.message
