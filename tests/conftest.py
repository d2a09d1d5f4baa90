"""Shared fixtures: private Docker daemons started by scripts/dockerhosts.py, and a private
PostgreSQL cluster started by scripts/pgcluster.py.

Tests that need Docker ask for ``docker_hosts`` (three daemons for the whole
session) or ``clean_hosts`` (the same daemons, emptied of containers first);
either one marks the test ``docker``, so ``pytest -m 'not docker'`` skips them. End-to-end tests
share ``db`` (a store path in the test's directory) and ``three_nodes`` (the clean daemons applied
as Nodes with 8 slots each).

Store tests ask for ``db_url``: each runs twice, on a SQLite file in the test's directory
(``[sqlite]``) and on a new database of the session's PostgreSQL cluster (``[postgresql]``,
marked ``postgres``), so the two backends cannot drift. ``pg_cluster`` starts that cluster (fast
mode: no fsync) when the first such test runs; ``pg_databases`` makes and drops the databases.
Without PostgreSQL these tests skip, naming why; with ``CI`` set they fail.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import dockerhosts
import pgcluster
from helpers import cli, nodes_yaml

HOST_COUNT = 3
# Parallel workers (pytest-xdist, `-n`): each starts its own daemons on addresses of its own, ten
# apart (worker 0: 127.0.0.21-29, worker 1: 31-39, ...), clear of a demo on lower addresses.
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
PARALLEL = "PYTEST_XDIST_WORKER" in os.environ
FIRST_IP = int(os.environ.get("BROKER_TEST_FIRST_IP", "21")) + 10 * WORKER
# A test's own daemons (``own_daemon``), at these offsets from the worker's first address: TLS daemons
# of tests/test_dockertls.py (4, 5) and tests/test_e2e_tls.py (6), the daemon with bridge networking
# when h1 cannot be it (7, see network_host), a spare that tests/test_dockerhosts.py abuses (8).
TLS_OFFSET, THROWAWAY_TLS_OFFSET, E2E_TLS_OFFSET, NETWORK_OFFSET, SPARE_OFFSET = 4, 5, 6, 7, 8
NETWORK_IP = FIRST_IP + NETWORK_OFFSET
# Only one daemon per machine may own a bridge with iptables. In a single session h1 keeps Docker's
# default bridge (published ports); with parallel workers no h1 does, and the one test that needs
# networking gets a daemon of its own (network_host). BROKER_TEST_NO_NETWORK=1 turns it off, for a
# second, concurrent test session.
NO_NETWORK = bool(os.environ.get("BROKER_TEST_NO_NETWORK"))
NETWORK_FIRST = not NO_NETWORK and not PARALLEL


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


@contextlib.contextmanager
def own_daemon(offset: int, **options):
    """A daemon of the test's own on the worker's address ``FIRST_IP + offset`` (the offsets above),
    started with ``dockerhosts.start_hosts`` ``options`` and stopped afterwards."""
    (host,) = dockerhosts.start_hosts(1, first_ip=FIRST_IP + offset, **options)
    try:
        yield host
    finally:
        dockerhosts.stop_hosts([host])


@pytest.fixture(scope="module")
def other_ca():
    """A second certificate authority: it signed nothing the TLS daemons trust or present."""
    import tlscerts

    ca = tlscerts.CertAuthority.create(name="another test CA")
    yield ca
    ca.remove()


@pytest.fixture(scope="module")
def registry(docker_hosts):
    """A running registry with one user (htpasswd); asking for ``docker_hosts`` applies its skip-or-fail
    decision. Afterwards every daemon forgets the images it pulled from it."""
    import dockerregistry

    reason = dockerregistry.missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"registry unavailable and CI is set: {reason}", pytrace=False)
        pytest.skip(f"registry unavailable: {reason}")
    reg = dockerregistry.start_registry()
    yield reg
    for host in docker_hosts:
        forget_images(host, reg)
    reg.remove()


@pytest.fixture(scope="module")
def pushed(registry, docker_hosts) -> str:
    """busybox:latest pushed from the first daemon as team/busybox with the registry's credentials."""
    import dockerregistry

    client = docker_hosts[0].client(timeout=60)
    try:
        return dockerregistry.push_image(client, registry, "busybox:latest", "team/busybox")
    finally:
        client.close()


def forget_images(host: dockerhosts.DockerHost, registry) -> None:
    """Remove every tag naming ``registry`` from ``host``, so that the next start there must pull."""
    import dockerregistry

    client = host.client(timeout=30)
    try:
        dockerregistry.forget_images(client, registry)
    finally:
        client.close()


