"""Fair share (reconciler.engine.fairshare): decayed slot-seconds, the commitment of held slots, the queue order
(priority, then the namespace furthest below its share, FIFO within one), the planner's use of it, and a pure
simulation of passes with tasks of fixed durations, whose properties say that slot use converges to the shares."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import MARK_KEY, NOW, STORE_ID, in_namespace, job_res, namespace_res, node_res, obs, snapshot, task
from reconciler.engine.plan import plan
from reconciler.engine.fairshare import FIFO, FairQueue, QueuePolicy, slot_seconds, usage
from reconciler.engine.scheduler import NodeView, Request, default_pipeline
from reconciler.kinds import Kind, TaskPhase
from reconciler.records import TaskRecord

R, S = TaskPhase.RUNNING, TaskPhase.SUCCEEDED
HOUR = 3600.0
POLICY = QueuePolicy()  # fair, half-life one hour
TAU = HOUR / math.log(2)  # 1/λ: the commitment of one held slot


def record(ns: str, i: int, start: float | None = None, end: float | None = None, node: str | None = "n",
           phase: TaskPhase | None = None) -> TaskRecord:
    phase = phase or (R if end is None and start is not None else S if end is not None else TaskPhase.PENDING)
    return TaskRecord(id=f"{ns}-{i}", owner_kind=Kind.JOB, owner_name="x", owner_uid="u", index=i, attempt=1,
                      phase=phase, node=node, started_at=start, finished_at=end, namespace=ns)


@pytest.mark.parametrize(
    "start, end, expected",
    [
        (NOW - 2 * HOUR, NOW - HOUR, (0.5 - 0.25) * TAU),  # an hour's run that ended an hour ago weighs a quarter
        (NOW - 60, None, TAU * (1 - 2 ** (-60 / HOUR))),  # running: up to now, nearly its 60 s
        (NOW - 60, NOW + 30, TAU * (1 - 2 ** (-60 / HOUR))),  # an end after now counts up to now
        (None, None, 0.0),  # never started
    ],
)
def test_slot_seconds_are_decayed_with_the_half_life(start, end, expected):
    assert slot_seconds(record("a", 0, start, end), NOW, POLICY.rate) == pytest.approx(expected)


def test_usage_adds_a_commitment_per_held_slot_and_leaves_out_waiting_and_releasing_tasks():
    rows = [record("a", 0, NOW - 10), record("a", 1, node="n", phase=TaskPhase.PENDING),  # placed, not started yet
            record("a", 2, node=None), record("a", 3, NOW - 10), record("b", 0, NOW - 100, NOW - 50),
            record("c", 0, NOW - 10)]

    used = usage(rows, {"a", "b"}, NOW, POLICY, releasing={"a-3"})

    ran = slot_seconds(rows[0], NOW, POLICY.rate)
    assert used == {"a": pytest.approx(2 * ran + 2 * TAU), "b": pytest.approx(slot_seconds(rows[4], NOW, POLICY.rate))}


def test_the_policy_refuses_an_unknown_order_and_a_half_life_that_is_not_positive():
    with pytest.raises(ValueError, match="queue order 'lifo': use fair or fifo"):
        QueuePolicy("lifo")
    with pytest.raises(ValueError, match="half-life 0 must be positive"):
        QueuePolicy(half_life=0)


def req(ns: str, i: int, priority: int = 0) -> Request:
    return Request(f"{ns}{i}", "default", namespace=ns, priority=priority, owner=f"Job/{ns}")


def drawn(queue: FairQueue, placed: set[str] | None = None) -> list[str]:
    """The queue's order, each request placed (charged) unless ``placed`` names the ones that are."""
    out = []
    for r in queue:
        out.append(r.task_id)
        if placed is None or r.task_id in placed:
            queue.placed(r)
    return out


def test_the_queue_takes_from_the_namespace_furthest_below_its_share_fifo_within_one():
    """team-a came first with 4 tasks, team-b after it: with equal use they alternate, team-a first (its head
    came first); each placement charges its namespace at once."""
    reqs = [req("a", i) for i in range(4)] + [req("b", i) for i in range(3)]
    assert drawn(FairQueue(reqs, {}, {}, TAU)) == ["a0", "b0", "a1", "b1", "a2", "b2", "a3"]


