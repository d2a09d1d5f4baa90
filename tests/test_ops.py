"""The ops verbs called directly, on a real store and a clock that only moves when they sleep: what
each waiting verb reports while it waits, when it gives up and with which message, and the data the
other verbs hand back, on each backend. (tests/test_cli.py runs the same verbs through the command line.)"""

from __future__ import annotations

import io

import pytest
from helpers import FakeClock

from reconciler.errors import BrokerError, NotFound
from reconciler.kinds import Kind, TaskPhase
from reconciler.ops import diff as diffs
from reconciler.ops import nodes, resources, rollout, tasks
from reconciler.ops.polling import Note
from reconciler.records import TaskRecord
from reconciler.store import Store

MANIFESTS = """\
apiVersion: broker/v1
kind: Node
metadata: {name: h1}
spec: {address: "tcp://127.0.0.1:2375", slots: {cpu: 2}}
---
apiVersion: broker/v1
kind: Job
metadata: {name: hello, labels: {team: a}}
spec: {completions: 2, executionType: cpu, template: {image: busybox, command: "echo hi"}}
---
apiVersion: broker/v1
kind: Service
metadata: {name: web}
spec: {replicas: 2, executionType: cpu, template: {image: busybox, command: [httpd, -f]}}
"""


@pytest.fixture
def store(db_url):
    """A store with MANIFESTS applied, once per backend (SQLite, PostgreSQL)."""
    s = Store(db_url)
    apply(s, MANIFESTS)
    yield s
    s.close()


def apply(store: Store, text: str) -> resources.Applied:
    return resources.apply(store, resources.read_manifests(["-"], io.StringIO(text)))


def job(name: str, **spec) -> str:
    spec = {"template": {"image": "busybox"}, **spec}
    return f"apiVersion: broker/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec: {spec}\n"


def set_status(store: Store, kind: Kind, name: str, **status) -> None:
    with store.transaction() as tx:
        store.set_status(tx, kind, name, status)


def add_task(store: Store, owner: str, index: int, phase: TaskPhase = TaskPhase.RUNNING, **kw) -> str:
    tid = f"{owner}-{index}-1"
    with store.transaction() as tx:
        store.insert_task(tx, TaskRecord(id=tid, owner_kind=Kind.JOB, owner_name=owner, owner_uid="u", index=index,
                                         attempt=1, phase=phase, created_at=1.0 + index, **kw))
    return tid


def update_task(store: Store, tid: str, **changes) -> None:
    with store.transaction() as tx:
        store.update_task(tx, tid, **changes)


def drive(events):
    """Run a waiting verb to its end: what it yielded, and what it returned."""
    seen = []
    while True:
        try:
            seen.append(next(events))
        except StopIteration as done:
            return seen, done.value


def lines(seen) -> list[str]:
    return [n.text for n in seen if isinstance(n, Note)]


def gave_up_at(fake: FakeClock, timeout: float, interval: float) -> bool:
    """The verb slept in steps of ``interval`` and gave up at the first look at or past ``timeout``."""
    return set(fake.sleeps) == {interval} and timeout <= sum(fake.sleeps) < timeout + interval + 1e-9


# -- wait ----------------------------------------------------------------------------------------


def test_wait_returns_at_the_first_look_that_meets_the_condition(store):
    """`wait` looks every 0.2 s and returns as soon as the Job is Complete."""
    fake = FakeClock(on_sleep=lambda n: n == 3 and set_status(store, Kind.JOB, "hello", phase="Complete"))
    tasks.wait(store, tasks.condition("job/hello", "condition=Complete"), 60, fake.clock)
    assert fake.sleeps == [0.2, 0.2, 0.2]


def test_wait_for_complete_ends_when_the_job_fails_instead(store):
    """The opposite outcome ends the wait at once with where the Job stands."""
    fake = FakeClock(on_sleep=lambda n: set_status(store, Kind.JOB, "hello", phase="Failed", succeeded=1,
                                                   message="BackoffLimitExceeded"))
    with pytest.raises(BrokerError) as raised:
        tasks.wait(store, tasks.condition("job/hello", "condition=Complete"), 60, fake.clock)
    assert str(raised.value) == ("job/hello reached Failed instead of Complete: phase Failed, 1/2 succeeded; "
                                 "BackoffLimitExceeded")
    assert len(fake.sleeps) == 1


