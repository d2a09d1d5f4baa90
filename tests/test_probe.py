"""The prober's selector loop against small local HTTP servers (no Docker; the probes of real
daemons, plain and TLS, are in test_docker_host.py and test_dockertls.py): one thread probes every
node, a hung daemon costs only its own probe a timeout, a kept connection carries the next probe,
and a daemon that closes it after each answer is still answering."""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import pytest

from helpers import wait_for
from reconciler.docker.probe import Prober

OK = b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK"


class Server:
    """A local TCP server: ``mode`` answer (keep-alive), close (answers, then closes), hang (reads,
    never answers) or refuse (its port closed)."""

    def __init__(self, mode: str):
        self.mode, self.accepted, self.requests = mode, 0, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        if mode == "refuse":
            self.sock.close()
        else:
            threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        data = b""
        while True:
            try:
                chunk = conn.recv(4096)
            except OSError:
                return
            if not chunk:
                return
            data += chunk
            while b"\r\n\r\n" in data:
                _, _, data = data.partition(b"\r\n\r\n")
                self.requests += 1
                if self.mode == "hang":
                    continue
                conn.sendall(OK)
                if self.mode == "close":
                    conn.close()
                    return

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def servers():
    made: list[Server] = []
    yield lambda mode: made.append(Server(mode)) or made[-1]
    for s in made:
        s.close()


def track(prober: Prober, **servers: Server) -> None:
    prober.track({name: SimpleNamespace(address=s.address, tls=None) for name, s in servers.items()})


def test_one_thread_probes_every_node_and_a_hung_one_delays_no_other(servers):
    """Ten answering nodes, one that never answers and one refusing: the prober adds one thread; the
    hung node fails with a timeout each probe while the others are probed every interval all along."""
    answering = {f"a{i}": servers("answer") for i in range(10)}
    hung, refusing = servers("hang"), servers("refuse")
    prober = Prober(interval=0.1, timeout=1.0)
    try:
        track(prober, hung=hung, refusing=refusing, **answering)
        wait_for(lambda: prober.state("hung").failures >= 2, 10, "two timed-out probes of the hung node")
        assert [t.name for t in threading.enumerate() if t.name.startswith("probe")] == ["probe"]
        assert prober.state("hung").message == "Docker API timed out"
        assert prober.state("refusing").message == "connection refused or unreachable"
        assert prober.state("refusing").failures >= 10  # probed every interval, not held up by the hung one
        for name, s in answering.items():
            assert prober.state(name).ok
            assert s.requests >= 10  # probed every 0.1 s through two 1 s timeouts of the hung node
            assert s.accepted == 1  # on one kept connection
    finally:
        prober.stop()


def test_a_daemon_closing_the_connection_after_each_answer_still_answers(servers):
    """A kept connection the daemon closed is found closed when the next probe is sent: that probe
    goes out again on a new connection instead of failing."""
    closing = servers("close")
    prober = Prober(interval=0.05, timeout=1.0)
    try:
        track(prober, n=closing)
        wait_for(lambda: closing.requests >= 5, 10, "five probes")
        assert prober.state("n").ok and prober.state("n").failures == 0
        assert closing.accepted == closing.requests
    finally:
        prober.stop()


def test_a_node_removed_or_readdressed_is_forgotten_and_its_connection_closed(servers):
    first, second = servers("answer"), servers("answer")
    prober = Prober(interval=0.05, timeout=1.0)
    try:
        track(prober, n=first)
        wait_for(lambda: prober.state("n").ok, 10, "the first probe")
        track(prober, n=second)  # the Node's address changed
        wait_for(lambda: second.requests >= 1, 10, "a probe of the new address")
        asked = first.requests
        time.sleep(0.3)
        assert first.requests == asked and prober.state("n").ok
        track(prober)
        wait_for(lambda: prober.state("n").message == "not probed yet", 10, "the node forgotten")
    finally:
        prober.stop()


def test_a_node_whose_tls_file_cannot_be_read_fails_its_probe_saying_so_and_the_others_go_on(servers, tmp_path):
    """The Node's caFile was removed after apply: its probe fails naming the file (the loop does not
    stop on it), and the other node is still probed every interval."""
    plain, secure = servers("answer"), servers("answer")
    missing = tmp_path / "ca.pem"
    prober = Prober(interval=0.05, timeout=1.0)
    try:
        prober.track({"plain": SimpleNamespace(address=plain.address, tls=None),
                      "secure": SimpleNamespace(address=secure.address, tls={"caFile": str(missing)})})
        wait_for(lambda: prober.state("secure").failures >= 2, 10, "two failed probes of the TLS node")
        assert prober.state("secure").message == f"tls.caFile {missing}: no such file"
        asked = plain.requests
        wait_for(lambda: plain.requests >= asked + 3, 10, "the plain node probed on")
        assert prober.state("plain").ok
    finally:
        prober.stop()
