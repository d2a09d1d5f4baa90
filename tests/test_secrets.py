"""Secrets without Docker: the Secret kind and a template's references to it, the store's sealing
(encrypted at rest, the key file, a wrong or missing key), what every view prints (sizes, never a
value), the pure planner holding tasks whose Secrets are missing, the runtime putting values in just
before a start, GitOps, and the reason of a pull the registry refused.

Store tests run on both backends (``db_url``)."""

from __future__ import annotations

import json
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from factories import NOW, job_res, node_res, obs, run, snapshot, task
from helpers import cli
from reconciler.engine.actions import Start
from reconciler.engine.secrets import SecretInfo, secret_problem
from reconciler.errors import ManifestError, NotFound, StoreError
from reconciler.kinds import Kind, TaskReason
from reconciler.ops import resources as ops_resources
from reconciler.ops import sync as gitops
from reconciler.records import ContainerSpec, ResourceRecord, SecretRefs, TaskRecord
from reconciler.runtime.act import Actor
from reconciler.runtime.secrets import Unresolved, resolve
from reconciler.spec.manifests import load_text
from reconciler.spec.models import ServiceSpec, TaskPhase, Template, template_hash
from reconciler.store import Store

VALUE = "hunter2-correct-horse"  # a value that must never be printed or stored in the clear


def secret_yaml(name: str = "db", namespace: str | None = None, **data) -> str:
    data = data or {"password": VALUE, "user": "app"}
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return json.dumps({"apiVersion": "broker/v1", "kind": "Secret", "metadata": meta,
                       "spec": {"stringData": data}}) + "\n"


def registry_yaml(name: str = "regcred", server: str = "127.0.0.1:5000", password: str = VALUE) -> str:
    return json.dumps({"apiVersion": "broker/v1", "kind": "Secret", "metadata": {"name": name},
                       "spec": {"type": "registry", "server": server, "username": "tester",
                                "password": password}}) + "\n"


def models(text: str, namespace: str = "default") -> list:
    return [i.resource for i in load_text(text, namespace=namespace)]


def problems(text: str) -> list[str]:
    with pytest.raises(ManifestError) as info:
        load_text(text, "s.yaml")
    return info.value.problems


