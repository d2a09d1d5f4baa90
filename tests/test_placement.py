"""Placement through the planner: selectors, resources, pins, binpack, priority and starvation."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from factories import NOW, container, job_res, node_res, obs, run, service_res, snapshot, task
from reconciler.spec.models import TaskPhase


def placed(p) -> dict[str, str]:
    """task id -> node for every Start in the plan."""
    return {s.task_id: s.node for s in p.starts}


def reasons(p) -> dict[str, str]:
    return {tid: ch["message"] for tid, ch in p.task_updates.items() if ch.get("reason") == "Unschedulable"}


def test_node_selector_places_only_on_matching_labels():
    """A nodeSelector keeps tasks off nodes whose labels do not all match."""
    a = node_res("a", {"default": 4})
    b = node_res("b", {"default": 4})
    a = a.__class__(**{**a.__dict__, "labels": {"zone": "x", "disk": "ssd"}})
    b = b.__class__(**{**b.__dict__, "labels": {"zone": "y", "disk": "ssd"}})
    job = job_res("sel", completions=3, parallelism=3, nodeSelector={"zone": "x", "disk": "ssd"})
    assert set(placed(run([a, b, job], [])).values()) == {"a"}
    picky = job_res("picky", nodeSelector={"zone": "z"})
    assert list(reasons(run([a, b, picky], [])).values()) == ["0/2 nodes: 2 selector mismatch"]


def test_resources_must_fit_what_the_host_reports_minus_placed_requests():
    """cpus/memory requests fit within the host's CPUs and memory less what placed tasks asked for."""
    a = node_res("a", {"default": 10})
    job = job_res("big", completions=5, parallelism=5,
                  template={"image": "busybox", "resources": {"cpus": 1.5, "memory": "3g"}})
    p = run([a, job], [], snapshot(obs("a", cpus=4)))  # 4 CPUs, 8 GiB
    assert len(placed(p)) == 2  # 2 x 1.5 cpu and 2 x 3g fit; a third needs 4.5 cpu / 9g
    assert set(reasons(p).values()) == {"0/1 nodes: 1 insufficient cpu"}
    huge = job_res("huge", template={"image": "busybox", "resources": {"memory": "64g"}})
    assert list(reasons(run([a, huge], [])).values()) == ["0/1 nodes: 1 memory request exceeds node"]


def test_node_name_pins_a_task():
    """nodeName runs only on that node, even when another is less busy."""
    nodes = [node_res(n, {"default": 2}) for n in ("a", "b", "c")]
    job = job_res("pinned", completions=2, parallelism=2, nodeName="c")
    assert set(placed(run([*nodes, job], [])).values()) == {"c"}


def test_colocate_with_follows_the_other_resource_and_waits_for_it():
    """colocateWith places on the node where the target's task runs, and waits while none does."""
    nodes = [node_res(n, {"default": 2}) for n in ("a", "b")]
    db = service_res("db", replicas=1)
    app = job_res("app", colocateWith="Service/db")
    db_task = task(db, phase=TaskPhase.RUNNING, node="b", container_id="c-db", created_at=1)
    p = run([*nodes, db, app], [db_task], snapshot(obs("a"), obs("b", container(db_task))))
    assert [n for t, n in placed(p).items() if t.startswith("app")] == ["b"]
    p = run([*nodes, app], [])
    assert list(reasons(p).values()) == ["0/2 nodes: 2 not where Service/db runs"]


def test_sticky_keeps_the_replacement_on_the_previous_node_while_ready():
    """sticky: true places the next attempt on the previous attempt's node, unless it is not Ready."""
    nodes = [node_res(n, {"default": 2}) for n in ("a", "b")]
    job = job_res("st", sticky=True, backoff={"initialSeconds": 0, "maxSeconds": 0})
    failed = task(job, phase=TaskPhase.FAILED, node="b", exit_code=1, finished_at=NOW - 5, created_at=1)
    assert list(placed(run([*nodes, job], [failed])).values()) == ["b"]
    p = run([*nodes, job], [failed], snapshot(obs("a"), obs("b", ready=False)))
    assert list(placed(p).values()) == ["a"]
    loose = job_res("st", backoff={"initialSeconds": 0, "maxSeconds": 0})
    assert list(placed(run([*nodes, loose], [failed])).values()) == ["a"]  # spread: a is less busy


