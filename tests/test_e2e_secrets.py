"""Secrets end to end on real daemons: a task gets a Secret's values through its environment and no
output of brokerctl shows them; a task waits Pending while a Secret, a key of it, or the store's key
file is missing; an image is pulled from a private registry (scripts/dockerregistry.py, htpasswd
basic auth on loopback) with a registry Secret, and without one the task fails with a reason naming
the registry and saying unauthorized."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import forget_images
from helpers import ControllerProcess, cli, cli_json, job_yaml, tasks_of, wait_for

pytestmark = pytest.mark.timeout(180)

VALUE = "s3cret-Value-with spaces & $dollars"  # never printed by brokerctl; the task prints its digest


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def secret_yaml(name: str = "db", **data) -> str:
    return json.dumps({"apiVersion": "broker/v1", "kind": "Secret", "metadata": {"name": name},
                       "spec": {"stringData": data}}) + "\n"


def registry_secret(name: str, registry, password: str) -> str:
    return json.dumps({"apiVersion": "broker/v1", "kind": "Secret", "metadata": {"name": name},
                       "spec": {"type": "registry", "server": registry.address, "username": registry.user,
                                "password": password}}) + "\n"


# The task prints digests of what it got: the value may be the task's own output, but a digest shows it
# arrived intact (spaces, & and $ included) without the test relying on that.
USES_DB = job_yaml("uses-db", 'printf %s "$DB_PASSWORD" | sha256sum; printf %s "$password" | sha256sum; '
                               'echo "user=$user mode=$MODE"',
                   backoffLimit=0, template={"env": {"MODE": "plain", "DB_PASSWORD": {
                       "secretKeyRef": {"name": "db", "key": "password"}}}, "envFrom": [{"secretRef": "db"}]})


def everything_shown(db, controller: ControllerProcess) -> dict[str, str]:
    """What brokerctl prints about the store's objects, and the controller's log."""
    shown = {" ".join(args): cli(db, *args, check=True).stdout for args in (
        ("get", "tasks", "-o", "json"), ("get", "tasks", "-o", "wide"), ("get", "jobs", "-o", "yaml"),
        ("describe", "job", "uses-db"), ("get", "events", "-A", "-o", "json"), ("get", "events"),
        ("get", "secrets", "-o", "yaml"), ("get", "secrets", "-o", "wide"), ("describe", "secret", "db"))}
    shown["controller log"] = controller.output()
    return shown


def pending_message(db, owner: str) -> str | None:
    tasks = tasks_of(db, owner)
    return tasks[0]["message"] if tasks and tasks[0]["phase"] == "Pending" and tasks[0]["reason"] == \
        "SecretUnavailable" else None


def test_a_task_gets_secret_values_through_env_and_brokerctl_never_shows_them(three_nodes, db):
    cli(db, "apply", "-f", "-", input=secret_yaml(password=VALUE, user="app") + "---\n" + USES_DB, check=True)
    with ControllerProcess(db) as controller:
        assert cli(db, "wait", "job/uses-db", "--for", "condition=Complete", "--timeout", "60").returncode == 0
        shown = everything_shown(db, controller)
    logs = cli(db, "logs", "job/uses-db", check=True).stdout
    assert logs.count(f"{digest(VALUE)}  -") == 2  # from secretKeyRef and from envFrom
    assert "user=app mode=plain" in logs
    for what, text in shown.items():
        assert VALUE not in text, what
    assert f"password: <{len(VALUE.encode())} bytes>" in shown["describe secret db"]


def test_a_task_waits_for_a_missing_secret_or_key_and_runs_once_both_are_there(three_nodes, db):
    cli(db, "apply", "-f", "-", input=USES_DB, check=True)
    with ControllerProcess(db) as controller:
        message = wait_for(lambda: pending_message(db, "Job/uses-db"), 20, "the task held for its Secret")
        assert message == ("secret default/db not found (envFrom); secret default/db not found (env DB_PASSWORD); "
                           "apply the Secret, or change the template")
        described = cli(db, "describe", "job", "uses-db", check=True).stdout
        assert f"SecretUnavailable: {message}" in described
        assert cli(db, "get", "tasks", check=True).stdout.count("SecretUnavailable: secret default/db not found") == 1

        cli(db, "apply", "-f", "-", input=secret_yaml(user="app"), check=True)
        wait_for(lambda: "has no key" in (pending_message(db, "Job/uses-db") or ""), 20, "the missing key named")
        assert pending_message(db, "Job/uses-db") == (
            "secret default/db has no key 'password' (env DB_PASSWORD; its keys: user); apply the Secret, or "
            "change the template")

        cli(db, "apply", "-f", "-", input=secret_yaml(password=VALUE, user="app"), check=True)
        assert cli(db, "wait", "job/uses-db", "--for", "condition=Complete", "--timeout", "60").returncode == 0
        shown = everything_shown(db, controller)
    assert f"{digest(VALUE)}  -" in cli(db, "logs", "job/uses-db", check=True).stdout
    reasons = [e["reason"] for e in cli_json(db, "get", "events") if e["task"]]
    assert reasons.count("SecretUnavailable") == 2  # once per new reason, not once per pass
    assert (tasks_of(db, "Job/uses-db")[0]["attempt"], len(tasks_of(db, "Job/uses-db"))) == (1, 1), \
        "waiting for a Secret is no failed attempt"
    for what, text in shown.items():
        assert VALUE not in text, what


def test_a_task_waits_while_the_controller_cannot_read_the_key_file(three_nodes, db):
    cli(db, "apply", "-f", "-", input=secret_yaml(password=VALUE, user="app") + "---\n" + USES_DB, check=True)
    key = db.with_name(db.name + ".key")
    assert key.exists() and oct(key.stat().st_mode & 0o777) == "0o600"
    hidden = key.rename(db.with_name("elsewhere.key"))
    with ControllerProcess(db):
        message = wait_for(lambda: pending_message(db, "Job/uses-db"), 20, "the task held for the key")
        assert message.startswith(f"cannot read Secrets: secrets key {key} is missing; this store's Secrets are "
                                  "sealed with key id ")
        hidden.rename(key)
        assert cli(db, "wait", "job/uses-db", "--for", "condition=Complete", "--timeout", "60").returncode == 0
    assert f"{digest(VALUE)}  -" in cli(db, "logs", "job/uses-db", check=True).stdout


# -- a private registry ----------------------------------------------------------------------------


def test_an_image_is_pulled_with_a_registry_secret_and_refused_without(registry, pushed, three_nodes, db):
    for host in three_nodes[1:]:
        forget_images(host, registry)
    password = registry.users[registry.user]
    pulled = job_yaml("pulled", "echo pulled from the registry", image=pushed, backoffLimit=0,
                      nodeName="h2", template={"imagePullSecret": "regcred"})
    anonymous = job_yaml("anonymous", "echo never", image=pushed, backoffLimit=0, nodeName="h3")
    wrong = job_yaml("wrong", "echo never", image=pushed, backoffLimit=0, nodeName="h3",
                     template={"imagePullSecret": "wrongcred"})
    cli(db, "apply", "-f", "-", input="---\n".join([
        registry_secret("regcred", registry, password), registry_secret("wrongcred", registry, "not-the-password"),
        pulled, anonymous, wrong]), check=True)
    with ControllerProcess(db) as controller:
        assert cli(db, "wait", "job/pulled", "--for", "condition=Complete", "--timeout", "90").returncode == 0
        for name in ("anonymous", "wrong"):
            assert cli(db, "wait", f"job/{name}", "--for", "condition=Failed", "--timeout", "90").returncode == 0
        shown = {" ".join(args): cli(db, *args, check=True).stdout for args in (
            ("get", "tasks", "-o", "json"), ("get", "events", "-o", "json"), ("get", "secrets", "-o", "yaml"),
            ("describe", "secret", "regcred"), ("describe", "job", "anonymous"))}
        shown["controller log"] = controller.output()
    assert cli(db, "logs", "job/pulled", check=True).stdout.endswith("] pulled from the registry\n")
    (refused,) = tasks_of(db, "Job/anonymous")
    assert (refused["phase"], refused["reason"]) == ("Failed", "ImagePullFailed")
    assert refused["message"].startswith(
        f"registry {registry.address}: unauthorized (no credentials; set template.imagePullSecret); image "
        f"'{pushed}' could not be pulled on node h3: ")
    assert "no basic auth credentials" in refused["message"]
    (bad,) = tasks_of(db, "Job/wrong")
    assert bad["message"].startswith(f"registry {registry.address}: unauthorized (it refused the credentials of "
                                     "secret wrongcred; check its username and password); image ")
    assert "unauthorized: authentication required" in bad["message"]
    for what, text in shown.items():
        assert password not in text and "not-the-password" not in text, what
