"""Shared fixtures: private Docker daemons started by scripts/dockerhosts.py.

Tests that need Docker ask for ``docker_hosts`` (three daemons for the whole
session) or ``clean_hosts`` (the same daemons, emptied of containers first);
either one marks the test ``docker``, so ``pytest -m 'not docker'`` skips them. End-to-end tests
share ``db`` (a store path in the test's directory) and ``three_nodes`` (the clean daemons applied
as Nodes with 8 slots each).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import dockerhosts  # noqa: E402
from helpers import cli, nodes_yaml  # noqa: E402

HOST_COUNT = 3
FIRST_IP = int(os.environ.get("BROKER_TEST_FIRST_IP", "21"))  # 127.0.0.21-23 by default: clear of a demo on lower addresses
# h1 keeps Docker's default bridge (published ports); set BROKER_TEST_NO_NETWORK=1 for a second,
# concurrent test session, since only one daemon per machine may own the bridge.
NETWORK_FIRST = not os.environ.get("BROKER_TEST_NO_NETWORK")


def docker_unavailable(reason: str) -> NoReturn:
    """Skip Docker tests on a developer machine, fail them in CI.

    In CI (env ``CI`` non-empty) a missing daemon is a broken setup, and
    skipping would report a green run that tested nothing.
    """
    if os.environ.get("CI"):
        pytest.fail(f"Docker daemons unavailable and CI is set: {reason}", pytrace=False)
    pytest.skip(f"Docker daemons unavailable: {reason}")


@pytest.fixture(scope="session")
def docker_hosts() -> list[dockerhosts.DockerHost]:
    """Three running daemons on 127.0.0.21-23, each with ``busybox:latest``; h1 has networking."""
    if not dockerhosts.dockerd_available():
        docker_unavailable("need root and dockerd (apt-get install docker.io busybox-static)")
    try:
        hosts = dockerhosts.start_hosts(HOST_COUNT, first_ip=FIRST_IP, network_first=NETWORK_FIRST)
    except Exception as e:
        docker_unavailable(f"could not start dockerd: {e}")

    def stop() -> None:
        dockerhosts.stop_hosts(hosts)

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    # The daemons run in their own sessions and outlive pytest unless torn
    # down: turn SIGTERM (CI cancelling a job) into a Ctrl-C, which runs the
    # teardown below, and keep atexit as a back-stop for exits that skip it.
    previous = signal.signal(signal.SIGTERM, interrupt)
    atexit.register(stop)
    try:
        yield hosts
    finally:
        stop()
        atexit.unregister(stop)
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def clean_hosts(docker_hosts: list[dockerhosts.DockerHost]) -> list[dockerhosts.DockerHost]:
    """The session's daemons, running, responsive and without containers."""
    for host in docker_hosts:
        # A test that killed or froze a host and then failed must not take
        # every later test down with it.
        if host.alive():
            host.kill(signal.SIGCONT)
        else:
            host.start()
        host.remove_all_containers()
    return docker_hosts


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Where the test's store lives (``brokerctl apply`` creates it)."""
    return tmp_path / "broker.db"


@pytest.fixture
def three_nodes(clean_hosts: list[dockerhosts.DockerHost], db: Path) -> list[dockerhosts.DockerHost]:
    """The clean daemons, applied to ``db`` as Nodes with 8 default slots each."""
    cli(db, "apply", "-f", "-", input=nodes_yaml(clean_hosts, {"default": 8}), check=True)
    return clean_hosts


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "docker_hosts" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)
