"""The real controller on a PostgreSQL store, against real dockerd hosts: Jobs and Services run, an apply from
another process wakes the controller at once (NOTIFY), and a SQLite store moved to PostgreSQL with
`brokerctl store migrate` reads the same and keeps its running containers."""

from __future__ import annotations

import re
import time

import docker
import pytest

from helpers import (
    SERVE, ControllerProcess, cli, cli_json, job_yaml, nodes_yaml, running, service_status, service_yaml, tasks_of,
    wait_for,
)
from reconciler.store import Store

pytestmark = pytest.mark.timeout(240)


def test_the_controller_runs_jobs_and_services_on_a_postgresql_store(clean_hosts, pg_url):
    """apply, controller, wait, get tasks, logs and status with --db postgresql://...: a 3-completion Job
    completes, a 3-replica Service has 3 ready replicas."""
    created = cli(pg_url, "apply", "-f", "-", input=nodes_yaml(clean_hosts, {"default": 4}), check=True)
    assert created.stderr == f"created store {pg_url}\n"
    with ControllerProcess(pg_url) as ctl:
        cli(pg_url, "apply", "-f", "-", check=True,
            input=job_yaml("hello", "echo hi from postgres", completions=3, parallelism=2) + "---\n"
            + service_yaml("web", SERVE.format(before=""), 3))
        assert cli(pg_url, "wait", "job/hello", "--for", "condition=Complete", "--timeout", "60").returncode == 0
        wait_for(lambda: service_status(pg_url, "web")["ready"] == 3, 60, "3 ready replicas", interval=0.3)
        assert len(running(clean_hosts, "Service/web")) == 3

        done = tasks_of(pg_url, "Job/hello")
        assert sorted((t["index"], t["phase"], t["exitCode"]) for t in done) == [
            (0, "Succeeded", 0), (1, "Succeeded", 0), (2, "Succeeded", 0)]
        assert cli(pg_url, "logs", done[0]["id"], check=True).stdout == "hi from postgres\n"
        table = cli(pg_url, "get", "tasks", check=True).stdout.splitlines()
        assert table[0].split() == ["ID", "OWNER", "PHASE", "NODE", "EXIT", "AGE", "REASON"]
        assert sum("Job/hello" in line and "Succeeded" in line for line in table) == 3
        assert sum("Service/web" in line and "Running" in line for line in table) == 3
        status = cli(pg_url, "status", check=True).stdout
        assert status.startswith(f"store:      {pg_url} (id ") and f"running (pid {ctl.proc.pid} " in status


def test_an_apply_from_another_process_wakes_an_idle_controller_at_once(clean_hosts, pg_url):
    """With a 30 s resync, the controller places a new replica within seconds of `brokerctl apply` (a NOTIFY
    on the store's channel, heard on the controller's LISTEN connection), and reports it listens."""
    cli(pg_url, "apply", "-f", "-", input=nodes_yaml(clean_hosts[:1]), check=True)
    with ControllerProcess(pg_url, "--resync", "30"):
        time.sleep(2)  # idle: its first passes are over, it waits for the 30 s resync
        store = Store(pg_url)
        try:
            cli(pg_url, "apply", "-f", "-", input=service_yaml("notified", SERVE.format(before="")), check=True)
            applied = time.monotonic()
            while not [t for t in store.tasks() if t.owner == "Service/notified" and t.node]:
                assert time.monotonic() - applied < 10, "no task placed within 10 s of the apply"
                time.sleep(0.01)
            took = time.monotonic() - applied
            assert took < 3.0, f"{took:.3f}s from apply to a placed task (the resync is 30 s)"
            assert store.lease()["stats"]["nudges"] is True
        finally:
            store.close()
        wait_for(lambda: running(clean_hosts, "Service/notified"), 30, "replica running")


# What must read the same before and after the move (tables and describe show ages, which move with the clock).
READS = [("get", "nodes", "-o", "json"), ("get", "jobs", "-o", "json"), ("get", "services", "-o", "yaml"),
         ("get", "tasks", "-o", "json"), ("get", "events", "-o", "json", "--limit", "0"),
         ("rollout", "history", "service/web", "-o", "json")]


def started_at(hosts, owner: str) -> dict[str, str]:
    """Container id -> when it last started, for ``owner``'s running containers."""
    found = {}
    for host in hosts:
        client = docker.DockerClient(base_url=host.address, version="1.41", timeout=10)
        try:
            for c in client.api.containers(filters={"label": f"brokerctl.owner={owner}"}):
                found[c["Id"]] = client.api.inspect_container(c["Id"])["State"]["StartedAt"]
        finally:
            client.close()
    return found


