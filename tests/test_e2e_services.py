"""Services on real dockerd hosts: scaling, restart backoff, health, rolling updates, ports, delete."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import urllib.request

import pytest

from helpers import (
    SERVE, ControllerProcess, broker_containers, cli, cli_json, nodes_yaml, running, service_status, service_yaml,
    tasks_of, wait_for,
)

pytestmark = pytest.mark.timeout(240)

HEALTH = {"command": "test -f /tmp/ok", "intervalSeconds": 0.3, "retries": 2, "startPeriodSeconds": 10}


def test_scale_up_spreads_then_scale_down_stops_the_newest_and_zero_keeps_the_service(three_nodes, db):
    """Scaling 1 -> 4 spreads replicas one per node first; 4 -> 1 keeps the oldest; 0 keeps the Service."""
    hosts = three_nodes
    with ControllerProcess(db):
        cmd = "trap 'echo got TERM; exit 0' TERM; sleep 3600 & wait"
        cli(db, "apply", "-f", "-", input=service_yaml("web", cmd), check=True)
        wait_for(lambda: len(running(hosts, "Service/web")) == 1, 30, "1 replica")
        first = [t["id"] for t in tasks_of(db, "Service/web") if t["phase"] == "Running"]
        assert cli(db, "scale", "service", "web", "--replicas", "4", check=True).stdout.strip() == \
            "service/web scaled from 1 to 4"
        wait_for(lambda: len(running(hosts, "Service/web")) == 4, 30, "4 replicas")
        per_host = sorted(len(running([h], "Service/web")) for h in hosts)
        assert per_host == [1, 1, 2]
        time.sleep(1.1)  # start times one second apart at least
        cli(db, "scale", "service/web", "--replicas", "1", check=True)
        wait_for(lambda: len(running(hosts, "Service/web")) == 1, 30, "scaled down to 1")
        left = [t["id"] for t in tasks_of(db, "Service/web") if t["phase"] == "Running"]
        assert left == first
        stopped = [t for t in tasks_of(db, "Service/web") if t["phase"] == "Stopped"]
        assert len(stopped) == 3 and {t["reason"] for t in stopped} == {"ScaledDown"}
        for t in stopped:  # stopped gracefully: SIGTERM reached the process, and its output was kept
            assert "got TERM" in cli(db, "logs", t["id"], check=True).stdout
        cli(db, "scale", "service", "web", "--replicas", "0", check=True)
        wait_for(lambda: not running(hosts, "Service/web"), 30, "scaled to zero")
        wait_for(lambda: service_status(db, "web")["running"] == 0, 10, "status shows 0 running")
    [obj] = cli_json(db, "get", "services", "web")
    assert obj["spec"]["replicas"] == 0 and obj["metadata"]["generation"] == 4


def test_crashing_replica_is_restarted_with_growing_backoff(three_nodes, db):
    """A replica that keeps exiting is replaced after 0.4 s, 0.8 s, 1.6 s...; get services shows the backoff."""
    with ControllerProcess(db):
        cli(db, "apply", "-f", "-", input=service_yaml("crash", "exit 3", restart={"initialSeconds": 0.4,
                                                                                 "maxSeconds": 1.6}), check=True)
        wait_for(lambda: len([t for t in tasks_of(db, "Service/crash") if t["phase"] == "Failed"]) >= 4, 60,
                 "four failed attempts")
        st = wait_for(lambda: (s := service_status(db, "crash"))["restartBackoffSeconds"] > 0 and s, 20, "backoff shown")
        table = cli(db, "get", "services", check=True).stdout
    attempts = sorted((t for t in tasks_of(db, "Service/crash") if t["finishedAt"]), key=lambda t: t["attempt"])
    assert {t["exitCode"] for t in attempts} == {3}
    from datetime import datetime

    def ts(text):
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    gaps = [ts(b["startedAt"]) - ts(a["finishedAt"]) for a, b in zip(attempts, attempts[1:]) if b["startedAt"]]
    # Each replacement waits at least its backoff (0.4, 0.8, 1.6, 1.6...), give or take Docker's timestamps.
    for gap, want in zip(gaps, [0.4, 0.8, 1.6, 1.6]):
        assert gap >= want - 0.15, gaps
    assert st["restarts"] >= 3 and st["restartBackoffSeconds"] in (0.4, 0.8, 1.6)
    assert "crash" in table and "BACKOFF" in table


def test_readiness_waits_for_health_and_an_unhealthy_replica_is_replaced(three_nodes, db):
    """With healthCheck a replica is ready only once healthy; one that turns unhealthy is replaced."""
    cmd = SERVE.format(before="sleep 2; touch /tmp/ok; [ \"$BROKER_ATTEMPT\" = 1 ] && (sleep 2; rm /tmp/ok) & ")
    with ControllerProcess(db):
        cli(db, "apply", "-f", "-", input=service_yaml("hc", cmd, healthCheck=HEALTH), check=True)
        st = wait_for(lambda: (s := service_status(db, "hc"))["running"] == 1 and s, 30, "running")
        assert st["ready"] == 0  # health: starting
        wait_for(lambda: service_status(db, "hc")["ready"] == 1, 30, "ready once healthy")
        wait_for(lambda: any(t["reason"] == "Unhealthy" for t in tasks_of(db, "Service/hc")), 30, "unhealthy seen")
        wait_for(lambda: any(t["attempt"] == 2 and t["phase"] == "Running" for t in tasks_of(db, "Service/hc")),
                 30, "replacement running")
        wait_for(lambda: service_status(db, "hc")["ready"] == 1, 30, "replacement ready")
    first = [t for t in tasks_of(db, "Service/hc") if t["attempt"] == 1][0]
    assert first["phase"] == "Failed"
    events = cli(db, "get", "events", "--for", "service/hc", check=True).stdout
    assert "Unhealthy" in events


def _sampler(db, hosts, owner: str, stop: threading.Event, out: list) -> None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    while not stop.is_set():
        active = conn.execute("SELECT count(*) FROM tasks WHERE owner_kind || '/' || owner_name = ? "
                              "AND phase IN ('Pending', 'Running')", [owner]).fetchone()[0]
        out.append((len(running(hosts, owner, healthy=True)), active))
        time.sleep(0.1)
    conn.close()


def test_rolling_update_keeps_every_replica_serving(three_nodes, db):
    """A template change replaces replicas one at a time: never fewer than 3 healthy, never over 4 tasks."""
    hosts = three_nodes
    cmd = SERVE.format(before="sleep 0.5; touch /tmp/ok; ")
    spec = {"healthCheck": HEALTH, "update": {"minReadySeconds": 0.5}}
    with ControllerProcess(db):
        cli(db, "apply", "-f", "-", input=service_yaml("roll", cmd, 3, {"env": {"V": "1"}}, **spec), check=True)
        assert cli(db, "rollout", "status", "service/roll", "--timeout", "60").returncode == 0
        wait_for(lambda: len(running(hosts, "Service/roll", healthy=True)) == 3, 30, "3 healthy")
        samples: list = []
        stop = threading.Event()
        sampler = threading.Thread(target=_sampler, args=(db, hosts, "Service/roll", stop, samples))
        sampler.start()
        try:
            cli(db, "apply", "-f", "-", input=service_yaml("roll", cmd, 3, {"env": {"V": "2"}}, **spec), check=True)
            done = cli(db, "rollout", "status", "service/roll", "--timeout", "90")
        finally:
            stop.set()
            sampler.join()
        assert done.returncode == 0, done.stdout + done.stderr
        assert "successfully rolled out" in done.stdout
    assert len(samples) > 10
    assert min(h for h, _ in samples) >= 3, samples
    assert max(a for _, a in samples) <= 4, samples
    assert max(a for _, a in samples) == 4  # it did surge
    tasks = tasks_of(db, "Service/roll")
    assert len([t for t in tasks if t["phase"] == "Running"]) == 3
    assert {t["reason"] for t in tasks if t["phase"] == "Stopped"} == {"Replaced"}
    containers = running(hosts, "Service/roll")
    assert len({c["Labels"]["brokerctl.template"] for c in containers}) == 1
    history = cli_json(db, "rollout", "history", "service/roll")
    assert [h["revision"] for h in history] == [1, 2] and history[1]["current"]


def test_update_to_a_broken_image_pauses_then_rolls_back(three_nodes, db):
    """A new template that never gets ready pauses the rollout; autoRollback returns to the last good one."""
    hosts = three_nodes
    cmd = SERVE.format(before="")
    good = service_yaml("app", cmd, 2, update={"progressDeadlineSeconds": 3, "minReadySeconds": 0})
    # The deadline leaves `rollout status` (a new process, slow on a loaded machine) time to start watching
    # the broken template before the rollback puts the good one back.
    broken = service_yaml("app", cmd, 2, {"image": "busybox:no-such-tag"},
                          update={"progressDeadlineSeconds": 10, "minReadySeconds": 0, "autoRollback": True})
    with ControllerProcess(db):
        cli(db, "apply", "-f", "-", input=good, check=True)
        assert cli(db, "rollout", "status", "service/app", "--timeout", "60").returncode == 0
        before = {c["Id"] for c in running(hosts, "Service/app")}
        cli(db, "apply", "-f", "-", input=broken, check=True)
        out = cli(db, "rollout", "status", "service/app", "--timeout", "60")
        assert out.returncode == 1 and "ProgressDeadlineExceeded" in out.stderr, out.stderr
        [obj] = cli_json(db, "get", "services", "app")
        assert obj["spec"]["template"]["image"] == "busybox"
        wait_for(lambda: service_status(db, "app")["rollout"]["state"] == "Complete", 30, "rolled back and complete")
        assert {c["Id"] for c in running(hosts, "Service/app")} == before  # the good replicas never stopped
        history = cli_json(db, "rollout", "history", "service/app")
        assert [(h["image"], h["cause"]) for h in history][-1] == ("busybox", "autoRollback")
        # Without autoRollback the rollout stays paused and the old replicas keep serving.
        cli(db, "apply", "-f", "-", input=broken.replace('"autoRollback": true', '"autoRollback": false'),
            check=True)
        wait_for(lambda: service_status(db, "app")["rollout"]["state"] == "Paused", 40, "paused")
        assert {c["Id"] for c in running(hosts, "Service/app")} == before
        paused = cli(db, "rollout", "status", "service/app", "--no-watch")
        assert paused.returncode == 1 and "rollout paused" in paused.stderr
        undo = cli(db, "rollout", "undo", "service/app", check=True)
        assert "rolled back to template" in undo.stdout
        wait_for(lambda: service_status(db, "app")["rollout"]["state"] == "Complete", 30, "complete after undo")
        assert {c["Id"] for c in running(hosts, "Service/app")} == before


def test_published_port_is_reachable_and_a_conflict_is_a_placement_constraint(network_host, three_nodes, db):
    """ports: "P:80" serves on the host with networking; a second replica there waits instead of crashing."""
    net = network_host
    if net not in three_nodes:
        network_host.remove_all_containers()
        cli(db, "apply", "-f", "-", input=nodes_yaml([net], {"default": 8}), check=True)
    port = 18000 + os.getpid() % 1000
    cmd = "mkdir -p /www && echo hello-$BROKER_TASK_INDEX > /www/index.html && exec httpd -f -p 80 -h /www"
    with ControllerProcess(db):
        cli(db, "apply", "-f", "-", input=service_yaml("www", cmd, 2, {"ports": [f"{port}:80"]}, nodeName=net.name),
            check=True)
        body = wait_for(lambda: _fetch(f"http://127.0.0.1:{port}/"), 30, "published port answers")
        assert body.strip() == "hello-0"
        pending = wait_for(lambda: [t for t in tasks_of(db, "Service/www") if t["phase"] == "Pending"
                                    and "in use" in t["message"]], 20, "second replica pending")
        assert f"host port {port}/tcp in use" in pending[0]["message"]
        time.sleep(2)
        assert not [t for t in tasks_of(db, "Service/www") if t["phase"] == "Failed"]  # no crash loop


def _fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read().decode()
    except OSError:
        return None


def test_delete_service_stops_and_removes_every_replica(three_nodes, db):
    """`delete service` stops all replicas (gracefully), removes their containers, then the Service."""
    hosts = three_nodes
    with ControllerProcess(db):
        cli(db, "apply", "-f", "-", input=service_yaml("gone", SERVE.format(before=""), 3), check=True)
        wait_for(lambda: len(running(hosts, "Service/gone")) == 3, 30, "3 replicas")
        assert cli(db, "delete", "service", "gone", check=True).stdout.strip() == "service/gone deleting"
        wait_for(lambda: not [c for h in hosts for c in broker_containers(h)
                              if c["Labels"].get("brokerctl.owner") == "Service/gone"], 30, "containers removed")
        wait_for(lambda: cli(db, "get", "services", "gone").returncode != 0, 20, "service purged")


def test_max_per_node_caps_replicas_per_node(three_nodes, db):
    """maxPerNode: 1 over three nodes runs three replicas; the fourth waits with the reason."""
    hosts = three_nodes
    with ControllerProcess(db):
        cli(db, "apply", "-f", "-", input=service_yaml("capped", SERVE.format(before=""), 4, maxPerNode=1), check=True)
        wait_for(lambda: len(running(hosts, "Service/capped")) == 3, 30, "3 replicas")
        pending = wait_for(lambda: [t for t in tasks_of(db, "Service/capped") if t["phase"] == "Pending"
                                    and t["message"]], 20, "fourth replica pending")
        assert "3 maxPerNode 1 reached" in pending[0]["message"]
        assert sorted(len(running([h], "Service/capped")) for h in hosts) == [1, 1, 1]


def test_image_healthcheck_gates_readiness(three_nodes, db):
    """Without spec.healthCheck, the image's own HEALTHCHECK decides when a replica is ready."""
    h1 = three_nodes[0]
    client = h1.client()
    try:
        ctr = client.api.create_container("busybox", "true")
        client.api.commit(ctr["Id"], repository="busybox", tag="healthcheck", changes=[
            "HEALTHCHECK --interval=300ms --retries=2 --start-period=10s CMD test -f /tmp/ok"])
        client.api.remove_container(ctr["Id"])
    finally:
        client.close()
    cmd = SERVE.format(before="sleep 3; touch /tmp/ok; ")
    with ControllerProcess(db):
        cli(db, "apply", "-f", "-", input=service_yaml("imghc", cmd, template={"image": "busybox:healthcheck"},
                                                      nodeName=h1.name), check=True)
        st = wait_for(lambda: (s := service_status(db, "imghc"))["running"] == 1 and s, 30, "running")
        assert st["ready"] == 0
        wait_for(lambda: service_status(db, "imghc")["ready"] == 1, 30, "ready once the image's check passes")
        assert running([h1], "Service/imghc", healthy=True)


def test_template_network_is_joined(three_nodes, db):
    """template.network attaches replicas to that Docker network on the node."""
    h1 = three_nodes[0]
    client = h1.client()
    net = client.api.create_network(f"bknet{os.getpid()}", driver="bridge")
    try:
        with ControllerProcess(db):
            cli(db, "apply", "-f", "-", input=service_yaml("netted", SERVE.format(before=""),
                                                          template={"network": f"bknet{os.getpid()}"},
                                                          nodeName=h1.name), check=True)
            [c] = wait_for(lambda: running([h1], "Service/netted"), 30, "replica running")
            info = client.api.inspect_container(c["Id"])
            assert info["HostConfig"]["NetworkMode"] == f"bknet{os.getpid()}"
            assert f"bknet{os.getpid()}" in info["NetworkSettings"]["Networks"]
            cli(db, "delete", "service", "netted", check=True)
            wait_for(lambda: not running([h1], "Service/netted"), 30, "replica removed")
    finally:
        client.api.remove_network(net["Id"])
        client.close()