def test_shares_weigh_usage_and_history_counts():
    reqs = [req("a", i) for i in range(6)] + [req("b", i) for i in range(3)]
    assert drawn(FairQueue(reqs, {}, {"a": 2, "b": 1}, TAU)) == ["a0", "b0", "a1", "a2", "b1", "a3", "a4", "b2", "a5"]
    assert drawn(FairQueue(reqs, {"a": 2.5 * TAU}, {}, TAU))[:4] == ["b0", "b1", "b2", "a0"], \
        "team-a holds more: team-b's tasks come first"


def test_priority_comes_before_fair_share_and_a_refused_task_charges_nothing():
    reqs = [req("a", 0, priority=5), req("b", 0, priority=5), req("a", 1), req("b", 1)]
    assert drawn(FairQueue(reqs, {"a": 10 * TAU}, {}, TAU)) == ["b0", "a0", "b1", "a1"]
    reqs = [req("a", i) for i in range(3)] + [req("b", 0)]
    assert drawn(FairQueue(reqs, {}, {}, TAU), placed={"b0"}) == ["a0", "a1", "a2", "b0"], \
        "team-a's refusals do not move it behind team-b"


queued = st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from([0, 0, 1, 5])), max_size=40)


@settings(max_examples=200, deadline=None)
@given(queued, st.dictionaries(st.sampled_from("abc"), st.floats(0, 5 * TAU)),
       st.dictionaries(st.sampled_from("abc"), st.sampled_from([0.5, 1, 2, 3])), st.sets(st.integers(0, 39)))
def test_property_the_queue_is_a_deterministic_priority_order_that_keeps_fifo_within_a_namespace(
        specs, used, shares, refused):
    ordered = sorted(enumerate(specs), key=lambda x: -x[1][1])  # the caller's FIFO order: priority first
    reqs = [Request(f"t{i}", "default", namespace=ns, priority=prio) for i, (ns, prio) in ordered]
    placed = {f"t{i}" for i in range(40) if i not in refused}

    order = drawn(FairQueue(reqs, used, shares, TAU), placed)

    assert sorted(order) == sorted(r.task_id for r in reqs)
    by_id = {r.task_id: r for r in reqs}
    assert [by_id[t].priority for t in order] == sorted((r.priority for r in reqs), reverse=True)
    for ns in "abc":
        assert [t for t in order if by_id[t].namespace == ns] == [r.task_id for r in reqs if r.namespace == ns]
    assert drawn(FairQueue(reqs, used, shares, TAU), placed) == order


# -- the planner ---------------------------------------------------------------------------------------


def test_the_planner_interleaves_namespaces_and_fifo_keeps_first_come():
    """team-a's 6 tasks were created before team-b's 6 and 4 slots are free: the fair queue gives each 2, the
    FIFO queue all 4 to team-a. Each team-a task that ran for an hour weighs on it in the next pass."""
    a = in_namespace(job_res("x", completions=6, parallelism=6), "team-a")
    b = in_namespace(job_res("x", completions=6, parallelism=6), "team-b")
    node = node_res("n", {"default": 4})
    rows = [task(a, i, created_at=1 + i) for i in range(6)] + [task(b, i, created_at=10 + i) for i in range(6)]

    def started(policy: QueuePolicy, tasks, *namespaces) -> Counter:
        p = plan([node, a, b, *namespaces], tasks, snapshot(obs("n")), NOW, STORE_ID, MARK_KEY, queue=policy)
        return Counter(s.task_id.split("-")[1] for s in p.starts)

    uid = {a.uid[:5]: "team-a", b.uid[:5]: "team-b"}
    fair = started(POLICY, rows)
    assert {uid[k]: n for k, n in fair.items()} == {"team-a": 2, "team-b": 2}
    fifo = started(QueuePolicy(FIFO), rows)
    assert {uid[k]: n for k, n in fifo.items()} == {"team-a": 4}
    weighted = started(POLICY, rows, namespace_res("team-a", share=3))
    assert {uid[k]: n for k, n in weighted.items()} == {"team-a": 3, "team-b": 1}

    history = [replace(task(b, 10 + i, phase=S, node="n", container_id=f"c{i}"), started_at=NOW - 2 * HOUR,
                       finished_at=NOW - HOUR) for i in range(4)]
    behind = started(POLICY, rows + history)
    assert {uid[k]: n for k, n in behind.items()} == {"team-a": 3, "team-b": 1}, \
        "team-b's last hour (4 slot-hours, weighing a quarter: one slot's commitment) puts it one slot behind"


