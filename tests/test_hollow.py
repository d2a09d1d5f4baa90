"""bench/hollow.py, the simulated Docker hosts of the scale benchmarks: the docker SDK calls that
reconciler/dockerhost.py makes work against it, and a real ``brokerctl controller`` runs a Job and a
Service on three hollow hosts. No real Docker here: every behaviour test of brokerctl itself runs
against real dockerd; these only show the simulator is good enough to benchmark with."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import docker
import pytest
import requests

from helpers import ControllerProcess, cli, cli_json, job_yaml, nodes_yaml, tasks_of, wait_for

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import hollow  # noqa: E402
from reconciler.records import ContainerSpec  # noqa: E402
from reconciler.docker.events import EventWatcher
from reconciler.docker.host import Host  # noqa: E402

pytestmark = pytest.mark.timeout(120)

STORE = "s-hollow"
# Each host gets a free port of its own (port=0), so concurrent runs cannot collide on an address.
FIRST = f"127.{100 + os.getpid() % 100}.0.1"


@pytest.fixture
def hosts():
    sim = hollow.start_hollow(3, first=FIRST, port=0, slots_hint=4)
    try:
        yield sim
    finally:
        sim.stop()


def api(address: str, timeout: float = 5) -> docker.APIClient:
    return docker.DockerClient(base_url=address, version="1.41", timeout=timeout).api


def spec(name: str, command: str, **extra) -> ContainerSpec:
    return ContainerSpec(name=name, image="busybox", command=["sh", "-c", command], env=extra.pop("env", {}),
                         labels={"brokerctl.store": STORE, "brokerctl.task": name, "brokerctl.owner": "Job/t"},
                         **extra)


# -- the command model ---------------------------------------------------------------------------


@pytest.mark.parametrize("cmd, env, lines, end, code", [
    (["sleep", "2"], {}, ["hollow: sleep 2"], 2.0, 0),
    (["sh", "-c", "echo a-$I; sleep 0.5; echo b; exit 7"], {"I": "3"}, [(0.0, "a-3"), (0.5, "b")], 0.5, 7),
    (["sh", "-c", "false || echo fell back; false && echo never"], {}, ["fell back"], 0.0, 1),
    (["sh", "-c", "echo up; httpd -f"], {}, ["up"], None, 0),  # not modelled: runs until stopped
    (["sh", "-c", "sleep infinity"], {}, ["hollow: sleep infinity"], None, 0),
    (["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"], {}, None, 3600.0, 0),
    (["sh", "-c", "sleep 1m"], {}, None, 60.0, 0),
    (["sh", "-c", "echo x"], {"HOLLOW_RUN_SECONDS": "4", "HOLLOW_EXIT_CODE": "2"}, ["x"], 4.0, 2),
    (["sh", "-c", "echo x"], {"HOLLOW_RUN_SECONDS": "forever"}, ["x"], None, 0),
    ([], {}, ["hollow: no command"], None, 0),
])
def test_plan_run_models_sleep_echo_exit_and_knobs(cmd, env, lines, end, code):
    plan = hollow.plan_run(cmd, env)
    if lines is not None:
        got = [text for _, text in plan.lines] if isinstance(lines[0], str) else list(plan.lines)
        assert got == lines
    assert (plan.end, plan.code) == (end, code)


def test_plan_run_traps_sigterm():
    handled = hollow.plan_run(["sh", "-c", "trap 'echo got TERM; exit 0' TERM; sleep 3600 & wait"], {})
    assert handled.on_term == hollow.RunPlan(((0.0, "got TERM"),), 0.0, 0)
    assert hollow.plan_run(["sh", "-c", "trap '' TERM; sleep 60"], {}).ignore_term
    assert hollow.plan_run(["sleep", "60"], {"HOLLOW_IGNORE_SIGTERM": "1"}).ignore_term
    assert not hollow.plan_run(["sleep", "60"], {}).ignore_term


def test_human_duration_matches_docker_ps():
    assert [hollow.human_duration(s) for s in (0.4, 1, 3, 59, 60, 150, 3600, 7200, 86400 * 3)] == [
        "Less than a second", "1 second", "3 seconds", "59 seconds", "About a minute", "2 minutes",
        "About an hour", "2 hours", "3 days"]


def test_host_ips_are_consecutive_loopback_addresses():
    assert hollow.host_ips(3, "127.1.0.254") == ["127.1.0.254", "127.1.0.255", "127.1.1.0"]
    with pytest.raises(ValueError):
        hollow.host_ips(2, "127.255.255.254")
    with pytest.raises(ValueError):
        hollow.host_ips(1, "10.0.0.1")


# -- the Docker API as dockerhost.Host uses it ------------------------------------------------------


def test_dockerhost_start_observe_collect_remove(hosts):
    """Host.start (create + start, adopting on 409), Host.observe (label-filtered sparse list with
    Docker's Status text), Host.collect (inspect + multiplexed logs) and Host.remove."""
    host = Host("h1", hosts.addresses[0])
    try:
        info = host.observe("other-store", time.time())
        assert info.ready and info.cpus == 4 and info.containers == () and "hollow" in info.docker_version
        short = spec("bk-1", "echo first; sleep 1; echo second; exit 3")
        cid = host.start(short)
        assert host.start(short) == cid  # the name exists: adopted, not duplicated
        api(hosts.addresses[1]).create_container("busybox", name="bk-1")  # same name, other host: fine
        [obs] = host.observe(STORE, time.time()).containers
        assert (obs.id, obs.name, obs.task_id, obs.state, obs.exit_code) == (cid, "bk-1", "bk-1", "running", None)
        wait_for(lambda: host.observe(STORE, time.time()).containers[0].state == "exited", 5, "exit")
        [obs] = host.observe(STORE, time.time()).containers
        assert obs.exit_code == 3
        assert api(hosts.addresses[0]).containers(all=True)[0]["Status"].startswith("Exited (3) ")
        done = host.collect(cid, 1 << 20)
        assert done.exit_code == 3 and done.output == b"first\nsecond\n" and not done.oom_killed
        assert 0.9 < done.finished_at - done.started_at < 10
        host.remove(cid, grace=0)
        assert host.observe(STORE, time.time()).containers == ()
        host.remove(cid, grace=0)  # gone already: not an error
    finally:
        host.close()


def test_events_stream_sees_create_start_die_with_exit_code_and_destroy(hosts):
    """The EventWatcher's filters and parsing: die carries the exit code; other stores' events are filtered out."""
    host, wake = Host("h1", hosts.addresses[0]), threading.Event()
    watcher = EventWatcher(STORE, wake)
    watcher.track({"h1": host})
    seen: list[tuple[str, str | None]] = []
    stream = api(hosts.addresses[0], timeout=None).events(
        filters={"type": ["container"], "label": [f"brokerctl.store={STORE}"], "event": EventWatcher.EVENTS},
        decode=True)
    reader = threading.Thread(target=lambda: [seen.append((e["Action"], e["Actor"]["Attributes"].get("exitCode")))
                                              for e in stream], daemon=True)
    reader.start()
    try:
        wait_for(lambda: watcher.mark("h1") is not None, 5, "watcher stream open")
        foreign = api(hosts.addresses[0]).create_container("busybox", ["sleep", "0"], labels={"x": "y"})
        api(hosts.addresses[0]).start(foreign["Id"])
        cid = host.start(spec("bk-2", "exit 5"))
        wait_for(lambda: ("die", "5") in seen, 5, "die event")
        wait_for(lambda: watcher.exits("h1").get(cid) == 5, 5, "watcher records the exit")
        assert wake.is_set()
        host.remove(cid, grace=0)
        wait_for(lambda: ("destroy", None) in seen, 5, "destroy event")
        assert seen == [("create", None), ("start", None), ("die", "5"), ("destroy", None)]
    finally:
        watcher.stop()
        stream.close()
        host.close()


def test_stop_kill_and_traps_give_docker_exit_codes(hosts):
    a = api(hosts.addresses[0])

    def run(command: str, env: dict | None = None) -> str:
        cid = a.create_container("busybox", ["sh", "-c", command], environment=env)["Id"]
        a.start(cid)
        return cid

    plain, killed = run("sleep 3600"), run("sleep 3600")
    trapped, stubborn = run("trap 'echo got TERM; exit 0' TERM; sleep 3600 & wait"), run("trap '' TERM; sleep 3600")
    a.stop(plain, timeout=5)
    a.kill(killed)
    a.stop(trapped, timeout=5)
    began = time.monotonic()
    a.stop(stubborn, timeout=1)
    waited = time.monotonic() - began
    codes = [a.inspect_container(c)["State"]["ExitCode"] for c in (plain, killed, trapped, stubborn)]
    assert codes == [143, 137, 0, 137]
    assert waited >= 0.9  # SIGTERM ignored: killed only once the grace period ran out
    assert a.logs(trapped) == b"hollow: trap 'echo got TERM; exit 0' TERM; sleep 3600 & wait\ngot TERM\n"
    with pytest.raises(docker.errors.APIError) as refused:
        a.kill(plain)
    assert refused.value.status_code == 409
    running = run("sleep 3600")
    with pytest.raises(docker.errors.APIError) as busy:
        a.remove_container(running)
    assert busy.value.status_code == 409
    a.remove_container(running, force=True)
    with pytest.raises(docker.errors.NotFound):
        a.inspect_container(running)


def test_logs_tail_and_follow_and_wait(hosts):
    a = api(hosts.addresses[0], timeout=None)
    cid = a.create_container("busybox", ["sh", "-c", "echo 1; echo 2; sleep 0.3; echo 3; exit 4"])["Id"]
    a.start(cid)
    streamed = list(a.logs(cid, stream=True, follow=True))  # ends when the container exits
    assert b"".join(streamed) == b"1\n2\n3\n"
    assert a.logs(cid, tail=2) == b"2\n3\n"
    assert a.wait(cid) == {"StatusCode": 4, "Error": None}
    host = Host("h1", hosts.addresses[0])
    try:
        cid = host.start(spec("bk-3", "echo a; sleep 0.2; echo b"))
        assert b"".join(host.logs(cid, follow=True)) == b"a\nb\n"
    finally:
        host.close()


def test_volumes_images_and_published_ports(hosts):
    a = api(hosts.addresses[0])
    with pytest.raises(docker.errors.NotFound):
        a.inspect_volume("data")
    assert a.create_volume("data", labels={"k": "v"})["Labels"] == {"k": "v"}
    assert a.inspect_volume("data")["Name"] == "data"
    assert a.inspect_image("registry.example/any/image:1.2")["RepoTags"] == ["registry.example/any/image:1.2"]
    a.pull("busybox", tag="latest")
    host = Host("h1", hosts.addresses[0])
    try:
        web = host.start(spec("web-1", "sleep 3600", ports=(("", 8080, 80, "tcp"),),
                              mounts=(("cache", "/cache", False),)))
        assert a.inspect_volume("cache")["Name"] == "cache"  # named volume made on first use, as Docker does
        assert a.containers(filters={"id": web})[0]["Ports"] == [
            {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}]
        with pytest.raises(Exception) as taken:
            host.start(spec("web-2", "sleep 3600", ports=(("", 8080, 80, "tcp"),)))
        assert getattr(taken.value, "reason", None) == "PortInUse"
    finally:
        host.close()


def test_health_check_passes_after_its_interval(hosts):
    a = api(hosts.addresses[0])
    check = {"test": ["CMD-SHELL", "true"], "interval": int(0.2e9), "retries": 2}
    slow = a.create_container("busybox", ["sleep", "60"], healthcheck={**check, "interval": int(60e9)})["Id"]
    ok = a.create_container("busybox", ["sleep", "60"], healthcheck=check)["Id"]
    bad = a.create_container("busybox", ["sleep", "60"], healthcheck=check,
                             environment={"HOLLOW_HEALTH": "unhealthy"})["Id"]
    for cid in (slow, ok, bad):
        a.start(cid)
    assert a.containers(filters={"id": slow})[0]["Status"].endswith("(health: starting)")
    wait_for(lambda: a.containers(filters={"id": ok})[0]["Status"].endswith("(healthy)"), 5, "healthy")
    wait_for(lambda: a.inspect_container(bad)["State"]["Health"]["Status"] == "unhealthy", 5, "unhealthy")


def test_keep_alive_answers_each_request_in_order_and_connection_close_hangs_up(hosts):
    ip, port = hosts.addresses[0].split("://")[1].split(":")

    def exchange(data: bytes) -> bytes:
        with socket.create_connection((ip, int(port)), timeout=5) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)  # a server that keeps the connection open would leave recv waiting
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)

    both = exchange(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\nGET /v1.41/containers/nope/json HTTP/1.1\r\n"
                    b"Host: x\r\nConnection: close\r\n\r\n")
    assert both.count(b"HTTP/1.1 ") == 2 and both.index(b"200 OK") < both.index(b"404 Not Found")
    assert b"No such container: nope" in both
    first_only = exchange(b"GET /_ping HTTP/1.1\r\nConnection: close\r\n\r\nGET /_ping HTTP/1.1\r\n\r\n")
    assert first_only.count(b"HTTP/1.1 ") == 1 and first_only.endswith(b"OK")
    assert hosts.stats()["unanswered"] == 0
    assert b"page not found" in exchange(b"GET /v1.41/swarm HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert hosts.stats()["unanswered"] == 1  # counted: a benchmark can tell the simulator lacked a route


# -- failure knobs ------------------------------------------------------------------------------------


def test_freeze_holds_answers_until_thaw_and_kill_refuses_until_revive(hosts):
    address = hosts.addresses[1]
    a = api(address, timeout=10)
    cid = a.create_container("busybox", ["sleep", "3600"])["Id"]
    a.start(cid)
    hosts.freeze("h2")
    with pytest.raises(requests.exceptions.ReadTimeout):
        api(address, timeout=0.3).ping()
    answered = []
    late = threading.Thread(target=lambda: answered.append(a.ping()))
    late.start()
    time.sleep(0.3)
    assert answered == []  # accepted, not answered
    assert api(hosts.addresses[0]).ping()  # the other hosts still answer
    hosts.thaw(address)
    late.join(5)
    assert answered == [True]
    hosts.kill(address.split("://")[1].split(":")[0])
    with pytest.raises(requests.exceptions.ConnectionError):
        api(address).ping()
    ip, port = address.split("://")[1].split(":")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((ip, int(port)), timeout=1)
    assert hosts.stats()["up"] == 2
    hosts.revive("h2")
    assert a.inspect_container(cid)["State"]["Running"]  # containers outlive a dead daemon
    hosts.kill("h2")
    hosts.revive("h2", reboot=True)
    assert a.inspect_container(cid)["State"]["ExitCode"] == 137  # a reboot ends them


def test_subprocess_mode_is_driven_through_the_control_endpoint():
    sim = hollow.start_hollow(2, first=f"127.{100 + os.getpid() % 100}.1.1", port=0, subprocess=True)
    try:
        assert all(api(a).ping() for a in sim.addresses)
        sim.freeze("h1")
        with pytest.raises(requests.exceptions.ReadTimeout):
            api(sim.addresses[0], timeout=0.3).ping()
        sim.thaw("h1")
        assert api(sim.addresses[0]).ping()
        stats = sim.stats()
        assert stats["hosts"] == 2 and stats["up"] == 2 and stats["requests"] >= 3 and stats["rss_bytes"] > 0
    finally:
        sim.stop()
    assert sim.proc.returncode == 0  # SIGTERM: a clean exit


def test_command_line_prints_addresses_writes_hosts_json_and_exits_on_sigterm(tmp_path):
    listing = tmp_path / "hosts.json"
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "hollow.py"), "--hosts", "2", "--first",
                             f"127.{100 + os.getpid() % 100}.2.1", "--port", "0", "--hosts-json", str(listing),
                             "--control", "none"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        addresses = [proc.stdout.readline().strip() for _ in range(2)]
        assert [h["address"] for h in json.loads(listing.read_text())] == addresses
        assert all(api(a).ping() for a in addresses)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "2 hosts up" in err


