"""What a task's container is made of: image, command, environment, labels, mounts, limits, health check. Pure.

Called by ``placement`` for every Start it issues (and for the mounts a task asks a node to allow);
``docker.host`` creates the container from the ``ContainerSpec``. The labels let the world be
rebuilt from observation alone, and the mark (``records.container_mark``) binds the container to its
task and node. A task's mounts are its template's and its namespace's (``task_mounts``); a task that
names no user runs as its namespace's ``runAs.default`` (``default_user``). Env values
taken from Secrets are named, not given (``ContainerSpec.secrets``): the runtime resolves them.
"""

from __future__ import annotations

import posixpath

from ..records import (
    LABEL_ATTEMPT, LABEL_INDEX, LABEL_MARK, LABEL_NAMESPACE, LABEL_OWNER, LABEL_STORE, LABEL_TASK, LABEL_TEMPLATE,
    ContainerSpec, ResourceRecord, TaskRecord, container_mark, container_name,
)
from ..spec.models import Mount, NamespaceSpec, Template
from .secrets import secret_refs


def task_mounts(template: Template, namespace: NamespaceSpec | None) -> list[Mount]:
    """The template's mounts and its namespace's. The namespace's are the operator's (a team's home,
    say), so one of them replaces a template mount on the same target rather than clash with it."""
    if namespace is None or not namespace.mounts:
        return list(template.mounts)
    taken = {posixpath.normpath(m.target) for m in namespace.mounts}
    return [m for m in template.mounts if posixpath.normpath(m.target) not in taken] + list(namespace.mounts)


def container_spec(t: TaskRecord, res: ResourceRecord, store_id: str, mark_key: str,
                   node: ResourceRecord, namespace: NamespaceSpec | None = None) -> ContainerSpec:
    """What ``Host.start`` creates for task ``t`` on ``node`` (the node it is placed on); ``namespace``:
    the spec of the task's Namespace."""
    tpl = res.model.spec.template
    env = {
        **{k: v for k, v in tpl.env.items() if isinstance(v, str)},  # the others name a Secret's key
        "BROKER_TASK_ID": t.id,
        "BROKER_TASK_INDEX": str(t.index),
        "BROKER_ATTEMPT": str(t.attempt),
        "BROKER_OWNER": t.owner,
    }
    labels = {
        **res.labels,
        LABEL_STORE: store_id,
        LABEL_OWNER: t.owner,
        LABEL_NAMESPACE: t.namespace,
        LABEL_TASK: t.id,
        LABEL_INDEX: str(t.index),
        LABEL_ATTEMPT: str(t.attempt),
        LABEL_TEMPLATE: t.template_hash,
        LABEL_MARK: container_mark(mark_key, store_id, t.id, node.name),
    }
    return ContainerSpec(
        name=container_name(store_id, t.id),
        image=tpl.image,
        command=tpl.argv(),
        env=env,
        labels=labels,
        working_dir=tpl.workingDir,
        user=tpl.user or default_user(namespace),
        mounts=tuple((m.source, m.target, m.readOnly) for m in task_mounts(tpl, namespace)),
        nano_cpus=int(tpl.resources.cpus * 1e9) if tpl.resources.cpus else None,
        mem_limit=tpl.resources.memory_bytes(),
        ports=tuple(tpl.port_bindings()),
        network=tpl.network,
        allowed_volumes=tuple(node.model.spec.allowedVolumes),
        healthcheck=_healthcheck(getattr(res.model.spec, "healthCheck", None)),
        secrets=secret_refs(tpl, t.namespace),
        non_root=namespace is not None and namespace.runAs is not None and not namespace.runAs.allowRoot,
    )


def default_user(namespace: NamespaceSpec | None) -> str | None:
    """The user of a task whose template names none: its namespace's ``runAs.default`` (None: the
    image's user, which ``Host.start`` refuses where the namespace forbids root and it is root)."""
    return namespace.runAs.default if namespace is not None and namespace.runAs is not None else None


def _healthcheck(health) -> dict | None:
    """A Service's ``healthCheck`` in Docker's shape (durations in nanoseconds)."""
    if health is None:
        return None
    return {
        "test": health.docker_test(), "interval": _ns(health.intervalSeconds),
        "timeout": _ns(health.timeoutSeconds), "retries": health.retries,
        "start_period": _ns(health.startPeriodSeconds),
    }


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)