def test_binpack_fills_the_busiest_node_first():
    """placement: binpack puts tasks on the most used node that still has a free slot."""
    nodes = [node_res(n, {"default": 3}) for n in ("a", "b")]
    job = job_res("pack", completions=4, parallelism=4, placement="binpack")
    assert sorted(placed(run([*nodes, job], [])).values()) == ["a", "a", "a", "b"]
    spread = job_res("pack", completions=4, parallelism=4)
    assert sorted(placed(run([*nodes, spread], [])).values()) == ["a", "a", "b", "b"]


def test_higher_priority_is_placed_first_then_fifo():
    """With one free slot, the higher-priority job's task wins over an older low-priority one."""
    node = node_res("a", {"default": 1})
    old_low = job_res("low")
    new_high = job_res("high", priority=10)
    t_low = task(old_low, created_at=1)
    t_high = task(new_high, created_at=2)
    p = run([node, old_low, new_high], [t_low, t_high])
    assert list(placed(p)) == [t_high.id]
    same_a, same_b = job_res("first"), job_res("second")
    p = run([node, same_a, same_b], [task(same_b, created_at=5), task(same_a, created_at=3)])
    assert [t for t in placed(p)] == [task(same_a).id]


def test_a_large_task_is_not_starved_by_later_small_ones():
    """A waiting task that needs more capacity reserves its node: later small tasks may not take it."""
    node = node_res("a", {"default": 4})
    running = job_res("busy", template={"image": "busybox", "resources": {"cpus": 2}})
    big = job_res("big", template={"image": "busybox", "resources": {"cpus": 4}})
    small = job_res("small", completions=3, parallelism=3, template={"image": "busybox", "resources": {"cpus": 1}})
    busy_task = task(running, phase=TaskPhase.RUNNING, node="a", container_id="c1", created_at=1)
    big_task = task(big, created_at=2)
    small_tasks = [task(small, i, created_at=3 + i) for i in range(3)]
    p = run([node, running, big, small], [busy_task, big_task, *small_tasks], snapshot(obs("a", container(busy_task), cpus=4)))
    assert placed(p) == {}, "2 free cpus must be held for the 4-cpu task that came first"
    assert reasons(p)[small_tasks[0].id] == "0/1 nodes: 1 reserved for an earlier task"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 3)), min_size=1, max_size=6),
       st.lists(st.dictionaries(st.sampled_from(["zone", "disk"]), st.sampled_from(["x", "y"])), min_size=1, max_size=4))
def test_property_no_selector_violation_and_no_slot_overflow(jobs, node_labels):
    """Whatever the jobs and node labels, no task lands on a node its selector rejects or beyond slots."""
    nodes = []
    for i, labels in enumerate(node_labels):
        n = node_res(f"n{i}", {"default": 2})
        nodes.append(n.__class__(**{**n.__dict__, "labels": labels}))
    js = [job_res(f"j{i}", completions=c, parallelism=c, priority=prio,
                  nodeSelector={"zone": "x"} if i % 2 else {}) for i, (prio, c) in enumerate(jobs)]
    p = run([*nodes, *js], [])
    labels_of = {n.name: n.labels for n in nodes}
    per_node: dict[str, int] = {}
    for s in p.starts:
        per_node[s.node] = per_node.get(s.node, 0) + 1
        if int(s.task_id.split("-")[0][1:]) % 2:
            assert labels_of[s.node].get("zone") == "x"
    assert all(v <= 2 for v in per_node.values())
    assert run([*nodes, *js], []).starts == p.starts  # same input, same placement


