"""Namespaces on real dockerd hosts: one Job name in two namespaces, deleting a namespace with what is in
it, a namespace's mounts and nodeSelector on the containers, and a store made before namespaces upgraded
under a running Service without restarting it."""

from __future__ import annotations

import json
import os
import signal
import io
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from helpers import SERVE, ControllerProcess, broker_containers, cli, cli_json, job_yaml, service_yaml, wait_for

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parent.parent
# The last commit before namespaces: its code makes the stores that the namespaces migration upgrades.
BEFORE_NAMESPACES = "eee8261ec7f1b2f7e4685359690ce9ec8a197359"


def namespaces(*names: str, **spec) -> str:
    return "\n---\n".join(json.dumps({"apiVersion": "broker/v1", "kind": "Namespace", "metadata": {"name": n},
                                      "spec": spec}) for n in names) + "\n"


def ours(hosts, all: bool = False) -> list[dict]:
    """The containers of this test's store on ``hosts`` (running ones unless ``all``)."""
    return [c for h in hosts for c in broker_containers(h, all=all)]


def by_namespace(hosts, owner: str) -> Counter:
    """How many running containers of ``owner`` (``Job/nightly``) each namespace label has."""
    return Counter(c["Labels"].get("brokerctl.namespace") for c in ours(hosts)
                   if c["Labels"].get("brokerctl.owner") == owner)


def test_one_job_name_in_two_namespaces_runs_side_by_side(three_nodes, db):
    """team-a and team-b both have job/nightly: each runs its own tasks (their containers say their
    namespace), completes on its own, and keeps its own output; `get jobs -A` shows both. Applying into a
    namespace that does not exist writes nothing."""
    hosts = three_nodes
    cli(db, "apply", "-f", "-", input=namespaces("team-a", "team-b"), check=True)
    for ns in ("team-a", "team-b"):
        cli(db, "apply", "-n", ns, "-f", "-", check=True,
            input=job_yaml("nightly", f"sleep 2; echo from $BROKER_TASK_ID in {ns}", completions=2, parallelism=2))
    missing = cli(db, "apply", "-n", "team-x", "-f", "-", input=job_yaml("nightly", "true"))
    assert missing.returncode == 1 and "namespace 'team-x' does not exist" in missing.stderr

    with ControllerProcess(db):
        wait_for(lambda: by_namespace(hosts, "Job/nightly") == {"team-a": 2, "team-b": 2}, 30,
                 "both namespaces' nightly running at once")
        for ns in ("team-a", "team-b"):
            cli(db, "wait", "job/nightly", "-n", ns, "--for", "condition=Complete", "--timeout", "60", check=True)

    rows = [line.split() for line in cli(db, "get", "jobs", "-A", check=True).stdout.splitlines()]
    assert rows[0][:3] == ["NAMESPACE", "NAME", "PHASE"]
    assert [r[:4] for r in rows[1:]] == [["team-a", "nightly", "Complete", "2/2"],
                                         ["team-b", "nightly", "Complete", "2/2"]]
    tasks = cli_json(db, "get", "tasks", "-A")
    assert Counter((t["namespace"], t["owner"], t["phase"]) for t in tasks) == {
        ("team-a", "Job/nightly", "Succeeded"): 2, ("team-b", "Job/nightly", "Succeeded"): 2}
    assert len({t["id"] for t in tasks}) == 4
    logs = cli(db, "logs", "job/nightly", "-n", "team-b", check=True).stdout
    assert logs.count("in team-b") == 2 and "team-a" not in logs
    assert cli_json(db, "get", "jobs") == [] and cli_json(db, "get", "tasks", "-n", "team-x") == []
    scheduled = [e for e in cli_json(db, "get", "events", "-n", "team-a") if e["reason"] == "Scheduled"]
    assert len(scheduled) == 2 and {e["namespace"] for e in scheduled} == {"team-a"}