def test_wait_times_out_after_its_timeout_with_the_last_state(store):
    """The timeout counts from the start; the message says where the resource stood at the last look."""
    fake = FakeClock()
    with pytest.raises(BrokerError) as raised:
        tasks.wait(store, tasks.condition("node/h1", "condition=Ready"), 1, fake.clock)
    assert str(raised.value) == "timed out after 1s waiting for node/h1 condition=Ready (condition Unknown: )"
    assert gave_up_at(fake, 1, 0.2)


def test_a_service_is_ready_when_every_replica_is_ready_and_runs_the_current_template(store):
    """Ready replicas of an older template do not make a Service Ready."""
    current = rollout.template_of(store.resource(Kind.SERVICE, "web"))

    def state(**status):
        set_status(store, Kind.SERVICE, "web", **status)
        return tasks.condition_state(store.resource(Kind.SERVICE, "web"))

    assert state(ready=2, updated=2, revision="old").met == set()
    assert state(ready=1, updated=2, revision=current).met == set()
    ready = state(ready=2, updated=2, revision=current)
    assert ready.met == {"Ready"} and ready.detail == "2/2 ready, 2 up to date"


@pytest.mark.parametrize("target, condition, message", [
    ("job/hello", "condition=Ready", "a Job has no Ready condition; use condition=Complete or condition=Failed"),
    ("node/h1", "condition=Failed", "a Node has no Failed condition; use condition=Ready"),
    ("job/hello", "phase=Complete", "use condition=Complete, condition=Failed or condition=Ready"),
])
def test_a_condition_the_kind_cannot_reach_is_a_usage_error(target, condition, message):
    with pytest.raises(BrokerError) as raised:
        tasks.condition(target, condition)
    assert raised.value.exit_code == 2 and message in str(raised.value)


# -- apply --wait --------------------------------------------------------------------------------


def test_wait_jobs_reports_each_job_as_it_ends_and_fails_if_any_failed(store):
    """A line per Job as it ends (with its message), then one error naming the failed ones."""
    apply(store, job("a") + "---\n" + job("b"))

    def progress(n):
        if n == 1:
            set_status(store, Kind.JOB, "a", phase="Complete")
        if n == 2:
            set_status(store, Kind.JOB, "b", phase="Failed", message="exit code 3")

    fake = FakeClock(progress)
    seen = []
    with pytest.raises(BrokerError) as raised:
        for note in tasks.wait_jobs(store, ["a", "b"], 0, fake.clock):
            seen.append(note.text)
    assert seen == ["job/a complete", "job/b failed: exit code 3"]
    assert str(raised.value) == "1 job(s) failed: b; see `brokerctl describe job NAME`"


def test_wait_jobs_times_out_naming_the_jobs_still_running(store):
    apply(store, job("a") + "---\n" + job("b"))
    fake = FakeClock(lambda n: set_status(store, Kind.JOB, "b", phase="Complete"))
    with pytest.raises(BrokerError) as raised:
        drive(tasks.wait_jobs(store, ["a", "b"], 1.5, fake.clock))
    assert str(raised.value) == "timed out after 1.5s waiting for job/a"
    assert gave_up_at(fake, 1.5, 0.2)


def test_wait_jobs_without_a_timeout_waits_as_long_as_it_takes(store):
    fake = FakeClock(lambda n: n == 3000 and set_status(store, Kind.JOB, "hello", phase="Complete"))
    seen, _ = drive(tasks.wait_jobs(store, ["hello"], 0, fake.clock))
    assert lines(seen) == ["job/hello complete"] and len(fake.sleeps) == 3000


# -- rollout status ------------------------------------------------------------------------------


