"""Namespace quotas in the pure scheduler and planner (reconciler.engine.quotas, scheduler, placement): each
cap's refusal and its reason, the check coming after the nodes (a node summary wins, and a quota refusal
reserves no node against other namespaces), use growing as a pass places, the indexed placement equal to
the full scan with quotas, and tasks waiting with the quota's reason until room frees."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import NOW, applied, container, in_namespace, job_res, namespace_res, node_res, obs, run, snapshot, task
from reconciler.engine.quotas import NamespaceLimits
from reconciler.engine.scheduler import NodeView, Placement, Request, default_pipeline
from reconciler.kinds import Kind, TaskPhase
from reconciler.spec.models import NamespaceSpec

R, S = TaskPhase.RUNNING, TaskPhase.SUCCEEDED
GIB = 1 << 30
JOB_X = (Kind.JOB, "team-a", "x")


def limits(name: str = "team-a", **quota) -> NamespaceLimits:
    return NamespaceLimits.of(name, NamespaceSpec.model_validate({"quota": quota}))


def used(lim: NamespaceLimits, *reqs: Request) -> NamespaceLimits:
    for r in reqs:
        lim.take(r)
    return lim


def ask(cpus: float | None = None, memory: int | None = None, etype: str = "default", ns: str = "team-a",
        task_id: str = "t", owner=JOB_X) -> Request:
    return Request(task_id, etype, cpus=cpus, memory=memory, namespace=ns, owner=owner)


@pytest.mark.parametrize(
    "lim, req, reason",
    [
        (limits(tasks=2), ask(), None),
        (used(limits(tasks=2), ask(), ask()), ask(), "quota: team-a uses 2/2 tasks"),
        (limits(tasks=0), ask(), "quota: team-a uses 0/0 tasks"),
        (used(limits(cpus=8), ask(4), ask(4)), ask(1), "quota: team-a uses 8/8 cpus"),
        (used(limits(cpus=8), ask(6)), ask(2), None),
        (used(limits(cpus=8), ask(6)), ask(4), "quota: team-a uses 6/8 cpus, a task asks 4"),
        (used(limits(cpus=0.3), ask(0.1), ask(0.1)), ask(0.1), None),  # 0.1 * 3 fits 0.3 (floats)
        (limits(cpus=8), ask(None), "quota: team-a caps cpus; Job/x requests none (set template.resources.cpus)"),
        (used(limits(memory="16g"), ask(memory=16 * GIB)), ask(memory=1), "quota: team-a uses 16g/16g memory"),
        (used(limits(memory="16g"), ask(memory=15 * GIB)), ask(memory=2 * GIB),
         "quota: team-a uses 15g/16g memory, a task asks 2g"),
        (limits(memory="16g"), ask(memory=None),
         "quota: team-a caps memory; Job/x requests none (set template.resources.memory)"),
        (used(limits(slots={"gpu": 2}), ask(etype="gpu"), ask(etype="gpu")), ask(etype="gpu"),
         "quota: team-a uses 2/2 gpu slots"),
        (used(limits(slots={"gpu": 2}), ask(etype="gpu"), ask(etype="gpu")), ask(), None),  # other types uncapped
        (limits(), ask(None), None),  # a quota without caps
    ],
)
def test_each_cap_refuses_the_task_that_would_break_it_with_its_reason(lim, req, reason):
    assert lim.refusal(req) == reason


def test_a_namespace_without_quota_or_budget_has_no_limits():
    assert NamespaceLimits.of("team-a", NamespaceSpec.model_validate({"share": 2})) is None


def nodes(*names: str, slots: int = 4) -> list[NodeView]:
    return [NodeView(n, ready=True, schedulable=True, slots={"default": slots}) for n in names]


def test_quota_use_grows_as_the_pass_places_and_other_namespaces_are_not_held_to_it():
    """team-a may hold 2 tasks: its first two are placed, the rest refused with the quota's reason, while team-b's
    tasks, after them in the queue, are placed."""
    reqs = [ask(ns="team-a", task_id=f"a{i}") for i in range(4)] + [ask(ns="team-b", task_id=f"b{i}") for i in range(2)]
    lim = {"team-a": limits(tasks=2)}

    placed = default_pipeline().place(reqs, nodes("n1", "n2"), lim)

    assert [p.node is not None for p in placed] == [True, True, False, False, True, True]
    assert {p.reason for p in placed[2:4]} == {"quota: team-a uses 2/2 tasks"}
    assert lim["team-a"].tasks_used == 2


def test_no_node_keeps_its_node_summary_and_a_quota_refusal_follows_it():
    """Nodes are checked first: a task no node can take says why per node; when its quota would refuse it too,
    the quota's reason follows and the task waits on no node."""
    full = nodes("n1", slots=1)
    full[0].used["default"] = 1
    [plain] = default_pipeline().place([ask(ns="team-b")], full, {"team-a": limits(tasks=0)})
    [over] = default_pipeline().place([ask()], full, {"team-a": limits(tasks=0)})

    assert plain == Placement("t", None, "0/1 nodes: 1 no free default slot", frozenset({"n1"}))
    assert over == Placement("t", None, "0/1 nodes: 1 no free default slot; quota: team-a uses 0/0 tasks")


