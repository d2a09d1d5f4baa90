"""The settled Jobs' part of budget use and fair-share usage (``engine.settled.SettledUsage``), which the
controller carries between passes instead of giving the planner those Jobs' tasks: its figures equal the sums
over the tasks (``quotas.budget_use``, ``fairshare.usage``) after any adds and removes, at any time and for any
window; and ``plan`` given settled Jobs without their tasks but with their usage refuses the same tasks for
budgets and places in the same fair-share order as ``plan`` given every task (without the usage it does not)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import MARK_KEY, STORE_ID, S, in_namespace, job_res, namespace_res, node_res, obs, snapshot, task
from reconciler.engine.fairshare import QueuePolicy, usage
from reconciler.engine.plan import plan
from reconciler.engine.quotas import budget_use
from reconciler.engine.settled import SettledUsage
from reconciler.kinds import JobPhase, TaskPhase

NOW = 1_700_000_000.0  # a real clock's magnitude: the carried sums must keep a second's fraction at it
HOUR, DAY = 3600.0, 86400.0
POLICY = QueuePolicy()
NAMESPACES = ("team-a", "team-b", "team-c")


def job(name: str, namespace: str, cpus: float | None, n: int, status: dict | None = None):
    template = {"image": "busybox"} | ({"resources": {"cpus": cpus}} if cpus is not None else {})
    res = in_namespace(job_res(name, completions=n, parallelism=n, template=template), namespace)
    return replace(res, status=status) if status else res


def finished(res, index: int, start: float, end: float):
    return task(res, index, phase=S, node="n", container_id=f"c-{res.namespace}-{res.name}-{index}", exit_code=0,
                started_at=start, finished_at=end, created_at=start - 1)


def carried(settled: list, policy: QueuePolicy = POLICY) -> SettledUsage:
    """What the controller carries for these (Job, its tasks) pairs."""
    out = SettledUsage(policy.rate)
    for res, tasks in settled:
        out.add(res.key, tasks, res.model.spec.template.resources.cpus)
    return out


# -- SettledUsage against the sums over the tasks ---------------------------------------------------------

spans = st.tuples(st.integers(0, 3 * DAY), st.integers(0, 8 * HOUR))  # (how long before NOW it ended, its length)
owners = st.lists(st.tuples(st.sampled_from(NAMESPACES), st.sampled_from([None, 0.5, 1.0, 2.0]),
                            st.lists(spans, min_size=1, max_size=4)), min_size=1, max_size=8)
asks = st.lists(st.tuples(st.integers(-2 * DAY, 2 * DAY), st.sampled_from([HOUR, 6 * HOUR, DAY, 7 * DAY])),
                min_size=1, max_size=6)  # (offset of the pass from NOW, in either direction; window)


@settings(max_examples=200, deadline=None)
@given(owners, st.sets(st.integers(0, 7)), asks, st.booleans())
def test_property_carried_usage_equals_the_sums_over_the_settled_tasks(owned, removed, queries, again):
    """Jobs added, some removed (unsettled or purged) and, with ``again``, added back; then asked at passes
    earlier and later than the last (a clock set back, a window that grew): each figure equals the sum the
    planner makes over the tasks that remain (fair share at passes after the spans ended, as a controller
    asks it: the carried sum does not cut a span at a pass before its end)."""
    jobs = []
    for i, (ns, cpus, ran) in enumerate(owned):
        res = job(f"j{i}", ns, cpus, len(ran))
        jobs.append((res, [finished(res, k, NOW - ago - length, NOW - ago) for k, (ago, length) in enumerate(ran)]))
    kept = carried(jobs)
    for i in sorted(removed):
        if i < len(jobs):
            kept.remove(jobs[i][0].key)
    if again:  # back in: as a Job settled again after a retry
        for i in sorted(removed):
            if i < len(jobs):
                kept.add(jobs[i][0].key, jobs[i][1], jobs[i][0].model.spec.template.resources.cpus)
    remaining = [(res, tasks) for i, (res, tasks) in enumerate(jobs) if again or i not in removed]
    tasks = [t for _, ts in remaining for t in ts]
    latest = max(t.finished_at for _, ts in jobs for t in ts)
    cpus_of = {res.key: res.model.spec.template.resources.cpus for res, _ in remaining}
    for offset, window in queries:
        now = NOW + offset
        expected = budget_use(tasks, dict.fromkeys(NAMESPACES, window), cpus_of, now)
        fair = usage(tasks, set(NAMESPACES), now, POLICY)
        for ns in NAMESPACES:
            assert kept.budget_use(ns, window, now) == pytest.approx(expected[ns], rel=1e-9, abs=1e-6)
            if now >= latest:  # fair share: at passes after the spans carried ended, as a controller asks
                assert kept.fair_usage(ns, now) == pytest.approx(fair[ns], rel=1e-9, abs=1e-9 * POLICY.commitment)


def test_the_decayed_sums_stay_finite_and_exact_far_past_the_reference_time():
    """Half-lives of a second, spans over 2,000 s: the reference moves (every term rescaled) instead of e^(λ·Δ)
    overflowing, and each figure is still the sum over the tasks."""
    policy = QueuePolicy(half_life=1.0)
    kept = SettledUsage(policy.rate)
    rows = []
    for i in range(20):
        res = job(f"j{i}", "team-a", 1.0, 1)
        rows.append(finished(res, 0, NOW + 100 * i, NOW + 100 * i + 50))
        kept.add(res.key, rows[-1:], 1.0)
        now = NOW + 100 * i + 60
        assert math.isfinite(kept.fair_usage("team-a", now))
        assert kept.fair_usage("team-a", now) == pytest.approx(usage(rows, {"team-a"}, now, policy)["team-a"], rel=1e-9)
    assert kept.budget_use("team-a", 2000.0, NOW + 2000) == pytest.approx(20 * 50.0)


def test_a_job_whose_tasks_never_ran_carries_nothing_and_a_second_add_replaces_the_first():
    res = job("j", "team-a", 2.0, 2)
    kept = SettledUsage(POLICY.rate)
    kept.add(res.key, [task(res, 0, phase=TaskPhase.FAILED)], 2.0)  # failed before it started
    assert res.key not in kept and kept.budget_use("team-a", DAY, NOW) == 0.0
    kept.add(res.key, [finished(res, 0, NOW - 100, NOW - 50)], 2.0)
    kept.add(res.key, [finished(res, 0, NOW - 100, NOW - 50), finished(res, 1, NOW - 40, NOW - 30)], 2.0)
    assert len(kept) == 1 and kept.budget_use("team-a", DAY, NOW) == pytest.approx(2.0 * 60)


# -- the planner: settled Jobs with their usage plan as with all their tasks ------------------------------

def outcome(p, waiting_ids: set[str]) -> tuple:
    """What placement decided for the waiting tasks: where each started, and each one's reason to wait."""
    return (sorted((s.task_id, s.node) for s in p.starts),
            {tid: ch.get("message") for tid, ch in p.task_updates.items() if tid in waiting_ids and "node" not in ch})


