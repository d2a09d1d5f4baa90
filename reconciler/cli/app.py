"""``brokerctl``: the command line. Each command computes data and hands it to ``render``.

Entry point ``main`` (console script). Heavy modules (pydantic models, the store, the Docker
SDK) are imported inside commands so that ``brokerctl --help`` stays fast. Every
``BrokerError`` is caught once, in ``main``: one red line on stderr and a non-zero exit.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from ..errors import BrokerError, UsageError

app = typer.Typer(
    name="brokerctl",
    help="Declarative container broker for plain Docker hosts: apply Nodes, Jobs and Services; "
    "a controller keeps the hosts in line.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

OUTPUT_FORMATS = ("table", "wide", "json", "yaml")
EVENTS_LIMIT = 500  # `get events` shows the last this many unless --limit says otherwise
_db_option: Optional[Path] = None


@app.callback()
def _options(
    db: Optional[Path] = typer.Option(None, "--db", help="Store path (default: $BROKER_DB, else the per-user state file).",
                                      envvar=None),
) -> None:
    global _db_option
    _db_option = db


def _store(create: bool = False):
    """Open the store; only the commands that make one on purpose (apply, sync, run, controller)
    pass ``create``, and say on stderr when they did. Elsewhere a missing store is an error."""
    from ..store import Store, default_db_path

    store = Store(_db_option or default_db_path(), create=create)
    if store.created:
        typer.echo(f"created store {store.path}", err=True)
    return store


def _kind(text: str):
    from ..kinds import Kind

    try:
        return Kind.parse(text)
    except ValueError:
        raise UsageError(f"unknown kind {text!r}; use node, job or service") from None


def _ref(text: str):
    """``job/hello`` -> (Kind.JOB, "hello")."""
    kind, sep, name = text.partition("/")
    if not sep or not name:
        raise UsageError(f"{text!r} is not KIND/NAME, e.g. job/hello")
    return _kind(kind), name


def _labels(selector: list[str]) -> dict[str, str]:
    out = {}
    for item in selector:
        for part in filter(None, item.split(",")):
            key, sep, value = part.partition("=")
            if not sep or not key:
                raise UsageError(f"label selector {part!r} is not key=value")
            out[key.strip()] = value.strip()
    return out


@app.command()
def apply(
    files: list[str] = typer.Option(..., "-f", "--filename", help="File, directory (its *.yaml|*.yml|*.json) or - for stdin. Repeatable."),
    wait: bool = typer.Option(False, "--wait", help="Wait until the applied Jobs finish; exit 1 if any failed."),
    timeout: float = typer.Option(0, "--timeout", help="With --wait: give up after this many seconds (0: no limit)."),
) -> None:
    """Create or update resources from manifests (all documents or none)."""
    from ..spec import manifests

    loaded = manifests.load_paths(files, stdin=sys.stdin)
    store = _store(create=True)
    results = store.apply([item.resource for item in loaded])
    for ref, outcome in results:
        typer.echo(f"{ref} {outcome}")
    _warn_unplaceable(store, loaded)
    if wait:
        _wait_jobs(store, [i.resource.metadata.name for i in loaded if i.resource.kind == "Job"], timeout)


def _wait_jobs(store, names: list[str], timeout: float) -> None:
    """Block until every named Job is Complete or Failed; BrokerError if any failed or time ran out."""
    from ..kinds import Kind

    deadline = time.monotonic() + timeout if timeout > 0 else None
    pending = set(names)
    failed = []
    while pending:
        for name in sorted(pending):
            st = store.resource(Kind.JOB, name).status
            if st.get("phase") in ("Complete", "Failed"):
                pending.discard(name)
                typer.echo(f"job/{name} {st['phase'].lower()}" + (f": {st['message']}" if st.get("message") else ""))
                if st["phase"] == "Failed":
                    failed.append(name)
        if pending and deadline is not None and time.monotonic() > deadline:
            raise BrokerError(f"timed out after {timeout:g}s waiting for {', '.join(f'job/{n}' for n in sorted(pending))}")
        if pending:
            time.sleep(0.2)
    if failed:
        raise BrokerError(f"{len(failed)} job(s) failed: {', '.join(failed)}; see `brokerctl describe job NAME`")


def _warn_unplaceable(store, loaded) -> None:
    """A Job or Service whose execution type no node declares would wait forever: say so now."""
    from ..kinds import Kind

    nodes = store.resources(Kind.NODE)
    declared = set()
    for n in nodes:
        declared |= set(n.model.spec.slots or {"default": 1})
    for item in loaded:
        res = item.resource
        etype = getattr(res.spec, "executionType", None)
        if etype and nodes and etype not in declared:
            typer.secho(
                f"warning: {res.kind} '{res.metadata.name}': executionType '{etype}' — no node declares slots "
                "for it; its tasks stay Pending until a Node adds such slots (or change the type)",
                fg="yellow", err=True,
            )


@app.command()
def get(
    kind: str = typer.Argument(..., help="nodes, jobs, services, tasks or events"),
    name: Optional[str] = typer.Argument(None),
    output: str = typer.Option("table", "-o", "--output", help="table, wide, json or yaml"),
    selector: list[str] = typer.Option([], "-l", "--selector", help="Label filter key=value (repeatable)."),
    for_: Optional[str] = typer.Option(None, "--for", help="With `get events`: only this KIND/NAME."),
    limit: int = typer.Option(EVENTS_LIMIT, "--limit", min=0,
                              help=f"With `get events`: show the last N (default {EVENTS_LIMIT}; 0: all)."),
) -> None:
    """List nodes, jobs, services, tasks or events."""
    from .. import views
    from . import tables

    if output not in OUTPUT_FORMATS:
        raise UsageError(f"unknown output format {output!r}; use one of {', '.join(OUTPUT_FORMATS)}")
    store, want = _store(), _labels(selector)
    now = time.time()
    if kind.strip().lower() in ("event", "events"):
        _get_events(store, for_, output, limit)
        return
    if kind.strip().lower() in ("task", "tasks"):
        from ..store import gc_paused

        tasks = [store.task(name)] if name else store.tasks()
        tasks = [t for t in tasks if want.items() <= t.labels.items()]
        if output in ("json", "yaml"):
            with gc_paused():
                text = views.dump([views.task_object(t) for t in tasks], output)
            typer.echo(text, nl=False)
        else:
            tables.print_table(*tables.task_rows(tasks, output == "wide", now))
        return
    k = _kind(kind)
    items = [store.resource(k, name)] if name else store.resources(k)
    items = [r for r in items if want.items() <= r.labels.items()]
    if k.value == "Node":  # slot use per node needs each active task's execution type
        tasks = store.tasks(active_only=True)
        types = {r.ref: r.spec.get("executionType", "default") for r in store.resources() if r.kind.value != "Node"}
        objects = [views.resource_object(r, views.node_used(r.name, tasks, types)) for r in items]
    else:
        objects = [views.resource_object(r) for r in items]
    if output in ("json", "yaml"):
        typer.echo(views.dump(objects, output), nl=False)
        return
    cols, rows = _resource_rows(k.value, objects, output == "wide", now)
    tables.print_table(cols, rows)


def _get_events(store, target: str | None, output: str, limit: int) -> None:
    from .. import views
    from . import tables

    kind = name = None
    if target:
        k, name = _ref(target)
        kind = k.value
    rows = store.events(kind, name, limit=limit + 1 if limit else None)  # one more: are there older ones?
    if limit and len(rows) > limit:
        rows = rows[1:]
        typer.echo(f"showing the last {limit} events; --limit N for more (0: all)", err=True)
    if output in ("json", "yaml"):
        objs = [{"time": views.iso(e["ts"]), "object": f"{e['kind']}/{e['name']}", "type": e["type"],
                 "reason": e["reason"], "message": e["message"], "task": e["task_id"]} for e in rows]
        typer.echo(views.dump(objs, output), nl=False)
        return
    tables.print_table(["AGE", "OBJECT", "TYPE", "REASON", "MESSAGE"],
                       [[tables.age(e["ts"]), f"{e['kind']}/{e['name']}", e["type"], e["reason"], e["message"]]
                        for e in rows])


def _resource_rows(kind: str, objects: list[dict], wide: bool, now: float):
    from .tables import age

    rows = []
    for o in objects:
        st, spec, meta = o["status"], o["spec"], o["metadata"]
        created = _epoch(meta["createdAt"])
        if kind == "Node":
            slots = ", ".join(f"{k} {st['slotsUsed'].get(k, 0)}/{v}" for k, v in (st.get("slots") or {}).items())
            cond = (st.get("condition", "Unknown") + (",SchedulingDisabled" if spec.get("unschedulable") else "")
                    + (",Draining" if st.get("draining") else ""))
            row = [meta["name"], cond, slots or "-", st.get("dockerVersion"), age(created, now)]
            rows.append(row + ([spec["address"], st.get("message")] if wide else []))
        elif kind == "Job":
            row = [meta["name"], "Terminating" if st.get("terminating") else st.get("phase", "Pending"),
                   f"{st.get('succeeded', 0)}/{spec['completions']}", st.get("active", 0), st.get("failed", 0),
                   age(created, now)]
            rows.append(row + ([spec["template"]["image"], st.get("message")] if wide else []))
        else:
            backoff = st.get("restartBackoffSeconds") or 0
            rollout = st.get("rollout") or {}
            row = [meta["name"], spec["replicas"], st.get("running", 0), st.get("ready", 0), st.get("updated", 0),
                   st.get("restarts", 0), f"{backoff:g}s" if backoff else "-",
                   "Terminating" if st.get("terminating") else rollout.get("state", "Pending"), age(created, now)]
            rows.append(row + ([spec["template"]["image"], st.get("revision"), rollout.get("message")] if wide else []))
    cols = {
        "Node": ["NAME", "STATUS", "SLOTS (USED/TOTAL)", "DOCKER", "AGE"] + (["ADDRESS", "MESSAGE"] if wide else []),
        "Job": ["NAME", "PHASE", "COMPLETIONS", "ACTIVE", "FAILED", "AGE"] + (["IMAGE", "MESSAGE"] if wide else []),
        "Service": ["NAME", "DESIRED", "RUNNING", "READY", "UP-TO-DATE", "RESTARTS", "BACKOFF", "ROLLOUT", "AGE"]
        + (["IMAGE", "TEMPLATE", "MESSAGE"] if wide else []),
    }[kind]
    return cols, rows


def _epoch(iso_text: str | None) -> float | None:
    from datetime import datetime

    return datetime.fromisoformat(iso_text.replace("Z", "+00:00")).timestamp() if iso_text else None


@app.command()
def describe(kind: str = typer.Argument(...), name: str = typer.Argument(...)) -> None:
    """Spec, status, tasks, recent events and why tasks are Pending."""
    import yaml

    from .. import views
    from . import tables

    store, k = _store(), _kind(kind)
    r = store.resource(k, name)
    obj = views.resource_object(r)
    typer.echo(f"{r.kind.value}: {r.name}")
    typer.echo(yaml.safe_dump({"metadata": obj["metadata"], "spec": obj["spec"], "status": obj["status"]},
                              sort_keys=False).rstrip())
    if k.value == "Node":
        tasks = [t for t in store.tasks(active_only=True) if t.node == name]
    else:
        tasks = store.tasks(owner=(k, name))
    if tasks:
        typer.echo("tasks:")
        tables.print_table(*tables.task_rows(tasks, True, time.time()))
    pending = [t for t in tasks if t.phase.value == "Pending" and t.message]
    for t in pending:
        typer.echo(f"pending: {t.id}: {t.reason}: {t.message}")
    events = store.events(k.value, name, limit=20)
    if events:
        typer.echo("events:")
        tables.print_table(["AGE", "TYPE", "REASON", "MESSAGE"],
                           [[tables.age(e["ts"]), e["type"], e["reason"], e["message"]] for e in events])


@app.command()
def delete(
    kind: Optional[str] = typer.Argument(None),
    name: Optional[str] = typer.Argument(None),
    files: list[str] = typer.Option([], "-f", "--filename", help="Delete the resources these manifests define."),
    force: bool = typer.Option(False, "--force", help="Remove the record now: a Node even though tasks are active "
                               "on it; a Job or Service without waiting for its containers to stop (they are no "
                               "longer tracked: a running controller removes them as orphans, 10 s grace)."),
) -> None:
    """Delete resources; the controller stops and removes their containers, then the record.
    Deleting again while they stop says how many are left and changes nothing."""
    targets = []
    if files:
        from ..spec import manifests

        targets = [(_kind(i.resource.kind), i.resource.metadata.name) for i in manifests.load_paths(files, stdin=sys.stdin)]
    elif kind and name:
        targets = [(_kind(kind), name)]
    else:
        raise UsageError("name what to delete: `brokerctl delete job NAME` or `brokerctl delete -f FILE`")
    store = _store()
    for k, n in targets:
        outcome = store.mark_deleted(k, n, force=force)
        typer.echo(f"{k.value.lower()}/{n} {outcome}")


@app.command()
def retry(kind: str = typer.Argument(..., help="job"), name: str = typer.Argument(...)) -> None:
    """Re-run a Failed job's failed completions with a fresh backoffLimit (history is kept)."""
    if _kind(kind).value != "Job":
        raise UsageError("only jobs can be retried: `brokerctl retry job NAME`")
    _store().retry_job(name)
    typer.echo(f"job/{name} retried")