@pytest.fixture(scope="session")
def network_host(docker_hosts: list[dockerhosts.DockerHost]) -> dockerhosts.DockerHost:
    """A daemon with Docker's bridge networking (published ports): h1 in a single session; with
    parallel workers, a daemon of its own started for the worker that runs the test, so that never
    two own a bridge at once. Asking for ``docker_hosts`` applies its skip-or-fail decision."""
    if NO_NETWORK:
        if os.environ.get("CI"):
            pytest.fail("no daemon with bridge networking: BROKER_TEST_NO_NETWORK is set in CI", pytrace=False)
        pytest.skip("test daemons run without networking (BROKER_TEST_NO_NETWORK)")
    if docker_hosts[0].networking:
        yield docker_hosts[0]
        return
    try:
        (host,) = dockerhosts.start_hosts(1, first_ip=NETWORK_IP, network_first=True)
    except Exception as e:
        docker_unavailable(f"could not start a daemon with networking: {e}")
    host.name = "hnet"  # its Node name beside h1-h3
    atexit.register(dockerhosts.stop_hosts, [host])
    try:
        yield host
    finally:
        dockerhosts.stop_hosts([host])
        atexit.unregister(dockerhosts.stop_hosts)


def pg_unavailable(reason: str) -> NoReturn:
    """As for Docker: skip on a developer machine, fail in CI (a skip would report a green run that
    tested nothing)."""
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL unavailable and CI is set: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL unavailable: {reason}")


@pytest.fixture(scope="session")
def pg_cluster() -> pgcluster.PgCluster:
    """One throwaway PostgreSQL cluster for the session (fast mode), removed at the end."""
    reason = pgcluster.missing()
    if reason:
        pg_unavailable(reason)
    try:
        cluster = pgcluster.start_cluster("brokerctl", fast=True)
    except Exception as e:  # noqa: BLE001 - the reason is reported
        pg_unavailable(f"could not start a cluster: {e}")
    atexit.register(cluster.remove)
    try:
        yield cluster
    finally:
        cluster.remove()
        atexit.unregister(cluster.remove)


class PgDatabases:
    """New databases of the session's cluster, one per test: CREATE DATABASE copies template1 (a few
    milliseconds with FILE_COPY and no fsync), DROP ... WITH (FORCE) ends whatever still uses it."""

    def __init__(self, cluster: pgcluster.PgCluster):
        import psycopg

        self.cluster = cluster
        self.admin = psycopg.connect(cluster.url_for("postgres"), autocommit=True)
        self.made = 0

    def create(self, options: str = "") -> tuple[str, str]:
        """(name, URL) of a new empty database; ``options``: more of CREATE DATABASE (a locale)."""
        self.made += 1
        name = f"t{os.getpid()}_{self.made}"
        self.admin.execute(f"CREATE DATABASE {name} STRATEGY FILE_COPY {options}")
        return name, self.cluster.url_for(name)

    def drop(self, name: str) -> None:
        self.admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def pg_databases(pg_cluster: pgcluster.PgCluster) -> PgDatabases:
    databases = PgDatabases(pg_cluster)
    yield databases
    databases.admin.close()


@pytest.fixture
def pg_url(pg_databases: PgDatabases) -> str:
    """The URL of a new, empty database of the session's cluster, dropped after the test."""
    name, url = pg_databases.create()
    yield url
    pg_databases.drop(name)


BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path: Path):
    """Where the test's store lives, once per backend: a file path (in a directory the store creates)
    or the URL of a new PostgreSQL database."""
    if request.param == "sqlite":
        yield tmp_path / "state" / "broker.db"
    else:
        yield request.getfixturevalue("pg_url")


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


# The files that take longest, first (see pytest_collection_modifyitems).
LONGEST_FIRST = ("test_bench_daemons.py", "test_bench_daemons_too.py", "test_bench.py", "test_e2e_leader.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "docker_hosts" in fixtures:
            item.add_marker(pytest.mark.docker)
        callspec = getattr(item, "callspec", None)
        on_postgresql = callspec is not None and callspec.params.get("db_url") == "postgresql"
        if on_postgresql or "pg_cluster" in fixtures:
            item.add_marker(pytest.mark.postgres)
    _longest_first(items)


def _longest_first(items: list[pytest.Item]) -> None:
    """Order the files so parallel workers start the long ones first: the benchmark runs and the leader
    test (minutes each), then every file with Docker tests, then the rest, each group in its usual
    order. Workers take whole files in this order (scripts/test.sh: `--dist loadfile
    --no-loadscope-reorder`; xdist would otherwise put files with the most tests first, and the
    benchmark files, with one or two tests each, started last while the other worker idled)."""
    rank: dict[str, int] = {}
    for item in items:
        name = item.path.name
        here = (LONGEST_FIRST.index(name) if name in LONGEST_FIRST
                else len(LONGEST_FIRST) + (0 if item.get_closest_marker("docker") else 1))
        rank[name] = min(rank.get(name, here), here)
    items.sort(key=lambda item: rank[item.path.name])  # stable: a file's tests keep their order