def passes(resources, live, settled, now=NOW, policy=POLICY):
    """(every task given, settled Jobs with their usage, settled Jobs without it), each as ``outcome``."""
    snap = snapshot(obs("n", cpus=64), at=now)
    waiting = {t.id for t in live if t.phase is TaskPhase.PENDING}
    everything = [*live, *(t for _, ts in settled for t in ts)]
    keys = frozenset(res.key for res, _ in settled)
    full = plan(resources, everything, snap, now, STORE_ID, MARK_KEY, queue=policy)
    with_usage = plan(resources, live, snap, now, STORE_ID, MARK_KEY, queue=policy, settled=keys,
                      settled_usage=carried(settled, policy))
    without = plan(resources, live, snap, now, STORE_ID, MARK_KEY, queue=policy, settled=keys)
    assert with_usage.settled >= keys and not with_usage.new_tasks
    return outcome(full, waiting), outcome(with_usage, waiting), outcome(without, waiting)


DONE = {"phase": JobPhase.COMPLETE}


def test_a_budget_spent_by_settled_jobs_refuses_as_with_their_tasks_and_not_without_their_usage():
    """team-a may use 1 cpu-hour a day; a settled Job used it two hours ago. Its waiting task is refused."""
    done = job("done", "team-a", 1.0, 1, DONE)
    ran = [finished(done, 0, NOW - 3 * HOUR, NOW - 2 * HOUR)]
    waits = job("next", "team-a", 1.0, 1)
    resources = [node_res("n", {"default": 4}), namespace_res("team-a", budget={"cpuHours": 1, "window": "1d"}),
                 done, waits]
    full, with_usage, without = passes(resources, [task(waits, 0, created_at=NOW - 1)], [(done, ran)])
    assert full == with_usage
    assert list(full[1].values()) == ["budget: team-a used 1/1 cpu-hours in 1d"] and not full[0]
    assert without != full and len(without[0]) == 1, "without the settled usage the budget looks unspent"


