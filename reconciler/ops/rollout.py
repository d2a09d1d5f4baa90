"""The Service verbs: scale, and rollout status (followed until it completes or pauses), history, undo.

Called by the CLI's ``scale`` and ``rollout`` commands (``cli/rollout.py``) and meant for the HTTP
API. ``status`` yields ``polling.Note``s while it waits, on a ``polling.Clock`` a test can replace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from .. import views
from ..errors import BrokerError
from ..kinds import DEFAULT_NAMESPACE, Kind
from ..records import ResourceRecord
from .polling import SYSTEM, Clock, Note, ticks
from .tokens import author


def template_of(r: ResourceRecord) -> str:
    """The hash of the template a Service (or Job) wants now, as its tasks' containers are labelled."""
    from ..spec.models import template_hash

    return template_hash(r.model.spec)


def scale(store, name: str, replicas: int, namespace: str = DEFAULT_NAMESPACE,
          by: str | None = None) -> tuple[int, int]:
    """Set a Service's replica count; returns (old, new)."""
    return store.scale(name, replicas, namespace=namespace, by=author(by))


def status(store, name: str, watch: bool = True, timeout: float = 0,
           clock: Clock = SYSTEM, namespace: str = DEFAULT_NAMESPACE) -> Iterator[Note]:
    """Follow the rollout of the template the Service wants now, yielding a line whenever where it
    stands changes. Returns True once every replica runs that template; without ``watch``, False
    after the first look if it is not done. BrokerError if it pauses, if the template changes
    meanwhile (a rollback, or another apply), or after ``timeout`` seconds (0: no limit)."""
    started = template_of(store.resource(Kind.SERVICE, name, namespace=namespace))
    last = None
    for _ in ticks(0.2, clock.deadline(timeout or None), clock):
        r = store.resource(Kind.SERVICE, name, namespace=namespace)
        want, st = template_of(r), r.status
        rollout = st.get("rollout") or {}
        if want != started:
            raise BrokerError(f"service/{name}: rollout of template {started} ended: "
                              f"{_why_replaced(store, name, namespace)}")
        if rollout.get("revision") != want:
            line = f"waiting for the controller to pick up template {want}"
        elif rollout.get("state") == "Complete":
            yield Note(f"service/{name} successfully rolled out ({r.spec['replicas']} replicas at template {want})")
            return True
        elif rollout.get("state") == "Paused":
            raise BrokerError(f"service/{name}: rollout paused: {rollout.get('message')}; fix the template and "
                              "apply it again, or `brokerctl rollout undo " + f"service/{name}`")
        else:
            line = f"{st.get('updated', 0)} of {r.spec['replicas']} updated replicas are ready"
        if line != last:
            yield Note(f"waiting for service/{name}: {line}")
            last = line
        if not watch:
            return False
    raise BrokerError(f"timed out after {timeout:g}s: service/{name}: {line}")


def _why_replaced(store, name: str, namespace: str) -> str:
    return next((e["message"] for e in reversed(store.events("Service", name, limit=20, namespace=namespace))
                 if e["reason"] in ("RolledBack", "RollbackFailed")), "the template was changed again")


@dataclass(frozen=True)
class History:
    revisions: list[dict]  # the store's revision rows, oldest first
    objects: list[dict]  # views.revision_object of each


def history(store, name: str, revision: int | None = None, namespace: str = DEFAULT_NAMESPACE) -> History:
    """A Service's template revisions (only ``revision`` when given), the current one marked."""
    current = template_of(store.resource(Kind.SERVICE, name, namespace=namespace))
    revs = store.revisions(name, namespace=namespace)
    if revision is not None:
        revs = [r for r in revs if r["revision"] == revision]
        if not revs:
            raise BrokerError(f"service/{name} has no revision {revision}; `brokerctl rollout history service/{name}`")
    return History(revs, [views.revision_object(r, current) for r in revs])


def undo(store, name: str, to_revision: int | None = None, namespace: str = DEFAULT_NAMESPACE,
         by: str | None = None) -> dict:
    """Make an earlier template (default: the previous) the desired one again; returns the revision
    now current (``hash``, ``revision``)."""
    return store.undo(name, to_revision, namespace=namespace, by=author(by))
