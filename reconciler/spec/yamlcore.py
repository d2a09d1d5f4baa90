"""YAML 1.2 core-schema scalars, both ways: reading manifests and writing ``-o yaml``.

PyYAML follows YAML 1.1, where `no`, `on` and `22:22` are a boolean and a number. ``manifests``
reads with ``Loader`` (plain `no` stays a string); ``render`` writes with ``Dumper``, which quotes
every string that a YAML 1.1 or a YAML 1.2 reader would take for something else (`0o17`, `1e3`),
so that what `get -o yaml` prints applies back unchanged. Only PyYAML here; no I/O.
"""

from __future__ import annotations

import re

import yaml

# (tag, regex, first characters): YAML 1.2 core schema, plus `<<` merge keys (common in manifests).
CORE_RESOLVERS = [
    ("bool", r"(?i:true|false)$", "tTfF"),
    ("int", r"[-+]?[0-9]+$|0o[0-7]+$|0x[0-9a-fA-F]+$", "-+0123456789"),
    ("float", r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$|[-+]?\.(inf|Inf|INF)$|\.(nan|NaN|NAN)$",
     "-+.0123456789"),
    ("null", r"(null|Null|NULL|~|)$", ["n", "N", "~", ""]),
    ("merge", r"<<$", "<"),
]


def core_loader(base: type) -> type:
    """A ``base`` subclass resolving plain scalars like YAML 1.2 core: `no`, `on`, `22:22` stay strings."""

    class Loader(base):
        # Our own dict: add_implicit_resolver would copy YAML 1.1's rules, and mutating the
        # inherited one would change yaml.SafeLoader for every other user in the process.
        yaml_implicit_resolvers: dict = {}

        def construct_yaml_int(self, node):  # PyYAML's reads `017` as octal and `1:30` as base 60
            text = self.construct_scalar(node)
            digits, base = text.lstrip("+-"), {"0x": 16, "0o": 8}.get(text[:2], 10)
            return (-1 if text[0] == "-" else 1) * int(digits[2:] if base != 10 else digits, base)

    Loader.add_constructor("tag:yaml.org,2002:int", Loader.construct_yaml_int)
    for tag, regex, first in CORE_RESOLVERS:
        Loader.add_implicit_resolver(f"tag:yaml.org,2002:{tag}", re.compile(regex), list(first))
    return Loader


Loader = core_loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader))


class Dumper(yaml.SafeDumper):
    """SafeDumper that also quotes strings the YAML 1.2 core schema would not read as strings."""


for _tag, _regex, _first in CORE_RESOLVERS:  # added to (a copy of) YAML 1.1's rules, not instead of them
    Dumper.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_regex), list(_first))
