"""What every command module shares: the store that ``--db`` names or the server a remote command
talks to (``remote``), warnings, and printing the progress a waiting verb yields.

Called by the command modules (``resources``, ``tasks``, ``nodes``, ``rollout``, ``sync``,
``controller``); ``app`` sets ``db_path`` and ``secrets_key`` from the global options. Imports
nothing heavy: the verbs are imported inside the functions that use them.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional

import typer

from ..errors import UsageError

OUTPUT_FORMATS = ("table", "wide", "json", "yaml")
db_path: Optional[str] = None  # the global --db option (a path or URL); None: $BROKER_DB, else the per-user state file
secrets_key: Optional[str] = None  # the global --secrets-key option; None: $BROKER_SECRETS_KEY, else the default
server: Optional[str] = None  # the global --server URL (with --token, --ca), or --context NAME: see ``remote``
token: Optional[str] = None
ca: Optional[str] = None
context: Optional[str] = None
_remote: list = []  # the Remote of this process, once made


def remote():
    """The server this command talks to (a ``client.remote.Remote``), or None to use the local store.
    ``client.config.choose`` decides: ``--db`` > ``--server`` > ``--context`` > ``$BROKER_SERVER`` >
    ``$BROKER_DB`` > the config file's current context > the local default store."""
    if not _remote:
        from ..client.config import choose

        target = choose(db_path, server, token, ca, context)
        if target is None:
            _remote.append(None)
        else:
            from ..client.remote import Remote

            _remote.append(Remote(target))
    return _remote[0]


def close_remote() -> None:
    if _remote and _remote[0] is not None:
        _remote[0].close()


def store_command(command: str) -> None:
    """`server`, `controller`, `token` and `store` act on the store itself whatever context or
    ``$BROKER_SERVER`` is set; naming a server for them on the command line is a mistake."""
    if server or context:
        raise UsageError(f"`brokerctl {command}` works on the store itself, not through a server: run it on the "
                         "server's host without --server/--context (with --db STORE)")


def namespace_option(help: str = "Namespace of the Job or Service named (default: default)."):
    """``-n/--namespace NS`` of every namespaced command, read from ``$BROKER_NAMESPACE`` when not given."""
    return typer.Option("default", "-n", "--namespace", envvar="BROKER_NAMESPACE", show_default=False,
                        metavar="NAMESPACE", help=help)


def namespace(text: str) -> str:
    """The ``-n`` value, checked (a lowercase DNS label)."""
    from ..ops.refs import namespace_name

    return namespace_name(text)


MANIFEST_NAMESPACE_HELP = ("Namespace of the Jobs and Services that name none (a document's own metadata.namespace "
                           "wins; default: default).")


def open_store(create: bool = False):
    """Open the store; only the commands that make one on purpose (apply, sync, run, controller)
    pass ``create``, and say on stderr when they did. Elsewhere a missing store is an error."""
    from .. import ops

    store = ops.open_store(db_path, create=create, secrets_key=secrets_key)
    if store.created:
        typer.echo(f"created store {store.path}", err=True)
    return store


def check_output(output: str, formats: tuple[str, ...] = OUTPUT_FORMATS) -> None:
    if output not in formats:
        raise UsageError(f"unknown output format {output!r}; use one of {', '.join(formats)}")


def warn(text: str) -> None:
    typer.secho(f"warning: {text}", fg="yellow", err=True)


def follow(events: Iterator, other: Callable[[object], None] | None = None):
    """Print each ``Note`` a waiting verb yields as it comes (warnings on stderr), hand anything else
    it yields to ``other``, and return what the verb returns."""
    from ..ops.polling import Note

    while True:
        try:
            item = next(events)
        except StopIteration as done:
            return done.value
        if isinstance(item, Note) and item.warning:
            warn(item.text)
        elif isinstance(item, Note):
            typer.echo(item.text)
        elif other is not None:
            other(item)


def queue_option():
    """`--queue fair|fifo`, shared by `controller` and `server`."""
    return typer.Option("fair", "--queue", help="Order of waiting tasks: fair (within a priority, from the namespace "
                                                "furthest below its share) or fifo (priority, then first come).")


def lease_duration_option():
    """`--lease-duration`, shared by `controller` and `server`."""
    return typer.Option(3.0, "--lease-duration", help="Seconds the leader's lease outlives its last renewal (renewed "
                                                      "every second): how soon a standby takes over from a leader "
                                                      "that stopped.")


def half_life_option():
    """`--fair-share-half-life`, shared by `controller` and `server`."""
    return typer.Option("1h", "--fair-share-half-life", help="With --queue fair: how long until a namespace's past "
                                                             "use weighs half (a duration: 30m, 1h, 2d).")
