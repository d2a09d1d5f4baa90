"""JSON Schemas of the manifest kinds, generated from ``models``.

Used by ``brokerctl schema KIND`` and by ``scripts/gen_schemas.py``, which writes ``schemas/*.json``
for editors (e.g. a ``# yaml-language-server: $schema=schemas/job.json`` modeline). A test fails
when the committed files drift from the models.
"""

from __future__ import annotations

import json

from . import models
from .secret import SECRET_KEY_RE

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_file(kind: models.Kind) -> str:
    return f"{kind.value.lower()}.json"


def schema_for(kind: models.Kind) -> dict:
    """The JSON Schema of ``kind``'s model, describing what ``manifests`` accepts."""
    schema = models.MODELS[kind].model_json_schema()
    _drop_field_titles(schema)
    defs = schema["$defs"]
    # The validators enforce these; pydantic cannot see inside a field_validator.
    dns = {"pattern": models.NAME_RE.pattern, "maxLength": 63}
    # The models turn `DEBUG: 1` and `tier: true` into strings, so the schema must not reject them.
    scalars = {"type": ["string", "number", "boolean"]}
    for meta in (defs[name] for name in ("Metadata", "ClusterMetadata") if name in defs):
        meta["properties"]["name"].update(dns)
        if "namespace" in meta["properties"]:
            meta["properties"]["namespace"]["anyOf"][0].update(dns)
        meta["properties"]["labels"]["additionalProperties"] = scalars
        # Reserved names and Docker's rules, as far as a pattern can say them.
        meta["properties"]["labels"]["propertyNames"] = {
            "not": {"pattern": f"^{models.RESERVED_LABEL_PREFIX.replace('.', '[.]')}"}}
    if "Template" in defs:
        template = defs["Template"]["properties"]
        template["env"]["additionalProperties"] = {"anyOf": [scalars, {"$ref": "#/$defs/EnvSecret"}]}
        template["env"]["propertyNames"] = {
            "pattern": "^[^=]+$", "not": {"pattern": f"^{models.RESERVED_ENV_PREFIX}"}}
        template["imagePullSecret"]["anyOf"][0].update(dns)
        defs["SecretKeyRef"]["properties"]["name"].update(dns)
        defs["SecretKeyRef"]["properties"]["key"]["pattern"] = SECRET_KEY_RE.pattern
        # Also Kubernetes' spelling, {name: NAME}.
        defs["EnvFrom"]["properties"]["secretRef"] = {
            "description": defs["EnvFrom"]["properties"]["secretRef"]["description"],
            "anyOf": [{"type": "string", **dns},
                      {"type": "object", "properties": {"name": {"type": "string", **dns}}, "required": ["name"],
                       "additionalProperties": False}]}
        # `user: 1000` without quotes is a number in YAML; the model reads it as text.
        template["user"]["anyOf"][0] = {"type": ["string", "integer"]}
    if "SecretSpec" in defs:
        secret = defs["SecretSpec"]["properties"]
        secret["stringData"]["additionalProperties"] = scalars
        secret["stringData"]["propertyNames"] = {"pattern": SECRET_KEY_RE.pattern,
                                                 "not": {"pattern": f"^{models.RESERVED_ENV_PREFIX}"}}
        for name in ("username", "password"):
            secret[name]["anyOf"][0] = scalars
    if "Mount" in defs:
        defs["Mount"]["properties"]["source"]["pattern"] = f"^/|{models.VOLUME_NAME_RE.pattern}"
    if "NamespaceSpec" in defs:
        defs["NamespaceSpec"]["properties"]["nodeSelector"]["additionalProperties"] = scalars
        # `- 1001` without quotes is a number in YAML; the model reads a user id as text.
        defs["RunAs"]["properties"]["users"]["anyOf"][0]["items"] = {"type": ["string", "integer"]}
        defs["RunAs"]["properties"]["default"]["anyOf"][0] = {"type": ["string", "integer"]}
    return {
        "$schema": DIALECT,
        "$id": schema_file(kind),  # relative: resolves against wherever the file is served from
        **schema,
        "title": f"brokerctl {kind.value} ({models.API_VERSION})",
        "description": f"A brokerctl {kind.value} manifest: apiVersion {models.API_VERSION}, kind {kind.value}.",
    }


def render_schema(kind: models.Kind) -> str:
    """``schema_for(kind)`` as stable JSON text: indent 2, sorted keys, trailing newline."""
    return json.dumps(schema_for(kind), indent=2, sort_keys=True) + "\n"


def _drop_field_titles(node) -> None:
    # pydantic titles every field ("Executiontype"); the property names say it better.
    if isinstance(node, dict):
        for prop in node.get("properties", {}).values():
            prop.pop("title", None)
        for value in node.values():
            _drop_field_titles(value)
    elif isinstance(node, list):
        for value in node:
            _drop_field_titles(value)
