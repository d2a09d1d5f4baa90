"""Tests for reconciler.spec.schema and the committed schemas/*.json files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from reconciler.spec import models
from reconciler.spec.manifests import _Loader, load_text
from reconciler.spec.schema import render_schema, schema_file, schema_for

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"

SAMPLES = {
    models.Kind.NODE: """\
apiVersion: broker/v1
kind: Node
metadata: {name: host-a, labels: {zone: "1", gpu: true}}
spec:
  address: tcp://10.0.0.1:2376
  tls: {caFile: /etc/brokerctl/ca.pem}
  slots: {default: 4, gpu: 1}
""",
    models.Kind.JOB: """\
apiVersion: broker/v1
kind: Job
metadata: {name: batch}
spec:
  completions: 3
  backoff: {initialSeconds: 1}
  template:
    image: busybox
    command: echo hi
    env: {DEBUG: 1, MODE: fast, DB_PASSWORD: {secretKeyRef: {name: db, key: password}}}
    envFrom: [{secretRef: db}, {secretRef: {name: more}}]
    imagePullSecret: regcred
    mounts: [{source: /data, target: /data, readOnly: true}]
    resources: {cpus: 0.5, memory: 256m}
""",
    models.Kind.SERVICE: """\
apiVersion: broker/v1
kind: Service
metadata: {name: web}
spec:
  replicas: 2
  template: {image: nginx, command: [nginx, -g, daemon off;]}
""",
    models.Kind.NAMESPACE: """\
apiVersion: broker/v1
kind: Namespace
metadata: {name: team-a, labels: {tier: 1}}
spec:
  quota: {cpus: 8, memory: 16g, tasks: 40, slots: {gpu: 2}}
  budget: {cpuHours: 500, window: 30d}
  share: 2
  runAs: {users: ["1000:1000", 1001], default: "1000:1000", allowRoot: false}
  mounts: [{source: /home/team-a, target: /home/team-a}]
  nodeSelector: {pool: shared, ssd: true}
""",
    models.Kind.SECRET: """\
apiVersion: broker/v1
kind: Secret
metadata: {name: db, namespace: team-a}
spec:
  stringData: {password: s3cret, PORT: 5432, tls.crt: x}
""",
}


def test_committed_schemas_match_the_models():
    """Every file in schemas/ is exactly what render_schema produces now, and every kind has one."""
    expected = {schema_file(kind): render_schema(kind) for kind in models.Kind}
    actual = {p.name: p.read_text(encoding="utf-8") for p in SCHEMAS.iterdir() if p.is_file()}
    stale = sorted(name for name in expected.keys() | actual.keys() if expected.get(name) != actual.get(name))
    assert not stale, f"schemas/{', schemas/'.join(stale)} out of date; run `python scripts/gen_schemas.py`"


@pytest.mark.parametrize("kind", list(models.Kind))
def test_schema_identity_and_stable_text(kind):
    """Each schema names its kind and version, and renders as sorted, indented JSON with a newline."""
    schema = schema_for(kind)
    assert schema["title"] == f"brokerctl {kind.value} (broker/v1)"
    assert schema["$id"] == f"{kind.value.lower()}.json"
    assert schema["properties"]["kind"]["const"] == kind.value
    assert schema["properties"]["apiVersion"]["const"] == models.API_VERSION
    # A Namespace may be just a name (`kind: Namespace`, `metadata: {name: team-a}`).
    spec = set() if kind is models.Kind.NAMESPACE else {"spec"}
    assert set(schema["required"]) == {"apiVersion", "kind", "metadata"} | spec
    text = render_schema(kind)
    assert text.endswith("}\n") and json.loads(text) == schema
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("kind", list(models.Kind))
def test_sample_manifest_validates_against_schema(kind):
    """A manifest the loader accepts also satisfies its kind's schema (jsonschema if installed)."""
    (loaded,) = load_text(SAMPLES[kind])
    assert loaded.resource.kind == kind.value
    instance = yaml.load(SAMPLES[kind], _Loader)  # the document as written, before defaults
    schema = schema_for(kind)
    try:
        import jsonschema
    except ImportError:
        assert check(instance, schema, schema) == []
    else:
        jsonschema.validate(instance, schema)


