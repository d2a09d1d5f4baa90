"""Node health off the loop: one thread per node pings its daemon. Called by the controller."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .host import Host
from .threads import PerHost


@dataclass(frozen=True)
class ProbeState:
    """What the probes of one node found; ``failures`` counts consecutive failed probes."""

    ok: bool = False
    last_ok: float | None = None
    failures: int = 0
    failing_since: float | None = None
    message: str = "not probed yet"


class Prober(PerHost):
    """Pings every node (``/_ping`` with a short timeout) on its own schedule, one thread each.

    A hung or dead daemon costs its own thread a timeout, never the controller's loop or the
    other nodes. ``on_change`` is called when a node starts or stops answering. A probe that did
    not run (a busy machine) is not a failure: only probes that ran and failed count.
    """

    def __init__(self, interval: float = 1.0, timeout: float = 1.0,
                 on_change: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.time):
        super().__init__(self._loop, "probe")
        self.interval, self.timeout, self.on_change, self.clock = interval, timeout, on_change, clock
        self._states: dict[str, ProbeState] = {}
        self._lock = threading.Lock()

    def state(self, name: str) -> ProbeState:
        with self._lock:
            return self._states.get(name, ProbeState())

    def _forget(self, name: str) -> None:
        with self._lock:
            self._states.pop(name, None)

    def wait_first(self, names: set[str], timeout: float, stop: threading.Event | None = None) -> None:
        """Wait (at most ``timeout``, or until ``stop``) until each named node has been probed once."""
        deadline = self.clock() + timeout
        while self.clock() < deadline and not (stop is not None and stop.is_set()):
            with self._lock:
                if names <= self._states.keys():
                    return
            time.sleep(0.01)

    def _loop(self, host: "Host", quit_: threading.Event) -> None:
        pinger = Pinger(host.address, host.tls, self.timeout)
        while not quit_.is_set():
            began = self.clock()
            message = pinger.ping()
            if not quit_.is_set():
                self._record(host.name, message is None, message or "", self.clock())
            quit_.wait(max(0.0, self.interval - (self.clock() - began)))
        pinger.close()

    def _record(self, name: str, ok: bool, message: str, now: float) -> None:
        with self._lock:
            old = self._states.get(name, ProbeState())
            if ok:
                new = ProbeState(ok=True, last_ok=now)
            else:
                new = ProbeState(ok=False, last_ok=old.last_ok, failures=old.failures + 1,
                                 failing_since=old.failing_since if old.failures else now, message=message)
            self._states[name] = new
        if new.ok != old.ok or new.failures == 2:
            self.on_change()



class Pinger:
    """``GET /_ping`` on one kept-alive connection, with the standard library's HTTP client.

    Every node is pinged every second; through the Docker SDK (requests) a ping costs about 1 ms of
    CPU, which at 1,000 nodes is a whole core; this costs a seventh of that. TLS is the Node's
    (client certificate; its CA verifies the daemon, as the SDK's client does); ``unix://`` goes
    through the socket file. A failed ping drops the connection: a restarted daemon needs a new one.
    """

    def __init__(self, address: str, tls: dict | None, timeout: float):
        self.address, self.tls, self.timeout = address, tls, timeout
        self._conn: http.client.HTTPConnection | None = None

    def ping(self) -> str | None:
        """None if the daemon answered ``OK``; else why not, briefly."""
        try:
            if self._conn is None:
                self._conn = self._connect()
            self._conn.request("GET", "/_ping", headers={"Host": "docker"})
            response = self._conn.getresponse()
            body = response.read()
            if response.status == 200:
                return None
            message = f"ping answered HTTP {response.status}: {body[:200].decode(errors='replace').strip()}"
        except (TimeoutError, socket.timeout):
            message = "Docker API timed out"
        except ssl.SSLError as exc:
            message = f"TLS: {exc}"[:200]
        except (ConnectionError, socket.gaierror):
            message = "connection refused or unreachable"
        except (OSError, http.client.HTTPException) as exc:
            message = (str(exc).strip() or type(exc).__name__)[:200]
        self.close()
        return message

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self) -> http.client.HTTPConnection:
        scheme, _, rest = self.address.partition("://")
        if scheme == "unix":
            return _UnixConnection("/" + rest.lstrip("/"), self.timeout)
        host, _, port = rest.rpartition(":")
        host = host.strip("[]")
        if not self.tls:
            return http.client.HTTPConnection(host, int(port), timeout=self.timeout)
        return http.client.HTTPSConnection(host, int(port), timeout=self.timeout, context=tls_context(self.tls))


def tls_context(tls: dict) -> ssl.SSLContext:
    """The Node's TLS as the Docker SDK applies it: its CA (when given) verifies the daemon, its
    certificate and key identify us."""
    if tls.get("caFile"):
        context = ssl.create_default_context(cafile=tls["caFile"])
    else:  # no CA named: like the SDK's TLSConfig(verify=False)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    if tls.get("certFile") and tls.get("keyFile"):
        context.load_cert_chain(tls["certFile"], tls["keyFile"])
    return context


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock
