"""`brokerctl server` as a process, driven over real HTTP: the admin token of its first start, its
signals, its listen address and TLS, and its errors; on real daemons, a Job applied through the API
runs to completion in the server's own controller, its output is read and followed, a watch sees it
change, and the API keeps answering while a Docker host hangs.
"""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from helpers import ServerProcess, cli, job_yaml, nodes_yaml, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import tlscerts  # noqa: E402

pytestmark = pytest.mark.timeout(180)

EXIT_WITHIN = 3.0  # seconds from SIGTERM to the process gone (the server's deadline is 2 s)
YAML = {"Content-Type": "application/yaml"}


@pytest.fixture
def state(tmp_path) -> Path:
    return tmp_path / "state"


def sigterm_and_time(proc: subprocess.Popen) -> float:
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return time.monotonic() - began


def error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error"], body["message"]


# -- without Docker -------------------------------------------------------------------------------


def test_the_first_start_writes_an_admin_token_to_a_private_file_and_never_prints_it(db, state):
    with ServerProcess(db, state) as first:
        token_file = state / "brokerctl" / "admin.token"
        token = first.admin
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
        assert f"wrote it to {token_file} (mode 0600)" in first.output()
        assert token.startswith("bk_") and token not in first.output()
        assert first.client(token).get("/api/v1/nodes").json()["items"] == []
        assert first.client().get("/api/v1/nodes").status_code == 401
    token_file.unlink()

    with ServerProcess(db, state) as again:  # the store has a token: none is made, nothing is written
        assert not token_file.exists() and "admin token" not in again.output()
        assert again.client(token).get("/api/v1/nodes").status_code == 200
    listed = json.loads(cli(db, "token", "list", "-o", "json", check=True).stdout)
    assert [(t["user"], t["role"]) for t in listed] == [("admin", "admin")]


def test_sigterm_ends_the_server_within_two_seconds_and_ends_its_open_watches(db, state):
    """A watch streams until its client leaves; the server ends it (as a timeout would) instead of waiting."""
    server = ServerProcess(db, state).start()
    try:
        client = server.client(server.admin, timeout=30)
        with client.stream("GET", "/api/v1/nodes?watch=true") as watching:
            assert watching.status_code == 200
            took = sigterm_and_time(server.proc)
            assert list(watching.iter_lines()) == []  # the stream ended cleanly (no event: no node)
    finally:
        server.stop()
    print(f"\nserver exited {took:.2f}s after SIGTERM with a watch open")
    assert took < EXIT_WITHIN
    assert server.proc.returncode == 0
    assert "controller stopped; containers keep running" in server.output()
    assert "Exception in ASGI application" not in server.output() and "exiting:" not in server.output()
    with ServerProcess(db, state) as again:  # the lease was given up: a new server runs the controller at once
        assert again.client().get("/readyz").status_code == 200


def test_the_api_alone_and_a_store_another_controller_runs_on(db, state):
    """--no-controller serves the API alone; a second server on a store whose controller another server
    runs serves too, its controller standing by, and leads once the first server stops."""
    with ServerProcess(db, state, "--no-controller") as alone:
        ready = alone.client().get("/readyz")
        assert (ready.status_code, ready.json()["checks"]) == (200, {"store": "ok"})
        assert "no controller in this process (--no-controller)" in alone.output()
        with ServerProcess(db, state) as full:
            assert "heartbeat" in full.client().get("/readyz").json()["checks"]["controller"]
            second = ServerProcess(db, state).start()
            try:
                assert second.client().get("/readyz").status_code == 200
                assert f"standby: pid {full.proc.pid} on " in second.output()
                full.stop()
                wait_for(lambda: "leader at epoch 2" in second.output(), 10, "the second server taking the lead")
            finally:
                second.stop()


def test_a_bad_listen_address_or_tls_pair_is_one_line_and_exit_2(db, state, tmp_path):
    env = {"XDG_STATE_HOME": str(state)}
    bad = cli(db, "server", "--listen", "localhost", env=env)
    assert bad.returncode == 2
    assert "--listen 'localhost': use HOST:PORT, e.g. 127.0.0.1:8080" in bad.stderr
    half = cli(db, "server", "--listen", "127.0.0.1:0", "--tls-cert", str(tmp_path / "c.pem"), env=env)
    assert half.returncode == 2 and "--tls-cert and --tls-key go together" in half.stderr
    (tmp_path / "c.pem").write_text("not a certificate")
    unreadable = cli(db, "server", "--listen", "127.0.0.1:0", "--tls-cert", str(tmp_path / "c.pem"),
                     "--tls-key", str(tmp_path / "c.pem"), env=env)
    assert unreadable.returncode == 2 and "cannot load them" in unreadable.stderr
    queue = cli(db, "server", "--listen", "127.0.0.1:0", "--queue", "lottery", env=env)
    assert queue.returncode == 2 and "--queue lottery: use fair" in queue.stderr, queue.stderr
    assert not (state / "brokerctl" / "admin.token").exists()  # refused before anything was made


