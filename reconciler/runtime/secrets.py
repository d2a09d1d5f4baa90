"""Put a Secret's values into a container's spec, just before ``Host.start``.

Called by ``act`` for every Start whose ``ContainerSpec`` names Secrets (``secrets``): the planner
only names them, so plans, events and logs hold no value; the values are decrypted here, in the
controller process, by the store (``Store.secret_values``), and live only in the spec handed to
Docker. Variables from ``envFrom`` come first (a later Secret over an earlier one), the template's
own ``env`` over them, and brokerctl's ``BROKER_*`` over everything; ``imagePullSecret`` becomes
the Docker SDK's ``auth_config`` for the pull.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import BrokerError
from ..records import ContainerSpec


class Unresolved(Exception):
    """A Secret the spec names cannot be had now (deleted since the plan, a key gone, or no key to
    decrypt it): the task waits Pending with ``message``, which names it and holds no value."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def resolve(store, spec: ContainerSpec) -> ContainerSpec:
    """``spec`` with the values of the Secrets it names in ``env`` and ``pull_auth``."""
    refs = spec.secrets
    if refs is None:
        return spec
    found = {}

    def values(name: str, why: str):
        if name not in found:
            try:
                found[name] = store.secret_values(refs.namespace, name)
            except BrokerError as exc:
                raise Unresolved(f"{why}: {exc}") from None
        return found[name]

    env: dict[str, str] = {}
    for name in refs.env_from:
        env.update(values(name, "envFrom").values)
    env.update({k: v for k, v in spec.env.items() if not k.startswith("BROKER_")})
    for var, name, key in refs.key_refs:
        secret = values(name, f"env {var}")
        if key not in secret.values:
            raise Unresolved(f"env {var}: secret {refs.namespace}/{name} has no key {key!r}")
        env[var] = secret.values[key]
    env.update({k: v for k, v in spec.env.items() if k.startswith("BROKER_")})
    auth = None
    if refs.pull:
        login = values(refs.pull, "imagePullSecret")
        if login.type != "registry":
            raise Unresolved(f"imagePullSecret: secret {refs.namespace}/{refs.pull} is not of type registry")
        auth = {"username": login.values.get("username", ""), "password": login.values.get("password", ""),
                "serveraddress": login.server}
    return replace(spec, env=env, pull_auth=auth)
