"""Which containers carrying our store label the planner trusts (records.distrust, plan), pure.

Anyone who can reach a node's Docker API can start a container with brokerctl's labels. Only a
container whose id the store recorded for its task on that node, or one with the task's
deterministic name and a mark made with the store's secret for that task on that node, is ours;
any other is never adopted, collected or removed, and is reported on its Node.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from factories import (
    MARK_KEY, NOW, STORE_ID, P, R, S, applied, container, job_res, node_res, obs, run, snapshot, status_of, task,
)
from reconciler.records import ContainerObs, container_mark, distrust
from reconciler.spec.models import Kind


def forged(t, node: str, **changes) -> ContainerObs:
    """A finished container for ``t`` that would complete it, made like the store's (signed for ``node``)
    and then altered by ``changes``."""
    c = container(t, "exited", cid=f"forged-{t.id}", mark=container_mark(MARK_KEY, STORE_ID, t.id, node))
    return replace(c, **changes)


def untrusted_events(p) -> list[tuple[str, str]]:
    return [(e.name, e.message) for e in p.events if e.reason == "UntrustedContainer"]


@pytest.mark.parametrize(
    "task_node, seen_on, changes, why",
    [
        ("a", "a", {}, None),  # placed here, deterministic name, valid mark: ours
        ("b", "a", {}, "task {tid} is placed on node b, not a"),
        (None, "a", {}, "task {tid} was never placed"),
        ("a", "a", {"name": "impostor"}, "its name is not bk-store1-{tid}"),
        ("a", "a", {"mark": "0" * 64}, "its brokerctl.mark label is missing or wrong"),
        ("a", "a", {"mark": ""}, "its brokerctl.mark label is missing or wrong"),
        ("a", "a", {"mark": "ünïcode"}, "its brokerctl.mark label is missing or wrong"),
        ("a", "a", {"task_id": None}, "no brokerctl.task label"),
    ],
)
def test_distrust_rules(task_node, seen_on, changes, why):
    """A container is ours only on its task's node, with the deterministic name and a valid mark."""
    job = job_res()
    t = task(job, node=task_node)
    c = forged(t, seen_on, **changes)

    assert distrust(c, seen_on, t, MARK_KEY, STORE_ID) == (why.format(tid=t.id) if why else None)


def test_a_mark_is_bound_to_its_task_node_store_and_key():
    """A mark copied from another task, another node, another store or made with another key does not verify."""
    job = job_res()
    t, other = task(job, 0, node="a"), task(job, 1, node="a")
    good = container_mark(MARK_KEY, STORE_ID, t.id, "a")
    for mark in (container_mark(MARK_KEY, STORE_ID, other.id, "a"), container_mark(MARK_KEY, STORE_ID, t.id, "b"),
                 container_mark(MARK_KEY, "store2", t.id, "a"), container_mark("17" * 32, STORE_ID, t.id, "a")):
        assert mark != good
        assert distrust(forged(t, "a", mark=mark), "a", t, MARK_KEY, STORE_ID) is not None


def test_the_recorded_container_id_is_trusted_without_a_mark():
    """A container made before marks existed is still ours when its id is the one recorded for its task
    on that node; the same id seen on another node is not."""
    t = task(job_res(), phase=R, node="a", container_id="c-old")
    old = ContainerObs(id="c-old", name="anything", task_id=t.id, owner=t.owner, state="running")

    assert distrust(old, "a", t, MARK_KEY, STORE_ID) is None
    assert distrust(old, "b", t, MARK_KEY, STORE_ID) == f"task {t.id} is placed on node a, not b"


def test_forged_container_for_a_pending_task_does_not_complete_it():
    """The issue's attack: a task waiting for a node (its nodeSelector matches none) and a container made by
    hand on node b with its labels that exited 0. The task stays Pending, nothing is collected or removed,
    and node b reports the container with one event."""
    job = job_res(nodeSelector={"zone": "nowhere"})
    t = task(job, node=None)
    fake = forged(t, "b", mark="f" * 64)
    snap = snapshot(obs("a"), obs("b", fake))

    p = run([node_res("a"), node_res("b"), job], [t], snap)

    after = applied(p, [t])
    assert after[t.id].phase is P and after[t.id].node is None and after[t.id].exit_code is None
    assert not p.collects and not p.removals and not p.starts
    assert status_of(p, Kind.JOB, "job")["succeeded"] == 0
    assert status_of(p, Kind.NODE, "b")["untrusted"] == [fake.name]
    assert "untrusted" not in status_of(p, Kind.NODE, "a")
    assert untrusted_events(p) == [("b", f"container {fake.name} on node b carries this store's label but is not "
                                          f"one of its containers (task {t.id} was never placed); not adopted, "
                                          "left alone")]


