"""The `token` group: create, list and revoke the tokens of the HTTP API (`brokerctl server`).

Registered by ``app`` as a group. Each command calls its verb in ``ops.tokens``. ``create`` prints
the token alone on stdout (so ``TOKEN=$(brokerctl token create ...)`` works) and what it is on
stderr: the token is shown this once and only its hash is kept.
"""

from __future__ import annotations

import time

import typer

from .common import check_output, open_store as _open_store, store_command, warn

def open_store():
    store_command("token")
    return _open_store()


token_app = typer.Typer(help="Tokens of the HTTP API (`brokerctl server`): create, list, revoke.",
                        no_args_is_help=True)


@token_app.command("create")
def create(
    user: str = typer.Option(..., "--user", help="Who the token is for (recorded as createdBy/updatedBy of what "
                             "it writes)."),
    role: str = typer.Option(..., "--role", help="admin (everything), edit (change Jobs and Services of its "
                             "namespaces) or view (read them)."),
    namespaces: list[str] = typer.Option([], "-n", "--namespace", help="With edit or view: a namespace the token "
                                         "reaches (repeatable)."),
) -> None:
    """Make a token and print it once; the store keeps only its hash."""
    from ..ops import tokens

    made = tokens.create(open_store(), user, role, namespaces)
    for text in made.warnings:
        warn(text)
    where = f" in {', '.join(made.record.namespaces)}" if made.record.namespaces else ""
    typer.echo(f"created token {made.record.id} for user {user} (role {role}{where}); it is shown only this once",
               err=True)
    typer.echo(made.text)


@token_app.command("list")
def list_(output: str = typer.Option("table", "-o", "--output", help="table, json or yaml")) -> None:
    """Every token (never a secret): user, role, namespaces, when made, last used, revoked."""
    from .. import views
    from ..ops import tokens
    from . import tables

    check_output(output, ("table", "json", "yaml"))
    found = tokens.list_tokens(open_store())
    if output in ("json", "yaml"):
        typer.echo(views.dump([views.token_object(t) for t in found], output), nl=False)
        return
    now = time.time()
    tables.print_table(["ID", "USER", "ROLE", "NAMESPACES", "STATUS", "CREATED BY", "AGE", "LAST USED"],
                       [[t.id, t.user, t.role, ",".join(t.namespaces), "revoked" if t.revoked_at else "active",
                         t.created_by, tables.age(t.created_at, now),
                         f"{tables.age(t.last_used_at, now)} ago" if t.last_used_at else "never"] for t in found])


@token_app.command("revoke")
def revoke(token_id: str = typer.Argument(..., metavar="ID", help="The token's id (`brokerctl token list`).")) -> None:
    """Revoke a token: its requests are refused (401) from now on."""
    from ..ops import tokens

    changed = tokens.revoke(open_store(), token_id)
    typer.echo(f"token {token_id} {'revoked' if changed else 'was already revoked'}")
