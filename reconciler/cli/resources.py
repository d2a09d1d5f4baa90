"""The resource commands: apply, get, describe, delete, diff.

Registered by ``app``. Each parses its arguments, calls its verb in ``ops.resources`` and renders
the result: tables from ``tables``, ``-o json|yaml`` from the objects of ``views``. ``-n`` names the
namespace (``get -A``: every namespace, with a NAMESPACE column).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from ..errors import BrokerError, Conflict, Forbidden, ManifestError, UsageError
from .common import (
    MANIFEST_NAMESPACE_HELP,
    OUTPUT_FORMATS,
    check_output,
    follow,
    namespace,
    namespace_option,
    open_store,
    remote,
    warn,
)
from .entry import show_applied


def apply(
    files: list[str] = typer.Option(..., "-f", "--filename", help="File, directory (its *.yaml|*.yml|*.json) or - for stdin. Repeatable."),
    wait: bool = typer.Option(False, "--wait", help="Wait until the applied Jobs finish; exit 1 if any failed."),
    timeout: float = typer.Option(0, "--timeout", help="With --wait: give up after this many seconds (0: no limit)."),
    namespace_: str = namespace_option(MANIFEST_NAMESPACE_HELP),
) -> None:
    """Create or update resources from manifests (all documents or none)."""
    ns = namespace(namespace_)
    if (server := remote()) is not None:  # the server reads the files' text and validates it
        applied = server.apply(files, sys.stdin, ns)
        show_applied(applied)
        if wait:
            jobs = [(item["namespace"], item["name"]) for item in applied["results"] if item["kind"] == "Job"]
            follow(server.wait_jobs(jobs, timeout))
        return
    from ..ops import resources, tasks

    loaded = resources.read_manifests(files, sys.stdin, ns, applying=True)
    store = open_store(create=True)
    applied = resources.apply(store, loaded)
    for ref, outcome in applied.results:
        typer.echo(f"{ref} {outcome}")
    for text in applied.warnings:
        warn(text)
    if wait:
        follow(tasks.wait_jobs(store, applied.jobs, timeout))


def get(
    kind: str = typer.Argument(..., help="nodes (no), namespaces (ns), jobs, services (svc), secrets, tasks, events "
                               "(ev), or all (jobs, services and tasks); several separated by commas: jobs,svc"),
    name: Optional[str] = typer.Argument(None),
    output: str = typer.Option("table", "-o", "--output", help="table, wide, json, yaml or name (kind/name)"),
    selector: list[str] = typer.Option([], "-l", "--selector", help="Label filter key=value (repeatable)."),
    for_: Optional[str] = typer.Option(None, "--for", help="With `get events`: only this KIND/NAME."),
    sort_by: Optional[str] = typer.Option(None, "--sort-by", help="Sort by a field of -o json (.metadata.name, "
                                          ".status.phase) or a column (PHASE; AGE: oldest first)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=0,
                                        help="Show the first N (after --sort-by); events: the last N "
                                        "(default 500). 0: all."),
    phase: list[str] = typer.Option([], "--phase", help="With `get tasks`: only these phases (Running,Pending; "
                                    "repeatable)."),
    owner: Optional[str] = typer.Option(None, "--owner", help="With `get tasks`: only the tasks of this job/NAME "
                                        "or service/NAME."),
    watch: bool = typer.Option(False, "-w", "--watch", help="After the listing, print each row again whenever it "
                               "changes, until Ctrl-C (or SIGTERM)."),
    namespace_: str = namespace_option("List this namespace's jobs, services, secrets, tasks or events "
                                       "(default: default)."),
    all_namespaces: bool = typer.Option(False, "-A", "--all-namespaces",
                                        help="List every namespace's, with a NAMESPACE column."),
) -> None:
    """List nodes, namespaces, jobs, services, secrets (values shown as their sizes), tasks or events (several
    kinds at once, or all)."""
    from ..ops import listing
    from ..ops.refs import (
        parse_listed_kinds,
        parse_owner,
        parse_phases,
        parse_ref,
        parse_selector,
    )

    check_output(output, OUTPUT_FORMATS + ("name",))
    kinds = parse_listed_kinds(kind)
    ns = None if all_namespaces else namespace(namespace_)
    filters = listing.Filters(parse_selector(selector), parse_phases(phase), parse_owner(owner) if owner else None,
                              parse_ref(for_) if for_ else None)
    listing.check(kinds, name, filters, ns)
    if output == "name" and listing.EVENTS in kinds:
        raise UsageError("events have no names: use -o table, json or yaml")
    if (server := remote()) is not None:
        found = server.listing(kinds, name, filters, ns, sort_by, limit)
        _show_listings(found, output, ns, several=len(kinds) > 1)
        if watch:
            _watch(server.watch(kinds, name, filters, ns, found), output, ns, several=len(kinds) > 1)
        return
    store = open_store()
    found = listing.get(store, kinds, name, filters, ns, sort_by, limit)
    _show_listings(found, output, ns, several=len(kinds) > 1)
    if watch:
        from ..ops.watch import changes

        _watch(changes(store, kinds, name, filters, ns), output, ns, several=len(kinds) > 1)


class _Stopped(Exception):
    """SIGTERM during `get -w`: end the watch as Ctrl-C does."""


def _watch(changes, output: str, ns: str | None, several: bool) -> None:
    """`get -w`: print each changed item of ``changes`` (``ops.watch.changes`` of the store, or a server's
    watch) as it changes (a row under the table, a JSON object a line, a YAML document, a name) until
    Ctrl-C or SIGTERM, then exit 0."""
    import json
    import signal

    from .. import views
    from ..ops import listing

    def stop(signum, frame):
        raise _Stopped

    signal.signal(signal.SIGTERM, stop)
    try:
        for found in changes:
            for kind in dict.fromkeys(change.kind for change in found):
                items = [c.item for c in found if c.kind == kind]
                one = listing.Listing(kind, items, len(items))
                if output == "name":
                    typer.echo("".join(f"{listing.item_name(kind, item)}\n" for item in items), nl=False)
                elif output == "json":
                    typer.echo("".join(f"{json.dumps(obj)}\n" for obj in _objects(one)), nl=False)
                elif output == "yaml":
                    typer.echo("".join(f"---\n{views.dump(obj, 'yaml')}" for obj in _objects(one)), nl=False)
                else:
                    _print_table(one, output == "wide", ns, prefix=several, header=False)
            sys.stdout.flush()
    except (KeyboardInterrupt, _Stopped):
        return


def _show_listings(found: list, output: str, ns: str | None, several: bool) -> None:
    from .. import views
    from ..ops import listing

    for one in found:
        if one.older:
            typer.echo(f"showing the last {len(one.items)} events; --limit N for more (0: all)", err=True)
        elif one.total > len(one.items):
            typer.echo(f"showing the first {len(one.items)} of {one.total} {one.kind.lower()}s; --limit 0 for all",
                       err=True)
    if output == "name":
        typer.echo("".join(f"{listing.item_name(one.kind, item)}\n" for one in found for item in one.items), nl=False)
    elif output in ("json", "yaml"):
        with _bulk():
            objects = [obj for one in found for obj in _objects(one)]
            typer.echo(views.dump(objects, output), nl=False)
    elif several:
        shown = [one for one in found if one.items]
        for i, one in enumerate(shown):
            if i:
                typer.echo()
            _print_table(one, output == "wide", ns, prefix=True)
        if not shown:
            where = "in any namespace" if ns is None else f"in namespace {ns}"
            typer.echo(f"No resources found {where}.", err=True)
    else:
        _print_table(found[0], output == "wide", ns)


def _bulk():
    """``ops.resources.bulk`` (the GC paused while many objects are built); a remote command's objects were
    built by the server, and its store module is not imported for them."""
    import contextlib

    if remote() is not None:
        return contextlib.nullcontext()
    from ..ops import resources

    return resources.bulk()


def _objects(one) -> list[dict]:
    """The JSON objects of a listing's items, as `-o json` prints them."""
    from .. import views
    from ..ops import listing

    if one.kind == listing.TASKS:
        return [views.task_object(t) for t in one.items]
    if one.kind == listing.EVENTS:
        return [views.event_object(e) for e in one.items]
    return one.items