def test_rollout_status_without_watch_says_where_it_stands_once(store):
    h = rollout.template_of(store.resource(Kind.SERVICE, "web"))
    fake = FakeClock()
    seen, done = drive(rollout.status(store, "web", watch=False, clock=fake.clock))
    assert lines(seen) == [f"waiting for service/web: waiting for the controller to pick up template {h}"]
    assert done is False and fake.sleeps == []


def test_rollout_status_prints_each_change_once_until_complete(store):
    h = rollout.template_of(store.resource(Kind.SERVICE, "web"))
    states = {1: {"updated": 1, "rollout": {"revision": h, "state": "Progressing"}},
              3: {"updated": 2, "rollout": {"revision": h, "state": "Complete"}}}
    fake = FakeClock(lambda n: n in states and set_status(store, Kind.SERVICE, "web", **states[n]))
    seen, done = drive(rollout.status(store, "web", clock=fake.clock))
    assert lines(seen) == [f"waiting for service/web: waiting for the controller to pick up template {h}",
                           "waiting for service/web: 1 of 2 updated replicas are ready",
                           f"service/web successfully rolled out (2 replicas at template {h})"]
    assert done is True and len(fake.sleeps) == 3


def test_rollout_status_ends_when_the_template_is_rolled_back(store):
    """A rollback (or another apply) changes the template being rolled out: the status names why."""
    h = rollout.template_of(store.resource(Kind.SERVICE, "web"))

    def roll_back(n):
        apply(store, MANIFESTS.replace("[httpd, -f]", "[httpd, -f, -v]"))
        with store.transaction() as tx:
            store.add_event(tx, "Service", "web", "RolledBack", "rolled back to template abc: 0 of 2 ready")

    with pytest.raises(BrokerError) as raised:
        drive(rollout.status(store, "web", clock=FakeClock(roll_back).clock))
    assert str(raised.value) == f"service/web: rollout of template {h} ended: rolled back to template abc: 0 of 2 ready"


def test_rollout_status_times_out_with_where_the_rollout_stands(store):
    h = rollout.template_of(store.resource(Kind.SERVICE, "web"))
    set_status(store, Kind.SERVICE, "web", updated=1, rollout={"revision": h, "state": "Progressing"})
    fake = FakeClock()
    with pytest.raises(BrokerError) as raised:
        drive(rollout.status(store, "web", timeout=2, clock=fake.clock))
    assert str(raised.value) == "timed out after 2s: service/web: 1 of 2 updated replicas are ready"
    assert gave_up_at(fake, 2, 0.2)


# -- drain ---------------------------------------------------------------------------------------


def test_drain_reports_the_tasks_left_as_they_change_and_gives_up_a_minute_after_its_timeout(store):
    """Without a controller the tasks never leave: drain cordons the node, says what is left whenever
    that changes, and gives up at --timeout + 60 s, asking whether a controller runs."""
    a = add_task(store, "hello", 0, node="h1")
    b = add_task(store, "hello", 1, node="h1")
    fake = FakeClock(lambda n: n == 1 and update_task(store, a, phase=TaskPhase.SUCCEEDED))
    with pytest.raises(BrokerError) as raised:
        drive(nodes.drain(store, "h1", timeout=5, clock=fake.clock))
    assert str(raised.value) == (f"node/h1: drain did not finish; 1 task(s) left on h1: {b}. "
                                 "Is a controller running (`brokerctl status`)?")
    assert gave_up_at(fake, 65, 0.5)
    node = store.resource(Kind.NODE, "h1")
    assert node.spec["unschedulable"] is True and node.drain_deadline is not None


def test_drain_says_what_is_left_in_order(store):
    a = add_task(store, "hello", 0, node="h1")
    b = add_task(store, "hello", 1, node="h1")
    fake = FakeClock(lambda n: n == 2 and update_task(store, a, phase=TaskPhase.SUCCEEDED))
    events = nodes.drain(store, "h1", timeout=0, clock=fake.clock)
    seen = []
    with pytest.raises(BrokerError):
        for note in events:
            seen.append(note.text)
    assert seen == ["node/h1 cordoned; draining", f"2 task(s) left on h1: {a}, {b}", f"1 task(s) left on h1: {b}"]


