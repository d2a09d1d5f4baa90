"""How the controller wakes and what it re-reads: commit nudges between store connections, reuse
of a node's container list while its event stream reports nothing, and the Docker call counter.
No Docker daemon: hosts, prober and event marks are stand-ins."""

from __future__ import annotations

import threading
import time

import pytest

from reconciler.engine.actions import Plan, Start
from reconciler.runtime.controller import Controller
from reconciler.docker.client import CallCounter
from reconciler.docker.events import EventWatcher
from reconciler.docker.probe import ProbeState
from reconciler.spec.manifests import load_text
from reconciler.kinds import Kind
from reconciler.records import ContainerObs, NodeObs
from reconciler.store.sqlite import NudgeListener
from reconciler.store import Store

JOB = """apiVersion: broker/v1
kind: Job
metadata: {name: j}
spec: {template: {image: busybox, command: ["true"]}}
"""


def apply(store: Store, text: str = JOB) -> None:
    store.apply([m.resource for m in load_text(text, "job.yaml")])


def test_a_commit_by_another_connection_nudges_the_listener(tmp_path):
    writer, own = Store(tmp_path / "s.db"), Store(tmp_path / "s.db")
    woke = threading.Event()
    listener = NudgeListener(writer.store_id, woke.set)
    try:
        assert listener.listening
        own.nudge = False  # the controller's own connection
        apply(own)
        assert not woke.wait(0.3)
        apply(writer, JOB.replace("name: j", "name: k"))
        assert woke.wait(2.0)
    finally:
        listener.stop()
        writer.close()
        own.close()


def test_a_second_listener_on_the_same_store_does_not_listen(tmp_path):
    store = Store(tmp_path / "s.db")
    first = NudgeListener(store.store_id, lambda: None)
    second = NudgeListener(store.store_id, lambda: None)
    try:
        assert first.listening and not second.listening
    finally:
        first.stop()
        second.stop()
        store.close()


def test_commits_without_a_listener_still_succeed(tmp_path):
    store = Store(tmp_path / "s.db")
    apply(store)
    assert [r.name for r in store.resources(Kind.JOB)] == ["j"]
    store.close()


# -- container list reuse -------------------------------------------------------------------


class FakeHost:
    def __init__(self, name: str):
        self.name, self.address, self.tls, self.lists = name, f"tcp://{name}:2375", None, 0
        self.containers = ()

    def observe(self, store_id: str, now: float) -> NodeObs:
        self.lists += 1
        return NodeObs(self.name, ready=True, containers=self.containers)


class FakeProber:
    def __init__(self):
        self.ok = True

    def state(self, name: str) -> ProbeState:
        return ProbeState(ok=self.ok, last_ok=0.0) if self.ok else ProbeState(failures=2, message="refused")


class FakeMarks:
    def __init__(self):
        self.marks: dict[str, tuple | None] = {}
        self.exited: dict[str, dict] = {}

    def mark(self, name: str):
        return self.marks.get(name)

    def exits(self, name: str) -> dict:
        return self.exited.get(name, {})


@pytest.fixture
def ctl(tmp_path):
    clock = [100.0]
    store = Store(tmp_path / "s.db")
    c = Controller(store, resync=5.0, clock=lambda: clock[0], relist_passes=3)
    c.prober, c.watcher = FakeProber(), FakeMarks()
    c.now = clock
    yield c
    c.executor.shutdown()
    c.stopper.shutdown()
    store.close()


def test_a_quiet_event_stream_lets_the_next_pass_reuse_the_list(ctl):
    host = FakeHost("a")
    ctl.watcher.marks["a"] = (1, 0)
    ctl.observe({"a": host})
    snap = ctl.observe({"a": host})
    assert host.lists == 1 and ctl.lists == 1
    assert snap.nodes["a"].ready and snap.nodes["a"].containers == ()


@pytest.mark.parametrize("change", ["event", "stream closed", "stream reopened", "stale", "probe failed", "acted"])
def test_the_list_is_read_again_when_anything_may_have_changed(ctl, change):
    host = FakeHost("a")
    ctl.watcher.marks["a"] = (1, 0)
    ctl.observe({"a": host})
    if change == "event":
        ctl.watcher.marks["a"] = (1, 1)
    elif change == "stream closed":
        ctl.watcher.marks["a"] = None
    elif change == "stream reopened":
        ctl.watcher.marks["a"] = (2, 0)
    elif change == "stale":
        for _ in range(ctl.relist_passes - 1):  # reused for relist_passes passes
            ctl.observe({"a": host})
        assert host.lists == 1
    elif change == "probe failed":
        ctl.prober.ok = False
        assert not ctl.observe({"a": host}).nodes["a"].ready
        ctl.prober.ok = True
    elif change == "acted":
        ctl._forget_lists(Plan(starts=[Start("t1", "a", None)]))
    ctl.observe({"a": host})
    assert host.lists == 2


def test_a_quiet_list_is_reused_for_passes_not_seconds(ctl):
    """However long a pass takes (a minute here), a list vouched for by a quiet event stream is read
    again only once ``relist_passes`` passes have used it."""
    host = FakeHost("a")
    ctl.watcher.marks["a"] = (1, 0)
    for _ in range(ctl.relist_passes):
        ctl.observe({"a": host})
        ctl.now[0] += 60.0
    assert host.lists == 1
    ctl.observe({"a": host})
    assert host.lists == 2