@app.command()
def logs(
    target: str = typer.Argument(..., help="A task id, or KIND/NAME for all of its tasks."),
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep streaming a running task's output."),
) -> None:
    """Print task output (kept in the store after the container is gone)."""
    store = _store()
    if "/" in target:
        k, n = _ref(target)
        store.resource(k, n)
        tasks, prefix = store.tasks(owner=(k, n)), True
    else:
        tasks, prefix = [store.task(target)], False
        t = tasks[0]
        if t.phase.value == "Pending" and store.output(t.id) is None:
            why = ": ".join(filter(None, [t.reason, t.message]))
            raise BrokerError(f"task {t.id} is Pending: it has not started yet, so it has no output"
                              + (f" ({why})" if why else ""))
    for t in tasks:
        _print_task_output(store, t, follow, prefix)


def _print_task_output(store, t, follow: bool, prefix: bool, skip: int = 0) -> int:
    """Print the task's output (stored, else live from its host); returns the bytes printed.

    ``skip``: bytes of the stored output already printed (by an earlier live stream)."""
    out = sys.stdout.buffer
    tag = f"[{t.id}] ".encode() if prefix else b""
    printed = 0

    def emit(chunk: bytes) -> None:
        nonlocal printed
        printed += len(chunk)
        if not prefix:
            out.write(chunk)
        else:
            for line in chunk.splitlines(keepends=True):
                out.write(tag + line)
        out.flush()

    saved = store.output(t.id)
    if saved is not None:
        if len(saved[0]) > skip:
            emit(saved[0][skip:])
        return printed
    if t.phase.value == "Running" and t.container_id and t.node:
        for chunk in _node_host(store, t.node).logs(t.container_id, follow=follow):
            emit(chunk)
    return printed