def test_a_quota_refusal_reserves_no_node_against_other_namespaces():
    """team-a's large task finds no node with cpus to spare. Within its quota it reserves the node it waits for,
    so team-b's small task may not take it; over its quota it reserves nothing and team-b's task runs."""
    def pool() -> list[NodeView]:
        return [NodeView("n1", ready=True, schedulable=True, slots={"default": 4}, cpus=4.0, cpus_used=2.0)]

    reqs = [ask(cpus=3, task_id="big"), ask(cpus=1, ns="team-b", task_id="small", owner="Job/small")]

    within = default_pipeline().place(reqs, pool(), {"team-a": limits(cpus=8)})
    over = default_pipeline().place(reqs, pool(), {"team-a": used(limits(cpus=8), ask(6))})

    assert [(p.node, p.reason) for p in within] == [(None, "0/1 nodes: 1 insufficient cpu"),
                                                    (None, "0/1 nodes: 1 reserved for an earlier task")]
    assert [(p.node, p.reason) for p in over] == [
        (None, "0/1 nodes: 1 insufficient cpu; quota: team-a uses 6/8 cpus, a task asks 3"), ("n1", "least busy of 1 eligible")]


def test_a_shape_refused_for_quota_stays_refused_for_the_pass_and_a_smaller_one_still_fits():
    """After 7 of 8 cpus are held, 2-cpu tasks are refused (and stay refused: use only grows in a pass), while a
    1-cpu task of the same namespace takes the last cpu; each refusal gives the use at its turn."""
    reqs = [ask(2, task_id="a1"), ask(2, task_id="a2"), ask(1, task_id="a3"), ask(2, task_id="a4")]
    lim = {"team-a": used(limits(cpus=8), ask(5))}

    placed = default_pipeline().place(reqs, nodes("n1"), lim)

    assert [p.node for p in placed] == ["n1", None, "n1", None]
    assert [p.reason for p in placed if p.node is None] == ["quota: team-a uses 7/8 cpus, a task asks 2",
                                                            "quota: team-a uses 8/8 cpus"]
    assert lim["team-a"].cpus_used == 8


def test_a_spent_budget_refuses_every_task_of_its_namespace_after_the_quota():
    lim = limits(tasks=1)
    lim.spent = "budget: team-a used 500/500 cpu-hours in 30d"
    assert lim.refusal(ask()) == "budget: team-a used 500/500 cpu-hours in 30d"
    assert used(lim, ask()).refusal(ask()) == "quota: team-a uses 1/1 tasks"


# -- the indexed placement is the full scan, with quotas --------------------------------------------

NAMESPACES = ["team-a", "team-b", "team-c"]
namespace_caps = st.fixed_dictionaries({
    "tasks": st.sampled_from([None, 0, 1, 3]),
    "cpus": st.sampled_from([None, 2.0, 4.0]),
    "slots": st.sampled_from([{}, {"gpu": 1}]),
})
quota_requests = st.lists(
    st.tuples(st.sampled_from(NAMESPACES), st.sampled_from(["default", "default", "gpu"]),
              st.sampled_from([0.5, 1.0, 3.0]), st.sampled_from(["spread", "binpack"])),
    min_size=1, max_size=30,
)
quota_nodes = st.lists(st.tuples(st.integers(1, 4), st.integers(0, 2), st.sampled_from([None, 4.0])),
                       min_size=1, max_size=4)


