"""Tests for reconciler.spec.manifests: YAML/JSON text -> validated models, with line-accurate errors."""

from __future__ import annotations

import io
import json
import math
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from reconciler.spec import manifests
from reconciler.spec import models
from reconciler.errors import ManifestError
from reconciler.spec.manifests import Loaded, iter_manifest_files, load_paths, load_text

NODE = """\
apiVersion: broker/v1
kind: Node
metadata:
  name: host-a
spec:
  address: unix:///var/run/docker.sock
"""

# Line numbers used below: 4 name, 5 spec, 6 template, 7 image, 8 command.
JOB = """\
apiVersion: broker/v1
kind: Job
metadata:
  name: hello
spec:
  template:
    image: busybox
    command: [echo, hi]
"""

SERVICE = """\
apiVersion: broker/v1
kind: Service
metadata:
  name: web
spec:
  template:
    image: nginx
"""


def problems_of(text: str, source: str = "m.yaml") -> list[str]:
    with pytest.raises(ManifestError) as info:
        load_text(text, source)
    assert info.value.exit_code == 2
    return info.value.problems


def test_valid_multi_document_file_fills_defaults():
    """Node, Job and Service in one file load in order, with every default filled in."""
    loaded = load_text("# cluster\n" + NODE + "---\n" + JOB + "---\n" + SERVICE, "all.yaml")

    assert [(l.resource.kind, l.resource.name, l.document, l.line) for l in loaded] == [
        ("Node", "host-a", 1, 2),
        ("Job", "hello", 2, 9),
        ("Service", "web", 3, 18),
    ]
    assert all(l.source == "all.yaml" for l in loaded)
    node, job, service = (l.resource for l in loaded)
    assert isinstance(node, models.Node) and node.spec.slots is None and not node.spec.unschedulable
    spec = job.spec
    assert (spec.completions, spec.parallelism, spec.backoffLimit) == (1, 1, 3)
    assert (spec.backoff.initialSeconds, spec.backoff.maxSeconds) == (2, 60)
    assert spec.executionType == models.DEFAULT_EXECUTION_TYPE == "default"
    assert service.spec.replicas == 1 and service.spec.executionType == "default"
    assert service.spec.template.env == {} and service.metadata.labels == {}


def test_empty_documents_are_skipped_but_counted():
    """A leading, doubled or trailing `---` adds no resource; document numbers stay positional."""
    loaded = load_text("---\n" + JOB + "---\n---\n" + SERVICE + "---\n")

    assert [(l.resource.kind, l.document, l.line) for l in loaded] == [("Job", 1, 2), ("Service", 3, 12)]


@pytest.mark.parametrize("text", ["", "\n", "---\n", "---\n---\n", "# only a comment\n---\n", "# a\n# b\n"])
def test_a_text_without_documents_is_an_error(text):
    """An empty file, or one holding only `---` or comments, is an error: it most likely lost its content."""
    assert problems_of(text) == ["m.yaml: no documents"]


@pytest.mark.parametrize(
    "text",
    [
        '{"apiVersion": "broker/v1", "kind": "Job", "metadata": {"name": "hello"},'
        ' "spec": {"template": {"image": "busybox", "command": ["echo", "hi"]}}}',
        # json.dumps(indent="\t") output: tabs are not YAML indentation, but valid JSON must load.
        '{\n\t"apiVersion": "broker/v1",\n\t"kind": "Job",\n\t"metadata": {"name": "hello"},\n'
        '\t"spec": {\n\t\t"template": {"image": "busybox", "command": ["echo", "hi"]}\n\t}\n}\n',
    ],
    ids=["one-line", "tab-indented"],
)
def test_json_input(text):
    """JSON documents load like YAML ones, including tab-indented JSON."""
    (job,) = load_text(text, "job.json")
    assert job.resource == load_text(JOB)[0].resource


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("[echo, hi]", ["echo", "hi"]),
        ('["sleep", "10"]', ["sleep", "10"]),
        ("echo $HOME && sleep 1", ["sh", "-c", "echo $HOME && sleep 1"]),
        ("|\n      echo one\n      echo two", ["sh", "-c", "echo one\necho two\n"]),
    ],
)
def test_command_as_list_or_string(command, argv):
    """`command` takes an argument list, or a string that runs under `sh -c`."""
    (job,) = load_text(JOB.replace("[echo, hi]", command))
    assert job.resource.spec.template.argv() == argv


def test_yaml_1_1_lookalikes_stay_strings():
    """`22:22`, `8080:80`, `no`, `on`, `yes`, `off` and dates are strings; only true/false are booleans."""
    text = JOB.replace("  name: hello\n", "  name: hello\n  labels: {a: no, b: 22:22, c: on, d: 2024-01-01}\n")
    text += "    env: {PORTS: 8080:80, DEBUG: yes, QUIET: off, ZONE: 017, LOUD: true, N: 0x10, X: 1.5}\n"
    (job,) = load_text(text)

    assert job.resource.metadata.labels == {"a": "no", "b": "22:22", "c": "on", "d": "2024-01-01"}
    assert job.resource.spec.template.env == {
        "PORTS": "8080:80", "DEBUG": "yes", "QUIET": "off", "ZONE": "17", "LOUD": "true", "N": "16", "X": "1.5",
    }
    assert yaml.safe_load("a: no") == {"a": False}, "the global SafeLoader must be left alone"


@pytest.mark.parametrize(
    ("scalar", "value"),
    [("true", True), ("False", False), ("TRUE", True), ("no", "no"), ("Yes", "Yes"), ("on", "on"),
     ("22:22", "22:22"), ("1:30:00", "1:30:00"), ("017", 17), ("0o17", 15), ("0x1F", 31), ("-5", -5),
     ("1_000", "1_000"), ("0b11", "0b11"), ("1e3", 1000.0), (".5", 0.5), ("-.inf", -math.inf),
     ("null", None), ("~", None), ("", None), ("Null", None), ("nil", "nil"), ("2024-01-01", "2024-01-01")],
)
def test_loader_resolves_plain_scalars_like_yaml_1_2_core(scalar, value):
    """Plain scalars resolve per YAML 1.2 core schema, identically with the C and pure-Python parsers."""
    for loader in (manifests._Loader, manifests._core_loader(yaml.SafeLoader)):
        assert yaml.load(f"k: {scalar}\n", loader) == {"k": value}, loader.__mro__[1]


@given(st.text(alphabet="0123456789abcdefnoxtruNLIF+-._:~ \"'", max_size=10))
def test_c_and_python_loaders_agree(scalar):
    """Whatever the scalar text, the CSafeLoader-based loader and the pure-Python one give the same result."""
    results = []
    for loader in (manifests._Loader, manifests._core_loader(yaml.SafeLoader)):
        try:
            results.append(repr(yaml.load(f"k: {scalar}\n", loader)))
        except yaml.YAMLError:
            results.append("error")
    assert results[0] == results[1]


def test_merge_keys_and_anchors_are_supported():
    """`<<: *defaults` merges a mapping, and the mapping's own keys win."""
    text = JOB.replace("name: hello", "name: hello\n  labels: &common {team: infra, tier: '1'}")
    text += "    env:\n      <<: *common\n      tier: own\n"
    (job,) = load_text(text)
    assert job.resource.spec.template.env == {"team": "infra", "tier": "own"}
    assert job.resource.metadata.labels == {"team": "infra", "tier": "1"}


LONG = "a" * 64

