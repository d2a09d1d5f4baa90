"""Node health off the loop: one thread pings every node's daemon. Called by the controller.

One selector loop (the standard library's ``selectors``) keeps a connection to each daemon and
sends it ``GET /_ping`` every ``interval``. Connecting, the TLS handshake, the request and the
answer all advance without blocking, each probe against its own deadline, so a hung or dead
daemon costs its own probe a timeout, never the other nodes' probes or the controller's loop. At
1,000 nodes this is one thread instead of a thousand, whose wake-ups (each taking the
interpreter's lock once a second) slowed the controller's passes several times over.
"""

from __future__ import annotations

import errno
import heapq
import http.client
import logging
import selectors
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .client import API_VERSION, CALLS, ApiStatusError, brief, tls_context
from .host import Host

log = logging.getLogger("brokerctl.probe")
REQUEST = f"GET /v{API_VERSION}/_ping HTTP/1.1\r\nHost: docker\r\n\r\n".encode()
_PENDING = (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN)


@dataclass(frozen=True)
class ProbeState:
    """What the probes of one node found; ``failures`` counts consecutive failed probes."""

    ok: bool = False
    last_ok: float | None = None
    failures: int = 0
    failing_since: float | None = None
    message: str = "not probed yet"


class _Answer:
    """An HTTP response read as it comes: done once its headers and body (Content-Length, chunked,
    or up to the end of the connection) are in."""

    def __init__(self):
        self.data = b""
        self.status: int | None = None
        self.keep = True  # whether the connection may carry the next probe

    def add(self, chunk: bytes) -> bool:
        """Take the next bytes (b"": the daemon closed the connection); whether the answer is whole."""
        if not chunk:
            if self.status is None and b"\r\n\r\n" not in self.data:
                raise http.client.RemoteDisconnected("Remote end closed connection without response")
            self.keep = False
            return self._parse(closed=True)
        self.data += chunk
        return self._parse(closed=False)

    def body(self) -> bytes:
        return self.data.partition(b"\r\n\r\n")[2]

    def _parse(self, closed: bool) -> bool:
        head, sep, body = self.data.partition(b"\r\n\r\n")
        if not sep:
            return False
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        try:
            self.status = int(rest[:3])
        except ValueError:
            raise http.client.BadStatusLine(lines[0]) from None
        headers = {k.strip().lower(): v.strip().lower() for k, _, v in (line.partition(":") for line in lines[1:])}
        if version == "HTTP/1.0" or headers.get("connection") == "close":
            self.keep = False
        if "content-length" in headers:
            return len(body) >= int(headers["content-length"])
        if headers.get("transfer-encoding") == "chunked":
            return body.endswith(b"0\r\n\r\n")
        self.keep = False  # no length: the body ends with the connection
        return closed


class _Probe:
    """One node's kept connection and the probe under way on it, advanced by the selector loop."""

    def __init__(self, name: str, address: str, tls: dict | None, timeout: float):
        self.name, self.address, self.tls, self.timeout = name, address, tls, timeout
        self.sock: socket.socket | None = None
        self.step: str | None = None  # connect, handshake, send, receive; None: idle between probes
        self.events = 0  # what the selector watches the socket for (0: not registered)
        self.deadline = self.began = 0.0
        self.fresh = False  # the connection was made by this probe (a kept one may have been closed meanwhile)
        self.answer = _Answer()
        self.unsent = b""

    def begin(self, now: float) -> None:
        """Start a probe: on the kept connection, or on a new one."""
        self.began, self.deadline = now, now + self.timeout
        if self.sock is None:
            self._connect()
        else:
            self.fresh = False
            self._request()

    def _connect(self) -> None:
        scheme, _, rest = self.address.partition("://")
        if scheme == "unix":
            sock, target = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), "/" + rest.lstrip("/")
        else:
            host, _, port = rest.rpartition(":")
            family, kind, proto, _, target = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)[0]
            sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        self.sock, self.fresh, self.step = sock, True, "connect"
        code = sock.connect_ex(target)
        if code not in _PENDING:
            raise OSError(code, errno.errorcode.get(code, str(code)))

    def _request(self) -> None:
        self.answer, self.unsent, self.step = _Answer(), REQUEST, "send"

    def advance(self) -> bool:
        """Go as far as the socket allows without blocking; whether the probe is over (and the
        daemon answered 200). Raises what went wrong."""
        while True:
            try:
                if self.step == "connect":
                    code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code in _PENDING[1:]:
                        self.events = selectors.EVENT_WRITE
                        return False
                    if code:
                        raise OSError(code, errno.errorcode.get(code, str(code)))
                    if self.tls:
                        host = self.address.partition("://")[2].rpartition(":")[0].strip("[]")
                        self.sock = tls_context(self.tls).wrap_socket(self.sock, server_hostname=host,
                                                                      do_handshake_on_connect=False)
                        self.step = "handshake"
                    else:
                        self._request()
                elif self.step == "handshake":
                    self.sock.do_handshake()
                    self._request()
                elif self.step == "send":
                    sent = self.sock.send(self.unsent)
                    if sent == len(self.unsent):
                        CALLS.count("GET", "/_ping")
                    self.unsent = self.unsent[sent:]
                    if not self.unsent:
                        self.step = "receive"
                elif self.step == "receive":
                    if self.answer.add(self.sock.recv(65536)):
                        return self._answered()
            except ssl.SSLWantReadError:
                self.events = selectors.EVENT_READ
                return False
            except (ssl.SSLWantWriteError, BlockingIOError):
                self.events = selectors.EVENT_READ if self.step == "receive" else selectors.EVENT_WRITE
                return False

    def _answered(self) -> bool:
        answer, self.step = self.answer, None
        if not answer.keep:
            self.close()
        if answer.status != 200:
            self.close()
            body = answer.body()[:200].decode(errors="replace").strip()
            raise ApiStatusError(f"/_ping answered HTTP {answer.status}: {body}")
        return True

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.step = None, None