def test_drain_of_a_node_that_does_not_answer_warns_that_its_containers_went_unchecked(store):
    """Once no task is left, drain asks the node which of our containers still run; a node that does not
    answer cannot say, which is a warning, not a failure (the controller stops them when it returns)."""
    apply(store, MANIFESTS.replace("127.0.0.1:2375", "127.0.0.1:1"))  # nothing listens on port 1
    seen, _ = drive(nodes.drain(store, "h1", timeout=5, clock=FakeClock().clock))
    assert seen[0] == Note("node/h1 cordoned; draining") and seen[-1] == Note("node/h1 drained")
    [warning] = seen[1:-1]
    assert warning.warning and warning.text.startswith("node/h1 did not answer (")
    assert warning.text.endswith("); its containers could not be checked (the controller stops them when it returns)")


def test_drain_without_wait_only_cordons(store):
    seen, _ = drive(nodes.drain(store, "h1", timeout=120, wait=False, clock=FakeClock().clock))
    assert lines(seen) == ["node/h1 cordoned; draining"]
    assert store.resource(Kind.NODE, "h1").spec["unschedulable"] is True


# -- run (the end of the task: its live stream needs a Docker host, see test_e2e_lifecycle) ------


def test_run_warns_without_a_controller_then_yields_the_stored_output_and_returns_the_task(store):
    """The task is followed until it ends; its output, kept in the store, comes after."""
    job = tasks.one_off_job("once", "busybox", ["echo", "hi"], "cpu", {"A": "1"})
    tid = "once-0-1"

    def controller(n):
        if n == 2:
            add_task(store, "once", 0, TaskPhase.PENDING)
        if n == 4:
            update_task(store, tid, phase=TaskPhase.SUCCEEDED, exit_code=0)
            with store.transaction() as tx:
                store.save_output(tx, tid, b"hi\n", False)

    fake = FakeClock(controller)
    seen, task = drive(tasks.run(store, job, fake.clock))
    assert seen == [Note("no controller is running; the job waits until `brokerctl controller` starts", warning=True),
                    tasks.Output(tid, b"hi\n")]
    assert (task.id, task.exit_code) == (tid, 0) and fake.sleeps == [0.1] * 4
    assert store.resource(Kind.JOB, "once").spec["backoffLimit"] == 0


def test_run_of_a_task_that_ended_without_an_exit_code_exits_125(store):
    """Like `docker run`: 125 when the container never ran, with the task's reason."""
    job = tasks.one_off_job("once", "nope:latest", None, "cpu", {})

    def controller(n):
        if n == 1:
            add_task(store, "once", 0, TaskPhase.FAILED, reason="ImagePullFailed", message="no image nope:latest")

    with pytest.raises(tasks.TaskDidNotExit) as raised:
        drive(tasks.run(store, job, FakeClock(controller).clock))
    assert raised.value.exit_code == 125
    assert str(raised.value) == "task once-0-1 Failed: ImagePullFailed: no image nope:latest"


def test_run_refuses_a_job_name_in_use(store):
    with pytest.raises(BrokerError) as raised:
        drive(tasks.run(store, tasks.one_off_job("hello", "busybox", None, "cpu", {}), FakeClock().clock))
    assert raised.value.exit_code == 2 and "Job 'hello' already exists" in str(raised.value)


# -- resources -----------------------------------------------------------------------------------


def test_apply_warns_of_an_execution_type_no_node_declares(store):
    applied = apply(store, job("gpu-job", executionType="gpu") + "---\n" + job("cpu-job", executionType="cpu"))
    assert applied.results == [("job/gpu-job", "created"), ("job/cpu-job", "created")]
    assert applied.jobs == [("default", "gpu-job"), ("default", "cpu-job")]
    assert applied.warnings == ["Job 'gpu-job': executionType 'gpu' — no node declares slots for it; its tasks "
                                "stay Pending until a Node adds such slots (or change the type)"]