ERROR_CASES = [
    pytest.param(
        JOB.replace("    image:", "    imagee:"),
        ["m.yaml: document 1 (Job/hello), line 6: spec.template.image: missing required field",
         "m.yaml: document 1 (Job/hello), line 7: spec.template.imagee: unknown field (did you mean 'image'?)"],
        id="unknown-field-with-suggestion",
    ),
    pytest.param(
        JOB + "    mounts:\n      - source: /data\n        target: /data\n        readonly: true\n",
        ["m.yaml: document 1 (Job/hello), line 12: spec.template.mounts.0.readonly: unknown field "
         "(did you mean 'readOnly'?)"],
        id="unknown-field-in-list-item",
    ),
    pytest.param(
        JOB + "  flavour: big\n",
        ["m.yaml: document 1 (Job/hello), line 9: spec.flavour: unknown field; expected one of "
         "executionType, placement, priority, nodeSelector, nodeName, colocateWith, sticky, onNodeLost, completions, "
         "parallelism, backoffLimit, backoff, activeDeadlineSeconds, timeoutSeconds, ttlSecondsAfterFinished, "
         "suspend, terminationGracePeriodSeconds, template"],
        id="unknown-field-without-close-match",
    ),
    pytest.param(
        SERVICE.replace("spec:\n", "spec:\n  replicas: many\n"),
        ["m.yaml: document 1 (Service/web), line 6: spec.replicas: expected an integer, got a string"],
        id="wrong-type",
    ),
    pytest.param(
        JOB.replace("    image: busybox\n", ""),
        ["m.yaml: document 1 (Job/hello), line 6: spec.template.image: missing required field"],
        id="missing-image-points-at-template",
    ),
    pytest.param(
        JOB.replace("spec:\n  template:\n    image: busybox\n    command: [echo, hi]\n", ""),
        ["m.yaml: document 1 (Job/hello), line 1: spec: missing required field"],
        id="missing-spec-points-at-document",
    ),
    pytest.param(
        JOB.replace("name: hello", "name: Hello"),
        ["m.yaml: document 1 (Job/Hello), line 4: metadata.name: 'Hello' is not a lowercase DNS label "
         "(a-z, 0-9 and '-', starting and ending with a letter or digit, at most 63 characters)"],
        id="uppercase-name",
    ),
    pytest.param(
        JOB.replace("name: hello", f"name: {LONG}"),
        [f"m.yaml: document 1 (Job/{LONG}), line 4: metadata.name: '{LONG}' is not a lowercase DNS label "
         "(a-z, 0-9 and '-', starting and ending with a letter or digit, at most 63 characters)"],
        id="name-longer-than-63",
    ),
    pytest.param(
        JOB.replace("kind: Job", "kind: Foo"),
        ["m.yaml: document 1, line 2: kind: unknown kind 'Foo'; expected one of Node, Job, Service, Namespace, Secret"],
        id="unknown-kind",
    ),
    pytest.param(
        JOB.replace("kind: Job\n", ""),
        ["m.yaml: document 1, line 1: kind: missing required field; expected one of Node, Job, Service, Namespace, "
         "Secret"],
        id="missing-kind",
    ),
    pytest.param(
        JOB.replace("broker/v1", "v1"),
        ["m.yaml: document 1 (Job/hello), line 1: apiVersion: unsupported apiVersion 'v1'; expected 'broker/v1'"],
        id="wrong-api-version",
    ),
    pytest.param(
        JOB + "    image: alpine\n",
        ["m.yaml: document 1 (Job/hello), line 9: spec.template.image: duplicate key "
         "(first on line 7, again on line 9)"],
        id="duplicate-key",
    ),
    pytest.param(
        JOB.replace("command: [echo, hi]", "command: 5"),
        ["m.yaml: document 1 (Job/hello), line 8: spec.template.command: "
         "expected a list of strings or a string, got an integer"],
        id="union-collapsed",
    ),
    pytest.param(
        JOB.replace("command: [echo, hi]", "command: [sleep, 10]"),
        ["m.yaml: document 1 (Job/hello), line 8: spec.template.command.1: expected a string, got an integer"],
        id="union-list-branch",
    ),
    pytest.param(
        JOB.replace("command: [echo, hi]", "command: [echo, hi\n    env: {}"),
        ["m.yaml: line 9, column 8: invalid YAML: did not find expected ',' or ']' "
         "(while parsing a flow sequence at line 8)"],
        id="invalid-yaml",
    ),
    pytest.param(
        JOB.replace("    command", "   command"),
        ["m.yaml: line 8, column 4: invalid YAML: did not find expected key "
         "(while parsing a block mapping at line 6)"],
        id="bad-indentation",
    ),
    pytest.param(
        JOB.replace("metadata:\n  name: hello", "metadata:"),
        ["m.yaml: document 1 (Job), line 3: metadata: expected a mapping, got null"],
        id="null-metadata",
    ),
    pytest.param(
        NODE + "---\nnot a mapping\n",
        ["m.yaml: document 2, line 8: a document must be a mapping with apiVersion, kind, metadata and spec, "
         "not a string"],
        id="document-not-a-mapping",
    ),
    pytest.param(
        NODE + "---\n- a\n- [b]\n",
        ["m.yaml: document 2, line 8: an item of a top-level list must be a mapping with apiVersion, kind, "
         "metadata and spec, not a string",
         "m.yaml: document 2, line 9: an item of a top-level list must be a mapping with apiVersion, kind, "
         "metadata and spec, not a list"],
        id="list-item-not-a-mapping",
    ),
    pytest.param(
        NODE.replace("unix:///var/run/docker.sock", "tcp://10.0.0.1:2376")
        + "  tls: {caFile: /etc/brokerctl/ca.pem}\n  slots: {gpu: -1}\n",
        ["m.yaml: document 1 (Node/host-a), line 8: spec.slots.gpu: Input should be greater than or equal to 0"],
        id="nested-dict-value",
    ),
    pytest.param(
        NODE + "  tls: {caFile: /etc/brokerctl/ca.pem}\n",
        ["m.yaml: document 1 (Node/host-a), line 5: spec: tls applies only to tcp:// addresses"],
        id="model-validator-on-spec",
    ),
]


@pytest.mark.parametrize(("text", "expected"), ERROR_CASES)
def test_errors_name_file_document_line_and_field(text, expected):
    """Each problem is one line: file, document, Kind/name, line, dotted field path and message."""
    assert problems_of(text) == expected


