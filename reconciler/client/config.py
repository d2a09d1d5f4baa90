"""Where the CLI finds a server: ``--server``/``--token``, ``$BROKER_SERVER``/``$BROKER_TOKEN``, or the
current context of ``$XDG_CONFIG_HOME/brokerctl/config.yaml`` (``~/.config/brokerctl/config.yaml``),
which `brokerctl login` writes, `context use` switches and `logout` empties.

Called by ``cli.common`` (which picks local or remote, see ``choose``) and the ``login``/``context``
commands. The file holds tokens: it is written 0600 in a 0700 directory, whole each time (a
temporary file renamed over it), so a reader never sees half of it.

The file::

    current-context: broker.example-8443
    contexts:
      broker.example-8443: {server: https://broker.example:8443, token: bk_..., ca: /home/me/ca.pem}
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

from ..errors import UsageError


class Target(NamedTuple):
    """A server to talk to, and how."""

    server: str  # its base URL: http(s)://HOST:PORT (a path prefix kept)
    token: str
    ca: str | None = None  # a PEM file of the CA that signed the server's certificate (None: the system's)
    context: str | None = None  # the context it came from, for messages
    origin: str = "--server"  # where it was configured: --server, $BROKER_SERVER or context NAME


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "brokerctl" / "config.yaml"


def server_url(text: str) -> str:
    """An http(s) URL, checked: ``https://broker.example:8443`` (a trailing / dropped)."""
    url = text.strip().rstrip("/")
    if not re.match(r"^https?://[^/\s?#]+(/[^\s?#]*)?$", url):
        raise UsageError(f"server {text!r} is not a URL: write e.g. https://broker.example:8443 or "
                         "http://127.0.0.1:8080")
    return url


def context_name(url: str) -> str:
    """The default name of a context: the server's host and port (``broker.example-8443``)."""
    host = re.sub(r"^https?://", "", url).split("/")[0]
    return re.sub(r"[^A-Za-z0-9_.-]", "-", host)


def load(path: Path | None = None) -> dict:
    """The config file's contents (empty when there is none); a file that cannot be read says so."""
    path = path or config_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {"current-context": None, "contexts": {}}
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the brokerctl config: {exc}") from None
    import yaml

    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not a brokerctl config ({exc}); fix it, or remove it and `brokerctl login` "
                         "again") from None
    contexts = data.get("contexts") if isinstance(data, dict) else None
    if not isinstance(contexts, dict) or not all(isinstance(c, dict) and c.get("server") and c.get("token")
                                                 for c in contexts.values()):
        raise UsageError(f"{path}: not a brokerctl config (each of `contexts` needs server and token); fix it, or "
                         "remove it and `brokerctl login` again")
    return {"current-context": data.get("current-context"), "contexts": contexts}


def save(data: dict, path: Path | None = None) -> Path:
    """Write the config privately (0600 in a 0700 directory), replacing the file whole."""
    import yaml

    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(yaml.safe_dump({"current-context": data.get("current-context"), "contexts": data["contexts"]},
                               sort_keys=False, default_flow_style=False))
    os.replace(temporary, path)
    return path


def add_context(name: str, target: Target, path: Path | None = None) -> Path:
    """Save ``target`` as context ``name`` (replacing one of that name) and make it the current one."""
    data = load(path)
    entry = {"server": target.server, "token": target.token}
    if target.ca:
        entry["ca"] = target.ca
    data["contexts"][name] = entry
    data["current-context"] = name
    return save(data, path)


def use_context(name: str, path: Path | None = None) -> None:
    data = load(path)
    if name not in data["contexts"]:
        raise UsageError(f"no context {name!r} in {path or config_path()}; "
                         + (f"use one of {', '.join(data['contexts'])}" if data["contexts"]
                            else "`brokerctl login URL --token T` makes one"))
    data["current-context"] = name
    save(data, path)


def remove_context(name: str | None, path: Path | None = None) -> str:
    """`logout [NAME]`: forget a context (default: the current one); returns its name."""
    data = load(path)
    name = name or data["current-context"]
    if not name or name not in data["contexts"]:
        raise UsageError(f"no context {name!r} to log out of" if name else "not logged in: no current context")
    del data["contexts"][name]
    if data["current-context"] == name:
        data["current-context"] = None
    save(data, path)
    return name


def choose(db: str | None, server: str | None, token: str | None, ca: str | None,
           context: str | None = None) -> Target | None:
    """The server to use, or None for the local store. In order: ``--db`` (the store, local);
    ``--server`` (with ``--token``, else ``$BROKER_TOKEN``); ``--context NAME``; ``$BROKER_SERVER``
    (with ``$BROKER_TOKEN``); ``$BROKER_DB`` (local); the current context of the config file; else the
    local default store."""
    if db:
        return None
    env_token = os.environ.get("BROKER_TOKEN") or None
    if server:
        return Target(server_url(server), _token(token or env_token, "--server", "--token T or $BROKER_TOKEN"),
                      ca or os.environ.get("BROKER_CA") or None)
    if context:
        return _context_target(load(), context, ca, token)
    if os.environ.get("BROKER_SERVER"):
        return Target(server_url(os.environ["BROKER_SERVER"]),
                      _token(token or env_token, "$BROKER_SERVER", "$BROKER_TOKEN (or --token T)"),
                      ca or os.environ.get("BROKER_CA") or None, origin="$BROKER_SERVER")
    if os.environ.get("BROKER_DB"):
        return None
    data = load()
    if data["current-context"]:
        return _context_target(data, data["current-context"], ca, token)
    return None


def _context_target(data: dict, name: str, ca: str | None, token: str | None) -> Target:
    entry = data["contexts"].get(name)
    if entry is None:
        raise UsageError(f"no context {name!r} in {config_path()}; `brokerctl context list` shows them")
    return Target(server_url(entry["server"]), token or entry["token"], ca or entry.get("ca"), name,
                  f"context {name}")


def _token(token: str | None, where: str, how: str) -> str:
    if not token:
        raise UsageError(f"{where} names a server but no token: give {how}")
    return token