def test_a_nodes_slots_in_use_count_its_active_tasks_by_execution_type(store):
    add_task(store, "hello", 0, node="h1")
    add_task(store, "hello", 1, TaskPhase.SUCCEEDED, node="h1")
    [node] = resources.get_resources(store, Kind.NODE)
    assert node["status"]["slotsUsed"] == {"cpu": 1}
    assert [j["metadata"]["name"] for j in resources.get_resources(store, Kind.JOB, selector={"team": "a"})] == ["hello"]
    assert resources.get_resources(store, Kind.JOB, selector={"team": "b"}) == []


def test_get_events_keeps_the_last_n_and_says_when_there_are_older(store):
    with store.transaction() as tx:
        for i in range(3):
            store.add_event(tx, "Job", "hello", f"R{i}", "m", ts=100.0 + i)
        store.add_event(tx, "Job", "other", "X", "m", ts=200.0)
    last = resources.get_events(store, (Kind.JOB, "hello"), limit=2)
    assert [e["reason"] for e in last.rows] == ["R1", "R2"] and last.older
    assert not resources.get_events(store, (Kind.JOB, "hello"), limit=3).older
    every = resources.get_events(store, None, limit=0)
    assert [e["reason"] for e in every.rows] == ["R0", "R1", "R2", "X"] and not every.older


def test_delete_reports_each_deletion_before_a_later_one_fails(store):
    deleted = resources.delete(store, [(Kind.JOB, "hello"), (Kind.JOB, "nope"), (Kind.SERVICE, "web")])
    assert next(deleted) == (Kind.JOB, "hello", "deleted")
    with pytest.raises(NotFound):
        next(deleted)
    assert store.resource(Kind.SERVICE, "web")  # untouched


def test_diff_names_created_and_configured_resources_with_their_field_changes(store):
    changed = MANIFESTS.replace("completions: 2", "completions: 3").replace("{team: a}", "{owner: b}")
    inputs = diffs.read_diff_inputs(["-"], io.StringIO(changed + "---\n" + job("new")))
    assert diffs.diff(store, inputs) == [
        diffs.Change("job/hello", "configured", ("+ metadata.labels.owner: 'b'", "- metadata.labels.team: 'a'",
                                                     "~ spec.completions: 2 -> 3")),
        diffs.Change("job/new", "created"),
    ]


def test_field_changes_walk_nested_objects_and_compare_lists_whole():
    old = {"a": 1, "b": {"c": [1, 2], "d": "x"}, "gone": True}
    new = {"a": 1, "b": {"c": [1, 2, 3], "e": None}, 2: "int key"}
    assert diffs.field_changes(old, new) == [
        "+ 2: 'int key'", "~ b.c: [1, 2] -> [1, 2, 3]", "- b.d: 'x'", "+ b.e: None", "- gone: True",
    ]
    assert diffs.field_changes({"a": [1]}, {"a": [1]}) == []


# -- namespaces ----------------------------------------------------------------------------------


TEAMS = """\
apiVersion: broker/v1
kind: Namespace
metadata: {name: team-a}
spec: {quota: {cpus: 8, memory: 16g, tasks: 40, slots: {cpu: 2}}, share: 2}
---
apiVersion: broker/v1
kind: Namespace
metadata: {name: team-b}
"""


def in_team(name: str, namespace: str, **spec) -> str:
    spec = {"executionType": "cpu", "template": {"image": "busybox", "resources": {"cpus": 0.5, "memory": "256m"}},
            **spec}
    return f"apiVersion: broker/v1\nkind: Job\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {spec}\n"


def read(text: str, namespace: str = "default") -> list:
    return resources.read_manifests(["-"], io.StringIO(text), namespace)


