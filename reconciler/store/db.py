"""The desired-state store: SQLite through sqlite-utils, the only module that speaks SQL.

Tables: ``resources`` (Nodes, Jobs, Services as applied, plus the status the controller
writes), ``tasks`` (one row per attempt, kept as history), ``task_logs`` (bounded output that
outlives containers), ``events`` (audit log of the controller's decisions), ``lease`` (which
controller owns the store) and ``migrations``. WAL mode, a busy timeout, and every write in a
short ``BEGIN IMMEDIATE`` transaction so concurrent CLI processes and the controller never hit
"database is locked" on read-then-write. Called by the CLI and the controller.

After each commit a store connection sends a one-byte datagram to the controller of that store
(``nudge``; a Linux abstract socket named after the store id), so a controller wakes at once
instead of at its next ``PRAGMA data_version`` poll. Nobody listening costs nothing.
"""

from __future__ import annotations

import gc
import json
import os
import secrets
import socket
import sys
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager, suppress
from dataclasses import fields
from pathlib import Path
from typing import Iterable, Iterator

# sqlite-utils imports numpy whenever it is installed, only to store numpy values, which the store
# never passes; that import alone costs ~50 ms on every CLI call. Hide numpy while it loads.
_hide_numpy = "numpy" not in sys.modules
if _hide_numpy:
    sys.modules["numpy"] = None  # type: ignore[assignment]
try:
    import sqlite_utils
finally:
    if _hide_numpy:
        del sys.modules["numpy"]

from ..errors import Conflict, NotFound, StoreError, UsageError
from ..kinds import Kind, TaskPhase
from ..records import ResourceRecord, TaskRecord

BUSY_TIMEOUT_MS = 30_000
LOG_LIMIT_BYTES = 1024 * 1024

