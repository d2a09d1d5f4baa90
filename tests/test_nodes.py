"""Tests for Nodes in the pure planner (reconciler.engine.nodes): slots and condition, and two
Nodes reaching one Docker daemon.

A Node's slots are its spec's, or one per CPU its host reports; it keeps what it last reported
while it does not answer. Two Nodes reaching one Docker daemon (same ``docker info`` ID): only
the Node applied first uses it. The other is NotReady with a message naming the first, has no
slots, gets no placements, and the daemon's containers are seen once, under the first Node's name.
Lost nodes, fencing and drain are in ``test_failover_plan``.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from factories import NOW, R, applied, container, job_res, node_res, obs, run, snapshot, status_of, task
from reconciler.docker.host import daemon_identity
from reconciler.engine.actions import Collect
from reconciler.engine.nodes import twins
from reconciler.records import ResourceRecord
from reconciler.spec.models import Kind

DOCKER_ID = "4QGZ:AB5C:ZNRT:D7TD:VWDL:2IAT:DRPB:6T6V:2QDP:YXA5:FEEN:3XQK"
DAEMON = daemon_identity({"ID": DOCKER_ID, "Name": "host1", "DockerRootDir": "/var/lib/docker"})
TWIN_MESSAGE = f"same Docker daemon as node n1 (ID {DOCKER_ID[:12]}…); remove one of them"


def node(name: str, created: float, slots: dict | None = None, **kw) -> ResourceRecord:
    return replace(node_res(name, slots or {"default": 4}, **kw), created_at=created)


def seen(name: str, *containers, daemon: str | None = DAEMON, **kw):
    return replace(obs(name, *containers, **kw), daemon_id=daemon)


# -- slots and condition -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec_slots, node_obs, slots, condition",
    [
        (None, obs("a", cpus=6), {"default": 6}, "Ready"),
        ({"gpu": 2}, obs("a", cpus=6), {"gpu": 2}, "Ready"),
        ({}, obs("a", cpus=6), {}, "Ready"),
        (None, obs("a", ready=False, listed=False), {}, "NotReady"),  # never probed: no CPU count yet
        (None, None, {}, "Unknown"),
    ],
)
def test_node_status_slots_and_condition(spec_slots, node_obs, slots, condition):
    """Node slots are the spec's, or {default: CPUs the host reports} when the spec omits them."""
    p = run([node_res("a", spec_slots)], [], snapshot(*([node_obs] if node_obs else [])))

    status = status_of(p, Kind.NODE, "a")
    assert (status["slots"], status["condition"], status["since"]) == (slots, condition, NOW)


def test_not_ready_node_keeps_what_it_last_reported():
    """A node that stops answering turns NotReady but keeps its last CPU count (and so its slots)."""
    first = status_of(run([node_res("a")], [], snapshot(obs("a", cpus=3))), Kind.NODE, "a")

    p = run([node_res("a", status=first)], [], snapshot(obs("a", ready=False, listed=False)), now=NOW + 7)

    status = status_of(p, Kind.NODE, "a")
    assert (status["condition"], status["since"], status["slots"], status["cpus"], status["dockerVersion"]) == (
        "NotReady", NOW + 7, {"default": 3}, 3, "27.0")
    assert status["message"] == "connection refused"


def test_statuses_are_not_rewritten_on_an_identical_second_pass():
    """Feeding a pass's statuses back in gives a plan with no status writes and no new events."""
    job = job_res()
    t = task(job, phase=R, node="a", container_id="c0", started_at=NOW - 5)
    snap = snapshot(obs("a", container(t)))
    first = run([node_res("a"), job], [t], snap)
    node_status, job_status = status_of(first, Kind.NODE, "a"), status_of(first, Kind.JOB, "job")
    assert node_status and job_status

    second = run([node_res("a", status=node_status), job_res(status=job_status)], [t], snap, now=NOW + 30)

    assert second.statuses == [] and second.events == [] and second.docker_actions == 0
    assert not second.task_updates and not second.new_tasks


# -- one daemon, one Node ------------------------------------------------------------------------


def test_the_node_applied_first_keeps_the_daemon():
    """Older created_at wins, whatever the names; equal times fall back to the name."""
    n1, n2 = node("n1", created=5.0), node("a0", created=9.0)
    assert twins([n2, n1], snapshot(seen("n1"), seen("a0"))) == {"a0": ("n1", DAEMON)}
    same_time = [node("b", 1.0), node("a", 1.0)]
    assert twins(same_time, snapshot(seen("a"), seen("b"))) == {"b": ("a", DAEMON)}
    assert twins([n1, n2], snapshot(seen("n1"), seen("a0", daemon="OTHER"))) == {}


