"""A pass skips planning when nothing it plans from changed since a pass that did nothing
(``runtime.quiet``), without Docker: a stand-in host runs what the controller starts.

Proves, by counting calls of the planner (nothing is timed): at steady state (every task running,
its container seen) passes stop planning; a store write, a container that changes on a host, a node
whose probe fails, and a wake time the last plan asked for each bring planning back; a pass that
leaves a task waiting for a node always plans (a budget window and fair share move with time)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from reconciler.docker.probe import ProbeState
from reconciler.kinds import Kind
from reconciler.records import LABEL_MARK, LABEL_OWNER, LABEL_TASK, ContainerExit, ContainerObs, NodeObs
from reconciler.runtime import controller as controller_module
from reconciler.runtime.controller import Controller
from reconciler.spec.manifests import load_text
from reconciler.store import Store


class StandInHost:
    """Runs what it is told: each start is a running container, listed until removed."""

    def __init__(self, name: str):
        self.name, self.address, self.tls = name, f"tcp://{name}:2375", None
        self.containers: dict[str, ContainerObs] = {}
        self.lists = 0

    def observe(self, store_id: str, now: float, list_containers: bool = True) -> NodeObs:
        self.lists += 1
        return NodeObs(self.name, ready=True, docker_version="27.0", cpus=4, memory=8 << 30,
                       containers=tuple(self.containers.values()))

    def start(self, spec) -> str:
        cid = f"c-{spec.labels[LABEL_TASK]}"
        self.containers[cid] = ContainerObs(id=cid, name=spec.name, task_id=spec.labels[LABEL_TASK],
                                            owner=spec.labels[LABEL_OWNER], state="running",
                                            mark=spec.labels[LABEL_MARK])
        return cid

    def collect(self, container_id: str, log_limit: int) -> ContainerExit:
        c = self.containers[container_id]
        return ContainerExit(c.exit_code, False, 99.0, 100.0, "", b"", False)

    def remove(self, container_id: str, grace: float, keep_output: bool = False) -> bytes | None:
        self.containers.pop(container_id, None)
        return b"" if keep_output else None


class Probes:
    def __init__(self):
        self.failing: dict[str, int] = {}
        self.timeout = 1.0

    def state(self, name: str) -> ProbeState:
        if name in self.failing:
            return ProbeState(failures=self.failing[name], failing_since=50.0, message="refused")
        return ProbeState(ok=True, last_ok=99.0)

    def track(self, hosts) -> None:
        pass

    def wait_first(self, *a, **kw) -> None:
        pass

    def stop(self) -> None:
        pass


class Marks:
    """An event stream that stays open and quiet unless told otherwise (``events``)."""

    def __init__(self):
        self.events = 0

    def mark(self, name: str):
        return 1, self.events

    def exits(self, name: str) -> dict:
        return {}

    def track(self, hosts) -> None:
        pass

    def stop(self) -> None:
        pass


def manifests(*docs: dict) -> list:
    text = "\n---\n".join(json.dumps({"apiVersion": "broker/v1", **d}) for d in docs)
    return [loaded.resource for loaded in load_text(text, "test")]


NODE = {"kind": "Node", "metadata": {"name": "a"}, "spec": {"address": "tcp://a:2375", "slots": {"default": 4}}}


def job(name: str, n: int, **spec) -> dict:
    return {"kind": "Job", "metadata": {"name": name},
            "spec": {"completions": n, "parallelism": n, "template": {"image": "busybox"}, **spec}}


@pytest.fixture
def ctl(tmp_path, monkeypatch):
    clock = [100.0]
    store = Store(tmp_path / "s.db")
    store.apply((manifests(NODE, job("work", 3))))
    c = Controller(store, resync=5.0, clock=lambda: clock[0])
    host = StandInHost("a")
    c.prober, c.watcher = Probes(), Marks()
    monkeypatch.setattr(c.pool, "get", lambda name, address, tls: host)
    c.actor.leading = lambda: True  # no lease here: this controller is the only one
    planned = []
    real = controller_module.plan
    monkeypatch.setattr(controller_module, "plan", lambda *a, **kw: planned.append(a[3]) or real(*a, **kw))
    c.host, c.planned, c.now = host, planned, clock
    yield c
    c.executor.shutdown()
    c.stopper.shutdown()
    store.close()


def passes(c: Controller, n: int) -> int:
    """Run ``n`` passes a second apart; how many of them planned."""
    before = len(c.planned)
    for _ in range(n):
        c.reconcile_once()
        c.now[0] += 1.0
    return len(c.planned) - before


def settle(c: Controller) -> None:
    """Pass until the tasks run, recorded, and a pass has planned nothing."""
    for _ in range(10):
        if passes(c, 1) == 0:
            return
    raise AssertionError("the passes never went quiet")


def test_steady_passes_skip_planning_and_say_so(ctl):
    settle(ctl)
    running = [t for t in ctl.store.tasks() if t.phase.value == "Running"]
    assert len(running) == 3 and len(ctl.host.containers) == 3
    quiet = ctl.quiet_passes
    assert passes(ctl, 5) == 0
    assert ctl.quiet_passes == quiet + 5 and ctl.stats()["quietPasses"] == quiet + 5


def test_a_store_write_brings_planning_back(ctl):
    settle(ctl)
    ctl.store.apply((manifests(job("more", 1))))
    assert passes(ctl, 1) == 1
    assert len(ctl.host.containers) == 4  # and the new Job's task was started


def test_a_container_that_changed_on_its_host_brings_planning_back(ctl):
    settle(ctl)
    cid, c = next(iter(ctl.host.containers.items()))
    ctl.host.containers[cid] = replace(c, state="exited", exit_code=0)
    ctl.watcher.events += 1  # its die event: the node is listed again
    assert passes(ctl, 1) == 1
    done = [t for t in ctl.store.tasks() if t.phase.value == "Succeeded"]
    assert [t.container_id for t in done] == [cid]


def test_a_list_read_again_when_due_that_shows_a_change_brings_planning_back(ctl):
    """A container that died without an event (one missed) is seen when its node's list falls due."""
    settle(ctl)
    cid, c = next(iter(ctl.host.containers.items()))
    ctl.host.containers[cid] = replace(c, state="exited", exit_code=0)
    planned = passes(ctl, 2 * ctl.relist_passes)
    assert planned >= 1
    assert [t.container_id for t in ctl.store.tasks() if t.phase.value == "Succeeded"] == [cid]


