"""Manifest models: the desired-state vocabulary of brokerctl (Node, Job, Service, Namespace, Secret).

Pydantic v2 models with ``extra="forbid"`` and camelCase field names as they appear in YAML. The
kinds' parts live in ``fields`` (shared field types and parsers), ``node`` (a Node's spec),
``workload`` (what Jobs and Services run), ``namespace`` (a Namespace's spec) and ``secret`` (a Secret's,
as written and as sealed); this module assembles the kinds and names their parts for callers. A
stored Secret reads back as a ``SealedSecret`` (``STORED_MODELS``): the store keeps no value in a
spec. Called by ``manifests`` (to validate documents), the store (to round-trip specs) and the
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

from ..kinds import DEFAULT_NAMESPACE, JobPhase, Kind, TaskPhase, scope
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
    ClusterMetadata,
    Metadata,
    PortBinding,
    SpecModel,
    dns_label,
    parse_duration,
    parse_memory,
    parse_port,
    ports_clash,
)
from .namespace import Budget, NamespaceSpec, Quota, RunAs, is_root, user_refusal
from .secret import SealedSecretSpec, SealedValue, SecretSpec
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
    EnvFrom,
    EnvSecret,
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
    "ClusterMetadata", "DEFAULT_NAMESPACE", "dns_label", "parse_duration", "Budget", "NamespaceSpec", "Quota", "RunAs",
    "is_root", "user_refusal", "Namespace", "parse_memory", "parse_port", "ports_clash", "TLS", "AllowedMount",
    "MountRule", "NodeSpec", "guarded_network",
    "mount_rules", "path_below", "Backoff", "HealthCheck", "JobSpec", "Mount", "Placement", "Resources", "Restart",
    "ServiceSpec", "Template", "Update", "template_hash", "JobPhase", "Kind", "TaskPhase", "Node", "Job", "Service",
    "Resource", "MODELS", "Secret", "SealedSecret", "SecretSpec", "SealedSecretSpec", "SealedValue", "EnvFrom",
    "EnvSecret", "STORED_MODELS",
]


class _Resource(SpecModel):
    apiVersion: Literal["broker/v1"]
    metadata: ClusterMetadata

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.metadata.name}"

    @property
    def namespace(self) -> str:
        """The namespace it is stored in: '' for a cluster-scoped kind; ``default`` when a namespaced
        one names none and was not loaded with another default (see ``in_namespace``)."""
        return scope(self.kind, getattr(self.metadata, "namespace", None))

    @property
    def key(self) -> tuple[Kind, str, str]:
        """Its identity in the store: (kind, namespace, name)."""
        return Kind(self.kind), self.namespace, self.metadata.name

    def in_namespace(self, namespace: str) -> "_Resource":
        """This resource with ``namespace`` filled in when it is namespaced and names none itself (a
        document's own ``metadata.namespace`` wins, as with kubectl's ``-n``)."""
        if not Kind(self.kind).namespaced or self.metadata.namespace is not None:
            return self
        return self.model_copy(update={"metadata": self.metadata.model_copy(update={"namespace": namespace})})


class Node(_Resource):
    kind: Literal["Node"]
    spec: NodeSpec


class Job(_Resource):
    kind: Literal["Job"]
    metadata: Metadata
    spec: JobSpec


class Service(_Resource):
    kind: Literal["Service"]
    metadata: Metadata
    spec: ServiceSpec


class Namespace(_Resource):
    kind: Literal["Namespace"]
    spec: NamespaceSpec = Field(default_factory=NamespaceSpec)


class Secret(_Resource):
    kind: Literal["Secret"]
    metadata: Metadata
    spec: SecretSpec


class SealedSecret(_Resource):
    """A Secret as the store keeps it: sizes and digests of its values, the values encrypted beside."""

    kind: Literal["Secret"]
    metadata: Metadata
    spec: SealedSecretSpec


Resource = Annotated[Union[Node, Job, Service, Namespace, Secret], Field(discriminator="kind")]


MODELS: dict[Kind, type[_Resource]] = {Kind.NODE: Node, Kind.JOB: Job, Kind.SERVICE: Service,
                                       Kind.NAMESPACE: Namespace, Kind.SECRET: Secret}

# What a stored spec is read back as (``ResourceRecord.model``): a Secret's holds no value.
STORED_MODELS: dict[Kind, type[_Resource]] = {**MODELS, Kind.SECRET: SealedSecret}
