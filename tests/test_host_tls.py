"""A Node's ``tls`` without a daemon: the client ``connect`` builds, the files it needs, the messages
a failed handshake turns into, and what ``apply`` refuses. tests/test_e2e_tls.py does it for real."""

from __future__ import annotations

import json

import pytest
import requests

from helpers import cli
from reconciler.docker import client as dockerclient
from reconciler.errors import HostError
from reconciler.spec.fields import STORED
from reconciler.spec.manifests import load_text
from reconciler.spec.models import Node

ADDRESS = "tcp://192.0.2.1:2376"  # TEST-NET-1: never dialled here


@pytest.fixture
def pem(tmp_path):
    """Three files standing in for the PEM files (nothing is read until a connection is made)."""
    files = {}
    for field in ("caFile", "certFile", "keyFile"):
        path = tmp_path / f"{field}.pem"
        path.write_text("-----BEGIN CERTIFICATE-----\n")
        files[field] = str(path)
    return files


def test_connect_checks_the_server_against_the_nodes_ca_whatever_the_environment_says(pem, tmp_path, monkeypatch):
    """requests would let REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE replace the session's CA on every request."""
    other = tmp_path / "other-bundle.pem"
    other.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(other))
    client = dockerclient.connect(ADDRESS, pem, timeout=1)
    try:
        api = client.api
        assert api.base_url == "https://192.0.2.1:2376"
        assert api.cert == (pem["certFile"], pem["keyFile"])
        # What a request sends with no verify of its own (the SDK never passes one).
        settings = api.merge_environment_settings(f"{api.base_url}/_ping", {}, None, None, None)
        assert settings["verify"] == pem["caFile"]
    finally:
        client.close()


def test_without_a_ca_file_the_server_is_still_verified(pem):
    client = dockerclient.connect(ADDRESS, {"certFile": pem["certFile"], "keyFile": pem["keyFile"]}, timeout=1)
    try:
        assert client.api.verify is True  # requests' default CA bundle, never no check at all
    finally:
        client.close()


@pytest.mark.parametrize("field", ["caFile", "certFile", "keyFile"])
def test_connect_names_a_tls_file_that_is_gone(pem, field, tmp_path):
    gone = str(tmp_path / "gone.pem")
    with pytest.raises(HostError) as refused:
        dockerclient.connect(ADDRESS, {**pem, field: gone}, timeout=1)
    assert str(refused.value) == f"tls.{field} {gone}: no such file"


def ssl_error(text: str) -> requests.exceptions.SSLError:
    return requests.exceptions.SSLError(f"HTTPSConnectionPool(host='10.0.0.1', port=2376): Max retries exceeded "
                                        f"with url: /v1.41/_ping (Caused by SSLError({text}))")


@pytest.mark.parametrize(("error", "tls", "message"), [
    pytest.param(
        ssl_error("SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: IP "
                  "address mismatch, certificate is not valid for \\'10.0.0.1\\'. (_ssl.c:1006)')"),
        {"certFile": "/c.pem", "keyFile": "/k.pem"},
        "TLS: the daemon's certificate could not be verified with the default CA bundle (tls names no caFile) "
        "(certificate verify failed: IP address mismatch, certificate is not valid for '10.0.0.1'.)",
        id="verify-failed-without-ca"),
    pytest.param(
        ssl_error("SSLEOFError(8, 'EOF occurred in violation of protocol (_ssl.c:2427)')"),
        {"caFile": "/ca.pem", "certFile": "/c.pem", "keyFile": "/k.pem"},
        "TLS: the daemon refused the handshake (EOF occurred in violation of protocol): it does not accept the "
        "client certificate tls.certFile /c.pem; it needs one signed by the CA the daemon trusts (its --tlscacert)",
        id="tls13-hang-up"),
    pytest.param(
        ssl_error("SSLError(1, '[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required "
                  "(_ssl.c:2580)')"),
        {"caFile": "/ca.pem"},
        "TLS: the daemon refused the handshake (tlsv13 alert certificate required): it requires a client "
        "certificate and tls names none; set tls.certFile and tls.keyFile to a pair signed by the CA the daemon "
        "trusts",
        id="tls13-certificate-required"),
    pytest.param(
        requests.exceptions.ConnectionError("HTTPSConnectionPool(host='10.0.0.1', port=2376): Max retries "
                                            "exceeded (Caused by NewConnectionError(': Failed to establish a new "
                                            "connection: [Errno 111] Connection refused'))"),
        {"caFile": "/ca.pem"},
        "connection refused or unreachable",
        id="down-is-not-a-tls-failure"),
])
def test_a_failed_connection_says_which_side_refused_and_which_file_is_to_blame(error, tls, message):
    assert dockerclient.brief(error, tls) == message


NODE = {"apiVersion": "broker/v1", "kind": "Node", "metadata": {"name": "secure"}, "spec": {"address": ADDRESS}}


def node_doc(**tls) -> str:
    return json.dumps({**NODE, "spec": {**NODE["spec"], "tls": tls}}) + "\n"


@pytest.mark.parametrize(("tls", "problem"), [
    ({"caFile": "certs/ca.pem"}, "spec.tls.caFile: 'certs/ca.pem' must be an absolute path: the controller reads "
                                 "it, and a relative one would depend on the directory it was started in"),
    ({"certFile": "/c.pem"}, "spec.tls: certFile needs keyFile: a client certificate and its key go together"),
    ({"keyFile": "/k.pem"}, "spec.tls: keyFile needs certFile: a client certificate and its key go together"),
])
def test_tls_paths_are_absolute_and_a_certificate_comes_with_its_key(tls, problem):
    with pytest.raises(Exception) as refused:
        load_text(node_doc(**tls), "n.yaml")
    assert str(refused.value) == f"n.yaml: document 1 (Node/secure), line 1: {problem}"


def test_a_stored_node_is_read_back_whatever_its_tls_paths():
    """The path rules apply at apply; a spec stored before them still loads (the controller then
    reports a file it cannot read)."""
    node = Node.model_validate({**NODE, "spec": {**NODE["spec"], "tls": {"caFile": "ca.pem", "certFile": "c.pem"}}},
                               context=STORED)
    assert node.spec.tls.caFile == "ca.pem"


def test_apply_refuses_a_node_whose_tls_files_are_not_there_and_writes_nothing(pem, tmp_path):
    db = tmp_path / "state" / "broker.db"
    gone = tmp_path / "nowhere" / "client.pem"
    proc = cli(db, "apply", "-f", "-", input=node_doc(**{**pem, "certFile": str(gone)}))
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith(
        f"<stdin>: document 1 (Node/secure): spec.tls.certFile: {gone}: no such file; the controller reads it "
        "to reach the daemon: give the path of the PEM file there")
    assert not db.exists()
    assert cli(db, "apply", "-f", "-", input=node_doc(**pem), check=True).stdout == "node/secure created\n"