# -- brokerctl's own controller against hollow hosts --------------------------------------------------


def test_controller_runs_a_job_and_a_service_on_hollow_hosts(hosts, tmp_path):
    db = tmp_path / "broker.db"
    nodes = [SimpleNamespace(name=f"h{i + 1}", address=a) for i, a in enumerate(hosts.addresses)]
    cli(db, "apply", "-f", "-", input=nodes_yaml(nodes, {"default": 4}), check=True)
    cli(db, "apply", "-f", "-", input=job_yaml("twenty", "sleep 0.1", completions=20, parallelism=10), check=True)
    service = {"apiVersion": "broker/v1", "kind": "Service", "metadata": {"name": "five"},
               "spec": {"replicas": 5, "template": {"image": "busybox", "command": "echo serving; sleep 3600"}}}
    with ControllerProcess(db):
        waited = cli(db, "wait", "job/twenty", "--for", "condition=Complete", "--timeout", "60")
        assert waited.returncode == 0, waited.stderr
        cli(db, "apply", "-f", "-", input=json.dumps(service), check=True)
        wait_for(lambda: cli_json(db, "get", "services", "five")[0]["status"]["running"] == 5, 30, "5 replicas")
        running = [c for address in hosts.addresses
                   for c in api(address).containers(filters={"label": "brokerctl.owner=Service/five"})]
        assert len(running) == 5 and {c["State"] for c in running} == {"running"}
        assert len({t["node"] for t in tasks_of(db, "Service/five")}) == 3  # spread over the hosts
        cli(db, "scale", "service/five", "--replicas", "2", check=True)
        wait_for(lambda: sum(t["phase"] == "Stopped" for t in tasks_of(db, "Service/five")) == 3, 30, "3 stopped")
        stopped = [t for t in tasks_of(db, "Service/five") if t["phase"] == "Stopped"]
        assert {t["reason"] for t in stopped} == {"ScaledDown"}
        assert "serving" in cli(db, "logs", stopped[0]["id"], check=True).stdout  # output kept at the stop
    assert hosts.stats()["unanswered"] == 0  # the controller asked for nothing the simulator lacks
    tasks = tasks_of(db, "Job/twenty")
    assert len(tasks) == 20 and {t["phase"] for t in tasks} == {"Succeeded"}
    assert all(t["exitCode"] == 0 for t in tasks)
    logs = cli(db, "logs", "job/twenty", check=True).stdout
    assert all(f"[{t['id']}] hollow: sleep 0.1" in logs for t in tasks)


@pytest.mark.timeout(300)
def test_hollow_scale_benchmark_runs_end_to_end_at_a_small_size(tmp_path):
    """bench/hollow_scale.py (a controller over hollow hosts: burst, steady state, failover) runs
    through at 10 nodes and writes its five figures, each with a baseline (figures are never asserted)."""
    out = tmp_path / "figures.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "hollow_scale.py"), "--nodes", "10", "--fail", "2",
                           "--window", "2", "--reps", "1", "--first", f"127.5.{os.getpid() % 200 + 20}.1",
                           "--json", str(out)], capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert [f["name"].split(":")[0] for f in figures] == [
        "Hollow 10 nodes", "Hollow 10 nodes, 100 running", "Hollow 10 nodes, 100 running",
        "Hollow 10 nodes, 100 running", "Hollow failover of 2 of 10 nodes"]
    assert all(f["base_median"] and f["median"] >= 0 for f in figures)
    assert "all 20 tasks running elsewhere" in proc.stdout