class Prober:
    """Pings every node (``/_ping`` with a short timeout) every ``interval`` from one thread.

    ``track`` follows the node list; ``state`` is what the probes of a node found. A node whose
    probe fails has its connection dropped (a restarted daemon needs a new one). ``on_change`` is
    called when a node starts or stops answering. A probe that did not run (a busy machine) is not
    a failure: only probes that ran and failed count.
    """

    def __init__(self, interval: float = 1.0, timeout: float = 1.0,
                 on_change: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.time):
        self.interval, self.timeout, self.on_change, self.clock = interval, timeout, on_change, clock
        self._states: dict[str, ProbeState] = {}
        self._lock = threading.Lock()
        self._wanted: dict[str, tuple[str, dict | None]] = {}  # what ``track`` asked for: name -> (address, tls)
        self._probes: dict[str, _Probe] = {}  # the loop's own
        self._watched: dict[str, tuple[socket.socket, int]] = {}  # node -> the socket the selector watches, for what
        self._due: list[tuple[float, int, str]] = []  # (when, serial, name): the next probe of each node
        self._deadlines: list[tuple[float, int, str, float]] = []  # (deadline, serial, name, began): probes under way
        self._serial = 0
        self._quit = threading.Event()
        self._thread: threading.Thread | None = None
        self._selector = selectors.DefaultSelector()
        self._bell, self._ear = socket.socketpair()  # rung to wake the loop for a new node list or stop
        self._ear.setblocking(False)
        self._selector.register(self._ear, selectors.EVENT_READ)

    def track(self, hosts: dict[str, Host]) -> None:
        """Probe these hosts (a node removed or readdressed is dropped, and its state forgotten)."""
        wanted = {name: (h.address, h.tls) for name, h in hosts.items()}
        with self._lock:
            if wanted == self._wanted:
                return
            self._wanted = wanted
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="probe")
                self._thread.start()
        self._ring()

    def stop(self) -> None:
        self._quit.set()
        self._ring()

    def state(self, name: str) -> ProbeState:
        with self._lock:
            return self._states.get(name, ProbeState())

    def wait_first(self, names: set[str], timeout: float, stop: threading.Event | None = None) -> None:
        """Wait (at most ``timeout``, or until ``stop``) until each named node has been probed once."""
        deadline = self.clock() + timeout
        while self.clock() < deadline and not (stop is not None and stop.is_set()):
            with self._lock:
                if names <= self._states.keys():
                    return
            time.sleep(0.01)

    def _ring(self) -> None:
        try:
            self._bell.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # the loop has a ring waiting already, or is gone

    # -- the loop (its own thread) ---------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._quit.is_set():
                try:
                    self._turn()
                except Exception:  # a fault of the loop itself: it must go on, or no node would be judged again
                    log.exception("prober: a turn of the loop failed; going on")
                    time.sleep(0.1)
        finally:
            for probe in self._probes.values():
                probe.close()
            self._selector.close()

    def _turn(self) -> None:
        """One turn: take in the node list, start the probes due, fail the overdue, advance the ready."""
        self._follow()
        now = time.monotonic()
        self._start_due(now)
        self._expire(now)
        for key, _ in self._selector.select(self._sleep(time.monotonic())):
            if key.data is None:
                self._hear()
            else:
                self._advance(key.data)

    def _hear(self) -> None:
        try:
            while self._ear.recv(64):
                pass
        except BlockingIOError:
            pass

    def _follow(self) -> None:
        """Take in the node list ``track`` was given: new nodes are probed at once."""
        with self._lock:
            wanted = dict(self._wanted)
        for name in list(self._probes):
            probe = self._probes[name]
            if wanted.get(name) != (probe.address, probe.tls):
                self._drop(probe)
                del self._probes[name]
                with self._lock:
                    self._states.pop(name, None)
        for name, (address, tls) in wanted.items():
            if name not in self._probes:
                self._probes[name] = _Probe(name, address, tls, self.timeout)
                self._schedule(name, time.monotonic())

    def _schedule(self, name: str, when: float) -> None:
        self._serial += 1
        heapq.heappush(self._due, (when, self._serial, name))

    def _start_due(self, now: float) -> None:
        while self._due and self._due[0][0] <= now:
            _, _, name = heapq.heappop(self._due)
            probe = self._probes.get(name)
            if probe is None or probe.step is not None:
                continue  # dropped, or (readdressed and) already under way
            self._serial += 1
            heapq.heappush(self._deadlines, (now + self.timeout, self._serial, name, now))
            try:
                probe.begin(now)
            except Exception as exc:  # noqa: BLE001 (whatever it was, this node's probe failed, not the loop)
                self._finish(probe, exc)
                continue
            self._advance(probe)

    def _advance(self, probe: _Probe) -> None:
        try:
            done = probe.advance()
        except Exception as exc:  # noqa: BLE001 (an unreadable TLS file, a refused handshake: this node's probe failed)
            if not probe.fresh and probe.step in ("send", "receive") and not probe.answer.data:
                self._retry_fresh(probe)  # the daemon had closed the kept connection: one new one
            else:
                self._finish(probe, exc)
            return
        if done:
            self._finish(probe, None)
        else:
            self._watch(probe, probe.events)

    def _retry_fresh(self, probe: _Probe) -> None:
        self._drop(probe)
        deadline = probe.deadline
        try:
            probe.begin(probe.began)
        except Exception as exc:  # noqa: BLE001 (whatever it was, this node's probe failed, not the loop)
            self._finish(probe, exc)
            return
        probe.deadline = deadline
        self._advance(probe)

    def _expire(self, now: float) -> None:
        """Fail the probes under way past their deadline (``_deadlines``: by deadline; an entry whose
        probe has ended, or began again, is passed over)."""
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, name, began = heapq.heappop(self._deadlines)
            probe = self._probes.get(name)
            if probe is not None and probe.step is not None and probe.began == began:
                self._finish(probe, TimeoutError("timed out"))

    def _sleep(self, now: float) -> float:
        """Until the next probe is due or one under way times out (at most a second)."""
        until = min(now + 1.0, self._due[0][0] if self._due else now + 1.0,
                    self._deadlines[0][0] if self._deadlines else now + 1.0)
        return max(0.0, until - now)

    def _finish(self, probe: _Probe, failure: BaseException | None) -> None:
        """Record the probe's outcome and schedule the next one an ``interval`` after this began."""
        if failure is not None:
            self._drop(probe)
        else:
            self._watch(probe, 0)
            probe.step = None
        self._record(probe.name, failure is None, "" if failure is None else brief(failure, probe.tls), self.clock())
        self._schedule(probe.name, probe.began + self.interval)

    def _watch(self, probe: _Probe, events: int) -> None:
        """Have the selector watch the probe's socket for ``events`` (0: not at all)."""
        sock, watched = self._watched.pop(probe.name, (None, 0))
        if sock is not None and sock is probe.sock and events:
            if events != watched:
                self._selector.modify(sock, events, probe)
        else:
            if sock is not None:  # a socket replaced (wrapped in TLS), closed or no longer waited on
                self._selector.unregister(sock)
            if events and probe.sock is not None:
                self._selector.register(probe.sock, events, probe)
        if events and probe.sock is not None:
            self._watched[probe.name] = (probe.sock, events)

    def _drop(self, probe: _Probe) -> None:
        """Close the probe's connection (a failed one, or its node's last)."""
        self._watch(probe, 0)
        probe.close()

    def _record(self, name: str, ok: bool, message: str, now: float) -> None:
        with self._lock:
            if name not in self._wanted:
                return  # a probe of a node removed meanwhile
            old = self._states.get(name, ProbeState())
            if ok:
                new = ProbeState(ok=True, last_ok=now)
            else:
                new = ProbeState(ok=False, last_ok=old.last_ok, failures=old.failures + 1,
                                 failing_since=old.failing_since if old.failures else now, message=message)
            self._states[name] = new
        if new.ok != old.ok or new.failures == 2:
            self.on_change()
