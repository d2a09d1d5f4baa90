"""The planner with namespaces: one name in two namespaces is two owners everywhere (tasks, statuses,
colocateWith, spread, maxPerNode, late results), a namespace's nodeSelector and mounts apply to its
tasks, and a Namespace being deleted is purged once nothing is left in it. Pure: ``plan`` on records."""

from __future__ import annotations

from dataclasses import replace

from factories import (
    NOW, applied, container, in_namespace, job_res, namespace_res, node_res, obs, run, service_res, snapshot,
    status_of, task,
)
from reconciler.kinds import Kind
from reconciler.records import LABEL_NAMESPACE, LABEL_OWNER
from reconciler.spec.models import TaskPhase

R, S, L = TaskPhase.RUNNING, TaskPhase.SUCCEEDED, TaskPhase.LOST


def starts(p) -> dict[str, str]:
    return {s.task_id: s.node for s in p.starts}


def unschedulable(p) -> dict[str, str]:
    return {tid: ch["message"] for tid, ch in p.task_updates.items() if ch.get("reason") == "Unschedulable"}


def test_one_job_name_in_two_namespaces_is_two_owners():
    """team-a's and team-b's Job/nightly each get their own tasks, labels and status: team-a's running tasks
    neither take team-b's parallelism nor complete it."""
    a = in_namespace(job_res("nightly", completions=2, parallelism=2), "team-a")
    b = in_namespace(job_res("nightly", completions=2, parallelism=2), "team-b")
    node = node_res("n", {"default": 8})
    running = [task(a, i, phase=R, node="n", container_id=f"ca{i}", started_at=NOW - 5) for i in (0, 1)]
    p = run([node, a, b], running, snapshot(obs("n", *(container(t) for t in running))))

    assert [(t.namespace, t.owner, t.index) for t in p.new_tasks] == [("team-b", "Job/nightly", 0),
                                                                     ("team-b", "Job/nightly", 1)]
    assert not {t.id for t in p.new_tasks} & {t.id for t in running}, "task ids differ through the owner's uid"
    assert {(s.spec.labels[LABEL_NAMESPACE], s.spec.labels[LABEL_OWNER]) for s in p.starts} == {
        ("team-b", "Job/nightly")}
    assert status_of(p, Kind.JOB, "nightly", "team-a")["active"] == 2
    assert status_of(p, Kind.JOB, "nightly", "team-b")["active"] == 2
    assert all(e.namespace == "team-b" for e in p.events if e.reason == "Scheduled")

    done = [replace(t, phase=S, exit_code=0, finished_at=NOW) for t in running]
    p = run([node, a, b], done)
    assert status_of(p, Kind.JOB, "nightly", "team-a")["phase"] == "Complete"
    assert status_of(p, Kind.JOB, "nightly", "team-b")["phase"] == "Pending"


def test_colocate_with_names_a_resource_of_the_tasks_own_namespace():
    """Both namespaces have Service/db, on different nodes: each namespace's Job goes to its own db's node,
    and a namespace without a db waits though another namespace has one."""
    nodes = [node_res(n, {"default": 4}) for n in ("a", "b", "c")]
    db_a, db_b = (in_namespace(service_res("db"), ns) for ns in ("team-a", "team-b"))
    app_a, app_b, app_c = (in_namespace(job_res("app", colocateWith="Service/db"), ns)
                           for ns in ("team-a", "team-b", "team-c"))
    dbs = [task(db_a, phase=R, node="b", container_id="c-a", created_at=1),
           task(db_b, phase=R, node="c", container_id="c-b", created_at=1)]
    p = run([*nodes, db_a, db_b, app_a, app_b, app_c], dbs,
            snapshot(obs("a"), obs("b", container(dbs[0])), obs("c", container(dbs[1]))))
    by_ns = {t.namespace: t.id for t in p.new_tasks}
    assert starts(p)[by_ns["team-a"]] == "b" and starts(p)[by_ns["team-b"]] == "c"
    assert unschedulable(p)[by_ns["team-c"]] == "0/3 nodes: 3 not where Service/db runs"


def test_spread_counts_only_the_replicas_of_the_same_namespace():
    """team-a's Service/web on node a does not push team-b's Service/web off it: a is the least busy node,
    and team-b's web has no replica anywhere yet."""
    a, b = node_res("a", {"default": 4}), node_res("b", {"default": 2})
    web_a, web_b = (in_namespace(service_res("web"), ns) for ns in ("team-a", "team-b"))
    other = job_res("other")
    held = [task(web_a, phase=R, node="a", container_id="c1", started_at=NOW - 100, created_at=1),
            task(other, phase=R, node="b", container_id="c2", started_at=NOW - 100, created_at=1)]
    p = run([a, b, web_a, web_b, other], held, snapshot(obs("a", container(held[0])), obs("b", container(held[1]))))
    [new] = p.new_tasks
    assert (new.namespace, starts(p)[new.id]) == ("team-b", "a")


def test_max_per_node_counts_only_the_replicas_of_the_same_namespace():
    node = node_res("a", {"default": 4})
    web_a, web_b = (in_namespace(service_res("web", maxPerNode=1), ns) for ns in ("team-a", "team-b"))
    held = task(web_a, phase=R, node="a", container_id="c1", started_at=NOW - 100, created_at=1)
    p = run([node, web_a, web_b], [held], snapshot(obs("a", container(held))))
    [new] = p.new_tasks
    assert new.namespace == "team-b" and starts(p) == {new.id: "a"}


