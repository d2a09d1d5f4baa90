"""The store's schema, as the list of migrations that built it, and the runner that applies them.

``MIGRATIONS`` is append-only: version N is the Nth entry, recorded in the ``migrations`` table
once applied, so a store made by an older brokerctl is brought up to date when it is opened
(``migrate``, called by ``db.Connection`` inside its first transaction, which holds the store's
write lock: processes opening a new store at once apply each migration once). Both backends have
the same versions, names and ``migrations`` table.

An entry is ``(name, statements)``. ``statements`` is one text for both backends, or a dict
``{"sqlite": ..., "postgresql": ...}`` where they must differ (SQLite cannot change a primary key
or drop a constraint; PostgreSQL can, in place). Either way the text is written with SQLite's
column types, TEXT, INTEGER, REAL and BLOB, and ``INTEGER PRIMARY KEY AUTOINCREMENT`` for an id;
``ddl`` gives PostgreSQL its own: BIGINT (SQLite's integers are 64-bit), DOUBLE PRECISION, BYTEA,
an identity column, and TEXT COLLATE "C" (SQLite compares text bytewise, so ``ORDER BY name`` and
primary keys sort the same on both whatever the database's locale). Booleans stay integers 0/1
on both (``db.encode``). Statements are separated by ``;`` and must not contain one, unless given as a
list (one statement an item: a trigger's body).
"""

from __future__ import annotations

import re
import secrets
import time
import uuid

