#!/usr/bin/env python3
"""Throwaway Docker daemons on one machine, for tests, the demo and benchmarks.

Each ``DockerHost`` is a private ``dockerd`` (with its own containerd) whose
state lives in one short directory and which listens on a unix socket in that
directory and on ``tcp://127.0.0.N:2375``.  Several run side by side, so one
machine can stand in for a fleet of Docker hosts.  Every daemon gets a tiny
``busybox:latest`` image imported from the local static busybox, because no
registry is reachable.

With ``tls=True`` the daemons listen on ``tcp://127.0.0.N:2376`` instead,
with ``--tlsverify``: only clients presenting a certificate from the
throwaway CA in ``BASE/tls`` (made by scripts/tlscerts.py) get in.  Each
daemon has a server certificate for its IP; ``BASE/tls/client`` holds a
client pair laid out for ``DOCKER_CERT_PATH``.

Callers:
  * ``tests/conftest.py`` (the ``docker_hosts`` fixture) imports this module;
  * the demo and benchmarks use the CLI::

        python scripts/dockerhosts.py up --count 3 [--dir DIR] [--first-ip 21] [--tls]
        python scripts/dockerhosts.py down --dir DIR

    ``up`` leaves the daemons running, writes ``DIR/hosts.json`` and prints
    one tcp address per line; ``down`` stops them and removes ``DIR``.

Needs root and ``dockerd`` (Debian: ``docker.io``) plus a static busybox
(Debian: ``busybox-static``), and ``openssl`` for ``tls``.  Stdlib and the
``docker`` SDK only.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import docker
import docker.constants
import docker.errors
import docker.tls

from procutil import listening, pid_running  # noqa: E402  (scripts/ is on sys.path)

PORT = 2375
TLS_PORT = 2376  # Docker's convention for the TLS endpoint
BUSYBOX = Path("/bin/busybox")
IMAGE = "busybox:latest"
IMAGE_CHANGES = ['CMD ["sh"]', "ENV PATH=/bin"]
# Applets the tests rely on; the image links every applet busybox has, this
# list only makes a busybox without them fail loudly when the image is built.
REQUIRED_APPLETS = (
    "sh sleep echo true false cat env ls printf kill test [ seq date head tail "
    "wc grep httpd nc id hostname touch mkdir rm"
).split()
MARKER = ".dockerhosts"  # a base dir holding this file may be removed wholesale
HOSTS_JSON = "hosts.json"
TLS_DIR = "tls"  # the CA and every pair it issued, inside the base dir

_tar_lock = threading.Lock()


def dockerd_path() -> str | None:
    # sbin is often missing from PATH outside a root login shell.
    return shutil.which("dockerd", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def dockerd_available() -> bool:
    """True when this process can run private Docker daemons."""
    return dockerd_path() is not None and os.geteuid() == 0


@dataclass(frozen=True)
class DaemonTLS:
    """The files of a daemon that serves tcp only to clients with a certificate from ``ca``.

    ``client_cert``/``client_key`` are a pair the same CA signed, for this
    module's own calls (readiness aside, which uses the unix socket) and for
    tests that need a client that gets in.
    """

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def client_config(self) -> docker.tls.TLSConfig:
        """The docker SDK's TLS settings for a client that the daemon lets in."""
        return docker.tls.TLSConfig(client_cert=(str(self.client_cert), str(self.client_key)),
                                    ca_cert=str(self.ca), verify=True)

    def to_json(self) -> dict:
        return {k: str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict) -> DaemonTLS:
        return cls(**{k: Path(v) for k, v in data.items()})


