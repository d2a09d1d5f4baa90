"""Where a store lives: a SQLite file or a PostgreSQL database, read from ``--db`` or ``BROKER_DB``.

``Location.parse`` tells the two apart: ``postgresql://USER@HOST:PORT/DB`` (or ``postgres://``)
names a PostgreSQL database, ``sqlite:///PATH`` or a plain path a SQLite file. ``display`` is
what messages show: a PostgreSQL URL without its password. Called by ``db.Connection`` (which
opens the backend it names) and ``transfer`` (``store migrate``); imports no driver, so parsing a
location costs nothing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import UsageError

SQLITE, POSTGRESQL = "sqlite", "postgresql"
_POSTGRES_SCHEMES = ("postgresql", "postgres")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
FORMS = "a file path, sqlite:///PATH or postgresql://USER@HOST:PORT/DB"


@dataclass(frozen=True)
class Location:
    """A store's backend and address: ``target`` opens it (a Path, or the URL as given, password
    included); ``display`` names it in messages (the same Path, or the URL without a password)."""

    backend: str
    target: Path | str
    display: Path | str

    @classmethod
    def parse(cls, value: str | Path) -> "Location":
        if isinstance(value, Path):
            return cls(SQLITE, value, value)
        scheme = _SCHEME.match(value)
        if scheme is None:
            return cls(SQLITE, Path(value), Path(value))
        name = scheme.group(1).lower()
        if name == "sqlite":
            path = Path(value[len("sqlite:///"):]) if value.startswith("sqlite:///") else None
            if path is None or not str(path):
                raise UsageError(f"store URL {value!r}: write sqlite:///PATH (sqlite:////abs/path for an absolute path)")
            return cls(SQLITE, path, path)
        if name in _POSTGRES_SCHEMES:
            return cls(POSTGRESQL, value, without_password(value))
        raise UsageError(f"store {value!r}: unknown URL scheme {name}://; use {FORMS}")

    @property
    def is_postgresql(self) -> bool:
        return self.backend == POSTGRESQL


def default_db_path() -> Path | str:
    """The store when no ``--db`` is given: ``BROKER_DB`` (a path or URL), else the per-user XDG state file."""
    env = os.environ.get("BROKER_DB")
    if env:
        return env
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(state) / "brokerctl" / "broker.db"


def without_password(url: str) -> str:
    """The URL as messages may show it: no password in the user part nor in the query."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}@{host}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