def test_due_lists_are_spread_over_passes_oldest_first_and_none_gets_older_than_twice_the_window(ctl):
    """Six nodes listed in one pass fall due together: each pass reads again at most
    ceil(6 / relist_passes) = 2 of them, the longest unread first, the others keep their list; every
    list is read again within 2 * relist_passes passes of the one before, and the lists then stay spread."""
    hosts = {n: FakeHost(n) for n in "abcdef"}
    for n in hosts:
        ctl.watcher.marks[n] = (1, 0)
    ctl.observe(hosts)  # pass 1: every node listed
    last = {n: 1 for n in hosts}
    per_pass = []
    for pass_no in range(2, 20):
        before = {n: h.lists for n, h in hosts.items()}
        snap = ctl.observe(hosts)
        read = {n for n, h in hosts.items() if h.lists > before[n]}
        per_pass.append(len(read))
        assert len(read) <= 2 and all(snap.nodes[n].ready for n in hosts)
        assert all(pass_no - last[n] >= ctl.relist_passes for n in read)
        for n in read:
            last[n] = pass_no
        assert all(pass_no - last[n] < 2 * ctl.relist_passes for n in hosts)
    assert per_pass[:3] == [0, 0, 2] and per_pass[-9:] == [2] * 9  # spread: two lists every pass


def test_without_an_event_stream_every_pass_lists(ctl):
    host = FakeHost("a")
    for _ in range(3):
        ctl.observe({"a": host})
    assert host.lists == 3


def test_a_container_listed_running_after_its_die_event_is_taken_as_exited(ctl):
    """The daemon's list lags its die event by milliseconds: the event wins, with its exit code."""
    host = FakeHost("a")
    up = ContainerObs(id="c1", name="bk-1", task_id="t1", owner="Job/j", state="running")
    other = ContainerObs(id="c2", name="bk-2", task_id="t2", owner="Job/j", state="running")
    host.containers = (up, other)
    ctl.watcher.marks["a"] = (1, 1)
    ctl.watcher.exited["a"] = {"c1": 3}
    seen = {c.id: c for c in ctl.observe({"a": host}).nodes["a"].containers}
    assert (seen["c1"].state, seen["c1"].exit_code, seen["c1"].finished) == ("exited", 3, True)
    assert seen["c2"].state == "running"
    ctl.watcher.exited["a"] = {"c2": 0}  # a reused list is corrected the same way
    seen = {c.id: c for c in ctl.observe({"a": host}).nodes["a"].containers}
    assert host.lists == 1 and seen["c2"].finished and seen["c1"].state == "running"


def test_event_watcher_keeps_the_latest_die_of_each_container():
    w = EventWatcher("s", threading.Event())
    for action, cid, code in [("die", "c1", "137"), ("die", "c2", "0"), ("start", "c2", None),
                              ("die", "c3", "1"), ("destroy", "c3", None), ("die", "c4", None)]:
        attrs = {"exitCode": code} if code is not None else {}
        w._seen("a", {"Action": action, "id": cid, "Actor": {"ID": cid, "Attributes": attrs}})
    assert w.exits("a") == {"c1": 137, "c4": None}
    assert w.exits("b") == {}


# -- Docker call counter -------------------------------------------------------------------


class _Request:
    def __init__(self, method: str, url: str):
        self.method, self.url = method, url


class _Response:
    def __init__(self, method: str, url: str):
        self.request = _Request(method, url)


def test_calls_are_counted_by_endpoint_with_ids_folded():
    calls = CallCounter()
    for method, url in [("GET", "http://127.0.0.1:2375/v1.41/containers/json?all=1&filters=x"),
                        ("GET", "http+docker://localhost/v1.41/containers/json"),
                        ("POST", "http://h:2375/v1.41/containers/create?name=bk-1"),
                        ("POST", "http://h:2375/v1.41/containers/0123abcd/start"),
                        ("POST", "http://h:2375/v1.41/containers/bk-s-t1/start"),
                        ("GET", "http://h:2375/_ping"),
                        ("GET", "http://h:2375/v1.41/images/busybox:latest/json")]:
        calls.hook(_Response(method, url))
    assert calls.snapshot() == {"GET /containers/json": 2, "POST /containers/create": 1,
                                "POST /containers/{id}/start": 2, "GET /_ping": 1, "GET /images/{id}/json": 1}


def test_the_lease_renewal_publishes_the_controller_stats(ctl):
    store = ctl.store
    ctl.leadership.start()  # the only candidate: it leads at once
    try:
        assert ctl.leadership.epoch == 1
        ctl.passes, ctl.lists = 3, 2
        ctl.leadership._step()  # one renewal
        stats = store.lease()["stats"]
        assert (stats["passes"], stats["lists"]) == (3, 2)
        assert isinstance(stats["dockerCalls"], dict) and stats["cpuSeconds"] >= 0
    finally:
        ctl.leadership.stop()


def test_the_stats_count_passes_by_duration_as_a_histogram(ctl):
    """``passBuckets``: passes that took at most each bound (cumulative); a pass over the last bound counts
    only in ``passes`` (Prometheus' +Inf bucket)."""
    for seconds in (0.003, 0.005, 0.3, 0.3, 20.0):
        ctl.passes += 1
        ctl._count_pass(seconds)
    stats = ctl.stats()
    assert stats["passBuckets"] == {"0.005": 2, "0.01": 2, "0.025": 2, "0.05": 2, "0.1": 2, "0.25": 2, "0.5": 4,
                                    "1": 4, "2.5": 4, "5": 4, "10": 4}
    assert (stats["passes"], stats["passSeconds"], stats["lastPassSeconds"]) == (5, 20.608, 20.0)
