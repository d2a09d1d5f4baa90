"""Manifest loading: YAML/JSON text -> validated Node/Job/Service/Namespace/Secret models.

Called by the CLI's ``apply``, ``delete`` and ``diff`` (and later by a GitOps watcher) to turn
files, directories or stdin into ``Loaded`` resources. No store access, no I/O beyond reading
the named files. Every problem in every file is collected and raised as one ``ManifestError``
whose lines read ``<file>: document <n> (<Kind>/<name>), line <l>: <field.path>: <message>``;
nothing is returned when anything is wrong. A Job or Service that names no ``metadata.namespace``
is put in the caller's ``namespace`` (``-n``; ``default`` unless given), so two documents are the
same resource only when kind, namespace and name all match. What ``brokerctl get -o yaml|json`` prints loads too:
a document may be a list of resources, and the read-only fields (``status``, ``metadata.uid``,
``generation``, ``createdAt``, ``updatedAt``, ``deletedAt``, ``createdBy``, ``updatedBy``) are dropped, as
kubectl does.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, get_args

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ManifestError
from ..kinds import object_ref
from . import models, yamlcore
# Callers name these here too (the runtime's watcher, GitOps, tests).
from .sources import MANIFEST_SUFFIXES, Source, iter_manifest_files, read_sources  # noqa: F401

EDITOR_TEMP = ("~", ".swp", ".swx", ".tmp", ".part", ".bak")  # an editor's save in progress, not a manifest
_KINDS = [k.value for k in models.Kind]
_MERGE, _NULL = "tag:yaml.org,2002:merge", "tag:yaml.org,2002:null"


# The YAML 1.2 core-schema loader (see yamlcore); the names are kept for the tests.
_core_loader = yamlcore.core_loader
_Loader = yamlcore.Loader


@dataclass(frozen=True)
class Loaded:
    resource: models.Node | models.Job | models.Service | models.Namespace | models.Secret
    source: str  # file path as given, or "<stdin>"
    document: int  # 1-based document number within the source
    line: int  # line of the document start


def load_text(text: str, source: str = "<string>", namespace: str = models.DEFAULT_NAMESPACE) -> list[Loaded]:
    """Parse and validate every document of ``text``; raise ManifestError listing all problems.
    ``namespace``: where Jobs and Services that name none go."""
    return _finish(*_parse(text, source), namespace)


def load_paths(paths: list[str], stdin: TextIO | None = None, *, allow_empty: bool = False,
               namespace: str = models.DEFAULT_NAMESPACE) -> list[Loaded]:
    """Load files, directories (see ``iter_manifest_files``) and ``-`` (stdin) as one set.

    A file (or stdin) without a document is an error, and so is a directory whose files hold none;
    inside a directory an empty file is skipped. ``allow_empty``: a file without documents is
    fine too (a synced directory loads its files one by one). ``namespace``: where Jobs and
    Services that name none go (a valid namespace name; the caller checks it).
    """
    return load_sources(read_sources(paths, stdin), allow_empty=allow_empty, namespace=namespace)


def load_sources(sources: list[Source], *, allow_empty: bool = False,
                 namespace: str = models.DEFAULT_NAMESPACE) -> list[Loaded]:
    """``load_paths`` of files already read (``sources.read_sources``): by this process, or by a remote
    client that sent their text (the server then names the files as the client's command line did)."""
    loaded, problems = [], []
    for given, group in _runs(sources):
        in_dir = len(loaded), len(problems)
        for source in group:
            if source.text is None:
                problems.append(source.problem)
                continue
            found, errs = _parse(source.text, source.name, empty_ok=allow_empty or source.in_directory)
            loaded += found
            problems += errs
        if not allow_empty and group[0].in_directory and group[0].text is not None \
                and (len(loaded), len(problems)) == in_dir:
            problems.append(f"{given}: no documents in its *.yaml, *.yml or *.json files")
    return _finish(loaded, problems, namespace)


def _runs(sources: list[Source]) -> list[tuple[str, list[Source]]]:
    """The sources in runs, one a path given (a directory's files together), in order."""
    runs: list[tuple[str, list[Source]]] = []
    for source in sources:
        if runs and source.in_directory and runs[-1][1][0].in_directory and runs[-1][0] == source.given:
            runs[-1][1].append(source)
        else:
            runs.append((source.given, [source]))
    return runs


def _finish(loaded: list[tuple[Loaded, int]], problems: list[str], namespace: str) -> list[Loaded]:
    seen: dict[tuple, tuple[Loaded, int]] = {}
    out = []
    for item, name_line in loaded:
        res = item.resource.in_namespace(namespace)
        item = Loaded(res, item.source, item.document, item.line)
        if res.key in seen:
            first, first_line = seen[res.key]
            problems.append(f"{_where(item.source, item.document, res.kind, res.name, name_line)}metadata.name: "
                            f"duplicate resource {object_ref(*res.key, lower=False)}; first defined in {first.source}: "
                            f"document {first.document}, line {first_line}")
        seen.setdefault(res.key, (item, name_line))
        out.append(item)
    if problems:
        raise ManifestError(problems)
    return out


def _where(source: str, doc: int, kind: Any, name: Any, line: int) -> str:
    what = ""
    if kind in _KINDS:
        what = f" ({kind}/{name})" if isinstance(name, str) else f" ({kind})"
    return f"{source}: document {doc}{what}, line {line}: "


def _parse(text: str, source: str, empty_ok: bool = False) -> tuple[list[tuple[Loaded, int]], list[str]]:
    """Documents of one source -> ([(Loaded, line of metadata.name)], problems).

    A document may also be a list of resources, as `brokerctl get KIND -o yaml|json` prints them.
    """
    if "\t" in text:  # YAML forbids tab indentation; in valid JSON tabs can only be whitespace
        with contextlib.suppress(ValueError):
            json.loads(text)
            text = text.replace("\t", " ")
    loaded, problems, doc, resources, loader = [], [], 0, 0, _Loader(text)
    try:
        while loader.check_node():
            node, doc = loader.get_node(), doc + 1
            if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
                continue  # empty document, e.g. after a trailing `---`
            listed = isinstance(node, yaml.SequenceNode)
            nodes = list(node.value) if listed else [node]
            # Before construction, which merges `<<` keys into the mapping nodes.
            dupes = [_duplicate_keys(n, (), set()) for n in nodes]
            try:
                data = loader.construct_document(node)
            except yaml.MarkedYAMLError as exc:  # e.g. an unknown `!!tag`; the stream itself is fine
                problems.append(_yaml_problem(source, exc, text))
                loader.constructed_objects, loader.recursive_objects, loader.state_generators = {}, {}, []
                continue
            for item, item_node, item_dupes in zip(data if listed else [data], nodes, dupes):
                resources += 1
                result = _document(item, item_node, item_dupes, source, doc, listed)
                if isinstance(result, list):
                    problems += result
                else:
                    loaded.append(result)
    except yaml.MarkedYAMLError as exc:
        problems.append(_yaml_problem(source, exc, text))
    finally:
        loader.dispose()
    if not resources and not problems and not empty_ok:
        problems.append(f"{source}: no documents")
    return loaded, problems


def _document(data: Any, node, dupes: list, source: str, doc: int, listed: bool) -> tuple[Loaded, int] | list[str]:
    """One resource document (or item of a top-level list) -> (Loaded, line of metadata.name), or problems."""
    kind, name = _get(data, "kind"), _get(data, "metadata", "name")
    if dupes:  # the constructed value silently kept only the last one, so don't validate it
        return [_where(source, doc, kind, name, line) + msg for line, msg in dupes]
    if not isinstance(data, dict):
        what = "an item of a top-level list" if listed else "a document"
        return [f"{source}: document {doc}, line {node.start_mark.line + 1}: {what} must be "
                f"a mapping with apiVersion, kind, metadata and spec, not {_a(data)}"]
    result = _validate(_without_read_only(data), node, source, doc)
    if isinstance(result, list):
        return result
    return Loaded(result, source, doc, node.start_mark.line + 1), _locate(node, ("metadata", "name"))


# What `brokerctl get -o yaml|json` prints besides the manifest: dropped on apply, as kubectl does.
READ_ONLY_METADATA = ("uid", "generation", "createdAt", "updatedAt", "deletedAt", "createdBy", "updatedBy")


def _without_read_only(data: dict) -> dict:
    data = {k: v for k, v in data.items() if k != "status"}
    if isinstance(data.get("metadata"), dict):
        data["metadata"] = {k: v for k, v in data["metadata"].items() if k not in READ_ONLY_METADATA}
    return data


def _yaml_problem(source: str, exc: yaml.MarkedYAMLError, text: str = "") -> str:
    mark = exc.problem_mark or exc.context_mark
    detail = exc.problem or exc.context
    if exc.problem and exc.context and exc.context_mark:
        detail += f" ({exc.context} at line {exc.context_mark.line + 1})"
    lines = text.splitlines()
    if mark.line < len(lines) and lines[mark.line][mark.column:mark.column + 1] == "\t":
        detail = "tabs are not allowed in YAML indentation; indent with spaces"
    return f"{source}: line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {detail}"


def _duplicate_keys(node, path: tuple, visited: set) -> list[tuple[int, str]]:
    """(line, message) per repeated key; checked on nodes because a dict keeps only the last value."""
    if id(node) in visited:  # aliases share nodes and may even contain themselves
        return []
    visited.add(id(node))
    out, first, children = [], {}, []
    if isinstance(node, yaml.SequenceNode):
        children = [(path + (i,), item) for i, item in enumerate(node.value)]
    for key, value in node.value if isinstance(node, yaml.MappingNode) else []:
        if key.tag == _MERGE or not isinstance(key, yaml.ScalarNode):
            children.append((path, value))
            continue
        line = key.start_mark.line + 1
        if (key.tag, key.value) in first:
            out.append((line, f"{_dotted(path + (key.value,))}: duplicate key "
                              f"(first on line {first[key.tag, key.value]}, again on line {line})"))
        first.setdefault((key.tag, key.value), line)
        children.append((path + (key.value,), value))
    for child_path, child in children:
        out += _duplicate_keys(child, child_path, visited)
    return out


def _validate(data: dict, node, source: str, doc: int) -> BaseModel | list[str]:
    kind, name = data.get("kind"), _get(data, "metadata", "name")
    if kind not in _KINDS:
        problem = "missing required field" if kind is None else f"unknown kind {kind!r}"
        return [f"{_where(source, doc, None, None, _locate(node, ('kind',)))}kind: {problem}; "
                f"expected one of {', '.join(_KINDS)}"]
    model = models.MODELS[models.Kind(kind)]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        located = sorted((_locate(node, loc), _dotted(loc), msg) for loc, msg in _messages(model, data, exc.errors()))
        return [_where(source, doc, kind, name, line) + (f"{path}: {msg}" if path else msg)
                for line, path, msg in located]


def _messages(model: type[BaseModel], data: dict, errors: list[dict]) -> list[tuple[tuple, str]]:
    """Pydantic errors -> (loc, message), with smart-union noise collapsed into one line per field."""
    out, unions = [], {}
    for err in errors:
        loc, rest = _split_loc(data, tuple(err["loc"]))[:2]
        if rest and rest[0] != "[key]" and isinstance(rest[0], str) and (err["type"] != "missing" or len(rest) > 1):
            unions.setdefault(loc, {}).setdefault(rest[0], []).append((rest[1:], err))  # rest[0]: union member
        else:
            out.append(_message(model, loc + rest, err))
    for loc, branches in unions.items():
        # Input that got past a member's outer type (a list, for list[str]) was meant as that member.
        deep = next((errs for errs in branches.values() if any(r for r, _ in errs)), None)
        if deep:
            out += [_message(model, loc + r, err) for r, err in deep]
        else:
            wanted = " or ".join(_ARTICLED.get(t.replace(" ", ""), t) for t in branches)
            out.append((loc, f"expected {wanted}, got {_a(_get(data, *loc))}"))
    return out


def _message(model: type[BaseModel], loc: tuple, err: dict) -> tuple[tuple, str]:
    kind = err["type"]
    if loc[-1:] == ("[key]",):
        return loc[:-1], f"invalid key: {_plain(err['msg'])}"
    if kind == "missing":
        return loc, "missing required field"
    if kind == "extra_forbidden" and loc[-2:] == ("metadata", "namespace"):
        return loc, (f"a {model.__name__} is cluster-scoped: it belongs to no namespace; remove "
                     "metadata.namespace")
    if kind == "extra_forbidden":
        fields = list(_model_at(model, loc[:-1]).model_fields)
        close = difflib.get_close_matches(str(loc[-1]), fields, n=1)
        return loc, (f"unknown field (did you mean '{close[0]}'?)" if close else
                     f"unknown field; expected one of {', '.join(fields)}")
    if kind in _WRONG_TYPE:
        return loc, f"expected {_WRONG_TYPE[kind]}, got {_a(err['input'])}"
    if loc == ("apiVersion",):
        return loc, f"unsupported apiVersion {err['input']!r}; expected '{models.API_VERSION}'"
    return loc, _plain(err["msg"])


def _plain(msg: str) -> str:
    """A validator's own message, without pydantic's prefix."""
    return re.sub(r"^(Value error|Assertion failed), ", "", msg)


def _split_loc(data: Any, loc: tuple) -> tuple[tuple, tuple, Any]:
    """(part of ``loc`` present in ``data``, the rest: a missing key or a union member, value reached)."""
    for i, el in enumerate(loc):
        if isinstance(data, dict) and el in data or (
            isinstance(data, list) and isinstance(el, int) and -1 < el < len(data)
        ):
            data = data[el]
        else:
            return loc[:i], loc[i:], data
    return loc, (), data


def _get(data: Any, *path: str | int) -> Any:
    _, rest, value = _split_loc(data, path)
    return None if rest else value


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel]:
    """The model whose fields apply at ``loc`` (list indices and dict keys keep the element model)."""
    def inner(annotation):
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        return next(filter(None, map(inner, get_args(annotation))), None)

    for el in loc:
        if isinstance(el, str) and el in model.model_fields:
            model = inner(model.model_fields[el].annotation) or model
    return model


