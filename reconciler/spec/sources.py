"""The manifest files a command names, read as text: files, directories (their ``*.yaml``, ``*.yml``
and ``*.json``, recursive and sorted) and ``-`` (stdin), with what could not be read in its place.

Called by ``manifests.load_paths`` (which parses and validates what is read), by ``ops.sync`` (a
synced directory's files) and by the remote client, which sends the same
texts to a server (``brokerctl apply -f``, ``brokerctl sync DIR`` against ``brokerctl server``), so
both name the same files in the same order and read them the same way. Imports only the standard
library (and the errors): a remote command must start without the models.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NamedTuple, TextIO

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
FILES_TYPE = "application/vnd.brokerctl.files+json"  # the media type of ``sources_body`` (api.limits.FILES_TYPE)


class Source(NamedTuple):
    """One file read for a path the command was given (or why it could not be)."""

    given: str  # the path as the user gave it: a file, a directory or "-"
    name: str  # the file read, as messages name it ("<stdin>" for -); "" with a problem about ``given`` itself
    text: str | None  # None: not read (``problem`` says why)
    in_directory: bool = False  # read from a directory (an empty file there is skipped)
    problem: str = ""

    def to_json(self) -> dict:
        return {"given": self.given, "name": self.name, "text": self.text, "inDirectory": self.in_directory,
                "problem": self.problem}

    @classmethod
    def from_json(cls, obj: dict) -> "Source":
        return cls(str(obj["given"]), str(obj.get("name") or ""), obj.get("text"), bool(obj.get("inDirectory")),
                   str(obj.get("problem") or ""))


def iter_manifest_files(directory: Path) -> list[Path]:
    """``*.yaml``, ``*.yml`` and ``*.json`` files under ``directory``, recursive and sorted.

    Dotfiles and dot-directories (``.git``, editor swap dirs) are skipped below ``directory``.
    """
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(root) / f for f in files if not f.startswith(".") and f.lower().endswith(MANIFEST_SUFFIXES)]
    return sorted(found)


def read_sources(paths: list[str], stdin: TextIO | None = None) -> list[Source]:
    """Every file of ``paths`` in order, read as UTF-8 (a BOM dropped); a path that is missing, a
    directory without manifests and a file that cannot be read are ``Source``s with a ``problem``."""
    out: list[Source] = []
    for given in paths:
        if given == "-":
            out.append(Source(given, "<stdin>", (stdin or sys.stdin).read()))
            continue
        path = Path(given)
        if not path.exists():
            out.append(Source(given, "", None, problem=f"{given}: no such file or directory"))
            continue
        is_dir = path.is_dir()
        names = [str(f) for f in iter_manifest_files(path)] if is_dir else [given]
        if not names:
            out.append(Source(given, "", None, True, f"{given}: directory has no *.yaml, *.yml or *.json manifests"))
            continue
        out += [_read(given, name, is_dir) for name in names]
    return out


def sources_body(paths: list[str], stdin: TextIO | None = None) -> bytes:
    """The files of ``paths`` as a remote command sends them (a ``FILES_TYPE`` body): ``{"sources": [...]}``,
    one ``Source.to_json`` each, for the server to validate as the local CLI would have."""
    import json

    return json.dumps({"sources": [s.to_json() for s in read_sources(paths, stdin)]}).encode()


def _read(given: str, name: str, in_directory: bool) -> Source:
    try:
        return Source(given, name, Path(name).read_text(encoding="utf-8-sig"), in_directory)
    except (OSError, UnicodeDecodeError) as exc:
        return Source(given, name, None, in_directory, f"{name}: cannot read: {exc}")


# -- a synced directory (`brokerctl sync DIR`, here or through a server) --------------------------------


def directory_sources(source: str) -> list[Source]:
    """Each manifest file of the directory ``source`` (absolute) read on its own, named by its path, as
    a sync loads them (one file's problem holds back only that file)."""
    return [_read(str(path), str(path), False) for path in iter_manifest_files(Path(source))]
