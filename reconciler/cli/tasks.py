"""The task commands: retry, logs, run, wait.

Registered by ``app``. Each parses its arguments, calls its verb in ``ops.tasks`` and renders the
result; task output goes to stdout as the container wrote it (prefixed by task id when several
tasks are shown).
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from ..errors import UsageError
from .common import follow, namespace, namespace_option, open_store


def retry(kind: str = typer.Argument(..., help="job"), name: str = typer.Argument(...),
          namespace_: str = namespace_option()) -> None:
    """Re-run a Failed job's failed completions with a fresh backoffLimit (history is kept)."""
    from ..kinds import Kind, object_ref
    from ..ops import tasks
    from ..ops.refs import parse_kind

    if parse_kind(kind) is not Kind.JOB:
        raise UsageError("only jobs can be retried: `brokerctl retry job NAME`")
    ns = namespace(namespace_)
    tasks.retry(open_store(), name, ns)
    typer.echo(f"{object_ref(Kind.JOB, ns, name)} retried")


def logs(
    target: str = typer.Argument(..., help="A task id, or KIND/NAME for all of its tasks."),
    follow_: bool = typer.Option(False, "-f", "--follow", help="Keep streaming a running task's output."),
    tail: Optional[int] = typer.Option(None, "--tail", min=0, help="Only the last N lines (of each task)."),
    since: Optional[str] = typer.Option(None, "--since", help="Only what was written in this last while: 30s, "
                                        "10m, 1h (stored output, which has no time per line: a task's whole output "
                                        "if it ran then)."),
    namespace_: str = namespace_option("Namespace of the KIND/NAME named (default: default; task ids need none)."),
) -> None:
    """Print task output (kept in the store after the container is gone)."""
    from ..ops import tasks
    from ..ops.refs import parse_duration, parse_ref

    window = tasks.log_window(tail, parse_duration(since) if since is not None else None)
    store = open_store()
    if "/" in target:
        kind, name = parse_ref(target)
        chunks, prefix = tasks.owner_logs(store, kind, name, follow_, namespace(namespace_), window), True
    else:
        chunks, prefix = tasks.task_logs(store, target, follow_, window), False
    write = output_writer(prefix)
    for chunk in chunks:
        write(chunk)


def output_writer(prefix: bool):
    """Write ``ops.tasks.Output`` chunks to stdout as they come; ``prefix``: each line starts with
    ``[TASK-ID] ``, for the output of several tasks."""
    out = sys.stdout.buffer

    def write(chunk) -> None:
        if not prefix:
            out.write(chunk.data)
        else:
            tag = f"[{chunk.task}] ".encode()
            for line in chunk.data.splitlines(keepends=True):
                out.write(tag + line)
        out.flush()

    return write


def run(
    name: str = typer.Argument(..., help="Name of the one-off Job."),
    command: Optional[list[str]] = typer.Argument(None, help="Command and its arguments, after --."),
    image: str = typer.Option(..., "--image", help="Image to run."),
    slots_type: str = typer.Option("default", "--slots-type", help="Execution type (which slots it takes)."),
    env: list[str] = typer.Option([], "--env", "-e", help="KEY=VALUE (repeatable)."),
    namespace_: str = namespace_option("Namespace to run the Job in (default: default)."),
) -> None:
    """Run a one-off Job, stream its output, and exit with the task's exit code (like `docker run`)."""
    from ..ops import tasks

    pairs = {}
    for item in env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--env {item!r} is not KEY=VALUE")
        pairs[key] = value
    job = tasks.one_off_job(name, image, command, slots_type, pairs, namespace(namespace_))
    task = follow(tasks.run(open_store(create=True), job), output_writer(prefix=False))
    raise typer.Exit(task.exit_code)


def wait(
    target: str = typer.Argument(..., help="KIND/NAME, e.g. job/hello"),
    condition: str = typer.Option(..., "--for", help="condition=Complete|Failed|Ready"),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds before giving up."),
    namespace_: str = namespace_option(),
) -> None:
    """Wait until a resource reaches a condition; non-zero on timeout or the opposite outcome."""
    from ..ops import tasks

    cond = tasks.condition(target, condition, namespace(namespace_))
    tasks.wait(open_store(), cond, timeout)
    typer.echo(f"{target} condition met: {cond.want}")
