#!/usr/bin/env python3
"""A throwaway private image registry with basic auth, for tests that pull with credentials.

A ``Registry`` is Debian's ``docker-registry`` (the CNCF distribution
registry, v2) run as a plain process with its own config, htpasswd file and
storage in one directory ($TMPDIR/bkreg-XXXXXXXX, else /tmp), serving plain HTTP on
127.0.0.1 (or another loopback address) and a free port.  Every request
needs a user from its htpasswd file (bcrypt entries made by ``htpasswd -B``).

Plain HTTP on loopback needs no daemon flags: dockerd always counts
127.0.0.0/8 as an insecure registry, so every daemon on the machine may
push and pull over http there.  A TLS registry would instead need its CA in
/etc/docker/certs.d/HOST:PORT/, which every dockerd on the machine shares.

Callers:
  * tests import this module (``start_registry()``, ``push_image()``, and
    ``auth_config()`` for the docker SDK's ``auth_config=``);
  * people use the CLI::

        python scripts/dockerregistry.py up [--dir DIR] [--ip 127.0.0.1] [--port N]
                                            [--user NAME] [--password PW]
        python scripts/dockerregistry.py down --dir DIR

    ``up`` leaves the registry running, writes ``DIR/registry.json`` (with
    the credentials) and prints its address (HOST:PORT, the prefix of image
    references); ``down`` stops it and removes ``DIR``.

Needs ``docker-registry`` and ``htpasswd`` (Debian: ``apt-get install
docker-registry apache2-utils``).  Stdlib, plus the ``docker`` SDK for
``push_image``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procutil import free_port, listening, pid_running

REGISTRY_BIN = "docker-registry"
MARKER = ".dockerregistry"  # a dir holding this file may be removed wholesale
STATE_JSON = "registry.json"
INSTALL_HINT = "Debian: apt-get install docker-registry apache2-utils"
# bcrypt cost: the registry checks the password on every request, and at
# htpasswd's default (5) that is already the bulk of a small pull's time.
BCRYPT_COST = 4


def missing() -> str | None:
    """Why no registry can start here, or None when one can."""
    for tool in (REGISTRY_BIN, "htpasswd"):
        if shutil.which(tool) is None:
            return f"{tool} not found ({INSTALL_HINT})"
    return None


class Registry:
    """One private registry process serving ``address`` (HOST:PORT) over plain HTTP."""

    def __init__(self, dir: str | Path, ip: str, port: int, users: dict[str, str],
                 pid: int | None = None):
        self.dir = Path(dir)
        self.ip = ip
        self.port = port
        self.users = dict(users)  # user -> password, in the clear: test credentials only
        self._proc: subprocess.Popen | None = None
        self._pid = pid  # set when another process started it

    def __repr__(self) -> str:
        return f"Registry({self.address!r}, pid={self.pid})"

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    @property
    def address(self) -> str:
        """HOST:PORT, as image references and ``serveraddress`` spell it."""
        return f"{self.ip}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else self._pid

    @property
    def log_path(self) -> Path:
        return self.dir / "log"

    @property
    def user(self) -> str:
        """The first user, for callers that need just one."""
        return next(iter(self.users))

    def auth_config(self, user: str | None = None, password: str | None = None) -> dict:
        """The docker SDK's ``auth_config`` for ``user`` (default: the first one).

        ``password`` overrides the user's real one, e.g. to show a wrong
        password being refused.
        """
        user = user or self.user
        return {"username": user, "password": password if password is not None else self.users[user],
                "serveraddress": self.address}

    # -- lifecycle -------------------------------------------------------

    def write_config(self) -> None:
        """Write config.yml and the htpasswd file for ``users``."""
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        lines = [_htpasswd_line(user, password) for user, password in self.users.items()]
        htpasswd = self.dir / "htpasswd"
        htpasswd.write_text("".join(lines))
        htpasswd.chmod(0o600)
        # JSON is YAML: no YAML writer needed.  A fixed http secret keeps the
        # registry from warning that it made one up.
        config = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.dir / "data")},
                        "delete": {"enabled": True}},
            "http": {"addr": self.address, "secret": secrets.token_hex(16)},
            "auth": {"htpasswd": {"realm": "brokerctl-test", "path": str(htpasswd)}},
        }
        (self.dir / "config.yml").write_text(json.dumps(config, indent=2) + "\n")

    def start(self, timeout: float = 30) -> None:
        """Start the registry process; return once it answers on ``address``."""
        if self.alive():
            return
        if listening(self.ip, self.port):
            raise RuntimeError(f"{self.address} is already in use")
        exe = shutil.which(REGISTRY_BIN)
        if exe is None:
            raise RuntimeError(f"{REGISTRY_BIN} not found ({INSTALL_HINT})")
        # REGISTRY_* variables would override the config file.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        with open(self.log_path, "ab") as log:
            # Own session: Ctrl-C in a terminal must not stop what `up` left running.
            self._proc = subprocess.Popen(
                [exe, "serve", str(self.dir / "config.yml")], stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self._pid = None
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise RuntimeError(f"registry on {self.address} exited during start-up"
                                   f"\n--- tail of {self.log_path} ---\n{self.log_tail()}")
            try:
                # With auth on, /v2/ answers 401 to a request without credentials.
                if self.get("/v2/", auth=False)[0] == 401:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"registry on {self.address} did not answer within {timeout:g}s"
                                   f"\n--- tail of {self.log_path} ---\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the registry process (SIGTERM, then SIGKILL)."""
        pid = self.pid
        if pid is None or not self.alive():
            self._reap()
            return
        for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not self.alive():
                break
        self._reap()

    def remove(self) -> None:
        """Stop the registry and delete its directory.  Safe to call twice."""
        self.stop()
        if (self.dir / MARKER).exists():
            shutil.rmtree(self.dir, ignore_errors=True)

    def alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self._pid is not None and pid_running(self._pid)

    def _reap(self) -> None:
        if self._proc is not None:
            self._proc.poll()

    # -- the registry's HTTP API -------------------------------------------

    def get(self, path: str, auth: bool = True, timeout: float = 5) -> tuple[int, bytes]:
        """GET ``path`` from the registry API (with the first user's credentials): status, body."""
        headers = {}
        if auth:
            token = base64.b64encode(f"{self.user}:{self.users[self.user]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        conn = http.client.HTTPConnection(self.ip, self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def tags(self, repository: str) -> list[str]:
        """The tags ``repository`` has in the registry ([] if it has none)."""
        status, body = self.get(f"/v2/{repository}/tags/list")
        if status == 404:
            return []
        if status != 200:
            raise RuntimeError(f"registry {self.address}: GET tags of {repository}: {status} {body!r}")
        return json.loads(body).get("tags") or []

    # -- helpers ---------------------------------------------------------

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as e:
            return f"(no log: {e})"

    def to_json(self) -> dict:
        return {"dir": str(self.dir), "ip": self.ip, "port": self.port, "address": self.address,
                "users": self.users, "pid": self.pid}

    @classmethod
    def from_json(cls, data: dict) -> Registry:
        return cls(data["dir"], data["ip"], data["port"], data["users"], pid=data.get("pid"))


def start_registry(base_dir: str | Path | None = None, ip: str = "127.0.0.1",
                   port: int | None = None, users: dict[str, str] | None = None,
                   timeout: float = 30) -> Registry:
    """Start and return a registry.

    ``base_dir`` defaults to a fresh $TMPDIR/bkreg-XXXXXXXX (else /tmp; a given one must be
    missing or empty); ``port`` to a free one on ``ip``; ``users`` to one
    user ``tester`` with a random password.  On failure nothing is left
    behind.
    """
    reason = missing()
    if reason:
        raise RuntimeError(reason)
    users = users or {"tester": secrets.token_urlsafe(12)}
    for user in users:
        if not user or ":" in user:
            raise ValueError(f"registry user {user!r}: must be non-empty and without ':'")
    base = _make_base_dir(base_dir)
    registry = Registry(base, ip, port or free_port(ip), users)
    try:
        registry.write_config()
        registry.start(timeout)
        _write_state(registry)
    except BaseException:
        registry.remove()
        raise
    return registry


def read_state(base: str | Path) -> Registry:
    """The registry ``start_registry`` recorded in ``base``, e.g. for another process to stop."""
    return Registry.from_json(json.loads((Path(base) / STATE_JSON).read_text()))


def push_image(client, registry: Registry, image: str = "busybox:latest",
               repository: str | None = None, tag: str = "latest",
               auth_config: dict | None = None) -> str:
    """Tag ``image`` as ``REGISTRY/repository:tag`` on ``client``'s daemon and push it.

    ``client`` is a docker SDK ``DockerClient``; ``repository`` defaults to
    the image's name without its tag, ``auth_config`` to the registry's
    first user.  Returns the pushed reference.  The daemon reports push
    errors inside its progress stream, not as an HTTP status: they are
    raised here as RuntimeError with the daemon's message.
    """
    repository = repository or image.rsplit(":", 1)[0]
    target = f"{registry.address}/{repository}"
    client.images.get(image).tag(target, tag)
    auth = auth_config if auth_config is not None else registry.auth_config()
    for event in client.api.push(target, tag, stream=True, decode=True, auth_config=auth):
        if "error" in event:
            raise RuntimeError(f"push of {target}:{tag} failed: {event['error']}")
    return f"{target}:{tag}"


def forget_images(client, registry: Registry) -> None:
    """Remove every tag naming ``registry`` from ``client``'s daemon (never the image pushed from),
    so that the next start there must pull."""
    for image in client.images.list():
        for tag in image.tags:
            if tag.startswith(f"{registry.address}/"):
                client.images.remove(tag, force=True)


def _htpasswd_line(user: str, password: str) -> str:
    # -i: the password comes on stdin, not on a command line others can read.
    proc = subprocess.run(["htpasswd", "-n", "-i", "-B", "-C", str(BCRYPT_COST), user],
                          input=password, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"htpasswd failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.strip() + "\n"


def _write_state(registry: Registry) -> None:
    path = registry.dir / STATE_JSON
    path.write_text(json.dumps(registry.to_json(), indent=2) + "\n")
    path.chmod(0o600)


def _make_base_dir(base_dir: str | Path | None) -> Path:
    if base_dir is None:
        base = Path(tempfile.mkdtemp(prefix="bkreg-", dir=os.environ.get("TMPDIR") or "/tmp"))
    else:
        base = Path(base_dir).absolute()
        base.mkdir(parents=True, exist_ok=True)
        if any(base.iterdir()):
            raise RuntimeError(f"{base} is not empty: a registry needs a dir of its own")
    (base / MARKER).touch()
    return base








def _cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start a registry, leave it running, print HOST:PORT")
    up.add_argument("--dir", help="registry dir, missing or empty (default: a new /tmp/bkreg-*)")
    up.add_argument("--ip", default="127.0.0.1", help="loopback address to serve on")
    up.add_argument("--port", type=int, help="port (default: a free one)")
    up.add_argument("--user", default="tester")
    up.add_argument("--password", help="default: a random one, shown on stderr")
    down = sub.add_parser("down", help="stop the registry in DIR and remove DIR")
    down.add_argument("--dir", required=True)
    args = parser.parse_args(argv)

    try:
        if args.cmd == "up":
            started = time.monotonic()
            password = args.password or secrets.token_urlsafe(12)
            registry = start_registry(args.dir, args.ip, args.port, {args.user: password})
            print(f"dockerregistry: up in {time.monotonic() - started:.1f}s, state in {registry.dir};"
                  f" user {args.user!r}, password {password!r}", file=sys.stderr)
            print(registry.address)
            return 0
        state = Path(args.dir) / STATE_JSON
        if not state.exists():
            print(f"dockerregistry: {state} not found", file=sys.stderr)
            return 1
        read_state(args.dir).remove()
    except (RuntimeError, TimeoutError, ValueError) as e:
        print(f"dockerregistry: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
