"""The names users type for what a verb acts on: kinds, ``KIND/NAME``, label selectors, nodes, services,
namespaces.

Called by the CLI (arguments) and by the verbs that take such names from manifests; an HTTP API
parses its label selectors here too. Each bad name is a ``UsageError`` saying what to type instead.
"""

from __future__ import annotations

from ..errors import UsageError
from ..kinds import NAME_RE, Kind


def parse_kind(text: str) -> Kind:
    """``job``, ``jobs`` or ``Job`` -> Kind.JOB."""
    try:
        return Kind.parse(text)
    except ValueError:
        raise UsageError(f"unknown kind {text!r}; use node, job, service or namespace") from None


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
