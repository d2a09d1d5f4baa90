"""SIGTERM ends the controller within a second or two whatever it is doing.

Without Docker: the shutdown watchdog (``SignalShutdown``) ends a process whose main thread is
stuck in a C call, and the lease is given up without waiting on a busy store. On real daemons:
a graceful stop under way (a replica that traps SIGTERM, 60 s grace) and a hung daemon (SIGSTOP)
do not hold the controller, and a new controller starts at once on the same store.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from helpers import ControllerProcess, broker_containers, cli, nodes_yaml, tasks_of, wait_for
from reconciler.store import Store

pytestmark = pytest.mark.timeout(180)

EXIT_WITHIN = 3.0  # seconds from SIGTERM to the process gone (the watchdog's deadline is 1.5 s)


def sigterm_and_time(proc: subprocess.Popen) -> float:
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return time.monotonic() - began


# -- without Docker -------------------------------------------------------------------------

BLOCKED_IN_SQLITE = textwrap.dedent("""
    import logging, sqlite3, sys, threading
    from reconciler.runtime.controller import SignalShutdown

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    stop, wake = threading.Event(), threading.Event()
    SignalShutdown(stop, wake, deadline=1.0).install()
    path = sys.argv[1]
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    waiter = sqlite3.connect(path, isolation_level=None, timeout=120)
    print("blocking", flush=True)
    waiter.execute("BEGIN IMMEDIATE")  # the main thread waits in SQLite's busy handler (C) for 120 s
    print("never reached", flush=True)
""")


def test_the_watchdog_ends_a_process_whose_main_thread_is_stuck_in_a_c_call(tmp_path):
    """The signal is read on its own thread (the wakeup fd), so a main thread that never returns to
    Python (here, SQLite's busy wait) does not keep the process alive past the deadline."""
    proc = subprocess.Popen([sys.executable, "-c", BLOCKED_IN_SQLITE, str(tmp_path / "x.db")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "blocking\n"
    time.sleep(0.3)

    took = sigterm_and_time(proc)

    assert took < EXIT_WITHIN, f"exited {took:.1f}s after SIGTERM"
    out, err = proc.communicate()
    assert proc.returncode == 0 and "never reached" not in out
    assert "exiting: still busy 1s after the signal; containers keep running" in err


def test_a_second_signal_exits_at_once(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", BLOCKED_IN_SQLITE.replace("deadline=1.0", "deadline=60"),
                             str(tmp_path / "x.db")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "blocking\n"
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)

    took = sigterm_and_time(proc)

    assert took < EXIT_WITHIN
    assert "exiting: second signal" in proc.communicate()[1]


def test_release_lease_gives_up_on_a_busy_store_instead_of_waiting(tmp_path):
    store = Store(tmp_path / "s.db")
    store.claim_lease("me", 10)
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process is writing

    began = time.monotonic()
    assert store.release_lease("me", wait=0.3) is False
    assert time.monotonic() - began < 2.0

    other.execute("ROLLBACK")
    assert store.lease()["holder"] == "me"
    assert store.release_lease("me", wait=0.3) is True
    assert store.lease() is None


# -- on real daemons ------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path):
    return tmp_path / "broker.db"


def service(name: str, command: str, **spec) -> str:
    return json.dumps({"apiVersion": "broker/v1", "kind": "Service", "metadata": {"name": name},
                       "spec": {**spec, "template": {"image": "busybox", "command": command}}}) + "\n"


def assert_a_new_controller_starts_at_once(db):
    """The lease was released (or is held by a dead pid on this host): no waiting for it to expire."""
    with ControllerProcess(db) as again:
        assert f"running (pid {again.proc.pid}" in cli(db, "status", check=True).stdout


def test_sigterm_during_a_long_graceful_stop(clean_hosts, db):
    """A replica that ignores SIGTERM, 60 s grace, being scaled down: the controller does not wait it out."""
    host = clean_hosts[0]
    cli(db, "apply", "-f", "-", input=nodes_yaml([host]), check=True)
    stubborn = "trap 'echo got TERM' TERM; while true; do sleep 0.2; done"
    ctl = ControllerProcess(db).start()
    try:
        cli(db, "apply", "-f", "-", input=service("stubborn", stubborn, replicas=1,
                                                 terminationGracePeriodSeconds=60), check=True)
        wait_for(lambda: broker_containers(host, all=False), 30, "the replica running")
        cli(db, "scale", "service", "stubborn", "--replicas", "0", check=True)
        wait_for(lambda: any(t["reason"] == "ScaledDown" for t in tasks_of(db, "Service/stubborn")), 20,
                 "the scale-down decided")
        time.sleep(1.0)  # the stop is under way: SIGTERM sent, 60 s to go

        took = sigterm_and_time(ctl.proc)
    finally:
        ctl.stop()
    print(f"\ncontroller exited {took:.2f}s after SIGTERM with a 60 s graceful stop under way")
    assert took < EXIT_WITHIN
    assert ctl.proc.returncode == 0
    assert broker_containers(host, all=False), "the container keeps its grace period (the daemon's stop goes on)"
    assert "controller stopped" in ctl.output()
    assert_a_new_controller_starts_at_once(db)


def test_sigterm_with_a_hung_daemon(clean_hosts, db):
    """A daemon frozen with SIGSTOP while the controller keeps listing it: the probe takes 5 s to
    fail, so for those seconds each pass (every second: a replica is active; --resync 0.2 so no
    list is reused) finds the node answering and a container list to it hangs in a worker until
    the 30 s Docker timeout."""
    host = clean_hosts[0]
    cli(db, "apply", "-f", "-", input=nodes_yaml([host]), check=True)
    ctl = ControllerProcess(db, "--docker-timeout", "30", "--probe-timeout", "5", "--lost-after", "60",
                            "--resync", "0.2").start()
    try:
        cli(db, "apply", "-f", "-", input=service("idle", "sleep 600", replicas=1), check=True)
        wait_for(lambda: broker_containers(host, all=False), 30, "the replica running")
        host.kill(signal.SIGSTOP)
        try:
            time.sleep(3.0)
            took = sigterm_and_time(ctl.proc)
        finally:
            host.kill(signal.SIGCONT)
    finally:
        ctl.stop()
    print(f"\ncontroller exited {took:.2f}s after SIGTERM with a list to a frozen daemon under way")
    assert took < EXIT_WITHIN
    assert ctl.proc.returncode == 0
    assert_a_new_controller_starts_at_once(db)
