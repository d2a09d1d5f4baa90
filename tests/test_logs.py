"""`logs` of a running task when its container goes away while it is read: the live stream ends (or finds
the container already collected) and the rest of the output comes from the store, where the controller
keeps it. Fakes for the store and the node; the clock moves only when the verb sleeps."""

from __future__ import annotations

import pytest
from helpers import FakeClock

from reconciler.kinds import Kind, TaskPhase
from reconciler.ops import nodes, tasks
from reconciler.records import TaskRecord

RUNNING = TaskRecord("t1", Kind.JOB, "chatty", "uid", 0, 1, phase=TaskPhase.RUNNING, node="h1", container_id="c1")


class Node:
    """A node whose container wrote ``live`` before it went away."""

    def __init__(self, live: list[bytes]):
        self.live = live

    def logs(self, container_id, follow, tail=None, since=None):
        yield from self.live


class Store:
    """The task's stored output appears after ``stored_after`` looks (the controller collecting it)."""

    def __init__(self, stored: bytes | None, stored_after: int = 0):
        self.stored, self.stored_after, self.looks = stored, stored_after, 0

    def output(self, task_id):
        self.looks += 1
        return (self.stored, None) if self.stored is not None and self.looks > self.stored_after else None


@pytest.fixture
def node(monkeypatch):
    host = Node([])
    monkeypatch.setattr(nodes, "node_host", lambda store, name: host)
    return host


def test_follow_gives_the_lines_the_live_stream_missed_once_the_controller_stored_them(node):
    node.live = [b"tick 1\n"]  # the container was collected before its last lines reached the stream
    store, clock = Store(b"tick 1\ntick 2\ntick 3\n", stored_after=3), FakeClock()
    got = b"".join(o.data for o in tasks.output(store, RUNNING, follow=True, clock=clock.clock))
    assert got == b"tick 1\ntick 2\ntick 3\n"
    assert clock.sleeps  # it waited for the store


def test_follow_of_a_container_already_gone_prints_the_stored_output(node):
    node.live = []  # read as Running, collected and removed before the node was asked
    got = b"".join(o.data for o in tasks.output(Store(b"all\n", stored_after=1), RUNNING, follow=True,
                                                clock=FakeClock().clock))
    assert got == b"all\n"


def test_follow_gives_up_waiting_for_stored_output_after_a_bound(node):
    node.live = [b"partial\n"]
    clock = FakeClock()
    got = b"".join(o.data for o in tasks.output(Store(None), RUNNING, follow=True, clock=clock.clock))
    assert got == b"partial\n"
    assert tasks.STORED_WAIT <= sum(clock.sleeps) < tasks.STORED_WAIT + 1


def test_without_follow_a_running_task_does_not_wait(node):
    node.live = [b"so far\n"]
    clock = FakeClock()
    got = b"".join(o.data for o in tasks.output(Store(None), RUNNING, follow=False, clock=clock.clock))
    assert got == b"so far\n" and clock.sleeps == []


def test_a_tail_window_is_not_completed_from_the_store(node):
    """The stream gave the last lines only: the stored whole would repeat or reorder them."""
    node.live = [b"3\n"]
    got = b"".join(o.data for o in tasks.output(Store(b"1\n2\n3\n"), RUNNING, follow=True,
                                                window=tasks.LogWindow(tail=1), clock=FakeClock().clock))
    assert got == b"3\n"
