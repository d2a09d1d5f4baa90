"""scripts/pgcluster.py: throwaway PostgreSQL clusters, checked against real servers through psql."""

from __future__ import annotations

import os
import pwd
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import pgcluster

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "pgcluster.py"


def _skip_or_fail(reason: str) -> None:
    # As for the Docker daemons: in CI a missing PostgreSQL is a broken
    # setup, and a skip would report a green run that tested nothing.
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL unavailable and CI is set: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL unavailable: {reason}")


@pytest.fixture(scope="module")
def pg_available() -> None:
    reason = pgcluster.missing()
    if reason:
        _skip_or_fail(reason)


@pytest.fixture(scope="module")
def fast_cluster(pg_available):
    cluster = pgcluster.start_cluster("brokerctl", fast=True)
    yield cluster
    cluster.remove()


@pytest.fixture(scope="module")
def default_cluster(fast_cluster):
    """A second cluster, side by side with the first, with PostgreSQL's default settings."""
    cluster = pgcluster.start_cluster("other")
    yield cluster
    cluster.remove()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_cluster_serves_its_database_on_loopback(fast_cluster):
    """The URL names postgres@127.0.0.1, the cluster's port and the database made for the caller."""
    assert fast_cluster.url == f"postgresql://postgres@127.0.0.1:{fast_cluster.port}/brokerctl"
    row = fast_cluster.psql("SELECT current_database(), current_user, inet_server_addr(),"
                            " current_setting('listen_addresses')").strip()
    assert row == "brokerctl|postgres|127.0.0.1|127.0.0.1"
    assert fast_cluster.dir.parent == Path(os.environ.get("TMPDIR") or "/tmp")  # short: its socket lives there
    assert fast_cluster.dir.name.startswith("bkpg-")
    if os.geteuid() == 0:
        # PostgreSQL will not run as root: the server's files belong to postgres.
        assert pwd.getpwuid(fast_cluster.data_dir.stat().st_uid).pw_name == "postgres"
        server_uid = int(Path(f"/proc/{fast_cluster.pid}/status").read_text()
                         .split("Uid:", 1)[1].split()[0])
        assert pwd.getpwuid(server_uid).pw_name == "postgres"


def test_fast_option_turns_durability_off_and_default_keeps_it(fast_cluster, default_cluster):
    query = ("SELECT current_setting('fsync'), current_setting('synchronous_commit'),"
             " current_setting('full_page_writes'), current_setting('shared_buffers')")
    assert fast_cluster.psql(query).strip() == "off|off|off|16MB"
    assert default_cluster.psql(query).strip() == "on|on|on|128MB"


def test_clusters_side_by_side_are_separate(fast_cluster, default_cluster):
    """Two clusters: their own dirs, ports and data."""
    assert fast_cluster.dir != default_cluster.dir
    assert fast_cluster.port != default_cluster.port
    fast_cluster.psql("CREATE TABLE only_here (x int)")
    try:
        assert default_cluster.psql("SELECT to_regclass('only_here') IS NULL").strip() == "t"
        assert fast_cluster.psql("SELECT to_regclass('only_here') IS NULL").strip() == "f"
    finally:
        fast_cluster.psql("DROP TABLE only_here")


def test_create_database_gives_its_own_url_and_drop_removes_it(fast_cluster):
    url = fast_cluster.create_database("per_test")
    try:
        assert url == f"postgresql://postgres@127.0.0.1:{fast_cluster.port}/per_test"
        fast_cluster.psql("CREATE TABLE t (x int)", database="per_test")
        assert fast_cluster.psql("SELECT to_regclass('t') IS NULL").strip() == "t"
    finally:
        fast_cluster.drop_database("per_test")
    with pytest.raises(RuntimeError, match='database "per_test" does not exist'):
        fast_cluster.psql("SELECT 1", database="per_test")


def test_stop_refuses_connections_and_start_brings_data_back_on_same_url(fast_cluster):
    """What servers see when the database restarts under them: refused, then the same URL works."""
    url = fast_cluster.url
    fast_cluster.psql("CREATE TABLE survives (x int); INSERT INTO survives VALUES (7)")
    fast_cluster.stop()
    try:
        assert not fast_cluster.running()
        assert not _listening(fast_cluster.port)
        with pytest.raises(RuntimeError, match="Connection refused"):
            fast_cluster.psql("SELECT 1")
    finally:
        fast_cluster.start()
    assert fast_cluster.url == url
    assert fast_cluster.psql("SELECT x FROM survives").strip() == "7"
    fast_cluster.psql("DROP TABLE survives")


def test_immediate_restart_recovers_committed_data(default_cluster):
    """``restart("immediate")`` is a crash: the server recovers from its WAL.

    On the default cluster: with ``fast`` (synchronous_commit off) the last
    commits before a crash may be lost, as PostgreSQL documents.
    """
    before = default_cluster.pid
    default_cluster.psql("CREATE TABLE crashed (x int); INSERT INTO crashed VALUES (1)")
    default_cluster.restart("immediate")
    assert default_cluster.pid != before
    assert default_cluster.psql("SELECT x FROM crashed").strip() == "1"
    assert "automatic recovery in progress" in default_cluster.log_path.read_text()
    default_cluster.psql("DROP TABLE crashed")


