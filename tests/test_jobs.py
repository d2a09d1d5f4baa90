"""Tests for Jobs in the pure planner (reconciler.engine.jobs): parallelism, retries with backoff,
the backoff limit and completion.

Like ``test_plan``, each test builds resource rows, task rows and one observation of the hosts,
calls ``plan`` with an explicit ``now`` and checks the Plan.
"""

from __future__ import annotations

import pytest

from factories import NOW, F, L, P, R, S, X, applied, container, job_res, node_res, obs, run, snapshot, status_of, task
from reconciler.engine.actions import STOP_GRACE_SECONDS, Remove
from reconciler.spec.models import Kind


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
