"""``brokerctl``: the root of the command line, a thin front end over ``ops``.

``main`` (called by the console script's front door, ``entry``, for every command line it does not send
itself): the one place that catches ``BrokerError`` (``entry.report``: one red line on stderr and the
error's exit code) and click's usage errors. The global ``--db`` and ``--secrets-key``
options are kept in ``common`` for the commands' store opener. The commands live in one module per group
(``resources``, ``tasks``, ``nodes``, ``rollout``, ``sync``, ``controller``, ``server``, ``stores``,
``tokens``, ``login``, ``shell``) and are named here, in ``COMMANDS``, in the order ``--help`` lists them.
They are registered lazily: the root group (``_LazyGroup``) imports a command's module and builds its
click command (options, help) only when that command is invoked, so a command's start-up pays for its own
module alone, not for importing and building all of them (~35 ms of CPU); ``--help`` and completion,
which list every command, build them all, as typer does. A command module imports nothing heavy at its
top (typer, the errors, ``common``); each command imports its verbs when it runs.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer
import typer.main
from typer.core import TyperGroup

from ..errors import BrokerError
from . import common, shell
from .entry import report

# Every command, in the order `brokerctl --help` lists them: its module and the function (or, for a group
# of subcommands, the typer app) that defines it.
COMMANDS = {
    "apply": ("resources", "apply"), "get": ("resources", "get"), "describe": ("resources", "describe"),
    "delete": ("resources", "delete"), "edit": ("resources", "edit"), "retry": ("tasks", "retry"),
    "logs": ("tasks", "logs"), "exec": ("tasks", "exec_"), "run": ("tasks", "run"), "wait": ("tasks", "wait"),
    "scale": ("rollout", "scale"), "cordon": ("nodes", "cordon"), "uncordon": ("nodes", "uncordon"),
    "drain": ("nodes", "drain"), "sync": ("sync", "sync"), "diff": ("resources", "diff"),
    "status": ("controller", "status"), "schema": ("controller", "schema"),
    "controller": ("controller", "controller"), "server": ("server", "server"), "login": ("login", "login"),
    "logout": ("login", "logout"), "completion": ("shell", "completion"),
    "rollout": ("rollout", "rollout_app"), "store": ("stores", "store_app"), "token": ("tokens", "token_app"),
    "context": ("login", "context_app"),
}


class _LazyGroup(TyperGroup):
    """The root group: it knows every command's name (``list_commands``: ``--help``, completion) and builds
    a command, importing its module, when it is asked for it (``get_command``)."""

    def list_commands(self, ctx) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx, name: str):
        if name in COMMANDS and name not in self.commands:
            self.add_command(_build(name), name)
        elif name not in COMMANDS:  # a typo: typer suggests from every command built
            for known in COMMANDS.keys() - self.commands.keys():
                self.add_command(_build(known), known)
        return self.commands.get(name)


def _build(name: str):
    """The click command (or group) of ``name``, built by typer as ``app.command(name)`` (``app.add_typer``
    for a group) would have built it."""
    module, attribute = COMMANDS[name]
    qualified = f"{__package__}.{module}"
    __import__(qualified)  # not importlib.import_module, which `python -X importtime` does not show
    defined = getattr(sys.modules[qualified], attribute)
    holder = typer.Typer()
    if isinstance(defined, typer.Typer):
        holder.add_typer(defined, name=name)
        return typer.main.get_group_from_info(holder.registered_groups[0], suggest_commands=app.suggest_commands,
                                              pretty_exceptions_short=app.pretty_exceptions_short,
                                              rich_markup_mode=app.rich_markup_mode)
    holder.command(name)(defined)
    return typer.main.get_command_from_info(holder.registered_commands[0],
                                            pretty_exceptions_short=app.pretty_exceptions_short,
                                            rich_markup_mode=app.rich_markup_mode)


app = typer.Typer(
    cls=_LazyGroup,
    name="brokerctl",
    help="Declarative container broker for plain Docker hosts: apply Nodes, Jobs and Services; "
    "a controller keeps the hosts in line.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _print_version(wanted: bool) -> None:
    """``--version``: print the release and stop before any command runs."""
    if wanted:
        from ..ops import version

        typer.echo(f"brokerctl {version()}")
        raise typer.Exit()


@app.callback()
def _options(
    db: Optional[str] = typer.Option(None, "--db", help="Store: a file path, sqlite:///PATH or "
                                     "postgresql://USER@HOST:PORT/DB (default: $BROKER_DB, else the per-user state file).",
                                     envvar=None),
    secrets_key: Optional[str] = typer.Option(None, "--secrets-key", metavar="FILE", help="The key Secrets are "
                                              "encrypted with (default: $BROKER_SECRETS_KEY, else STORE.key beside a "
                                              "store file, else secrets.key in the per-user state directory)."),
    server_: Optional[str] = typer.Option(None, "--server", metavar="URL", help="Talk to this `brokerctl server` "
                                          "instead of a store (with --token; default: $BROKER_SERVER, else the "
                                          "current context of `brokerctl login`)."),
    token: Optional[str] = typer.Option(None, "--token", help="The API token for --server (default: $BROKER_TOKEN)."),
    ca: Optional[str] = typer.Option(None, "--ca", metavar="FILE", help="With --server: the CA certificate (PEM) "
                                     "the server's is signed by (default: $BROKER_CA, else the system's CAs)."),
    context: Optional[str] = typer.Option(None, "--context", help="Use this saved context (`brokerctl context list`)."),
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the version and exit."),
) -> None:
    common.db_path = db
    common.secrets_key = secrets_key
    common.server, common.token, common.ca, common.context = server_, token, ca, context


def main() -> None:
    try:  # recent typer releases carry their own copy of click
        from typer import _click as click
    except ImportError:
        import click

    if shell.completion_requested():  # a completion script asking; answered before any command runs
        shell.register_completion_classes()
    try:
        code = app(prog_name="brokerctl", standalone_mode=False)
    except BrokerError as exc:
        report(exc)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, getattr(click.exceptions, "Abort", KeyboardInterrupt)):
        sys.exit(130)
    except BrokenPipeError:  # `brokerctl get tasks | head`: the reader left; not an error of ours
        sys.stderr.close()
        sys.exit(0)
    finally:
        common.close_remote()
    sys.exit(code if isinstance(code, int) else 0)
