"""The resource commands: apply, get, describe, delete, diff.

Registered by ``app``. Each parses its arguments, calls its verb in ``ops.resources`` and renders
the result: tables from ``tables``, ``-o json|yaml`` from the objects of ``views``. ``-n`` names the
namespace (``get -A``: every namespace, with a NAMESPACE column).
"""

from __future__ import annotations

import sys
import time
from typing import Optional

import typer

from ..errors import UsageError
from .common import MANIFEST_NAMESPACE_HELP, check_output, follow, namespace, namespace_option, open_store, warn

EVENTS_LIMIT = 500  # `get events` shows the last this many unless --limit says otherwise


def apply(
    files: list[str] = typer.Option(..., "-f", "--filename", help="File, directory (its *.yaml|*.yml|*.json) or - for stdin. Repeatable."),
    wait: bool = typer.Option(False, "--wait", help="Wait until the applied Jobs finish; exit 1 if any failed."),
    timeout: float = typer.Option(0, "--timeout", help="With --wait: give up after this many seconds (0: no limit)."),
    namespace_: str = namespace_option(MANIFEST_NAMESPACE_HELP),
) -> None:
    """Create or update resources from manifests (all documents or none)."""
    from ..ops import resources, tasks

    loaded = resources.read_manifests(files, sys.stdin, namespace(namespace_), applying=True)
    store = open_store(create=True)
    applied = resources.apply(store, loaded)
    for ref, outcome in applied.results:
        typer.echo(f"{ref} {outcome}")
    for text in applied.warnings:
        warn(text)
    if wait:
        follow(tasks.wait_jobs(store, applied.jobs, timeout))


def get(
    kind: str = typer.Argument(..., help="nodes, namespaces, jobs, services, secrets, tasks or events"),
    name: Optional[str] = typer.Argument(None),
    output: str = typer.Option("table", "-o", "--output", help="table, wide, json or yaml"),
    selector: list[str] = typer.Option([], "-l", "--selector", help="Label filter key=value (repeatable)."),
    for_: Optional[str] = typer.Option(None, "--for", help="With `get events`: only this KIND/NAME."),
    limit: int = typer.Option(EVENTS_LIMIT, "--limit", min=0,
                              help=f"With `get events`: show the last N (default {EVENTS_LIMIT}; 0: all)."),
    namespace_: str = namespace_option("List this namespace's jobs, services, secrets, tasks or events "
                                       "(default: default)."),
    all_namespaces: bool = typer.Option(False, "-A", "--all-namespaces",
                                        help="List every namespace's, with a NAMESPACE column."),
) -> None:
    """List nodes, namespaces, jobs, services, secrets (values shown as their sizes), tasks or events."""
    from ..ops.refs import parse_kind, parse_ref, parse_selector

    check_output(output)
    ns = None if all_namespaces else namespace(namespace_)
    if all_namespaces and name and kind.strip().lower() not in ("task", "tasks"):
        raise UsageError(f"get {kind} {name}: a name is looked up in one namespace; use -n NAMESPACE, not -A")
    store = open_store()
    want = parse_selector(selector)
    what = kind.strip().lower()
    if what in ("event", "events"):
        _show_events(store, parse_ref(for_) if for_ else None, output, limit, ns)
    elif what in ("task", "tasks"):
        _show_tasks(store, name, want, output, ns)
    else:
        _show_resources(store, parse_kind(kind), name, want, output, ns)


def _show_resources(store, kind, name: str | None, want: dict, output: str, ns: str | None) -> None:
    from .. import views
    from ..ops import resources
    from . import tables

    objects = resources.get_resources(store, kind, name, want, ns)
    if output in ("json", "yaml"):
        typer.echo(views.dump(objects, output), nl=False)
    else:
        tables.print_table(*tables.resource_rows(kind.value, objects, output == "wide", time.time(),
                                                 namespaces=ns is None and kind.namespaced))


def _show_tasks(store, task_id: str | None, want: dict, output: str, ns: str | None) -> None:
    from .. import views
    from ..ops import resources
    from . import tables

    tasks = resources.get_tasks(store, task_id, want, ns)
    if output in ("json", "yaml"):
        with resources.bulk():
            text = views.dump(resources.task_objects(tasks), output)
        typer.echo(text, nl=False)
    else:
        tables.print_table(*tables.task_rows(tasks, output == "wide", time.time(), namespaces=ns is None))