# -- the controller's settings reach the planner ---------------------------------------------------------


def test_the_controllers_queue_settings_reach_every_pass(tmp_path, monkeypatch):
    """`controller --queue fifo --fair-share-half-life 30m` makes a Controller whose passes plan with that policy."""
    from reconciler.ops.controller import Settings, controller_for, queue_settings
    from reconciler.runtime import controller as runtime
    from reconciler.store import Store

    order, half_life = queue_settings("fifo", "30m")
    store = Store(tmp_path / "s.db")
    ctl = controller_for(store, Settings(queue=order, fair_share_half_life=half_life))
    seen = []
    monkeypatch.setattr(runtime, "plan",
                        lambda *args, **kw: seen.append((args[-1], kw["settled_usage"].rate)) or runtime.Plan())
    try:
        ctl.reconcile_once()
        assert seen == [(QueuePolicy(FIFO, 1800.0), QueuePolicy(FIFO, 1800.0).rate)], \
            "the settled Jobs' usage decays at the controller's half-life"
        assert controller_for(store, Settings()).queue == QueuePolicy("fair", 3600.0)
    finally:
        ctl.executor.shutdown()
        ctl.stopper.shutdown()
        store.close()


# -- a pure simulation of passes ------------------------------------------------------------------------


@dataclass
class Pool:
    """Nodes of ``slots`` each, namespaces with a backlog of tasks of a fixed duration each, placed pass by pass
    through the scheduler and the fair-share queue the planner uses; what ran is kept as task records."""

    nodes: int
    slots: int
    durations: dict[str, float]  # namespace -> how long each of its tasks runs
    shares: dict[str, float] = field(default_factory=dict)
    arrivals: dict[str, float] = field(default_factory=dict)  # namespace -> when its backlog is submitted
    policy: QueuePolicy = POLICY
    tasks: list[TaskRecord] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # task ids in the order placed

    def step(self, now: float) -> None:
        self.tasks = [replace(t, phase=S, finished_at=t.started_at + self.durations[t.namespace])
                      if t.phase is R and t.started_at + self.durations[t.namespace] <= now else t for t in self.tasks]
        views = [NodeView(f"n{i}", ready=True, schedulable=True, slots={"default": self.slots})
                 for i in range(self.nodes)]
        by_name = {v.name: v for v in views}
        for t in self.tasks:
            if t.phase is R:
                by_name[t.node].used["default"] += 1
        free = self.nodes * self.slots
        made = Counter(t.namespace for t in self.tasks)
        # Each backlog offers as many tasks as the pool has slots, in submission (FIFO) order.
        waiting = sorted(((self.arrivals.get(ns, 0.0), ns, made[ns] + k) for ns in self.durations
                          if self.arrivals.get(ns, 0.0) <= now for k in range(free)))
        reqs = [Request(f"{ns}/{i}", "default", namespace=ns, owner=ns) for _, ns, i in waiting]
        if self.policy.order == FIFO:
            placements = default_pipeline().place(reqs, views)
        else:
            queue = FairQueue(reqs, usage(self.tasks, set(self.durations), now, self.policy), self.shares,
                              self.policy.commitment)
            placements = default_pipeline().place(queue, views, None, on_placed=queue.placed)
        for p in placements:
            if p.node is not None:
                ns, i = p.task_id.split("/")
                self.tasks.append(TaskRecord(id=p.task_id, owner_kind=Kind.JOB, owner_name=ns, owner_uid="u",
                                             index=int(i), attempt=1, phase=R, node=p.node, started_at=now,
                                             namespace=ns))
                self.order.append(p.task_id)

    def run(self, seconds: float, every: float = 1.0) -> "Pool":
        for n in range(int(seconds / every)):
            self.step(n * every)
        self.end = seconds
        return self

    def slot_seconds(self, since: float) -> dict[str, float]:
        """Slot-seconds each namespace ran between ``since`` and the end of the run."""
        out = dict.fromkeys(self.durations, 0.0)
        for t in self.tasks:
            end = self.end if t.finished_at is None else min(t.finished_at, self.end)
            out[t.namespace] += max(0.0, end - max(t.started_at, since))
        return out