def test_deleting_a_namespace_asks_then_stops_its_containers_and_purges_it(three_nodes, db):
    """Without --yes the deletion is refused with what would go; with it, team-b's Service and Job are
    stopped (graceful stops) and purged, then the namespace itself, while team-a's Service of the same
    name keeps its container."""
    hosts = three_nodes
    serve = SERVE.format(before="")
    cli(db, "apply", "-f", "-", input=namespaces("team-a", "team-b"), check=True)
    cli(db, "apply", "-n", "team-a", "-f", "-", input=service_yaml("web", serve, 1), check=True)
    cli(db, "apply", "-n", "team-b", "-f", "-", check=True,
        input=service_yaml("web", serve, 2) + "---\n" + job_yaml("long", serve))

    with ControllerProcess(db):
        wait_for(lambda: by_namespace(hosts, "Service/web") == {"team-a": 1, "team-b": 2}
                 and by_namespace(hosts, "Job/long") == {"team-b": 1}, 30, "both namespaces running")
        [kept] = [c["Id"] for c in ours(hosts) if c["Labels"]["brokerctl.namespace"] == "team-a"]

        refused = cli(db, "delete", "namespace", "team-b")
        assert refused.returncode == 1
        assert refused.stderr == ("error: namespace 'team-b' holds 1 job (long), 1 service (web); pass --yes to "
                                  "delete namespace team-b and everything in it\n")
        assert by_namespace(hosts, "Service/web")["team-b"] == 2, "nothing stopped"

        out = cli(db, "delete", "namespace", "team-b", "--yes", check=True).stdout
        assert out == "namespace/team-b deleting (1 job, 1 service stopping first)\n"
        assert cli(db, "apply", "-n", "team-b", "-f", "-", input=job_yaml("late", "true")).returncode == 1
        wait_for(lambda: [n["metadata"]["name"] for n in cli_json(db, "get", "namespaces")] == ["default", "team-a"],
                 30, "team-b purged once its containers are gone")
        assert not [c for c in ours(hosts, all=True) if c["Labels"]["brokerctl.namespace"] == "team-b"]
        assert [c["Id"] for c in ours(hosts)] == [kept], "team-a's web untouched"
    reasons = {(e["object"], e["reason"]) for e in cli_json(db, "get", "events", "-A")}
    assert {("Namespace/team-b", "Deleted"), ("Service/web", "Deleted"), ("Job/long", "Deleted")} <= reasons
    assert {t["namespace"] for t in cli_json(db, "get", "tasks", "-A")} == {"team-a"}, "team-b's tasks purged"


def test_a_namespaces_mounts_and_node_selector_reach_its_containers(clean_hosts, db, tmp_path):
    """team-a mounts its home into every task and keeps its tasks on nodes labelled pool=shared: the
    containers run only on that node, with the bind mount (read from inside); the default namespace's
    Job is held to neither."""
    home = tmp_path / "home-a"
    home.mkdir()
    (home / "hello.txt").write_text("hello team-a\n")
    nodes = [{"apiVersion": "broker/v1", "kind": "Node",
              "metadata": {"name": h.name, "labels": {"pool": "shared"} if i == 1 else {}},
              "spec": {"address": h.address, "slots": {"default": 4}, "allowedMounts": [str(home)]}}
             for i, h in enumerate(clean_hosts)]
    cli(db, "apply", "-f", "-", input="\n---\n".join(map(json.dumps, nodes)), check=True)
    cli(db, "apply", "-f", "-", check=True, input=namespaces(
        "team-a", nodeSelector={"pool": "shared"}, mounts=[{"source": str(home), "target": "/home/team"}]))
    cli(db, "apply", "-n", "team-a", "-f", "-", check=True,
        input=job_yaml("read", "cat /home/team/hello.txt; sleep 1", completions=3, parallelism=3))
    cli(db, "apply", "-f", "-", check=True, input=job_yaml("plain", "ls /home/team || echo none; sleep 1",
                                                        completions=3, parallelism=3, placement="spread"))

    with ControllerProcess(db):
        wait_for(lambda: len([c for c in ours(clean_hosts) if c["Labels"]["brokerctl.owner"] == "Job/read"]) >= 1,
                 30, "a team-a container running")
        [running] = [c for c in ours(clean_hosts) if c["Labels"]["brokerctl.owner"] == "Job/read"][:1]
        assert [(m["Source"], m["Destination"], m["RW"]) for m in running["Mounts"] if m["Type"] == "bind"] == [
            (str(home), "/home/team", True)]
        for name, ns in (("read", "team-a"), ("plain", "default")):
            cli(db, "wait", f"job/{name}", "-n", ns, "--for", "condition=Complete", "--timeout", "60", check=True)

    nodes_of = {t["owner"]: set() for t in cli_json(db, "get", "tasks", "-A")}
    for t in cli_json(db, "get", "tasks", "-A"):
        nodes_of[t["owner"]].add(t["node"])
    assert nodes_of["Job/read"] == {clean_hosts[1].name}
    assert len(nodes_of["Job/plain"]) > 1, "spread over the nodes: the default namespace has no selector"
    assert cli(db, "logs", "job/read", "-n", "team-a", check=True).stdout.count("hello team-a") == 3
    assert cli(db, "logs", "job/plain", check=True).stdout.count("none") == 3


