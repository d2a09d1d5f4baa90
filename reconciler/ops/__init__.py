"""The user's verbs, returning result objects: what every front end (the CLI, later the HTTP API) calls.

One module per group of verbs: ``resources`` (apply, get, describe, delete, diff, schema),
``listing`` (`get` over several kinds, sorted and cut), ``watch`` (`get -w`), ``edit``,
``tasks`` (logs, exec, run, wait, retry), ``nodes`` (cordon, uncordon, drain), ``rollout`` (scale,
rollout status/history/undo), ``sync`` (GitOps), ``controller`` (the reconcile loop, status);
``refs`` reads the names users type and ``polling`` is the waiting loop they share. A verb takes an
open store and plain values, returns data (or yields ``polling.Note``s while it waits) and raises
``BrokerError``s; it never prints. Heavy modules (the store driver, pydantic, the Docker SDK) are
imported where they are used, so a front end can import every verb module and still start fast.
"""

from __future__ import annotations

from pathlib import Path


def open_store(path: str | Path | None = None, create: bool = False, secrets_key: str | Path | None = None):
    """The store at ``path``: a file path, ``sqlite:///PATH`` or ``postgresql://USER@HOST:PORT/DB``
    (default: $BROKER_DB, else the per-user state file). Only the verbs that make one on purpose
    (apply, sync, run, controller) pass ``create``: elsewhere a missing store is a ``StoreError``
    naming it and the fix. ``store.created`` says whether this call made it. ``secrets_key``: the
    file of the key its Secrets are sealed with (default: ``$BROKER_SECRETS_KEY``, else beside a
    store file, else the per-user state directory's ``secrets.key``)."""
    from ..store import Store, default_db_path

    return Store(path or default_db_path(), create=create, secrets_key=secrets_key)


def version() -> str:
    """The release of brokerctl (``--version``; an API's version route)."""
    from .. import __version__

    return __version__
