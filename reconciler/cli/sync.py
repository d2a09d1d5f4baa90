"""The GitOps command: `sync DIR` (apply a directory with prune) and `sync status`.

Registered by ``app``. Calls ``ops.sync`` and prints its report; through a server (``remote``), the
directory is read here and sent, and its source is its absolute path here (``api/sync.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import MANIFEST_NAMESPACE_HELP, namespace, namespace_option, open_store, remote


def sync(
    target: str = typer.Argument(..., help="A directory of manifests, or `status`."),
    directory: Optional[str] = typer.Argument(None, help="With `status`: only this directory."),
    allow_mass_prune: bool = typer.Option(False, "--allow-mass-prune",
                                          help="Allow pruning more than half (or all) of what the directory owns."),
    namespace_: str = namespace_option(MANIFEST_NAMESPACE_HELP),
) -> None:
    """Apply a directory with prune (one transaction), or show `sync status`.

    Resources the directory created and no longer defines are deleted; resources applied by hand
    or from another directory are never touched. An invalid file is reported and what it defined
    keeps its last good state; the rest still syncs (exit 1).
    """
    from ..ops.checkout import source_of

    server = remote()
    if target == "status" and not Path(target).is_dir():
        source = source_of(directory) if directory else None
        if server is not None:
            _show_status(server.sync_status(source))
        else:
            from ..ops import sync as gitops

            _show_status(gitops.status(open_store(), source))
        return
    source = source_of(target)  # a usage error before a store is created for nothing
    if server is not None:
        done = server.sync(source, allow_mass_prune, namespace(namespace_))
        lines, failed = done["lines"], done["failed"]
    else:
        from ..ops import sync as gitops

        report = gitops.sync(open_store(create=True), target, allow_mass_prune, namespace=namespace(namespace_))
        lines, failed = gitops.summary(report), bool(report["refused"] or report["problems"])
    typer.echo("\n".join(lines) if lines else f"{source}: in sync, nothing to change")
    if failed:
        raise typer.Exit(1)


def _show_status(syncs: list[dict]) -> None:
    from . import tables

    for s in syncs:
        typer.echo(f"directory:  {s['source']}")
        typer.echo(f"last sync:  {s['syncedAt']} ({tables.age(tables.epoch(s['syncedAt']))} ago)"
                   + (f"; REFUSED: {s['refused']}" if s["refused"] else ""))
        typer.echo(f"commit:     {s['commit'] or '- (not in a git checkout, or not committed there)'}")
        typer.echo(f"resources:  {s['resources']} owned")
        tables.print_table(*tables.sync_file_rows(s["files"]))