def test_applying_into_a_missing_namespace_names_the_document_and_the_fix_and_writes_nothing(store):
    with pytest.raises(NotFound) as raised:
        resources.apply(store, read(job("ok") + "---\n" + job("nightly"), "team-x"))
    assert str(raised.value) == (
        "<stdin>: document 1 (Job/ok): namespace 'team-x' does not exist; apply a Namespace named team-x first "
        "(kind: Namespace), or use -n/--namespace\n"
        "<stdin>: document 2 (Job/nightly): namespace 'team-x' does not exist; apply a Namespace named team-x first "
        "(kind: Namespace), or use -n/--namespace")
    assert [r.name for r in store.resources(Kind.JOB, namespace=None)] == ["hello"]
    requesting = job("nightly", template={"image": "busybox", "resources": {"cpus": 1, "memory": "1g"}})
    applied = resources.apply(store, read(TEAMS + "---\n" + requesting + "---\n" + in_team("nightly", "team-b"),
                                          "team-a"))
    assert applied.results == [("namespace/team-a", "created"), ("namespace/team-b", "created"),
                               ("team-a/job/nightly", "created"), ("team-b/job/nightly", "created")]
    assert applied.jobs == [("team-a", "nightly"), ("team-b", "nightly")]


def test_a_workload_must_request_what_its_namespaces_quota_caps_and_the_store_is_left_unchanged(store):
    """As Kubernetes does: a Job without a cpu or memory request is refused in a namespace whose quota caps it
    (the quota in the store, or in the same apply), naming the document, the field and the fix; a namespace
    without such caps takes it. A Namespace that adds a cap over workloads without requests is applied (their
    tasks wait, with a reason naming the field)."""
    apply(store, TEAMS)
    bare = job("bare")
    with pytest.raises(BrokerError) as raised:
        resources.apply(store, read(in_team("ok", "team-a") + "---\n" + bare, "team-a"))
    assert str(raised.value) == (
        "<stdin>: document 2 (Job/bare): spec.template.resources.cpus: namespace 'team-a' caps cpus (quota.cpus: 8), "
        "so every task in it must request cpus; set spec.template.resources.cpus, or remove quota.cpus from "
        "Namespace team-a\n"
        "<stdin>: document 2 (Job/bare): spec.template.resources.memory: namespace 'team-a' caps memory "
        "(quota.memory: 16g), so every task in it must request memory; set spec.template.resources.memory, or "
        "remove quota.memory from Namespace team-a")
    assert raised.value.exit_code == 1 and raised.value.step == "set-request"
    assert store.resources(Kind.JOB, namespace="team-a") == [], "nothing written, not even the valid Job"

    capping = TEAMS.replace("name: team-b}", "name: team-b}\nspec: {quota: {cpus: 2}}")
    with pytest.raises(BrokerError, match=r"^<stdin>: document 3 \(Job/bare\): spec.template.resources.cpus: "
                                          r"namespace 'team-b' caps cpus \(quota.cpus: 2\)"):
        resources.apply(store, read(capping + "---\n" + bare, "team-b"))
    assert store.resource(Kind.NAMESPACE, "team-b").spec.get("quota") is None

    assert apply(store, bare.replace("name: bare", "name: bare, namespace: team-b")).results == [
        ("team-b/job/bare", "created")]
    assert apply(store, capping).results[1] == ("namespace/team-b", "configured")


def test_listings_keep_to_a_namespace_or_cover_every_one(store):
    apply(store, TEAMS + "---\n" + in_team("nightly", "team-a") + "---\n" + in_team("nightly", "team-b"))
    add_task(store, "hello", 0)
    with store.transaction() as tx:
        store.insert_task(tx, TaskRecord(id="nightly-aaaaa-0-1", owner_kind=Kind.JOB, owner_name="nightly",
                                         owner_uid="u", index=0, attempt=1, namespace="team-a", created_at=5.0))
        store.add_event(tx, "Job", "nightly", "Scheduled", "in a", namespace="team-a", ts=1.0)
        store.add_event(tx, "Node", "h1", "NodeReady", "ready", ts=2.0)
        store.add_event(tx, "Job", "hello", "Scheduled", "in default", ts=3.0)

    assert [j["metadata"]["name"] for j in resources.get_resources(store, Kind.JOB)] == ["hello"]
    jobs = resources.get_resources(store, Kind.JOB, namespace=None)
    assert [(j["metadata"]["namespace"], j["metadata"]["name"]) for j in jobs] == [
        ("default", "hello"), ("team-a", "nightly"), ("team-b", "nightly")]
    [b] = resources.get_resources(store, Kind.JOB, "nightly", namespace="team-b")
    assert b["metadata"]["namespace"] == "team-b"
    assert "namespace" not in resources.get_resources(store, Kind.NODE)[0]["metadata"]
    assert [t.id for t in resources.get_tasks(store)] == ["hello-0-1"]
    assert [t.id for t in resources.get_tasks(store, namespace="team-a")] == ["nightly-aaaaa-0-1"]
    assert [o["namespace"] for o in resources.task_objects(resources.get_tasks(store, namespace=None))] == [
        "default", "team-a"]
    assert [t.id for t in resources.get_tasks(store, "nightly-aaaaa-0-1")] == ["nightly-aaaaa-0-1"], \
        "a task id is found whatever its namespace"
    assert [e["message"] for e in resources.get_events(store).rows] == ["ready", "in default"]
    assert [e["message"] for e in resources.get_events(store, namespace="team-a").rows] == ["in a", "ready"]
    assert [e["message"] for e in resources.get_events(store, namespace=None).rows] == ["in a", "ready", "in default"]
    assert [e["message"] for e in resources.get_events(store, (Kind.JOB, "nightly"), namespace="team-a").rows] == [
        "in a"]