def test_the_server_speaks_tls_with_the_pair_it_is_given(db, state, tmp_path):
    ca = tlscerts.CertAuthority.create(tmp_path / "ca")
    pair = ca.server("server", ips=("127.0.0.1",))
    with ServerProcess(db, state, "--tls-cert", str(pair.cert), "--tls-key", str(pair.key), ca=ca.cert) as served:
        assert served.url.startswith("https://127.0.0.1:")
        assert served.client(served.admin).get("/api/v1/nodes").status_code == 200
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(served.url + "/healthz", verify=True)  # the system's CAs do not know this one
        with pytest.raises(httpx.TransportError):
            httpx.get(served.url.replace("https://", "http://") + "/healthz", timeout=5).raise_for_status()


def test_errors_over_http_are_json_with_the_cli_message_and_code(db, state):
    with ServerProcess(db, state, "--no-controller") as served:
        client = served.client(served.admin)
        malformed = client.post("/api/v1/apply?filename=jobs.yaml", headers=YAML,
                                content="apiVersion: broker/v1\nkind: Job\nmetadata: {name: a\n")
        status, code, message = error(malformed)
        assert (status, code) == (422, "Invalid") and message.startswith("jobs.yaml: line 4")
        assert malformed.json()["details"]

        big = client.post("/api/v1/apply", headers=YAML, content=b"#" * (10 * 1024 * 1024 + 1))
        assert error(big)[:2] == (413, "TooLarge")

        assert error(client.get("/api/v1/namespaces/default/jobs/nope")) == (
            404, "NotFound", "Job 'nope' not found; `brokerctl get jobs` lists them")
        assert error(client.get("/api/v1/nowhere"))[:2] == (404, "NotFound")

        assert client.post("/api/v1/apply", headers=YAML, content=job_yaml("once")).status_code == 200
        changed = client.post("/api/v1/apply", headers=YAML, content=job_yaml("once", "false"))
        assert error(changed)[:2] == (409, "Conflict") and "once" in error(changed)[2]
        local = cli(db, "apply", "-f", "-", input=job_yaml("once", "false"))
        assert local.returncode != 0 and " ".join(error(changed)[2].split()) in " ".join(local.stderr.split())

        assert client.delete("/api/v1/namespaces/default/jobs/once").json()["outcome"] == "deleted"
        assert error(client.delete("/api/v1/namespaces/default/jobs/once"))[:2] == (404, "NotFound")


# -- on real daemons ------------------------------------------------------------------------------


@pytest.fixture
def served(clean_hosts, db, state):
    """A server with its controller, the first two daemons applied through it as Nodes."""
    with ServerProcess(db, state, "--docker-timeout", "30", "--probe-timeout", "5", "--lost-after", "60") as server:
        admin = server.client(server.admin, timeout=30)
        assert admin.post("/api/v1/apply", headers=YAML, content=nodes_yaml(clean_hosts[:2])).status_code == 200
        wait_for(lambda: all(n["status"]["condition"] == "Ready" for n in admin.get("/api/v1/nodes").json()["items"]),
                 30, "both nodes Ready")
        server.admin_client = admin
        yield server


def job_phase(client, name: str) -> str:
    return client.get(f"/api/v1/namespaces/default/jobs/{name}").json()["status"]["phase"]


def test_a_job_applied_over_http_completes_and_its_tasks_and_output_are_read_back(served):
    client = served.admin_client
    applied = client.post("/api/v1/apply", headers=YAML, content=job_yaml("hello", "echo hello from $HOSTNAME"))
    assert applied.json()["results"][0]["outcome"] == "created"
    wait_for(lambda: job_phase(client, "hello") == "Complete", 30, "the job to complete")

    (task,) = client.get("/api/v1/namespaces/default/tasks").json()["items"]
    assert (task["owner"], task["phase"], task["exitCode"]) == ("Job/hello", "Succeeded", 0)
    assert client.get(f"/api/v1/namespaces/default/tasks/{task['id']}").json()["id"] == task["id"]
    logs = client.get(f"/api/v1/namespaces/default/tasks/{task['id']}/logs")
    assert logs.status_code == 200 and logs.text.startswith("hello from ")
    assert client.get("/api/v1/namespaces/default/jobs/hello/logs").text.startswith(f"[{task['id']}] hello from ")
    local = cli(served.db, "logs", task["id"], check=True).stdout
    assert local == logs.text  # what the CLI prints
    assert client.get("/api/v1/namespaces/default/jobs/hello").json()["metadata"]["createdBy"] == "admin"