def tls_client(address: str, tls: docker.tls.TLSConfig, timeout: float = 10,
               version: str = "auto") -> docker.DockerClient:
    """A docker SDK client for a TLS daemon that checks the server against ``tls``'s CA only.

    requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` from the
    environment replace the CA a session was given (the SDK's client is a
    requests session).  With either set, as on many CI machines, the
    daemon's CA would be ignored: the right CA fails, and a failure with a
    wrong CA proves nothing.  So the client ignores the environment, and for
    ``version="auto"`` the version is asked by a client that does too (the
    SDK would ask before we could switch the environment off).
    """
    if version == "auto":
        # Pinned to the oldest version the SDK accepts, this client only asks
        # the unversioned /version endpoint.
        probe = tls_client(address, tls, timeout, docker.constants.MINIMUM_DOCKER_API_VERSION)
        try:
            version = probe.version(api_version=False)["ApiVersion"]
        except Exception as e:  # worded as the SDK words its own version probe's failure
            raise docker.errors.DockerException(f"Error while fetching server API version: {e}") from e
        finally:
            probe.close()
    client = docker.DockerClient(base_url=address, tls=tls, timeout=timeout, version=version)
    client.api.trust_env = False
    return client


class DockerHost:
    """One private dockerd, addressed by ``address`` (tcp) or ``unix_address``."""

    def __init__(self, name: str, dir: str | Path, ip: str, pid: int | None = None,
                 networking: bool = False, tls: DaemonTLS | None = None):
        self.name = name
        # networking: keep Docker's default bridge and iptables rules, so containers get a
        # network and published ports work. Only one daemon per machine may do this.
        self.networking = networking
        self.dir = Path(dir)
        self.ip = ip
        # tls: serve tcp on TLS_PORT with --tlsverify and nothing on PORT, so a
        # client without the right CA or certificate has no way in.
        self.tls = tls
        self.port = TLS_PORT if tls else PORT
        self.address = f"tcp://{ip}:{self.port}"
        self.unix_address = f"unix://{self.dir}/sock"
        self._proc: subprocess.Popen | None = None
        self._pid = pid  # set when the daemon was started by another process
        self._api_version: str | None = None

    def __repr__(self) -> str:
        return f"DockerHost({self.name!r}, {self.address!r}, pid={self.pid})"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else self._pid

    @property
    def log_path(self) -> Path:
        return self.dir / "log"

    # -- lifecycle -------------------------------------------------------

    def start(self, timeout: float = 30) -> None:
        """(Re)start the daemon on the same dirs and addresses; wait for /_ping.

        A restart after ``kill()`` acts like a machine reboot: what is left of
        the previous incarnation (containerd, shims, container processes) is
        killed first, so its containers come back exited and restart only
        per their restart policy.
        """
        if self.alive():
            self._wait_ready(timeout)
            return
        self._kill_leftovers()
        if listening(self.ip, self.port):
            # Otherwise the other daemon would answer our readiness ping.
            raise RuntimeError(f"{self.ip}:{self.port} is already in use (another dockerhosts run?)")
        # Pid files naming dead (possibly unreaped, zombie) processes make
        # dockerd refuse to start or adopt a containerd that will never answer.
        for pidfile in (self.dir / "pid", self.dir / "x" / "containerd" / "containerd.pid"):
            pidfile.unlink(missing_ok=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        # An empty config file shields the daemon from a host-wide
        # /etc/docker/daemon.json (e.g. one that sets "hosts" clashes with -H).
        config = self.dir / "daemon.json"
        if not config.exists():
            config.write_text("{}\n")
        d = self.dir
        dockerd = dockerd_path()
        if dockerd is None:
            raise RuntimeError("dockerd not found (Debian: apt-get install docker.io)")
        cmd = [
            dockerd,
            "--config-file", f"{d}/daemon.json",
            "--data-root", f"{d}/data",
            "--exec-root", f"{d}/x",
            "--pidfile", f"{d}/pid",
            "-H", f"unix://{d}/sock",
            "-H", f"tcp://{self.ip}:{self.port}",
            "--storage-driver=vfs",
        ]
        if self.tls:
            # dockerd applies these to every tcp -H; the unix socket stays plain.
            cmd += ["--tlsverify", "--tlscacert", str(self.tls.ca),
                    "--tlscert", str(self.tls.server_cert), "--tlskey", str(self.tls.server_key)]
        if self.networking:
            # A bridge of our own: a daemon started with --bridge=none deletes docker0 when it
            # starts, which would cut this one's containers off.
            cmd += ["--bridge", self._make_bridge()]
        else:
            cmd += ["--iptables=false", "--bridge=none"]
        with open(self.log_path, "ab") as log:
            # Own session: Ctrl-C in a terminal must not reach the daemons
            # before we have removed their containers, and `up` must leave
            # them running after it exits.
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._pid = None
        try:
            self._wait_ready(timeout)
        except BaseException:
            self._terminate(grace=5)
            self._kill_leftovers()
            raise

    @property
    def bridge(self) -> str:
        return f"bkbr{self.ip.rsplit('.', 1)[1]}"

    def _make_bridge(self) -> str:
        """Create (if missing) and bring up this host's bridge, 172.29.<last octet>.1/24."""
        name, octet = self.bridge, self.ip.rsplit(".", 1)[1]
        if not Path(f"/sys/class/net/{name}").exists():
            for args in (["link", "add", name, "type", "bridge"],
                         ["addr", "add", f"172.29.{octet}.1/24", "dev", name]):
                subprocess.run(["ip", *args], check=True, capture_output=True)
        subprocess.run(["ip", "link", "set", name, "up"], check=True, capture_output=True)
        return name

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise RuntimeError(
                    f"dockerd {self.name} ({self.address}) exited during start-up"
                    f"\n--- tail of {self.log_path} ---\n{self.log_tail()}")
            if self.ping(timeout=1):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"dockerd {self.name} ({self.address}) did not answer /_ping within"
                    f" {timeout:g}s\n--- tail of {self.log_path} ---\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Remove all containers, then stop the daemon and anything it left running."""
        if self.alive():
            # A SIGSTOPped daemon would neither answer nor handle SIGTERM.
            self.kill(signal.SIGCONT)
            try:
                # busybox sh as PID 1 ignores SIGTERM, so a graceful daemon
                # shutdown would wait 10 s per running container.
                self.remove_all_containers(timeout=15)
            except Exception:
                pass  # unresponsive daemon: the SIGKILL sweep below handles it
            self._terminate(grace=20)
        self._kill_leftovers()
        if self.networking:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to dockerd alone (SIGKILL, SIGSTOP, SIGCONT...).

        As after a real dockerd crash, SIGKILL leaves the containers running
        (under their shims) until ``start()`` or ``stop()``.
        """
        pid = self.pid
        if pid is None:
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if sig == signal.SIGKILL:
            self._wait_exit(5)

    def alive(self) -> bool:
        """True while the dockerd process exists (even when SIGSTOPped)."""
        if self._proc is not None:
            return self._proc.poll() is None
        return self._pid is not None and pid_running(self._pid)

    def ping(self, timeout: float = 2) -> bool:
        """True when the daemon answers /_ping within ``timeout``.

        Asks over the unix socket, which no other daemon can hold: a stray
        daemon on our tcp address must not pass for ours.  dockerd binds
        every -H address before it serves any, so this vouches for tcp too.
        """
        conn = _UnixHTTPConnection(self.dir / "sock", timeout=timeout)
        try:
            conn.request("GET", "/_ping")
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                self._api_version = resp.getheader("Api-Version") or self._api_version
                return True
            return False
        except OSError:
            return False
        finally:
            conn.close()

    def client(self, timeout: float = 10) -> docker.DockerClient:
        """A docker SDK client for the tcp address (with the CA's client pair on a TLS host).

        The API version learnt from /_ping is passed explicitly, so creating a
        client never talks to the daemon (and never hangs on a stopped one).
        """
        if self.tls:
            return tls_client(self.address, self.tls.client_config(), timeout=timeout,
                              version=self._api_version or "auto")
        return docker.DockerClient(
            base_url=self.address, version=self._api_version or "auto", timeout=timeout)

    def remove_all_containers(self, timeout: float = 30) -> None:
        """Force-remove every container on this daemon."""
        client = self.client(timeout=timeout)
        try:
            ids = [c["Id"] for c in client.api.containers(all=True)]
            if not ids:
                return

            def remove(cid: str) -> None:
                try:
                    client.api.remove_container(cid, force=True, v=True)
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError as e:
                    # Someone else is already removing it: that is fine.
                    if e.status_code != 409:
                        raise

            with ThreadPoolExecutor(max_workers=min(8, len(ids))) as pool:
                list(pool.map(remove, ids))
        finally:
            client.close()

    def import_image(self, tar_path: Path) -> None:
        """Import the busybox tar as ``busybox:latest``."""
        client = self.client(timeout=120)
        try:
            with open(tar_path, "rb") as f:
                # A file object rather than a path: given a path that fails
                # to open, the SDK would quietly try it as a URL.
                client.api.import_image(
                    src=f, repository="busybox", tag="latest", changes=IMAGE_CHANGES)
            client.api.inspect_image(IMAGE)  # raises if the import failed
        finally:
            client.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as e:
            return f"(no log: {e})"

    def to_json(self) -> dict:
        return {"name": self.name, "address": self.address, "unix_address": self.unix_address,
                "pid": self.pid, "dir": str(self.dir), "ip": self.ip, "networking": self.networking,
                "tls": self.tls.to_json() if self.tls else None}

    @classmethod
    def from_json(cls, data: dict) -> DockerHost:
        ip = data.get("ip") or data["address"].split("://", 1)[1].rsplit(":", 1)[0]
        tls = DaemonTLS.from_json(data["tls"]) if data.get("tls") else None
        return cls(data["name"], data["dir"], ip, pid=data.get("pid"),
                   networking=data.get("networking", False), tls=tls)

    # -- internals -------------------------------------------------------

    def _terminate(self, grace: float) -> None:
        pid = self.pid
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if not self._wait_exit(grace):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._wait_exit(5)

    def _wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _kill_leftovers(self) -> None:
        """SIGKILL whatever still runs on behalf of this host.

        After a SIGKILLed dockerd its containerd, the shims and the container
        processes live on.  dockerd, containerd and the shims all mention the
        host dir on their command line; container processes are their
        descendants (a shim is the parent of the container's init).
        """
        needle = f"{self.dir}/".encode()
        procs = _process_table()
        roots = {pid for pid, (_, cmdline) in procs.items() if needle in cmdline}
        victims = _descendants(procs, roots) - _ancestors(procs, os.getpid())
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while any(pid_running(p) for p in victims) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._proc is not None:
            self._proc.poll()  # reap our child
        self._remove_container_cgroups()

    def _remove_container_cgroups(self) -> None:
        # runc removes a container's cgroups when it exits normally; after a
        # SIGKILL sweep empty cgroups named after our container ids remain.
        # Only our ids are touched: other daemons share the "docker" parent.
        containers = self.dir / "data" / "containers"
        try:
            ids = [p.name for p in containers.iterdir()]
        except OSError:
            return
        roots = [Path("/sys/fs/cgroup")] + [p for p in Path("/sys/fs/cgroup").iterdir()
                                            if p.is_dir()]
        for cid in ids:
            for root in roots:
                try:
                    (root / "docker" / cid).rmdir()
                except OSError:
                    pass


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)






def _process_table() -> dict[int, tuple[int, bytes]]:
    """pid -> (ppid, raw cmdline) for every process."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, IndexError, ValueError):
            continue
        table[int(entry.name)] = (ppid, cmdline)
    return table


def _descendants(procs: dict[int, tuple[int, bytes]], roots: set[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def _ancestors(procs: dict[int, tuple[int, bytes]], pid: int) -> set[int]:
    found = set()
    while pid in procs and pid not in found:
        found.add(pid)
        pid = procs[pid][0]
    return found


def build_image_tar(dest: Path) -> Path:
    """Write a busybox root filesystem tar once and return its path.

    ``dest`` is the tar's path if it ends in ``.tar``, else a directory
    (created if needed) to hold ``busybox.tar``.  An existing tar is reused.
    """
    dest = Path(dest)
    if dest.suffix != ".tar":
        dest.mkdir(parents=True, exist_ok=True)
        dest = dest / "busybox.tar"
    with _tar_lock:
        if dest.exists():
            return dest
        if not BUSYBOX.exists():
            raise RuntimeError(f"{BUSYBOX} is missing (Debian: apt-get install busybox-static)")
        applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True,
                                 check=True).stdout.split()
        missing = sorted(set(REQUIRED_APPLETS) - set(applets))
        if missing:
            raise RuntimeError(f"{BUSYBOX} lacks applets: {' '.join(missing)}")
        tmp = dest.with_suffix(".tmp")
        with tarfile.open(tmp, "w") as tar:
            _tar_dir(tar, "bin", 0o755)
            tar.add(str(BUSYBOX.resolve()), arcname="bin/busybox")
            for applet in applets:
                if applet == "busybox" or "/" in applet:
                    continue
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
                tar.addfile(info)
            _tar_dir(tar, "tmp", 0o1777)
            _tar_dir(tar, "etc", 0o755)
            # `id`, `whoami` and httpd look names up in these.
            _tar_file(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
                                         b"nobody:x:65534:65534:nobody:/:/bin/false\n")
            _tar_file(tar, "etc/group", b"root:x:0:\nnogroup:x:65534:\n")
            _tar_dir(tar, "root", 0o700)
        tmp.rename(dest)
        return dest


def _tar_dir(tar: tarfile.TarFile, name: str, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, int(time.time())
    tar.addfile(info)


def _tar_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def start_hosts(count: int, base_dir: str | None = None, first_ip: int = 21,
                image: bool = True, network_first: bool = False,
                tls: bool = False) -> list[DockerHost]:
    """Start ``count`` daemons on 127.0.0.<first_ip>... in parallel.

    ``base_dir`` defaults to a fresh $TMPDIR/bkh-XXXXXXXX (else /tmp; kept short: unix
    socket paths are limited to ~100 chars).  With ``image`` every daemon
    gets ``busybox:latest``.  With ``network_first`` the first daemon keeps
    the default bridge and iptables (container networking, published ports);
    the others run with ``--bridge=none``.  With ``tls`` every daemon serves
    tcp on port 2376 with ``--tlsverify`` (see ``DaemonTLS``; the CA is
    ``BASE/tls/ca.pem``, reused if ``base_dir`` already has one).  On failure
    every daemon already started is stopped and the error re-raised.
    """
    if count < 1 or first_ip < 1 or first_ip + count - 1 > 254:
        raise ValueError(f"cannot place {count} hosts from 127.0.0.{first_ip}")
    if base_dir is None:
        base = Path(tempfile.mkdtemp(prefix="bkh-", dir=os.environ.get("TMPDIR") or "/tmp"))
    else:
        base = Path(base_dir).absolute()
        base.mkdir(parents=True, exist_ok=True)
        if any(base.iterdir()) and not (base / MARKER).exists():
            raise RuntimeError(f"{base} is not empty and was not made by dockerhosts")
    (base / MARKER).touch()
    hosts = [DockerHost(f"h{i + 1}", base / f"h{i + 1}", f"127.0.0.{first_ip + i}",
                        networking=network_first and i == 0)
             for i in range(count)]
    taken = [str(h.dir) for h in hosts if h.dir.exists()]
    if taken:
        # start() would treat them as crashed hosts and kill what runs there.
        raise RuntimeError(f"{', '.join(taken)} already exist: stop those hosts first")
    if tls:
        hosts = [DockerHost(h.name, h.dir, h.ip, networking=h.networking,
                            tls=issue_daemon_tls(base, h.name, h.ip)) for h in hosts]
    tar = build_image_tar(base) if image else None
    # Written before anything starts, so that `down` can clean up after a
    # start that crashed half-way; the second write adds the pids.
    write_hosts_json(base, hosts)

    def bring_up(host: DockerHost) -> None:
        host.start()
        if tar is not None:
            host.import_image(tar)

    try:
        with ThreadPoolExecutor(max_workers=count) as pool:
            for future in [pool.submit(bring_up, h) for h in hosts]:
                future.result()
    except BaseException:  # Ctrl-C included: leave nothing running
        stop_hosts(hosts)
        raise
    write_hosts_json(base, hosts)
    return hosts


def issue_daemon_tls(base: Path, name: str, ip: str) -> DaemonTLS:
    """Certificates for daemon ``name`` on ``ip``, from the CA in ``base/tls`` (made if missing)."""
    import tlscerts  # a sibling in scripts/; only TLS hosts need it

    ca = tlscerts.CertAuthority.create(base / TLS_DIR, name="dockerhosts test CA")
    server = ca.server(name, ips=(ip,))
    client = tlscerts.CertPair(ca.dir / "client")
    if not client.cert.exists():
        client = ca.client("client")
    return DaemonTLS(ca=ca.cert, server_cert=server.cert, server_key=server.key,
                     client_cert=client.cert, client_key=client.key)


def write_hosts_json(base: Path, hosts: list[DockerHost]) -> None:
    (base / HOSTS_JSON).write_text(json.dumps([h.to_json() for h in hosts], indent=2) + "\n")


def read_hosts_json(base: str | Path) -> list[DockerHost]:
    """The hosts ``start_hosts`` recorded in ``base``, e.g. for another process to stop."""
    return [DockerHost.from_json(d) for d in json.loads((Path(base) / HOSTS_JSON).read_text())]


def stop_hosts(hosts: list[DockerHost]) -> None:
    """Stop every host, then delete their dirs and (if ours) their base dir.

    Safe to call twice and after ``kill()``/SIGSTOP of any daemon.
    """
    hosts = list(hosts)
    if not hosts:
        return
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        futures = [pool.submit(h.stop) for h in hosts]
    errors = [f.exception() for f in futures if f.exception() is not None]
    for host in hosts:
        _remove_tree(host.dir)
    for base in {h.dir.parent for h in hosts}:
        # Only a base dir we made, and only once no other host lives in it
        # (the CA's dir is no host).
        if (base / MARKER).exists() and not any(p.is_dir() and p.name != TLS_DIR
                                                for p in base.iterdir()):
            _remove_tree(base)
    if errors:
        raise errors[0]


def _remove_tree(path: Path) -> None:
    if not path.exists():
        return
    # netns and shm bind mounts can outlive a killed daemon; rm -rf would
    # fail on them or, worse, descend into them.
    prefix = f"{path}/"
    with open("/proc/mounts") as f:
        mounts = [_unescape_mount(line.split()[1]) for line in f]
    for mnt in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-R", "-l", mnt], capture_output=True)
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


def _unescape_mount(field: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as octal.
    return (field.replace("\\040", " ").replace("\\011", "\t")
            .replace("\\012", "\n").replace("\\134", "\\"))


def _cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start daemons and leave them running")
    up.add_argument("--count", type=int, default=3)
    up.add_argument("--dir", help="base dir (default: a new /tmp/bkh-*)")
    up.add_argument("--first-ip", type=int, default=21, help="last octet of the first 127.0.0.N")
    up.add_argument("--no-image", action="store_true", help="skip importing busybox:latest")
    up.add_argument("--network-first", action="store_true",
                    help="give the first daemon the default bridge and iptables (published ports)")
    up.add_argument("--tls", action="store_true",
                    help=f"serve tcp on port {TLS_PORT} with --tlsverify; certificates in DIR/{TLS_DIR}")
    down = sub.add_parser("down", help="stop the daemons listed in DIR/hosts.json, remove DIR")
    down.add_argument("--dir", required=True)
    args = parser.parse_args(argv)

    if args.cmd == "up":
        if not dockerd_available():
            print("dockerhosts: need root and dockerd (apt-get install docker.io)", file=sys.stderr)
            return 1
        started = time.monotonic()
        try:
            hosts = start_hosts(args.count, args.dir, args.first_ip, image=not args.no_image,
                                network_first=args.network_first, tls=args.tls)
        except (RuntimeError, TimeoutError, ValueError) as e:
            print(f"dockerhosts: {e}", file=sys.stderr)
            return 1
        base = hosts[0].dir.parent
        print(f"dockerhosts: {len(hosts)} daemons up in {time.monotonic() - started:.1f}s,"
              f" state in {base}", file=sys.stderr)
        if args.tls:
            print(f"dockerhosts: client: DOCKER_TLS_VERIFY=1"
                  f" DOCKER_CERT_PATH={hosts[0].tls.client_cert.parent}", file=sys.stderr)
        for h in hosts:
            print(h.address)
        return 0

    base = Path(args.dir)
    listing = base / HOSTS_JSON
    if not listing.exists():
        print(f"dockerhosts: {listing} not found", file=sys.stderr)
        return 1
    stop_hosts(read_hosts_json(base))
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