def _node_host(store, name: str):
    """A Docker client for one node, for the commands that ask a host directly (`logs -f`, `drain`)."""
    from ..docker.host import Host
    from ..kinds import Kind

    spec = store.resource(Kind.NODE, name).model.spec
    return Host(name, spec.address, spec.tls.model_dump() if spec.tls else None)


@app.command()
def run(
    name: str = typer.Argument(..., help="Name of the one-off Job."),
    command: Optional[list[str]] = typer.Argument(None, help="Command and its arguments, after --."),
    image: str = typer.Option(..., "--image", help="Image to run."),
    slots_type: str = typer.Option("default", "--slots-type", help="Execution type (which slots it takes)."),
    env: list[str] = typer.Option([], "--env", "-e", help="KEY=VALUE (repeatable)."),
) -> None:
    """Run a one-off Job, stream its output, and exit with the task's exit code (like `docker run`)."""
    from pydantic import ValidationError

    from ..spec.models import Job, Kind

    pairs = {}
    for item in env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--env {item!r} is not KEY=VALUE")
        pairs[key] = value
    doc = {"apiVersion": "broker/v1", "kind": "Job", "metadata": {"name": name},
           "spec": {"executionType": slots_type, "backoffLimit": 0,
                    "template": {"image": image, "command": list(command) if command else None, "env": pairs}}}
    try:
        job = Job.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'] if x != '[key]')}: "
                             f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
        raise UsageError(f"brokerctl run {name}: {problems}") from None
    store = _store(create=True)
    try:
        store.resource(Kind.JOB, name)
    except BrokerError:
        pass
    else:
        raise UsageError(f"Job '{name}' already exists; pick another name or `brokerctl delete job {name}`")
    store.apply([job])
    lease = store.lease()
    if not lease or time.time() - lease["heartbeat"] > 10:
        typer.secho("warning: no controller is running; the job waits until `brokerctl controller` starts",
                    fg="yellow", err=True)
    streamed: int | None = None  # bytes shown live; the stored output fills in what the stream missed
    while True:
        tasks = store.tasks(owner=(Kind.JOB, name))
        t = tasks[-1] if tasks else None
        if t is not None and t.phase.value == "Running" and streamed is None:
            streamed = _print_task_output(store, t, follow=True, prefix=False)
            continue
        if t is not None and not t.active:
            _print_task_output(store, t, follow=False, prefix=False, skip=streamed or 0)
            if t.exit_code is None:
                typer.secho(f"error: task {t.id} {t.phase.value}: {t.reason}: {t.message}", fg="red", err=True)
                raise typer.Exit(125)
            raise typer.Exit(t.exit_code)
        time.sleep(0.1)