def _full_scan(reqs, views, lim) -> list[Placement]:
    pipeline, reserved, out = default_pipeline(), {}, []
    for r in reqs:
        held = reserved.setdefault(r.execution_type, {})
        one = pipeline.place_one(r, views, held, lim)
        for name in one.waits_on:
            held.setdefault(name, r.task_id)
        out.append(one)
    return out


def _parts(reason: str) -> tuple[str | None, str | None]:
    """A refusal as (node summary, namespace refusal): either may be missing."""
    for word in ("quota:", "budget:"):
        if reason.startswith(word):
            return None, reason
        if f"; {word}" in reason:
            nodes, limit = reason.split(f"; {word}", 1)
            return nodes, word + limit
    return reason, None


@settings(max_examples=150, deadline=None)
@given(quota_nodes, quota_requests, st.fixed_dictionaries({ns: namespace_caps for ns in NAMESPACES[:2]}))
def test_property_indexed_placement_equals_the_full_scan_with_quotas_and_never_breaks_one(node_specs, specs, caps):
    def views() -> list[NodeView]:
        return [NodeView(f"n{i}", ready=True, schedulable=True, slots={"default": d, "gpu": g} if g else {"default": d},
                         cpus=cpus) for i, (d, g, cpus) in enumerate(node_specs)]

    def quotas() -> dict[str, NamespaceLimits]:
        return {ns: NamespaceLimits(ns, cpus=c["cpus"], tasks=c["tasks"], slots=dict(c["slots"])) for ns, c in caps.items()}

    reqs = [Request(f"t{i}", etype, cpus=cpus, namespace=ns, owner=f"Job/{ns}", placement=mode)
            for i, (ns, etype, cpus, mode) in enumerate(specs)]
    fast_limits, slow_limits = quotas(), quotas()

    fast = default_pipeline().place(reqs, views(), fast_limits)
    slow = _full_scan(reqs, views(), slow_limits)

    assert [p.node for p in fast] == [p.node for p in slow]
    first_summary: dict = {}  # a shape no node fits keeps its first node summary for the rest of the pass
    for r, f, s in zip(reqs, fast, slow):
        if s.node is not None:
            assert f.reason == s.reason
            continue
        (f_nodes, f_limit), (s_nodes, s_limit) = _parts(f.reason), _parts(s.reason)
        assert f_limit == s_limit, "a namespace's refusal gives its use at the request's turn"
        shape = replace(r, task_id="", namespace="", owner="")
        assert f_nodes == (first_summary.setdefault(shape, s_nodes) if s_nodes else None)
        if s.node is None and "quota:" in s.reason:
            assert not s.waits_on, "a quota refusal reserves nothing"
    for ns, lim in fast_limits.items():
        mine = [r for r, p in zip(reqs, fast) if p.node and r.namespace == ns]
        if lim.tasks is not None:
            assert len(mine) <= lim.tasks
        if lim.cpus is not None:
            assert sum(r.cpus for r in mine) <= lim.cpus + 1e-9
        for etype, cap in lim.slots.items():
            assert sum(r.execution_type == etype for r in mine) <= cap
        assert (lim.tasks_used, lim.slots_used) == (len(mine), Counter(r.execution_type for r in mine))


# -- the planner: active tasks count, waiting tasks say why and start once room frees ------------------


def unschedulable(p) -> dict[str, str]:
    return {tid: ch["message"] for tid, ch in p.task_updates.items() if ch.get("reason") == "Unschedulable"}


RESOURCES = {"template": {"image": "busybox", "resources": {"cpus": 2, "memory": "1g"}}}


