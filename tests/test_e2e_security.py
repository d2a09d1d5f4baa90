"""A task must not reach the host, on real dockerd hosts: the attacks of issue 12, points 1-4.

Each test first shows the attack's setup working (so the test cannot pass for a trivial reason),
then that the attack itself is refused with a reason a user can act on.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest

from helpers import ControllerProcess, broker_containers, cli, cli_json, job_yaml, tasks_of, wait_for
from reconciler.store import Store

pytestmark = pytest.mark.timeout(240)

NOT_ALLOWED = "not in allowedMounts (exact paths; a subpath needs {path, subpaths: true} and readOnly)"


def node(host, labels: dict | None = None, **spec) -> str:
    return json.dumps({"apiVersion": "broker/v1", "kind": "Node", "metadata": {"name": host.name, "labels": labels or {}},
                       "spec": {"address": host.address, "slots": {"default": 4}, **spec}}) + "\n"


def apply(db, *docs: str) -> None:
    cli(db, "apply", "-f", "-", input="---\n".join(docs), check=True)


def pending_reason(db, owner: str, settle: float = 2.0) -> dict:
    """The owner's only task once it has a scheduling message; still Pending and container-less after
    ``settle`` more seconds of controller passes."""
    [t] = wait_for(lambda: [t for t in tasks_of(db, owner) if t["message"]], 30, f"a reason for {owner}")
    time.sleep(settle)
    [again] = tasks_of(db, owner)
    assert again["phase"] == "Pending" and again["node"] is None, again
    return again


def containers_of(hosts, owner: str) -> list[dict]:
    return [c for h in hosts for c in broker_containers(h) if c["Labels"].get("brokerctl.owner") == owner]


def store_id(db) -> str:
    store = Store(db)
    try:
        return store.store_id
    finally:
        store.close()


def test_symlink_planted_in_an_allowed_mount_cannot_reach_the_host(clean_hosts, db, tmp_path):
    """Node allowedMounts [<dir>/allowed]; Job A mounts it and runs `ln -sfn / /data/esc`; Job B mounts
    <dir>/allowed/esc at /host to read a host file. B stays Pending with the reason and never gets a
    container. With {path, subpaths: true}, a writable mount of the tree is refused and a read-only
    subpath mount works."""
    h1 = clean_hosts[0]
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    secret = tmp_path / "secret.txt"  # on the host, outside the allowed directory
    token = f"host-secret-{uuid.uuid4().hex}"
    secret.write_text(token + "\n")
    apply(db, node(h1, allowedMounts=[str(allowed)]))
    with ControllerProcess(db):
        apply(db, job_yaml("plant", "ln -sfn / /data/esc", template={"mounts": [{"source": str(allowed), "target": "/data"}]}))
        assert cli(db, "wait", "job/plant", "--for", "condition=Complete", "--timeout", "60").returncode == 0
        assert os.readlink(allowed / "esc") == "/"  # the attack's first half works: the link is planted
        steal = f"cat /host{secret}"
        apply(db, job_yaml("steal", steal, template={"mounts": [{"source": str(allowed / "esc"), "target": "/host"}]}),
              job_yaml("steal-ro", steal, template={"mounts": [{"source": str(allowed / "esc"), "target": "/host",
                                                               "readOnly": True}]}))
        for name in ("steal", "steal-ro"):
            blocked = pending_reason(db, f"Job/{name}")
            assert blocked["message"] == f"0/1 nodes: 1 bind mount {allowed / 'esc'} {NOT_ALLOWED}"
            assert not containers_of(clean_hosts, f"Job/{name}")
            assert token not in cli(db, "logs", f"job/{name}").stdout

        # Opting into subpaths: the tree is then read-only for every task.
        ref = tmp_path / "ref"
        (ref / "docs").mkdir(parents=True)
        (ref / "docs" / "readme.txt").write_text("operator's file\n")
        apply(db, node(h1, allowedMounts=[{"path": str(ref), "subpaths": True}]))
        apply(db, job_yaml("plant-ref", "ln -sfn / /data/esc", template={"mounts": [{"source": str(ref), "target": "/data"}]}),
              job_yaml("read-ref", "cat /docs/readme.txt", template={"mounts": [{"source": str(ref / "docs"),
                                                                                 "target": "/docs", "readOnly": True}]}))
        assert cli(db, "wait", "job/read-ref", "--for", "condition=Complete", "--timeout", "60").returncode == 0
        refused = pending_reason(db, "Job/plant-ref")
    assert refused["message"] == (f"0/1 nodes: 1 bind mount {ref} must be readOnly "
                                  f"(allowedMounts {ref} allows subpaths read-only)")
    assert not (ref / "esc").exists()
    assert cli(db, "logs", "job/read-ref", check=True).stdout.endswith("] operator's file\n")


def test_host_and_container_networks_only_where_the_node_allows_them(clean_hosts, db):
    """network: host runs only on a node listing it in allowedNetworks (the container really is in the
    host's network namespace there), container:X likewise; elsewhere the task is Pending with the reason."""
    h1, h2 = clean_hosts[:2]
    apply(db, node(h1, allowedNetworks=["host", "container"]), node(h2))
    with ControllerProcess(db):
        apply(db, job_yaml("hostnet", "sleep 60", template={"network": "host"}, terminationGracePeriodSeconds=0))
        [t] = wait_for(lambda: [t for t in tasks_of(db, "Job/hostnet") if t["phase"] == "Running"], 30, "hostnet running")
        assert t["node"] == h1.name
        client = h1.client()
        try:
            name = f"bk-{store_id(db)}-{t['id']}"
            assert client.api.inspect_container(name)["HostConfig"]["NetworkMode"] == "host"
            apply(db, job_yaml("joined", "sleep 60", template={"network": f"container:{name}"},
                               terminationGracePeriodSeconds=0))
            [j] = wait_for(lambda: [t for t in tasks_of(db, "Job/joined") if t["phase"] == "Running"], 30,
                           "joined running")
            assert j["node"] == h1.name
            mode = client.api.inspect_container(f"bk-{store_id(db)}-{j['id']}")["HostConfig"]["NetworkMode"]
            assert mode.startswith("container:")
        finally:
            client.close()
        apply(db, node(h1), node(h2))  # no node allows them any more
        apply(db, job_yaml("late-host", "true", template={"network": "host"}),
              job_yaml("late-joined", "true", template={"network": f"container:{name}"}))
        late_host = pending_reason(db, "Job/late-host")
        late_joined = pending_reason(db, "Job/late-joined", settle=0)
        cli(db, "delete", "job", "hostnet", check=True)
        cli(db, "delete", "job", "joined", check=True)
    assert late_host["message"] == "0/2 nodes: 2 network host not in allowedNetworks"
    assert late_joined["message"] == f"0/2 nodes: 2 network container:{name} not in allowedNetworks"
    assert not containers_of(clean_hosts, "Job/late-host") and not containers_of(clean_hosts, "Job/late-joined")


def test_named_volumes_must_be_made_by_brokerctl_or_allowed(clean_hosts, db, tmp_path):
    """A volume made on the daemon with type=none o=bind device=<host dir> is refused (VolumeNotAllowed,
    naming how it was made) and its files are never read; listed in allowedVolumes it mounts; a fresh
    name is created by brokerctl, labelled with the store, and mounts."""
    h1 = clean_hosts[0]
    host_dir = tmp_path / "host-etc"
    host_dir.mkdir()
    token = f"marker-{uuid.uuid4().hex}"
    (host_dir / "marker").write_text(token + "\n")
    bound, fresh = f"bound-{uuid.uuid4().hex[:8]}", f"fresh-{uuid.uuid4().hex[:8]}"
    client = h1.client()
    client.api.create_volume(bound, driver="local", driver_opts={"type": "none", "o": "bind", "device": str(host_dir)})
    try:
        apply(db, node(h1))
        with ControllerProcess(db):
            apply(db, job_yaml("peek", "cat /v/marker", backoffLimit=0, template={"mounts": [{"source": bound, "target": "/v"}]}))
            assert cli(db, "wait", "job/peek", "--for", "condition=Failed", "--timeout", "60").returncode == 0
            [refused] = tasks_of(db, "Job/peek")
            assert token not in cli(db, "logs", "job/peek").stdout
            assert not containers_of(clean_hosts, "Job/peek")

            apply(db, node(h1, allowedVolumes=[bound]))
            apply(db, job_yaml("peek-allowed", "cat /v/marker", template={"mounts": [{"source": bound, "target": "/v"}]}),
                  job_yaml("fresh", "echo written > /w/f && cat /w/f", template={"mounts": [{"source": fresh, "target": "/w"}]}))
            for name in ("peek-allowed", "fresh"):
                assert cli(db, "wait", f"job/{name}", "--for", "condition=Complete", "--timeout", "60").returncode == 0
        assert (refused["phase"], refused["reason"], refused["containerId"]) == ("Failed", "VolumeNotAllowed", None)
        assert refused["message"] == (f"volume {bound} on node {h1.name} was not created by brokerctl (driver local, "
                                      f"options type=none o=bind device={host_dir}); list it in the Node's "
                                      "allowedVolumes to allow it")
        assert cli(db, "logs", "job/peek-allowed", check=True).stdout.endswith(f"] {token}\n")
        assert cli(db, "logs", "job/fresh", check=True).stdout.endswith("] written\n")
        assert client.api.inspect_volume(fresh)["Labels"] == {"brokerctl.store": store_id(db)}
    finally:
        for name in (bound, fresh):
            try:
                client.api.remove_volume(name, force=True)
            except Exception:  # noqa: BLE001 - cleanup of what the test made; the next test uses new names
                pass
        client.close()


def test_forged_containers_are_reported_not_adopted(clean_hosts, db):
    """The issue's forgery: a Job whose nodeSelector matches no node; a container started by hand on h2
    with brokerctl's labels for its task, exiting 0 with output. The Job stays Pending, the task never
    takes that output, h2 reports the container as untrusted with an event, and it is left alone;
    drain does not wait for a forged one. When the task is then placed on h2, a forged container
    squatting its name is not adopted either: that attempt fails (NameTaken) and the next one runs."""
    h1, h2, h3 = clean_hosts
    apply(db, *(node(h) for h in clean_hosts))
    sid = store_id(db)
    with ControllerProcess(db):
        apply(db, job_yaml("victim", "echo real-output", nodeSelector={"zone": "nowhere"}, backoff={"initialSeconds": 0}))
        task = pending_reason(db, "Job/victim", settle=0)
        assert task["message"] == "0/3 nodes: 3 selector mismatch"
        labels = {"brokerctl.store": sid, "brokerctl.owner": "Job/victim", "brokerctl.task": task["id"],
                  "brokerctl.index": "0", "brokerctl.attempt": "1"}
        name = f"bk-{sid}-{task['id']}"
        client = h2.client()
        try:
            forged = client.api.create_container("busybox", ["sh", "-c", "echo forged-output"], name=name,
                                                 labels=labels)
            client.api.start(forged["Id"])
            sleeper = client.api.create_container("busybox", ["sleep", "300"], name=f"forged-{uuid.uuid4().hex[:6]}",
                                                  labels=labels)
            client.api.start(sleeper)
            assert client.api.wait(forged["Id"], timeout=30)["StatusCode"] == 0
            expected = sorted([name, client.api.inspect_container(sleeper["Id"])["Name"].lstrip("/")])
            status = wait_for(lambda: cli_json(db, "get", "nodes", h2.name)[0]["status"].get("untrusted"), 30,
                              "untrusted containers reported")
            assert status == expected
            time.sleep(2)  # several passes: nothing adopts, collects or removes them
            [still] = tasks_of(db, "Job/victim")
            assert (still["phase"], still["node"], still["containerId"], still["exitCode"]) == ("Pending", None, None, None)
            assert cli_json(db, "get", "jobs", "victim")[0]["status"]["phase"] == "Pending"
            assert "forged-output" not in cli(db, "logs", "job/victim").stdout
            events = [e for e in cli_json(db, "get", "events") if e["reason"] == "UntrustedContainer"]
            assert sorted(e["message"].split()[1] for e in events) == expected
            assert all(e["object"] == f"Node/{h2.name}" and f"task {task['id']} was never placed" in e["message"]
                       for e in events)
            assert {c["State"] for c in client.api.containers(all=True, filters={"label": f"brokerctl.store={sid}"})} \
                == {"exited", "running"}  # left alone

            drained = cli(db, "drain", h2.name, "--timeout", "5", timeout=60)
            assert drained.returncode == 0 and drained.stdout.endswith(f"node/{h2.name} drained\n"), drained
            cli(db, "uncordon", h2.name, check=True)

            # Now the task is placed on h2, where a forged container holds its deterministic name.
            apply(db, node(h2, labels={"zone": "nowhere"}))
            assert cli(db, "wait", "job/victim", "--for", "condition=Complete", "--timeout", "60").returncode == 0
            attempts = tasks_of(db, "Job/victim")
            assert [(t["attempt"], t["phase"], t["reason"], t["node"]) for t in attempts] == [
                (1, "Failed", "NameTaken", h2.name), (2, "Succeeded", "Completed", h2.name)]
            assert client.api.inspect_container(name)["Id"] == forged["Id"]  # still there, untouched
            client.api.remove_container(sleeper["Id"], force=True)
        finally:
            client.close()
    logs = cli(db, "logs", "job/victim", check=True).stdout
    assert "real-output" in logs and "forged-output" not in logs


# What Docker gives a container that asks for no devices (docker's default /dev).
DEFAULT_DEV = {"console", "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
               "stdout", "tty", "urandom", "zero"}
CAP_SYS_ADMIN = 1 << 21


def seen_inside(logs: str) -> tuple[dict[str, str], set[str]]:
    """What a probe task printed (``brokerctl logs``, each line after its ``[task]`` prefix): its
    NoNewPrivs and CapEff lines of /proc/self/status, and the names in its /dev."""
    lines = [line.split("] ", 1)[-1] for line in logs.splitlines()]
    status = dict(line.split(":\t", 1) for line in lines if line.startswith(("NoNewPrivs:", "CapEff:")))
    [dev] = [line.removeprefix("dev: ") for line in lines if line.startswith("dev: ")]
    return status, set(dev.split())


def test_task_containers_are_hardened_as_created(clean_hosts, db):
    """Every task container, inspected on the daemon: not privileged, no added capabilities,
    no-new-privileges, its own PID and IPC namespaces, no devices; the network is the daemon's default
    unless the task asks for host on a Node that allows it (which changes nothing else). Seen from
    inside: NoNewPrivs 1, no CAP_SYS_ADMIN, only Docker's default /dev. A manifest cannot set a
    brokerctl.* label, and its own labels never replace brokerctl's."""
    h1, h2 = clean_hosts[:2]
    apply(db, node(h1), node(h2, allowedNetworks=["host"]))
    forged = cli(db, "apply", "-f", "-", input=json.dumps(
        {"apiVersion": "broker/v1", "kind": "Job", "metadata": {"name": "forge", "labels": {"brokerctl.owner": "x"}},
         "spec": {"template": {"image": "busybox"}}}))
    assert forged.returncode == 2 and "label keys starting with 'brokerctl.' are reserved" in forged.stderr
    look = "grep -E '^(NoNewPrivs|CapEff):' /proc/self/status; echo dev: $(ls /dev); sleep 60"
    probe = json.loads(job_yaml("probe", look, nodeName=h1.name, terminationGracePeriodSeconds=0))
    probe["metadata"]["labels"] = {"team": "a"}
    apply(db, json.dumps(probe) + "\n",
          job_yaml("hostnet", look, template={"network": "host"}, terminationGracePeriodSeconds=0))
    sid = store_id(db)
    with ControllerProcess(db):
        tasks = {}
        for name in ("probe", "hostnet"):
            [tasks[name]] = wait_for(lambda: [t for t in tasks_of(db, f"Job/{name}") if t["phase"] == "Running"], 30,
                                     f"{name} running")
        wait_for(lambda: all("dev:" in cli(db, "logs", f"job/{n}").stdout for n in tasks), 30, "what the tasks saw")
        seen = {n: cli(db, "logs", f"job/{n}", check=True).stdout for n in tasks}
        created = {}
        for name, t in tasks.items():
            client = (h1 if t["node"] == h1.name else h2).client()
            try:
                created[name] = client.api.inspect_container(f"bk-{sid}-{t['id']}")
            finally:
                client.close()
        for name in tasks:
            cli(db, "delete", "job", name, check=True)
    assert (tasks["probe"]["node"], tasks["hostnet"]["node"]) == (h1.name, h2.name)
    for name, c in created.items():
        hc = c["HostConfig"]
        assert hc["Privileged"] is False and not hc["CapAdd"], name
        assert "no-new-privileges" in hc["SecurityOpt"], name
        assert hc["PidMode"] in ("", "private") and hc["IpcMode"] == "private", name
        assert not hc["Devices"] and not hc["DeviceRequests"], name
        status, dev = seen_inside(seen[name])
        assert status["NoNewPrivs"] == "1", seen[name]
        assert not int(status["CapEff"], 16) & CAP_SYS_ADMIN, seen[name]
        assert dev <= DEFAULT_DEV, dev - DEFAULT_DEV
    assert created["probe"]["HostConfig"]["NetworkMode"] != "host"
    assert created["hostnet"]["HostConfig"]["NetworkMode"] == "host"
    labels = created["probe"]["Config"]["Labels"]
    assert labels["team"] == "a" and labels["brokerctl.owner"] == "Job/probe" and labels["brokerctl.store"] == sid