def test_fair_share_weighs_settled_history_as_with_its_tasks_and_not_without_its_usage():
    """4 slots, 4 tasks waiting in each of team-a and team-b; team-b's settled Jobs ran 4 slot-hours that ended
    an hour ago (a quarter: one slot's commitment), so team-a gets 3 slots and team-b 1, as with their tasks."""
    a, b = job("x", "team-a", None, 4), job("x", "team-b", None, 4)
    done = job("done", "team-b", None, 4, DONE)
    ran = [finished(done, i, NOW - 2 * HOUR, NOW - HOUR) for i in range(4)]
    live = [task(a, i, created_at=NOW - 20 + i) for i in range(4)] + [task(b, i, created_at=NOW - 10 + i)
                                                                      for i in range(4)]
    full, with_usage, without = passes([node_res("n", {"default": 4}), a, b, done], live, [(done, ran)])
    assert full == with_usage
    per_team = lambda result: sorted(tid.split("-")[1] for tid, _ in result[0])  # noqa: E731  (uid prefix)
    assert per_team(full).count(a.uid[:5]) == 3 and per_team(full).count(b.uid[:5]) == 1
    assert per_team(without).count(a.uid[:5]) == 2, "without the settled usage team-b looks idle"


@st.composite
def worlds(draw):
    """Namespaces with or without a budget and share, a node of a few slots, settled Jobs (each completion
    succeeded, at some time in the last days) and Jobs with tasks waiting (and some finished attempts)."""
    resources = [node_res("n", {"default": draw(st.integers(1, 6))})]
    for ns in NAMESPACES:
        spec = {"share": draw(st.sampled_from([1, 2, 3]))}
        if draw(st.booleans()):
            spec["budget"] = {"cpuHours": draw(st.sampled_from([0.5, 1, 2, 4])),
                              "window": draw(st.sampled_from(["1h", "6h", "1d"]))}
        resources.append(namespace_res(ns, **spec))
    settled, live = [], []
    for j in range(draw(st.integers(0, 6))):
        ns, cpus = draw(st.sampled_from(NAMESPACES)), draw(st.sampled_from([None, 0.5, 1.0, 2.0]))
        ran = draw(st.lists(spans, min_size=1, max_size=3))
        res = job(f"done{j}", ns, cpus, len(ran), DONE)
        resources.append(res)
        settled.append((res, [finished(res, k, NOW - ago - length, NOW - ago) for k, (ago, length) in enumerate(ran)]))
    for ns in NAMESPACES:
        waiting, before = draw(st.integers(0, 4)), draw(st.lists(spans, max_size=2))
        if not waiting:
            continue
        res = job("work", ns, draw(st.sampled_from([None, 0.5, 1.0])), waiting + len(before))
        resources.append(res)
        live += [finished(res, k, NOW - ago - length, NOW - ago) for k, (ago, length) in enumerate(before)]
        live += [task(res, len(before) + k, created_at=NOW - draw(st.integers(1, 100))) for k in range(waiting)]
    return resources, live, settled


@settings(max_examples=150, deadline=None, derandomize=True)
@given(worlds(), st.sampled_from([POLICY, QueuePolicy(half_life=6 * HOUR)]))
def test_property_settled_jobs_with_their_usage_plan_as_with_all_their_tasks(world, policy):
    """The same starts (so the same fair-share order) and the same budget refusals, whatever the namespaces,
    budgets, shares and history. (Without the usage the test above shows they differ.)"""
    resources, live, settled = world
    full, with_usage, _ = passes(resources, live, settled, policy=policy)
    assert with_usage == full


def test_a_usage_carried_at_another_half_life_is_refused():
    with pytest.raises(ValueError, match="settled usage decays at"):
        plan([], [], snapshot(), NOW, STORE_ID, MARK_KEY, queue=QueuePolicy(half_life=60.0),
             settled_usage=SettledUsage(POLICY.rate))