# -- a store made before namespaces -------------------------------------------------------------


def old_code(tmp_path: Path) -> Path:
    """The package as it was before namespaces, unpacked from git into a directory of its own."""
    if subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{BEFORE_NAMESPACES}^{{commit}}"],
                      capture_output=True).returncode != 0:
        why = f"commit {BEFORE_NAMESPACES[:7]} is not in this checkout's history (a shallow clone?)"
        if os.environ.get("CI"):  # as for the daemons: a skip in CI would hide the upgrade test
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", BEFORE_NAMESPACES, "reconciler"],
                             capture_output=True, check=True).stdout
    root = tmp_path / "before-namespaces"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    return root


def old_cli(code: Path, db: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    """The old `brokerctl`: run from its own directory, so `-m reconciler` is the old package."""
    return subprocess.run([sys.executable, "-m", "reconciler", "--db", str(db), *args], cwd=code, input=input,
                          capture_output=True, text=True, timeout=60, check=True,
                          env={**os.environ, "NO_COLOR": "1"})


def test_a_store_made_before_namespaces_is_upgraded_under_a_running_service(clean_hosts, db, tmp_path):
    """The previous code applies Nodes and a Service and its controller starts two replicas; it is
    stopped; the new controller opens the store (the migration runs) and adopts the same containers: none
    is restarted, the Service and its tasks are in `default`, and the store works on (a scale-up starts a
    third replica, which carries the namespace label the old two do not have)."""
    code = old_code(tmp_path)
    assert "namespace" not in (code / "reconciler" / "store" / "migrations.py").read_text()
    nodes = "\n---\n".join(json.dumps({"apiVersion": "broker/v1", "kind": "Node", "metadata": {"name": h.name},
                                       "spec": {"address": h.address, "slots": {"default": 4}}}) for h in clean_hosts)
    old_cli(code, db, "apply", "-f", "-", input=nodes + "\n---\n" + service_yaml("web", SERVE.format(before=""), 2))
    log = open(tmp_path / "old-controller.log", "w")
    old = subprocess.Popen([sys.executable, "-m", "reconciler", "--db", str(db), "controller"], cwd=code,
                           stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})
    try:
        wait_for(lambda: len(ours(clean_hosts)) == 2, 30, "two replicas started by the old controller")
        before = {c["Id"]: c["Labels"] for c in ours(clean_hosts)}
        tasks_before = json.loads(old_cli(code, db, "get", "tasks", "-o", "json").stdout)
    finally:
        old.send_signal(signal.SIGTERM)
        old.wait(30)
        log.close()
    assert all("brokerctl.namespace" not in labels for labels in before.values())
    assert {c["Id"] for c in ours(clean_hosts)} == set(before), "containers outlive their controller"

    with ControllerProcess(db) as ctl:
        wait_for(lambda: cli_json(db, "get", "services", "web")[0]["status"].get("ready") == 2
                 and "passes" in cli(db, "status", check=True).stdout, 30, "the new controller following web")
        tasks_after = cli_json(db, "get", "tasks")
        assert [(t["id"], t["containerId"], t["phase"]) for t in tasks_after] == [
            (t["id"], t["containerId"], t["phase"]) for t in tasks_before]
        assert {t["namespace"] for t in tasks_after} == {"default"}
        assert {c["Id"] for c in ours(clean_hosts)} == set(before), "nothing restarted"
        assert [n["metadata"]["name"] for n in cli_json(db, "get", "namespaces")] == ["default"]
        assert cli_json(db, "get", "services", "web")[0]["metadata"]["namespace"] == "default"

        cli(db, "scale", "service", "web", "--replicas", "3", check=True)
        wait_for(lambda: len(ours(clean_hosts)) == 3, 30, "a third replica")
        new = {c["Id"]: c["Labels"] for c in ours(clean_hosts)}
        assert set(before) < set(new)
        [added] = set(new) - set(before)
        assert new[added]["brokerctl.namespace"] == "default"
        assert "Stopped" not in {t["phase"] for t in cli_json(db, "get", "tasks")}
        assert "Traceback" not in ctl.output()


