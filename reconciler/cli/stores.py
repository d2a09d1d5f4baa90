"""The `store` group: `store migrate --from FILE --to URL` (move a store to PostgreSQL).

Registered by ``app`` as a group. Parses the two stores, calls ``ops.stores.migrate``, prints
what was copied and what to run next.
"""

from __future__ import annotations

import typer

store_app = typer.Typer(help="Whole-store operations: move a store to another backend.", no_args_is_help=True)


@store_app.command("migrate")
def migrate(
    source: str = typer.Option(..., "--from", help="The store to copy: a SQLite file (path or sqlite:///PATH)."),
    target: str = typer.Option(..., "--to", help="An empty PostgreSQL database: postgresql://USER@HOST:PORT/DB."),
) -> None:
    """Copy every table of a store into an empty database, keeping the store id.

    Stop the controller first. Running containers stay the store's: a controller on the new store
    adopts them without restarting them, and one on the old store refuses to start. Row counts are
    verified; on any error nothing is copied.
    """
    from ..ops import stores

    copied = stores.migrate(source, target)
    counts = ", ".join(f"{table} {n}" for table, n in copied.rows.items())
    typer.echo(f"copied store {copied.store_id} from {copied.source} to {copied.target} (rows: {counts}; "
               "counts verified)")
    typer.echo(f"next: `brokerctl --db {copied.target} controller`")