MIGRATIONS: list[tuple[str, str]] = [
    (
        "initial",
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE resources (
            kind TEXT NOT NULL, name TEXT NOT NULL, uid TEXT NOT NULL,
            labels TEXT NOT NULL, spec TEXT NOT NULL, generation INTEGER NOT NULL,
            created_at REAL NOT NULL, updated_at REAL NOT NULL, deleted_at REAL,
            status TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (kind, name)
        );
        CREATE TABLE tasks (
            id TEXT PRIMARY KEY, owner_kind TEXT NOT NULL, owner_name TEXT NOT NULL,
            owner_uid TEXT NOT NULL, idx INTEGER NOT NULL, attempt INTEGER NOT NULL,
            phase TEXT NOT NULL, node TEXT, container_id TEXT, exit_code INTEGER,
            oom_killed INTEGER NOT NULL DEFAULT 0, reason TEXT NOT NULL DEFAULT '',
            message TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL,
            not_before REAL NOT NULL DEFAULT 0, scheduled_at REAL, started_at REAL,
            finished_at REAL, generation INTEGER NOT NULL DEFAULT 1,
            labels TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX tasks_owner ON tasks (owner_kind, owner_name);
        CREATE INDEX tasks_phase ON tasks (phase);
        CREATE TABLE task_logs (
            task_id TEXT PRIMARY KEY, output BLOB NOT NULL, truncated INTEGER NOT NULL
        );
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, kind TEXT NOT NULL,
            name TEXT NOT NULL, task_id TEXT, type TEXT NOT NULL, reason TEXT NOT NULL,
            message TEXT NOT NULL
        );
        CREATE INDEX events_object ON events (kind, name);
        CREATE TABLE lease (
            id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, pid INTEGER NOT NULL,
            hostname TEXT NOT NULL, started_at REAL NOT NULL, heartbeat REAL NOT NULL
        );
        """,
    ),
    ("job retries", "ALTER TABLE resources ADD COLUMN retried_at REAL"),
    (
        "service revisions",
        """
        ALTER TABLE tasks ADD COLUMN template_hash TEXT NOT NULL DEFAULT '';
        CREATE TABLE revisions (
            uid TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, revision INTEGER NOT NULL,
            hash TEXT NOT NULL, template TEXT NOT NULL, created_at REAL NOT NULL, cause TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (uid, hash)
        );
        CREATE INDEX revisions_owner ON revisions (kind, name)
        """,
    ),
    ("node drain", "ALTER TABLE resources ADD COLUMN drain_deadline REAL"),
    (
        "gitops",
        """
        ALTER TABLE resources ADD COLUMN source TEXT;
        ALTER TABLE resources ADD COLUMN source_file TEXT;
        ALTER TABLE resources ADD COLUMN source_spec TEXT;
        CREATE TABLE syncs (
            source TEXT PRIMARY KEY, synced_at REAL NOT NULL, commit_id TEXT, files TEXT NOT NULL,
            refused TEXT, owned INTEGER NOT NULL DEFAULT 0
        )
        """,
    ),
    ("controller stats", "ALTER TABLE lease ADD COLUMN stats TEXT NOT NULL DEFAULT '{}'"),
    ("container marks", ""),  # meta mark_key: the secret of records.container_mark, made in _migrate
]

# TaskRecord attribute -> column, where they differ.
_TASK_COLUMNS = {"index": "idx"}


def default_db_path() -> Path:
    """``--db`` wins, then ``BROKER_DB``, then the per-user XDG state file."""
    env = os.environ.get("BROKER_DB")
    if env:
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(state) / "brokerctl" / "broker.db"


class Store:
    """One connection to the store. Thread-safe: a lock serialises use of the connection."""

    def __init__(self, path: str | Path, create: bool = True):
        """Open the store at ``path``; ``create``: make it (and its directory) if missing, else
        a missing file is a StoreError naming the path. ``created`` says whether this call made it."""
        self.path = Path(path)
        self.created = False
        try:
            if not self.path.exists():
                if not create:
                    raise StoreError(_missing(self.path))
                self.created = _create_private(self.path)
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves.
            conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}; pass --db PATH or set BROKER_DB") from exc
        self._lock = threading.RLock()
        self.store_id: str | None = None
        self.nudge = True  # the controller turns this off for its own connection
        self._nudge_socket: socket.socket | None = None
        self.db = sqlite_utils.Database(conn, execute_plugins=False)
        try:
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._enable_wal()
            self.db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable brokerctl store: {exc}") from exc
        self.store_id = self._meta("store_id")
        # Signs the containers this store makes (records.container_mark). Whoever can read the store
        # file can forge marks; its permissions are what protect it.
        self.mark_key = self._meta("mark_key")

    def _enable_wal(self) -> None:
        """Switch a new store file to WAL. Connections opening the same new file at once race for
        the switch, and SQLite answers the losers "database is locked" at once, without the busy
        timeout; so retry until the timeout (a loser then finds WAL already on)."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        pause = 0.002
        while True:
            try:
                if self.db.journal_mode != "wal":
                    self.db.enable_wal()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.05)

    # -- plumbing -------------------------------------------------------------------------

    def close(self) -> None:
        self.db.conn.close()
        if self._nudge_socket is not None:
            self._nudge_socket.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """A write transaction; BEGIN IMMEDIATE takes the write lock up front."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            else:
                self.db.execute("COMMIT")
                if self.nudge and self.store_id:
                    self._send_nudge()

    def _send_nudge(self) -> None:
        try:
            if self._nudge_socket is None:
                self._nudge_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._nudge_socket.setblocking(False)
            self._nudge_socket.sendto(b"!", nudge_address(self.store_id))
        except (OSError, AttributeError):  # no controller listening, queue full, or no AF_UNIX here
            pass

    def _migrate(self) -> None:
        with self.transaction() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            done = {r[0] for r in db.execute("SELECT version FROM migrations").fetchall()}
            for version, (name, sql) in enumerate(MIGRATIONS, start=1):
                if version in done:
                    continue
                for statement in filter(str.strip, sql.split(";")):
                    db.execute(statement)
                db["migrations"].insert({"version": version, "name": name, "applied_at": time.time()})
                if version == 1:
                    db["meta"].insert({"key": "store_id", "value": uuid.uuid4().hex[:12]})
                if name == "container marks":
                    db["meta"].insert({"key": "mark_key", "value": secrets.token_hex(32)})

    def _meta(self, key: str) -> str:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0]

    def data_version(self) -> int:
        """Changes whenever another connection commits (SQLite's PRAGMA data_version)."""
        with self._lock:
            return self.db.execute("PRAGMA data_version").fetchone()[0]

    def _rows(self, sql: str, params: Iterable = ()) -> list[dict]:
        with self._lock:
            cur = self.db.execute(sql, list(params))
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]

    # -- resources ------------------------------------------------------------------------

    def apply(self, resources: list, now: float | None = None) -> list[tuple[str, str]]:
        """Record validated models (all or none); returns (``kind/name``, created|configured|unchanged)."""
        now = time.time() if now is None else now
        with self.transaction() as db:
            return [(f"{res.kind.lower()}/{res.metadata.name}", self._apply_one(db, res, now)) for res in resources]

    def _apply_one(self, db, res, now: float, source: str | None = None, source_file: str | None = None) -> str:
        """Write one model; ``source``: the synced directory that owns it (kept as it is when None)."""
        kind, name = res.kind, res.metadata.name
        spec = res.spec.model_dump(mode="json", exclude_unset=False)
        labels = dict(res.metadata.labels)
        row = db.execute(
            "SELECT spec, labels, generation, deleted_at, uid FROM resources WHERE kind=? AND name=?", [kind, name],
        ).fetchone()
        synced = _dump({"spec": spec, "labels": labels}) if source else None
        if row is None:
            uid = uuid.uuid4().hex[:10]
            db["resources"].insert(
                {
                    "kind": kind, "name": name, "uid": uid,
                    "labels": _dump(labels), "spec": _dump(spec), "generation": 1,
                    "created_at": now, "updated_at": now, "deleted_at": None, "status": "{}",
                    "source": source, "source_file": source_file, "source_spec": synced,
                }
            )
            if kind == Kind.SERVICE.value:
                self._record_revision(db, uid, name, spec, now, "apply" if not source else f"sync {source_file}")
            return "created"
        if row[3] is not None:
            raise Conflict(
                f"{kind} '{name}' is being deleted; wait until `brokerctl get {kind.lower()}s` "
                "no longer lists it (the controller removes its containers first), then apply again"
            )
        if kind == Kind.JOB.value and (changed := _template_changes(json.loads(row[0]), spec)):
            raise Conflict(_immutable_template(name, changed))
        if source:
            db.execute("UPDATE resources SET source_file=?, source_spec=? WHERE kind=? AND name=?",
                       [source_file, synced, kind, name])
        if json.loads(row[0]) == spec and json.loads(row[1]) == labels:
            return "unchanged"
        generation = row[2] + (json.loads(row[0]) != spec)
        db.execute(
            "UPDATE resources SET spec=?, labels=?, generation=?, updated_at=? WHERE kind=? AND name=?",
            [_dump(spec), _dump(labels), generation, now, kind, name],
        )
        if kind == Kind.SERVICE.value:
            self._record_revision(db, row[4], name, spec, now, "apply" if not source else f"sync {source_file}")
        return "configured"

    # -- GitOps: a directory that owns what it created ----------------------------------

    def sync(self, source: str, items: list[tuple[str, object]], held: dict[str, str], *,
             allow_mass_prune: bool = False, commit: str | None = None, dry_run: bool = False,
             now: float | None = None) -> dict:
        """Make the store follow directory ``source`` in one transaction.

        ``items``: (file, model) for every resource of the directory's valid files; ``held``:
        file -> problem for files that did not validate (what they defined keeps its last good
        state: not changed, not pruned). Resources this directory created and no longer defines
        are pruned (deleted; the controller stops their containers); nothing created by hand or
        by another directory is ever touched. A sync that would prune more than half, or all, of
        what the directory owns is refused unless ``allow_mass_prune``. A resource changed by hand
        since the last sync is put back and a DriftCorrected event recorded. With ``dry_run``
        nothing is written. Returns a report: results per resource, pruned, refused, problems.
        """
        now = time.time() if now is None else now
        report: dict = {"source": source, "results": [], "pruned": [], "kept": [], "problems": dict(held),
                        "refused": None, "drift": []}
        try:
            with self.transaction() as db:
                self._sync(db, source, items, held, allow_mass_prune, now, report)
                if not dry_run:
                    db["syncs"].upsert({"source": source, "synced_at": now, "commit_id": commit,
                                        "files": _dump(report["files"]), "refused": report["refused"],
                                        "owned": report["owned"]}, pk="source")
                    self._sync_events(db, source, report, now)
                if dry_run or report["refused"]:
                    raise _Rollback
        except _Rollback:
            if not dry_run and report["refused"]:  # the refusal itself is recorded
                with self.transaction() as db:
                    db["syncs"].upsert({"source": source, "synced_at": now, "commit_id": commit,
                                        "files": _dump(report["files"]), "refused": report["refused"],
                                        "owned": report["owned"]}, pk="source")
                    self.add_event(db, "Directory", source, "SyncRefused", report["refused"], "Warning", ts=now)
        return report

    def _sync(self, db, source: str, items, held: dict[str, str], allow_mass_prune: bool, now: float,
              report: dict) -> None:
        rows = {(r[0], r[1]): r for r in db.execute(
            "SELECT kind, name, source, source_file, source_spec, spec, labels, deleted_at FROM resources").fetchall()}
        owned = {k: r for k, r in rows.items() if r[2] == source}
        # A file that changes the template of a Job it owns is held back whole, like an invalid file.
        held = dict(held)
        for file, model in items:
            row = rows.get((model.kind, model.metadata.name))
            if model.kind == Kind.JOB.value and row is not None and row[2] == source and row[7] is None and (
                    changed := _template_changes(json.loads(row[5]), model.spec.model_dump(mode="json"))):
                held[file] = "; ".join(filter(None, [held.get(file), _immutable_template(model.metadata.name, changed)]))
                report["problems"][file] = held[file]
        items = [(file, model) for file, model in items if file not in held]
        files: dict[str, dict] = {f: {"state": "invalid", "message": m, "resources": []} for f, m in held.items()}
        desired = {}
        for file, model in items:
            entry = files.setdefault(file, {"state": "ok", "message": "", "resources": []})
            key = (model.kind, model.metadata.name)
            row = rows.get(key)
            if row is not None and row[2] != source:
                owner = f"directory {row[2]}" if row[2] else "hand (brokerctl apply)"
                problem = (f"{model.kind}/{model.metadata.name} already exists, created by {owner}; this directory "
                           "only manages what it created: delete that one or rename this one")
                entry.update(state="invalid", message="; ".join(filter(None, [entry["message"], problem])))
                report["problems"][file] = entry["message"]
                continue
            entry["resources"].append(f"{model.kind}/{model.metadata.name}")
            desired[key] = (file, model)
        gone = [k for k, r in owned.items() if k not in desired and r[7] is None]
        report["kept"] = [f"{k[0]}/{k[1]}" for k in gone if owned[k][3] in held]
        prune = [k for k in gone if owned[k][3] not in held]
        live = [k for k, r in owned.items() if r[7] is None]
        report["files"], report["owned"] = files, len(live)
        if prune and not allow_mass_prune and (len(prune) == len(live) or 2 * len(prune) > len(live)):
            report["refused"] = (
                f"sync of {source} would prune {len(prune)} of the {len(live)} resources it owns "
                f"({', '.join(f'{k}/{n}' for k, n in prune[:5])}{', ...' if len(prune) > 5 else ''}); refused "
                "in case of a bad checkout. Restore the files, or pass --allow-mass-prune if this is intended"
            )
            return
        for key, (file, model) in sorted(desired.items()):
            row = rows.get(key)
            if row is not None and row[7] is not None:
                report["results"].append((f"{key[0]}/{key[1]}", "waiting: being deleted"))
                continue
            before = json.loads(row[4]) if row is not None and row[4] else None
            current = {"spec": json.loads(row[5]), "labels": json.loads(row[6])} if row is not None else None
            outcome = self._apply_one(db, model, now, source, file)
            wanted = {"spec": model.spec.model_dump(mode="json"), "labels": dict(model.metadata.labels)}
            if outcome == "configured" and before == wanted and current != wanted:
                outcome = "drift corrected"
                report["drift"].append(f"{key[0]}/{key[1]}")
            report["results"].append((f"{key[0]}/{key[1]}", outcome))
        for kind, name in prune:
            try:
                outcome = self._delete(db, Kind(kind), name, now)
            except Conflict as exc:
                file = owned[(kind, name)][3] or source
                report["problems"][file] = "; ".join(filter(None, [report["problems"].get(file), str(exc)]))
                continue
            report["pruned"].append((f"{kind}/{name}", outcome))

    def _sync_events(self, db, source: str, report: dict, now: float) -> None:
        for ref, outcome in report["pruned"]:
            kind, name = ref.split("/", 1)
            self.add_event(db, kind, name, "Pruned", f"{ref} is no longer in {source}; {outcome}", ts=now)
        for ref in report["drift"]:
            kind, name = ref.split("/", 1)
            self.add_event(db, kind, name, "DriftCorrected",
                           f"{ref} was changed outside {source}; the directory's version is back", "Warning", ts=now)
        for file, problem in sorted(report["problems"].items()):
            text = problem if problem.startswith(file) else f"{file}: {problem}"
            self.add_event(db, "Directory", source, "InvalidManifest", text, "Warning", ts=now)

    def sync_status(self, source: str | None = None) -> list[dict]:
        sql, params = "SELECT * FROM syncs", []
        if source:
            sql, params = sql + " WHERE source = ?", [source]
        rows = self._rows(sql + " ORDER BY source", params)
        for r in rows:
            r["files"] = json.loads(r["files"])
        return rows

    def owned_by(self, source: str) -> list[ResourceRecord]:
        return [_resource(r) for r in self._rows("SELECT * FROM resources WHERE source = ? ORDER BY kind, name",
                                                 [source])]

    # -- nodes: cordon, drain ------------------------------------------------------------

    def cordon(self, name: str, on: bool, drain_timeout: float | None = None, now: float | None = None) -> bool:
        """Set a Node unschedulable (``on``) or schedulable again; with ``drain_timeout`` also drain it.

        Draining moves its tasks off: Service replicas are replaced elsewhere before the originals
        stop; Job tasks may finish until ``now + drain_timeout``, then are rescheduled. Uncordon
        ends a drain. Returns whether anything changed.
        """
        now = time.time() if now is None else now
        with self.transaction() as db:
            row = db.execute("SELECT spec, drain_deadline FROM resources WHERE kind='Node' AND name=?",
                             [name]).fetchone()
            if row is None:
                raise NotFound(f"Node '{name}' not found; `brokerctl get nodes` lists them")
            spec = json.loads(row[0])
            deadline = now + drain_timeout if drain_timeout is not None else (row[1] if on else None)
            if spec.get("unschedulable", False) == on and row[1] == deadline:
                return False
            spec["unschedulable"] = on
            db.execute("UPDATE resources SET spec=?, drain_deadline=?, updated_at=?, "
                       "generation=generation+? WHERE kind='Node' AND name=?",
                       [_dump(spec), deadline, now, int(json.loads(row[0]).get("unschedulable", False) != on), name])
            return True

    def tasks_on(self, node: str) -> list[TaskRecord]:
        """Active tasks bound to a node."""
        return self._select_tasks(["node = ?", "phase IN ('Pending', 'Running')"], [node])

    # -- services: scale, revisions, rollback ---------------------------------------------

    def scale(self, name: str, replicas: int, now: float | None = None) -> tuple[int, int]:
        """Set a Service's replicas; returns (old, new)."""
        now = time.time() if now is None else now
        with self.transaction() as db:
            spec = self._service_spec(db, name)
            old = spec.get("replicas", 1)
            if old != replicas:
                from ..spec.models import MAX_REPLICAS  # the cap a manifest's replicas has at apply

                if not 0 <= replicas <= MAX_REPLICAS:
                    raise UsageError(f"--replicas {replicas}: a Service has 0 to {MAX_REPLICAS:,} replicas")
                spec["replicas"] = replicas
                db.execute(
                    "UPDATE resources SET spec=?, generation=generation+1, updated_at=? WHERE kind='Service' AND name=?",
                    [_dump(spec), now, name],
                )
        return old, replicas

    def revisions(self, name: str) -> list[dict]:
        """A Service's template revisions, oldest first: revision, hash, template, created_at, cause."""
        rows = self._rows(
            "SELECT revision, hash, template, created_at, cause FROM revisions WHERE kind='Service' AND name=? "
            "AND uid=(SELECT uid FROM resources WHERE kind='Service' AND name=?) ORDER BY revision",
            [name, name],
        )
        for r in rows:
            r["template"] = json.loads(r["template"])
        return rows

    def rollback(self, db, name: str, to: int | str | None, now: float, cause: str) -> dict:
        """Within the caller's transaction: put an earlier revision's template back into the spec.

        ``to``: a revision number, a template hash, or None for the revision before the current
        one. Returns that revision; raises NotFound/Conflict naming what exists.
        """
        spec = self._service_spec(db, name)
        uid = db.execute("SELECT uid FROM resources WHERE kind='Service' AND name=?", [name]).fetchone()[0]
        revs = [dict(zip(("revision", "hash", "template"), r)) for r in db.execute(
            "SELECT revision, hash, template FROM revisions WHERE uid=? ORDER BY revision", [uid]).fetchall()]
        current = _spec_hash(spec)
        if to is None:
            earlier = [r for r in revs if r["hash"] != current]
            if not earlier:
                raise Conflict(f"Service '{name}' has no earlier revision to roll back to; "
                               f"`brokerctl rollout history service/{name}` lists them")
            target = earlier[-1]
        else:
            found = [r for r in revs if r["revision"] == to or r["hash"] == to]
            if not found:
                have = ", ".join(str(r["revision"]) for r in revs) or "none"
                raise NotFound(f"Service '{name}' has no revision {to}; it has: {have}")
            target = found[0]
        template = json.loads(target["template"])
        spec.update({"healthCheck": None, **template})
        db.execute(
            "UPDATE resources SET spec=?, generation=generation+1, updated_at=? WHERE kind='Service' AND name=?",
            [_dump(spec), now, name],
        )
        return self._record_revision(db, uid, name, spec, now, cause)

    def undo(self, name: str, to: int | None = None, now: float | None = None) -> dict:
        """``rollout undo``: the previous revision (or ``to``) becomes the desired template again."""
        now = time.time() if now is None else now
        with self.transaction() as db:
            return self.rollback(db, name, to, now, f"rollout undo{f' --to-revision {to}' if to else ''}")

    @staticmethod
    def _service_spec(db, name: str) -> dict:
        row = db.execute("SELECT spec, deleted_at FROM resources WHERE kind='Service' AND name=?", [name]).fetchone()
        if row is None:
            raise NotFound(f"Service '{name}' not found; `brokerctl get services` lists them")
        if row[1] is not None:
            raise Conflict(f"Service '{name}' is being deleted")
        return json.loads(row[0])

    @staticmethod
    def _record_revision(db, uid: str, name: str, spec: dict, now: float, cause: str) -> dict:
        """The spec's template becomes the newest revision (an old template seen again moves to the top)."""
        digest = _spec_hash(spec)
        top = db.execute("SELECT max(revision) FROM revisions WHERE uid=?", [uid]).fetchone()[0] or 0
        row = db.execute("SELECT revision FROM revisions WHERE uid=? AND hash=?", [uid, digest]).fetchone()
        template = {k: spec[k] for k in ("template", "healthCheck") if spec.get(k) is not None}
        if row is None:
            db["revisions"].insert({"uid": uid, "kind": "Service", "name": name, "revision": top + 1, "hash": digest,
                                    "template": _dump(template), "created_at": now, "cause": cause})
            return {"revision": top + 1, "hash": digest}
        if row[0] != top:
            db.execute("UPDATE revisions SET revision=?, created_at=?, cause=? WHERE uid=? AND hash=?",
                       [top + 1, now, cause, uid, digest])
            return {"revision": top + 1, "hash": digest}
        return {"revision": row[0], "hash": digest}

    def resources(self, kind: Kind | None = None) -> list[ResourceRecord]:
        sql, params = "SELECT * FROM resources", []
        if kind is not None:
            sql, params = sql + " WHERE kind = ?", [kind.value]
        return [_resource(r) for r in self._rows(sql + " ORDER BY kind, name", params)]

    def resource(self, kind: Kind, name: str) -> ResourceRecord:
        rows = self._rows("SELECT * FROM resources WHERE kind=? AND name=?", [kind.value, name])
        if not rows:
            raise NotFound(f"{kind.value} '{name}' not found; `brokerctl get {kind.value.lower()}s` lists them")
        return _resource(rows[0])

    def mark_deleted(self, kind: Kind, name: str, now: float | None = None, force: bool = False) -> str:
        """Delete at once when nothing of it may still run; otherwise leave it to the controller.

        Returns what happened, for ``brokerctl delete`` to print after the resource's ref:
        ``deleted``; ``deleting`` (the controller stops its containers, then purges it); for a
        resource already being deleted, that it is still stopping (never purged here: its
        containers may be in their grace period). ``force`` purges at once whatever may run; the
        containers are then no longer tracked (a running controller removes them as orphans).
        A Node with active tasks is refused unless ``force``: the controller could no longer
        reach its containers to stop them.
        """
        now = time.time() if now is None else now
        with self.transaction() as db:
            return self._delete(db, kind, name, now, force)

    def _delete(self, db, kind: Kind, name: str, now: float, force: bool = False) -> str:
        row = db.execute("SELECT deleted_at, spec, status FROM resources WHERE kind=? AND name=?",
                         [kind.value, name]).fetchone()
        if row is None:
            raise NotFound(f"{kind.value} '{name}' not found; `brokerctl get {kind.value.lower()}s` lists them")
        if kind is Kind.NODE:
            on_node = db.execute("SELECT count(*) FROM tasks WHERE node=? AND phase IN ('Pending', 'Running')",
                                 [name]).fetchone()[0]
            if on_node and not force:
                raise Conflict(
                    f"Node '{name}' has {on_node} active task(s); drain it first (`brokerctl drain {name}`), "
                    "or pass --force (the tasks are replaced elsewhere and their containers are "
                    "left running on that host, untracked)"
                )
            self.purge_rows(db, kind, name)
            return "deleted"
        grace = json.loads(row[1]).get("terminationGracePeriodSeconds", 10)
        # Tasks whose container may still run: active ones, and those stopped less than a grace
        # period ago whose container was not collected (no exit code).
        active, placed = db.execute(
            "SELECT count(*), count(node) FROM tasks WHERE owner_kind=? AND owner_name=? AND "
            "(phase IN ('Pending', 'Running') OR (container_id IS NOT NULL AND finished_at IS NULL) "
            " OR (container_id IS NOT NULL AND exit_code IS NULL AND finished_at > ?))",
            [kind.value, name, now - grace],
        ).fetchone()
        if force:
            self.purge_rows(db, kind, name)
            if not placed:
                return "deleted"
            return (f"deleted (--force); {_containers(placed)} may still run, no longer tracked: a running "
                    f"controller removes them as orphans (SIGTERM, kill after 10s), without their grace period")
        if row[0] is not None:  # already being deleted: the controller purges it once its containers are gone
            seen = json.loads(row[2]).get("stoppingContainers", placed)
            if not seen:
                return ("still being deleted; the controller removes it at its next pass "
                        "(`brokerctl status` shows whether one is running)")
            return f"still stopping ({_containers(seen)}); pass --force to abandon them"
        if not active:
            self.purge_rows(db, kind, name)
            return "deleted"
        db.execute("UPDATE resources SET deleted_at=?, updated_at=? WHERE kind=? AND name=?",
                   [now, now, kind.value, name])
        return "deleting"

    def retry_job(self, name: str, now: float | None = None) -> None:
        """Give a Failed Job a fresh failure budget; earlier attempts stay in its history."""
        now = time.time() if now is None else now
        with self.transaction() as db:
            row = db.execute("SELECT status FROM resources WHERE kind='Job' AND name=?", [name]).fetchone()
            if row is None:
                raise NotFound(f"Job '{name}' not found; `brokerctl get jobs` lists them")
            phase = json.loads(row[0]).get("phase", "Pending")
            if phase != "Failed":
                raise Conflict(f"Job '{name}' is {phase}, not Failed; only a Failed job can be retried")
            db.execute("UPDATE resources SET retried_at=?, updated_at=? WHERE kind='Job' AND name=?", [now, now, name])

    def purge(self, kind: Kind, name: str) -> None:
        with self.transaction() as db:
            self.purge_rows(db, kind, name)

    @staticmethod
    def purge_rows(db, kind: Kind, name: str) -> None:
        db.execute(
            "DELETE FROM task_logs WHERE task_id IN (SELECT id FROM tasks WHERE owner_kind=? AND owner_name=?)",
            [kind.value, name],
        )
        db.execute("DELETE FROM tasks WHERE owner_kind=? AND owner_name=?", [kind.value, name])
        db.execute("DELETE FROM revisions WHERE kind=? AND name=?", [kind.value, name])
        db.execute("DELETE FROM resources WHERE kind=? AND name=?", [kind.value, name])

    def set_status(self, db, kind: Kind, name: str, status: dict) -> None:
        """Within a transaction opened by the caller (see ``record``)."""
        db.execute("UPDATE resources SET status=? WHERE kind=? AND name=?", [_dump(status), kind.value, name])

    # -- tasks ----------------------------------------------------------------------------

    def tasks(
        self, owner: tuple[Kind, str] | None = None, active_only: bool = False
    ) -> list[TaskRecord]:
        params, where = [], []
        if owner is not None:
            where.append("owner_kind = ? AND owner_name = ?")
            params += [owner[0].value, owner[1]]
        if active_only:
            where.append("phase IN ('Pending', 'Running')")
        return self._select_tasks(where, params)

    def task(self, task_id: str) -> TaskRecord:
        rows = self._select_tasks(["id = ?"], [task_id])
        if not rows:
            raise NotFound(f"task '{task_id}' not found; `brokerctl get tasks` lists them")
        return rows[0]

    def _select_tasks(self, where: list[str], params: list) -> list[TaskRecord]:
        sql = f"SELECT {_TASK_SELECT} FROM tasks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        # Positional rows straight into records: this runs over every row each pass.
        with gc_paused():
            with self._lock:
                # Tasks created in one pass share created_at: then by owner, index and attempt as
                # numbers (by id text, job-x-10-1 would come before job-x-2-1).
                rows = self.db.execute(sql + " ORDER BY created_at, owner_kind, owner_name, idx, attempt, id",
                                       params).fetchall()
            return [_task_from_tuple(r) for r in rows]

    def insert_task(self, db, task: TaskRecord) -> None:
        db["tasks"].insert(_task_row(task))

    def update_task(self, db, task_id: str, **changes) -> None:
        cols = {_TASK_COLUMNS.get(k, k): _encode(v) for k, v in changes.items()}
        sets = ", ".join(f"{c} = ?" for c in cols)
        db.execute(f"UPDATE tasks SET {sets} WHERE id = ?", [*cols.values(), task_id])

    def save_output(self, db, task_id: str, output: bytes, truncated: bool) -> None:
        if len(output) > LOG_LIMIT_BYTES:
            output, truncated = output[-LOG_LIMIT_BYTES:], True
        db["task_logs"].upsert({"task_id": task_id, "output": output, "truncated": int(truncated)}, pk="task_id")

    def output(self, task_id: str) -> tuple[bytes, bool] | None:
        rows = self._rows("SELECT output, truncated FROM task_logs WHERE task_id = ?", [task_id])
        return (bytes(rows[0]["output"]), bool(rows[0]["truncated"])) if rows else None

    # -- events ---------------------------------------------------------------------------

    def add_event(self, db, kind: str, name: str, reason: str, message: str,
                  type: str = "Normal", task_id: str | None = None, ts: float | None = None) -> None:
        db["events"].insert(
            {"ts": time.time() if ts is None else ts, "kind": kind, "name": name, "task_id": task_id,
             "type": type, "reason": reason, "message": message}
        )

    def events(self, kind: str | None = None, name: str | None = None, limit: int | None = 200) -> list[dict]:
        """The last ``limit`` events (None: all), oldest first; only those of ``kind``/``name`` if given."""
        sql, params = "SELECT * FROM events", []
        if kind is not None:
            sql += " WHERE kind = ? AND name = ?"
            params = [kind, name]
        rows = self._rows(sql + " ORDER BY id DESC LIMIT ?", [*params, -1 if limit is None else limit])
        return rows[::-1]

    # -- controller lease -----------------------------------------------------------------

    def acquire_lease(self, holder: str, stale_after: float, now: float | None = None) -> None:
        """Take the controller lease, or raise StoreError naming the live holder."""
        now = time.time() if now is None else now
        host = socket.gethostname()
        with self.transaction() as db:
            row = db.execute("SELECT holder, pid, hostname, heartbeat FROM lease WHERE id = 1").fetchone()
            if row and row[0] != holder and now - row[3] < stale_after and _maybe_alive(row[1], row[2], host):
                raise StoreError(
                    f"another controller (pid {row[1]} on {row[2]}) is running on store {self.path}; "
                    "stop it first, or use a different --db"
                )
            db.execute(
                "INSERT OR REPLACE INTO lease (id, holder, pid, hostname, started_at, heartbeat) "
                "VALUES (1, ?, ?, ?, ?, ?)",
                [holder, os.getpid(), host, now, now],
            )

    def heartbeat(self, db, holder: str, now: float, stats: dict | None = None) -> bool:
        """Refresh the lease (and the controller's ``stats``) inside the caller's transaction;
        False if another holder took it."""
        cur = db.execute("UPDATE lease SET heartbeat = ?, stats = ? WHERE id = 1 AND holder = ?",
                         [now, json.dumps(stats or {}), holder])
        return cur.rowcount == 1

    def release_lease(self, holder: str, wait: float | None = None) -> bool:
        """Give up the lease. With ``wait``, give up (False) rather than wait longer than that for
        this connection's lock or another process's write: a controller shutting down must not hang."""
        if not self._lock.acquire(timeout=-1 if wait is None else wait):
            return False
        try:
            if wait is not None:
                self.db.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
            with self.transaction() as db:
                db.execute("DELETE FROM lease WHERE id = 1 AND holder = ?", [holder])
            return True
        except sqlite3.OperationalError:  # "database is locked": another writer kept it
            return False
        finally:
            if wait is not None:
                self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._lock.release()

    def lease(self) -> dict | None:
        rows = self._rows("SELECT * FROM lease WHERE id = 1")
        if not rows:
            return None
        rows[0]["stats"] = json.loads(rows[0].get("stats") or "{}")
        return rows[0]


def _create_private(path: Path) -> bool:
    """Create the store file 0600, and each missing directory above it 0700: the store holds env
    values and task output. SQLite gives its -wal and -shm files the main file's mode. Returns
    False if another process created the file first."""
    missing = [d for d in [path.parent, *path.parent.parents] if not d.exists()]
    for directory in reversed(missing):
        with suppress(FileExistsError):
            os.mkdir(directory, 0o700)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return False
    return True  # an empty file is an empty SQLite database


def _missing(path: Path) -> str:
    where = (f"directory {path.parent} does not exist" if not path.parent.is_dir()
             else "the file does not exist")
    return (f"no store at {path}: {where}. `brokerctl apply`, `sync`, `run` and `controller` create one; "
            "or pass --db PATH (or set BROKER_DB) to use an existing store")


def nudge_address(store_id: str) -> str:
    """Where a store's controller listens for commit nudges: an abstract (nameless) Unix socket."""
    return f"\0brokerctl-{store_id}"




def _maybe_alive(pid: int, hostname: str, this_host: str) -> bool:
    """A lease held by a dead process on this host is stale at once; elsewhere trust the heartbeat."""
    if hostname != this_host:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Rollback(Exception):
    """Raised inside a transaction to undo it (dry runs, refused syncs)."""


def _containers(n: int) -> str:
    return f"{n} container" + ("" if n == 1 else "s")


def _spec_hash(spec: dict) -> str:
    from ..spec.models import STORED, ServiceSpec, template_hash  # only writes of Services need the models

    return template_hash(ServiceSpec.model_validate(spec, context=STORED))


def _template_changes(old_spec: dict, new_spec: dict) -> list[str]:
    """Template fields a Job's new spec changes (``new_spec`` is a model dump; the stored one is
    normalised first, so a field added with a default since it was written is no change)."""
    from ..spec.models import STORED, Template

    old = Template.model_validate(old_spec["template"], context=STORED).model_dump(mode="json")
    new = new_spec["template"]
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def _immutable_template(name: str, changed: list[str]) -> str:
    fields = ", ".join(f"spec.template.{k}" for k in changed)
    return (f"Job '{name}': spec.template cannot change while the Job exists ({fields} changed); delete it "
            f"(`brokerctl delete job {name}`) and apply it again, or apply it under a new name")


def _dump(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _encode(value):
    if isinstance(value, (dict, list)):
        return _dump(value)
    if hasattr(value, "value") and isinstance(value.value, str):  # str enums
        return value.value
    if isinstance(value, bool):
        return int(value)
    return value


def _resource(row: dict) -> ResourceRecord:
    return ResourceRecord(
        kind=Kind(row["kind"]), name=row["name"], uid=row["uid"], labels=json.loads(row["labels"]),
        spec=json.loads(row["spec"]), generation=row["generation"], created_at=row["created_at"],
        updated_at=row["updated_at"], deleted_at=row["deleted_at"], status=json.loads(row["status"]),
        retried_at=row.get("retried_at"), drain_deadline=row.get("drain_deadline"), source=row.get("source"),
    )


_KINDS = {k.value: k for k in Kind}
_PHASES = {p.value: p for p in TaskPhase}
_TASK_FIELDS = tuple((f.name, _TASK_COLUMNS.get(f.name, f.name)) for f in fields(TaskRecord))


_TASK_SELECT = ", ".join(column for _, column in _TASK_FIELDS)
_TASK_NAMES = [name for name, _ in _TASK_FIELDS]
_new_task = object.__new__
_LABELS_AT, _KIND_AT, _PHASE_AT, _OOM_AT = map(_TASK_NAMES.index, ("labels", "owner_kind", "phase", "oom_killed"))


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while many acyclic objects are built at once (task
    records, their JSON objects). Each allocation burst otherwise triggers collections that
    re-walk everything already built: about 0.4 s of `get tasks -o json` over 100,000 rows."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _task_from_tuple(row: tuple) -> TaskRecord:
    values = list(row)
    values[_KIND_AT] = _KINDS[values[_KIND_AT]]  # dict lookups: Enum(value) is slow at 100,000 rows
    values[_PHASE_AT] = _PHASES[values[_PHASE_AT]]
    values[_OOM_AT] = bool(values[_OOM_AT])
    labels = values[_LABELS_AT]
    values[_LABELS_AT] = json.loads(labels) if labels != "{}" else {}
    # The frozen dataclass's __init__ sets each field through object.__setattr__; filling __dict__
    # at once makes the same record about twice as fast, which counts at 100,000 rows a pass.
    record = _new_task(TaskRecord)
    record.__dict__.update(zip(_TASK_NAMES, values))
    return record


def _task_row(task: TaskRecord) -> dict:
    return {_TASK_COLUMNS.get(f.name, f.name): _encode(getattr(task, f.name)) for f in fields(TaskRecord)}


__all__ = ["Store", "default_db_path", "LOG_LIMIT_BYTES"]