def test_tasks_over_the_quota_wait_with_its_reason_and_start_as_room_frees():
    """team-a may use 4 cpus; its Job asks 2 per task, 4 at once: 2 start, 2 wait with the quota's reason (and an
    event). When one finishes, its place goes to the next in the following pass; the other keeps waiting."""
    ns = namespace_res("team-a", quota={"cpus": 4})
    job = in_namespace(job_res("x", completions=4, parallelism=4, **RESOURCES), "team-a")
    node = node_res("n", {"default": 8})

    p = run([node, ns, job], [], snapshot(obs("n", cpus=16)))
    tasks = applied(p, [])
    assert len(p.starts) == 2
    waiting = unschedulable(p)
    assert sorted(waiting.values()) == ["quota: team-a uses 4/4 cpus"] * 2
    assert [e.message for e in p.events if e.reason == "FailedScheduling"] == [
        f"{tid}: quota: team-a uses 4/4 cpus" for tid in sorted(waiting)]

    started = {s.task_id for s in p.starts}
    done, still = sorted(started)
    tasks[done] = replace(tasks[done], phase=S, exit_code=0, container_id="c1", started_at=NOW, finished_at=NOW + 5)
    tasks[still] = replace(tasks[still], phase=R, container_id="c2", started_at=NOW)
    p = run([node, ns, job], list(tasks.values()), snapshot(obs("n", container(tasks[still]), cpus=16)), now=NOW + 6)
    assert len(p.starts) == 1 and p.starts[0].task_id in waiting
    [left] = set(waiting) - {p.starts[0].task_id}
    assert left not in p.task_updates, "still waiting, with the same reason: nothing to record"


def test_a_container_seen_exited_gives_its_quota_to_the_next_task_in_the_same_pass():
    """As with a node's slot: the task is collected while the next one starts; with the container still running,
    the next one waits for the quota."""
    ns = namespace_res("team-a", quota={"tasks": 1})
    job = in_namespace(job_res("x", completions=2, parallelism=2), "team-a")
    node = node_res("n", {"default": 8})
    first = task(job, 0, phase=R, node="n", container_id="c0", started_at=NOW - 5, created_at=1)
    queued = task(job, 1, created_at=2)

    p = run([node, ns, job], [first, queued], snapshot(obs("n", container(first, "exited"))))
    assert [(s.task_id, s.node) for s in p.starts] == [(queued.id, "n")]
    p = run([node, ns, job], [first, queued], snapshot(obs("n", container(first))))
    assert not p.starts and unschedulable(p) == {queued.id: "quota: team-a uses 1/1 tasks"}


def test_quota_counts_active_tasks_with_a_node_and_the_cpus_their_owners_request():
    """A Running task and a Pending one placed on a node hold the quota; a finished one and one waiting for a
    node do not; the cpus are those the owner's template requests."""
    ns = namespace_res("team-a", quota={"cpus": 5})
    held = in_namespace(job_res("held", completions=4, parallelism=4, **RESOURCES), "team-a")
    new = in_namespace(job_res("new", **RESOURCES), "team-a")
    node = node_res("n", {"default": 8})
    rows = [task(held, 0, phase=R, node="n", container_id="c0", started_at=NOW - 9, created_at=1),
            task(held, 1, phase=TaskPhase.PENDING, node="n", created_at=2),
            task(held, 2, phase=S, node="n", container_id="c2", exit_code=0, finished_at=NOW - 1, created_at=3),
            task(held, 3, created_at=4, not_before=NOW + 60)]  # waiting for a node (backoff)
    p = run([node, ns, held, new], rows, snapshot(obs("n", container(rows[0]), cpus=16)))
    assert sorted(unschedulable(p).values()) == ["quota: team-a uses 4/5 cpus, a task asks 2"]


def test_a_workload_applied_before_its_namespace_capped_cpus_waits_and_says_which_field_to_set():
    ns = namespace_res("team-a", quota={"cpus": 4})
    job = in_namespace(job_res("x"), "team-a")
    p = run([node_res("n", {"default": 8}), ns, job], [])
    assert list(unschedulable(p).values()) == [
        "quota: team-a caps cpus; Job/x requests none (set template.resources.cpus)"]
    assert not p.starts


def test_another_namespaces_quota_does_not_hold_a_task_back():
    ns = namespace_res("team-a", quota={"tasks": 0})
    job = in_namespace(job_res("x"), "team-b")
    p = run([node_res("n", {"default": 8}), ns, job], [])
    assert len(p.starts) == 1 and not unschedulable(p)


# -- budgets: cpu-hours consumed over a rolling window ------------------------------------------------

HOUR = 3600.0


def ran(owner, index: int, start: float | None, end: float | None, phase: TaskPhase = S, **kw):
    """A task of ``owner`` that ran from ``start`` to ``end`` (None: still running)."""
    return task(owner, index, phase=phase, node="n", container_id=f"c{index}", started_at=start, finished_at=end,
                created_at=(start or NOW) - 1, **kw)