def test_a_failing_probe_and_the_wake_time_it_sets_bring_planning_back(ctl):
    settle(ctl)
    ctl.prober.failing["a"] = 1
    assert passes(ctl, 1) == 1  # NotReady
    ctl.prober.failing["a"] = 2
    assert passes(ctl, 1) == 1  # two failures: Lost is due at failing_since + lost_after
    node = ctl.store.resource(Kind.NODE, "a")
    assert node.status["condition"] in ("NotReady", "Lost")


def test_the_wake_time_of_the_last_plan_ends_the_quiet(ctl):
    """A Job with activeDeadlineSeconds: its plan asks to wake at the deadline; the passes before
    it skip planning, the first at or past it plans (and fails the Job)."""
    ctl.store.apply((manifests(job("work", 3, activeDeadlineSeconds=30))))
    settle(ctl)
    assert passes(ctl, 5) == 0
    ctl.now[0] += 30.0
    assert passes(ctl, 1) == 1
    assert ctl.store.resource(Kind.JOB, "work").status["reason"] == "DeadlineExceeded"


def test_a_pass_that_leaves_a_task_waiting_for_a_node_always_plans(ctl):
    ctl.store.apply((manifests(job("big", 8))))  # 4 slots: some wait
    passes(ctl, 3)
    waiting = [t for t in ctl.store.tasks() if t.phase.value == "Pending" and t.node is None]
    assert waiting
    assert passes(ctl, 4) == 4