# -- who a task runs as, and a namespace's mounts a node does not allow ----------------------------------


def test_a_task_runs_as_its_namespaces_default_or_an_allowed_user_and_never_as_root_where_forbidden(clean_hosts, db):
    """team-a lists 1000:1000 (its default) and 1001 and forbids root; team-b only forbids root. A team-a
    task that names no user runs as 1000:1000, one naming 1001 as 1001; 1002 and 0 are refused at apply
    with the list and nothing is stored. In team-b, busybox (which runs as root) fails its attempt with
    RunAsRoot and leaves no container, an image whose user is uid 1234 runs as it, and a task naming 4242
    runs as 4242. The default namespace, without runAs, runs busybox as root as before."""
    h1 = clean_hosts[0]
    client = h1.client()
    try:
        c = client.api.create_container("busybox:latest", ["true"])
        client.api.commit(c["Id"], repository="runas-e2e", tag="uid1234", conf={"User": "1234"})
        client.api.remove_container(c["Id"], force=True)
        cli(db, "apply", "-f", "-", check=True, input=json.dumps(
            {"apiVersion": "broker/v1", "kind": "Node", "metadata": {"name": h1.name},
             "spec": {"address": h1.address, "slots": {"default": 4}}}) + "\n---\n" + namespaces(
            "team-a", runAs={"users": ["1000:1000", "1001"], "default": "1000:1000", "allowRoot": False}) + "---\n"
            + namespaces("team-b", runAs={"allowRoot": False}))
        ids = "echo uid=$(id -u) gid=$(id -g)"
        cli(db, "apply", "-n", "team-a", "-f", "-", check=True,
            input=job_yaml("plain", ids) + "---\n" + job_yaml("listed", ids, template={"user": "1001"}))
        refused = {user: cli(db, "apply", "-n", "team-a", "-f", "-",
                             input=job_yaml("other", ids, template={"user": user})) for user in ("1002", "0")}
        cli(db, "apply", "-n", "team-b", "-f", "-", check=True, input="---\n".join([
            job_yaml("rooted", ids, backoffLimit=0), job_yaml("image-user", ids, image="runas-e2e:uid1234"),
            job_yaml("numeric", ids, template={"user": "4242"})]))
        cli(db, "apply", "-f", "-", check=True, input=job_yaml("root-as-before", ids))

        with ControllerProcess(db):
            for name, ns in (("plain", "team-a"), ("listed", "team-a"), ("image-user", "team-b"),
                             ("numeric", "team-b"), ("root-as-before", "default")):
                cli(db, "wait", f"job/{name}", "-n", ns, "--for", "condition=Complete", "--timeout", "60", check=True)
            cli(db, "wait", "job/rooted", "-n", "team-b", "--for", "condition=Failed", "--timeout", "60", check=True)
    finally:
        client.api.remove_image("runas-e2e:uid1234", force=True)
        client.close()

    def ran_as(name: str, ns: str) -> str:
        return cli(db, "logs", f"job/{name}", "-n", ns, check=True).stdout.split("] ", 1)[1].strip()

    assert ran_as("plain", "team-a") == "uid=1000 gid=1000"
    assert ran_as("listed", "team-a") == "uid=1001 gid=0", "a uid without a group: Docker's gid 0"
    assert ran_as("image-user", "team-b") == "uid=1234 gid=0"
    assert ran_as("numeric", "team-b") == "uid=4242 gid=0"
    assert ran_as("root-as-before", "default") == "uid=0 gid=0"
    assert (refused["1002"].returncode, refused["1002"].stderr) == (1, (
        "error: <stdin>: document 1 (Job/other): spec.template.user '1002' is not allowed in namespace 'team-a' "
        "(runAs.users: 1000:1000, 1001); use one of those users, or leave user out to run as the default 1000:1000\n"))
    assert refused["0"].returncode == 1 and "spec.template.user '0' is root and namespace 'team-a' forbids root " \
                                           "(runAs.allowRoot: false)" in refused["0"].stderr
    assert [j["metadata"]["name"] for j in cli_json(db, "get", "jobs", "-n", "team-a")] == ["listed", "plain"]
    [rooted] = [t for t in cli_json(db, "get", "tasks", "-n", "team-b") if t["owner"] == "Job/rooted"]
    assert (rooted["phase"], rooted["reason"], rooted["message"]) == (
        "Failed", "RunAsRoot", "image busybox runs as root and namespace team-b forbids root; set template.user")
    assert not [c for c in ours(clean_hosts, all=True) if c["Labels"]["brokerctl.owner"] == "Job/rooted"]


