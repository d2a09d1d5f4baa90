"""The throwaway Docker daemons the rest of the suite runs against."""

import signal

import pytest
import requests

import dockerhosts
from conftest import SPARE_IP


def test_hosts_answer_ping_on_tcp(docker_hosts):
    """Every session host answers /_ping on its own 127.0.0.N tcp address."""
    assert len({h.address for h in docker_hosts}) == len(docker_hosts) == 3
    for host in docker_hosts:
        client = host.client()
        try:
            assert client.ping() is True
        finally:
            client.close()


def test_busybox_image_runs_shell(clean_hosts):
    """busybox:latest runs `sh -c` with PATH=/bin and reports output and exit code."""
    client = clean_hosts[0].client()
    try:
        container = client.containers.run(
            "busybox:latest", ["sh", "-c", "echo hi; exit 3"], detach=True)
        assert container.wait(timeout=30)["StatusCode"] == 3
        assert container.logs() == b"hi\n"
    finally:
        client.close()


@pytest.fixture
def spare_host(docker_hosts):
    """A fourth daemon of its own, for tests that abuse it.

    Asking for ``docker_hosts`` applies its skip-or-fail decision here too.
    """
    (host,) = dockerhosts.start_hosts(1, first_ip=SPARE_IP, image=False)
    yield host
    dockerhosts.stop_hosts([host])


def test_sigstop_freezes_daemon_until_sigcont(spare_host):
    """A SIGSTOPped daemon lets /_ping time out; SIGCONT makes it answer again."""
    client = spare_host.client(timeout=1)
    try:
        spare_host.kill(signal.SIGSTOP)
        with pytest.raises(requests.exceptions.Timeout):
            client.ping()
        assert spare_host.alive()
        spare_host.kill(signal.SIGCONT)
        assert client.ping() is True
    finally:
        client.close()