def test_remove_stops_server_and_deletes_dir(pg_available):
    """Nothing is left: no postmaster, no listener, no directory; a second remove is harmless."""
    cluster = pgcluster.start_cluster("gone", fast=True)
    pid, port, dir = cluster.pid, cluster.port, cluster.dir
    assert pid is not None and pgcluster.pid_running(pid)
    cluster.remove()
    assert not pgcluster.pid_running(pid)
    assert not _listening(port)
    assert not dir.exists()
    cluster.remove()


@pytest.fixture
def blocked_port():
    """A port on 127.0.0.1 that someone else listens on."""
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        yield blocker.getsockname()[1]


def _unused_dir(tag: str) -> Path:
    # Short and under /tmp itself: the postgres user must reach it, and
    # pytest's tmp_path sits under a root-only directory.
    return Path(f"/tmp/bkpg-test-{tag}-{os.getpid()}")


def test_taken_port_given_explicitly_is_refused_before_initdb(pg_available, blocked_port):
    dir = _unused_dir("taken")
    with pytest.raises(RuntimeError, match=f"port {blocked_port} on 127.0.0.1 is already in use"):
        pgcluster.start_cluster("x", dir, fast=True, port=blocked_port)
    assert not dir.exists()


def test_failed_start_leaves_nothing(pg_available, blocked_port, monkeypatch):
    """A server that cannot start (here: the port is taken after the check) leaves no dir behind."""
    monkeypatch.setattr(pgcluster, "listening", lambda ip, port: False)
    dir = _unused_dir("failed")
    with pytest.raises(RuntimeError, match=r"(?s)pg_ctl start failed .*could not bind IPv4 address"):
        pgcluster.start_cluster("x", dir, fast=True, port=blocked_port)
    assert not dir.exists()


def test_free_port_taken_before_bind_is_retried_with_another(pg_available, blocked_port, monkeypatch):
    """The probe-then-bind race: a port taken in between makes the cluster move to a new one."""
    ports = iter([blocked_port])
    real = pgcluster.free_port
    monkeypatch.setattr(pgcluster, "free_port", lambda ip: next(ports, None) or real(ip))
    with pgcluster.start_cluster("retried", fast=True) as cluster:
        assert cluster.port != blocked_port
        assert cluster.psql("SELECT current_database()").strip() == "retried"
        assert "could not bind" in cluster.log_path.read_text()
        assert pgcluster.read_state(cluster.dir).port == cluster.port


def test_bad_database_name_is_refused_before_anything_starts():
    dir = _unused_dir("badname")
    with pytest.raises(ValueError, match="database name 'Bad-Name'"):
        pgcluster.start_cluster("Bad-Name", dir)
    assert not dir.exists()


def test_bindir_is_the_newest_complete_version(tmp_path):
    for version, tools in (("9.6", pgcluster.TOOLS), ("15", pgcluster.TOOLS), ("16", ("psql",))):
        (tmp_path / version / "bin").mkdir(parents=True)
        for tool in tools:
            (tmp_path / version / "bin" / tool).touch()
    # 16 lacks the server; 15 beats 9.6 as a number, not as a string.
    assert pgcluster.find_bindir("no-such-pg_config", tmp_path) == tmp_path / "15" / "bin"


def test_missing_binaries_say_how_to_install(tmp_path):
    with pytest.raises(RuntimeError, match=r"not found .*apt-get install postgresql"):
        pgcluster.find_bindir("no-such-pg_config", tmp_path / "none")


def test_cli_up_restart_down(pg_available):
    """``up`` prints a working URL and leaves the cluster running; ``down`` removes everything."""
    dir = Path(f"/tmp/bkpg-cli{os.getpid()}")
    up = subprocess.run([sys.executable, str(SCRIPT), "up", "--dir", str(dir), "--db", "cli", "--fast"],
                        capture_output=True, text=True, timeout=120)
    try:
        assert up.returncode == 0, up.stderr
        url = up.stdout.strip()
        assert re.fullmatch(r"postgresql://postgres@127\.0\.0\.1:\d+/cli", url)
        cluster = pgcluster.read_state(dir)
        assert cluster.url == url
        pid = cluster.pid
        assert cluster.psql("SELECT current_setting('fsync')").strip() == "off"
        restart = subprocess.run([sys.executable, str(SCRIPT), "restart", "--dir", str(dir)],
                                 capture_output=True, text=True, timeout=120)
        assert restart.returncode == 0, restart.stderr
        assert cluster.running() and cluster.pid != pid
        pid = cluster.pid
    finally:
        down = subprocess.run([sys.executable, str(SCRIPT), "down", "--dir", str(dir)],
                              capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert not dir.exists()
    assert not pgcluster.pid_running(pid)
