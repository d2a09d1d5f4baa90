"""GitOps on real files and real dockerd hosts: `controller --watch DIR` follows edits, deletions,
invalid files and hand-made drift; a burst of writes is a few syncs."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from helpers import SERVE, ControllerProcess, cli, cli_json, running, service_yaml, tasks_of, wait_for

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def repo(tmp_path, clean_hosts) -> Path:
    """A manifest directory holding the three test nodes."""
    d = tmp_path / "manifests"
    d.mkdir()
    docs = [json.dumps({"apiVersion": "broker/v1", "kind": "Node", "metadata": {"name": h.name},
                        "spec": {"address": h.address, "slots": {"default": 8}}}) for h in clean_hosts]
    (d / "nodes.yaml").write_text("\n---\n".join(docs) + "\n")
    return d


def watch(db, repo: Path, *extra: str) -> ControllerProcess:
    return ControllerProcess(db, "--watch", str(repo), "--sync-interval", "1", *extra)


def syncs(ctl: ControllerProcess) -> int:
    return len(re.findall(r"sync #\d+", ctl.output()))


def test_watch_follows_add_edit_delete_and_keeps_the_last_good_state_of_an_invalid_file(clean_hosts, db, repo):
    """Adding, editing and deleting a file creates, scales and prunes a Service; an invalid edit is
    reported and changes nothing; fixing the file applies it."""
    hosts = clean_hosts
    web = repo / "web.yaml"
    with watch(db, repo) as ctl:
        web.write_text(service_yaml("web", SERVE.format(before=""), 1))
        wait_for(lambda: len(running(hosts, "Service/web")) == 1, 30, "1 replica from the new file")
        web.write_text(service_yaml("web", SERVE.format(before=""), 2))
        wait_for(lambda: len(running(hosts, "Service/web")) == 2, 30, "2 replicas after the edit")

        web.write_text("apiVersion: broker/v1\nkind: Service\nmetadata: {name: web}\nspec:\n  replicas: [\n")
        wait_for(lambda: "web.yaml" in ctl.output() and "invalid" in ctl.output(), 20, "invalid file reported")
        status = cli(db, "sync", "status", check=True).stdout
        assert re.search(r"web\.yaml\s+invalid\s+web\.yaml: line \d+", status), status
        events = cli_json(db, "get", "events")
        assert any(e["reason"] == "InvalidManifest" and "web.yaml" in e["message"] for e in events)
        time.sleep(2.5)  # two more interval syncs: the Service keeps its last good state
        assert cli_json(db, "get", "services", "web")[0]["spec"]["replicas"] == 2
        assert len(running(hosts, "Service/web")) == 2

        web.write_text(service_yaml("web", SERVE.format(before=""), 3))
        wait_for(lambda: len(running(hosts, "Service/web")) == 3, 30, "3 replicas once the file is valid again")
        assert re.search(r"web\.yaml\s+ok", cli(db, "sync", "status", check=True).stdout)

        web.unlink()
        wait_for(lambda: not running(hosts, "Service/web"), 30, "replicas stopped after the file is deleted")
        wait_for(lambda: cli(db, "get", "services", "web").returncode != 0, 30, "Service pruned")
    assert any(e["reason"] == "Pruned" for e in cli_json(db, "get", "events"))


def test_prune_guard_hand_applied_resources_and_drift(clean_hosts, db, repo):
    """Deleting most files is refused; a hand-applied Service is never pruned; a hand-made change to a
    watched Service is put back at the next sync with an event."""
    hosts = clean_hosts
    for name in ("a", "b", "c"):
        (repo / f"job-{name}.yaml").write_text(json.dumps({
            "apiVersion": "broker/v1", "kind": "Job", "metadata": {"name": f"job-{name}"},
            "spec": {"suspend": True, "template": {"image": "busybox", "command": "true"}}}))
    (repo / "web.yaml").write_text(service_yaml("web", SERVE.format(before=""), 1))
    with watch(db, repo) as ctl:
        wait_for(lambda: len(running(hosts, "Service/web")) == 1, 30, "watched service running")
        cli(db, "apply", "-f", "-", input=service_yaml("mine", SERVE.format(before=""), 1), check=True)
        wait_for(lambda: len(running(hosts, "Service/mine")) == 1, 30, "hand-applied service running")

        cli(db, "scale", "service", "web", "--replicas", "2", check=True)  # drift
        wait_for(lambda: any(e["reason"] == "DriftCorrected" for e in cli_json(db, "get", "events")), 20,
                 "drift corrected")
        assert cli_json(db, "get", "services", "web")[0]["spec"]["replicas"] == 1

        for f in ("nodes.yaml", "job-a.yaml", "job-b.yaml", "job-c.yaml"):  # 6 of the 7 it owns
            (repo / f).unlink()
        wait_for(lambda: "REFUSED" in cli(db, "sync", "status", check=True).stdout, 20, "mass prune refused")
        assert len(cli_json(db, "get", "jobs")) == 3 and len(cli_json(db, "get", "nodes")) == 3
        assert "--allow-mass-prune" in cli(db, "sync", "status", check=True).stdout

        (repo / "web.yaml").unlink()  # now the directory is empty: still refused (all of it)
        time.sleep(2)
        assert len(cli_json(db, "get", "services")) == 2
    # A one-shot sync with the override prunes what the directory created, and only that; a Node
    # still running the hand-applied Service's replica is not pruned (it would need a drain).
    out = cli(db, "sync", str(repo), "--allow-mass-prune")
    assert "service/web pruned" in out.stdout and "mine" not in out.stdout
    held = [n["metadata"]["name"] for n in cli_json(db, "get", "nodes")]
    assert 1 <= len(held) <= 2  # the nodes of mine's replica and of web's (still stopping)
    assert all(f"Node '{n}' has 1 active task(s); drain it first" in out.stdout for n in held)
    assert out.returncode == 1
    assert [s["metadata"]["name"] for s in cli_json(db, "get", "services")] in (["mine"], ["mine", "web"])
    assert cli_json(db, "get", "jobs") == []


def test_a_burst_of_fifty_writes_converges_in_few_syncs(clean_hosts, db, repo):
    """Fifty job files written in a burst end up as fifty Jobs after only a few syncs."""
    with watch(db, repo, "--sync-interval", "30") as ctl:
        wait_for(lambda: "sync #1" in ctl.output(), 20, "first sync")
        before = syncs(ctl)
        for i in range(50):
            (repo / f"burst-{i:02d}.yaml").write_text(json.dumps({
                "apiVersion": "broker/v1", "kind": "Job", "metadata": {"name": f"burst-{i:02d}"},
                "spec": {"suspend": True, "template": {"image": "busybox", "command": "true"}}}))
        wait_for(lambda: len(cli_json(db, "get", "jobs")) == 50, 30, "50 jobs")
        time.sleep(1)
        burst_syncs = syncs(ctl) - before
    assert 1 <= burst_syncs <= 5, ctl.output()


def test_diff_exit_codes_against_a_synced_directory(clean_hosts, db, repo):
    """diff -f DIR: 0 when in sync, 1 with field-level changes and prunes, 2 for an invalid file."""
    (repo / "web.yaml").write_text(service_yaml("web", SERVE.format(before=""), 1))
    assert cli(db, "sync", str(repo)).returncode == 0
    assert cli(db, "diff", "-f", str(repo)).returncode == 0
    (repo / "web.yaml").write_text(service_yaml("web", SERVE.format(before=""), 2))
    changed = cli(db, "diff", "-f", str(repo))
    assert changed.returncode == 1 and "~ spec.replicas: 1 -> 2" in changed.stdout
    (repo / "web.yaml").unlink()
    assert "service/web pruned" in cli(db, "diff", "-f", str(repo)).stdout
    (repo / "bad.yaml").write_text("kind: [\n")
    assert cli(db, "diff", "-f", str(repo)).returncode == 2
    assert tasks_of(db, "Service/web") == []  # diff never changed anything


def test_watch_with_a_namespace_puts_the_directorys_documents_without_one_there(clean_hosts, db, repo):
    """`controller --watch DIR --namespace team-a`: the directory's Namespace is applied with what goes into
    it; a Service naming no namespace runs in team-a (its container says so), one naming team-b in team-b."""
    (repo / "ns.yaml").write_text("apiVersion: broker/v1\nkind: Namespace\nmetadata: {name: team-a}\n---\n"
                                  "apiVersion: broker/v1\nkind: Namespace\nmetadata: {name: team-b}\n")
    (repo / "web.yaml").write_text(service_yaml("web", SERVE.format(before=""), 1))
    other = json.loads(service_yaml("web", SERVE.format(before=""), 1))
    other["metadata"]["namespace"] = "team-b"
    (repo / "web-b.yaml").write_text(json.dumps(other) + "\n")
    with watch(db, repo, "--namespace", "team-a"):
        wait_for(lambda: sorted(c["Labels"]["brokerctl.namespace"] for c in running(clean_hosts, "Service/web"))
                 == ["team-a", "team-b"], 30, "web running in team-a and team-b")
    assert cli_json(db, "get", "services") == []
    assert [s["metadata"]["namespace"] for s in cli_json(db, "get", "services", "-A")] == ["team-a", "team-b"]
    files = cli(db, "sync", "status", check=True).stdout
    assert "team-a/Service/web" in files and "team-b/Service/web" in files
