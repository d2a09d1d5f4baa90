"""scripts/tlscerts.py: throwaway CAs, checked by real TLS handshakes with Python's ssl module."""

from __future__ import annotations

import socket
import ssl
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import tlscerts

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "tlscerts.py"


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    # No skip without openssl: scripts/test.sh installs it, and the error names the package.
    ca = tlscerts.CertAuthority.create(tmp_path_factory.mktemp("ca"))
    yield ca
    ca.remove()


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory, ca):
    other = tlscerts.CertAuthority.create(tmp_path_factory.mktemp("other"), name="other CA")
    yield other
    other.remove()


def _handshake(server: tlscerts.CertPair, client_ca: Path, client: tlscerts.CertPair | None,
               ip: str = "127.0.0.1") -> tuple[dict, str | None]:
    """One mutual-TLS exchange on ``ip``: the server's certificate as the client saw it,
    and the error the server hit (None when the client got in)."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(server.ca))
    server_ctx.load_cert_chain(server.cert, server.key)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server_error: list[str | None] = [None]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(tls.recv(5))
        except (ssl.SSLError, OSError) as e:
            server_error[0] = str(e)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        client_ctx = ssl.create_default_context(cafile=str(client_ca))
        if client:
            client_ctx.load_cert_chain(client.cert, client.key)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=ip) as tls:
                peer = tls.getpeercert()
                try:
                    tls.sendall(b"hello")
                    echoed = tls.recv(5)
                except (ssl.SSLError, OSError):
                    echoed = b""
        thread.join(10)
        if server_error[0] is None:
            assert echoed == b"hello"
        return peer, server_error[0]
    finally:
        listener.close()
        thread.join(10)


def test_server_cert_names_its_ip_and_mutual_tls_succeeds(ca):
    server = ca.server("srv", ips=("127.0.0.1",))
    peer, error = _handshake(server, ca.cert, ca.client("alice"))
    assert error is None
    assert ("IP Address", "127.0.0.1") in peer["subjectAltName"]
    assert dict(x[0] for x in peer["issuer"])["commonName"] == "brokerctl test CA"


def test_client_with_wrong_ca_rejects_server(ca, other_ca):
    server = ca.server("srv-wrong-ca", ips=("127.0.0.1",))
    with pytest.raises(ssl.SSLCertVerificationError, match="CERTIFICATE_VERIFY_FAILED"):
        _handshake(server, other_ca.cert, ca.client("bob"))


def test_server_cert_for_another_ip_fails_hostname_check(ca):
    server = ca.server("srv-other-ip", ips=("127.0.0.2",))
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        _handshake(server, ca.cert, ca.client("carol"))


def test_server_refuses_client_cert_from_another_ca_and_none(ca, other_ca):
    server = ca.server("srv-mtls", ips=("127.0.0.1",))
    _, error = _handshake(server, ca.cert, other_ca.client("mallory"))
    assert error is not None and "certificate verify failed" in error
    _, error = _handshake(server, ca.cert, None)
    assert error is not None and "peer did not return a certificate" in error


def test_client_cert_is_not_a_server_cert(ca):
    """extendedKeyUsage keeps each pair to its role."""
    wrong = ca.client("not-a-server")
    server = tlscerts.CertPair(wrong.dir)
    with pytest.raises(ssl.SSLCertVerificationError, match="unsuitable certificate purpose"):
        _handshake(server, ca.cert, ca.client("dave"), ip="not-a-server")


def test_keys_are_private_and_ca_is_reused(ca):
    pair = ca.server("srv-files", dns=("localhost",))
    for key in (ca.key, pair.key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert pair.ca.read_bytes() == ca.cert.read_bytes()
    before = ca.cert.read_bytes()
    assert tlscerts.CertAuthority.create(ca.dir).cert.read_bytes() == before


def test_bad_requests_are_refused(ca):
    with pytest.raises(ValueError, match="at least one IP address or DNS name"):
        ca.server("srv-none")
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        ca.server("srv-bad", ips=("127.0.0.300",))
    with pytest.raises(ValueError, match="one plain path component"):
        ca.client("../escape")


def test_cli_up_down(ca, tmp_path):
    dir = tmp_path / "cli-ca"
    up = subprocess.run([sys.executable, str(SCRIPT), "up", "--dir", str(dir),
                         "--server", "127.0.0.9", "--server", "localhost", "--client", "me"],
                        capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    assert up.stdout.split() == [str(dir / "server-127.0.0.9"), str(dir / "server-localhost"),
                                 str(dir / "me")]
    for pair in up.stdout.split():
        assert {p.name for p in Path(pair).iterdir()} == {"ca.pem", "cert.pem", "key.pem"}
    down = subprocess.run([sys.executable, str(SCRIPT), "down", "--dir", str(dir)],
                          capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    assert not dir.exists()
    refused = subprocess.run([sys.executable, str(SCRIPT), "down", "--dir", str(tmp_path)],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "was not made by tlscerts" in refused.stderr
    assert tmp_path.exists()