@pytest.mark.parametrize(
    "start, end, cpus, since, expected",
    [
        (NOW - 100, NOW - 40, 2.0, NOW - 1000, 120.0),  # inside the window: cpus x run time
        (NOW - 100, NOW - 40, None, NOW - 1000, 60.0),  # no request: one cpu
        (NOW - 100, NOW - 40, 0.5, NOW - 70, 15.0),  # only the part inside the window
        (NOW - 100, NOW - 80, 2.0, NOW - 70, 0.0),  # over before the window began
        (NOW - 100, None, 2.0, NOW - 1000, 200.0),  # still running: up to now
        (None, None, 2.0, NOW - 1000, 0.0),  # never started
    ],
)
def test_a_tasks_share_of_the_budget_is_its_cpus_times_its_run_time_in_the_window(start, end, cpus, since, expected):
    from reconciler.engine.quotas import cpu_seconds

    t = ran(job_res("x"), 0, start, end, phase=R if end is None else S)
    assert cpu_seconds(t, cpus, since, NOW) == pytest.approx(expected)


def test_budget_use_sums_each_namespaces_tasks_over_its_own_window():
    from reconciler.engine.quotas import budget_use

    a = in_namespace(job_res("x"), "team-a")
    b = in_namespace(job_res("x"), "team-b")
    c = in_namespace(job_res("x"), "team-c")
    rows = [ran(a, 0, NOW - 3 * HOUR, NOW - 2 * HOUR), ran(a, 1, NOW - HOUR, None, R),
            ran(b, 0, NOW - 3 * HOUR, NOW - 2 * HOUR), ran(c, 0, NOW - HOUR, None, R)]

    use = budget_use(rows, {"team-a": 4 * HOUR, "team-b": HOUR}, {a.key: 2.0}, NOW)

    assert use == {"team-a": pytest.approx(2 * 2 * HOUR), "team-b": 0.0}, "team-c has no budget: not summed"


def budgeted(cpu_hours: float, window: str = "1h", **spec):
    return namespace_res("team-a", budget={"cpuHours": cpu_hours, "window": window}, **spec)


def test_past_its_budget_a_namespace_starts_nothing_new_and_its_running_tasks_go_on():
    """team-a may use 1 cpu-hour an hour. Two 1-cpu tasks have run for 30 minutes each: the budget is spent, so
    the third waits with the budget's reason and the running ones are not stopped. An hour later the window
    holds only what still runs (the running one counts up to now), and with a larger budget the third starts."""
    job = in_namespace(job_res("x", completions=3, parallelism=3,
                               template={"image": "busybox", "resources": {"cpus": 1}}), "team-a")
    node = node_res("n", {"default": 8})
    rows = [ran(job, 0, NOW - 1800, NOW), ran(job, 1, NOW - 1800, None, R)]
    snap = snapshot(obs("n", container(rows[1])))

    p = run([node, budgeted(1), job], rows, snap)
    assert not p.starts and not p.removals
    assert list(unschedulable(p).values()) == ["budget: team-a used 1/1 cpu-hours in 1h"]
    assert rows[1].id not in p.task_updates, "the running task is left alone"

    later = NOW + HOUR
    p = run([node, budgeted(1), job], rows, snapshot(obs("n", container(rows[1])), at=later), now=later)
    assert list(unschedulable(p).values()) == ["budget: team-a used 1/1 cpu-hours in 1h"], \
        "the running task alone has used the last hour"
    p = run([node, budgeted(1.5), job], rows, snapshot(obs("n", container(rows[1])), at=later), now=later)
    assert len(p.starts) == 1


def test_a_budget_counts_tasks_without_a_cpu_request_as_one_cpu_and_other_namespaces_are_not_held():
    job = in_namespace(job_res("x", completions=2, parallelism=2), "team-a")
    other = in_namespace(job_res("y"), "team-b")
    rows = [ran(job, 0, NOW - 1800, NOW - 900)]  # a quarter of a cpu-hour at one cpu
    node = node_res("n", {"default": 8})

    assert len(run([node, budgeted(0.25), job, other], rows).starts) == 1, "team-b's task only"
    assert len(run([node, budgeted(0.3), job, other], rows).starts) == 2
