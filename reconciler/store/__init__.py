"""The desired-state store: the only package that speaks SQL.

``Store`` is one connection (``db.Connection``: open, transactions, migrations, wake-ups) to a
SQLite file (``sqlite``) or a PostgreSQL database (``postgres``), with the methods of every noun of
the store, each in its own module: ``resources``, ``tasks``, ``events``, ``revisions``, ``lease``,
``syncs``, ``secrets``, ``tokens`` and ``idempotency``. ``transfer`` copies a whole store into an
empty one (``brokerctl store migrate``). Callers (the CLI, ``ops``, the controller, act) use one ``Store``: reads open no
transaction; writes are either a method that runs its own transaction (``apply``,
``mark_deleted``...) or a method taking ``db`` from the caller's ``with store.transaction() as db:``
so that several writes commit together.
"""

from __future__ import annotations

from pathlib import Path

from .db import Connection, LockTimeout, Subscription, gc_paused
from .location import default_db_path
from .events import EventStore
from .idempotency import IdempotencyStore, Once
from .lease import Fenced, LeaseStore
from .resources import ResourceStore
from .revisions import RevisionStore
from .secrets import SecretStore, SecretValues
from .syncs import SourcedRow, SyncStore
from .tasks import LOG_LIMIT_BYTES, TaskState, TaskStore
from .tokens import TokenStore


class Store(ResourceStore, TaskStore, EventStore, RevisionStore, LeaseStore, SyncStore, SecretStore, TokenStore,
            IdempotencyStore, Connection):
    """One connection to a store (a SQLite file or a PostgreSQL database), thread-safe, with every
    noun's reads and writes. ``secrets_key``: the file of the key its Secrets are sealed with
    (default: see ``secrets``)."""

    def __init__(self, path, create: bool = True, secrets_key=None):
        super().__init__(path, create)
        self.secrets_key_file = Path(secrets_key) if secrets_key else None


__all__ = ["Store", "Fenced", "Once", "SecretValues", "SourcedRow", "Subscription", "TaskState", "LockTimeout",
           "default_db_path", "gc_paused", "LOG_LIMIT_BYTES"]