Statements = str | list[str]  # `;`-separated text, or a list of statements (which may hold `;`)
MIGRATIONS: list[tuple[str, Statements | dict[str, Statements]]] = [
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
    ("container marks", ""),  # meta mark_key: the secret of records.container_mark, made by migrate()
    (
        # Identity becomes (kind, namespace, name). SQLite cannot change a primary key, so `resources`
        # is rebuilt: Jobs and Services go to namespace 'default', Nodes get '' (cluster-scoped).
        # Tasks, events and revisions get the column too; nothing else changes (task ids, container
        # names and marks stay, so running containers are kept). migrate() then adds the row of the
        # `default` Namespace, which always exists.
        "namespaces",
        """
        CREATE TABLE resources_namespaced (
            kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, uid TEXT NOT NULL,
            labels TEXT NOT NULL, spec TEXT NOT NULL, generation INTEGER NOT NULL,
            created_at REAL NOT NULL, updated_at REAL NOT NULL, deleted_at REAL,
            status TEXT NOT NULL DEFAULT '{}', retried_at REAL, drain_deadline REAL,
            source TEXT, source_file TEXT, source_spec TEXT,
            PRIMARY KEY (kind, namespace, name)
        );
        INSERT INTO resources_namespaced (kind, namespace, name, uid, labels, spec, generation, created_at,
                                          updated_at, deleted_at, status, retried_at, drain_deadline, source,
                                          source_file, source_spec)
            SELECT kind, CASE WHEN kind IN ('Job', 'Service') THEN 'default' ELSE '' END, name, uid, labels, spec,
                   generation, created_at, updated_at, deleted_at, status, retried_at, drain_deadline, source,
                   source_file, source_spec
            FROM resources;
        DROP TABLE resources;
        ALTER TABLE resources_namespaced RENAME TO resources;
        CREATE INDEX resources_namespace ON resources (namespace);
        ALTER TABLE tasks ADD COLUMN namespace TEXT NOT NULL DEFAULT '';
        UPDATE tasks SET namespace = 'default';
        DROP INDEX tasks_owner;
        CREATE INDEX tasks_owner ON tasks (owner_kind, namespace, owner_name);
        ALTER TABLE events ADD COLUMN namespace TEXT NOT NULL DEFAULT '';
        UPDATE events SET namespace = 'default' WHERE kind IN ('Job', 'Service');
        DROP INDEX events_object;
        CREATE INDEX events_object ON events (kind, namespace, name);
        ALTER TABLE revisions ADD COLUMN namespace TEXT NOT NULL DEFAULT '';
        UPDATE revisions SET namespace = 'default';
        DROP INDEX revisions_owner;
        CREATE INDEX revisions_owner ON revisions (kind, namespace, name)
        """,
    ),
    # A Secret's values, encrypted (a Fernet token; ``secrets``): a column of their own, so no spec holds them.
    ("secrets", "ALTER TABLE resources ADD COLUMN sealed TEXT"),
    (
        # API tokens (``tokens``: only a SHA-256 of each secret is kept; ``user_name``, since ``user``
        # is a reserved word in PostgreSQL), and who created and last changed each resource.
        "tokens and authors",
        """
        CREATE TABLE tokens (
            id TEXT PRIMARY KEY, user_name TEXT NOT NULL, role TEXT NOT NULL, namespaces TEXT NOT NULL,
            hash TEXT NOT NULL, created_at REAL NOT NULL, created_by TEXT NOT NULL DEFAULT '',
            last_used_at REAL, revoked_at REAL
        );
        ALTER TABLE resources ADD COLUMN created_by TEXT NOT NULL DEFAULT '';
        ALTER TABLE resources ADD COLUMN updated_by TEXT NOT NULL DEFAULT ''
        """,
    ),
    (
        # The first answer to a POST carrying an idempotency key (``idempotency``), per caller and route,
        # so a retried request returns it instead of creating a twin, on any server of the store.
        "idempotency keys",
        """
        CREATE TABLE idempotency_keys (
            scope TEXT NOT NULL, key TEXT NOT NULL, answer TEXT NOT NULL, created_at REAL NOT NULL,
            PRIMARY KEY (scope, key)
        );
        CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at)
        """,
    ),
    (
        # Several controllers on one store, one leader: the lease gains the leader's epoch (one more at
        # each takeover, never reset: a released lease keeps its row) and its expiry; each controller
        # records its own heartbeat and figures in `candidates` (`brokerctl status` lists the standbys). A lease
        # written before this keeps the old rule's 10 s from its last heartbeat.
        "leader election",
        """
        ALTER TABLE lease ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE lease ADD COLUMN expires_at REAL NOT NULL DEFAULT 0;
        UPDATE lease SET expires_at = heartbeat + 10;
        CREATE TABLE candidates (
            holder TEXT PRIMARY KEY, pid INTEGER NOT NULL, hostname TEXT NOT NULL,
            started_at REAL NOT NULL, heartbeat REAL NOT NULL, stats TEXT NOT NULL DEFAULT '{}'
        )
        """,
    ),
    (
        # The change counter (a pass reads only what changed, see store/changes.py): every insert or
        # update of a task or resource row sets its `rev` to the next value of one store-wide
        # counter, and a purged resource leaves its key in `resources_gone` under a rev of its own.
        # Triggers set it, so no writer can forget to. Writes take the store's write lock, so revs
        # are handed out in commit order. Rows written before this migration keep rev 0 (a
        # controller's first pass reads everything anyway). Trigger bodies hold `;`: lists, one
        # statement per item.
        "change counter",
        {
            "sqlite": [
                "CREATE TABLE store_rev (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL)",
                "INSERT INTO store_rev (id, value) VALUES (1, 0)",
                *(statement for table in ("tasks", "resources") for statement in (
                    f"ALTER TABLE {table} ADD COLUMN rev INTEGER NOT NULL DEFAULT 0",
                    f"CREATE INDEX {table}_rev ON {table} (rev)",
                    # The connection runs with recursive triggers on: the update trigger leaves alone
                    # the update that sets rev (its own, or the insert trigger's).
                    *(f"CREATE TRIGGER {table}_rev_{event.lower()} AFTER {event} ON {table}{when} BEGIN "
                      "UPDATE store_rev SET value = value + 1; "
                      f"UPDATE {table} SET rev = (SELECT value FROM store_rev) WHERE rowid = NEW.rowid; END"
                      for event, when in (("INSERT", ""), ("UPDATE", " WHEN NEW.rev = OLD.rev"))))),
                "CREATE TABLE resources_gone (rev INTEGER PRIMARY KEY, kind TEXT NOT NULL, namespace TEXT NOT NULL, "
                "name TEXT NOT NULL)",
                "CREATE TRIGGER resources_gone AFTER DELETE ON resources BEGIN "
                "UPDATE store_rev SET value = value + 1; "
                "INSERT INTO resources_gone (rev, kind, namespace, name) "
                "SELECT value, OLD.kind, OLD.namespace, OLD.name FROM store_rev; END",
            ],
            "postgresql": [
                "CREATE SEQUENCE store_rev",
                "CREATE FUNCTION brokerctl_next_rev() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN IF TG_OP = 'INSERT' OR NEW.rev = OLD.rev THEN NEW.rev := nextval('store_rev'); END IF; "
                "RETURN NEW; END $$",  # as on SQLite, an update that sets rev itself keeps it
                *(statement for table in ("tasks", "resources") for statement in (
                    f"ALTER TABLE {table} ADD COLUMN rev INTEGER NOT NULL DEFAULT 0",
                    f"CREATE INDEX {table}_rev ON {table} (rev)",
                    f"CREATE TRIGGER {table}_rev BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW "
                    "EXECUTE FUNCTION brokerctl_next_rev()")),
                "CREATE TABLE resources_gone (rev INTEGER PRIMARY KEY, kind TEXT NOT NULL, namespace TEXT NOT NULL, "
                "name TEXT NOT NULL)",
                "CREATE FUNCTION brokerctl_resource_gone() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN INSERT INTO resources_gone (rev, kind, namespace, name) "
                "VALUES (nextval('store_rev'), OLD.kind, OLD.namespace, OLD.name); RETURN OLD; END $$",
                "CREATE TRIGGER resources_gone AFTER DELETE ON resources FOR EACH ROW "
                "EXECUTE FUNCTION brokerctl_resource_gone()",
            ],
        },
    ),
    # A new resource's uid is checked against every resource of its name (``resources._new_uid``):
    # without this index each apply scanned the table, and submissions slowed as Jobs accumulated.
    ("resources by name", "CREATE INDEX resources_name ON resources (name)"),
]


