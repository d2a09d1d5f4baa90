"""Rendering: timestamps and JSON output stay exactly what scripts parse, however large the output."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from reconciler import views
from reconciler.cli import tables


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_iso_matches_datetime_to_the_millisecond(ts):
    """views.iso gives the same text as datetime's isoformat(timespec="milliseconds") in UTC."""
    expected = datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert views.iso(ts) == expected


def test_iso_of_none_is_none():
    """A missing time stays null in JSON."""
    assert views.iso(None) is None


def test_large_json_output_is_one_object_per_line_and_the_same_data():
    """Past LARGE_OUTPUT objects, -o json prints one compact object per line; it parses to the same list."""
    small = [{"id": i, "labels": {"a": "b"}} for i in range(3)]
    large = [{"id": i, "labels": {"a": "b"}} for i in range(views.LARGE_OUTPUT + 1)]
    assert json.loads(views.dump(small, "json")) == small and "\n  " in views.dump(small, "json")
    text = views.dump(large, "json")
    assert json.loads(text) == large
    assert text.count("\n") == len(large) + 2


def _record(kind, status: dict):
    from reconciler.kinds import Kind
    from reconciler.records import ResourceRecord

    return ResourceRecord(Kind(kind), "x", "uid", {}, {}, 1, 1714557600.0, 1714557600.0, status=status)


def test_status_times_are_iso_8601_like_every_other_time():
    """startTime, completionTime, a Node's since and a rollout's startedAt/progressAt are stored as epoch
    seconds and shown as ISO 8601; a missing time stays null; the stored record is not changed."""
    job = _record("Job", {"phase": "Complete", "startTime": 1714557601.5, "completionTime": None})
    assert views.resource_object(job)["status"]["startTime"] == "2024-05-01T10:00:01.500Z"
    assert views.resource_object(job)["status"]["completionTime"] is None
    assert job.status["startTime"] == 1714557601.5
    node = _record("Node", {"condition": "Ready", "since": 1714557600})
    assert views.resource_object(node)["status"]["since"] == "2024-05-01T10:00:00.000Z"
    web = _record("Service", {"rollout": {"revision": "abc", "state": "Progressing", "startedAt": 1714557600.25,
                                          "progressAt": 1714557660.0, "updated": 1}})
    assert views.resource_object(web)["status"]["rollout"] == {
        "revision": "abc", "state": "Progressing", "startedAt": "2024-05-01T10:00:00.250Z",
        "progressAt": "2024-05-01T10:01:00.000Z", "updated": 1}
    meta = views.resource_object(web)["metadata"]
    assert (meta["createdAt"], meta["updatedAt"], meta["deletedAt"]) == ("2024-05-01T10:00:00.000Z",) * 2 + (None,)


def test_piped_tables_never_wrap_or_fold_a_row():
    """Not on a terminal, each row is one line however long, laid out like rich's table (two spaces apart)."""
    import io

    long = "Unschedulable: " + "no node has free slots of type gpu; " * 20
    out = io.StringIO()
    tables.print_table(["ID", "PHASE", "REASON"], [["job-a-0-1", "Pending", long], ["job-a-10-1", None, "日本"]],
                       file=out)
    assert out.getvalue().splitlines() == [
        "ID          PHASE    REASON",
        f"job-a-0-1   Pending  {long}",
        "job-a-10-1  -        日本",
    ]


def test_yaml_output_quotes_strings_a_yaml_1_2_reader_would_not_read_as_strings():
    """`-o yaml` quotes `0o17`, `1e3`, `no` and the like, so the manifests loader reads back the same strings."""
    import yaml

    from reconciler.spec.yamlcore import Loader

    env = {k: k for k in ["0o17", "1e3", ".5", "0x1F", "no", "on", "true", "null", "~", "017", "1:30", "<<", ""]}
    text = views.dump([{"spec": {"template": {"env": env}}, "n": 3, "f": 1.5, "b": True, "z": None}], "yaml")
    assert yaml.load(text, Loader) == [{"spec": {"template": {"env": env}}, "n": 3, "f": 1.5, "b": True, "z": None}]
    assert yaml.safe_load(text) == yaml.load(text, Loader)


def test_namespaced_objects_say_their_namespace_and_cluster_scoped_ones_do_not():
    """A Job's metadata.namespace and an event's namespace are in the JSON; a Node has no
    metadata.namespace and its events have a null namespace; a Namespace's status is its phase and use."""
    from dataclasses import replace

    job = replace(_record("Job", {}), namespace="team-a")
    assert views.resource_object(job)["metadata"]["namespace"] == "team-a"
    assert "namespace" not in views.resource_object(_record("Node", {}))["metadata"]
    row = {"ts": 1714557600.0, "kind": "Job", "namespace": "team-a", "name": "x", "type": "Normal",
           "reason": "Scheduled", "message": "m", "task_id": "x-1"}
    assert views.event_object(row)["namespace"] == "team-a"
    assert views.event_object({**row, "kind": "Node", "namespace": ""})["namespace"] is None
    ns = replace(_record("Namespace", {}), deleted_at=1714557601.0)
    usage = {"running": 0, "used": {"cpus": 0, "memory": 0, "tasks": 0, "slots": {}}}
    assert views.namespace_object(ns, usage)["status"] == {"phase": "Terminating", **usage}
