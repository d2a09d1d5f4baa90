"""``brokerctl``: the root of the command line, a thin front end over ``ops``.

Entry point ``main`` (console script): the one place that catches ``BrokerError`` (one red line on
stderr and the error's exit code) and click's usage errors. The global ``--db`` and ``--secrets-key``
options are kept in ``common`` for the commands' store opener. The commands live in one module per group
(``resources``, ``tasks``, ``nodes``, ``rollout``, ``sync``, ``controller``, ``server``, ``stores``,
``tokens``, ``login``, ``shell``) and are registered here, in the order ``--help`` lists them. A command module imports
nothing heavy at its top
(typer, the errors, ``common``), so ``brokerctl --help`` stays fast; each command imports its verbs
when it runs.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from ..errors import BrokerError
from . import common, controller, login, nodes, resources, rollout, server, shell, stores, sync, tasks, tokens

app = typer.Typer(
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


# Every command, in the order `brokerctl --help` lists them (typer lists the `rollout` group last).
COMMANDS = (resources.apply, resources.get, resources.describe, resources.delete, resources.edit, tasks.retry,
            tasks.logs, tasks.exec_, tasks.run, tasks.wait, rollout.scale, nodes.cordon, nodes.uncordon, nodes.drain,
            sync.sync, resources.diff, controller.status, controller.schema, controller.controller, server.server,
            login.login, login.logout, shell.completion)

for command in COMMANDS:
    app.command(name=command.__name__.rstrip("_").replace("_", "-"))(command)  # exec_ is `exec`
app.add_typer(rollout.rollout_app, name="rollout")
app.add_typer(stores.store_app, name="store")
app.add_typer(tokens.token_app, name="token")
app.add_typer(login.context_app, name="context")


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
    finally:
        common.close_remote()
    sys.exit(code if isinstance(code, int) else 0)