def test_a_namespace_shows_its_phase_and_what_its_tasks_use(store):
    """Running tasks, and over the active tasks that hold a node: the cpus and memory their owners request,
    the tasks and the slots per type. A task still waiting for a node uses nothing."""
    apply(store, TEAMS + "---\n" + in_team("nightly", "team-a", completions=3))
    with store.transaction() as tx:
        for i, (phase, node) in enumerate([(TaskPhase.RUNNING, "h1"), (TaskPhase.PENDING, "h1"),
                                           (TaskPhase.PENDING, None), (TaskPhase.SUCCEEDED, "h1")]):
            store.insert_task(tx, TaskRecord(id=f"n-{i}", owner_kind=Kind.JOB, owner_name="nightly", owner_uid="u",
                                             index=i, attempt=1, phase=phase, node=node, namespace="team-a"))
    found = {o["metadata"]["name"]: o for o in resources.get_resources(store, Kind.NAMESPACE)}
    assert list(found) == ["default", "team-a", "team-b"]
    assert found["team-a"]["status"] == {"phase": "Active", "running": 1, "used": {
        "cpus": 1.0, "memory": 2 * 256 * 1024 ** 2, "tasks": 2, "slots": {"cpu": 2}}}
    assert found["team-b"]["status"] == {"phase": "Active", "running": 0,
                                         "used": {"cpus": 0, "memory": 0, "tasks": 0, "slots": {}}}
    assert found["team-a"]["spec"]["quota"] == {"cpus": 8, "memory": "16g", "tasks": 40, "slots": {"cpu": 2}}
    assert "namespace" not in found["team-a"]["metadata"]

    described = resources.describe(store, Kind.NAMESPACE, "team-a")
    assert [(r["kind"], r["name"]) for r in described.contents] == [("Job", "nightly")]
    assert [t.id for t in described.tasks] == ["n-0", "n-1", "n-2"]
    assert described.object["status"]["running"] == 1


def test_deleting_a_namespace_that_holds_resources_needs_yes_and_says_what_it_holds(store):
    apply(store, TEAMS + "---\n" + "---\n".join(in_team(f"j{i}", "team-b") for i in range(7)))
    with pytest.raises(BrokerError) as raised:
        drive(resources.delete(store, [(Kind.JOB, "hello"), (Kind.NAMESPACE, "", "team-b")]))
    assert str(raised.value) == ("namespace 'team-b' holds 7 jobs (j0, j1, j2, j3, j4 and 2 more); pass --yes to "
                                 "delete namespace team-b and everything in it")
    assert raised.value.exit_code == 1 and raised.value.step == "confirm"
    assert store.resource(Kind.JOB, "hello") and len(store.resources(Kind.JOB, namespace="team-b")) == 7, \
        "nothing deleted"

    held = [(Kind.JOB, "team-b", f"j{i}") for i in range(6)]
    with pytest.raises(BrokerError, match="^namespace 'team-b' holds 1 job \\(j6\\); pass --yes"):
        drive(resources.delete(store, [*held, (Kind.NAMESPACE, "", "team-b")]))  # what is deleted anyway is not asked

    seen, _ = drive(resources.delete(store, [(Kind.NAMESPACE, "", "team-b")], yes=True))
    assert seen == [(Kind.NAMESPACE, "team-b", "deleted")]  # nothing of it could run
    assert store.resources(Kind.JOB, namespace="team-b") == []
    seen, _ = drive(resources.delete(store, [(Kind.NAMESPACE, "", "team-a")]))
    assert seen == [(Kind.NAMESPACE, "team-a", "deleted")], "an empty namespace needs no --yes"
    with pytest.raises(BrokerError, match="namespace 'default' cannot be deleted"):
        drive(resources.delete(store, [(Kind.NAMESPACE, "", "default")], yes=True))


