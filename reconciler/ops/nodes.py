"""The Node verbs: cordon, uncordon, drain (and its two waits), and a Docker client for one node.

Called by the CLI's node commands (``cli/nodes.py``) and meant for the HTTP API; ``node_host`` also
serves ``tasks.output`` (a running task's live log). ``drain`` yields ``polling.Note``s while it
waits, on a ``polling.Clock`` a test can replace.
"""

from __future__ import annotations

from typing import Callable, Iterator

from ..errors import BrokerError, NotFound
from ..kinds import Kind
from .polling import SYSTEM, Clock, Note, ticks
from .tokens import author


def cordon(store, name: str, by: str | None = None) -> bool:
    """Mark a Node unschedulable: no new tasks go there; running ones stay. False if it already was."""
    return store.cordon(name, True, by=author(by))


def uncordon(store, name: str, by: str | None = None) -> bool:
    """Make a Node schedulable again (also ends a drain). False if it already was."""
    return store.cordon(name, False, by=author(by))


def node_host(store, name: str):
    """A Docker client for one node, for the verbs that ask a host directly (live logs, drain)."""
    from ..docker.host import Host

    spec = store.resource(Kind.NODE, name).model.spec
    return Host(name, spec.address, spec.tls.model_dump() if spec.tls else None)


def drain(store, name: str, timeout: float = 300.0, wait: bool = True, clock: Clock = SYSTEM,
          by: str | None = None) -> Iterator[Note]:
    """Cordon a Node and move its tasks off: the controller replaces Service replicas elsewhere before
    the originals stop, and lets Job tasks finish until ``timeout``, then reschedules them. With
    ``wait``, yield what is left whenever that changes, until no active task and none of their
    containers is left running on the node; BrokerError if that takes past ``timeout`` + 60 s."""
    store.cordon(name, True, drain_timeout=timeout, by=author(by))
    yield Note(f"node/{name} cordoned; draining")
    if not wait:
        return
    deadline = clock.monotonic() + timeout + 60  # rescheduled Job tasks still need their grace period
    yield from _wait_gone(lambda: ([t.id for t in store.tasks_on(name)], None), f"task(s) left on {name}", name,
                          deadline, clock, ". Is a controller running (`brokerctl status`)?")
    # The store lets go of a task before its container has stopped (the controller records the
    # decision, then stops it within the grace period): ask the node until none of ours runs.
    # Ours are the containers of this node's tasks: another Node may reach the same daemon.
    host = node_host(store, name)
    try:
        yield from _wait_gone(lambda: _running_on(host, store, clock), f"container(s) still stopping on {name}",
                              name, deadline, clock)
    finally:
        host.close()
    yield Note(f"node/{name} drained")


Left = tuple[list[str], str | None]  # what is still there, and a warning when it could not be checked


def _running_on(host, store, clock: Clock) -> Left:
    """Our containers still running on the node. One that only carries our store label (anyone with
    access to the daemon can copy labels) is not ours to wait for: the Node's status reports it."""
    from ..records import distrust

    obs = host.observe(store.store_id, clock.time())
    if not obs.ready:
        return [], (f"node/{host.name} did not answer ({obs.message}); its containers could not be checked "
                    "(the controller stops them when it returns)")
    left = []
    for c in obs.containers:
        if c.state not in ("running", "restarting", "paused"):
            continue
        try:
            task = store.task(c.task_id) if c.task_id else None
        except NotFound:
            task = None
        if distrust(c, host.name, task, store.mark_key, store.store_id) is None:
            left.append(c.name)
    return left, None


def _wait_gone(poll: Callable[[], Left], what: str, node: str, deadline: float, clock: Clock,
               hint: str = "") -> Iterator[Note]:
    """Poll every 0.5 s until ``poll()`` names nothing, yielding what is left whenever it changes."""
    last = None
    for _ in ticks(0.5, deadline, clock):
        left, warning = poll()
        if warning:
            yield Note(warning, warning=True)
        if not left:
            return
        line = f"{len(left)} {what}: " + ", ".join(left[:5]) + (", ..." if len(left) > 5 else "")
        if line != last:
            yield Note(line)
            last = line
    raise BrokerError(f"node/{node}: drain did not finish; {line}{hint}")
