"""Helpers for end-to-end tests: run the real CLI and a real controller process against a store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

LABEL_STORE = "brokerctl.store"


def cli(db: Path | str, *args: str, input: str | None = None, timeout: float = 60, check: bool = False,
        env: dict | None = None):
    """Run ``brokerctl --db DB ARGS`` in a child process (``db``: a store path or URL; ``env``: added to
    the environment); returns the CompletedProcess."""
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler", "--db", str(db), *args],
        input=input, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"brokerctl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def cli_json(db: Path, *args: str):
    return json.loads(cli(db, *args, "-o", "json", check=True).stdout)


class LoggedProcess:
    """A ``brokerctl`` child process whose output goes to ``self.log``; stopped with SIGTERM (or killed
    when it outlives the timeout) on exit. Subclasses say what it runs and when it has started."""

    log: Path
    proc: subprocess.Popen | None = None

    def _spawn(self, args: list[str], **env: str) -> None:
        self._out = open(self.log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "reconciler", *args], stdout=self._out,
                                     stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1", **env})

    def _check_alive(self, what: str) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"{what} exited at start:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        return self.proc.returncode

    def output(self) -> str:
        return self.log.read_text()

    def start(self):
        raise NotImplementedError

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ControllerProcess(LoggedProcess):
    """``brokerctl controller`` as a child process."""

    def __init__(self, db: Path | str, *extra: str):
        self.db, self.extra = db, extra
        self.proc: subprocess.Popen | None = None
        # Beside a store file; for a store URL, in a directory of its own.
        beside = Path(tempfile.mkdtemp(prefix="bkctl-")) / "store" if "://" in str(db) else Path(db)
        self.log = Path(str(beside) + f".controller-{time.monotonic_ns()}.log")

    def start(self) -> "ControllerProcess":
        self._spawn(["--db", str(self.db), "controller", *self.extra])
        wait_for(lambda: "controller started" in self.log.read_text() or self.proc.poll() is not None, 20,
                 "controller start")
        self._check_alive("controller")
        return self


def probe_once(address: str, tls: dict | None = None, timeout: float = 5.0):
    """One probe of ``address`` by the controller's ``Prober`` (the Node's ``tls``): None if the daemon
    answered, else the probe's message; and whether it kept the connection for its next probe."""
    from types import SimpleNamespace

    from reconciler.docker.probe import Prober

    prober = Prober(interval=60.0, timeout=timeout)
    prober.track({"n": SimpleNamespace(address=address, tls=tls)})
    prober.wait_first({"n"}, timeout + 2.0)
    state = prober.state("n")
    kept = prober._probes["n"].sock is not None
    prober.stop()
    return (None if state.ok else state.message), kept


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll ``predicate`` until it returns a truthy value; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def nodes_yaml(hosts, slots: dict[str, int] | None = None, labels: dict | None = None) -> str:
    docs = []
    for h in hosts:
        doc = {"apiVersion": "broker/v1", "kind": "Node", "metadata": {"name": h.name},
               "spec": {"address": h.address}}
        if slots is not None:
            doc["spec"]["slots"] = slots
        docs.append(json.dumps(doc))
    return "\n---\n".join(docs) + "\n"


def job_yaml(name: str, command="true", *, image: str = "busybox", template: dict | None = None, **spec) -> str:
    """A Job manifest; ``template`` adds to (or overrides) its template's image and command."""
    doc = {"apiVersion": "broker/v1", "kind": "Job", "metadata": {"name": name},
           "spec": {**spec, "template": {"image": image, "command": command, **(template or {})}}}
    return json.dumps(doc) + "\n"


# A Service's command that exits at once on SIGTERM (busy-box sh as PID 1 would otherwise wait out
# the grace period); ``{before}`` is run first.
SERVE = "trap 'exit 0' TERM; {before}sleep 3600 & wait"


def service_yaml(name: str, command: str, replicas: int = 1, template: dict | None = None, **spec) -> str:
    """A Service manifest running busybox ``command``; ``template`` adds to its template."""
    tpl = {"image": "busybox", "command": command, **(template or {})}
    return json.dumps({"apiVersion": "broker/v1", "kind": "Service", "metadata": {"name": name},
                       "spec": {"replicas": replicas, **spec, "template": tpl}}) + "\n"


def running(hosts, owner: str, healthy: bool = False) -> list[dict]:
    """The running containers of ``owner`` (``Service/web``) on ``hosts``; only healthy ones if asked."""
    found = [c for h in hosts for c in broker_containers(h, all=False)
             if c["Labels"].get("brokerctl.owner") == owner]
    return [c for c in found if "(healthy)" in c["Status"]] if healthy else found


def service_status(db: Path, name: str) -> dict:
    """The ``status`` of Service ``name`` as ``get services -o json`` shows it."""
    return cli_json(db, "get", "services", name)[0]["status"]


def broker_containers(host, all: bool = True) -> list[dict]:
    """Containers of any brokerctl store on a host (low-level, sparse list)."""
    client = docker.DockerClient(base_url=host.address, version="1.41", timeout=10)
    try:
        return client.api.containers(all=all, filters={"label": LABEL_STORE})
    finally:
        client.close()


def tasks_of(db: Path, owner: str) -> list[dict]:
    return [t for t in cli_json(db, "get", "tasks") if t["owner"] == owner]