def test_every_problem_in_every_document_is_reported():
    """Errors in several documents of one text are all collected, and nothing is returned."""
    text = JOB.replace("image: busybox", "image: ''") + "---\n" + SERVICE.replace("name: web", "name: Web_1")
    assert problems_of(text) == [
        "m.yaml: document 1 (Job/hello), line 7: spec.template.image: String should have at least 1 character",
        "m.yaml: document 2 (Service/Web_1), line 13: metadata.name: 'Web_1' is not a lowercase DNS label "
        "(a-z, 0-9 and '-', starting and ending with a letter or digit, at most 63 characters)",
    ]


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A manifests directory with files that count and files that must be skipped."""
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "manifests"
    (d / "sub" / "deeper").mkdir(parents=True)
    (d / ".git" / "refs").mkdir(parents=True)
    (d / ".hidden").mkdir()
    (d / "docs").mkdir()
    (d / "b-job.yaml").write_text(JOB)
    (d / "a-node.YML").write_text(NODE)
    (d / "sub" / "service.json").write_text(
        '{"apiVersion": "broker/v1", "kind": "Service", "metadata": {"name": "web"}, '
        '"spec": {"template": {"image": "nginx"}}}'
    )
    (d / "sub" / "deeper" / "empty.yaml").write_text("# nothing yet\n")
    for skipped in (".git/refs/x.yaml", ".hidden/x.yaml", ".draft.yaml", "docs/README.md", "notes.txt"):
        (d / skipped).write_text("not: [valid\n")
    return d


def test_iter_manifest_files_is_recursive_sorted_and_skips_dotfiles(tree):
    """Only *.yaml/*.yml/*.json files count; dotfiles and dot-directories such as .git are skipped."""
    assert [p.relative_to(tree).as_posix() for p in iter_manifest_files(tree)] == [
        "a-node.YML", "b-job.yaml", "sub/deeper/empty.yaml", "sub/service.json",
    ]


def test_load_paths_directory(tree):
    """A directory loads its manifests in sorted order, each named by its path as given."""
    loaded = load_paths(["manifests"])
    assert [(l.source, l.resource.ref) for l in loaded] == [
        ("manifests/a-node.YML", "Node/host-a"),
        ("manifests/b-job.yaml", "Job/hello"),
        ("manifests/sub/service.json", "Service/web"),
    ]


def test_load_paths_reads_stdin_for_dash(tree):
    """`-` reads the given stream (sys.stdin by default) under the name <stdin>."""
    loaded = load_paths(["manifests/a-node.YML", "-"], stdin=io.StringIO(SERVICE))
    assert [(l.source, l.document, l.resource.ref) for l in loaded] == [
        ("manifests/a-node.YML", 1, "Node/host-a"), ("<stdin>", 1, "Service/web"),
    ]
    with pytest.raises(ManifestError) as info:
        load_paths(["-"], stdin=io.StringIO(JOB.replace("Job", "Jobb")))
    assert info.value.problems == [
        "<stdin>: document 1, line 2: kind: unknown kind 'Jobb'; expected one of Node, Job, Service, Namespace, Secret"
    ]


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["nope.yaml"], ["nope.yaml: no such file or directory"]),
        (["manifests/sub/deeper/none"], ["manifests/sub/deeper/none: no such file or directory"]),
        (["manifests/docs"], ["manifests/docs: directory has no *.yaml, *.yml or *.json manifests"]),
        (
            ["manifests/b-job.yaml", "manifests/b-job.yaml"],
            ["manifests/b-job.yaml: document 1 (Job/hello), line 4: metadata.name: duplicate resource Job/hello; "
             "first defined in manifests/b-job.yaml: document 1, line 4"],
        ),
    ],
    ids=["missing-file", "missing-dir", "no-manifests", "same-file-twice"],
)
def test_load_paths_errors(tree, paths, expected):
    """Missing paths, directories without manifests and repeated resources are errors naming the path."""
    with pytest.raises(ManifestError) as info:
        load_paths(paths)
    assert info.value.problems == expected


def test_duplicate_resource_across_files(tree):
    """The same kind and name in two files is an error that names both places."""
    (tree / "copy.yaml").write_text(SERVICE + "---\n" + JOB)
    with pytest.raises(ManifestError) as info:
        load_paths(["manifests"])
    assert info.value.problems == [
        "manifests/copy.yaml: document 2 (Job/hello), line 12: metadata.name: duplicate resource Job/hello; "
        "first defined in manifests/b-job.yaml: document 1, line 4",
        "manifests/sub/service.json: document 1 (Service/web), line 1: metadata.name: duplicate resource "
        "Service/web; first defined in manifests/copy.yaml: document 1, line 4",
    ]


def test_all_problems_of_all_sources_are_reported_together(tree):
    """One ManifestError lists every problem of every file, stdin and missing path, in order."""
    (tree / "bad.yaml").write_text(textwrap.dedent("""\
        apiVersion: broker/v1
        kind: Service
        metadata: {name: api}
        spec:
          replicas: -1
          template: {image: nginx, env: {A: null}}
        """))
    with pytest.raises(ManifestError) as info:
        load_paths(["manifests/bad.yaml", "missing.yaml", "-"], stdin=io.StringIO("kind: [\n"))
    assert info.value.problems == [
        "manifests/bad.yaml: document 1 (Service/api), line 5: spec.replicas: "
        "Input should be greater than or equal to 0",
        "manifests/bad.yaml: document 1 (Service/api), line 6: spec.template.env.A: expected a string "
            "or a mapping {secretKeyRef: {name, key}}, got null",
        "missing.yaml: no such file or directory",
        "<stdin>: line 2, column 1: invalid YAML: did not find expected node content "
        "(while parsing a flow node at line 2)",
    ]
    assert str(info.value) == "\n".join(info.value.problems)


def test_loaded_is_frozen():
    """Loaded records are immutable value objects."""
    (item,) = load_text(NODE, "n.yaml")
    assert item == Loaded(item.resource, "n.yaml", 1, 1)
    with pytest.raises(AttributeError):
        item.line = 2  # type: ignore[misc]


# -- Services: ports, update, healthCheck, template hash ------------------------------------------


def service_with(spec: str = "", template: str = "") -> str:
    """SERVICE with extra ``spec`` lines (indented two spaces, line 6 on) and ``template`` lines (line 8 on)."""
    return SERVICE.replace("spec:\n", "spec:\n" + spec) + template


@pytest.mark.parametrize(
    "text, binding",
    [
        ("8080:80", models.PortBinding("", 8080, 80, "tcp")),
        ("127.0.0.1:8080:80/udp", models.PortBinding("127.0.0.1", 8080, 80, "udp")),
        ("80", models.PortBinding("", None, 80, "tcp")),
        ("53/udp", models.PortBinding("", None, 53, "udp")),
        ("9000:9000/sctp", models.PortBinding("", 9000, 9000, "sctp")),
        ("1:65535", models.PortBinding("", 1, 65535, "tcp")),
        (" 8080:80 ", models.PortBinding("", 8080, 80, "tcp")),
    ],
)
def test_port_strings(text, binding):
    """Ports are [ip:][hostPort:]containerPort[/tcp|udp|sctp]; a bare container port gets a random host port."""
    assert models.parse_port(text) == binding
    (web,) = load_text(service_with(template=f"    ports: ['{text}']\n"))
    assert web.resource.spec.template.port_bindings() == [binding]


def test_integer_ports_are_read_as_strings():
    """`ports: [8080]` (a YAML integer) is the container port 8080, as if quoted."""
    (web,) = load_text(service_with(template="    ports: [8080, '9090:90']\n"))
    assert web.resource.spec.template.ports == ["8080", "9090:90"]
    assert web.resource.spec.template.port_bindings()[0] == models.PortBinding("", None, 8080, "tcp")


SHAPE = "is not [ip:][hostPort:]containerPort[/tcp|udp|sctp], e.g. \"8080:80\""


@pytest.mark.parametrize(
    "text, message",
    [
        ("http", f"port 'http' {SHAPE}"),
        ("8080:80/icmp", f"port '8080:80/icmp' {SHAPE}"),
        ("80/TCP", f"port '80/TCP' {SHAPE}"),
        ("8080-8090:80", f"port '8080-8090:80' {SHAPE}"),
        ("1.2.3.4:80", f"port '1.2.3.4:80' {SHAPE}"),  # an address needs a host port too
        ("123456:80", f"port '123456:80' {SHAPE}"),
        ("70000:80", "port '70000:80': 70000 is not a port number (1-65535)"),
        ("8080:0", "port '8080:0': 0 is not a port number (1-65535)"),
        ("1.2.3:80:80", "port '1.2.3:80:80': '1.2.3' is not an IPv4 address"),
        ("1..2.3:80:80", "port '1..2.3:80:80': '1..2.3' is not an IPv4 address"),
        ("999.1.1.1:80:80", "port '999.1.1.1:80:80': '999.1.1.1' is not an IPv4 address"),
    ],
)
def test_invalid_port_strings_are_refused(text, message):
    """A malformed port names the value and the expected shape, at the ports field's line."""
    with pytest.raises(ValueError) as info:
        models.parse_port(text)
    assert str(info.value) == message
    assert problems_of(service_with(template=f"    ports: ['{text}']\n")) == [
        f"m.yaml: document 1 (Service/web), line 8: spec.template.ports: {message}"]


@pytest.mark.parametrize(
    "ports, problem",
    [
        ("['8080:80', '8080:81']", "host port 8080/tcp is published twice"),
        ("['8080:80', '127.0.0.1:8080:81/tcp']", "host port 8080/tcp is published twice"),
        ("['53:53/udp', '5353:53/udp', '53:54/udp']", "host port 53/udp is published twice"),
        ("['8080:80', '8080:80/udp']", None),  # another protocol
        ("['80', '80']", None),  # random host ports never collide
    ],
)
def test_a_host_port_is_published_once(ports, problem):
    """One template may not publish the same host port and protocol twice."""
    text = service_with(template=f"    ports: {ports}\n")
    if problem is None:
        assert len(load_text(text)[0].resource.spec.template.ports) == len(yaml.safe_load(ports))
    else:
        assert problems_of(text) == [f"m.yaml: document 1 (Service/web), line 8: spec.template.ports: {problem}"]


@pytest.mark.parametrize(
    "spec, problems",
    [
        ("  update: {maxSurge: 0, maxUnavailable: 0}\n",
         ["line 6: spec.update: maxSurge and maxUnavailable cannot both be 0; the update could never start a replica"]),
        ("  update: {maxSurge: 0, maxUnavailable: 1}\n", []),
        ("  update: {maxSurge: -1}\n", ["line 6: spec.update.maxSurge: Input should be greater than or equal to 0"]),
        ("  update: {progressDeadlineSeconds: 0}\n",
         ["line 6: spec.update.progressDeadlineSeconds: Input should be greater than 0"]),
        ("  healthCheck: {command: ''}\n", ["line 6: spec.healthCheck.command: healthCheck.command must not be empty"]),
        ("  healthCheck: {command: []}\n", ["line 6: spec.healthCheck.command: healthCheck.command must not be empty"]),
        ("  healthCheck: {command: [curl, -f, localhost], retries: 0}\n",
         ["line 6: spec.healthCheck.retries: Input should be greater than or equal to 1"]),
        ("  healthCheck: {intervalSeconds: 5}\n", ["line 6: spec.healthCheck.command: missing required field"]),
        ("  maxPerNode: 0\n", ["line 6: spec.maxPerNode: Input should be greater than or equal to 1"]),
        ("  restart: {initialSeconds: 5, maxSeconds: 1}\n",
         ["line 6: spec.restart: maxSeconds must be >= initialSeconds"]),
    ],
)
def test_service_update_health_check_and_restart_validation(spec, problems):
    """update, healthCheck, maxPerNode and restart are validated with the field and line named."""
    text = service_with(spec=spec)
    if not problems:
        assert load_text(text)[0].resource.spec.update.maxUnavailable == 1
    else:
        assert problems_of(text) == [f"m.yaml: document 1 (Service/web), {p}" for p in problems]


def test_service_defaults():
    """A Service's restart, update and health-check defaults are those documented."""
    spec = load_text(SERVICE)[0].resource.spec
    assert (spec.restart.initialSeconds, spec.restart.maxSeconds) == (1, 60)
    assert spec.update.model_dump() == {"maxSurge": 1, "maxUnavailable": 0, "minReadySeconds": 2,
                                        "progressDeadlineSeconds": 120, "autoRollback": False}
    assert spec.healthCheck is None and spec.maxPerNode is None
    assert spec.template.ports == [] and spec.template.network is None
    health = load_text(service_with(spec="  healthCheck: {command: 'true'}\n"))[0].resource.spec.healthCheck
    assert (health.intervalSeconds, health.timeoutSeconds, health.retries, health.startPeriodSeconds) == (10, 5, 3, 0)
    assert health.docker_test() == ["CMD-SHELL", "true"]


def _hash(spec: str = "", template: str = "") -> str:
    return models.template_hash(load_text(service_with(spec, template))[0].resource.spec)


@pytest.mark.parametrize(
    "spec, template",
    [
        ("", "    env: {}\n    ports: []\n    mounts: []\n    resources: {}\n"),
        ("", "    network: null\n"),
        ("  replicas: 5\n  maxPerNode: 2\n  update: {maxSurge: 3, autoRollback: true}\n", ""),  # not the template
        ("  restart: {initialSeconds: 4}\n  priority: 7\n  terminationGracePeriodSeconds: 1\n", ""),
    ],
)
def test_template_hash_ignores_spelled_out_defaults_and_non_template_fields(spec, template):
    """Spelling out a default, or changing fields outside the template and health check, keeps the hash."""
    assert _hash(spec, template) == _hash()
    assert len(_hash()) == 10 and int(_hash(), 16) >= 0


@pytest.mark.parametrize(
    "spec, template",
    [
        ("", "    env: {A: '1'}\n"),
        ("", "    ports: ['8080:80']\n"),
        ("", "    network: backend\n"),
        ("", "    command: [nginx, -g, 'daemon off;']\n"),
        ("  healthCheck: {command: 'true'}\n", ""),
    ],
)
def test_template_hash_changes_with_the_template_or_health_check(spec, template):
    """Any change to the container's template or health check gives a new hash (and so a rolling update)."""
    assert _hash(spec, template) != _hash()


def test_template_hash_tracks_env_values_and_health_check_settings():
    """Changing one env value, or one health-check setting, changes the hash; equal specs hash equal."""
    one = _hash(template="    env: {A: '1'}\n")
    assert one == _hash(template="    env: {A: 1}\n")  # YAML integer 1 is the string "1"
    assert one != _hash(template="    env: {A: '2'}\n")
    check = "  healthCheck: {command: 'true', retries: %d}\n"
    assert _hash(spec=check % 3) == _hash(spec="  healthCheck: {command: 'true'}\n")
    assert _hash(spec=check % 3) != _hash(spec=check % 4)


def test_all_addresses_is_the_same_as_no_address():
    """0.0.0.0 publishes on every address, like giving none; it clashes with a specific address."""
    assert models.parse_port("0.0.0.0:8080:80") == models.parse_port("8080:80")
    assert models.ports_clash(("", 8080, "tcp"), ("127.0.0.1", 8080, "tcp"))
    assert not models.ports_clash(("127.0.0.1", 8080, "tcp"), ("127.0.0.2", 8080, "tcp"))
    ok = models.Template(image="x", ports=["127.0.0.1:8080:80", "127.0.0.2:8080:81"])
    assert len(ok.port_bindings()) == 2
    with pytest.raises(ValueError, match="host port 8080/tcp is published twice"):
        models.Template(image="x", ports=["0.0.0.0:8080:80", "127.0.0.2:8080:81"])


# -- caught at apply: caps, strict types, reserved names, Docker's rules ---------------------------

JOB_AT = "m.yaml: document 1 (Job/hello), "
NODE_AT = "m.yaml: document 1 (Node/host-a), "


def job_with(spec: str = "", template: str = "", labels: str = "") -> str:
    """JOB with extra ``spec`` lines (from line 6 on), ``template`` lines (from line 9 on) or a labels line (line 5)."""
    text = JOB.replace("spec:\n", "spec:\n" + spec) + template
    return text.replace("  name: hello\n", f"  name: hello\n  labels: {labels}\n") if labels else text


@pytest.mark.parametrize(
    "text, expected",
    [
        (job_with("  completions: 1000000\n  parallelism: 1000000\n"), None),
        (service_with("  replicas: 1000000\n"), None),
        (job_with("  completions: 1000001\n"),
         JOB_AT + "line 6: spec.completions: 1000001 is more than the limit of 1,000,000"),
        (job_with("  parallelism: 1000000000\n"),
         JOB_AT + "line 6: spec.parallelism: 1000000000 is more than the limit of 1,000,000"),
        (service_with("  replicas: 1000000000\n"),
         "m.yaml: document 1 (Service/web), line 6: spec.replicas: 1000000000 is more than the limit of 1,000,000"),
    ],
    ids=["job-at-caps", "service-at-cap", "completions", "parallelism", "replicas"],
)
def test_completions_parallelism_and_replicas_are_capped_at_a_million(text, expected):
    """The caps are 1,000,000 each, enforced at apply with the field and line named."""
    if expected is None:
        assert load_text(text)
    else:
        assert problems_of(text) == [expected]
    assert models.MAX_COMPLETIONS == models.MAX_PARALLELISM == models.MAX_REPLICAS == 1_000_000


@pytest.mark.parametrize(
    "text, expected",
    [
        (job_with("  completions: true\n"), JOB_AT + "line 6: spec.completions: expected an integer, got a boolean"),
        (job_with("  completions: '3'\n"), JOB_AT + "line 6: spec.completions: expected an integer, got a string"),
        (job_with("  completions: 2.0\n"), JOB_AT + "line 6: spec.completions: expected an integer, got a number"),
        (job_with("  suspend: 'yes'\n"), JOB_AT + "line 6: spec.suspend: expected a boolean, got a string"),
        (job_with("  suspend: 1\n"), JOB_AT + "line 6: spec.suspend: expected a boolean, got an integer"),
        (job_with("  timeoutSeconds: '5'\n"), JOB_AT + "line 6: spec.timeoutSeconds: expected a number, got a string"),
        (job_with("  backoff: {initialSeconds: true}\n"),
         JOB_AT + "line 6: spec.backoff.initialSeconds: expected a number, got a boolean"),
        (job_with(template="    resources: {memory: true}\n"),
         JOB_AT + "line 9: spec.template.resources.memory: expected a string or an integer, got a boolean"),
        (job_with(template="    mounts: [{source: /d, target: /d, readOnly: 'true'}]\n"),
         JOB_AT + "line 9: spec.template.mounts.0.readOnly: expected a boolean, got a string"),
        (NODE + "  slots: {default: '4'}\n", NODE_AT + "line 7: spec.slots.default: expected an integer, got a string"),
        (NODE + "  unschedulable: 'no'\n", NODE_AT + "line 7: spec.unschedulable: expected a boolean, got a string"),
    ],
    ids=["int-from-bool", "int-from-string", "int-from-float", "bool-from-string", "bool-from-int",
         "float-from-string", "float-from-bool", "memory-from-bool", "mount-readonly", "slots", "unschedulable"],
)
def test_types_are_strict(text, expected):
    """A boolean or a string is never read as a number, nor a string or number as a boolean."""
    assert problems_of(text) == [expected]


def test_numbers_stay_numbers_where_they_should_and_text_where_the_code_converts():
    """An integer is a fine float (`timeoutSeconds: 5`); env and label values and ports are still turned into text."""
    (loaded,) = load_text(job_with("  timeoutSeconds: 5\n", "    env: {N: 1, B: true}\n    ports: [80]\n",
                                   "{tier: 1}"))
    spec = loaded.resource.spec
    assert spec.timeoutSeconds == 5.0 and spec.template.env == {"N": "1", "B": "true"}
    assert spec.template.ports == ["80"] and loaded.resource.metadata.labels == {"tier": "1"}


@pytest.mark.parametrize(
    "text, expected",
    [
        (job_with(labels="{brokerctl.owner: Job/other}"),
         JOB_AT + "line 5: metadata.labels.brokerctl.owner: invalid key: 'brokerctl.owner': label keys starting "
                  "with 'brokerctl.' are reserved (brokerctl sets them on every container); use another key"),
        (NODE.replace("  name: host-a\n", "  name: host-a\n  labels: {brokerctl.store: x}\n"),
         NODE_AT + "line 5: metadata.labels.brokerctl.store: invalid key: 'brokerctl.store': label keys starting "
                   "with 'brokerctl.' are reserved (brokerctl sets them on every container); use another key"),
        (job_with(template="    env: {BROKER_TASK_ID: forged}\n"),
         JOB_AT + "line 9: spec.template.env.BROKER_TASK_ID: invalid key: 'BROKER_TASK_ID': names starting with "
                  "'BROKER_' are reserved (brokerctl sets BROKER_TASK_ID, BROKER_TASK_INDEX, BROKER_ATTEMPT and "
                  "BROKER_OWNER); use another name"),
        (job_with(template="    env: {'': x}\n"),
         JOB_AT + "line 9: spec.template.env.: invalid key: '' is not an environment variable name: it must be "
                  "non-empty and have no '='"),
        (job_with(template="    env: {'A=B': x}\n"),
         JOB_AT + "line 9: spec.template.env.A=B: invalid key: 'A=B' is not an environment variable name: it must "
                  "be non-empty and have no '='"),
    ],
    ids=["job-label", "node-label", "env-broker", "env-empty", "env-equals"],
)
def test_reserved_labels_and_env_names_and_bad_env_names_are_refused(text, expected):
    """brokerctl.* label keys and BROKER_* env names are brokerctl's own; an env name is non-empty without '='."""
    assert problems_of(text) == [expected]


def test_look_alike_labels_and_env_names_are_fine():
    """Only the exact prefixes are reserved: `brokerctl-team`, `Brokerctl.x`, `BROKER` and `broker_x` are the user's."""
    (loaded,) = load_text(job_with(template="    env: {BROKER: a, broker_x: b, MY_BROKER_X: c}\n",
                                   labels="{brokerctl-team: a, Brokerctl.x: b, x.brokerctl.y: c}"))
    assert set(loaded.resource.spec.template.env) == {"BROKER", "broker_x", "MY_BROKER_X"}
    assert set(loaded.resource.metadata.labels) == {"brokerctl-team", "Brokerctl.x", "x.brokerctl.y"}


DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "image",
    ["busybox", "busybox:latest", "library/busybox:1.36", "docker.io/library/busybox:1.36.1-musl",
     f"busybox@{DIGEST}", f"registry.example.com:5000/team/app:v2@{DIGEST}", "localhost:5000/app",
     "my_org/my-app__x.y", "Registry.Example.COM/app", "[::1]:5000/app:tag", "3f57d9401f8d",
     "a" * 255],
)
def test_valid_image_references(image):
    """Docker's grammar: optional registry host[:port], lowercase path components, optional :tag and @digest."""
    (loaded,) = load_text(JOB.replace("image: busybox", f"image: '{image}'"))
    assert loaded.resource.spec.template.image == image


SHAPE_OF_IMAGE = ("[registry[:port]/]name[:tag][@sha256:digest], e.g. busybox:1.36 or "
                  "registry.example.com:5000/team/app")


@pytest.mark.parametrize(
    "image, message",
    [
        ("busy box", f"image 'busy box' contains whitespace; an image reference is {SHAPE_OF_IMAGE}"),
        ("busybox ", f"image 'busybox ' contains whitespace; an image reference is {SHAPE_OF_IMAGE}"),
        ("Busybox", "image 'Busybox': repository names must be lowercase ('busybox'?)"),
        ("team/MyApp:1", "image 'team/MyApp:1': repository names must be lowercase ('team/myapp:1'?)"),
        ("busybox:", f"image 'busybox:' is not an image reference; expected {SHAPE_OF_IMAGE}"),
        ("busybox:-x", f"image 'busybox:-x' is not an image reference; expected {SHAPE_OF_IMAGE}"),
        ("busybox@sha256:abc", f"image 'busybox@sha256:abc' is not an image reference; expected {SHAPE_OF_IMAGE}"),
        ("-busybox", f"image '-busybox' is not an image reference; expected {SHAPE_OF_IMAGE}"),
        ("a//b", f"image 'a//b' is not an image reference; expected {SHAPE_OF_IMAGE}"),
        ("a" * 256, f"image '{'a' * 256}': the repository name is longer than 255 characters"),
    ],
)
def test_invalid_image_references_are_refused(image, message):
    """An image Docker could never pull is refused at apply, naming the line and what is wrong."""
    assert problems_of(JOB.replace("image: busybox", f"image: '{image}'")) == [
        JOB_AT + f"line 7: spec.template.image: {message}"]


@pytest.mark.parametrize(
    "memory, problem",
    [
        ("6m", None), ("6Mi", None), (6291456, None), ("1g", None),
        ("4m", "memory '4m' is 4194304 bytes; Docker's minimum is 6m (6291456 bytes)"),
        (6291455, "memory 6291455 is 6291455 bytes; Docker's minimum is 6m (6291456 bytes)"),
        ("512k", "memory '512k' is 524288 bytes; Docker's minimum is 6m (6291456 bytes)"),
    ],
)
def test_memory_below_dockers_minimum_is_refused(memory, problem):
    """Docker refuses a memory limit under 6 MiB at container creation; apply refuses it first."""
    text = job_with(template=f"    resources: {{memory: {memory!r}}}\n".replace("'", '"'))
    if problem is None:
        assert load_text(text)[0].resource.spec.template.resources.memory_bytes() >= 6 * 1024 * 1024
    else:
        assert problems_of(text) == [JOB_AT + f"line 9: spec.template.resources.memory: {problem}"]


@pytest.mark.parametrize(
    "mount, problem",
    [
        ("{source: /srv/data, target: /data}", None),
        ("{source: my-volume_1.x, target: /data}", None),
        ("{source: ./data, target: /data}",
         "spec.template.mounts.0.source: mount source './data' is neither an absolute host path nor a volume name "
         "(letters, digits, '_', '.' and '-', starting with a letter or digit); for a host path write it absolute, "
         "e.g. /srv/data"),
        ("{source: data/x, target: /data}",
         "spec.template.mounts.0.source: mount source 'data/x' is neither an absolute host path nor a volume name "
         "(letters, digits, '_', '.' and '-', starting with a letter or digit); for a host path write it absolute, "
         "e.g. /srv/data/x"),
        ("{source: '', target: /data}",
         "spec.template.mounts.0.source: mount source '' is neither an absolute host path nor a volume name "
         "(letters, digits, '_', '.' and '-', starting with a letter or digit); for a host path write it absolute, "
         "e.g. /srv/data"),
        ("{source: /srv/data, target: /}",
         "spec.template.mounts.0.target: mount target '/' would cover the container's whole filesystem; "
         "mount on a directory such as /data"),
        ("{source: /srv/data, target: /./}",
         "spec.template.mounts.0.target: mount target '/./' would cover the container's whole filesystem; "
         "mount on a directory such as /data"),
        ("{source: /srv/data, target: data}", "spec.template.mounts.0.target: mount target 'data' must be an absolute path"),
    ],
    ids=["bind", "volume", "relative-dot", "relative-path", "empty", "target-root", "target-root-dotted",
         "target-relative"],
)
def test_mount_source_and_target(mount, problem):
    """A source is an absolute host path or a Docker volume name; the target is absolute and not /."""
    text = job_with(template=f"    mounts: [{mount}]\n")
    if problem is None:
        assert len(load_text(text)[0].resource.spec.template.mounts) == 1
    else:
        assert problems_of(text) == [JOB_AT + f"line 9: {problem}"]


@pytest.mark.parametrize(
    "address, problem",
    [
        ("tcp://10.0.0.1:2375", None), ("tcp://docker-1.example.com:2376", None), ("tcp://localhost:2375", None),
        ("tcp://[::1]:2375", None), ("tcp://h1:2375", None), ("unix:///var/run/docker.sock", None),
        ("tcp://256.1.1.1:2375", "'tcp://256.1.1.1:2375': '256.1.1.1' is not an IPv4 address (four numbers 0-255)"),
        ("tcp://10.0.0:2375", "'tcp://10.0.0:2375': '10.0.0' is not an IPv4 address (four numbers 0-255)"),
        ("tcp://-h.example.com:2375",
         "'tcp://-h.example.com:2375': '-h.example.com' is not a host name (dot-separated labels of letters, "
         "digits and '-', not starting or ending with '-', at most 63 characters each)"),
        ("tcp://a_b:2375",
         "'tcp://a_b:2375': 'a_b' is not a host name (dot-separated labels of letters, digits and '-', not "
         "starting or ending with '-', at most 63 characters each)"),
        ("tcp://a..b:2375",
         "'tcp://a..b:2375': 'a..b' is not a host name (dot-separated labels of letters, digits and '-', not "
         "starting or ending with '-', at most 63 characters each)"),
        ("tcp://[1::2::3]:2375", "'tcp://[1::2::3]:2375': [1::2::3] is not an IPv6 address"),
        ("unix://var/run/docker.sock",
         "'unix://var/run/docker.sock': a unix address needs an absolute path, e.g. unix:///var/run/docker.sock"),
        ("unix://", "'unix://': a unix address needs an absolute path, e.g. unix:///var/run/docker.sock"),
    ],
)
def test_node_address_host_must_be_valid(address, problem):
    """A tcp host is an IPv4 address (octets 0-255), a bracketed IPv6 address or an RFC 1123 host name;
    a unix socket path is absolute."""
    text = NODE.replace("unix:///var/run/docker.sock", address)
    if problem is None:
        assert load_text(text)[0].resource.spec.address == address
    else:
        assert problems_of(text) == [NODE_AT + f"line 6: spec.address: {problem}"]


REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", sorted(str(p.relative_to(REPO)) for d in ("examples", "manifests")
                                        for p in (REPO / d).glob("*.yaml")))
def test_example_manifests_round_trip_through_the_store_representation(path):
    """Every example loads, and its stored form (the model dump) validates back to the same model."""
    from reconciler.kinds import Kind
    from reconciler.records import ResourceRecord

    for item in load_paths([str(REPO / path)]):
        res = item.resource
        stored = ResourceRecord(Kind(res.kind), res.name, "uid", dict(res.metadata.labels),
                                json.loads(json.dumps(res.spec.model_dump(mode="json"))), 1, 0.0, 0.0)
        assert stored.model == res


def test_a_stored_spec_is_read_without_the_checks_made_at_apply():
    """A record written before a check existed still loads: one stale resource must not fail every
    controller pass. The same values are refused in a manifest."""
    from reconciler.kinds import Kind
    from reconciler.records import ResourceRecord

    (loaded,) = load_text(JOB)
    spec = loaded.resource.spec.model_dump(mode="json")
    spec.update(completions=10**9, parallelism=10**9)
    spec["template"].update(image="Bad Image", env={"BROKER_X": "1"}, resources={"cpus": None, "memory": "1m"},
                            mounts=[{"source": "./rel", "target": "/", "readOnly": False}])
    stored = ResourceRecord(Kind.JOB, "hello", "uid", {"brokerctl.owner": "x"}, spec, 1, 0.0, 0.0)
    assert stored.model.spec.completions == 10**9 and stored.model.spec.template.image == "Bad Image"
    node = ResourceRecord(Kind.NODE, "n", "uid", {}, {"address": "tcp://256.1.1.1:2375"}, 1, 0.0, 0.0)
    assert node.model.spec.address == "tcp://256.1.1.1:2375"
    with pytest.raises(ValueError):  # what the store has is still typed strictly
        ResourceRecord(Kind.JOB, "hello", "uid", {}, {**spec, "suspend": "yes"}, 1, 0.0, 0.0).model
    manifest = json.dumps({"apiVersion": "broker/v1", "kind": "Job",
                           "metadata": {"name": "hello", "labels": {"brokerctl.owner": "x"}}, "spec": spec})
    assert [p.split(": ")[2] for p in problems_of(manifest)] == [
        "metadata.labels.brokerctl.owner", "spec.completions", "spec.parallelism", "spec.template.env.BROKER_X",
        "spec.template.image", "spec.template.mounts.0.source", "spec.template.mounts.0.target",
        "spec.template.resources.memory"]


# -- small things: empty input, tabs, lists of resources, read-only fields ---------------------------


@pytest.mark.parametrize(
    "text, line, column",
    [
        ("apiVersion: broker/v1\nkind: Job\nmetadata:\n\tname: x\n", 4, 1),
        (JOB.replace("    command", "\t  command"), 8, 1),
        (JOB.replace("    command", "  \tcommand"), 8, 3),
        ("a: |\n  x\n\ty\n", 3, 1),
    ],
)
def test_a_tab_in_indentation_says_so(text, line, column):
    """YAML forbids tabs in indentation; the message says that, with the line and column of the tab."""
    assert problems_of(text) == [
        f"m.yaml: line {line}, column {column}: invalid YAML: tabs are not allowed in YAML indentation; indent with spaces"]


def test_a_directory_skips_empty_files_but_not_when_they_are_all_it_has(tree):
    """Inside a directory an empty file is skipped; a directory whose files hold no document is an error,
    as is an empty file named directly. A synced directory (allow_empty) takes an empty file."""
    (tree / "none").mkdir()
    (tree / "none" / "a.yaml").write_text("# nothing\n")
    (tree / "none" / "b.yaml").write_text("---\n")
    with pytest.raises(ManifestError) as info:
        load_paths(["manifests/none", "manifests/sub/deeper/empty.yaml"], stdin=io.StringIO(""))
    assert info.value.problems == ["manifests/none: no documents in its *.yaml, *.yml or *.json files",
                                   "manifests/sub/deeper/empty.yaml: no documents"]
    with pytest.raises(ManifestError) as info:
        load_paths(["-"], stdin=io.StringIO("# nothing\n"))
    assert info.value.problems == ["<stdin>: no documents"]
    assert load_paths(["manifests/sub/deeper/empty.yaml"], allow_empty=True) == []


GET_OUTPUT = """\
- apiVersion: broker/v1
  kind: Job
  metadata:
    name: hello
    labels: {type: video}
    uid: 0a1b2c3d4e
    generation: 3
    createdAt: '2024-05-01T10:00:00.000Z'
    updatedAt: '2024-05-01T10:05:00.000Z'
    deletedAt: null
  spec:
    completions: 2
    template: {image: busybox, command: echo hi}
  status: {phase: Complete, active: 0, succeeded: 2, failed: 0, startTime: '2024-05-01T10:00:01.000Z'}
- apiVersion: broker/v1
  kind: Service
  metadata: {name: web, uid: x}
  spec:
    template: {image: nginx}
  status: {running: 1}
"""


def test_a_list_of_resources_with_read_only_fields_loads_like_separate_documents():
    """What `get -o yaml` prints (a list; status, uid, generation and the timestamps) applies back:
    the read-only fields are dropped, as kubectl does."""
    loaded = load_text(GET_OUTPUT)
    assert [(l.resource.ref, l.document, l.line) for l in loaded] == [("Job/hello", 1, 1), ("Service/web", 1, 15)]
    assert loaded[0].resource == load_text(JOB.replace("spec:\n", "spec:\n  completions: 2\n")
                                           .replace("[echo, hi]", "echo hi")
                                           .replace("  name: hello\n", "  name: hello\n  labels: {type: video}\n")
                                           )[0].resource
    as_json = json.dumps(yaml.load(GET_OUTPUT, manifests._Loader))
    assert [l.resource for l in load_text(as_json, "get.json")] == [l.resource for l in loaded]


def test_problems_in_a_list_item_name_its_line_and_duplicates_are_found_across_items():
    """A list item is validated like a document (its own line numbers), and a resource listed twice is a duplicate."""
    text = GET_OUTPUT.replace("completions: 2", "completions: two") + GET_OUTPUT[GET_OUTPUT.index("- apiVersion: broker/v1\n  kind: Service"):]
    assert problems_of(text) == [
        "m.yaml: document 1 (Job/hello), line 12: spec.completions: expected an integer, got a string",
        "m.yaml: document 1 (Service/web), line 23: metadata.name: duplicate resource Service/web; first defined "
        "in m.yaml: document 1, line 17",
    ]


def test_allowed_mounts_take_paths_and_subpath_entries():
    """allowedMounts keeps plain path strings (existing manifests) beside {path, subpaths, readOnly} entries;
    the stored form validates again to the same rules."""
    [loaded] = load_text(NODE + "  allowedMounts:\n    - /srv/data\n    - {path: /srv/ref, subpaths: true}\n"
                         "    - {path: /srv/ref/docs, readOnly: true}\n  allowedNetworks: [host]\n"
                         "  allowedVolumes: [etc-config]\n", "m.yaml")
    spec = loaded.resource.spec
    assert spec.mount_rules() == (models.MountRule("/srv/data", False, False), models.MountRule("/srv/ref", True, True),
                                  models.MountRule("/srv/ref/docs", False, True))
    assert models.NodeSpec.model_validate(spec.model_dump(mode="json")).mount_rules() == spec.mount_rules()
    assert (spec.allowedNetworks, spec.allowedVolumes) == (["host"], ["etc-config"])


@pytest.mark.parametrize(
    "entries, problem",
    [
        pytest.param(
            "[/srv, /srv/data]",
            "spec.allowedMounts: allowedMounts /srv is writable and /srv/data lies below it: a task could replace "
            "/srv/data with a symbolic link to anywhere on the host; make /srv readOnly: true or list only one of them",
            id="writable-ancestor"),
        pytest.param(
            "[/srv/data/in, /srv/data/]",
            "spec.allowedMounts: allowedMounts /srv/data is writable and /srv/data/in lies below it: a task could "
            "replace /srv/data/in with a symbolic link to anywhere on the host; make /srv/data readOnly: true or "
            "list only one of them",
            id="writable-ancestor-listed-second"),
        pytest.param(
            "[{path: /srv, subpaths: true}, /srv/data]",
            "spec.allowedMounts: allowedMounts /srv/data is writable and lies below /srv, whose subpaths tasks may "
            "mount: a task could plant a symbolic link there that a subpath mount would follow; make /srv/data "
            "readOnly: true",
            id="writable-below-subpaths"),
        pytest.param(
            "[{path: /srv, subpaths: true, readOnly: false}]",
            "spec.allowedMounts: allowedMounts /srv: subpaths are always read-only (a task that could write below "
            "it could plant a symbolic link the daemon would follow); drop readOnly: false",
            id="writable-subpaths"),
        pytest.param("[/a, /a/]", "spec.allowedMounts: allowedMounts lists /a twice; keep one entry", id="twice"),
        pytest.param("[srv]", "spec.allowedMounts: allowedMounts entry 'srv' must be an absolute host path",
                     id="relative"),
        pytest.param("[{path: srv}]", "spec.allowedMounts.0.path: allowedMounts path 'srv' must be an absolute host path",
                     id="relative-object"),
        pytest.param("[{path: /srv, subpath: true}]",
                     "spec.allowedMounts.0.subpath: unknown field (did you mean 'subpaths'?)", id="typo"),
        pytest.param("[5]", "spec.allowedMounts.0: expected a string or a mapping {path, subpaths, readOnly}, "
                            "got an integer", id="wrong-type"),
    ],
)
def test_allowed_mounts_that_would_let_a_task_plant_a_link_are_refused(entries, problem):
    """A writable entry with another entry below it, or below a subpaths entry, would let one task swap a
    path for a symbolic link another task's mount follows: refused at apply, naming the fix."""
    assert problems_of(NODE + f"  allowedMounts: {entries}\n") == [f"m.yaml: document 1 (Node/host-a), line 7: {problem}"]


def test_allowed_networks_are_host_or_container():
    """allowedNetworks names the guarded modes only: anything else is refused with the choices."""
    [message] = problems_of(NODE + "  allowedNetworks: [bridge]\n")
    assert message.startswith("m.yaml: document 1 (Node/host-a), line 7: spec.allowedNetworks.0: ")
    assert "'host'" in message and "'container'" in message


# -- namespaces ----------------------------------------------------------------------------------

NAMESPACE = """\
apiVersion: broker/v1
kind: Namespace
metadata: {name: team-a}
"""


def test_a_namespace_is_a_name_with_every_field_optional():
    """`kind: Namespace` with only a name loads, with no quota, budget or runAs, share 1, no mounts or selector."""
    (loaded,) = load_text(NAMESPACE)
    ns = loaded.resource
    assert isinstance(ns, models.Namespace) and ns.key == (models.Kind.NAMESPACE, "", "team-a")
    assert ns.spec.model_dump(mode="json") == {"quota": None, "budget": None, "share": 1, "runAs": None,
                                                "mounts": [], "nodeSelector": {}}


def test_a_namespace_spec_with_every_field():
    (loaded,) = load_text(NAMESPACE + """\
spec:
  quota: {cpus: 8, memory: 16g, tasks: 40, slots: {gpu: 2}}
  budget: {cpuHours: 500, window: 30d}
  share: 2
  runAs: {users: ["1000:1000", 1001, builder], default: "1000:1000", allowRoot: false}
  mounts: [{source: /home/team-a, target: /home/team-a}]
  nodeSelector: {pool: shared, ssd: true}
""")
    spec = loaded.resource.spec
    assert (spec.quota.cpus, spec.quota.memory_bytes(), spec.quota.tasks, spec.quota.slots) == (8, 16 << 30, 40,
                                                                                             {"gpu": 2})
    assert (spec.budget.cpuHours, spec.budget.window_seconds()) == (500, 30 * 86400)
    assert spec.share == 2
    assert spec.runAs.users == ["1000:1000", "1001", "builder"] and spec.runAs.default == "1000:1000"
    assert spec.runAs.allowRoot is False
    assert [(m.source, m.target, m.readOnly) for m in spec.mounts] == [("/home/team-a", "/home/team-a", False)]
    assert spec.nodeSelector == {"pool": "shared", "ssd": "true"}


@pytest.mark.parametrize(("spec", "problem"), [
    ("quota: {cpus: 0}", "line 5: spec.quota.cpus: Input should be greater than 0"),
    ("quota: {cpus: '8'}", "line 5: spec.quota.cpus: expected a number, got a string"),
    ("quota: {memory: lots}", "line 5: spec.quota.memory: memory 'lots' is not a size; write bytes or e.g. 256m, "
                              "1g, 512Mi"),
    ("quota: {tasks: -1}", "line 5: spec.quota.tasks: Input should be greater than or equal to 0"),
    ("quota: {slots: {gpu: -2}}", "line 5: spec.quota.slots.gpu: Input should be greater than or equal to 0"),
    ("quota: {storage: 2}", "line 5: spec.quota.storage: unknown field; expected one of cpus, memory, tasks, "
                            "slots"),
    ("budget: {cpuHours: 500}", "line 5: spec.budget.window: missing required field"),
    ("budget: {cpuHours: 0, window: 30d}", "line 5: spec.budget.cpuHours: Input should be greater than 0"),
    ("budget: {cpuHours: 5, window: 30 days}", "line 5: spec.budget.window: duration '30 days' is not a number "
                                                "and a unit (s, m, h, d or w), e.g. 30d, 12h, 90m"),
    ("budget: {cpuHours: 5, window: 0h}", "line 5: spec.budget.window: duration '0h' must be longer than 0"),
    ("share: 0", "line 5: spec.share: Input should be greater than 0"),
    ("share: true", "line 5: spec.share: expected a number, got a boolean"),
    ("runAs: {users: []}", "line 5: spec.runAs.users: List should have at least 1 item after validation, not 0"),
    ("runAs: {users: ['1000', '1000']}", "line 5: spec.runAs.users: a user is listed twice; keep one"),
    ("runAs: {users: ['10 00']}", "line 5: spec.runAs.users: user '10 00' is not uid[:gid] or a name, e.g. "
                                  "\"1000:1000\" or \"builder\""),
    ("runAs: {users: ['1000'], default: '1001'}", "line 5: spec.runAs: default '1001' is not one of users (1000); "
                                                  "add it to users or pick one of them"),
    ("runAs: {users: ['1000', '0:0'], allowRoot: false}", "line 5: spec.runAs: users lists root (0:0) but "
                                                          "allowRoot is false; remove it or allow root"),
    ("mounts: [{source: ./home, target: /home}]", "line 5: spec.mounts.0.source: mount source './home' is neither"),
    ("mounts: [{source: /a, target: /x}, {source: /b, target: /x}]", "line 5: spec.mounts: mount target /x is "
                                                                      "listed twice; keep one"),
    ("nodeSelector: [pool]", "line 5: spec.nodeSelector: expected a mapping, got a list"),
])
def test_namespace_spec_problems_name_the_field_and_the_fix(spec, problem):
    (found,) = problems_of(NAMESPACE + "spec:\n  " + spec + "\n")
    assert found.startswith(f"m.yaml: document 1 (Namespace/team-a), {problem}"), found


@pytest.mark.parametrize("kind_doc", [NODE, NAMESPACE], ids=["Node", "Namespace"])
def test_cluster_scoped_kinds_refuse_metadata_namespace(kind_doc):
    text = kind_doc.replace("metadata:\n  name: host-a", "metadata:\n  name: host-a\n  namespace: team-a").replace(
        "metadata: {name: team-a}", "metadata: {name: team-a, namespace: team-a}")
    kind = "Node" if kind_doc is NODE else "Namespace"
    (found,) = problems_of(text)
    assert found.endswith(f"metadata.namespace: a {kind} is cluster-scoped: it belongs to no namespace; remove "
                          "metadata.namespace"), found


def test_a_namespace_name_must_be_a_dns_label():
    assert problems_of(JOB.replace("  name: hello\n", "  name: hello\n  namespace: Team_A\n")) == [
        "m.yaml: document 1 (Job/hello), line 5: metadata.namespace: 'Team_A' is not a lowercase DNS label (a-z, "
        "0-9 and '-', starting and ending with a letter or digit, at most 63 characters)"]


def test_documents_without_a_namespace_go_to_the_callers_and_their_own_wins():
    """`-n team-b` is the default for Jobs and Services that name none; a document's own namespace wins;
    Nodes and Namespaces stay cluster-scoped."""
    own = JOB.replace("  name: hello\n", "  name: hello\n  namespace: team-a\n")
    text = "---\n".join([own, SERVICE, NODE, NAMESPACE])
    keys = [l.resource.key for l in load_text(text, namespace="team-b")]
    assert keys == [(models.Kind.JOB, "team-a", "hello"), (models.Kind.SERVICE, "team-b", "web"),
                    (models.Kind.NODE, "", "host-a"), (models.Kind.NAMESPACE, "", "team-a")]
    assert [l.resource.key[1] for l in load_text(JOB + "---\n" + SERVICE)] == ["default", "default"]


def test_one_name_in_two_namespaces_is_two_resources_but_twice_in_one_is_a_duplicate():
    in_a = JOB.replace("  name: hello\n", "  name: hello\n  namespace: team-a\n")
    assert len(load_text(JOB + "---\n" + in_a)) == 2
    with pytest.raises(ManifestError) as info:
        load_text(JOB + "---\n" + in_a, "m.yaml", namespace="team-a")
    assert info.value.problems == [
        "m.yaml: document 2 (Job/hello), line 13: metadata.name: duplicate resource team-a/Job/hello; first defined "
        "in m.yaml: document 1, line 4"]