def _locate(node, loc: tuple) -> int:
    """Line of the deepest node on ``loc``; a mapping entry reports its key's line (`template:`)."""
    line = node.start_mark.line + 1
    for el in loc:
        if isinstance(node, yaml.MappingNode):
            # The last match wins: construction put merged (`<<`) pairs before the mapping's own.
            match = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(el)]
            if not match:
                break
            key, node = match[-1]
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(el, int) and -1 < el < len(node.value):
            node = node.value[el]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _dotted(loc: tuple) -> str:
    return ".".join(map(str, loc))


def _a(value: Any) -> str:
    return _ARTICLED.get(type(value).__name__, type(value).__name__)


_WRONG_TYPE = {"model_type": "a mapping", "dict_type": "a mapping", "list_type": "a list", "string_type": "a string",
               "int_type": "an integer", "float_type": "a number", "bool_type": "a boolean"}
# Python type names and pydantic's union member tags, as a message says them.
_ARTICLED = {"bool": "a boolean", "int": "an integer", "float": "a number", "str": "a string", "dict": "a mapping",
             "list": "a list", "NoneType": "null", "list[str]": "a list of strings",
             "AllowedMount": "a mapping {path, subpaths, readOnly}",
             "EnvSecret": "a mapping {secretKeyRef: {name, key}}"}
