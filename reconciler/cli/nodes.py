"""The node commands: cordon, uncordon, drain.

Registered by ``app``. Each parses its arguments, calls its verb in ``ops.nodes`` and prints what
changed; ``drain`` prints its progress as it waits.
"""

from __future__ import annotations

import typer

from .common import follow, open_store, remote


def cordon(node: str = typer.Argument(..., help="Node name.")) -> None:
    """Mark a Node unschedulable: no new tasks go there; running ones stay."""
    from ..ops import nodes
    from ..ops.refs import node_name

    name = node_name(node)
    changed = server.cordon(name, True) if (server := remote()) is not None else nodes.cordon(open_store(), name)
    typer.echo(f"node/{name} {'cordoned' if changed else 'already cordoned'}")


def uncordon(node: str = typer.Argument(..., help="Node name.")) -> None:
    """Make a Node schedulable again (also ends a drain)."""
    from ..ops import nodes
    from ..ops.refs import node_name

    name = node_name(node)
    changed = server.cordon(name, False) if (server := remote()) is not None else nodes.uncordon(open_store(), name)
    typer.echo(f"node/{name} {'uncordoned' if changed else 'already schedulable'}")


def drain(
    node: str = typer.Argument(..., help="Node name."),
    timeout: float = typer.Option(300.0, "--timeout", help="Job tasks may finish for this long, then are rescheduled."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until no active task and none of their containers is left running on the node."),
) -> None:
    """Cordon a Node and move its tasks off: Service replicas are replaced elsewhere before the
    originals stop; Job tasks may finish until --timeout, then are rescheduled (no retry spent)."""
    from ..ops import nodes
    from ..ops.refs import node_name

    name = node_name(node)
    if (server := remote()) is not None:
        follow(server.drain(name, timeout, wait))
    else:
        follow(nodes.drain(open_store(), name, timeout, wait))