@app.command("wait")
def wait_cmd(
    target: str = typer.Argument(..., help="KIND/NAME, e.g. job/hello"),
    condition: str = typer.Option(..., "--for", help="condition=Complete|Failed|Ready"),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds before giving up."),
) -> None:
    """Wait until a resource reaches a condition; non-zero on timeout or the opposite outcome."""
    key, sep, want = condition.partition("=")
    if key != "condition" or want not in ("Complete", "Failed", "Ready"):
        raise UsageError(f"--for {condition!r}: use condition=Complete, condition=Failed or condition=Ready")
    k, name = _ref(target)
    valid = ("Complete", "Failed") if k.value == "Job" else ("Ready",)
    if want not in valid:
        raise UsageError(f"--for {condition!r}: a {k.value} has no {want} condition; use "
                         + " or ".join(f"condition={c}" for c in valid))
    store = _store()
    deadline = time.monotonic() + timeout
    while True:
        r = store.resource(k, name)
        state = _condition_state(r)
        if want in state["met"]:
            typer.echo(f"{target} condition met: {want}")
            return
        opposite = {"Complete": "Failed", "Failed": "Complete"}.get(want)
        if opposite and opposite in state["met"]:
            raise BrokerError(f"{target} reached {opposite} instead of {want}: {state['detail']}")
        if time.monotonic() >= deadline:
            raise BrokerError(f"timed out after {timeout:g}s waiting for {target} condition={want} ({state['detail']})")
        time.sleep(0.2)