def _reference(pipeline, reqs, nodes):
    """The specification of Pipeline.place: a full scan per request, with reservations."""
    reserved: dict = {}
    out = []
    for r in reqs:
        held = reserved.setdefault(r.execution_type, {})
        placed_one = pipeline.place_one(r, nodes, held)
        for name in placed_one.waits_on:
            held.setdefault(name, r.task_id)
        out.append(placed_one)
    return out


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.dictionaries(st.sampled_from(["default", "gpu"]), st.integers(0, 3), min_size=1),
                       st.booleans(), st.sampled_from([None, 2.0, 4.0]), st.sampled_from([{}, {"zone": "x"}])),
             min_size=1, max_size=6),
    st.lists(st.tuples(st.sampled_from(["default", "gpu"]), st.sampled_from(["spread", "binpack"]),
                       st.sampled_from([None, 1.0, 3.0]), st.booleans()), min_size=1, max_size=25),
)
def test_property_indexed_placement_equals_the_full_scan(node_specs, request_specs):
    """The heap-indexed Pipeline.place picks exactly what a full scan per request would."""
    from reconciler.engine.scheduler import NodeView, Request, default_pipeline

    def views():
        return [NodeView(f"n{i}", ready=ready, schedulable=True, slots=dict(slots), labels=dict(labels), cpus=cpus)
                for i, (slots, ready, cpus, labels) in enumerate(node_specs)]

    reqs = [Request(f"t{i}", etype, cpus=cpus, placement=mode, selector=(("zone", "x"),) if sel else ())
            for i, (etype, mode, cpus, sel) in enumerate(request_specs)]
    fast = default_pipeline().place(reqs, views())
    slow = _reference(default_pipeline(), reqs, views())
    assert [p.node for p in fast] == [p.node for p in slow]
    # A refused shape keeps the summary of its first refusal for the rest of the pass.
    first_refusal: dict = {}
    for r, f, s in zip(reqs, fast, slow):
        if s.node is None:
            expected = first_refusal.setdefault(replace(r, task_id=""), s.reason)
            assert f.reason == expected
        else:
            assert f.reason == s.reason


def test_bind_mounts_only_of_allowed_paths():
    """Bind mounts need a node whose allowedMounts lists the path (below it only with subpaths, read-only);
    named volumes need no entry."""
    open_node = node_res("a", {"default": 2}, allowedMounts=["/srv/data", {"path": "/srv/ref", "subpaths": True}])
    closed = node_res("b", {"default": 2})
    ok = job_res("ok", template={"image": "busybox", "mounts": [{"source": "/srv/data", "target": "/in"},
                                                               {"source": "/srv/ref/x", "target": "/ref",
                                                                "readOnly": True},
                                                               {"source": "scratch", "target": "/tmp/s"}]})
    assert list(placed(run([open_node, closed, ok], [])).values()) == ["a"]
    sock = job_res("sock", template={"image": "busybox",
                                     "mounts": [{"source": "/var/run/docker.sock", "target": "/s"}]})
    assert list(reasons(run([open_node, closed, sock], [])).values()) == [
        "0/2 nodes: 2 bind mount /var/run/docker.sock not in allowedMounts "
        "(exact paths; a subpath needs {path, subpaths: true} and readOnly)"]
    below = job_res("below", template={"image": "busybox", "mounts": [{"source": "/srv/data/esc", "target": "/h"}]})
    assert list(reasons(run([open_node, below], [])).values()) == [
        "0/1 nodes: 1 bind mount /srv/data/esc not in allowedMounts "
        "(exact paths; a subpath needs {path, subpaths: true} and readOnly)"]
    writable = job_res("writable", template={"image": "busybox", "mounts": [{"source": "/srv/ref/x", "target": "/r"}]})
    assert list(reasons(run([open_node, writable], [])).values()) == [
        "0/1 nodes: 1 bind mount /srv/ref/x must be readOnly (allowedMounts /srv/ref allows subpaths read-only)"]
    sneaky = job_res("sneaky", template={"image": "busybox", "mounts": [{"source": "/srv/data/../../etc", "target": "/e"}]})
    assert list(reasons(run([open_node, sneaky], [])).values()) == [
        "0/1 nodes: 1 bind mount /srv/data/../../etc not in allowedMounts "
        "(exact paths; a subpath needs {path, subpaths: true} and readOnly)"]


def test_host_and_container_networks_only_where_the_node_allows_them():
    """network: host and container:X are placed only on nodes listing them in allowedNetworks; others anywhere."""
    plain = node_res("a", {"default": 2})
    open_node = node_res("b", {"default": 2}, allowedNetworks=["host", "container"])
    for network, where in [("host", ["b"]), ("container:db", ["b"]), ("backend", ["a"]), (None, ["a"])]:
        job = job_res("j", template={"image": "busybox", "network": network})
        assert list(placed(run([plain, open_node, job], [])).values()) == where, network
    job = job_res("j", template={"image": "busybox", "network": "host"})
    assert list(reasons(run([plain, job], [])).values()) == ["0/1 nodes: 1 network host not in allowedNetworks"]
