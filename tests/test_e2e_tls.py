"""Nodes over TLS, end to end: a dockerd started with ``--tlsverify`` (scripts/dockerhosts.py, a throwaway
CA from scripts/tlscerts.py) reached by the ``brokerctl`` CLI and a controller process.

A Node with the right CA and client certificate becomes Ready and runs a Job, whose live output
(``logs -f``) and ``drain`` go through the same TLS client. A Node that cannot complete the handshake
is NotReady with a message saying which side refused and which file is to blame. The controller runs
with ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` naming another CA, which it must ignore.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import E2E_TLS_OFFSET, own_daemon
from helpers import ControllerProcess, cli, cli_json, job_yaml, tasks_of, wait_for

pytestmark = pytest.mark.timeout(240)

STAY = {"lostAfterSeconds": 3600}  # a node that fails its probes stays NotReady (not Lost) for the test


@pytest.fixture(scope="module")
def tls_host(docker_hosts):
    """One daemon serving only TLS on 2376, with busybox; asking for ``docker_hosts`` applies its
    skip-or-fail decision."""
    with own_daemon(E2E_TLS_OFFSET, tls=True) as host:
        yield host


@pytest.fixture
def untrusting_env(other_ca, monkeypatch):
    """The environment's CA bundles name a CA that did not sign the daemon's certificate: a client
    that let them replace the Node's caFile could not reach the daemon (and one with a wrong caFile
    could not be proved wrong by them)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other_ca.cert))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(other_ca.cert))


def node(name: str, address: str, tls: dict | None = None, **more) -> str:
    spec = {"address": address, "slots": {"default": 2}, **({"tls": tls} if tls is not None else {}), **more}
    return json.dumps({"apiVersion": "broker/v1", "kind": "Node", "metadata": {"name": name}, "spec": spec}) + "\n"


def tls_of(host, ca=None, cert: bool = True) -> dict:
    """A Node's ``tls`` for ``host``: its CA (or ``ca``) and, with ``cert``, the client pair it issued."""
    tls = {"caFile": str(ca or host.tls.ca)}
    if cert:
        tls |= {"certFile": str(host.tls.client_cert), "keyFile": str(host.tls.client_key)}
    return tls


def node_status(db, name: str) -> dict:
    return cli_json(db, "get", "nodes", name)[0]["status"]


def apply(db, *docs: str) -> None:
    cli(db, "apply", "-f", "-", input="---\n".join(docs), check=True)


def test_a_node_with_tls_becomes_ready_runs_a_job_and_serves_logs_and_drain(tls_host, db, untrusting_env):
    apply(db, node("secure", tls_host.address, tls_of(tls_host)))
    with ControllerProcess(db):
        status = wait_for(lambda: (s := node_status(db, "secure"))["condition"] == "Ready" and s, 30,
                          "node/secure Ready")
        assert status["dockerVersion"] and status["slots"] == {"default": 2}

        apply(db, job_yaml("hello", "echo started; sleep 8; echo done"))
        [task] = wait_for(lambda: [t for t in tasks_of(db, "Job/hello") if t["phase"] == "Running"], 60,
                          "job/hello running")
        assert task["node"] == "secure"
        # A running task's output is streamed from its node (nothing is stored until it ends).
        follow = subprocess.Popen([sys.executable, "-m", "reconciler", "--db", str(db), "logs", "-f", task["id"]],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "NO_COLOR": "1"})
        try:
            first = follow.stdout.readline()
            [again] = tasks_of(db, "Job/hello")
            assert (first, again["phase"]) == ("started\n", "Running"), follow.stderr.read() if not first else ""
            rest, err = follow.communicate(timeout=60)
        finally:
            follow.kill()
        assert (rest, err, follow.returncode) == ("done\n", "", 0)
        assert cli(db, "wait", "job/hello", "--for", "condition=Complete", "--timeout", "60").returncode == 0
        assert cli(db, "logs", task["id"], check=True).stdout == "started\ndone\n"

        # drain asks the node itself (over TLS) whether our containers have stopped.
        apply(db, job_yaml("nap", "sleep 2"))
        wait_for(lambda: [t for t in tasks_of(db, "Job/nap") if t["phase"] == "Running"], 60, "job/nap running")
        drained = cli(db, "drain", "secure", "--timeout", "60", timeout=120)
        assert drained.returncode == 0, drained.stderr
        assert "node/secure drained" in drained.stdout + drained.stderr
        assert "did not answer" not in drained.stdout + drained.stderr
        [nap] = tasks_of(db, "Job/nap")
        assert nap["phase"] == "Succeeded"


def test_a_node_that_cannot_complete_the_handshake_is_not_ready_and_says_why(
        tls_host, other_ca, docker_hosts, db, untrusting_env):
    """Each Node reaches a real daemon and fails in its own way; none gets a container. (Like any node
    whose probes fail, each would be Lost after lostAfterSeconds: set long here to see NotReady.)"""
    foreign = other_ca.client("foreign")
    plain = docker_hosts[0]  # a daemon serving plain HTTP on 2375
    apply(db,
          node("wrong-ca", tls_host.address, tls_of(tls_host, ca=other_ca.cert), **STAY),
          node("no-cert", tls_host.address, tls_of(tls_host, cert=False), **STAY),
          node("foreign-cert", tls_host.address, {"caFile": str(tls_host.tls.ca), "certFile": str(foreign.cert),
                                                  "keyFile": str(foreign.key)}, **STAY),
          node("no-tls", tls_host.address, **STAY),
          node("tls-to-plain", plain.address, tls_of(tls_host), **STAY))
    expected = {
        "wrong-ca": [f"TLS: the daemon's certificate could not be verified with tls.caFile {other_ca.cert} "
                     "(certificate verify failed: unable to get local issuer certificate)"],
        "no-cert": ["TLS: the daemon refused the handshake (",
                    "): it requires a client certificate and tls names none; set tls.certFile and tls.keyFile"],
        "foreign-cert": ["TLS: the daemon refused the handshake (",
                         f"): it does not accept the client certificate tls.certFile {foreign.cert}; it needs one "
                         "signed by the CA the daemon trusts (its --tlscacert)"],
        "no-tls": ["the daemon speaks TLS on this address: give the Node tls: (caFile, certFile, keyFile)"],
        "tls-to-plain": ["TLS: the address does not answer in TLS (wrong version number); drop tls: or use the "
                         "daemon's TLS port (2376 by convention, dockerd --tlsverify)"],
    }
    with ControllerProcess(db):
        apply(db, job_yaml("stuck", "true"))
        for name, parts in expected.items():
            status = wait_for(lambda: (s := node_status(db, name))["condition"] == "NotReady" and s["message"]
                              and s, 30, f"node/{name} NotReady with a message")
            assert all(part in status["message"] for part in parts), (name, status["message"])
        [stuck] = tasks_of(db, "Job/stuck")
        assert stuck["phase"] == "Pending" and stuck["node"] is None
    client = tls_host.client()
    try:
        assert client.containers.list(all=True) == []
    finally:
        client.close()


def test_a_tls_file_removed_after_apply_makes_the_node_not_ready_naming_it(tls_host, db, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_bytes(tls_host.tls.ca.read_bytes())
    apply(db, node("secure", tls_host.address, tls_of(tls_host, ca=ca), **STAY))
    ca.unlink()
    with ControllerProcess(db):
        status = wait_for(lambda: (s := node_status(db, "secure"))["condition"] == "NotReady" and s["message"]
                          and s, 30, "node/secure NotReady with a message")
    assert status["message"] == f"tls.caFile {ca}: no such file"
