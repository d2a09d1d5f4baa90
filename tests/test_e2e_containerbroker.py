"""Container Broker's own API on a `brokerctl server` process, over real HTTP, on real daemons: the
client script of examples/ runs a task to completed and reads its logs; a failing command ends
failed with its exit code and retries; kill_container kills a started task's container; an
idempotency key gives one Job; nodes are added, changed, refused and accepted (cordon, uncordon)
and removed; the status routes filter by status and tags; roles hold as on the rest of the API.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ServerProcess, cli, cli_json, wait_for

pytestmark = pytest.mark.timeout(240)

CLIENT = Path(__file__).resolve().parent.parent / "examples" / "containerbroker_client.py"


@pytest.fixture
def served(clean_hosts, db, tmp_path):
    """A server with its controller and storage mount ``shared``; the first daemon added through
    POST /nodes with two `cpu` slots."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "greeting").write_text("hello from the shared mount\n")
    shared.chmod(0o755)
    with ServerProcess(db, tmp_path / "state", "--docker-timeout", "30", "--probe-timeout", "5",
                       "--lost-after", "60", "--storage-mount", f"shared={shared}") as server:
        admin = server.client(server.admin, timeout=30)
        added = admin.post("/nodes", json={"hostname": clean_hosts[0].address, "slots_execution_types": {"cpu": 2}})
        assert added.status_code == 201, added.text
        server.node = added.json()["uuid"]
        wait_for(lambda: admin.get(f"/nodes/{server.node}").json()["status"] == "available", 30, "the node available")
        server.admin_client = admin
        yield server


def task(client, uuid: str) -> dict:
    return client.get(f"/tasks/{uuid}").json()


def submit(client, cmd: str, **fields) -> str:
    made = client.post("/tasks", json={"name": "t", "image": "busybox", "cmd": cmd, "execution_type": "cpu", **fields})
    assert made.status_code == 200, made.text
    assert made.json()["status"] == "waiting"
    return made.json()["uuid"]


