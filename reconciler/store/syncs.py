"""GitOps bookkeeping: which directory created each resource, and the record of each sync.

``SyncStore`` is mixed into ``Store`` (see the package). It owns the per-resource source columns
(``source``: the directory that created the resource; ``source_file``; ``source_spec``: spec and
labels as last synced, which tells a hand change from a directory change) and the ``syncs`` table
(one row per directory: when, which commit, each file's state, a refusal). The policy (what to
apply, prune or hold back) is ``ops.sync``'s: inside its one transaction it reads
``sourced_rows``, applies with ``apply_one``/``claim``, prunes with ``delete`` and ends with
``record_sync``. ``sync_status`` and ``owned_by`` serve ``brokerctl sync status``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property

from ..kinds import scope
from ..records import ResourceRecord
from .db import dump, fetch_all, upsert
from .resources import resource_record


@dataclass(frozen=True)
class SourcedRow:
    """A stored resource as a sync sees it. Specs are parsed on first use: a sync reads every
    resource but looks into few."""

    kind: str
    name: str
    source: str | None  # the directory that created it; None: applied by hand
    source_file: str | None  # the file of that directory it was last synced from
    source_spec: str | None  # JSON {"spec", "labels"} as last synced
    spec_json: str
    labels_json: str
    deleted_at: float | None
    namespace: str | None = None  # '' for cluster-scoped kinds; None is read as `default` for namespaced ones

    def __post_init__(self) -> None:
        object.__setattr__(self, "namespace", scope(self.kind, self.namespace))

    @property
    def key(self) -> tuple[str, str, str]:
        """(kind, namespace, name), as ``ops.sync`` keys what a directory defines."""
        return self.kind, self.namespace, self.name

    @cached_property
    def synced(self) -> dict | None:
        """Spec and labels as the directory last wrote them (None: never synced)."""
        return json.loads(self.source_spec) if self.source_spec else None

    @cached_property
    def spec(self) -> dict:
        return json.loads(self.spec_json)

    @cached_property
    def labels(self) -> dict:
        return json.loads(self.labels_json)


class SyncStore:
    """Reads and writes of the source columns and the ``syncs`` table (a mixin of ``Store``)."""

    def sourced_rows(self, db) -> list[SourcedRow]:
        """Every resource with its source columns, read in the caller's transaction."""
        return [SourcedRow(r["kind"], r["name"], r["source"], r["source_file"], r["source_spec"], r["spec"],
                           r["labels"], r["deleted_at"], r["namespace"])
                for r in fetch_all(db, "SELECT kind, namespace, name, source, source_file, source_spec, spec, labels, "
                                       "deleted_at FROM resources")]

    def claim(self, db, kind: str, namespace: str, name: str, source: str, source_file: str, synced: dict) -> None:
        """Mark a resource as the directory ``source``'s, last synced from ``source_file`` as ``synced``.
        A row already so marked is not written (a write is a change the controller reads again)."""
        db.execute("UPDATE resources SET source=?, source_file=?, source_spec=? "
                   "WHERE kind=? AND namespace=? AND name=? "
                   "AND NOT (coalesce(source, '') = ? AND coalesce(source_file, '') = ? AND coalesce(source_spec, '') = ?)",
                   [source, source_file, dump(synced), kind, namespace, name, source, source_file, dump(synced)])

    def record_sync(self, db, source: str, now: float, commit: str | None, files: dict, refused: str | None,
                    owned: int) -> None:
        """The outcome of a sync of ``source``: ``files``: file -> state, message, resources."""
        upsert(db, "syncs", {"source": source, "synced_at": now, "commit_id": commit, "files": dump(files),
                             "refused": refused, "owned": owned}, key="source")

    def sync_status(self, source: str | None = None) -> list[dict]:
        """The last sync of each directory (or of ``source``), by directory."""
        sql, params = "SELECT * FROM syncs", []
        if source:
            sql, params = sql + " WHERE source = ?", [source]
        rows = self._rows(sql + " ORDER BY source", params)
        for r in rows:
            r["files"] = json.loads(r["files"])
        return rows

    def owned_by(self, source: str) -> list[ResourceRecord]:
        return [resource_record(r) for r in self._rows("SELECT * FROM resources WHERE source = ? "
                                                       "ORDER BY kind, namespace, name", [source])]