def _condition_state(r) -> dict:
    st = r.status
    if r.kind.value == "Job":
        phase = st.get("phase", "Pending")
        detail = f"phase {phase}, {st.get('succeeded', 0)}/{r.spec['completions']} succeeded"
        if st.get("message"):
            detail += f"; {st['message']}"
        return {"met": {phase} & {"Complete", "Failed"}, "detail": detail}
    if r.kind.value == "Service":
        want = r.spec["replicas"]
        ready = st.get("ready", 0) >= want and st.get("updated", 0) >= want and st.get("revision") == _template_of(r)
        return {"met": {"Ready"} if ready else set(),
                "detail": f"{st.get('ready', 0)}/{want} ready, {st.get('updated', 0)} up to date"}
    cond = st.get("condition", "Unknown")
    return {"met": {"Ready"} if cond == "Ready" else set(), "detail": f"condition {cond}: {st.get('message', '')}"}


def _template_of(r) -> str:
    from ..spec.models import template_hash

    return template_hash(r.model.spec)


@app.command()
def scale(
    kind: str = typer.Argument(..., help="service (or service/NAME)"),
    name: Optional[str] = typer.Argument(None),
    replicas: int = typer.Option(..., "--replicas", min=0, help="How many replicas to keep running."),
) -> None:
    """Set a Service's replica count (0 stops every replica and keeps the Service)."""
    if name is None and "/" in kind:
        k, name = _ref(kind)
    elif name is None:
        raise UsageError("name the service: `brokerctl scale service NAME --replicas N`")
    else:
        k = _kind(kind)
    if k.value != "Service":
        raise UsageError("only services scale: `brokerctl scale service NAME --replicas N`")
    old, new = _store().scale(name, replicas)
    typer.echo(f"service/{name} scaled" + (f" from {old} to {new}" if old != new else f" (already {new})"))


@app.command()
def cordon(node: str = typer.Argument(..., help="Node name.")) -> None:
    """Mark a Node unschedulable: no new tasks go there; running ones stay."""
    changed = _store().cordon(_node_name(node), True)
    typer.echo(f"node/{_node_name(node)} {'cordoned' if changed else 'already cordoned'}")


@app.command()
def uncordon(node: str = typer.Argument(..., help="Node name.")) -> None:
    """Make a Node schedulable again (also ends a drain)."""
    changed = _store().cordon(_node_name(node), False)
    typer.echo(f"node/{_node_name(node)} {'uncordoned' if changed else 'already schedulable'}")