def test_following_a_running_tasks_logs_streams_each_line_as_it_is_written(served):
    client = served.admin_client
    client.post("/api/v1/apply", headers=YAML, content=job_yaml("talk", "echo one; sleep 2; echo two"))
    wait_for(lambda: job_phase(client, "talk") == "Running", 30, "the job to run")
    (task,) = client.get("/api/v1/namespaces/default/tasks").json()["items"]

    received = []
    with client.stream("GET", f"/api/v1/namespaces/default/tasks/{task['id']}/logs?follow=true") as stream:
        assert stream.status_code == 200
        for chunk in stream.iter_text():
            received.append(chunk)
            if len(received) == 1:
                assert chunk == "one\n"  # before the task wrote "two"
                assert client.get(f"/api/v1/namespaces/default/tasks/{task['id']}").json()["phase"] == "Running"
    assert "".join(received) == "one\ntwo\n" and len(received) >= 2  # the stream ended with the task


def test_a_watch_sees_a_job_added_then_modified_by_the_servers_controller(served):
    client = served.admin_client
    with client.stream("GET", "/api/v1/namespaces/default/jobs?watch=true&timeoutSeconds=30") as stream:
        events = (json.loads(line) for line in stream.iter_lines() if line)
        client.post("/api/v1/apply", headers=YAML, content=job_yaml("w", "sleep 1"))
        added = next(events)
        assert (added["type"], added["object"]["metadata"]["name"]) == ("ADDED", "w")
        phases = [added["object"]["status"]["phase"]]
        for event in events:
            assert (event["type"], event["object"]["metadata"]["name"]) == ("MODIFIED", "w")
            phases.append(event["object"]["status"]["phase"])
            if phases[-1] == "Complete":
                break
    # ADDED carries the Job as the watch first reads it: Pending, or already Running when the
    # controller placed it within the watch's read interval.
    assert phases[0] in ("Pending", "Running") and phases[-1] == "Complete" and "Running" in phases
    assert len(phases) >= 2  # at least one MODIFIED after the ADDED


def test_an_api_write_wakes_the_controller_of_the_same_process_at_once(clean_hosts, db, state):
    """With a resync of 5 minutes, only a wake-up makes the idle controller start the Job within seconds."""
    with ServerProcess(db, state, "--resync", "300") as server:
        client = server.client(server.admin)
        client.post("/api/v1/apply", headers=YAML, content=nodes_yaml(clean_hosts[:1]))
        wait_for(lambda: client.get("/api/v1/nodes/h1").json()["status"]["condition"] == "Ready", 30, "h1 Ready")
        time.sleep(1.0)  # the controller's passes after the node's probe are over: it waits for its resync
        client.post("/api/v1/apply", headers=YAML, content=job_yaml("now"))
        wait_for(lambda: job_phase(client, "now") == "Complete", 10, "the job to complete without a resync")


def test_the_api_keeps_answering_while_a_docker_host_hangs(served, clean_hosts):
    """h1 frozen (SIGSTOP) with a task on it: a request of its live output waits on the daemon, and so
    does the controller's pass; every other request is answered meanwhile."""
    client = served.admin_client
    client.post("/api/v1/apply", headers=YAML, content=job_yaml("idle", "sleep 600", nodeName="h1"))
    wait_for(lambda: job_phase(client, "idle") == "Running", 30, "the job to run")
    (task,) = client.get("/api/v1/namespaces/default/tasks").json()["items"]
    hung = []
    clean_hosts[0].kill(signal.SIGSTOP)
    try:
        waiting = threading.Thread(target=lambda: hung.append(
            client.get(f"/api/v1/namespaces/default/tasks/{task['id']}/logs", timeout=60)), daemon=True)
        waiting.start()
        time.sleep(1.0)
        assert waiting.is_alive() and not hung  # the logs request waits on the frozen daemon
        quick = served.client(served.admin, timeout=3)
        for path in ("/healthz", "/api/v1/nodes", "/api/v1/tasks", f"/api/v1/namespaces/default/tasks/{task['id']}",
                     "/api/v1/namespaces/default/jobs", "/metrics"):
            assert quick.get(path).status_code == 200, path
        assert quick.post("/api/v1/apply", headers=YAML, content=job_yaml("later")).status_code == 200
        assert waiting.is_alive()
    finally:
        clean_hosts[0].kill(signal.SIGCONT)
    waiting.join(60)
    assert hung and hung[0].status_code == 200