def test_a_late_result_counts_for_its_own_namespaces_job():
    """A team-a task lost with its node finishes successfully meanwhile: it counts for team-a's Job even though
    team-b's Job/x already has index 0 done (by their key, the two are different owners)."""
    node = node_res("n", {"default": 4})
    a, b = (in_namespace(job_res("x"), ns) for ns in ("team-a", "team-b"))
    lost = task(a, phase=L, node="n", container_id="c-lost", reason="NodeLost", finished_at=NOW - 10)
    other = task(b, phase=S, node="n", container_id="c-b", exit_code=0, finished_at=NOW - 20)
    p = run([node, a, b], [lost, other], snapshot(obs("n", container(lost, "exited"))))
    assert p.task_updates[lost.id]["reason"] == "SucceededWhileLost"


def test_a_namespaces_node_selector_applies_to_its_tasks_beside_their_own():
    """Tasks of team-a only go to nodes with the namespace's labels; a task whose own selector contradicts the
    namespace's matches no node and says so; another namespace is not held to team-a's selector."""
    shared = replace(node_res("shared", {"default": 8}), labels={"pool": "shared", "zone": "x"})
    other = replace(node_res("other", {"default": 8}), labels={"pool": "gpu", "zone": "x"})
    ns = namespace_res("team-a", nodeSelector={"pool": "shared"})
    jobs = [in_namespace(job_res("a", completions=3, parallelism=3), "team-a"),
            in_namespace(job_res("zoned", nodeSelector={"zone": "x"}), "team-a"),
            in_namespace(job_res("escape", nodeSelector={"pool": "gpu"}), "team-a"),
            job_res("free", nodeSelector={"pool": "gpu"})]
    p = run([shared, other, ns, *jobs], [])
    by_owner: dict[str, set[str]] = {}
    for t in p.new_tasks:
        if t.id in starts(p):
            by_owner.setdefault(t.owner_name, set()).add(starts(p)[t.id])
    assert by_owner["a"] == {"shared"} and by_owner["zoned"] == {"shared"}
    assert "escape" not in by_owner
    assert set(unschedulable(p).values()) == {"0/2 nodes: 2 selector mismatch"}
    assert by_owner["free"] == {"other"}, "the default namespace is not held to team-a's selector"


def test_a_namespaces_mounts_are_added_to_its_tasks_and_need_the_nodes_allowed_mounts():
    """team-a mounts /home/team-a into every task (replacing a template mount on the same target); a node that
    does not allow that path cannot take the task; tasks of other namespaces are not given the mount."""
    ns = namespace_res("team-a", mounts=[{"source": "/home/team-a", "target": "/home"}])
    job = in_namespace(job_res("j", template={"image": "busybox", "mounts": [
        {"source": "/data", "target": "/data", "readOnly": True}, {"source": "scratch", "target": "/home"}]}),
        "team-a")
    plain = job_res("plain")
    allowing = node_res("a", {"default": 4}, allowedMounts=["/data", "/home/team-a"])
    p = run([allowing, ns, job, plain], [])
    mounts = {s.task_id.split("-")[0]: s.spec.mounts for s in p.starts}
    assert mounts["j"] == (("/data", "/data", True), ("/home/team-a", "/home", False))
    assert mounts["plain"] == ()

    strict = node_res("a", {"default": 4}, allowedMounts=["/data"])
    p = run([strict, ns, job], [])
    assert list(unschedulable(p).values()) == [
        "0/1 nodes: 1 bind mount /home/team-a not in allowedMounts (exact paths; a subpath needs "
        "{path, subpaths: true} and readOnly)"]


def test_a_namespace_being_deleted_is_purged_with_the_last_of_what_is_in_it():
    """Its resources were marked deleted with it: while one still has a task running the Namespace stays;
    in the pass that purges the last of them, the Namespace goes too, with an event."""
    node = node_res("n", {"default": 4})
    ns = namespace_res("team-b", deleted_at=NOW - 1)
    gone = in_namespace(job_res("gone", deleted_at=NOW - 1), "team-b")
    busy = in_namespace(job_res("busy", deleted_at=NOW - 1), "team-b")
    same_name = job_res("busy")  # default's Job/busy has nothing to do with it
    t = task(busy, phase=R, node="n", container_id="c1", started_at=NOW - 5)
    p = run([node, ns, gone, busy, same_name], [t], snapshot(obs("n", container(t))))
    assert (Kind.JOB, "team-b", "gone") in p.purges
    assert (Kind.JOB, "team-b", "busy") not in p.purges and (Kind.NAMESPACE, "", "team-b") not in p.purges
    assert [r.task_id for r in p.removals] == [t.id]

    stopped = applied(p, [t])[t.id]
    p = run([node, ns, busy, same_name], [stopped], snapshot(obs("n")))
    assert p.purges == [(Kind.JOB, "team-b", "busy"), (Kind.NAMESPACE, "", "team-b")]
    assert [(e.kind, e.namespace, e.name, e.reason) for e in p.events if e.reason == "Deleted"] == [
        ("Job", "team-b", "busy", "Deleted"), ("Namespace", "", "team-b", "Deleted")]
    assert (Kind.JOB, "default", "busy") not in p.purges


def test_an_empty_namespace_being_deleted_is_purged_and_a_live_one_is_not():
    p = run([namespace_res("empty", deleted_at=NOW - 1), namespace_res("team-a"), namespace_res("default")], [])
    assert p.purges == [(Kind.NAMESPACE, "", "empty")]