class FakeClock:
    """Time for ``ops`` verbs that wait (``reconciler.ops.polling.Clock``) which moves only when they
    sleep: a test of a timeout takes no time. ``on_sleep(n)`` runs at the n-th sleep, so a test can
    change the world while the verb waits."""

    def __init__(self, on_sleep=None, start: float = 1_000_000.0):
        from reconciler.ops.polling import Clock

        self.now, self.sleeps, self.on_sleep = start, [], on_sleep
        self.clock = Clock(monotonic=lambda: self.now, sleep=self._sleep, time=lambda: self.now)

    def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))


class ServedApp:
    """An ASGI app served by uvicorn on a free port of 127.0.0.1, on a thread of the test process:
    real HTTP (streams arrive as they are sent) without a process of its own. ``url`` is its base."""

    def __init__(self, app):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    lifespan="on", timeout_graceful_shutdown=1))
        self.thread = None
        self.url = ""

    def __enter__(self) -> "ServedApp":
        import threading

        self.thread = threading.Thread(target=self.server.run, daemon=True, name="served-app")
        self.thread.start()
        wait_for(lambda: self.server.started or not self.thread.is_alive(), 10, "uvicorn to start")
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class ServerProcess(LoggedProcess):
    """``brokerctl server`` as a child process on a free port of 127.0.0.1 (``--listen 127.0.0.1:0``),
    with ``$XDG_STATE_HOME`` in ``state`` (where it writes its first admin token); stopped with SIGTERM
    (or killed) on exit. ``url`` is its base (https with ``--tls-cert``), ``admin`` the admin token it
    wrote, ``client(token)`` an httpx client of it."""

    def __init__(self, db: Path | str, state: Path, *extra: str, ca: Path | None = None):
        self.db, self.state, self.extra, self.ca = db, Path(state), extra, ca
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.log = self.state / f"server-{time.monotonic_ns()}.log"

    def start(self) -> "ServerProcess":
        import re

        self.state.mkdir(parents=True, exist_ok=True)
        self._spawn(["--db", str(self.db), "server", "--listen", "127.0.0.1:0", *self.extra],
                    XDG_STATE_HOME=str(self.state))

        def serving():
            found = re.search(r"serving the API on (\S+)/api/v1/", self.log.read_text())
            return found or self.proc.poll() is not None

        found = wait_for(serving, 30, "the server to bind")
        self._check_alive("server")
        self.url = found.group(1)
        wait_for(lambda: self._answers() or self.proc.poll() is not None, 20, "the server to answer")
        self._check_alive("server")
        return self

    def _answers(self) -> bool:
        import httpx

        try:
            return self.client().get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    @property
    def admin(self) -> str:
        return (self.state / "brokerctl" / "admin.token").read_text().strip()

    def client(self, token: str | None = None, timeout: float = 10):
        import ssl

        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout,
                            verify=ssl.create_default_context(cafile=str(self.ca)) if self.ca else True)


def _interruptible() -> None:
    """In a child before it runs: Ctrl-C's signal as a terminal delivers it. A suite started in the
    background of a non-interactive shell inherits SIGINT ignored, and so would the watch it signals."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Watching:
    """``brokerctl --db DB ARGS`` left running (`get -w`), its stdout read line by line on a thread."""

    def __init__(self, db: Path | str, *args: str):
        import queue
        import threading

        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self.proc = subprocess.Popen([sys.executable, "-m", "reconciler", "--db", str(db), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
                                     preexec_fn=_interruptible)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))

    def wait_line(self, predicate, timeout: float, what: str) -> str:
        """The first line from now on (or already read) for which ``predicate`` is true."""
        import queue

        for line in self.lines:
            if predicate(line):
                return line
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; printed:\n"
                                     + "\n".join(self.lines)) from None
            self.lines.append(line)
            if predicate(line):
                return line

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Send ``sig``; the exit code (the process is killed if it outlives ``timeout``)."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"still running {timeout}s after signal {sig}") from None


def editor(tmp_path, body: str) -> dict:
    """An $EDITOR that runs ``body`` (Python, with ``text`` the file's text and ``seen`` a list of the texts
    it was opened with so far, kept in a file) and saves ``text``; returns the env that names it."""
    log = tmp_path / "editor-seen.json"
    script = tmp_path / "editor.py"
    script.write_text(
        "import json, sys\n"
        f"log = {str(log)!r}\n"
        "path = sys.argv[1]\n"
        "text = open(path).read()\n"
        "try:\n    seen = json.load(open(log))\nexcept FileNotFoundError:\n    seen = []\n"
        "seen.append(text)\n"
        "json.dump(seen, open(log, 'w'))\n"
        f"{body}\n"
        "open(path, 'w').write(text)\n")
    return {"EDITOR": f"{sys.executable} {script}", "BROKER_EDITOR": "", "_seen": str(log)}


def seen(env) -> list[str]:
    """The texts the ``editor`` was opened with, in order."""
    return json.loads(Path(env["_seen"]).read_text())


def in_terminal(args: list[str], env: dict, prompt: bytes, keys: bytes, answer: bytes,
                timeout: float = 60) -> tuple[int, bytes]:
    """``python -m reconciler ARGS`` run from a terminal (a pty): once it has printed ``prompt``, ``keys``
    are typed; returns its exit code and all it printed (read until ``answer`` or the terminal closes)."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", *args], stdin=slave, stdout=slave, stderr=slave,
                            env=env)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        for wanted, then in ((prompt, keys), (answer, b"")):
            while wanted not in seen and time.monotonic() < deadline:
                try:
                    seen += os.read(master, 4096)
                except OSError:  # the terminal closed: the process ended
                    break
            if then:
                os.write(master, then)
        return proc.wait(timeout), seen
    finally:
        os.close(master)
