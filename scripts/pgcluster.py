#!/usr/bin/env python3
"""Throwaway PostgreSQL clusters on 127.0.0.1, for tests and benchmarks.

Each ``PgCluster`` is a private ``postgres`` made by ``initdb`` in one short
directory ($TMPDIR/bkpg-XXXXXXXX, else /tmp: data in ``data/``, the unix socket beside it,
the server log in ``log``) and listening on a free port of 127.0.0.1 only,
with ``trust`` authentication for the superuser ``postgres``.  Its URL,
``postgresql://postgres@127.0.0.1:PORT/DB``, names a database made for the
caller.  Several clusters run side by side; each keeps its port across
``stop()``/``start()``/``restart()``, so servers holding its URL can be shown
the database going away and coming back.  ``remove()`` stops it and deletes
the directory.

PostgreSQL refuses to run as root: as root, ``initdb`` and ``pg_ctl`` run as
the ``postgres`` user (``runuser``), which owns the directory; as anyone
else, as that user.  ``fast=True`` trades durability for speed (fsync,
synchronous_commit and full_page_writes off, 16 MB of shared_buffers); the
default settings are PostgreSQL's own.

Callers:
  * test fixtures import this module: one cluster per session
    (``start_cluster(fast=True)``), a fresh database per test
    (``create_database``), ``remove()`` at the end; ``missing()`` tells why
    a cluster cannot start here, for a skip (or, in CI, a failure);
  * benchmarks and people use the CLI::

        python scripts/pgcluster.py up [--dir DIR] [--db NAME] [--port N] [--fast]
        python scripts/pgcluster.py restart --dir DIR [--immediate]
        python scripts/pgcluster.py down --dir DIR

    ``up`` leaves the cluster running, writes ``DIR/cluster.json`` and
    prints the URL; ``restart`` stops and starts it (``--immediate``: as
    after a crash); ``down`` stops it and removes ``DIR``.

Needs PostgreSQL's server binaries (Debian: ``apt-get install postgresql``),
found through ``pg_config --bindir`` or /usr/lib/postgresql/<version>/bin.
Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procutil import free_port, listening, pid_running  # noqa: E402  (scripts/ is on sys.path)

OWNER = "postgres"  # the OS user the server runs as when we are root; also the superuser's name
HOST = "127.0.0.1"
TOOLS = ("initdb", "pg_ctl", "postgres", "psql")
VERSIONED_ROOT = Path("/usr/lib/postgresql")
INSTALL_HINT = "Debian: apt-get install postgresql"
MARKER = ".pgcluster"  # a dir holding this file may be removed wholesale
STATE_JSON = "cluster.json"
SETTINGS_FILE = "pgcluster.conf"  # ours, included from postgresql.conf, rewritten freely
FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "16MB",
}
_DB_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def find_bindir(pg_config: str = "pg_config", versioned_root: Path = VERSIONED_ROOT) -> Path:
    """The directory holding initdb, pg_ctl, postgres and psql.

    ``pg_config --bindir`` first (Debian's postgresql-common answers with the
    newest installed server; libpq-dev's alone answers /usr/bin, which lacks
    initdb), then the newest /usr/lib/postgresql/<version>/bin.
    """
    candidates = []
    exe = shutil.which(pg_config)
    if exe:
        proc = subprocess.run([exe, "--bindir"], capture_output=True, text=True)
        if proc.returncode == 0 and proc.stdout.strip():
            candidates.append(Path(proc.stdout.strip()))
    try:
        versions = [p for p in versioned_root.iterdir() if p.name.replace(".", "").isdigit()]
    except OSError:
        versions = []
    for version in sorted(versions, key=lambda p: [int(x) for x in p.name.split(".")], reverse=True):
        candidates.append(version / "bin")
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in TOOLS):
            return bindir
    raise RuntimeError(
        f"PostgreSQL server binaries ({', '.join(TOOLS)}) not found via `pg_config --bindir`"
        f" or {versioned_root}/<version>/bin ({INSTALL_HINT})")


def missing() -> str | None:
    """Why no cluster can start here, or None when one can."""
    try:
        find_bindir()
    except RuntimeError as e:
        return str(e)
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(OWNER)
        except KeyError:
            return f"user {OWNER!r} missing: PostgreSQL will not run as root ({INSTALL_HINT})"
        if shutil.which("runuser") is None:
            return "runuser not found (Debian: apt-get install util-linux)"
    return None


class PgCluster:
    """One private PostgreSQL server, reached at ``url``."""

    def __init__(self, dir: str | Path, port: int, database: str = "brokerctl",
                 bindir: str | Path | None = None, fast: bool = False):
        self.dir = Path(dir)
        self.port = port
        self.database = database
        self.bindir = Path(bindir) if bindir else find_bindir()
        self.fast = fast

    def __repr__(self) -> str:
        return f"PgCluster({self.url!r}, dir={str(self.dir)!r})"

    def __enter__(self) -> PgCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql://{OWNER}@{HOST}:{self.port}/{database}"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def log_path(self) -> Path:
        return self.dir / "log"

    # -- lifecycle -------------------------------------------------------

    def init(self) -> None:
        """``initdb`` the data dir and point the server at our address, port and socket dir."""
        # No fsync during initdb whatever ``fast`` says: the directory is
        # thrown away, so there is nothing to keep safe from a power cut.
        self._run_as_owner([
            str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", OWNER, "-A", "trust",
            "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        with open(self.data_dir / "postgresql.conf", "a") as f:
            f.write(f"\ninclude_if_exists = '{SETTINGS_FILE}'\n")
        self.write_settings()

    def write_settings(self) -> None:
        """(Re)write our settings file; takes effect at the next start."""
        settings = {
            "listen_addresses": f"'{HOST}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.dir}'",
        }
        if self.fast:
            settings.update(FAST_SETTINGS)
        path = self.data_dir / SETTINGS_FILE
        path.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        _chown_to_owner(path)

    def start(self, timeout: float = 60) -> None:
        """Start the server on the same dir and port; return once it accepts connections."""
        if self.running():
            return
        try:
            # Own session: Ctrl-C in a terminal must not stop the cluster
            # that `up` left running.
            self._run_as_owner([
                str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path),
                "-w", "-t", str(int(timeout)), "start"], start_new_session=True)
        except RuntimeError as e:
            raise RuntimeError(f"{e}\n--- tail of {self.log_path} ---\n{self.log_tail()}") from None

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """Stop the server: ``fast`` (clean, disconnects clients), ``immediate`` (as a crash)."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"stop mode {mode!r}: expected smart, fast or immediate")
        if not self.running():
            return
        self._run_as_owner([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode,
                            "-w", "-t", str(int(timeout)), "stop"])

    def restart(self, mode: str = "fast", timeout: float = 60) -> None:
        """Stop (``mode`` as for ``stop``) and start again; the URL stays the same."""
        self.stop(mode, timeout)
        self.start(timeout)

    def running(self) -> bool:
        """True while the postmaster named in postmaster.pid exists."""
        pid = self.pid
        return pid is not None and pid_running(pid)

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def remove(self) -> None:
        """Stop the server (immediately) and delete its directory.  Safe to call twice."""
        try:
            self.stop("immediate", timeout=30)
        except RuntimeError:
            pass  # the kill below takes care of it
        pid = self.pid
        if pid is not None and pid_running(pid):
            # The postmaster's children notice its death and exit by themselves.
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _wait(lambda: not pid_running(pid), 5)
        if (self.dir / MARKER).exists():
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- databases -------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create database ``name`` (lower-case identifier) and return its URL."""
        self.psql(f"CREATE DATABASE {_db_name(name)}", database="postgres")
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, disconnecting whoever still uses it."""
        self.psql(f"DROP DATABASE IF EXISTS {_db_name(name)} WITH (FORCE)", database="postgres")

    def psql(self, sql: str, database: str | None = None) -> str:
        """Run ``sql`` with psql over tcp; return its unaligned, tuples-only output.

        Raises RuntimeError with psql's message when the server refuses or the
        statement fails.
        """
        proc = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-d", self.url_for(database or self.database), "-c", sql],
            capture_output=True, text=True, env=_clean_env(), stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise RuntimeError(f"psql on {self.url_for(database or self.database)}: {proc.stderr.strip()}")
        return proc.stdout

    # -- helpers ---------------------------------------------------------

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as e:
            return f"(no log: {e})"

    def to_json(self) -> dict:
        return {"dir": str(self.dir), "port": self.port, "database": self.database,
                "bindir": str(self.bindir), "fast": self.fast, "url": self.url}

    @classmethod
    def from_json(cls, data: dict) -> PgCluster:
        return cls(data["dir"], data["port"], data["database"], data["bindir"], data["fast"])

    def _run_as_owner(self, cmd: list[str], start_new_session: bool = False) -> None:
        what = Path(cmd[0]).name + (f" {cmd[-1]}" if cmd[-1] in ("start", "stop") else "")
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", OWNER, "--", *cmd]
        # cwd: the owner may not be allowed into ours (e.g. /root).
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=self.dir, env=_clean_env(),
                              stdin=subprocess.DEVNULL, start_new_session=start_new_session)
        if proc.returncode != 0:
            output = proc.stderr.strip() or proc.stdout.strip()
            raise RuntimeError(f"{what} failed (exit {proc.returncode}) in {self.dir}: {output}")


