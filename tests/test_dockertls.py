"""dockerhosts with ``tls=True``: a real dockerd with ``--tlsverify``, reached (or not) by the docker SDK.

The messages pinned here are what a client of a TLS Docker host gets to see:
a wrong CA fails on the client side with CERTIFICATE_VERIFY_FAILED; a
missing or foreign client certificate is refused by the daemon during the
handshake (what the client reads then depends on timing, so the daemon's
log is what is checked).
"""

from __future__ import annotations

import time

import docker
import docker.errors
import docker.tls
import dockerhosts
import pytest
import requests
from conftest import FIRST_IP, THROWAWAY_TLS_OFFSET, TLS_OFFSET, own_daemon


@pytest.fixture(scope="module")
def tls_host(docker_hosts):
    """One daemon serving only TLS; asking for ``docker_hosts`` applies its skip-or-fail decision."""
    with own_daemon(TLS_OFFSET, image=False, tls=True) as host:
        yield host


def _refused(host: dockerhosts.DockerHost, tls: docker.tls.TLSConfig) -> requests.exceptions.SSLError:
    client = dockerhosts.tls_client(host.address, tls, timeout=5, version="1.41")
    try:
        with pytest.raises(requests.exceptions.SSLError) as refused:
            client.ping()
    finally:
        client.close()
    return refused.value


def _wait_for_log(host: dockerhosts.DockerHost, text: str, after: int) -> None:
    """Wait until ``text`` appears in the daemon's log past byte ``after``."""
    deadline = time.monotonic() + 10
    while text not in host.log_path.read_text(errors="replace")[after:]:
        assert time.monotonic() < deadline, f"{text!r} not in {host.log_path}:\n{host.log_tail()}"
        time.sleep(0.05)


def test_tls_host_serves_tls_only_on_2376(tls_host):
    assert tls_host.address == f"tcp://{tls_host.ip}:2376"
    assert not dockerhosts.listening(tls_host.ip, 2375)
    plain = docker.DockerClient(base_url=tls_host.address, version="1.41", timeout=5)
    try:
        with pytest.raises(docker.errors.APIError, match="Client sent an HTTP request to an HTTPS server"):
            plain.ping()
    finally:
        plain.close()


def test_right_ca_and_client_cert_get_in(tls_host):
    client = tls_host.client()
    try:
        assert client.ping() is True
        assert client.containers.list(all=True) == []
    finally:
        client.close()


def test_ca_bundle_from_environment_does_not_replace_the_ca(tls_host, other_ca, monkeypatch):
    """requests would let REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE win over the client's CA; ours ignore them.

    Also with ``version="auto"``, whose first request the SDK makes while
    building the client.
    """
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other_ca.cert))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(other_ca.cert))
    client = dockerhosts.tls_client(tls_host.address, tls_host.tls.client_config(), timeout=5)
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_wrong_ca_is_refused_by_the_client(tls_host, other_ca, monkeypatch):
    wrong_ca = docker.tls.TLSConfig(
        client_cert=(str(tls_host.tls.client_cert), str(tls_host.tls.client_key)),
        ca_cert=str(other_ca.cert), verify=True)
    verify_failed = ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed:"
                     " unable to get local issuer certificate")
    assert verify_failed in str(_refused(tls_host, wrong_ca))
    # With version="auto" the SDK's constructor makes the first request and
    # wraps its error; the SDK's own client (environment cleared, so that it
    # does use the CA it is given) and ours say the same.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    for make in (docker.DockerClient, dockerhosts.tls_client):
        with pytest.raises(docker.errors.DockerException) as refused:
            make(tls_host.address, tls=wrong_ca, timeout=5)
        assert str(refused.value).startswith("Error while fetching server API version: ")
        assert verify_failed in str(refused.value)


def test_missing_client_cert_is_refused_by_the_daemon(tls_host):
    after = len(tls_host.log_path.read_text(errors="replace"))
    _refused(tls_host, docker.tls.TLSConfig(ca_cert=str(tls_host.tls.ca), verify=True))
    _wait_for_log(tls_host, "tls: client didn't provide a certificate", after)


def test_client_cert_from_another_ca_is_refused_by_the_daemon(tls_host, other_ca):
    foreign = other_ca.client("foreign")
    after = len(tls_host.log_path.read_text(errors="replace"))
    _refused(tls_host, docker.tls.TLSConfig(client_cert=(str(foreign.cert), str(foreign.key)),
                                            ca_cert=str(tls_host.tls.ca), verify=True))
    _wait_for_log(tls_host, "x509: certificate signed by unknown authority", after)


def test_hosts_json_keeps_tls_for_another_process(tls_host, tmp_path):
    """`down` (another process) reads the TLS files back and can still talk to the daemon."""
    dockerhosts.write_hosts_json(tmp_path, [tls_host])
    (again,) = dockerhosts.read_hosts_json(tmp_path)
    assert again.tls == tls_host.tls and again.address == tls_host.address
    client = again.client()
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_stop_removes_base_dir_with_its_certificates(docker_hosts):
    (host,) = dockerhosts.start_hosts(1, first_ip=FIRST_IP + THROWAWAY_TLS_OFFSET, image=False, tls=True)
    base = host.dir.parent
    assert host.tls.ca == base / "tls" / "ca.pem" and host.tls.ca.exists()
    dockerhosts.stop_hosts([host])
    assert not host.alive()
    assert not base.exists()


def test_the_prober_pings_a_tls_daemon_with_the_nodes_certificates(tls_host, other_ca):
    """The prober's ``Pinger`` uses a Node's ``tls`` as the SDK client does: its CA verifies the
    daemon, its certificate gets in; another CA, or no TLS, is a failed probe that says why."""
    from reconciler.docker.probe import Pinger

    tls = {"caFile": str(tls_host.tls.ca), "certFile": str(tls_host.tls.client_cert),
           "keyFile": str(tls_host.tls.client_key)}
    assert Pinger(tls_host.address, tls, 5.0).ping() is None
    wrong = Pinger(tls_host.address, {**tls, "caFile": str(other_ca.cert)}, 5.0).ping()
    assert wrong.startswith(f"TLS: the daemon's certificate could not be verified with tls.caFile {other_ca.cert} ")
    assert Pinger(tls_host.address, None, 5.0).ping() == \
        "the daemon speaks TLS on this address: give the Node tls: (caFile, certFile, keyFile)"