def _show_events(store, ref, output: str, limit: int, ns: str | None) -> None:
    from .. import views
    from ..ops import resources
    from . import tables

    events = resources.get_events(store, ref, limit, ns)
    if events.older:
        typer.echo(f"showing the last {limit} events; --limit N for more (0: all)", err=True)
    if output in ("json", "yaml"):
        typer.echo(views.dump([views.event_object(e) for e in events.rows], output), nl=False)
    else:
        tables.print_table(*tables.event_rows(events.rows, namespaces=ns is None))


def describe(kind: str = typer.Argument(...), name: str = typer.Argument(...),
             namespace_: str = namespace_option()) -> None:
    """Spec, status, tasks, recent events and why tasks are Pending; a namespace's use and contents."""
    import yaml

    from ..kinds import object_ref
    from ..ops import resources
    from ..ops.refs import parse_kind
    from . import tables

    store = open_store()
    found = resources.describe(store, parse_kind(kind), name, namespace(namespace_))
    obj = found.object
    typer.echo(f"{found.record.kind.value}: {found.record.name}")
    typer.echo(yaml.safe_dump({"metadata": obj["metadata"], "spec": obj["spec"], "status": obj["status"]},
                              sort_keys=False).rstrip())
    if found.record.kind.value == "Namespace":
        typer.echo("contains:" + ("" if found.contents else " nothing"))
        for r in found.contents:
            typer.echo(f"  {object_ref(r['kind'], '', r['name'])}" + (" (deleting)" if r["deleted_at"] else ""))
    if found.tasks:
        typer.echo("tasks:")
        tables.print_table(*tables.task_rows(found.tasks, True, time.time()))
    for t in found.pending:
        typer.echo(f"pending: {t.id}: {t.reason}: {t.message}")
    if found.events:
        typer.echo("events:")
        tables.print_table(*tables.event_rows(found.events, objects=False))


def delete(
    kind: Optional[str] = typer.Argument(None),
    name: Optional[str] = typer.Argument(None),
    files: list[str] = typer.Option([], "-f", "--filename", help="Delete the resources these manifests define."),
    force: bool = typer.Option(False, "--force", help="Remove the record now: a Node even though tasks are active "
                               "on it; a Job or Service without waiting for its containers to stop (they are no "
                               "longer tracked: a running controller removes them as orphans, 10 s grace)."),
    namespace_: str = namespace_option("Namespace of the Job or Service named, or of the documents of -f that name "
                                       "none (default: default)."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Delete a namespace with everything in it without asking."),
) -> None:
    """Delete resources; the controller stops and removes their containers, then the record.
    Deleting again while they stop says how many are left and changes nothing. A namespace goes with
    everything in it: without --yes that is asked on a terminal, and refused otherwise."""
    from ..kinds import object_ref
    from ..ops import resources

    targets = resources.delete_targets(kind, name, files, sys.stdin, namespace(namespace_))
    store = open_store()
    if not yes and "-" not in files and sys.stdin.isatty():
        yes = _confirm_namespaces(store, targets)
    for (k, ns, n), (_, _, outcome) in zip(targets, resources.delete(store, targets, force=force, yes=yes)):
        typer.echo(f"{object_ref(k, ns, n)} {outcome}")


def _confirm_namespaces(store, targets: list) -> bool:
    """On a terminal: ask before deleting a namespace that holds resources (exit 1 if the answer is no)."""
    from ..kinds import Kind
    from ..ops import resources

    for kind, _, name in targets:
        if kind is Kind.NAMESPACE and (held := resources.namespace_contents(store, name, besides=targets)):
            if not typer.confirm(f"namespace {name} holds {held}; delete it and everything in it?", default=False):
                typer.echo("nothing deleted", err=True)
                raise typer.Exit(1)
    return True


def diff(
    files: list[str] = typer.Option(..., "-f", "--filename", help="File, directory or - (stdin). Repeatable."),
    namespace_: str = namespace_option(MANIFEST_NAMESPACE_HELP),
) -> None:
    """What `apply -f` (or, for a directory, `sync`) would change: exit 0 if nothing, 1 if something, 2 on error."""
    from ..ops import resources

    inputs = resources.read_diff_inputs(files, sys.stdin, namespace(namespace_))  # all read before the store opens
    changes = resources.diff(open_store(), inputs)
    lines = []
    for change in changes:
        lines += [f"{change.ref} {change.outcome}"] + [f"  {c}" for c in change.fields]
    typer.echo("\n".join(lines) if lines else "no changes")
    if lines:
        raise typer.Exit(1)