def test_a_namespace_mount_a_node_does_not_allow_keeps_its_tasks_pending_until_one_does(clean_hosts, db, tmp_path):
    """team-a mounts its home into every task, but no node lists it in allowedMounts: the task waits
    Pending with the scheduler's usual reason and no container; once the Node allows the path it runs
    and reads the file through the mount."""
    h1 = clean_hosts[0]
    home = tmp_path / "home-a"
    home.mkdir()
    (home / "hello.txt").write_text("hello team-a\n")

    def node(allowed: list[str]) -> str:
        return json.dumps({"apiVersion": "broker/v1", "kind": "Node", "metadata": {"name": h1.name},
                           "spec": {"address": h1.address, "slots": {"default": 4}, "allowedMounts": allowed}})

    cli(db, "apply", "-f", "-", check=True, input=node([]) + "\n---\n" + namespaces(
        "team-a", mounts=[{"source": str(home), "target": "/home/team"}]))
    cli(db, "apply", "-n", "team-a", "-f", "-", check=True, input=job_yaml("read", "cat /home/team/hello.txt"))
    with ControllerProcess(db):
        [waiting] = wait_for(lambda: [t for t in cli_json(db, "get", "tasks", "-n", "team-a") if t["message"]], 30,
                             "a scheduling reason")
        assert (waiting["phase"], waiting["node"]) == ("Pending", None)
        assert waiting["message"] == (f"0/1 nodes: 1 bind mount {home} not in allowedMounts (exact paths; a subpath "
                                      "needs {path, subpaths: true} and readOnly)")
        assert not ours(clean_hosts, all=True)
        cli(db, "apply", "-f", "-", check=True, input=node([str(home)]))
        cli(db, "wait", "job/read", "-n", "team-a", "--for", "condition=Complete", "--timeout", "60", check=True)
    assert cli(db, "logs", "job/read", "-n", "team-a", check=True).stdout.endswith("] hello team-a\n")
