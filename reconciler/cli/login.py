"""The commands of the CLI as a client: `login URL --token T [--ca FILE] [--name NAME]`, `logout [NAME]`
and the `context` group (`list`, `use NAME`, `current`).

Registered by ``app``. ``login`` asks the server who the token is (``/api/v1/whoami``) before it
saves anything, so a wrong URL, certificate or token is an error and the config file
(``client.config``) is left as it was.
"""

from __future__ import annotations

from typing import Optional

import typer

from .common import warn

context_app = typer.Typer(help="The servers `login` saved: list, use NAME, current.", no_args_is_help=True)


def login(
    url: str = typer.Argument(..., help="The server: https://HOST:PORT (http:// on a loopback address)."),
    token: Optional[str] = typer.Option(None, "--token", help="An API token (`brokerctl token create` on the server's "
                                        "host); default: $BROKER_TOKEN."),
    ca: Optional[str] = typer.Option(None, "--ca", metavar="FILE", help="The CA certificate (PEM) that signed the "
                                     "server's certificate, when the system's CAs do not know it."),
    name: Optional[str] = typer.Option(None, "--name", help="The context's name (default: HOST-PORT)."),
) -> None:
    """Check a server and token, then save them as a context (the current one) in the config file."""
    import os

    from ..client import config
    from ..client.remote import Remote
    from ..errors import UsageError

    token = token or os.environ.get("BROKER_TOKEN")
    if not token:
        raise UsageError("login needs a token: --token T (or $BROKER_TOKEN); `brokerctl token create` on the "
                         "server's host makes one")
    server = config.server_url(url)
    if ca:
        ca = os.path.abspath(ca)
        if not os.path.isfile(ca):
            raise UsageError(f"--ca {ca}: no such file")
    target = config.Target(server, token, ca, origin="")
    client = Remote(target)
    who = client.whoami()  # the URL, the certificate and the token, checked before anything is saved
    client.close()
    if server.startswith("http://") and not _loopback(target):
        warn(f"{server} is plain http: the token crosses the network unencrypted; serve TLS (--tls-cert/--tls-key)")
    name = name or config.context_name(server)
    path = config.add_context(name, target)
    where = f" in {', '.join(who['namespaces'])}" if who["namespaces"] else ""
    typer.echo(f"logged in to {server} as {who['user']} (role {who['role']}{where}); context {name} saved in {path} "
               "and made current")


def _loopback(target) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(target.server).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def logout(name: Optional[str] = typer.Argument(None, help="The context to forget (default: the current one).")
           ) -> None:
    """Forget a context and its token (the token stays valid on the server: `token revoke` ends it)."""
    from ..client import config

    gone = config.remove_context(name)
    typer.echo(f"context {gone} removed from {config.config_path()}")


@context_app.command("list")
def list_() -> None:
    """The saved contexts; * marks the current one."""
    from ..client import config
    from . import tables

    data = config.load()
    rows = [["*" if n == data["current-context"] else "", n, c["server"], c.get("ca") or ""]
            for n, c in data["contexts"].items()]
    if not rows:
        typer.echo(f"no contexts in {config.config_path()}; `brokerctl login URL --token T` saves one", err=True)
        return
    tables.print_table(["CURRENT", "NAME", "SERVER", "CA"], rows)


@context_app.command("use")
def use(name: str = typer.Argument(..., help="A context of `context list`.")) -> None:
    """Make a saved context the current one."""
    from ..client import config

    config.use_context(name)
    typer.echo(f"switched to context {name}")


@context_app.command("current")
def current() -> None:
    """Where commands go now: the server (and where that was configured) or the local store."""
    from . import common

    server = common.remote()
    if server is None:
        typer.echo("local store (no server configured)")
    else:
        typer.echo(f"{server.target.server} ({server.target.origin})")