def test_forged_container_on_the_right_node_with_a_bad_mark_is_not_adopted():
    """A task placed on node a, not started yet: a container there with its name and labels but a wrong mark
    is not adopted (the task stays Pending and its start is issued), nor removed."""
    job = job_res()
    t = task(job, node="a", scheduled_at=NOW - 1)
    fake = forged(t, "a", mark="0" * 64, state="running", exit_code=None)

    p = run([node_res("a"), job], [t], snapshot(obs("a", fake)))

    assert t.id not in p.task_updates or "phase" not in p.task_updates[t.id]
    assert [s.task_id for s in p.starts] == [t.id]  # Host.start then refuses the name it does not own
    assert not p.removals and not p.collects
    assert status_of(p, Kind.NODE, "a")["untrusted"] == [fake.name]


def test_a_genuine_container_beside_a_forged_twin_is_the_one_adopted():
    """A forged container with the same task label on another node cannot shadow the real one."""
    job = job_res()
    t = task(job, node="a", scheduled_at=NOW - 1)
    real = container(t, "running", cid="real")
    fake = forged(t, "a", state="exited", exit_code=0)  # a valid mark for node a, but seen on b

    p = run([node_res("a"), node_res("b"), job], [t], snapshot(obs("a", real), obs("b", fake)))

    assert p.task_updates[t.id]["container_id"] == "real" and p.task_updates[t.id]["phase"] is R
    assert not p.collects and not p.removals
    assert status_of(p, Kind.NODE, "b")["untrusted"] == [fake.name]


def test_untrusted_report_changes_only_when_the_list_does():
    """The event is recorded once per container; an unlisted node keeps its report; a list without the
    container clears it."""
    job = job_res(nodeSelector={"zone": "nowhere"})
    t = task(job, node=None)
    fake = forged(t, "b")
    nodes = [node_res("a"), job]

    first = run(nodes, [t], snapshot(obs("a", fake)))
    status = status_of(first, Kind.NODE, "a")
    assert status["untrusted"] == [fake.name] and len(untrusted_events(first)) == 1
    seen = replace(nodes[0], status=status)

    again = run([seen, job], [t], snapshot(obs("a", fake)))
    assert status_of(again, Kind.NODE, "a") is None and not untrusted_events(again)

    second = replace(fake, id="other", name="zz-second")
    more = run([seen, job], [t], snapshot(obs("a", fake, second)))
    assert status_of(more, Kind.NODE, "a")["untrusted"] == ["bk-store1-" + t.id, "zz-second"]
    assert [m for _, m in untrusted_events(more)] == [
        f"container zz-second on node a carries this store's label but is not one of its containers "
        f"(task {t.id} was never placed); not adopted, left alone"]

    unlisted = run([seen, job], [t], snapshot(obs("a", listed=False)))
    assert status_of(unlisted, Kind.NODE, "a") is None  # still reported: nothing new is known

    gone = run([seen, job], [t], snapshot(obs("a")))
    assert "untrusted" not in status_of(gone, Kind.NODE, "a") and not untrusted_events(gone)


def test_untrusted_list_is_capped():
    """At most 20 names, sorted, are kept in the Node's status."""
    job = job_res(nodeSelector={"zone": "nowhere"})
    t = task(job, node=None)
    fakes = [forged(t, "a", id=f"f{i}", name=f"fake-{i:02d}") for i in range(25)]

    p = run([node_res("a"), job], [t], snapshot(obs("a", *fakes)))

    assert status_of(p, Kind.NODE, "a")["untrusted"] == [f"fake-{i:02d}" for i in range(20)]
    assert len(untrusted_events(p)) == 20


def test_finished_task_is_not_completed_twice_by_a_replayed_container():
    """A succeeded task's labels copied onto a new container on another node: not ours, left alone (a
    container of a task that is over is removed only when it is ours)."""
    job = job_res(completions=2)
    done = task(job, 0, phase=S, node="a", container_id="c-done", exit_code=0, finished_at=NOW - 5)
    replay = forged(done, "a", id="replay")

    p = run([node_res("a"), node_res("b"), job], [done], snapshot(obs("a"), obs("b", replay)))

    assert not p.removals and not p.collects and done.id not in p.task_updates
    assert status_of(p, Kind.NODE, "b")["untrusted"] == [replay.name]