# PostgreSQL's spelling of SQLite's column types (see the module docstring).
_POSTGRESQL_TYPES = {
    "INTEGER PRIMARY KEY AUTOINCREMENT": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    "INTEGER": "BIGINT",
    "REAL": "DOUBLE PRECISION",
    "BLOB": "BYTEA",
    "TEXT": 'TEXT COLLATE "C"',
}
_TYPE_WORDS = re.compile(r"\b(" + "|".join(map(re.escape, _POSTGRESQL_TYPES)) + r")\b")


def ddl(dialect: str, statements: Statements | dict[str, Statements]) -> list[str]:
    """A migration's statements as ``dialect`` (``sqlite`` or ``postgresql``) runs them, one a string."""
    if isinstance(statements, dict):
        statements = statements[dialect]
    if isinstance(statements, str):
        statements = [s for s in statements.split(";") if s.strip()]
    if dialect == "postgresql":
        return [_TYPE_WORDS.sub(lambda m: _POSTGRESQL_TYPES[m.group(1)], s) for s in statements]
    return list(statements)


def migrate(db, dialect: str = "sqlite") -> list[int]:
    """Apply the migrations ``db`` has not recorded yet, inside the caller's transaction (so two
    processes opening a new store at once apply each migration once). Returns the versions applied."""
    db.execute(ddl(dialect, "CREATE TABLE IF NOT EXISTS migrations "
                            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)")[0])
    cur = db.execute("SELECT version FROM migrations")
    done = {row[0] for row in cur.fetchall()}  # the one column selected
    applied = []
    for version, (name, sql) in enumerate(MIGRATIONS, start=1):
        if version in done:
            continue
        applied.append(version)
        for statement in ddl(dialect, sql):
            db.execute(statement)
        db.execute("INSERT INTO migrations (version, name, applied_at) VALUES (?, ?, ?)", [version, name, time.time()])
        if version == 1:
            _set_meta(db, "store_id", uuid.uuid4().hex[:12])
        if name == "container marks":
            _set_meta(db, "mark_key", secrets.token_hex(32))
        if name == "namespaces":
            _add_default_namespace(db)
    return applied


def _add_default_namespace(db) -> None:
    """The row of the `default` Namespace, with the spec an empty Namespace manifest is stored with (so
    applying `get namespace default -o yaml` back is `unchanged`)."""
    from ..kinds import DEFAULT_NAMESPACE
    from ..spec.namespace import NamespaceSpec  # once per store, when it is made or upgraded
    from .db import dump

    now = time.time()
    db.execute("INSERT INTO resources (kind, namespace, name, uid, labels, spec, generation, created_at, updated_at) "
               "VALUES ('Namespace', '', ?, ?, '{}', ?, 1, ?, ?)",
               [DEFAULT_NAMESPACE, uuid.uuid4().hex[:10], dump(NamespaceSpec().model_dump(mode="json")), now, now])


def _set_meta(db, key: str, value: str) -> None:
    db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", [key, value])
