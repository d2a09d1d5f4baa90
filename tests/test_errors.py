"""The store's errors: each built in one place (reconciler.errors), with the messages the CLI prints, and the
fault, the next step and what it is about kept apart for front ends that phrase the step themselves."""

from __future__ import annotations

import pytest

from reconciler.errors import Conflict, NotFound, StoreError, UsageError
from reconciler.kinds import Kind
from reconciler.store import Store


@pytest.mark.parametrize("error, message, subject, step, about", [
    (NotFound.resource("Job", "x"), "Job 'x' not found; `brokerctl get jobs` lists them",
     "Job 'x' not found", "list", {"kind": "Job", "name": "x"}),
    (NotFound.task("x-1"), "task 'x-1' not found; `brokerctl get tasks` lists them",
     "task 'x-1' not found", "list", {"kind": "Task", "name": "x-1"}),
    (Conflict.being_deleted("Service", "web"),
     "Service 'web' is being deleted; wait until `brokerctl get services` no longer lists it (the controller "
     "removes its containers first), then apply again",
     "Service 'web' is being deleted", "wait-gone", {"kind": "Service", "name": "web"}),
    (Conflict.immutable_template("j", ["command", "image"]),
     "Job 'j': spec.template cannot change while the Job exists (spec.template.command, spec.template.image "
     "changed); delete it (`brokerctl delete job j`) and apply it again, or apply it under a new name",
     "Job 'j': spec.template cannot change while the Job exists (spec.template.command, spec.template.image "
     "changed)", "recreate", {"kind": "Job", "name": "j", "changed": ["command", "image"]}),
    (Conflict.node_busy("h1", 2),
     "Node 'h1' has 2 active task(s); drain it first (`brokerctl drain h1`), or pass --force (the tasks are "
     "replaced elsewhere and their containers are left running on that host, untracked)",
     "Node 'h1' has 2 active task(s)", "drain", {"kind": "Node", "name": "h1"}),
    (Conflict.no_earlier_revision("web"),
     "Service 'web' has no earlier revision to roll back to; `brokerctl rollout history service/web` lists them",
     "Service 'web' has no earlier revision to roll back to", "history", {"kind": "Service", "name": "web"}),
    (StoreError.missing("/s/b.db", "the file does not exist"),
     "no store at /s/b.db: the file does not exist. `brokerctl apply`, `sync`, `run` and `controller` create one; "
     "or pass --db PATH (or set BROKER_DB) to use an existing store",
     "no store at /s/b.db: the file does not exist", "create-store", {"path": "/s/b.db"}),
    (StoreError.cannot_open("/s/b.db", "unable to open database file"),
     "cannot open store /s/b.db: unable to open database file; pass --db PATH or set BROKER_DB",
     "cannot open store /s/b.db: unable to open database file", "choose-store", {"path": "/s/b.db"}),
    (NotFound.resource("Job", "x", "team-a"),
     "Job 'x' not found in namespace 'team-a'; `brokerctl get jobs -n team-a` lists them",
     "Job 'x' not found in namespace 'team-a'", "list", {"kind": "Job", "name": "x", "namespace": "team-a"}),
    (NotFound.namespace("team-x", "job.yaml: document 2 (Job/nightly)"),
     "job.yaml: document 2 (Job/nightly): namespace 'team-x' does not exist; apply a Namespace named team-x first "
     "(kind: Namespace), or use -n/--namespace",
     "job.yaml: document 2 (Job/nightly): namespace 'team-x' does not exist", "create-namespace",
     {"kind": "Namespace", "name": "team-x"}),
    (Conflict.being_deleted("Service", "web", "team-b"),
     "Service 'web' is being deleted in namespace 'team-b'; wait until `brokerctl get services -n team-b` no longer "
     "lists it (the controller removes its containers first), then apply again",
     "Service 'web' is being deleted in namespace 'team-b'", "wait-gone",
     {"kind": "Service", "name": "web", "namespace": "team-b"}),
    (Conflict.namespace_being_deleted("team-b", "Job/x"),
     "Job/x: namespace 'team-b' is being deleted; wait until `brokerctl get namespaces` no longer lists it, apply "
     "the Namespace again, then this", "Job/x: namespace 'team-b' is being deleted", "wait-gone",
     {"kind": "Namespace", "name": "team-b"}),
    (Conflict.unconfirmed("team-b", "1 job (nightly)"),
     "namespace 'team-b' holds 1 job (nightly); pass --yes to delete namespace team-b and everything in it",
     "namespace 'team-b' holds 1 job (nightly)", "confirm", {"kind": "Namespace", "name": "team-b"}),
    (UsageError.out_of_range("replicas", 7, "a Service has 0 to 5 replicas"),
     "--replicas 7: a Service has 0 to 5 replicas", "a Service has 0 to 5 replicas", None,
     {"option": "replicas", "value": 7}),
])
def test_each_error_keeps_the_cli_message_and_its_parts(error, message, subject, step, about):
    assert (str(error), error.subject, error.step, error.about) == (message, subject, step, about)


def test_an_error_without_a_step_is_its_own_subject():
    error = Conflict("Job 'j' is Complete, not Failed; only a Failed job can be retried")
    assert (error.subject, error.step, error.about) == (str(error), None, {})


def test_the_store_raises_the_structured_errors(tmp_path, db_url):
    """What the store raises carries its parts: a front end can tell what was not found and which step helps
    (on each backend)."""
    with pytest.raises(StoreError) as missing:
        Store(tmp_path / "none.db", create=False)
    assert (missing.value.step, missing.value.about) == ("create-store", {"path": str(tmp_path / "none.db")})

    store = Store(db_url)
    try:
        for call in (lambda: store.resource(Kind.SERVICE, "web"), lambda: store.cordon("web", True),
                     lambda: store.mark_deleted(Kind.SERVICE, "web"), lambda: store.scale("web", 2)):
            with pytest.raises(NotFound) as info:
                call()
            assert (info.value.step, info.value.about["name"]) == ("list", "web")
        with pytest.raises(NotFound) as task:
            store.task("web-1")
        assert (task.value.subject, task.value.about) == ("task 'web-1' not found", {"kind": "Task", "name": "web-1"})
    finally:
        store.close()


def _closed_port() -> int:
    """A port of 127.0.0.1 on which nothing listens."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_postgresql_that_cannot_be_reached_is_a_store_error_naming_the_url_without_its_password():
    """The message names the URL (never the password), libpq's reason on one line, and the fix; the CLI prints
    it as its one error line and exits 1."""
    from helpers import cli

    port = _closed_port()
    url = f"postgresql://bob:secret@127.0.0.1:{port}/broker"
    shown = f"postgresql://bob@127.0.0.1:{port}/broker"

    with pytest.raises(StoreError) as info:
        Store(url)

    message = str(info.value)
    assert message.startswith(f"cannot connect to store {shown}: connection failed: ")
    assert "Connection refused" in message and "\n" not in message and "secret" not in message
    assert message.endswith("; check that the PostgreSQL server is running and accepts this user and database, "
                            "or pass --db URL (or set BROKER_DB) to use another store")
    assert (info.value.step, info.value.about) == ("check-database", {"path": shown})

    proc = cli(url, "get", "nodes")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == f"error: {message}\n"