def test_a_store_moved_to_postgresql_reads_the_same_and_keeps_its_containers(clean_hosts, tmp_path, pg_url):
    """A SQLite store with a finished Job (tasks, logs), a rolled Service (two revisions, running replicas) and
    their events moves with `store migrate`: every read is identical, a controller on PostgreSQL adopts the
    running replicas without restarting them and goes on working, and a controller on the old file refuses."""
    db = tmp_path / "broker.db"
    cli(db, "apply", "-f", "-", input=nodes_yaml(clean_hosts, {"default": 4}), check=True)
    with ControllerProcess(db):
        cli(db, "apply", "-f", "-", check=True,
            input=job_yaml("batch", "echo line one; echo line two", completions=3, parallelism=3))
        cli(db, "apply", "-f", "-", input=service_yaml("web", SERVE.format(before=""), 2), check=True)
        assert cli(db, "wait", "job/batch", "--for", "condition=Complete", "--timeout", "60").returncode == 0
        cli(db, "apply", "-f", "-", input=service_yaml("web", SERVE.format(before="echo v2; "), 2), check=True)
        assert cli(db, "rollout", "status", "service/web", "--timeout", "90").returncode == 0
    replicas = started_at(clean_hosts, "Service/web")
    assert len(replicas) == 2
    before = {args: cli(db, *args, check=True).stdout for args in READS}
    job_tasks = tasks_of(db, "Job/batch")
    logs = {t["id"]: cli(db, "logs", t["id"], check=True).stdout for t in job_tasks}
    assert set(logs.values()) == {"line one\nline two\n"}

    moved = cli(tmp_path / "unused.db", "store", "migrate", "--from", str(db), "--to", pg_url, check=True).stdout
    assert re.match(rf"copied store \w+ from {re.escape(str(db))} to {re.escape(pg_url)} \(rows: meta 2, ", moved)

    assert {args: cli(pg_url, *args, check=True).stdout for args in READS} == before
    assert {t["id"]: cli(pg_url, "logs", t["id"], check=True).stdout for t in job_tasks} == logs

    store = Store(pg_url)
    try:
        with ControllerProcess(pg_url):
            wait_for(lambda: (store.lease() or {"stats": {}})["stats"].get("passes", 0) >= 5, 30,
                     "five passes of the controller on PostgreSQL", interval=0.3)
            assert started_at(clean_hosts, "Service/web") == replicas, "replicas restarted or replaced"
            assert service_status(pg_url, "web")["ready"] == 2
            cli(pg_url, "apply", "-f", "-", input=job_yaml("after", "echo moved"), check=True)
            assert cli(pg_url, "wait", "job/after", "--for", "condition=Complete", "--timeout", "60").returncode == 0
            assert started_at(clean_hosts, "Service/web") == replicas
    finally:
        store.close()

    old = ControllerProcess(db)
    with pytest.raises(AssertionError, match="controller exited at start"):
        old.start()
    assert f"error: store {db} was moved to {pg_url} by `brokerctl store migrate`" in old.output()
    assert started_at(clean_hosts, "Service/web") == replicas


def test_the_controller_rides_out_a_restart_of_its_database_and_stops_while_it_is_down(pg_cluster):
    """No Docker: a controller on a cluster of its own (resync 30 s). The server restarts under it: it keeps
    running, and the next apply still wakes it (its store and LISTEN connections are made again). With the
    server stopped, SIGTERM still ends it at once and cleanly (the lease is left to expire)."""
    import signal

    import pgcluster

    cluster = pgcluster.start_cluster("brokerctl", fast=True)
    try:
        cli(cluster.url, "apply", "-f", "-", input=job_yaml("first", "true"), check=True)
        store = Store(cluster.url)
        ctl = ControllerProcess(cluster.url, "--resync", "30").start()
        try:
            wait_for(lambda: store.tasks(), 10, "the first Job's task")

            cluster.restart()
            time.sleep(3)  # the controller notices (heartbeat, LISTEN) and connects again
            cli(cluster.url, "apply", "-f", "-", input=job_yaml("second", "true"), check=True)

            wait_for(lambda: [t for t in store.tasks() if t.owner == "Job/second"], 10,
                     "a task of the Job applied after the restart (the resync is 30 s)")
            assert ctl.proc.poll() is None
            store.close()

            cluster.stop()
            began = time.monotonic()
            assert ctl.stop(signal.SIGTERM) == 0, ctl.output()
            assert time.monotonic() - began < 5, ctl.output()
            assert "lease left to expire" in ctl.output()
        finally:
            if ctl.proc.poll() is None:
                ctl.stop(signal.SIGKILL)
    finally:
        cluster.remove()
