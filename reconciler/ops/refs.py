"""The names users type for what a verb acts on: kinds (with kubectl's short names, several at once
for `get`), ``KIND/NAME``, label selectors, task phases and owners, nodes, services, namespaces.

Called by the CLI (arguments) and by the verbs that take such names from manifests; an HTTP API
parses its label selectors here too. Each bad name is a ``UsageError`` saying what to type instead.
"""

from __future__ import annotations

import re

from ..errors import UsageError
from ..kinds import NAME_RE, Kind, TaskPhase


# kubectl's short names, accepted wherever a kind is typed (`get svc`, `describe ns team-a`, `logs svc/web`).
SHORT_NAMES = {"no": Kind.NODE, "ns": Kind.NAMESPACE, "svc": Kind.SERVICE}


def parse_kind(text: str) -> Kind:
    """``job``, ``jobs``, ``Job`` or a short name (``svc``) -> Kind.JOB."""
    short = SHORT_NAMES.get(text.strip().lower())
    if short is not None:
        return short
    try:
        return Kind.parse(text)
    except ValueError:
        raise UsageError(f"unknown kind {text!r}; use node (no), job, service (svc), secret or namespace (ns)"
                         ) from None


# What `get` lists besides the resource kinds, and what `get all` means: the namespaced workloads and
# their tasks, as kubectl's `all` is the namespaced workloads and their pods.
TASKS, EVENTS = "Task", "Event"
LISTED_SHORT = {"task": TASKS, "tasks": TASKS, "event": EVENTS, "events": EVENTS, "ev": EVENTS}
ALL = (Kind.JOB.value, Kind.SERVICE.value, TASKS)


def parse_listed_kinds(text: str) -> list[str]:
    """What `get` lists: ``jobs,svc`` -> ["Job", "Service"]; ``all`` -> jobs, services, tasks; kinds
    in the order typed, each once. Values: the ``Kind`` values, ``TASKS`` and ``EVENTS``."""
    out: list[str] = []
    for word in text.split(","):
        word = word.strip().lower()
        if not word:
            raise UsageError(f"get {text!r}: an empty kind; separate kinds with commas, e.g. jobs,services")
        if word == "all":
            found = list(ALL)
        elif word in LISTED_SHORT:
            found = [LISTED_SHORT[word]]
        else:
            try:
                found = [parse_kind(word).value]
            except UsageError:
                raise UsageError(f"unknown kind {word!r}; use nodes (no), namespaces (ns), jobs, services (svc), "
                                 "secrets, tasks, events (ev) or all, several separated by commas") from None
        out += [k for k in found if k not in out]
    return out


def parse_deleted_kinds(text: str) -> list[Kind]:
    """What `delete KINDS -l ...|--all` deletes: ``jobs,svc`` -> [JOB, SERVICE]; ``all``: jobs and services
    (tasks go with their Job or Service; events with what they are about)."""
    out: list[Kind] = []
    for word in text.split(","):
        if word.strip().lower() == "all":
            found = [Kind.JOB, Kind.SERVICE]
        else:
            listed = parse_listed_kinds(word)
            if listed[0] in (TASKS, EVENTS):
                raise UsageError(f"delete {word.strip()!r}: tasks go with their job or service, events with what they "
                                 "are about; delete jobs, services, namespaces or nodes")
            found = [Kind(k) for k in listed]
        out += [k for k in found if k not in out]
    return out


def parse_phases(phases: list[str]) -> frozenset[TaskPhase]:
    """``["running,pending", "Failed"]`` -> those task phases (any case)."""
    by_name = {p.value.lower(): p for p in TaskPhase}
    out = set()
    for item in phases:
        for word in filter(None, (w.strip() for w in item.split(","))):
            if word.lower() not in by_name:
                raise UsageError(f"--phase {word!r} is not a task phase; use "
                                 + ", ".join(p.value for p in TaskPhase))
            out.add(by_name[word.lower()])
    return frozenset(out)


def parse_owner(text: str) -> tuple[Kind, str]:
    """``--owner job/x`` (or ``svc/web``): the Job or Service whose tasks are wanted."""
    kind, name = parse_ref(text)
    if not kind.workload:
        raise UsageError(f"--owner {text!r}: tasks belong to a job or a service, e.g. --owner job/hello")
    return kind, name


def parse_ref(text: str) -> tuple[Kind, str]:
    """``job/hello`` -> (Kind.JOB, "hello")."""
    kind, sep, name = text.partition("/")
    if not sep or not name:
        raise UsageError(f"{text!r} is not KIND/NAME, e.g. job/hello")
    return parse_kind(kind), name


def parse_selector(selector: list[str]) -> dict[str, str]:
    """``["a=1,b=2", "c=3"]`` -> {"a": "1", "b": "2", "c": "3"}: every label must match."""
    out = {}
    for item in selector:
        for part in filter(None, item.split(",")):
            key, sep, value = part.partition("=")
            if not sep or not key:
                raise UsageError(f"label selector {part!r} is not key=value")
            out[key.strip()] = value.strip()
    return out


def node_name(text: str) -> str:
    """``h1`` or ``node/h1`` -> "h1"."""
    kind, sep, name = text.partition("/")
    if sep:
        if parse_kind(kind) is not Kind.NODE:
            raise UsageError(f"{text!r} is not a node")
        return name
    return text


def service_name(target: str) -> str:
    """``service/web`` -> "web" (rollouts are a Service's alone)."""
    kind, name = parse_ref(target)
    if kind is not Kind.SERVICE:
        raise UsageError(f"{target!r}: rollouts are for services, e.g. service/web")
    return name


def namespace_name(text: str) -> str:
    """The namespace of ``-n/--namespace`` (or ``$BROKER_NAMESPACE``): a lowercase DNS label."""
    if len(text) > 63 or not NAME_RE.match(text):
        raise UsageError(f"--namespace {text!r} is not a namespace name: a lowercase DNS label (a-z, 0-9 and '-', "
                         "starting and ending with a letter or digit, at most 63 characters)")
    return text


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, option: str = "--since") -> float:
    """``10m``, ``1h30m``, ``45s``, ``2d`` -> seconds (Go's duration units, and days)."""
    words = text.strip()
    parts = _DURATION.findall(words)
    if not words or "".join(n + u for n, u in parts) != words:
        raise UsageError(f"{option} {text!r} is not a duration: write e.g. 30s, 10m, 1h30m or 2d")
    return sum(float(n) * _SECONDS[u] for n, u in parts)
