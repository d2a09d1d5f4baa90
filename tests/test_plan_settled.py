"""Settled Jobs in the planner (``Plan.settled``, ``plan(..., settled)``): a Job that is over and
that a pass left untouched is reported settled; given as settled, without its tasks, it plans as
it would with them (nothing started, no status written), except its TTL purge, which its stored
status is enough for. What makes a Job not settle: a live task, a container seen, a status or task
written this pass, a deletion."""

from __future__ import annotations

from dataclasses import replace

from factories import NOW, F, R, S, X, applied, container, job_res, node_res, obs, run, snapshot, status_of, task
from reconciler.kinds import JobPhase, Kind

DONE = {"phase": JobPhase.COMPLETE, "active": 0, "succeeded": 2, "failed": 0, "reason": "", "message": "",
        "startTime": NOW - 300, "completionTime": NOW - 200}


def finished_job(**spec):
    """A Job of 2 completions whose tasks both succeeded, with the status the pass that saw it end wrote."""
    res = job_res("done", completions=2, parallelism=2, **spec)
    tasks = [task(res, i, phase=S, node="a", exit_code=0, started_at=NOW - 300, finished_at=NOW - 200)
             for i in range(2)]
    return replace(res, status=dict(DONE)), tasks


def test_a_job_that_ended_settles_once_its_final_status_is_stored():
    res, tasks = finished_job()
    unstored = replace(res, status={"phase": JobPhase.RUNNING})
    first = run([node_res("a"), unstored], tasks)
    assert status_of(first, Kind.JOB, "done")["phase"] == JobPhase.COMPLETE
    assert first.settled == set()  # it wrote the Job's status: not quiet yet
    second = run([node_res("a"), res], tasks)
    assert status_of(second, Kind.JOB, "done") is None and second.new_tasks == []
    assert second.settled == {res.key}


def test_a_failed_job_settles_too():
    res = job_res("bad", backoffLimit=0)
    failed = task(res, 0, phase=F, node="a", exit_code=1, started_at=NOW - 30, finished_at=NOW - 20)
    first = run([node_res("a"), res], [failed])
    status = status_of(first, Kind.JOB, "bad")
    assert status["phase"] == JobPhase.FAILED and first.settled == set()
    assert run([node_res("a"), replace(res, status=status)], [failed]).settled == {res.key}


def test_given_as_settled_without_its_tasks_it_plans_as_with_them():
    res, tasks = finished_job()
    node = node_res("a")
    full = run([node, res], tasks)
    settled = run([node, res], [], settled=frozenset({res.key}))
    for p in (full, settled):
        assert p.new_tasks == [] and status_of(p, Kind.JOB, "done") is None and p.task_updates == {} and p.purges == []
    assert settled.settled == full.settled == {res.key}
    # Without the settled mark the same input (no tasks) would start the Job again: the mark is what
    # stands for its history.
    assert len(run([node, res], []).new_tasks) == 2


def test_a_running_job_and_a_service_never_settle():
    res = job_res("live", completions=3)
    active = task(res, 0, phase=R, node="a", container_id="c-live-0", started_at=NOW - 5)
    p = run([node_res("a"), replace(res, status={"phase": JobPhase.RUNNING})], [active],
            snapshot(obs("a", container(active))))
    assert p.settled == set()
    from factories import service_res
    assert run([node_res("a"), service_res("web", replicas=0)], []).settled == set()


def test_a_finished_job_with_a_task_that_started_and_has_no_end_does_not_settle():
    """Budgets and fair share count a started task without an end up to each pass's now: its usage would
    still grow, so it is not carried as a settled span."""
    res, tasks = finished_job()
    assert run([node_res("a"), res], tasks).settled == {res.key}
    unended = replace(tasks[1], finished_at=None)
    assert run([node_res("a"), res], [tasks[0], unended]).settled == set()


def test_a_finished_job_with_a_container_seen_does_not_settle():
    """A leftover container of a stopped task is being removed: the Job's tasks still matter."""
    res, tasks = finished_job()
    stopped = task(res, 1, attempt=2, phase=X, node="a", container_id="c-left", finished_at=NOW - 1)
    p = run([node_res("a"), res], [*tasks, stopped], snapshot(obs("a", container(stopped))))
    assert p.removals and p.settled == set()


def test_a_deleted_job_is_never_settled_even_if_marked():
    """Deletion needs the tasks (containers to stop, the purge to wait for): ``settled`` does not apply."""
    res, tasks = finished_job()
    deleted = replace(res, deleted_at=NOW - 1)
    p = run([node_res("a"), deleted], [], settled=frozenset({res.key}))
    assert p.purges == [res.key] and p.settled == set()


def test_a_settled_job_is_purged_when_its_ttl_passes_and_woken_for_it_before():
    res, _ = finished_job(ttlSecondsAfterFinished=300)  # completionTime NOW - 200: expires at NOW + 100
    early = run([res], [], snapshot(), settled=frozenset({res.key}))
    assert early.purges == [] and early.next_wake == NOW + 100 and early.settled == {res.key}
    late = run([res], [], snapshot(at=NOW + 100), now=NOW + 100, settled=frozenset({res.key}))
    assert late.purges == [res.key] and [e.reason for e in late.events] == ["Expired"]
    assert late.settled == set()


def test_the_settled_plan_after_applying_is_a_fixed_point():
    """Recording a settled pass changes nothing: the next pass with the same input settles the same."""
    res, tasks = finished_job()
    p = run([node_res("a"), res], tasks)
    again = run([node_res("a"), res], list(applied(p, tasks).values()))
    assert again.settled == p.settled == {res.key}