def _print_table(one, wide: bool, ns: str | None, prefix: bool = False, header: bool = True) -> None:
    from ..ops import listing
    from . import tables

    columns, rows = table_rows(one, wide, ns)
    if prefix and one.kind != listing.EVENTS:  # several kinds: name each row's kind, as kubectl does
        at = 1 if ns is None and one.kind in listing.NAMESPACED else 0
        for row in rows:
            row[at] = f"{one.kind.lower()}/{row[at]}"
    tables.print_table(columns, rows, header=header)


def table_rows(one, wide: bool, ns: str | None) -> tuple[list[str], list[list]]:
    """Columns and rows of one listing's table."""
    from ..kinds import Kind
    from ..ops import listing
    from . import tables

    now = time.time()
    if one.kind == listing.TASKS:
        return tables.task_rows(one.items, wide, now, namespaces=ns is None)
    if one.kind == listing.EVENTS:
        return tables.event_rows(one.items, namespaces=ns is None)
    return tables.resource_rows(one.kind, one.items, wide, now, namespaces=ns is None and Kind(one.kind).namespaced)


def describe(kind: str = typer.Argument(...), name: str = typer.Argument(...),
             namespace_: str = namespace_option()) -> None:
    """Spec, status, tasks, recent events and why tasks are Pending; a namespace's use and contents."""
    from ..ops.refs import parse_kind

    k, ns = parse_kind(kind), namespace(namespace_)
    if (server := remote()) is not None:
        found = server.describe(k, name, ns)
        _show_description(found["kind"], found["object"], found["tasks"], found["events"], found["contents"])
        return
    from ..ops import resources

    found = resources.describe(open_store(), k, name, ns)
    _show_description(found.record.kind.value, found.object, found.tasks, found.events,
                      [{"kind": r["kind"], "name": r["name"], "deleting": bool(r["deleted_at"])}
                       for r in found.contents])