@app.command()
def drain(
    node: str = typer.Argument(..., help="Node name."),
    timeout: float = typer.Option(300.0, "--timeout", help="Job tasks may finish for this long, then are rescheduled."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until no active task and none of their containers is left running on the node."),
) -> None:
    """Cordon a Node and move its tasks off: Service replicas are replaced elsewhere before the
    originals stop; Job tasks may finish until --timeout, then are rescheduled (no retry spent)."""
    name = _node_name(node)
    store = _store()
    store.cordon(name, True, drain_timeout=timeout)
    typer.echo(f"node/{name} cordoned; draining")
    if not wait:
        return
    deadline = time.monotonic() + timeout + 60  # rescheduled Job tasks still need their grace period
    _wait_gone(lambda: [t.id for t in store.tasks_on(name)], f"task(s) left on {name}", name, deadline,
               ". Is a controller running (`brokerctl status`)?")
    # The store lets go of a task before its container has stopped (the controller records the
    # decision, then stops it within the grace period): ask the node until none of ours runs.
    # Ours are the containers of this node's tasks: another Node may reach the same daemon.
    host = _node_host(store, name)
    try:
        _wait_gone(lambda: _running_on(host, store), f"container(s) still stopping on {name}", name, deadline)
    finally:
        host.close()
    typer.echo(f"node/{name} drained")


def _running_on(host, store) -> list[str]:
    """Our containers still running on the node. One that only carries our store label (anyone with
    access to the daemon can copy labels) is not ours to wait for: the Node's status reports it."""
    from ..errors import NotFound
    from ..records import distrust

    obs = host.observe(store.store_id, time.time())
    if not obs.ready:
        typer.secho(f"warning: node/{host.name} did not answer ({obs.message}); its containers could not be "
                    "checked (the controller stops them when it returns)", fg="yellow", err=True)
        return []
    left = []
    for c in obs.containers:
        if c.state not in ("running", "restarting", "paused"):
            continue
        try:
            task = store.task(c.task_id) if c.task_id else None
        except NotFound:
            task = None
        if distrust(c, host.name, task, store.mark_key, store.store_id) is None:
            left.append(c.name)
    return left


def _wait_gone(poll, what: str, node: str, deadline: float, hint: str = "") -> None:
    """Poll every 0.5 s until ``poll()`` names nothing, printing what is left whenever it changes."""
    last = None
    while left := poll():
        line = f"{len(left)} {what}: " + ", ".join(left[:5]) + (", ..." if len(left) > 5 else "")
        if line != last:
            typer.echo(line)
            last = line
        if time.monotonic() >= deadline:
            raise BrokerError(f"node/{node}: drain did not finish; {line}{hint}")
        time.sleep(0.5)


def _node_name(text: str) -> str:
    kind, sep, name = text.partition("/")
    if sep:
        if _kind(kind).value != "Node":
            raise UsageError(f"{text!r} is not a node")
        return name
    return text


@app.command("sync")
def sync_cmd(
    target: str = typer.Argument(..., help="A directory of manifests, or `status`."),
    directory: Optional[str] = typer.Argument(None, help="With `status`: only this directory."),
    allow_mass_prune: bool = typer.Option(False, "--allow-mass-prune",
                                          help="Allow pruning more than half (or all) of what the directory owns."),
) -> None:
    """Apply a directory with prune (one transaction), or show `sync status`.

    Resources the directory created and no longer defines are deleted; resources applied by hand
    or from another directory are never touched. An invalid file is reported and what it defined
    keeps its last good state; the rest still syncs (exit 1).
    """
    from ..ops import sync as gitops

    if target == "status" and not Path(target).is_dir():
        _sync_status(_store(), gitops.source_of(directory) if directory else None)
        return
    gitops.source_of(target)  # a usage error before a store is created for nothing
    report = gitops.sync(_store(create=True), target, allow_mass_prune)
    lines = gitops.summary(report)
    typer.echo("\n".join(lines) if lines else f"{report['source']}: in sync, nothing to change")
    if report["refused"] or report["problems"]:
        raise typer.Exit(1)


def _sync_status(store, source: str | None) -> None:
    from .. import views
    from . import tables

    rows = store.sync_status(source)
    if not rows:
        raise BrokerError("no directory has been synced into this store; run `brokerctl sync DIR` or "
                          "`brokerctl controller --watch DIR`")
    for r in rows:
        owned = store.owned_by(r["source"])
        typer.echo(f"directory:  {r['source']}")
        typer.echo(f"last sync:  {views.iso(r['synced_at'])} ({tables.age(r['synced_at'])} ago)"
                   + (f"; REFUSED: {r['refused']}" if r["refused"] else ""))
        typer.echo(f"commit:     {r['commit_id'] or '- (not in a git checkout, or not committed there)'}")
        typer.echo(f"resources:  {len([o for o in owned if o.deleted_at is None])} owned")
        tables.print_table(["FILE", "STATE", "RESOURCES / MESSAGE"],
                           [[f, v["state"], v["message"] if v["state"] != "ok" else ", ".join(v["resources"])]
                            for f, v in sorted(r["files"].items())])


@app.command()
def diff(
    files: list[str] = typer.Option(..., "-f", "--filename", help="File, directory or - (stdin). Repeatable."),
) -> None:
    """What `apply -f` (or, for a directory, `sync`) would change: exit 0 if nothing, 1 if something, 2 on error."""
    from ..ops import sync as gitops
    from ..spec import manifests

    inputs = []  # (directory state, or None for a file) and its models; all read before the store opens
    for given in files:
        if given != "-" and Path(given).is_dir():
            state = gitops.read_dir(given)
            if state.held:
                raise UsageError("\n".join(f"{state.source}/{p}" if p.startswith(f) else f"{state.source}/{f}: {p}"
                                            for f, p in sorted(state.held.items())))
            inputs.append((state, [m for _, m in state.items]))
        else:
            inputs.append((None, [i.resource for i in manifests.load_paths([given], stdin=sys.stdin)]))
    store = _store()
    out: list[str] = []
    for state, models in inputs:
        if state is not None:
            report = gitops.sync_items(store, state.source, state.items, {}, dry_run=True, allow_mass_prune=True)
            if report["problems"]:
                raise UsageError("\n".join(f"{f}: {p}" for f, p in sorted(report["problems"].items())))
            out += [f"{ref.split('/')[0].lower()}/{ref.split('/', 1)[1]} pruned" for ref, _ in report["pruned"]]
        for m in models:
            out += _diff_one(store, m)
    typer.echo("\n".join(out) if out else "no changes")
    if out:
        raise typer.Exit(1)


def _diff_one(store, model) -> list[str]:
    from ..errors import NotFound
    from ..kinds import Kind

    ref = f"{model.kind.lower()}/{model.metadata.name}"
    new = {"metadata.labels": dict(model.metadata.labels), "spec": model.spec.model_dump(mode="json")}
    try:
        r = store.resource(Kind(model.kind), model.metadata.name)
    except NotFound:
        return [f"{ref} created"]
    changes = _field_changes({"metadata.labels": r.labels, "spec": r.spec}, new)
    return [f"{ref} configured"] + [f"  {c}" for c in changes] if changes else []


def _field_changes(old, new, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in old:
                out.append(f"+ {sub}: {new[key]!r}")
            elif key not in new:
                out.append(f"- {sub}: {old[key]!r}")
            else:
                out += _field_changes(old[key], new[key], sub)
        return out
    return [] if old == new else [f"~ {path}: {old!r} -> {new!r}"]


rollout_app = typer.Typer(help="Rolling updates of a Service: status, history, undo.", no_args_is_help=True)
app.add_typer(rollout_app, name="rollout")


def _service_ref(target: str) -> str:
    k, name = _ref(target)
    if k.value != "Service":
        raise UsageError(f"{target!r}: rollouts are for services, e.g. service/web")
    return name


@rollout_app.command("status")
def rollout_status(
    target: str = typer.Argument(..., help="service/NAME"),
    watch: bool = typer.Option(True, "--watch/--no-watch", help="Wait until the rollout completes or pauses."),
    timeout: float = typer.Option(0, "--timeout", help="With --watch: give up after this many seconds (0: no limit)."),
) -> None:
    """Exit 0 once every replica runs the current template; 1 if the rollout paused or rolled back."""
    name = _service_ref(target)
    store = _store()
    started = _template_of(store.resource(_kind("service"), name))
    deadline = time.monotonic() + timeout if timeout else None
    last = None
    while True:
        r = store.resource(_kind("service"), name)
        want, st = _template_of(r), r.status
        rollout = st.get("rollout") or {}
        if want != started:
            why = next((e["message"] for e in reversed(store.events("Service", name, limit=20))
                        if e["reason"] in ("RolledBack", "RollbackFailed")), "the template was changed again")
            raise BrokerError(f"service/{name}: rollout of template {started} ended: {why}")
        if rollout.get("revision") != want:
            line = f"waiting for the controller to pick up template {want}"
        elif rollout.get("state") == "Complete":
            typer.echo(f"service/{name} successfully rolled out ({r.spec['replicas']} replicas at template {want})")
            return
        elif rollout.get("state") == "Paused":
            raise BrokerError(f"service/{name}: rollout paused: {rollout.get('message')}; fix the template and "
                              "apply it again, or `brokerctl rollout undo " + f"service/{name}`")
        else:
            line = f"{st.get('updated', 0)} of {r.spec['replicas']} updated replicas are ready"
        if line != last:
            typer.echo(f"waiting for service/{name}: {line}")
            last = line
        if not watch:
            raise typer.Exit(1)
        if deadline is not None and time.monotonic() >= deadline:
            raise BrokerError(f"timed out after {timeout:g}s: service/{name}: {line}")
        time.sleep(0.2)


@rollout_app.command("history")
def rollout_history(
    target: str = typer.Argument(..., help="service/NAME"),
    revision: Optional[int] = typer.Option(None, "--revision", help="Show this revision's template."),
    output: str = typer.Option("table", "-o", "--output", help="table, json or yaml"),
) -> None:
    """Template revisions of a Service, oldest first; the current one is marked."""
    from .. import views
    from . import tables

    name = _service_ref(target)
    store = _store()
    current = _template_of(store.resource(_kind("service"), name))
    revs = store.revisions(name)
    if revision is not None:
        revs = [r for r in revs if r["revision"] == revision]
        if not revs:
            raise BrokerError(f"service/{name} has no revision {revision}; `brokerctl rollout history service/{name}`")
    objects = [{"revision": r["revision"], "template": r["hash"], "current": r["hash"] == current,
                "image": r["template"]["template"]["image"], "createdAt": views.iso(r["created_at"]),
                "cause": r["cause"], "spec": r["template"]} for r in revs]
    if output in ("json", "yaml"):
        typer.echo(views.dump(objects, output), nl=False)
    elif revision is not None:
        typer.echo(views.dump(objects, "yaml"), nl=False)
    else:
        tables.print_table(["REVISION", "TEMPLATE", "IMAGE", "AGE", "CAUSE", ""],
                           [[o["revision"], o["template"], o["image"], tables.age(r["created_at"]), o["cause"],
                             "current" if o["current"] else ""] for o, r in zip(objects, revs)])


@rollout_app.command("undo")
def rollout_undo(
    target: str = typer.Argument(..., help="service/NAME"),
    to_revision: Optional[int] = typer.Option(None, "--to-revision", help="Revision to return to (default: the previous)."),
) -> None:
    """Make an earlier template the desired one again; the controller rolls to it."""
    name = _service_ref(target)
    rev = _store().undo(name, to_revision)
    typer.echo(f"service/{name} rolled back to template {rev['hash']} (now revision {rev['revision']})")


@app.command()
def status() -> None:
    """Store path, whether a controller is running, node and task counts."""
    from collections import Counter

    from ..kinds import Kind

    store = _store()
    lease = store.lease()
    typer.echo(f"store:      {store.path} (id {store.store_id})")
    if lease and time.time() - lease["heartbeat"] < 10:
        typer.echo(f"controller: running (pid {lease['pid']} on {lease['hostname']}, "
                   f"heartbeat {time.time() - lease['heartbeat']:.1f}s ago)")
        stats = lease["stats"]
        if stats:
            up = max(lease["heartbeat"] - lease["started_at"], 1e-9)
            calls = stats.get("dockerCalls", {})
            typer.echo(f"            {stats['passes']} passes (last {stats['lastPassSeconds'] * 1000:.0f} ms), "
                       f"{stats['lists']} container lists, CPU {100 * stats['cpuSeconds'] / up:.1f}% of a core "
                       f"since start")
            if calls:
                typer.echo("            Docker API calls: " + ", ".join(
                    f"{k} {n}" for k, n in sorted(calls.items(), key=lambda kv: -kv[1])))
    else:
        typer.echo("controller: not running (start one with `brokerctl controller`)")
    nodes = store.resources(Kind.NODE)
    ready = sum(n.status.get("condition") == "Ready" for n in nodes)
    typer.echo(f"nodes:      {len(nodes)} ({ready} ready)")
    counts = Counter(t.phase.value for t in store.tasks())
    typer.echo("tasks:      " + (", ".join(f"{n} {p}" for p, n in sorted(counts.items())) or "0"))


@app.command()
def schema(kind: str = typer.Argument(..., help="node, job or service")) -> None:
    """Print the JSON Schema of a manifest kind."""
    from ..spec.schema import render_schema

    typer.echo(render_schema(_kind(kind)), nl=False)


@app.command()
def controller(
    resync: float = typer.Option(5.0, help="Seconds between full resyncs when nothing is running."),
    probe_interval: float = typer.Option(1.0, help="Seconds between health probes (/_ping) of each node."),
    probe_timeout: float = typer.Option(1.0, help="Timeout of one health probe."),
    lost_after: float = typer.Option(3.0, help="A node without a successful probe for this long is Lost and its "
                                                "tasks are rescheduled (a Node's spec.lostAfterSeconds overrides)."),
    docker_timeout: float = typer.Option(10.0, help="Timeout of every other Docker API call."),
    watch: Optional[Path] = typer.Option(None, "--watch", help="Keep this directory of manifests synced (GitOps)."),
    poll: bool = typer.Option(False, "--poll", help="With --watch: poll for changes (network filesystems)."),
    sync_interval: float = typer.Option(10.0, help="With --watch: also sync this often, which undoes drift."),
    allow_mass_prune: bool = typer.Option(False, "--allow-mass-prune", help="With --watch: see `brokerctl sync`."),
) -> None:
    """Run the reconcile loop until SIGINT/SIGTERM (containers keep running)."""
    import logging

    from ..runtime.controller import Controller, SignalShutdown

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    store = _store(create=True)
    watcher = None
    if watch is not None:
        from ..runtime.watch import Watcher

        watcher = Watcher(store.path, watch, interval=sync_interval, poll=poll, allow_mass_prune=allow_mass_prune)
    ctl = Controller(store, resync=resync, probe_interval=probe_interval, probe_timeout=probe_timeout,
                     lost_after=lost_after, docker_timeout=docker_timeout)
    shutdown = SignalShutdown(ctl.stop, ctl.wake, release=lambda: ctl.release_lease(wait=0.2)).install()
    if watcher is not None:
        watcher.start()
    try:
        ctl.run()
    finally:
        if watcher is not None:
            watcher.stop()
    shutdown.finish()


def main() -> None:
    try:  # recent typer releases carry their own copy of click
        from typer import _click as click
    except ImportError:
        import click

    try:
        code = app(prog_name="brokerctl", standalone_mode=False)
    except BrokerError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, getattr(click.exceptions, "Abort", KeyboardInterrupt)):
        sys.exit(130)
    except BrokenPipeError:  # `brokerctl get tasks | head`: the reader left; not an error of ours
        sys.stderr.close()
        sys.exit(0)
    sys.exit(code if isinstance(code, int) else 0)
