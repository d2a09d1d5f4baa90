"""The Service commands: scale, and the `rollout` group (status, history, undo).

``scale`` is registered by ``app``, which also adds ``rollout_app`` as the `rollout` group. Each
parses its arguments, calls its verb in ``ops.rollout`` and renders the result.
"""

from __future__ import annotations

from typing import Optional

import typer

from ..errors import UsageError
from .common import follow, namespace, namespace_option, open_store, remote

rollout_app = typer.Typer(help="Rolling updates of a Service: status, history, undo.", no_args_is_help=True)


def scale(
    kind: str = typer.Argument(..., help="service (or service/NAME)"),
    name: Optional[str] = typer.Argument(None),
    replicas: int = typer.Option(..., "--replicas", min=0, help="How many replicas to keep running."),
    namespace_: str = namespace_option(),
) -> None:
    """Set a Service's replica count (0 stops every replica and keeps the Service)."""
    from ..kinds import Kind, object_ref
    from ..ops import rollout
    from ..ops.refs import parse_kind, parse_ref

    if name is None and "/" in kind:
        k, name = parse_ref(kind)
    elif name is None:
        raise UsageError("name the service: `brokerctl scale service NAME --replicas N`")
    else:
        k = parse_kind(kind)
    if k is not Kind.SERVICE:
        raise UsageError("only services scale: `brokerctl scale service NAME --replicas N`")
    ns = namespace(namespace_)
    server = remote()
    if server is not None:
        old, new = server.scale(name, replicas, ns)
    else:
        old, new = rollout.scale(open_store(), name, replicas, ns)
    typer.echo(f"{object_ref(Kind.SERVICE, ns, name)} scaled"
               + (f" from {old} to {new}" if old != new else f" (already {new})"))


@rollout_app.command("status")
def status(
    target: str = typer.Argument(..., help="service/NAME"),
    watch: bool = typer.Option(True, "--watch/--no-watch", help="Wait until the rollout completes or pauses."),
    timeout: float = typer.Option(0, "--timeout", help="With --watch: give up after this many seconds (0: no limit)."),
    namespace_: str = namespace_option(),
) -> None:
    """Exit 0 once every replica runs the current template; 1 if the rollout paused or rolled back."""
    from ..ops import rollout
    from ..ops.refs import service_name

    name, ns = service_name(target), namespace(namespace_)
    server = remote()
    events = (server.rollout_status(name, watch, timeout, ns) if server is not None
              else rollout.status(open_store(), name, watch, timeout, namespace=ns))
    if not follow(events):
        raise typer.Exit(1)


@rollout_app.command("history")
def history(
    target: str = typer.Argument(..., help="service/NAME"),
    revision: Optional[int] = typer.Option(None, "--revision", help="Show this revision's template."),
    output: str = typer.Option("table", "-o", "--output", help="table, json or yaml"),
    namespace_: str = namespace_option(),
) -> None:
    """Template revisions of a Service, oldest first; the current one is marked."""
    from .. import views
    from ..ops import rollout
    from ..ops.refs import service_name
    from . import tables

    name, ns = service_name(target), namespace(namespace_)
    if (server := remote()) is not None:
        objects = server.history(name, revision, ns)
    else:
        objects = rollout.history(open_store(), name, revision, ns).objects
    if output in ("json", "yaml"):
        typer.echo(views.dump(objects, output), nl=False)
    elif revision is not None:
        typer.echo(views.dump(objects, "yaml"), nl=False)
    else:
        tables.print_table(*tables.revision_rows(objects))


@rollout_app.command("undo")
def undo(
    target: str = typer.Argument(..., help="service/NAME"),
    to_revision: Optional[int] = typer.Option(None, "--to-revision", help="Revision to return to (default: the previous)."),
    namespace_: str = namespace_option(),
) -> None:
    """Make an earlier template the desired one again; the controller rolls to it."""
    from ..kinds import Kind, object_ref
    from ..ops import rollout
    from ..ops.refs import service_name

    name = service_name(target)
    ns = namespace(namespace_)
    server = remote()
    if server is not None:
        rev = server.undo(name, to_revision, ns)
    else:
        rev = rollout.undo(open_store(), name, to_revision, ns)
    typer.echo(f"{object_ref(Kind.SERVICE, ns, name)} rolled back to template {rev['hash']} "
               f"(now revision {rev['revision']})")
