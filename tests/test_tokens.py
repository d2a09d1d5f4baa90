"""Users, tokens and roles (``ops.tokens``, the store's ``tokens`` noun, `brokerctl token`) and who wrote
each resource (``metadata.createdBy``/``updatedBy``).

The store tests run on both backends (``db_url``: a real SQLite file and a real PostgreSQL database)."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import stat
import threading

import pytest

from helpers import cli, cli_json, wait_for
from reconciler import views
from reconciler.errors import NotFound, UsageError
from reconciler.kinds import Kind, TaskPhase
from reconciler.ops import tokens
from reconciler.ops.tokens import READ, WRITE, Forbidden, Identity, Unauthenticated
from reconciler.records import TaskRecord
from reconciler.spec.manifests import load_text
from reconciler.store import Store


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    yield s
    s.close()


def manifest(kind: str, name: str, **spec):
    """A validated model, as ``ops.resources.apply`` hands it to the store."""
    body = {"address": "tcp://127.0.0.1:2375"} if kind == "Node" else {"template": {"image": "busybox"}}
    doc = {"apiVersion": "broker/v1", "kind": kind, "metadata": {"name": name}, "spec": {**body, **spec}}
    (loaded,) = load_text(json.dumps(doc), f"{name}.json")
    return loaded.resource


def job(name: str):
    return manifest("Job", name)


# -- the tokens noun and the verbs ---------------------------------------------------------------


def test_a_token_is_shown_once_and_kept_only_as_the_hash_of_its_secret(store):
    made = tokens.create(store, "alice", "edit", ["default", "team-a"], now=100.0)

    prefix, token_id, secret = made.text[:3], made.text[3:15], made.text[16:]
    assert (prefix, made.text[15]) == ("bk_", "_") and token_id == made.record.id and len(secret) == 43
    (kept,) = store.tokens()
    assert kept == made.record
    assert (kept.user, kept.role, kept.namespaces, kept.created_at) == ("alice", "edit", ("default", "team-a"), 100.0)
    assert kept.hash == hashlib.sha256(secret.encode()).hexdigest()
    assert kept.created_by == f"local:{getpass.getuser()}"
    stored_text = json.dumps(store._rows("SELECT * FROM tokens"))
    assert secret not in stored_text
    assert made.warnings == ["namespace team-a does not exist yet; the token reaches it once it is applied"]
    assert "hash" not in views.token_object(kept) and secret not in json.dumps(views.token_object(kept))


@pytest.mark.parametrize("user, role, namespaces, fix", [
    ("alice", "edit", [], "--role edit needs the namespaces it reaches"),
    ("alice", "view", [], "--role view needs the namespaces it reaches"),
    ("alice", "admin", ["team-a"], "--namespace does not apply to --role admin"),
    ("alice", "owner", [], "use admin, edit or view"),
    ("local:root", "admin", [], "no spaces or ':'"),
    ("", "admin", [], "a user name is 1 to 100"),
    ("alice", "view", ["Team_A"], "is not a namespace name"),
])
def test_a_token_that_cannot_be_used_as_asked_is_refused(store, user, role, namespaces, fix):
    with pytest.raises(UsageError, match=fix):
        tokens.create(store, user, role, namespaces)
    assert store.tokens() == []


def test_authenticate_accepts_the_token_and_nothing_like_it(store):
    made = tokens.create(store, "bob", "view", ["default"])
    other = tokens.create(store, "carol", "admin", [])

    who = tokens.authenticate(store, made.text)
    assert who == Identity("bob", "view", ("default",), made.record.id)
    for bad in (None, "", "bk_", "Bearer " + made.text, made.text[:-1] + ("A" if made.text[-1] != "A" else "B"),
                made.text.replace(made.record.id, other.record.id), "bk_nosuchid0000_" + "x" * 43, made.text[3:]):
        with pytest.raises(Unauthenticated):
            tokens.authenticate(store, bad)


def test_a_revoked_token_is_refused_at_once(store):
    made = tokens.create(store, "bob", "admin", [])
    assert tokens.authenticate(store, made.text).user == "bob"

    assert tokens.revoke(store, made.record.id, now=200.0) is True
    assert tokens.revoke(store, made.record.id) is False
    with pytest.raises(Unauthenticated, match="not valid"):
        tokens.authenticate(store, made.text)
    assert store.token(made.record.id).revoked_at == 200.0
    with pytest.raises(NotFound, match="token 'nope' not found; `brokerctl token list` lists them"):
        tokens.revoke(store, "nope")


def test_last_use_is_written_at_most_once_a_minute_and_wakes_no_controller(store, db_url):
    """Every request authenticates: writing its time each time would take the write lock per request
    and wake the controller for nothing."""
    made = tokens.create(store, "bob", "admin", [])
    other = Store(db_url)
    woke = threading.Event()
    subscription = other.subscribe(woke.set)
    try:
        wait_for(lambda: subscription.listening, 10, "the subscription to listen", 0.02)
        woke.clear()  # PostgreSQL: the first LISTEN counts as a change
        tokens.authenticate(store, made.text, now=1000.0)
        tokens.authenticate(store, made.text, now=1059.0)
        assert store.token(made.record.id).last_used_at == 1000.0
        tokens.authenticate(store, made.text, now=1060.0)
        assert store.token(made.record.id).last_used_at == 1060.0
        assert not woke.wait(0.5)
        store.apply([job("x")])  # a write a controller acts on does wake it
        assert woke.wait(5)
    finally:
        subscription.stop()
        other.close()


def test_the_first_admin_token_is_made_once_on_a_store_without_tokens(store, tmp_path):
    path = tmp_path / "state" / "brokerctl" / "admin.token"

    assert tokens.create_first_admin(store, path) == path
    text = path.read_text().strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert tokens.authenticate(store, text) == Identity("admin", "admin", (), text[3:15])
    assert tokens.create_first_admin(store, path) is None
    assert path.read_text().strip() == text and len(store.tokens()) == 1
    assert sorted(os.listdir(path.parent)) == ["admin.token"]  # no partial file left behind


def test_no_first_admin_token_once_any_token_was_made_even_revoked(store, tmp_path):
    made = tokens.create(store, "bob", "admin", [])
    tokens.revoke(store, made.record.id)
    assert tokens.create_first_admin(store, tmp_path / "admin.token") is None
    assert not (tmp_path / "admin.token").exists()


# -- roles ----------------------------------------------------------------------------------------

ADMIN = Identity("root", "admin")
EDIT = Identity("alice", "edit", ("team-a", "team-b"))
VIEW = Identity("bob", "view", ("team-a",))


@pytest.mark.parametrize("who, access, namespace, allowed", [
    (ADMIN, WRITE, None, True), (ADMIN, WRITE, "team-z", True), (ADMIN, READ, None, True),
    (EDIT, WRITE, "team-a", True), (EDIT, READ, "team-b", True), (EDIT, WRITE, "team-c", False),
    (EDIT, READ, "team-c", False), (EDIT, READ, None, False), (EDIT, WRITE, None, False),
    (VIEW, READ, "team-a", True), (VIEW, WRITE, "team-a", False), (VIEW, READ, "team-b", False),
    (VIEW, READ, None, False),
])
def test_roles(who, access, namespace, allowed):
    assert tokens.may(who, access, namespace) is allowed
    if allowed:
        tokens.allow(who, access, namespace, "do it")
    else:
        with pytest.raises(Forbidden):
            tokens.allow(who, access, namespace, "do it")


def test_a_refusal_names_the_role_and_the_namespace():
    with pytest.raises(Forbidden) as refused:
        tokens.allow(VIEW, WRITE, "team-a", "delete job nightly")
    assert str(refused.value) == ("user bob (role view in team-a) may not delete job nightly in namespace team-a: "
                                  "the view role only reads")
    with pytest.raises(Forbidden) as refused:
        tokens.allow(EDIT, READ, "team-c", "list jobs")
    assert str(refused.value) == ("user alice (role edit in team-a, team-b) may not list jobs in namespace team-c: "
                                  "the token reaches only team-a, team-b")
    with pytest.raises(Forbidden, match=r"may not cordon node h1: only an admin token may"):
        tokens.allow(EDIT, WRITE, None, "cordon node h1")


# -- who wrote what ------------------------------------------------------------------------------


def test_each_write_records_who_made_it(store):
    store.apply([manifest("Node", "n1"), job("j"), manifest("Service", "web", replicas=1)], now=1.0, by="alice")
    created = {r.name: r for r in store.resources()}
    assert {(created[n].created_by, created[n].updated_by) for n in ("n1", "j", "web")} == {("alice", "alice")}

    store.apply([manifest("Service", "web", replicas=2), job("j")], now=2.0, by="bob")  # web changes, j does not
    assert (store.resource(Kind.SERVICE, "web").created_by, store.resource(Kind.SERVICE, "web").updated_by) == (
        "alice", "bob")
    assert store.resource(Kind.JOB, "j").updated_by == "alice"

    store.scale("web", 3, by="carol")
    assert store.resource(Kind.SERVICE, "web").updated_by == "carol"
    store.apply([manifest("Service", "web", replicas=3, template={"image": "busybox:2"})], by="bob")
    store.undo("web", by="dave")
    assert store.resource(Kind.SERVICE, "web").updated_by == "dave"
    store.cordon("n1", True, by="erin")
    assert store.resource(Kind.NODE, "n1").updated_by == "erin"
    with store.transaction() as db:
        store.set_status(db, Kind.JOB, "j", {"phase": "Failed"})
    store.retry_job("j", by="frank")
    assert store.resource(Kind.JOB, "j").updated_by == "frank"
    with store.transaction() as db:
        store.insert_task(db, TaskRecord(id="j-abcde-0-1", owner_kind=Kind.JOB, owner_name="j", owner_uid="u",
                                         index=0, attempt=1, phase=TaskPhase.RUNNING, node="n1", created_at=3.0))
    assert store.mark_deleted(Kind.JOB, "j", by="grace") == "deleting"
    record = store.resource(Kind.JOB, "j")
    assert (record.created_by, record.updated_by) == ("alice", "grace")
    metadata = views.resource_object(record)["metadata"]
    assert (metadata["createdBy"], metadata["updatedBy"]) == ("alice", "grace")


def test_a_resource_written_before_authors_were_kept_has_none(store):
    store.apply([job("old")])
    with store.transaction() as db:
        db.execute("UPDATE resources SET created_by = '', updated_by = ''")
    metadata = views.resource_object(store.resource(Kind.JOB, "old"))["metadata"]
    assert (metadata["createdBy"], metadata["updatedBy"]) == (None, None)


def test_the_local_cli_records_its_os_user(db, tmp_path):
    f = tmp_path / "j.yaml"
    f.write_text(json.dumps({"apiVersion": "broker/v1", "kind": "Job", "metadata": {"name": "j"},
                             "spec": {"template": {"image": "busybox"}}}))
    cli(db, "apply", "-f", str(f), check=True)

    (obj,) = cli_json(db, "get", "jobs")
    assert obj["metadata"]["createdBy"] == obj["metadata"]["updatedBy"] == f"local:{getpass.getuser()}"
    assert f"createdBy: local:{getpass.getuser()}" in cli(db, "describe", "job", "j", check=True).stdout


# -- the `token` commands --------------------------------------------------------------------------


def test_token_create_list_revoke(db):
    cli(db, "apply", "-f", "-", input='{"apiVersion": "broker/v1", "kind": "Namespace", "metadata": {"name": "team-a"}}',
        check=True)

    made = cli(db, "token", "create", "--user", "alice", "--role", "edit", "-n", "team-a", check=True)
    text = made.stdout.strip()
    assert made.stdout == text + "\n" and text.startswith("bk_")
    token_id = text[3:15]
    assert made.stderr == (f"created token {token_id} for user alice (role edit in team-a); it is shown only "
                           "this once\n")
    listed = cli(db, "token", "list", check=True).stdout
    assert text[16:] not in listed
    assert listed.splitlines()[0].split() == ["ID", "USER", "ROLE", "NAMESPACES", "STATUS", "CREATED", "BY", "AGE",
                                              "LAST", "USED"]
    assert listed.splitlines()[1].split()[:5] == [token_id, "alice", "edit", "team-a", "active"]
    (obj,) = cli_json(db, "token", "list")
    assert (obj["id"], obj["user"], obj["role"], obj["namespaces"], obj["revokedAt"]) == (
        token_id, "alice", "edit", ["team-a"], None)

    assert cli(db, "token", "revoke", token_id, check=True).stdout == f"token {token_id} revoked\n"
    assert cli(db, "token", "revoke", token_id, check=True).stdout == f"token {token_id} was already revoked\n"
    assert cli_json(db, "token", "list")[0]["revokedAt"] is not None
    missing = cli(db, "token", "revoke", "nope")
    assert missing.returncode == 1 and missing.stderr == "error: token 'nope' not found; `brokerctl token list` lists them\n"


def test_token_create_refuses_a_role_without_its_namespaces(db):
    cli(db, "apply", "-f", "-", input='{"apiVersion": "broker/v1", "kind": "Namespace", "metadata": {"name": "x"}}',
        check=True)
    proc = cli(db, "token", "create", "--user", "bob", "--role", "view")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "error: --role view needs the namespaces it reaches: --namespace NS (repeatable)\n"
    assert cli_json(db, "token", "list") == []