pools = st.tuples(st.integers(1, 3), st.integers(2, 6))  # nodes, slots each
# A 2:1 split of whole slots needs a pool whose slots divide by 3: with 4 slots the nearest are 3:1 and 2:2.
pools_in_thirds = st.tuples(st.integers(1, 3), st.sampled_from([3, 6]))
durations = st.sampled_from([3.0, 5.0, 8.0, 13.0])
half_lives = st.sampled_from([300.0, HOUR, 24 * HOUR])


def split(pool: Pool, since: float) -> dict[str, float]:
    use = pool.slot_seconds(since)
    total = sum(use.values())
    return {ns: u / total for ns, u in use.items()}


@settings(max_examples=12, deadline=None)
@given(pools, durations, durations, half_lives)
def test_property_equal_shares_converge_to_equal_slot_use(size, da, db, half_life):
    """Both namespaces backlogged from the start, with tasks of different lengths: each gets half the pool's
    slot-seconds, within 10%."""
    nodes, slots = size
    pool = Pool(nodes, slots, {"a": da, "b": db}, policy=QueuePolicy(half_life=half_life)).run(240)
    got = split(pool, since=40)
    assert abs(got["a"] - 0.5) <= 0.05, got


@settings(max_examples=12, deadline=None)
@given(pools_in_thirds, durations, durations, half_lives)
def test_property_shares_two_to_one_converge_to_two_to_one(size, da, db, half_life):
    nodes, slots = size
    pool = Pool(nodes, slots, {"a": da, "b": db}, {"a": 2, "b": 1}, policy=QueuePolicy(half_life=half_life)).run(240)
    use = pool.slot_seconds(since=40)
    assert use["a"] / use["b"] == pytest.approx(2, rel=0.1), use


@settings(max_examples=25, deadline=None)
@given(pools, durations)
def test_property_a_lone_namespace_gets_the_whole_pool(size, d):
    nodes, slots = size
    pool = Pool(nodes, slots, {"a": d, "b": 5.0}, arrivals={"b": 10_000}).run(100)
    assert pool.slot_seconds(since=0)["a"] == pytest.approx(nodes * slots * 100)


@settings(max_examples=15, deadline=None)
@given(pools, durations, durations)
def test_property_same_inputs_same_order(size, da, db):
    nodes, slots = size
    first = Pool(nodes, slots, {"a": da, "b": db}, {"a": 2}).run(60)
    second = Pool(nodes, slots, {"a": da, "b": db}, {"a": 2}).run(60)
    assert first.order == second.order and first.tasks == second.tasks


def test_a_newcomer_gets_half_the_pool_from_its_arrival_on_and_fifo_gives_it_none():
    """team-a has had the pool to itself for 5 minutes when team-b's backlog arrives: from then on team-b runs on
    about half the slots (its lack of history earns it a little more), where the FIFO queue would keep it waiting
    behind team-a's backlog."""
    fair = Pool(2, 4, {"a": 5.0, "b": 5.0}, arrivals={"b": 300}).run(600)
    fifo = Pool(2, 4, {"a": 5.0, "b": 5.0}, arrivals={"b": 300}, policy=QueuePolicy(FIFO)).run(600)
    assert 0.5 <= split(fair, since=300)["b"] <= 0.6
    assert split(fifo, since=300)["b"] == 0.0
