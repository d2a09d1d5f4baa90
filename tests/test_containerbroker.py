"""Container Broker's API on brokerctl's nouns, without Docker: the pure mapping of a Job and its
attempts to Container Broker's task (status table, try_count, times), of a request to a Job (cmd,
execution type, storage mounts, tags), of a hostname to a Node; and the store's idempotency keys
(one Job for a key given twice, also from a second connection; a key older than a day is forgotten),
on both backends.
"""

from __future__ import annotations

import pytest
from test_store import store  # noqa: F401  (the fixture, over both backends)

from reconciler.errors import Conflict, UsageError
from reconciler.kinds import Kind, TaskPhase
from reconciler.ops import containerbroker as cb
from reconciler.ops.containerbroker import nodes as cbnodes
from reconciler.ops.containerbroker import tasks as cbtasks
from reconciler.records import ResourceRecord, TaskRecord
from reconciler.store import Once, Store

SETTINGS = cb.Settings("default", (("shared", "/srv/shared"), ("tmp", "/tmp")))
UUID = "2d272b5c-953c-44e9-ad15-6c31187903c9"


def request(**fields) -> dict:
    return {"name": "encode", "image": "busybox", "cmd": "echo hi", "execution_type": "cpu", **fields}


def job_record(phase: str | None = None, deleted: float | None = None, message: str = "") -> ResourceRecord:
    status = {"phase": phase, "message": message} if phase else {}
    return ResourceRecord(Kind.JOB, cbtasks.job_name(UUID), "abcde12345", {cbtasks.NAME_LABEL: "encode"},
                          {"executionType": "cpu", "backoffLimit": 3, "template": {"image": "busybox"}}, 1,
                          100.0, 100.0, deleted_at=deleted, status=status)


def attempt(n: int, phase: TaskPhase, node: str | None = None, **kw) -> TaskRecord:
    return TaskRecord(id=f"{cbtasks.job_name(UUID)}-abcde-0-{n}", owner_kind=Kind.JOB, owner_name=cbtasks.job_name(UUID),
                      owner_uid="abcde12345", index=0, attempt=n, phase=phase, node=node, created_at=100.0 + n, **kw)


# -- status ------------------------------------------------------------------------------------------

FAILED = dict(exit_code=3, reason="Error", message="exited with code 3", started_at=110.0, finished_at=112.0)


@pytest.mark.parametrize("job, attempts, expected", [
    (job_record(), [], "waiting"),
    (job_record("Pending"), [attempt(1, TaskPhase.PENDING)], "waiting"),
    (job_record("Pending"), [attempt(1, TaskPhase.PENDING, node="n1")], "starting"),
    (job_record("Running"), [attempt(1, TaskPhase.RUNNING, node="n1", started_at=110.0)], "started"),
    (job_record("Running"), [attempt(1, TaskPhase.FAILED, node="n1", **FAILED)], "retry"),
    (job_record("Running"), [attempt(1, TaskPhase.FAILED, node="n1", **FAILED), attempt(2, TaskPhase.PENDING)],
     "retry"),
    (job_record("Running"), [attempt(1, TaskPhase.LOST, node="n1"), attempt(2, TaskPhase.PENDING)], "waiting"),
    (job_record("Running"), [attempt(1, TaskPhase.SUCCEEDED, node="n1", exit_code=0)], "completed"),
    (job_record("Complete"), [attempt(1, TaskPhase.SUCCEEDED, node="n1", exit_code=0)], "completed"),
    (job_record("Failed"), [attempt(i, TaskPhase.FAILED, node="n1", **FAILED) for i in range(1, 5)], "failed"),
    (job_record("Running", deleted=120.0), [attempt(1, TaskPhase.RUNNING, node="n1")], "error"),
])
def test_the_status_of_a_task_follows_its_job_and_last_attempt(job, attempts, expected):
    assert cbtasks.task_status(job, attempts) == expected


def test_a_failed_task_counts_its_retries_and_shows_its_last_attempt():
    attempts = [attempt(i, TaskPhase.FAILED, node="n1", **{**FAILED, "started_at": 100.0 + 10 * i,
                                                             "finished_at": 102.5 + 10 * i}) for i in range(1, 5)]
    shown = cbtasks.task_object(UUID, job_record("Failed", message="4 failed attempts, backoffLimit 3"), attempts, 500.0)
    assert shown == {"uuid": UUID, "status": "failed", "exit_code": 3, "error": "4 failed attempts, backoffLimit 3",
                     "try_count": 3, "created_at": "1970-01-01T00:01:40.000Z", "started_at": "1970-01-01T00:02:20.000Z",
                     "finished_at": "1970-01-01T00:02:22.500Z", "progress": None, "seconds_running": 2,
                     "execution_type": "cpu"}
    retrying = cbtasks.task_object(UUID, job_record("Running"), attempts[:1] + [attempt(2, TaskPhase.PENDING)], 500.0)
    assert (retrying["status"], retrying["try_count"], retrying["error"]) == ("retry", 1, "Error: exited with code 3")


def test_a_running_task_counts_its_seconds_until_now():
    running = [attempt(1, TaskPhase.RUNNING, node="n1", started_at=110.0)]
    assert cbtasks.task_object(UUID, job_record("Running"), running, 152.9)["seconds_running"] == 42


# -- a request becomes a Job -------------------------------------------------------------------------