def test_daemons_sharing_only_the_docker_id_are_not_twins():
    """Docker 20.10 takes the ID from /etc/docker/key.json: daemons with one config directory, or
    machines cloned from one image, share it. Host name and data root tell them apart."""
    assert DAEMON == f"{DOCKER_ID} host1:/var/lib/docker"
    clone = daemon_identity({"ID": DOCKER_ID, "Name": "host2", "DockerRootDir": "/var/lib/docker"})
    second = daemon_identity({"ID": DOCKER_ID, "Name": "host1", "DockerRootDir": "/srv/docker"})
    nodes = [node("n1", 1.0), node("n2", 2.0), node("n3", 3.0)]
    assert twins(nodes, snapshot(seen("n1"), seen("n2", daemon=clone), seen("n3", daemon=second))) == {}
    assert daemon_identity({"ID": ""}) is None


def test_the_twin_is_not_ready_without_slots_and_says_why():
    n1, n2 = node("n1", 1.0), node("n2", 2.0)

    p = run([n1, n2], [], snapshot(seen("n1"), seen("n2")))

    first, twin = status_of(p, Kind.NODE, "n1"), status_of(p, Kind.NODE, "n2")
    assert (first["condition"], first["slots"], first["daemonId"]) == ("Ready", {"default": 4}, DAEMON)
    assert "twinOf" not in first
    assert (twin["condition"], twin["slots"], twin["twinOf"], twin["daemonId"]) == ("NotReady", {}, "n1", DAEMON)
    assert twin["message"] == TWIN_MESSAGE
    assert [(e.name, e.reason, e.message, e.type) for e in p.events] == [
        ("n2", "SameDaemon", f"node n2: {TWIN_MESSAGE}", "Warning")]

    again = run([replace(n1, status=first), replace(n2, status=twin)], [], snapshot(seen("n1"), seen("n2")))
    assert not again.statuses and not again.events  # stable: nothing rewritten


def test_a_twin_gets_no_placements():
    """A Job of 6 tasks on n1 (2 slots) and its twin n2 (8 slots): 2 placed on n1, 4 wait."""
    n1, n2 = node("n1", 1.0, {"default": 2}), node("n2", 2.0, {"default": 8})
    job = job_res(completions=6, parallelism=6)

    p = run([n1, n2, job], [], snapshot(seen("n1"), seen("n2")))

    after = applied(p, []).values()
    assert sorted(s.node for s in p.starts) == ["n1", "n1"]
    waiting = {t.message for t in after if t.node is None}
    assert waiting == {"0/2 nodes: 1 no free default slot, 1 not ready"}


def test_the_daemons_containers_are_seen_once_under_the_first_nodes_name():
    """Both names list the same containers: only n1's list counts (one collect each, no orphan, no
    container reported as untrusted on n2)."""
    n1, n2 = node("n1", 1.0), node("n2", 2.0)
    job = job_res(completions=2, parallelism=2)
    done = task(job, 0, phase=R, node="n1", container_id="c0", started_at=NOW - 10)
    busy = task(job, 1, phase=R, node="n1", container_id="c1", started_at=NOW - 10)
    listed = (container(done, "exited"), container(busy))

    p = run([n1, n2, job], [done, busy], snapshot(seen("n1", *listed), seen("n2", *listed)))

    assert p.collects == [Collect(done.id, "n1", "c0")]
    assert not p.removals and not p.starts and not p.task_updates
    assert not [e for e in p.events if e.reason == "UntrustedContainer"]
    assert "untrusted" not in status_of(p, Kind.NODE, "n2")


def test_a_twin_stays_a_twin_when_its_daemon_id_comes_only_from_its_status():
    """A pass where neither node was listed (no info): the daemon IDs of the last status decide."""
    n1 = node("n1", 1.0, status={"condition": "Ready", "daemonId": DAEMON})
    n2 = node("n2", 2.0, status={"condition": "NotReady", "daemonId": DAEMON, "twinOf": "n1"})
    snap = snapshot(seen("n1", daemon=None, listed=False), seen("n2", daemon=None, listed=False))

    p = run([n1, n2, job_res()], [], snap)

    assert status_of(p, Kind.NODE, "n2")["condition"] == "NotReady"
    assert all(s.node == "n1" for s in p.starts)


def test_the_twin_takes_the_daemon_once_the_first_node_is_deleted():
    n2 = node("n2", 2.0, status={"condition": "NotReady", "daemonId": DAEMON, "twinOf": "n1", "message": TWIN_MESSAGE})

    p = run([n2, job_res()], [], snapshot(seen("n2")))

    status = status_of(p, Kind.NODE, "n2")
    assert (status["condition"], status["message"], status["slots"]) == ("Ready", "", {"default": 4})
    assert "twinOf" not in status
    assert [s.node for s in p.starts] == ["n2"]


def test_a_twin_whose_daemon_stops_answering_is_lost_like_any_node():
    n1, n2 = node("n1", 1.0), node("n2", 2.0)
    down = dict(ready=False, listed=False)
    snap = snapshot(replace(seen("n1", **down), failures=3, last_ok=NOW - 60),
                    replace(seen("n2", **down), failures=3, last_ok=NOW - 60))

    p = run([n1, n2], [], snap)

    assert status_of(p, Kind.NODE, "n2")["condition"] == "Lost"