@pytest.fixture
def keyless(monkeypatch, tmp_path):
    """No BROKER_SECRETS_KEY from the caller's environment; a PostgreSQL store's default key in the test's
    own state directory."""
    monkeypatch.delenv("BROKER_SECRETS_KEY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def store(db_url, keyless):
    s = Store(db_url)
    yield s
    s.close()


# -- the Secret kind and the template's references ---------------------------------------------


def test_an_opaque_secret_keeps_its_values_as_text_and_a_registry_one_its_login():
    (db,) = models("apiVersion: broker/v1\nkind: Secret\nmetadata: {name: db}\n"
                   "spec: {stringData: {password: s3cret, PORT: 5432, tls.crt: x, on: yes}}\n")
    assert db.spec.type == "opaque" and db.namespace == "default"
    assert db.spec.values() == {"password": "s3cret", "PORT": "5432", "tls.crt": "x", "on": "yes"}
    (reg,) = models(registry_yaml(server="registry.example.com:5000"))
    assert reg.spec.values() == {"username": "tester", "password": VALUE}
    assert reg.spec.registry() == "registry.example.com:5000"


@pytest.mark.parametrize("spec, message", [
    ({"type": "registry", "server": "r.example.com", "username": "u"},
     "spec: a registry Secret needs server, username and password (password missing)"),
    ({"server": "r.example.com", "stringData": {"a": "b"}},
     "spec: server: fields of a registry Secret; set type: registry, or put the values in stringData"),
    ({"type": "registry", "server": "r.example.com", "username": "u", "password": "p", "stringData": {"a": "b"}},
     "spec: stringData: a registry Secret holds server, username and password; use an opaque Secret"),
    ({"stringData": {"BROKER_TASK_ID": "x"}}, "spec.stringData: 'BROKER_TASK_ID': keys starting with 'BROKER_' are"),
    ({"stringData": {"a key": "x"}}, "spec.stringData: 'a key' is not a Secret key: letters, digits, '-', '_' and '.'"),
    ({"type": "registry", "server": "not a host", "username": "u", "password": "p"},
     "spec.server: server 'not a host' is not a registry host[:port]"),
    ({"type": "vault"}, "spec.type: Input should be 'opaque' or 'registry'"),
    ({"stringData": {"password": [VALUE]}}, "spec.stringData.password: expected a string, got a list"),
    ({"stringData": {"big": "x" * (1024 * 1024 + 1)}}, "spec: the values come to 1,048,577 bytes; a Secret holds at"),
    ({"type": "opaque", "data": {"password": "<21 bytes>"}},
     "spec: data: a Secret's values are never printed (`get secret -o yaml` shows their sizes), so that output "
     "cannot be applied back; apply the Secret's source file"),
])
def test_a_bad_secret_is_refused_naming_the_field_and_never_a_value(spec, message):
    doc = {"apiVersion": "broker/v1", "kind": "Secret", "metadata": {"name": "db"}, "spec": spec}
    (problem,) = problems(json.dumps(doc))
    assert problem.startswith("s.yaml: document 1 (Secret/db), line 1: ")
    assert message in problem, problem
    assert VALUE not in problem


def test_a_template_names_secrets_by_key_by_whole_secret_and_for_the_pull():
    tpl = Template.model_validate({
        "image": "r.example.com/app", "imagePullSecret": "regcred",
        "env": {"PLAIN": 1, "DB_PASSWORD": {"secretKeyRef": {"name": "db", "key": "password"}}},
        "envFrom": [{"secretRef": "common"}, {"secretRef": {"name": "team"}}]})
    assert tpl.env["PLAIN"] == "1"
    assert tpl.env["DB_PASSWORD"].secretKeyRef.key == "password"
    assert [f.secretRef for f in tpl.envFrom] == ["common", "team"]  # Kubernetes' {name: X} read as X
    assert tpl.secret_names() == {"db", "common", "team", "regcred"}


@pytest.mark.parametrize("template, message", [
    ({"env": {"P": {"secretKeyRef": {"name": "db"}}}}, "spec.template.env.P.secretKeyRef.key: missing required"),
    ({"env": {"P": {"secretKeyRef": {"name": "Db", "key": "k"}}}},
     "spec.template.env.P.secretKeyRef.name: 'Db' is not a lowercase DNS label"),
    ({"envFrom": [{"secretRef": "db", "prefix": "X"}]}, "spec.template.envFrom.0.prefix: unknown field"),
    ({"imagePullSecret": "reg_cred"}, "spec.template.imagePullSecret: 'reg_cred' is not a lowercase DNS label"),
])
def test_bad_secret_references_in_a_template_are_refused(template, message):
    doc = {"apiVersion": "broker/v1", "kind": "Job", "metadata": {"name": "j"},
           "spec": {"template": {"image": "busybox", **template}}}
    (problem,) = problems(json.dumps(doc))
    assert message in problem, problem


def test_the_new_template_fields_at_their_defaults_leave_a_services_hash_as_it_was():
    """Upgrading must not roll every Service: the hash below was computed before templates could name
    Secrets. Naming one changes it (the replicas then roll)."""
    doc = {"replicas": 2, "template": {"image": "nginx:1", "env": {"MODE": "fast"}, "command": "serve"},
           "healthCheck": {"command": "true"}}
    assert template_hash(ServiceSpec.model_validate(doc)) == "34c2d3d1db"
    doc["template"]["envFrom"] = [{"secretRef": "db"}]
    assert template_hash(ServiceSpec.model_validate(doc)) != "34c2d3d1db"


# -- the store: sealed at rest, the key file -------------------------------------------------------


def raw_rows(store: Store) -> list[dict]:
    return store._rows("SELECT * FROM resources WHERE kind = 'Secret'")


def test_a_secret_is_stored_sealed_and_the_key_file_is_made_0600_on_first_use(store, db_url, tmp_path):
    key = store.secrets_key_path
    expected = Path(f"{db_url}.key") if store.dialect == "sqlite" else tmp_path / "xdg" / "brokerctl" / "secrets.key"
    assert key == expected
    store.apply(models(job_yaml_text()))
    assert not key.exists(), "no Secret yet: no key"

    assert store.apply(models(secret_yaml())) == [("secret/db", "created")]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    (row,) = raw_rows(store)
    assert VALUE not in json.dumps(row, default=str)
    assert json.loads(row["spec"])["data"]["password"]["bytes"] == len(VALUE)
    assert row["sealed"].startswith("gAAAA")  # a Fernet token
    if store.dialect == "sqlite":  # nothing on disk either, WAL included
        for path in Path(db_url).parent.glob(Path(db_url).name + "*"):
            assert VALUE.encode() not in path.read_bytes(), path
    assert store.secret_values("default", "db").values == {"password": VALUE, "user": "app"}
    assert VALUE not in repr(store.secret_values("default", "db"))


def job_yaml_text() -> str:
    return "apiVersion: broker/v1\nkind: Job\nmetadata: {name: j}\nspec: {template: {image: busybox}}\n"


def test_the_same_values_apply_unchanged_and_new_ones_are_sealed_again(store):
    store.apply(models(secret_yaml()))
    sealed = raw_rows(store)[0]["sealed"]
    assert store.apply(models(secret_yaml())) == [("secret/db", "unchanged")]
    assert raw_rows(store)[0]["sealed"] == sealed
    assert store.apply(models(secret_yaml(password="another-value", user="app"))) == [("secret/db", "configured")]
    assert store.secret_values("default", "db").values["password"] == "another-value"
    assert store.resource(Kind.SECRET, "db").generation == 2


def test_a_different_key_is_refused_with_a_clear_error(store, db_url, tmp_path):
    store.apply(models(secret_yaml()))
    other = Store(tmp_path / "other" / "broker.db")
    other.apply(models(secret_yaml()))  # makes a key of its own
    wrong = Store(db_url, secrets_key=other.secrets_key_path)
    try:
        with pytest.raises(StoreError) as refused:
            wrong.secret_values("default", "db")
        text = str(refused.value)
        assert text.startswith(f"secrets key {other.secrets_key_path} (id ")
        assert "is not the key this store's Secrets are sealed with" in text and "--secrets-key" in text
        assert wrong.secrets_problem() == text
        with pytest.raises(StoreError, match="is not the key this store's Secrets are sealed with"):
            wrong.apply(models(secret_yaml("more")))  # nothing is sealed with a second key
        assert [r.name for r in store.resources(Kind.SECRET)] == ["db"]
    finally:
        wrong.close()
        other.close()


def test_a_missing_key_is_a_clear_error_and_no_new_key_is_made(store, db_url):
    store.apply(models(secret_yaml()))
    key = store.secrets_key_path
    key.rename(key.with_name("moved.key"))
    again = Store(db_url)
    try:
        for attempt in (lambda: again.secret_values("default", "db"), lambda: again.apply(models(secret_yaml("x")))):
            with pytest.raises(StoreError) as missing:
                attempt()
            assert str(missing.value).startswith(f"secrets key {key} is missing; this store's Secrets are sealed "
                                                 "with key id ")
            assert "restore that key file there, or point --secrets-key (or BROKER_SECRETS_KEY) at it" in str(
                missing.value)
        assert not key.exists()
        assert again.secrets_problem().startswith(f"secrets key {key} is missing")
        moved = Store(db_url, secrets_key=key.with_name("moved.key"))
        assert moved.secret_values("default", "db").values["user"] == "app"
        assert moved.secrets_problem() is None
        moved.close()
    finally:
        again.close()


def test_a_key_others_may_read_is_refused(store):
    store.apply(models(secret_yaml()))
    key = store.secrets_key_path
    key.chmod(0o644)
    again = Store(store.location)
    try:
        with pytest.raises(StoreError, match=rf"secrets key {key} is readable by others \(mode 0644\); "
                                             rf"`chmod 600 {key}`"):
            again.secret_values("default", "db")
    finally:
        again.close()


def test_the_key_file_may_be_named_by_the_environment(db_url, keyless, monkeypatch, tmp_path):
    monkeypatch.setenv("BROKER_SECRETS_KEY", str(tmp_path / "keys" / "team.key"))
    s = Store(db_url)
    try:
        s.apply(models(secret_yaml()))
        assert stat.S_IMODE((tmp_path / "keys" / "team.key").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    finally:
        s.close()


def test_a_store_without_secrets_needs_no_key(store):
    assert store.secrets_problem() is None
    with pytest.raises(NotFound, match="Secret 'db' not found"):
        store.secret_values("default", "db")


def test_deleting_a_secret_or_its_namespace_removes_it(store):
    store.apply(models("apiVersion: broker/v1\nkind: Namespace\nmetadata: {name: team-a}\n---\n"
                       + secret_yaml("db", "team-a") + "---\n" + secret_yaml("other")))
    assert store.mark_deleted(Kind.SECRET, "other") == "deleted"
    assert ops_resources.namespace_contents(store, "team-a") == "1 secret (db)"
    assert store.mark_deleted(Kind.NAMESPACE, "team-a") == "deleted"
    assert store.resources(Kind.SECRET) == []
    with pytest.raises(NotFound):
        store.secret_values("team-a", "db")


RUN_AS_NAMESPACE = ("apiVersion: broker/v1\nkind: Namespace\nmetadata: {name: team-a}\n"
                    "spec: {runAs: {users: ['1000:1000'], default: '1000:1000', allowRoot: false}}\n")


def test_a_secret_goes_into_a_namespace_that_limits_who_runs_and_its_runas_can_change_around_it(store):
    """A Secret has no template, so no user to check against the namespace's runAs."""
    team_a = RUN_AS_NAMESPACE
    assert [r for _, r in store.apply(models(team_a + "---\n" + secret_yaml("db", "team-a")))] == \
        ["created", "created"]
    assert store.apply(models(secret_yaml("db", "team-a", password="other")))[0][1] == "configured"
    tighter = team_a.replace("['1000:1000']", "['2000']").replace("default: '1000:1000'", "default: '2000'")
    assert store.apply(models(tighter))[0][1] == "configured"
    assert store.secret_values("team-a", "db").values == {"password": "other"}


def test_a_sync_applies_a_secret_into_a_namespace_that_limits_who_runs(tmp_path, keyless):
    src = tmp_path / "manifests"
    src.mkdir()
    (src / "ns.yaml").write_text(RUN_AS_NAMESPACE)
    (src / "db.yaml").write_text(secret_yaml("db", "team-a"))
    store = Store(tmp_path / "broker.db")
    assert sorted(gitops.sync(store, src)["results"]) == [("Namespace/team-a", "created"),
                                                         ("team-a/Secret/db", "created")]
    (src / "ns.yaml").write_text(RUN_AS_NAMESPACE.replace("allowRoot: false", "allowRoot: true"))
    report = gitops.sync(store, src)
    assert sorted(report["results"]) == [("Namespace/team-a", "configured"), ("team-a/Secret/db", "unchanged")]
    assert not report.get("problems")
    store.close()


# -- what people see: sizes, never values -------------------------------------------------------


def test_get_describe_events_and_diff_show_sizes_never_values(tmp_path):
    db = tmp_path / "broker.db"
    src = tmp_path / "s.yaml"
    src.write_text(secret_yaml() + "---\n" + registry_yaml())
    assert cli(db, "apply", "-f", str(src), check=True).stdout == "secret/db created\nsecret/regcred created\n"
    outputs = {}
    for args in (("get", "secrets"), ("get", "secrets", "-o", "wide"), ("get", "secret", "db", "-o", "yaml"),
                 ("get", "secrets", "-A", "-o", "json"), ("describe", "secret", "db"),
                 ("describe", "secret", "regcred"), ("get", "events", "-A", "-o", "json")):
        outputs[args] = cli(db, *args, check=True).stdout
    for args, out in outputs.items():
        assert VALUE not in out, args
    listed = outputs[("get", "secrets", "-o", "wide")].splitlines()
    assert listed[0].split() == ["NAME", "TYPE", "DATA", "AGE", "KEYS", "SERVER"]
    assert listed[1].split()[:3] == ["db", "opaque", "2"]
    assert f"password <{len(VALUE)} bytes>, user <3 bytes>" in listed[1]
    assert "127.0.0.1:5000" in listed[2]
    (obj,) = [o for o in json.loads(outputs[("get", "secrets", "-A", "-o", "json")]) if o["metadata"]["name"] == "db"]
    assert obj["spec"] == {"type": "opaque", "data": {"password": f"<{len(VALUE)} bytes>", "user": "<3 bytes>"}}
    assert "digest" not in outputs[("get", "secret", "db", "-o", "yaml")]
    assert f"password: <{len(VALUE)} bytes>" in outputs[("describe", "secret", "regcred")]

    back = cli(db, "apply", "-f", "-", input=outputs[("get", "secret", "db", "-o", "yaml")])
    assert back.returncode == 2 and "cannot be applied back; apply the Secret's source file" in back.stderr

    src.write_text(secret_yaml(password=VALUE[::-1], user="application", token="t"))
    diff = cli(db, "diff", "-f", str(src))
    assert diff.returncode == 1
    assert diff.stdout.splitlines() == [
        "secret/db configured",
        f"  ~ spec.data.password: <{len(VALUE)} bytes> -> <{len(VALUE)} bytes> (another value)",
        "  + spec.data.token: <1 bytes>",
        "  ~ spec.data.user: <3 bytes> -> <11 bytes>",
    ]
    assert VALUE[::-1] not in diff.stdout and "application" not in diff.stdout


# -- the planner: names only, and a task waits for what it names -----------------------------------


def secret_res(name: str, *keys: str, namespace: str = "default", type: str = "opaque",
               server: str | None = None) -> ResourceRecord:
    """A Secret row as the store keeps it: key names, sizes and digests, no value."""
    spec = {"type": type, "server": server, "data": {k: {"bytes": 4, "digest": "0" * 16} for k in keys}}
    return ResourceRecord(kind=Kind.SECRET, name=name, uid=f"{name}-uid", labels={}, spec=spec, generation=1,
                          created_at=0.0, updated_at=0.0, namespace=namespace)


INDEX = {("default", "db"): SecretInfo("opaque", frozenset({"password", "user"}), None),
         ("default", "regcred"): SecretInfo("registry", frozenset({"username", "password"}), "r.example.com:5000"),
         ("team-b", "db"): SecretInfo("opaque", frozenset({"password"}), None)}


@pytest.mark.parametrize("template, problem", [
    ({"env": {"P": {"secretKeyRef": {"name": "db", "key": "password"}}}, "envFrom": [{"secretRef": "db"}],
      "imagePullSecret": "regcred", "image": "r.example.com:5000/app"}, None),
    ({"envFrom": [{"secretRef": "nope"}]}, "secret default/nope not found (envFrom)"),
    ({"env": {"P": {"secretKeyRef": {"name": "db", "key": "token"}}}},
     "secret default/db has no key 'token' (env P; its keys: password, user)"),
    ({"env": {"P": {"secretKeyRef": {"name": "gone", "key": "k"}}}}, "secret default/gone not found (env P)"),
    ({"imagePullSecret": "db"}, "secret default/db is of type opaque, not registry (imagePullSecret)"),
    ({"imagePullSecret": "regcred", "image": "other.example.com/app"},
     "secret default/regcred is for registry r.example.com:5000, but image 'other.example.com/app' is on "
     "other.example.com (imagePullSecret)"),
    ({"imagePullSecret": "regcred"},
     "secret default/regcred is for registry r.example.com:5000, but image 'busybox' is on docker.io"),
])
def test_secret_problem_names_the_secret_the_key_and_where_it_is_used(template, problem):
    tpl = Template.model_validate({"image": "busybox", **template})
    found = secret_problem(tpl, "default", INDEX)
    if problem is None:
        assert found is None
    else:
        assert problem in found and found.endswith("; apply the Secret, or change the template")


def test_secret_problem_looks_in_the_tasks_own_namespace_and_says_why_the_key_cannot_be_read():
    tpl = Template.model_validate({"image": "busybox", "env": {"P": {"secretKeyRef": {"name": "db", "key": "user"}}}})
    assert secret_problem(tpl, "default", INDEX) is None
    assert "secret team-b/db has no key 'user'" in secret_problem(tpl, "team-b", INDEX)
    assert "secret team-c/db not found" in secret_problem(tpl, "team-c", INDEX)
    assert secret_problem(tpl, "default", INDEX, "secrets key /x.key is missing") == \
        "cannot read Secrets: secrets key /x.key is missing"
    plain = Template.model_validate({"image": "busybox", "env": {"A": "b"}})
    assert secret_problem(plain, "default", {}, "secrets key /x.key is missing") is None


def refs_job():
    return job_res("j", template={"image": "busybox", "command": ["true"], "env": {
        "PLAIN": "p", "DB_PASSWORD": {"secretKeyRef": {"name": "db", "key": "password"}}},
        "envFrom": [{"secretRef": "db"}]})


def test_a_task_whose_secret_is_missing_waits_pending_and_starts_once_it_is_there():
    node, job = node_res("n", {"default": 2}), refs_job()
    p = run([node, job], [])
    (t,) = p.new_tasks
    assert p.starts == []
    change = p.task_updates[t.id]
    assert change["reason"] == TaskReason.SECRET_UNAVAILABLE and "node" not in change
    assert change["message"].startswith("secret default/db not found (envFrom); secret default/db not found (env "
                                        "DB_PASSWORD)")
    assert [e.reason for e in p.events if e.task_id == t.id] == ["SecretUnavailable"]

    waiting = TaskRecord(**{**t.__dict__, **change})
    p = run([node, job], [waiting])
    assert p.starts == [] and t.id not in p.task_updates and not p.events, "told once"

    p = run([node, job, secret_res("db", "password")], [waiting])
    (start,) = p.starts
    assert start.spec.secrets == SecretRefs("default", ("db",), (("DB_PASSWORD", "db", "password"),), None)
    assert start.spec.env["PLAIN"] == "p" and "DB_PASSWORD" not in start.spec.env


def test_a_placed_task_is_not_started_while_its_secret_is_missing_or_unreadable():
    node, job = node_res("n", {"default": 2}), refs_job()
    placed = task(job, node="n", scheduled_at=NOW - 1)
    p = run([node, job], [placed], snapshot(obs("n")))
    assert p.starts == [] and p.task_updates[placed.id]["reason"] == TaskReason.SECRET_UNAVAILABLE
    from reconciler.engine.plan import plan
    from factories import MARK_KEY, STORE_ID

    p = plan([node, job, secret_res("db", "password")], [placed], snapshot(obs("n")), NOW, STORE_ID, MARK_KEY,
             "secrets key /s.key is missing")
    assert p.starts == []
    assert p.task_updates[placed.id]["message"] == "cannot read Secrets: secrets key /s.key is missing"
    p = run([node, job, secret_res("db", "password")], [placed], snapshot(obs("n")))
    assert [s.task_id for s in p.starts] == [placed.id]


def test_changing_or_deleting_a_secret_rolls_no_service_replica():
    """As in Kubernetes: replicas keep the values they started with; only a template change rolls them."""
    from dataclasses import replace
    from factories import container, service_res

    node = node_res("a", {"default": 4})
    web = service_res("web", replicas=2, template={"image": "nginx", "env": {
        "P": {"secretKeyRef": {"name": "db", "key": "password"}}}})
    replicas = [task(web, i, 1, TaskPhase.RUNNING, node="a", container_id=f"c{i}", started_at=NOW - 100,
                     created_at=NOW - 101) for i in (0, 1)]
    seen = snapshot(obs("a", *(container(t) for t in replicas)))
    before = secret_res("db", "password")
    changed = replace(before, generation=2, spec={**before.spec, "data": {
        "password": {"bytes": 9, "digest": "1" * 16}, "token": {"bytes": 2, "digest": "2" * 16}}})
    for secrets in ([before], [changed], []):
        p = run([node, web, *secrets], replicas, seen)
        assert (p.starts, p.removals, p.new_tasks) == ([], [], []), secrets
        assert not any(u.get("phase") for u in p.task_updates.values())


# -- the runtime: values in just before the start ----------------------------------------------------


def spec_with(refs: SecretRefs | None, env: dict | None = None) -> ContainerSpec:
    return ContainerSpec(name="bk-x", image="r.example.com:5000/app", command=None,
                         env=env or {"PLAIN": "p", "BROKER_TASK_ID": "t-1"}, labels={}, secrets=refs)


def test_resolve_puts_values_in_env_and_the_registry_login_in_pull_auth(tmp_path, keyless):
    store = Store(tmp_path / "broker.db")
    store.apply(models(secret_yaml("common", A="from-common", SHARED="common", PLAIN="common")
                       + "---\n" + secret_yaml("team", SHARED="team", B="from-team")
                       + "---\n" + registry_yaml(server="r.example.com:5000")))
    refs = SecretRefs("default", ("common", "team"), (("DB", "team", "B"),), "regcred")
    spec = resolve(store, spec_with(refs))
    assert spec.env == {"A": "from-common", "SHARED": "team", "PLAIN": "p", "B": "from-team", "DB": "from-team",
                        "BROKER_TASK_ID": "t-1"}  # envFrom in order, then env, then brokerctl's own
    assert spec.pull_auth == {"username": "tester", "password": VALUE, "serveraddress": "r.example.com:5000"}
    assert VALUE not in repr(spec) and "from-team" not in repr(spec)
    assert resolve(store, spec_with(None)) == spec_with(None)
    with pytest.raises(Unresolved) as missing:
        resolve(store, spec_with(SecretRefs("default", (), (("DB", "team", "nope"),))))
    assert missing.value.message == "env DB: secret default/team has no key 'nope'"
    with pytest.raises(Unresolved, match=r"^envFrom: Secret 'gone' not found in namespace 'team-a'"):
        resolve(store, spec_with(SecretRefs("team-a", ("gone",))))
    store.close()


class FakeHost:
    """Records what ``start`` was handed instead of calling Docker."""

    name = "n"

    def __init__(self):
        self.started: list[ContainerSpec] = []

    def start(self, spec: ContainerSpec) -> str:
        self.started.append(spec)
        return "c" * 64


def test_act_starts_with_the_values_or_keeps_the_task_pending_naming_what_is_missing(tmp_path, keyless):
    store = Store(tmp_path / "broker.db")
    store.apply(models(job_yaml_text() + "---\n" + secret_yaml()))
    rows = [TaskRecord(id=f"j-x-{i}-1", owner_kind=Kind.JOB, owner_name="j", owner_uid="u", index=i, attempt=1,
                       node="n", created_at=1.0) for i in (0, 1)]
    with store.transaction() as db:
        for t in rows:
            store.insert_task(db, t)
    host, pool = FakeHost(), ThreadPoolExecutor(2)
    actor = Actor(store, pool, clock=lambda: NOW)
    good = Start(rows[0].id, "n", spec_with(SecretRefs("default", (), (("DB_PASSWORD", "db", "password"),))))
    bad = Start(rows[1].id, "n", spec_with(SecretRefs("default", (), (("DB_PASSWORD", "db", "token"),))))
    from reconciler.engine.actions import Plan

    actor.execute(Plan(starts=[good, bad]), {"n": host})
    (started,) = host.started
    assert started.env["DB_PASSWORD"] == VALUE
    assert store.task(rows[0].id).phase is TaskPhase.RUNNING
    waiting = store.task(rows[1].id)
    assert (waiting.phase, waiting.node, waiting.reason) == (TaskPhase.PENDING, "n", "SecretUnavailable")
    assert waiting.message == "env DB_PASSWORD: secret default/db has no key 'token'"
    events = [e for e in store.events() if e["task_id"] == rows[1].id]
    assert [e["reason"] for e in events] == ["SecretUnavailable"]
    assert all(VALUE not in e["message"] for e in store.events())
    pool.shutdown()
    store.close()


# -- GitOps: the directory's Secrets are synced sealed -----------------------------------------------


def test_a_synced_secret_keeps_no_value_in_the_last_synced_copy_and_resyncs_unchanged(tmp_path, keyless):
    src = tmp_path / "manifests"
    src.mkdir()
    (src / "db.yaml").write_text(secret_yaml())
    store = Store(tmp_path / "broker.db")
    report = gitops.sync(store, src)
    assert report["results"] == [("Secret/db", "created")]
    with store.transaction() as db:
        (row,) = [r for r in store.sourced_rows(db) if r.kind == "Secret"]
    assert VALUE not in row.source_spec and row.synced["spec"]["data"]["password"]["bytes"] == len(VALUE)
    assert gitops.sync(store, src)["results"] == [("Secret/db", "unchanged")]
    store.apply(models(secret_yaml(password="changed by hand", user="app")))
    report = gitops.sync(store, src)
    assert report["results"] == [("Secret/db", "drift corrected")]
    assert store.secret_values("default", "db").values["password"] == VALUE
    store.close()


# -- a pull the registry refused -------------------------------------------------------------------


def test_a_refused_pull_names_the_registry_and_says_unauthorized():
    from reconciler.docker.host import pull_failure

    image = "127.0.0.1:5000/team/busybox:latest"
    spec = ContainerSpec(name="bk", image=image, command=None, env={}, labels={})
    anonymous = pull_failure(spec, "h2", 'Head "http://127.0.0.1:5000/v2/team/busybox/manifests/latest": '
                                         "no basic auth credentials")
    assert anonymous.startswith("registry 127.0.0.1:5000: unauthorized (no credentials; set "
                                "template.imagePullSecret); image '127.0.0.1:5000/team/busybox:latest' could not be "
                                "pulled on node h2: Head ")
    with_secret = ContainerSpec(name="bk", image=image, command=None, env={}, labels={},
                                secrets=SecretRefs("default", pull="regcred"))
    refused = pull_failure(with_secret, "h2", "unauthorized: authentication required")
    assert refused.startswith("registry 127.0.0.1:5000: unauthorized (it refused the credentials of secret regcred; "
                              "check its username and password)")
    assert pull_failure(spec, "h2", "manifest unknown") == (f"image {image!r} could not be pulled on node h2: "
                                                           "manifest unknown")


def test_a_store_moved_to_postgresql_keeps_its_secrets_under_the_old_key(tmp_path, pg_url, keyless):
    """`store migrate` copies Secrets encrypted: the new store reads them with the old key file, and
    refuses to seal with a key of its own default path."""
    from reconciler.store.transfer import copy_store

    old = Store(tmp_path / "s.db")
    old.apply(models(secret_yaml()))
    key = old.secrets_key_path
    old.close()
    copy_store(tmp_path / "s.db", pg_url)
    moved = Store(pg_url, secrets_key=key)
    assert moved.secret_values("default", "db").values["password"] == VALUE
    assert moved.apply(models(secret_yaml())) == [("secret/db", "unchanged")]
    moved.close()
    default = Store(pg_url)
    with pytest.raises(StoreError, match=r"secrets key .*/xdg/brokerctl/secrets.key is missing; this store's "
                                         r"Secrets are sealed with key id"):
        default.apply(models(secret_yaml("other")))
    default.close()