def start_cluster(database: str = "brokerctl", base_dir: str | Path | None = None,
                  fast: bool = False, port: int | None = None, timeout: float = 60) -> PgCluster:
    """Make, start and return a cluster with ``database`` created.

    ``base_dir`` defaults to a fresh $TMPDIR/bkpg-XXXXXXXX (else /tmp; short: the unix
    socket lives there); a given one must be missing or empty.  ``port``
    defaults to a free one (another is tried if it is taken before the
    server binds it).  On failure nothing is left behind.
    """
    _db_name(database)
    reason = missing()
    if reason:
        raise RuntimeError(reason)
    bindir = find_bindir()
    if port is not None and listening(HOST, port):
        raise RuntimeError(f"port {port} on {HOST} is already in use")
    base = _make_base_dir(base_dir)
    cluster = PgCluster(base, port or free_port(HOST), database, bindir, fast)
    try:
        _write_state(cluster)  # before anything runs, so that `down` can clean up a half start
        cluster.init()
        for attempt in range(5):
            try:
                cluster.start(timeout)
                break
            except RuntimeError as e:
                # A free port can be taken between our probe and the bind.
                if port is not None or attempt == 4 or "could not bind" not in str(e).lower():
                    raise
                cluster.port = free_port(HOST)
                cluster.write_settings()
                _write_state(cluster)
        if database != "postgres":
            cluster.create_database(database)
    except BaseException:  # Ctrl-C included: leave nothing running
        cluster.remove()
        raise
    return cluster


