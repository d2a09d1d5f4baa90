"""A pass costs what is active and what changed, never the declared size: the pure planner with
Jobs and Services that declare 10^9 completions, parallelism or replicas.

The counts asserted here (tasks created per pass, tasks waiting for a node) are what keeps a pass
cheap; no test times anything. The records are built past the limits ``apply`` enforces, through
``declared``, because the planner must hold for any size it is handed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from factories import NOW, F, P, R, S, applied, container, job_res, node_res, obs, run, service_res, snapshot, task
from reconciler.engine.tasks import MAX_UNPLACED
from reconciler.records import ResourceRecord, TaskRecord
from reconciler.spec.models import Kind

HUGE = 10**9


def declared(record: ResourceRecord, **spec) -> ResourceRecord:
    """``record`` with these spec fields, its model copied without validation (so past apply's limits)."""
    model = record.model
    out = replace(record, spec={**record.spec, **spec})
    out.__dict__["model"] = model.model_copy(update={"spec": model.spec.model_copy(update=spec)})
    return out


def unplaced(tasks) -> list[TaskRecord]:
    return [t for t in tasks if t.phase is P and t.node is None]


def test_declared_builds_a_record_past_the_apply_limits():
    job = declared(job_res(), completions=HUGE, parallelism=HUGE)
    assert (job.model.spec.completions, job.model.spec.parallelism, job.spec["completions"]) == (HUGE, HUGE, HUGE)


def test_huge_job_creates_at_most_the_unplaced_bound_per_pass():
    """10^9 completions at parallelism 10^9: the first pass creates MAX_UNPLACED tasks (indexes 0..99),
    places what fits, and the next pass creates only as many as were placed."""
    job = declared(job_res(), completions=HUGE, parallelism=HUGE)
    node = node_res("a", {"default": 7})

    first = run([node, job], [])

    assert [t.index for t in first.new_tasks] == list(range(MAX_UNPLACED))
    assert len(first.starts) == 7
    tasks = applied(first, [])
    assert len(unplaced(tasks.values())) == MAX_UNPLACED - 7
    status = [s for k, _, n, s in first.statuses if k is Kind.JOB][0]
    assert status["active"] == MAX_UNPLACED

    running = [replace(t, phase=R, container_id=f"c-{t.id}", started_at=NOW) for t in tasks.values() if t.node]
    waiting = [t for t in tasks.values() if not t.node]
    snap = snapshot(obs("a", *(container(t) for t in running)))
    second = run([node, job], [*running, *waiting], snap, now=NOW + 1)

    assert [t.index for t in second.new_tasks] == list(range(MAX_UNPLACED, MAX_UNPLACED + 7))
    assert not second.starts  # the node is full: they wait, and nothing more is created
    third = run([node, job], list(applied(second, [*running, *waiting]).values()), snap, now=NOW + 2)
    assert not third.new_tasks


def test_huge_job_with_small_parallelism_creates_parallelism_tasks():
    job = declared(job_res(), completions=HUGE, parallelism=4)

    p = run([node_res("a", {"default": 2}), job], [])

    assert [t.index for t in p.new_tasks] == [0, 1, 2, 3]


def test_huge_job_fills_indexes_in_order_across_passes_without_skips_or_duplicates():
    """Over many passes, with every third index failing its first attempt: first attempts take the
    indexes in order, every failed index is retried (before new indexes), no index has two active
    attempts or two successes, and never more than MAX_UNPLACED tasks wait for a node."""
    job = declared(job_res(backoffLimit=HUGE, backoff={"initialSeconds": 0, "maxSeconds": 0}),
                   completions=HUGE, parallelism=HUGE)
    node = node_res("a", {"default": 9})
    tasks: dict[str, TaskRecord] = {}
    firsts: list[int] = []
    now = NOW
    for _ in range(40):
        p = run([node, job], list(tasks.values()), now=now)
        assert len(p.new_tasks) <= MAX_UNPLACED
        firsts += [t.index for t in p.new_tasks if t.attempt == 1]
        tasks = applied(p, list(tasks.values()))
        assert len(unplaced(tasks.values())) <= MAX_UNPLACED
        active = Counter(t.index for t in tasks.values() if t.active)
        assert max(active.values(), default=0) <= 1
        for s in p.starts:  # what the host does: each started task ends before the next pass
            t = tasks[s.task_id]
            ok = t.index % 3 or t.attempt > 1
            tasks[t.id] = replace(t, phase=S if ok else F, exit_code=0 if ok else 1, started_at=now, finished_at=now)
        now += 1

    assert firsts == list(range(len(firsts))) and len(firsts) > MAX_UNPLACED
    by_index: dict[int, list[TaskRecord]] = defaultdict(list)
    for t in tasks.values():
        by_index[t.index].append(t)
    assert sorted(by_index) == list(range(len(by_index)))
    succeeded = [t.index for t in tasks.values() if t.phase is S]
    assert len(succeeded) == len(set(succeeded)) > 200
    last_pass = now - 1
    for index, attempts in by_index.items():
        assert sorted(t.attempt for t in attempts) == list(range(1, len(attempts) + 1))
        if all(t.phase is F for t in attempts):  # a failure gets its retry in the very next pass
            assert [t.finished_at for t in attempts] == [last_pass]
        else:
            assert len(attempts) == (2 if index % 3 == 0 and attempts[0].phase is F else 1)


def test_huge_service_creates_at_most_the_unplaced_bound_per_pass():
    """10^9 replicas: MAX_UNPLACED new replicas (indexes 0..99), then only as many as were placed."""
    web = declared(service_res(), replicas=HUGE)
    node = node_res("a", {"default": 5})

    first = run([node, web], [])

    assert sorted(t.index for t in first.new_tasks) == list(range(MAX_UNPLACED))
    assert len(first.starts) == 5
    tasks = applied(first, [])
    running = [replace(t, phase=R, container_id=f"c-{t.id}", started_at=NOW) for t in tasks.values() if t.node]
    waiting = [t for t in tasks.values() if not t.node]
    snap = snapshot(obs("a", *(container(t) for t in running)))

    second = run([node, web], [*running, *waiting], snap, now=NOW + 1)

    assert sorted(t.index for t in second.new_tasks) == list(range(MAX_UNPLACED, MAX_UNPLACED + 5))
    assert len(unplaced(applied(second, [*running, *waiting]).values())) == MAX_UNPLACED


def rolling_update(slots: int):
    """150 replicas of an old template, with nothing available to protect, on one node of ``slots``:
    one pass of the new template. Returns the plan and the old tasks."""
    old = service_res(replicas=150, template={"image": "nginx:1"})
    web = service_res(replicas=150, template={"image": "nginx:2"}, update={"minReadySeconds": 1000})
    tasks = [task(old, i, 1, R, node="a", container_id=f"c{i}", started_at=NOW - 1, created_at=NOW - 2)
             for i in range(150)]
    snap = snapshot(obs("a", *(container(t) for t in tasks)))
    return run([node_res("a", {"default": slots}), web], tasks, snap), tasks


def test_rolling_update_replaces_at_most_the_unplaced_bound_per_pass():
    """The 150 replicas are replaced at once, but with 50 slots free only MAX_UNPLACED at a time;
    the rest keep their old task until a later pass."""
    p, tasks = rolling_update(200)

    assert len(p.new_tasks) == MAX_UNPLACED
    stopped = {tid for tid, ch in p.task_updates.items() if ch.get("reason") == "Replaced"}
    assert len(stopped) == MAX_UNPLACED
    assert {t.index for t in p.new_tasks} == {t.index for t in tasks if t.id in stopped}


def test_running_tasks_are_counted_against_their_nodes_with_one_request_per_owner(monkeypatch):
    """A pass over many running tasks builds the request a task holds once per owner, not once per
    task (it was most of a pass at 10,000 running), and still counts every one of them: the nodes
    are full, so nothing new is placed, and the one free slot left takes the next task."""
    from reconciler.engine import placement

    job = declared(job_res(), completions=HUGE, parallelism=HUGE)
    nodes = [node_res(n, {"default": 50}) for n in ("a", "b")]
    running = [task(job, i, 1, R, node="ab"[i % 2], container_id=f"c{i}", started_at=NOW) for i in range(99)]
    snap = snapshot(*(obs(n, *(container(t) for t in running if t.node == n)) for n in ("a", "b")))
    built = []
    real = placement.request
    monkeypatch.setattr(placement, "request", lambda t, spec, **kw: built.append(t.id) or real(t, spec, **kw))

    p = run([*nodes, job], running, snap)

    assert [s.node for s in p.starts] == ["b"]  # a holds 50 of 50, b 49
    assert len(built) == 1 + len(p.new_tasks)  # one for the owner's running tasks, one per waiting task


def test_rolling_update_replaces_every_replica_the_free_slots_can_take_in_one_pass():
    """The same 150 replicas with 850 slots free: every one gets its new task in one pass (the free
    room, not MAX_UNPLACED, bounds what waits), and every new task is placed."""
    p, _ = rolling_update(1000)

    assert sorted(t.index for t in p.new_tasks) == list(range(150))
    assert len(p.starts) == 150


def test_huge_job_creates_as_many_tasks_as_free_slots_in_one_pass():
    """10^9 completions on 3 nodes of 400 free slots: the first pass creates and places 1,200 tasks
    (not MAX_UNPLACED); once they run and the nodes are full, a pass creates MAX_UNPLACED to wait."""
    job = declared(job_res(), completions=HUGE, parallelism=HUGE)
    nodes = [node_res(n, {"default": 400}) for n in ("a", "b", "c")]

    first = run([*nodes, job], [], snapshot(*(obs(n, cpus=None) for n in "abc")))

    assert [t.index for t in first.new_tasks] == list(range(1200))
    assert Counter(s.node for s in first.starts) == {"a": 400, "b": 400, "c": 400}
    running = [replace(t, phase=R, container_id=f"c-{t.id}", started_at=NOW) for t in applied(first, []).values()]
    full = snapshot(*(obs(n, *(container(t) for t in running if t.node == n), cpus=None) for n in "abc"))
    second = run([*nodes, job], running, full, now=NOW + 1)
    assert [t.index for t in second.new_tasks] == list(range(1200, 1200 + MAX_UNPLACED))
    assert not second.starts


def test_free_room_counts_only_slots_the_template_fits():
    """A Job asking 2 cpus on nodes of 4 cpus and 300 slots fits 2 a node; one with a nodeSelector
    counts only the nodes it selects; a slot type no node has leaves the floor."""
    labelled = [replace(node_res(n, {"default": 300}), labels={"zone": z}) for n, z in (("a", "x"), ("b", "y"))]
    snap = snapshot(obs("a", cpus=4), obs("b", cpus=4))
    wide = declared(job_res("wide", template={"image": "busybox", "resources": {"cpus": 2}}),
                    completions=HUGE, parallelism=HUGE)
    picky = declared(job_res("picky", nodeSelector={"zone": "y"}, template={"image": "busybox"}),
                     completions=HUGE, parallelism=HUGE)
    gpu = declared(job_res("gpu", executionType="gpu"), completions=HUGE, parallelism=HUGE)

    assert len(run([*labelled, wide], [], snap).new_tasks) == MAX_UNPLACED  # 4 fit: the floor
    assert len(run([*labelled, picky], [], snap).new_tasks) == 300
    assert len(run([*labelled, gpu], [], snap).new_tasks) == MAX_UNPLACED


def test_two_huge_jobs_share_the_free_slots():
    """Two Jobs of 10^9 completions on 500 free slots: the first is told of all 500, the second of
    what is left (none: the floor), so the pass leaves at most the free slots plus MAX_UNPLACED waiting."""
    nodes = [node_res("a", {"default": 500})]
    one = declared(job_res("one"), completions=HUGE, parallelism=HUGE)
    two = declared(job_res("two"), completions=HUGE, parallelism=HUGE)

    p = run([*nodes, one, two], [], snapshot(obs("a", cpus=None)))

    made = Counter(t.owner_name for t in p.new_tasks)
    assert made == {"one": 500, "two": MAX_UNPLACED}
    assert len(p.starts) == 500


@settings(max_examples=60, deadline=None)
@given(slots=st.lists(st.integers(0, 60), min_size=1, max_size=6), held=st.integers(0, 400),
       completions=st.integers(1, 10**6))
def test_a_pass_creates_what_the_free_slots_take_and_never_more_than_they_or_the_floor_allow(
        slots, held, completions):
    """Any cluster (nodes of 0-60 slots, some held by another Job's running tasks) and any Job size:
    one pass creates min(completions, max(MAX_UNPLACED, free slots)) tasks, places
    min(created, free), and leaves at most max(MAX_UNPLACED, free) waiting: never the declared size."""
    names = [f"n{i}" for i in range(len(slots))]
    nodes = [node_res(n, {"default": k}) if k else node_res(n, {"gpu": 1}) for n, k in zip(names, slots)]
    spots = [n for n, k in zip(names, slots) for _ in range(k)][:held]
    other = job_res("other", completions=max(1, len(spots)), parallelism=max(1, len(spots)))  # wants nothing more
    running = [task(other, i, 1, R, node=n, container_id=f"o{i}", started_at=NOW) for i, n in enumerate(spots)]
    snap = snapshot(*(obs(n, *(container(t) for t in running if t.node == n), cpus=None) for n in names))
    job = declared(job_res(), completions=completions, parallelism=completions)
    free = sum(slots) - len(spots)

    p = run([*nodes, *([other] if spots else []), job], running, snap)

    mine = [t for t in p.new_tasks if t.owner_name == "job"]
    assert len(mine) == min(completions, max(MAX_UNPLACED, free))
    assert sum(s.task_id in {t.id for t in mine} for s in p.starts) == min(len(mine), free)
    left = unplaced(t for t in applied(p, running).values() if t.owner_name == "job")
    assert len(left) <= max(MAX_UNPLACED, free)