def test_the_client_script_runs_a_task_to_completed_and_reads_its_logs(served):
    run = subprocess.run([sys.executable, str(CLIENT), "--execution-type", "cpu", "--tag", "kind=demo",
                          "--cmd", "echo hello from container broker; echo second line"],
                         env={**os.environ, "BROKER_SERVER": served.url, "BROKER_TOKEN": served.admin},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    uuid = lines[0].removeprefix("uuid ")
    assert lines[-3:] == ["exit_code 0 try_count 0", "hello from container broker", "second line"]
    assert "status completed" in lines and lines.index("status completed") < lines.index("exit_code 0 try_count 0")
    shown = task(served.admin_client, uuid)
    assert (shown["status"], shown["exit_code"], shown["execution_type"]) == ("completed", 0, "cpu")
    assert shown["started_at"] and shown["finished_at"] and shown["seconds_running"] in (0, 1)
    # It is a Job like any other: the CLI sees it and its output.
    (job,) = cli_json(served.db, "get", "jobs")
    assert (job["metadata"]["name"], job["metadata"]["labels"]["kind"]) == (f"cb-{uuid}", "demo")
    assert cli(served.db, "logs", f"job/cb-{uuid}", check=True).stdout.endswith("second line\n")


def test_storage_mounts_reach_the_configured_host_path(served):
    client = served.admin_client
    uuid = submit(client, "cat /data/greeting", storage_mounts={"shared": "/data"})
    wait_for(lambda: task(client, uuid)["status"] in ("completed", "failed"), 60, "the task to end")
    assert task(client, uuid)["status"] == "completed", task(client, uuid)
    assert client.get(f"/tasks/{uuid}/logs").json() == {"logs": "hello from the shared mount\n"}


def test_a_failing_command_is_retried_three_times_then_failed_with_its_exit_code(served):
    client = served.admin_client
    uuid = submit(client, "echo trying; exit 3")
    seen = set()

    def ended():
        shown = task(client, uuid)
        seen.add(shown["status"])
        return shown["status"] == "failed"

    wait_for(ended, 90, "the task to fail after its retries", interval=0.2)
    shown = task(client, uuid)
    assert (shown["exit_code"], shown["try_count"]) == (3, 3)
    assert "4 failed attempts, backoffLimit 3" in shown["error"]
    assert "retry" in seen
    attempts = cli_json(served.db, "get", "tasks")
    assert [t["exitCode"] for t in attempts] == [3, 3, 3, 3]
    assert client.get(f"/tasks/{uuid}/logs").json() == {"logs": "trying\n"}


def test_kill_container_kills_a_started_tasks_container_and_the_attempt_is_retried(served):
    client = served.admin_client
    uuid = submit(client, "echo up; sleep 300")
    refused = client.post(f"/tasks/{uuid}/kill_container")
    assert refused.status_code == 409 and "is not started" in refused.json()["message"]
    wait_for(lambda: task(client, uuid)["status"] == "started", 60, "the task started")
    wait_for(lambda: client.get(f"/tasks/{uuid}/logs").json()["logs"] == "up\n", 30, "its live output")
    killed = client.post(f"/tasks/{uuid}/kill_container")
    assert killed.status_code == 200, killed.text
    first = killed.json()["killed"]
    wait_for(lambda: task(client, uuid)["try_count"] == 1, 30, "the killed attempt counted as a failure")
    attempts = {t["id"]: t for t in cli_json(served.db, "get", "tasks")}
    assert (attempts[first]["phase"], attempts[first]["exitCode"]) == ("Failed", 137)
    assert task(client, uuid)["status"] in ("retry", "starting", "started")
    cli(served.db, "delete", "job", f"cb-{uuid}", check=True)


def test_an_idempotency_key_returns_the_first_answer_and_creates_one_job(served):
    client = served.admin_client
    body = {"name": "once", "image": "busybox", "cmd": "true", "execution_type": "cpu"}
    first = client.post("/tasks", json=body, headers={"X-Idempotency-Key": "order-42"})
    again = client.post("/tasks", json={**body, "cmd": "false"}, headers={"X-Idempotency-Key": "order-42"})
    plain = client.post("/tasks", json=body, headers={"Idempotency-Key": "order-42"})  # Container Broker's spelling
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() == plain.json()
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    other = client.post("/tasks", json=body, headers={"X-Idempotency-Key": "order-43"})
    assert other.json()["uuid"] != first.json()["uuid"]
    names = sorted(j["metadata"]["name"] for j in cli_json(served.db, "get", "jobs"))
    assert names == sorted(f"cb-{r.json()['uuid']}" for r in (first, other))


def test_nodes_are_added_changed_refused_accepted_and_removed(served, clean_hosts):
    client = served.admin_client
    second = client.post("/nodes", json={"hostname": clean_hosts[1].address, "slots_execution_types": {"io": 1}})
    assert second.status_code == 201
    uuid = second.json()["uuid"]
    assert second.json()["hostname"] == clean_hosts[1].address
    again = client.post("/nodes", json={"hostname": clean_hosts[1].address, "slots_execution_types": {"io": 1}})
    assert again.status_code == 409 and "PATCH /nodes/" in again.json()["message"]
    assert sorted(n["uuid"] for n in client.get("/nodes").json()) == sorted([served.node, uuid])

    changed = client.patch(f"/nodes/{uuid}", json={"slots_execution_types": {"io": 2, "cpu": 1}})
    assert changed.json()["slots_execution_types"] == {"io": 2, "cpu": 1}
    (node,) = [n for n in cli_json(served.db, "get", "nodes") if n["metadata"]["name"] == uuid]
    assert node["spec"]["slots"] == {"io": 2, "cpu": 1} and node["spec"]["address"] == clean_hosts[1].address

    assert client.post(f"/nodes/{served.node}/reject_new_tasks").json()["accept_new_tasks"] is False
    assert cli_json(served.db, "get", "node", served.node)[0]["spec"]["unschedulable"] is True
    held = submit(client, "true")
    wait_for(lambda: task(client, held)["status"] == "completed", 60, "the task on the other node's cpu slot")
    placed = [t["node"] for t in cli_json(served.db, "get", "tasks")]
    assert placed == [uuid]  # never on the node that refuses new tasks
    assert client.post(f"/nodes/{served.node}/accept_new_tasks").json()["accept_new_tasks"] is True

    assert client.delete(f"/nodes/{uuid}").json() == {"uuid": uuid, "outcome": "deleted"}
    assert client.get(f"/nodes/{uuid}").status_code == 404


def test_status_routes_filter_tasks_by_status_and_tags_and_show_each_nodes_slots(served):
    client = served.admin_client
    video = submit(client, "true", tags={"type": "video", "api_id": 1})
    audio = submit(client, "exit 1", tags={"type": "audio"})
    busy = submit(client, "sleep 300", tags={"type": "video", "api_id": 2})
    wait_for(lambda: task(client, video)["status"] == "completed" and task(client, busy)["status"] == "started",
             60, "one task completed and one started")

    newest_first = [t["uuid"] for t in client.get("/status/tasks").json()]
    assert newest_first == [busy, audio, video]
    videos = client.get("/status/tasks", params={"tags[type]": "video"}).json()
    assert [(t["uuid"], t["name"], t["tags"]) for t in videos] == [
        (busy, "t", {"type": "video", "api_id": "2"}), (video, "t", {"type": "video", "api_id": "1"})]
    assert [t["uuid"] for t in client.get("/status/tasks", params={"tags[type]": "video", "tags[api_id]": "1"}).json()] \
        == [video]
    assert [t["uuid"] for t in client.get("/status/tasks", params={"status": "completed"}).json()] == [video]
    assert [t["uuid"] for t in client.get("/status/tasks", params={"limit": 1}).json()] == [busy]
    bad = client.get("/status/tasks", params={"status": "running"})
    assert bad.status_code == 422 and "use one of waiting, starting, started" in bad.json()["message"]

    (node,) = client.get("/status/nodes").json()
    assert (node["uuid"], node["status"]) == (served.node, "available")
    running = [s["current_task"]["uuid"] for s in node["slots"] if s["status"] == "running"]
    assert len(node["slots"]) == 2 and busy in running and set(running) <= {busy, audio}  # audio may be retrying
    assert node["usage_per_execution_type"] == {"cpu": 50 * len(running)}
    health = client.get("/healthcheck").json()
    assert (health["status"], health["nodes"], health["slots"]) == ("OK", 1, 2)
    cli(served.db, "delete", "job", f"cb-{busy}", check=True)


def test_tokens_and_roles_hold_as_on_the_rest_of_the_api(served):
    db, admin = served.db, served.admin_client
    uuid = submit(admin, "true")
    tokens = {}
    for user, role, ns in (("viewer", "view", "default"), ("editor", "edit", "default")):
        made = cli(db, "token", "create", "--user", user, "--role", role, "--namespace", ns, check=True)
        tokens[user] = served.client(made.stdout.strip().splitlines()[-1])
    assert served.client().get(f"/tasks/{uuid}").status_code == 401
    viewer, editor = tokens["viewer"], tokens["editor"]
    assert viewer.get(f"/tasks/{uuid}").json()["uuid"] == uuid
    refused = viewer.post("/tasks", json={"name": "t", "image": "busybox", "cmd": "true", "execution_type": "cpu"})
    assert refused.status_code == 403
    assert refused.json()["message"].startswith("user viewer (role view in default) may not create tasks")
    assert submit(editor, "true")
    for method, path in (("get", "/nodes"), ("post", "/nodes"), ("post", f"/nodes/{served.node}/reject_new_tasks"),
                         ("get", "/status/nodes")):
        answer = editor.request(method.upper(), path, json={})
        assert answer.status_code == 403 and "only an admin token may" in answer.json()["message"], (method, path)
    assert editor.get("/healthcheck").json()["status"] == "OK"
