"""The task commands: retry, logs, exec, run, wait.

Registered by ``app``. Each parses its arguments, calls its verb in ``ops.tasks`` and renders the
result; task output goes to stdout as the container wrote it (prefixed by task id when several
tasks are shown).
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from ..errors import UsageError
from .common import follow, namespace, namespace_option, open_store, remote, warn


def retry(kind: str = typer.Argument(..., help="job"), name: str = typer.Argument(...),
          namespace_: str = namespace_option()) -> None:
    """Re-run a Failed job's failed completions with a fresh backoffLimit (history is kept)."""
    from ..kinds import Kind, object_ref
    from ..ops import tasks
    from ..ops.refs import parse_kind

    if parse_kind(kind) is not Kind.JOB:
        raise UsageError("only jobs can be retried: `brokerctl retry job NAME`")
    ns = namespace(namespace_)
    if (server := remote()) is not None:
        server.retry(name, ns)
    else:
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
    from ..ops.refs import parse_duration, parse_ref

    seconds = parse_duration(since) if since is not None else None
    if (server := remote()) is not None:  # a KIND/NAME's lines come prefixed by the server, as below
        out = sys.stdout.buffer
        for data in server.logs(target, follow_, tail, seconds, namespace(namespace_)):
            out.write(data)
            out.flush()
        return
    from ..ops import tasks

    window = tasks.log_window(tail, seconds)
    store = open_store()
    if "/" in target:
        kind, name = parse_ref(target)
        chunks, prefix = tasks.owner_logs(store, kind, name, follow_, namespace(namespace_), window), True
    else:
        chunks, prefix = tasks.task_logs(store, target, follow_, window), False
    write = output_writer(prefix)
    for chunk in chunks:
        write(chunk)


def exec_(
    task: str = typer.Argument(..., help="A Running task's id (`brokerctl get tasks --phase Running`)."),
    command: Optional[list[str]] = typer.Argument(None, help="The command and its arguments, after --."),
    stdin_: bool = typer.Option(False, "-i", "--stdin", help="Pass stdin to the command (until it ends)."),
    tty_: bool = typer.Option(False, "-t", "--tty", help="Give the command a terminal, when stdin is one "
                              "(-it: an interactive shell)."),
) -> None:
    """Run a command in a running task's container and exit with its exit code (`brokerctl exec -it ID -- sh`)."""
    import os

    server = remote()
    use_tty = tty_ and sys.stdin.isatty()
    if tty_ and not use_tty:
        warn("-t: stdin is not a terminal; running without one")
    out, err = sys.stdout.buffer, sys.stderr.buffer

    def write(stream: int, data: bytes) -> None:
        target = err if stream == 2 else out
        target.write(data)
        target.flush()

    chunks = _input_chunks(sys.stdin.fileno()) if stdin_ else None
    size = tuple(os.get_terminal_size(sys.stdin.fileno()))[::-1] if use_tty else None
    with _raw_terminal(sys.stdin.fileno()) if use_tty else _nothing():
        if server is not None:
            code = server.exec(task, command or [], chunks, write, tty=use_tty, size=size)
        else:
            from ..ops import tasks

            code = tasks.exec_in(open_store(), task, command or [], chunks, write, tty=use_tty, size=size)
    raise typer.Exit(code)


def _input_chunks(fd: int):
    """What is read from ``fd`` as it comes (a terminal in raw mode: each key), until end of file."""
    import os

    while data := os.read(fd, 65536):
        yield data


def _raw_terminal(fd: int):
    """The terminal in raw mode while a command with a terminal of its own runs (its keys, ^C included,
    go to the command), restored afterwards."""
    import contextlib
    import termios
    import tty

    @contextlib.contextmanager
    def raw():
        saved = termios.tcgetattr(fd)
        tty.setraw(fd)
        try:
            yield
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    return raw()


def _nothing():
    import contextlib

    return contextlib.nullcontext()


def output_writer(prefix: bool):
    """Write ``ops.tasks.Output`` chunks to stdout as they come; ``prefix``: each line starts with
    ``[TASK-ID] ``, for the output of several tasks."""
    from ..ops.tasks import prefixed

    out = sys.stdout.buffer

    def write(chunk) -> None:
        out.write(prefixed(chunk) if prefix else chunk.data)
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
    pairs = {}
    for item in env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--env {item!r} is not KEY=VALUE")
        pairs[key] = value
    if (server := remote()) is not None:
        out = sys.stdout.buffer

        def write(data: bytes) -> None:
            out.write(data)
            out.flush()

        raise typer.Exit(follow(server.run(name, image, command, slots_type, pairs, namespace(namespace_)), write))
    from ..ops import tasks

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
    if (server := remote()) is not None:
        server.wait(target, condition, timeout, cond.namespace)
    else:
        tasks.wait(open_store(), cond, timeout)
    typer.echo(f"{target} condition met: {cond.want}")