def _show_description(kind: str, obj: dict, tasks: list, events: list[dict], contents: list[dict]) -> None:
    """`describe`'s text: the object as YAML, a namespace's contents, the tasks (``TaskRecord``s) as a table,
    why those Pending wait, the events (store rows) as a table."""
    import yaml

    from ..kinds import TaskPhase, object_ref
    from . import tables

    typer.echo(f"{kind}: {obj['metadata']['name']}")
    typer.echo(yaml.safe_dump({"metadata": obj["metadata"], "spec": obj["spec"], "status": obj["status"]},
                              sort_keys=False).rstrip())
    if kind == "Namespace":
        typer.echo("contains:" + ("" if contents else " nothing"))
        for r in contents:
            typer.echo(f"  {object_ref(r['kind'], '', r['name'])}" + (" (deleting)" if r["deleting"] else ""))
    if tasks:
        typer.echo("tasks:")
        tables.print_table(*tables.task_rows(tasks, True, time.time()))
    for t in tasks:
        if t.phase is TaskPhase.PENDING and t.message:
            typer.echo(f"pending: {t.id}: {t.reason}: {t.message}")
    if events:
        typer.echo("events:")
        tables.print_table(*tables.event_rows(events, objects=False))


def delete(
    kind: Optional[str] = typer.Argument(None, help="node (no), namespace (ns), job, service (svc) or secret; with -l or "
                                         "--all several, jobs,svc, or all (jobs and services)"),
    name: Optional[str] = typer.Argument(None),
    files: list[str] = typer.Option([], "-f", "--filename", help="Delete the resources these manifests define."),
    selector: list[str] = typer.Option([], "-l", "--selector", help="Delete those of KIND whose labels match "
                                       "key=value (repeatable)."),
    all_: bool = typer.Option(False, "--all", help="Delete every one of KIND (in the namespace; -A: in all)."),
    force: bool = typer.Option(False, "--force", help="Remove the record now: a Node even though tasks are active "
                               "on it; a Job or Service without waiting for its containers to stop (they are no "
                               "longer tracked: a running controller removes them as orphans, 10 s grace)."),
    namespace_: str = namespace_option("Namespace of the Job or Service named, or of the documents of -f that name "
                                       "none (default: default)."),
    all_namespaces: bool = typer.Option(False, "-A", "--all-namespaces",
                                        help="With -l or --all: the Jobs and Services of every namespace."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Delete a namespace with everything in it without asking."),
) -> None:
    """Delete resources; the controller stops and removes their containers, then the record.
    Deleting again while they stop says how many are left and changes nothing. A namespace goes with
    everything in it: without --yes that is asked on a terminal, and refused otherwise."""
    from ..kinds import object_ref

    ns = namespace(namespace_)
    if (server := remote()) is not None:
        _delete_remote(server, kind, name, files, selector, all_, force, ns, all_namespaces, yes)
        return
    from ..ops import resources

    if selector or all_:
        targets, store = _selected(kind, name, files, selector, all_, None if all_namespaces else ns)
        if not targets:
            where = "in any namespace" if all_namespaces else f"in namespace {ns}"
            typer.echo(f"No resources found {where}.", err=True)
            return
    else:
        if all_namespaces:
            raise UsageError("-A deletes by -l or --all: `brokerctl delete jobs --all -A`")
        targets = resources.delete_targets(kind, name, files, sys.stdin, ns)
        store = open_store()
    if not yes and "-" not in files and sys.stdin.isatty():
        yes = _confirm_namespaces(store, targets)
    for (k, ns, n), (_, _, outcome) in zip(targets, resources.delete(store, targets, force=force, yes=yes)):
        typer.echo(f"{object_ref(k, ns, n)} {outcome}")


def _delete_remote(server, kind, name, files, selector, all_: bool, force: bool, ns: str, all_namespaces: bool,
                   yes: bool) -> None:
    """`delete` through a server. A namespace that holds anything needs --yes (nothing is asked: the
    server's refusal says what it holds)."""
    from ..kinds import object_ref, scope
    from ..ops.refs import parse_deleted_kinds, parse_kind, parse_selector

    if selector or all_:
        flag = "--all" if all_ else "-l"
        if files or name or not kind:
            raise UsageError(f"{flag} deletes every one of a kind (that matches): `brokerctl delete jobs {flag}"
                             f"{'' if all_ else ' key=value'}`, without a name or -f")
        targets = server.selected_targets(parse_deleted_kinds(kind), parse_selector(selector),
                                          None if all_namespaces else ns)
        if not targets:
            where = "in any namespace" if all_namespaces else f"in namespace {ns}"
            typer.echo(f"No resources found {where}.", err=True)
            return
    elif all_namespaces:
        raise UsageError("-A deletes by -l or --all: `brokerctl delete jobs --all -A`")
    elif files:
        for item in server.delete_files(files, sys.stdin, ns, force, yes):
            typer.echo(f"{item['ref']} {item['outcome']}")
        return
    elif kind and name:
        k = parse_kind(kind)
        targets = [(k, scope(k, ns), name)]
    else:
        raise UsageError("name what to delete: `brokerctl delete job NAME` or `brokerctl delete -f FILE`")
    for (k, tns, n), (_, _, outcome) in zip(targets, server.delete(targets, force=force, yes=yes)):
        typer.echo(f"{object_ref(k, tns, n)} {outcome}")


def _selected(kind, name, files, selector, all_: bool, ns: str | None):
    """`delete KINDS -l key=value` / `--all`: what they name, and the store."""
    from ..ops import resources
    from ..ops.refs import parse_deleted_kinds, parse_selector

    flag = "--all" if all_ else "-l"
    if files or name or not kind:
        raise UsageError(f"{flag} deletes every one of a kind (that matches): `brokerctl delete jobs {flag}"
                         f"{'' if all_ else ' key=value'}`, without a name or -f")
    kinds, want = parse_deleted_kinds(kind), parse_selector(selector)
    store = open_store()
    return resources.selected_targets(store, kinds, want, ns), store


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


def edit(
    target: str = typer.Argument(..., help="KIND/NAME, e.g. job/hello (or KIND NAME)"),
    name: Optional[str] = typer.Argument(None, hidden=True),
    namespace_: str = namespace_option(),
) -> None:
    """Open a resource in $EDITOR as `get -o yaml` shows it and apply it when saved. A file that cannot be
    applied is reopened with the error on top; an unchanged or empty file changes nothing; a resource
    changed by someone else meanwhile is reopened at its current version."""
    from ..ops import edit as editing
    from ..ops.refs import parse_kind, parse_ref

    kind, name = (parse_kind(target), name) if name else parse_ref(target)
    ns = namespace(namespace_)
    if (server := remote()) is not None:
        def document() -> str:
            return server.edit_document(kind, name, ns)

        def apply(original: str, saved: str, path: str):
            return server.apply_edit(kind, name, ns, original, saved, path)
    else:
        store = open_store()

        def document() -> str:
            return editing.document(store, kind, name, ns)

        def apply(original: str, saved: str, path: str):
            return editing.apply_edit(store, kind, name, ns, original, saved, path)

    original = text = document()
    while True:
        saved, path = _run_editor(text, kind.value.lower(), name)
        try:
            edited = apply(original, saved, path)
        except (ManifestError, Conflict, Forbidden, UsageError) as exc:
            if saved == text:  # reopened and saved as it was: the person gave up
                raise BrokerError(f"{exc}\nedit cancelled: the file still has this error; nothing was applied "
                                  f"(your changes are kept in {path})") from None
            current = document() if isinstance(exc, Conflict) else original
            if editing.generation(current) != editing.generation(original):  # changed meanwhile: edit it anew
                original = current
                text = editing.with_error(current, f"{exc}\n(your version is kept in {path})")
            else:
                text = editing.with_error(saved, str(exc))
            continue
        Path(path).unlink()
        if edited.outcome is None:
            typer.echo(edited.message)
        else:
            typer.echo(f"{edited.ref} {'edited' if edited.outcome == 'configured' else edited.outcome}")
        return


def _run_editor(text: str, kind: str, name: str) -> tuple[str, str]:
    """Write ``text`` to a private temporary file, run ``$BROKER_EDITOR`` (else ``$EDITOR``, else vi) on
    it, and return what was saved and the file's path (kept until the edit is applied)."""
    import os
    import shlex
    import subprocess
    import tempfile

    fd, path = tempfile.mkstemp(prefix=f"brokerctl-edit-{kind}-{name}-", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    editor = shlex.split(os.environ.get("BROKER_EDITOR") or os.environ.get("EDITOR") or "vi")
    try:
        code = subprocess.call([*editor, path])
    except OSError as exc:
        raise UsageError(f"cannot run the editor {editor[0]!r} ({exc}); set $EDITOR") from None
    if code != 0:
        raise BrokerError(f"the editor {editor[0]!r} exited {code}; nothing was applied (the file is {path})")
    return Path(path).read_text(), path


def diff(
    files: list[str] = typer.Option(..., "-f", "--filename", help="File, directory or - (stdin). Repeatable."),
    namespace_: str = namespace_option(MANIFEST_NAMESPACE_HELP),
) -> None:
    """What `apply -f` (or, for a directory, `sync`) would change: exit 0 if nothing, 1 if something, 2 on error."""
    if (server := remote()) is not None:
        changes = [(c["ref"], c["outcome"], c["fields"]) for c in server.diff(files, sys.stdin, namespace(namespace_))]
    else:
        from ..ops import diff as diffs

        inputs = diffs.read_diff_inputs(files, sys.stdin, namespace(namespace_))  # all read before the store opens
        changes = [(c.ref, c.outcome, c.fields) for c in diffs.diff(open_store(), inputs)]
    lines = []
    for ref, outcome, fields in changes:
        lines += [f"{ref} {outcome}"] + [f"  {c}" for c in fields]
    typer.echo("\n".join(lines) if lines else "no changes")
    if lines:
        raise typer.Exit(1)
