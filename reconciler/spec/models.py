"""Manifest models: the desired-state vocabulary of brokerctl (Node, Job, Service).

Pydantic v2 models with ``extra="forbid"`` and camelCase field names as they appear in YAML. The
kinds' parts live in ``fields`` (shared field types and parsers), ``node`` (a Node's spec) and
``workload`` (what Jobs and Services run); this module assembles the kinds and names their parts for
callers. Called by ``manifests`` (to validate documents), the store (to round-trip specs) and the
engine, which reads specs through these types. JSON Schemas in ``schemas/`` are generated from here
(``brokerctl schema KIND``).

Types are strict: a boolean or a string is never read as a number, nor a string as a boolean
(only env and label values, and ports, are deliberately turned into text). Checks that guard
what a manifest may ask for (the field caps, reserved label and env names, image references,
Docker's limits) run at apply only: specs read back from the store are validated with
``context=STORED`` and skip them, so a record written before a check existed still loads and one
stale resource cannot fail every controller pass.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from ..kinds import JobPhase, Kind, TaskPhase
from .fields import (
    API_VERSION,
    DEFAULT_EXECUTION_TYPE,
    MAX_COMPLETIONS,
    MAX_PARALLELISM,
    MAX_REPLICAS,
    MIN_MEMORY_BYTES,
    NAME_RE,
    RESERVED_ENV_PREFIX,
    RESERVED_LABEL_PREFIX,
    STORED,
    VOLUME_NAME_RE,
    Metadata,
    PortBinding,
    SpecModel,
    parse_memory,
    parse_port,
    ports_clash,
)
from .node import (
    TLS,
    AllowedMount,
    MountRule,
    NodeSpec,
    guarded_network,
    mount_rules,
    path_below,
)
from .workload import (
    Backoff,
    HealthCheck,
    JobSpec,
    Mount,
    Placement,
    Resources,
    Restart,
    ServiceSpec,
    Template,
    Update,
    template_hash,
)

# The kinds' parts, for callers that name them through this module (the engine, the store, the CLI).
__all__ = [
    "API_VERSION", "DEFAULT_EXECUTION_TYPE", "MAX_COMPLETIONS", "MAX_PARALLELISM", "MAX_REPLICAS", "MIN_MEMORY_BYTES",
    "NAME_RE", "RESERVED_ENV_PREFIX", "RESERVED_LABEL_PREFIX", "STORED", "VOLUME_NAME_RE", "Metadata", "PortBinding",
    "parse_memory", "parse_port", "ports_clash", "TLS", "AllowedMount", "MountRule", "NodeSpec", "guarded_network",
    "mount_rules", "path_below", "Backoff", "HealthCheck", "JobSpec", "Mount", "Placement", "Resources", "Restart",
    "ServiceSpec", "Template", "Update", "template_hash", "JobPhase", "Kind", "TaskPhase", "Node", "Job", "Service",
    "Resource", "MODELS",
]


class _Resource(SpecModel):
    apiVersion: Literal["broker/v1"]
    metadata: Metadata

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.metadata.name}"


class Node(_Resource):
    kind: Literal["Node"]
    spec: NodeSpec


class Job(_Resource):
    kind: Literal["Job"]
    spec: JobSpec


class Service(_Resource):
    kind: Literal["Service"]
    spec: ServiceSpec


Resource = Annotated[Union[Node, Job, Service], Field(discriminator="kind")]


MODELS: dict[Kind, type[_Resource]] = {Kind.NODE: Node, Kind.JOB: Job, Kind.SERVICE: Service}