@pytest.mark.parametrize(
    ("kind", "edit", "problem"),
    [
        (models.Kind.JOB, lambda d: d["spec"]["template"].pop("image"), "spec.template: missing image"),
        (models.Kind.SERVICE, lambda d: d.pop("metadata"), ": missing metadata"),
        (models.Kind.NODE, lambda d: d["spec"].update(adress="x"), "spec: unexpected adress"),
        (models.Kind.JOB, lambda d: d["spec"].update(completions="3"), "spec.completions: not integer"),
    ],
)
def test_structure_check_catches_what_the_schema_forbids(kind, edit, problem):
    """The fallback structure check (used without jsonschema) rejects broken manifests."""
    instance = yaml.load(SAMPLES[kind], _Loader)
    edit(instance)
    schema = schema_for(kind)
    assert problem in check(instance, schema, schema)


_TYPES = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float),
          "boolean": bool, "null": type(None)}


def check(value, schema: dict, root: dict, path: str = "") -> list[str]:
    """A small structural JSON Schema check: $ref, anyOf, type, const, required, properties, items."""
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in schema:
        branches = [check(value, s, root, path) for s in schema["anyOf"]]
        return [] if [] in branches else branches[0]
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        ok = any(isinstance(value, _TYPES[t]) and not (t in ("integer", "number") and isinstance(value, bool))
                 for t in types)
        if not ok:
            return [f"{path}: not {'/'.join(types)}"]
    if "const" in schema and value != schema["const"]:
        return [f"{path}: not {schema['const']!r}"]
    problems = []
    if isinstance(value, dict):
        problems += [f"{path}: missing {key}" for key in schema.get("required", []) if key not in value]
        props = schema.get("properties", {})
        for key, item in value.items():
            sub = f"{path}.{key}".lstrip(".")
            if key in props:
                problems += check(item, props[key], root, sub)
            elif schema.get("additionalProperties") is False:
                problems.append(f"{path}: unexpected {key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                problems += check(item, schema["additionalProperties"], root, sub)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems += check(item, schema["items"], root, f"{path}.{i}")
    return problems


def test_schemas_show_the_caps_and_the_reserved_names():
    """Editors see the limits enforced at apply: the caps as `maximum`, reserved label/env names as propertyNames."""
    import re

    job, service = schema_for(models.Kind.JOB), schema_for(models.Kind.SERVICE)
    props = job["$defs"]["JobSpec"]["properties"]
    assert props["completions"]["maximum"] == props["parallelism"]["maximum"] == 1_000_000
    assert service["$defs"]["ServiceSpec"]["properties"]["replicas"]["maximum"] == 1_000_000
    labels = job["$defs"]["Metadata"]["properties"]["labels"]["propertyNames"]["not"]["pattern"]
    assert re.search(labels, "brokerctl.owner") and not re.search(labels, "brokerctl-team")
    env = job["$defs"]["Template"]["properties"]["env"]["propertyNames"]
    assert re.search(env["not"]["pattern"], "BROKER_TASK_ID") and not re.search(env["pattern"], "A=B")
    source = job["$defs"]["Mount"]["properties"]["source"]["pattern"]
    assert [bool(re.search(source, s)) for s in ("/srv/x", "vol_1", "./data", "data/x")] == [True, True, False, False]


def test_namespaced_kinds_show_metadata_namespace_and_cluster_scoped_kinds_refuse_it():
    """Jobs, Services and Secrets take metadata.namespace (a DNS label); a Node or Namespace schema has no
    such field, so an editor flags it as the loader does."""
    import re

    for kind in (models.Kind.JOB, models.Kind.SERVICE, models.Kind.SECRET):
        prop = schema_for(kind)["$defs"]["Metadata"]["properties"]["namespace"]["anyOf"][0]
        assert re.search(prop["pattern"], "team-a") and not re.search(prop["pattern"], "Team_A")
        assert prop["maxLength"] == 63
    for kind in (models.Kind.NODE, models.Kind.NAMESPACE):
        meta = schema_for(kind)["$defs"]["ClusterMetadata"]
        assert "namespace" not in meta["properties"] and meta["additionalProperties"] is False
        instance = yaml.load(SAMPLES[kind], _Loader)
        instance["metadata"]["namespace"] = "team-a"
        assert check(instance, schema_for(kind), schema_for(kind)) == ["metadata: unexpected namespace"]
