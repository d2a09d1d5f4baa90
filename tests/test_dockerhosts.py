"""The throwaway Docker daemons the rest of the suite runs against."""

import signal
import time

import docker
import pytest
import requests
from conftest import SPARE_OFFSET, own_daemon


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
    with own_daemon(SPARE_OFFSET, image=False) as host:
        yield host


def _stopped(pid: int) -> bool:
    """True once the kernel reports every thread of ``pid`` stopped (state T)."""
    with open(f"/proc/{pid}/status") as status:
        return any(line.split()[:2] == ["State:", "T"] for line in status)


def test_sigstop_freezes_daemon_until_sigcont(spare_host):
    """A SIGSTOPped daemon lets /_ping time out; SIGCONT makes it answer again.

    Asked over the daemon's unix socket, which no other daemon can hold, once
    the kernel reports it stopped: a stray daemon on the tcp address or a ping
    racing the signal must not pass for a daemon that still answers.
    """
    client = docker.DockerClient(base_url=spare_host.unix_address, version="1.41", timeout=1)
    try:
        assert client.ping() is True
        spare_host.kill(signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while not _stopped(spare_host.pid):
            assert time.monotonic() < deadline, "dockerd never reached the stopped state"
            time.sleep(0.01)
        with pytest.raises(requests.exceptions.Timeout):
            client.ping()
        assert spare_host.alive()
        spare_host.kill(signal.SIGCONT)
        assert client.ping() is True
    finally:
        client.close()