def test_delete_targets_are_keys_in_the_namespace_given(store):
    assert resources.delete_targets("job", "x", [], namespace="team-a") == [(Kind.JOB, "team-a", "x")]
    assert resources.delete_targets("namespace", "team-a", [], namespace="team-b") == [(Kind.NAMESPACE, "", "team-a")]
    assert resources.delete_targets(None, None, ["-"], io.StringIO(in_team("x", "team-c") + "---\n" + job("y")),
                                    namespace="team-b") == [(Kind.JOB, "team-c", "x"), (Kind.JOB, "team-b", "y")]


def test_the_task_and_service_verbs_take_the_namespace(store):
    apply(store, TEAMS + "---\n" + in_team("nightly", "team-a"))
    text = MANIFESTS[MANIFESTS.index("kind: Service") - len("apiVersion: broker/v1\n"):]
    text = text.replace("{image: busybox,", "{image: busybox, resources: {cpus: 1, memory: 64m},")  # team-a caps both
    resources.apply(store, read(text, "team-a"))
    assert rollout.scale(store, "web", 5, namespace="team-a") == (2, 5)
    assert store.resource(Kind.SERVICE, "web").spec["replicas"] == 2
    assert [r["revision"] for r in rollout.history(store, "web", namespace="team-a").revisions] == [1]

    set_status(store, Kind.JOB, "hello", phase="Complete")
    with store.transaction() as tx:
        store.set_status(tx, Kind.JOB, "nightly", {"phase": "Failed", "message": "exit code 1"}, namespace="team-a")
    seen = []
    with pytest.raises(BrokerError) as raised:
        for note in tasks.wait_jobs(store, ["hello", ("team-a", "nightly")], 0, FakeClock().clock):
            seen.append(note.text)
    assert seen == ["job/hello complete", "team-a/job/nightly failed: exit code 1"]
    assert str(raised.value) == "1 job(s) failed: team-a/nightly; see `brokerctl describe job NAME`"
    cond = tasks.condition("job/nightly", "condition=Failed", "team-a")
    tasks.wait(store, cond, 1, FakeClock().clock)
    with pytest.raises(NotFound, match="Job 'nightly' not found; "):
        tasks.wait(store, tasks.condition("job/nightly", "condition=Failed"), 1, FakeClock().clock)
    tasks.retry(store, "nightly", "team-a")
    assert store.resource(Kind.JOB, "nightly", namespace="team-a").retried_at is not None

    job = tasks.one_off_job("hello", "busybox", None, "cpu", {}, namespace="team-a")
    assert job.key == (Kind.JOB, "team-a", "hello")
    with pytest.raises(BrokerError, match="Job 'nightly' already exists in namespace 'team-a'; pick another name or "
                                          "`brokerctl delete job nightly -n team-a`"):
        drive(tasks.run(store, tasks.one_off_job("nightly", "busybox", None, "cpu", {}, namespace="team-a"),
                        FakeClock().clock))
    with pytest.raises(NotFound, match="namespace 'team-x' does not exist"):
        drive(tasks.run(store, tasks.one_off_job("x", "busybox", None, "cpu", {}, namespace="team-x"),
                        FakeClock().clock))