def read_state(base: str | Path) -> PgCluster:
    """The cluster ``start_cluster`` recorded in ``base``, e.g. for another process to stop."""
    return PgCluster.from_json(json.loads((Path(base) / STATE_JSON).read_text()))


def _write_state(cluster: PgCluster) -> None:
    (cluster.dir / STATE_JSON).write_text(json.dumps(cluster.to_json(), indent=2) + "\n")


def _make_base_dir(base_dir: str | Path | None) -> Path:
    if base_dir is None:
        base = Path(tempfile.mkdtemp(prefix="bkpg-", dir=os.environ.get("TMPDIR") or "/tmp"))
    else:
        base = Path(base_dir).absolute()
        base.mkdir(parents=True, exist_ok=True)
        if any(base.iterdir()):
            raise RuntimeError(f"{base} is not empty: a cluster needs a dir of its own")
    (base / MARKER).touch()
    # The server's user owns the dir (initdb makes data/ in it, the server its socket).
    base.chmod(0o700)
    _chown_to_owner(base)
    return base


def _chown_to_owner(path: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam(OWNER)
        os.chown(path, user.pw_uid, user.pw_gid)


def _db_name(name: str) -> str:
    # Plain identifiers only: they need no quoting in SQL or in the URL.
    if not _DB_NAME.fullmatch(name):
        raise ValueError(f"database name {name!r}: use lower-case letters, digits and _"
                         f" (not starting with a digit, at most 63)")
    return name


def _clean_env() -> dict[str, str]:
    # PGHOST, PGDATABASE, PGOPTIONS... in the caller's environment would
    # redirect or reconfigure our commands.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}








def _wait(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="make and start a cluster, leave it running, print its URL")
    up.add_argument("--dir", help="cluster dir, missing or empty (default: a new /tmp/bkpg-*)")
    up.add_argument("--db", default="brokerctl", help="database to create (default: brokerctl)")
    up.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    up.add_argument("--fast", action="store_true",
                    help="fsync, synchronous_commit and full_page_writes off, small shared_buffers")
    restart = sub.add_parser("restart", help="stop and start the cluster in DIR")
    restart.add_argument("--dir", required=True)
    restart.add_argument("--immediate", action="store_true", help="stop as a crash would")
    down = sub.add_parser("down", help="stop the cluster in DIR and remove DIR")
    down.add_argument("--dir", required=True)
    args = parser.parse_args(argv)

    try:
        if args.cmd == "up":
            started = time.monotonic()
            cluster = start_cluster(args.db, args.dir, fast=args.fast, port=args.port)
            print(f"pgcluster: up in {time.monotonic() - started:.1f}s, state in {cluster.dir}",
                  file=sys.stderr)
            print(cluster.url)
            return 0
        state = Path(args.dir) / STATE_JSON
        if not state.exists():
            print(f"pgcluster: {state} not found", file=sys.stderr)
            return 1
        cluster = read_state(args.dir)
        if args.cmd == "restart":
            cluster.restart("immediate" if args.immediate else "fast")
        else:
            cluster.remove()
    except (RuntimeError, ValueError) as e:
        print(f"pgcluster: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
