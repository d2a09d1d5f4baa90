"""`get -w`: after a listing, its items again each time they change.

Called by the CLI's ``get`` (``cli/resources.py``); an HTTP API's ``watch=true`` can stream the same
changes. ``changes`` polls the store's change counter (``Store.changes``: SQLite's data_version, a
``LISTEN`` on PostgreSQL) on the ticks of ``polling``, and reads the listing again only when another
process committed; it yields the items that are new, changed or gone since the last read. It runs
until the caller stops iterating (the CLI: on Ctrl-C or SIGTERM).
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

from ..kinds import DEFAULT_NAMESPACE
from .listing import EVENTS, TASKS, Filters
from .polling import SYSTEM, Clock, ticks

INTERVAL = 0.25  # seconds between looks at the change counter


class Change(NamedTuple):
    kind: str  # a Kind value, TASKS or EVENTS (as ``listing.Listing.kind``)
    item: object  # as in a Listing: a view object, a TaskRecord or an event row; a gone item as last seen
    gone: bool = False


def changes(store, kinds: list[str], name: str | None = None, filters: Filters = Filters(),
            namespace: str | None = DEFAULT_NAMESPACE, clock: Clock = SYSTEM,
            interval: float = INTERVAL) -> Iterator[list[Change]]:
    """After a first read (what the caller has just listed), yield the changes of each later read that
    found some, in listing order, gone items last."""
    counter = store.changes()
    try:
        version = counter.version()
        last = _read(store, kinds, name, filters, namespace)
        for _ in ticks(interval, None, clock):
            now = counter.version()
            if now == version:
                continue
            version = now
            current = _read(store, kinds, name, filters, namespace)
            found = diff(last, current)
            last = current
            if found:
                yield found
    finally:
        counter.stop()


def _read(store, kinds, name, filters, namespace) -> dict[tuple, tuple[str, object]]:
    """Every item of the listing by its identity: (kind, key) -> (kind, item), in listing order."""
    from . import listing

    items: dict[tuple, tuple[str, object]] = {}
    for one in listing.get(store, kinds, name, filters, namespace):
        for item in one.items:
            items[(one.kind, identity(one.kind, item))] = (one.kind, item)
    return items


def identity(kind: str, item) -> tuple:
    """What stays the same while an item changes: a task's id, a resource's namespace and name, an
    event's whole row (events never change, new ones come)."""
    if kind == TASKS:
        return (item.id,)
    if kind == EVENTS:
        return tuple(sorted((k, str(v)) for k, v in item.items()))
    return (item["metadata"].get("namespace"), item["metadata"]["name"])


def diff(before: dict, after: dict) -> list[Change]:
    """Items new or different in ``after``, then those gone from it (events are never reported gone:
    the store trims old ones)."""
    out = [Change(kind, item) for key, (kind, item) in after.items()
           if key not in before or before[key][1] != item]
    out += [Change(kind, item, gone=True) for key, (kind, item) in before.items()
            if key not in after and kind != EVENTS]
    return out
