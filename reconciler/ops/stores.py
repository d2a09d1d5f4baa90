"""Whole-store verbs: move a store to another backend (`brokerctl store migrate`).

Called by the CLI's ``store`` group (``cli/stores.py``). The copy itself is the store's
(``store.transfer``); this verb names the two stores and hands back what was copied.
"""

from __future__ import annotations

from pathlib import Path


def migrate(source: str | Path, target: str | Path):
    """Copy every table of the store at ``source`` (a SQLite file, typically) into the empty store
    database ``target`` (a PostgreSQL URL); returns a ``store.transfer.Copied`` (store id, row
    counts per table, verified). Raises StoreError when the target is not empty, the source has a
    live controller, or either cannot be opened."""
    from ..store.transfer import copy_store

    return copy_store(source, target)
