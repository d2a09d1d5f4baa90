"""Which Secrets exist and whether a task's template can have what it names from them. Pure.

Called by ``plan`` (``secret_index`` over the stored resources) and ``placement``, which keeps a task
Pending, with the reason this module gives, while a Secret or key it names is missing or the
controller cannot decrypt the store's Secrets; ``containers`` names the Secrets in the
``ContainerSpec`` (``secret_refs``). Only names, key names and registry servers are seen here: a
Secret's values are decrypted by the runtime just before a start, never by the engine.
"""

from __future__ import annotations

from typing import NamedTuple

from ..kinds import Kind
from ..records import ResourceRecord, SecretRefs
from ..spec.fields import image_registry
from ..spec.models import EnvSecret, Template
from ..spec.secret import normal_registry


class SecretInfo(NamedTuple):
    """What the planner knows of one Secret: its type, its keys, a registry Secret's server."""

    type: str
    keys: frozenset[str]
    server: str | None


SecretIndex = dict[tuple[str, str], SecretInfo]  # (namespace, name) -> what it holds


def secret_index(resources: list[ResourceRecord]) -> SecretIndex:
    """The Secrets among ``resources`` (read from their sealed specs: names only, no value)."""
    out: SecretIndex = {}
    for r in resources:
        if r.kind is Kind.SECRET and r.deleted_at is None:
            server = r.spec.get("server")
            out[(r.namespace, r.name)] = SecretInfo(r.spec.get("type", "opaque"), frozenset(r.spec.get("data", {})),
                                                    normal_registry(server) if server else None)
    return out


def secret_refs(template: Template, namespace: str) -> SecretRefs | None:
    """The Secrets ``template`` names, for the ``ContainerSpec`` (None when it names none)."""
    key_refs = tuple((var, v.secretKeyRef.name, v.secretKeyRef.key) for var, v in template.env.items()
                     if isinstance(v, EnvSecret))
    env_from = tuple(f.secretRef for f in template.envFrom)
    if not key_refs and not env_from and not template.imagePullSecret:
        return None
    return SecretRefs(namespace, env_from, key_refs, template.imagePullSecret)


def secret_problem(template: Template, namespace: str, index: SecretIndex, unreadable: str | None = None) -> str | None:
    """Why a task of ``template`` in ``namespace`` cannot have its Secrets now, naming each and the fix;
    None when it names none or has all it names. ``unreadable``: why this controller cannot decrypt
    the store's Secrets (its key file is missing or another), which holds every task that names one."""
    refs = secret_refs(template, namespace)
    if refs is None:
        return None
    if unreadable:
        return f"cannot read Secrets: {unreadable}"
    problems = []
    for name in refs.env_from:
        if (namespace, name) not in index:
            problems.append(f"{_missing(namespace, name)} (envFrom)")
    for var, name, key in refs.key_refs:
        info = index.get((namespace, name))
        if info is None:
            problems.append(f"{_missing(namespace, name)} (env {var})")
        elif key not in info.keys:
            keys = ", ".join(sorted(info.keys)) or "none"
            problems.append(f"secret {_ref(namespace, name)} has no key {key!r} (env {var}; its keys: {keys})")
    if refs.pull:
        problems += _pull_problems(template.image, namespace, refs.pull, index.get((namespace, refs.pull)))
    if not problems:
        return None
    return "; ".join(dict.fromkeys(problems)) + "; apply the Secret, or change the template"


def _pull_problems(image: str, namespace: str, name: str, info: SecretInfo | None) -> list[str]:
    if info is None:
        return [f"{_missing(namespace, name)} (imagePullSecret)"]
    if info.type != "registry":
        return [f"secret {_ref(namespace, name)} is of type {info.type}, not registry (imagePullSecret)"]
    wanted = image_registry(image)
    if info.server != wanted:
        # Its credentials are for another registry: they are not sent where the image would be pulled from.
        return [f"secret {_ref(namespace, name)} is for registry {info.server}, but image {image!r} is on "
                f"{wanted} (imagePullSecret)"]
    return []


def _ref(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def _missing(namespace: str, name: str) -> str:
    return f"secret {_ref(namespace, name)} not found"