def test_a_task_request_becomes_a_one_completion_job_with_three_retries():
    job = cbtasks.task_job(request(tags={"type": "video", "api_id": 7, "draft": True}, storage_mounts={"shared": "/data"},
                              persist_logs=True), SETTINGS, UUID)
    assert (job.metadata.name, job.namespace) == (f"cb-{UUID}", "default")
    assert job.metadata.labels == {"type": "video", "api_id": "7", "draft": "true", cbtasks.NAME_LABEL: "encode"}
    spec = job.spec
    assert (spec.completions, spec.backoffLimit, spec.executionType) == (1, 3, "cpu")
    assert spec.template.argv() == ["sh", "-c", "echo hi"]
    assert [(m.source, m.target) for m in spec.template.mounts] == [("/srv/shared", "/data")]
    wrapped = cbtasks.task_job({"task": request()}, SETTINGS, UUID)  # as Rails wraps parameters
    assert wrapped.spec.template.image == "busybox"


@pytest.mark.parametrize("fields, message", [
    (dict(storage_mounts={"nfs": "/data"}), "storage_mounts: no storage mount named 'nfs'; this server has: shared, tmp"),
    (dict(tags={"brokerctl.task": "x"}), "tag 'brokerctl.task': keys starting with brokerctl. or containerbroker. "
                                         "are reserved"),
    (dict(tags={"containerbroker.name": "x"}), "are reserved"),
    (dict(tags={"a=b": "x"}), "tag 'a=b' is not a label key"),
    (dict(tags={"nested": {"a": 1}}), "tag 'nested': the value is text, a number or a boolean"),
    (dict(cmd=""), "cmd is required"),
    (dict(execution_type=None), "execution_type is required"),
    (dict(image="Bad Image"), "POST /tasks: image: image 'Bad Image' contains whitespace"),
    (dict(persist_logs="yes"), "persist_logs is true or false"),
])
def test_a_bad_task_request_names_the_field_and_the_fix(fields, message):
    with pytest.raises(UsageError, match=None) as caught:
        cbtasks.task_job(request(**fields), SETTINGS, UUID)
    assert message in str(caught.value)


def test_without_storage_mounts_configured_the_message_says_how_to_configure_them():
    with pytest.raises(UsageError) as caught:
        cbtasks.task_job(request(storage_mounts={"shared": "/data"}), cb.Settings(), UUID)
    assert "this server has: none (start the server with --storage-mount NAME=PATH)" in str(caught.value)


def test_storage_mount_options_are_name_equals_absolute_path():
    assert cb.parse_storage_mount("shared=/srv/shared") == ("shared", "/srv/shared")
    for bad in ("shared", "shared=srv", "=/srv"):
        with pytest.raises(UsageError, match="use NAME=PATH with an absolute host path"):
            cb.parse_storage_mount(bad)


# -- nodes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hostname, address, name", [
    ("docker1.example.com", "tcp://docker1.example.com:2375", "docker1-example-com-2375"),
    ("10.0.0.5:2376", "tcp://10.0.0.5:2376", "10-0-0-5-2376"),
    ("http://10.0.0.5:2375", "tcp://10.0.0.5:2375", "10-0-0-5-2375"),
    ("tcp://10.0.0.5:2375", "tcp://10.0.0.5:2375", "10-0-0-5-2375"),
    ("unix:///var/run/docker.sock", "unix:///var/run/docker.sock", "var-run-docker-sock"),
])
def test_a_hostname_is_a_docker_address_and_names_its_node(hostname, address, name):
    assert (cbnodes.address_of(hostname), cbnodes.node_name_of(hostname)) == (address, name)


def test_a_long_hostname_gives_a_node_name_of_at_most_63_characters_kept_apart_by_a_digest():
    a, b = cbnodes.node_name_of("a" * 80 + ".example.com"), cbnodes.node_name_of("a" * 80 + ".example.org")
    assert len(a) <= 63 and len(b) <= 63 and a != b


def test_a_tls_hostname_is_refused_with_where_to_go_instead():
    with pytest.raises(UsageError, match="apply it as a Node manifest"):
        cbnodes.address_of("https://10.0.0.5:2376")


# -- idempotency keys in the store (both backends) ---------------------------------------------------


def test_a_key_given_twice_creates_one_job_and_returns_the_first_answer_also_from_another_connection(store, db_url):
    first = cbtasks.task_job(request(), SETTINGS, UUID)
    twin = cbtasks.task_job(request(), SETTINGS, "00000000-0000-4000-8000-000000000000")
    assert store.create([first], Once("alice POST /tasks default", "k1", {"uuid": UUID}), now=1000.0) is None
    other = Store(db_url)
    try:
        earlier = other.create([twin], Once("alice POST /tasks default", "k1", {"uuid": "other"}), now=1001.0)
    finally:
        other.close()
    assert earlier == {"uuid": UUID}
    assert [r.name for r in store.resources(Kind.JOB)] == [f"cb-{UUID}"]
    # Another user's key of the same text is another key.
    assert store.create([twin], Once("bob POST /tasks default", "k1", {"uuid": "bob's"}), now=1002.0) is None
    assert len(store.resources(Kind.JOB)) == 2


def test_a_key_older_than_a_day_is_forgotten_and_a_second_create_of_one_name_is_a_conflict(store):
    first = cbtasks.task_job(request(), SETTINGS, UUID)
    assert store.create([first], Once("s", "k", {"n": 1}), now=1000.0) is None
    with pytest.raises(Conflict, match=f"job/cb-{UUID} exists already"):
        store.create([first], Once("s", "k", {"n": 2}), now=1000.0 + 86401)  # the key is gone: a real create
    assert store._rows("SELECT count(*) AS n FROM idempotency_keys")[0]["n"] == 1  # the refused one left no row
    second = cbtasks.task_job(request(), SETTINGS, "00000000-0000-4000-8000-000000000000")
    assert store.create([second], Once("s", "k", {"n": 3}), now=1000.0 + 86402) is None
    assert store._rows("SELECT answer FROM idempotency_keys")[0]["answer"] == '{"n":3}'
