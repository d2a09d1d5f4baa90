"""A Secret's spec as a manifest writes it, and as the store keeps it (sealed: no value in it).

A Secret is either ``opaque`` (``stringData: {KEY: value}``, for a task's environment) or
``registry`` (``server``, ``username``, ``password``, for ``template.imagePullSecret``). Its values
never leave the store in the clear: the store's secrets noun turns a ``SecretSpec`` into a
``SealedSecretSpec``, which holds per key only the value's size and a keyed digest (so an unchanged
Secret applies as ``unchanged`` and a change shows in ``diff``) and carries the encrypted values
beside it (``sealed``, never part of a dump). Used by ``spec.models`` (the Secret kind), the store
(sealing) and the engine, which reads a sealed spec's key names and registry server only.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .fields import RESERVED_ENV_PREFIX, Int, SpecModel, image_registry, registry_problem, scalars_as_text

# Kubernetes' rule for a Secret's keys: what a file name or an environment variable name may be.
SECRET_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
MAX_SECRET_BYTES = 1024 * 1024  # all values of one Secret together (Kubernetes' limit)
REGISTRY_KEYS = ("username", "password")  # the keys of a registry Secret's values
SecretType = Literal["opaque", "registry"]


def secret_key(key: str) -> str:
    """``key`` if it may name a value of a Secret, else ValueError naming the rule."""
    if len(key) > 253 or not SECRET_KEY_RE.match(key):
        raise ValueError(f"{key!r} is not a Secret key: letters, digits, '-', '_' and '.', at most 253 characters")
    return key


# Comments, not docstrings, on the models: a model's docstring becomes its description in the schema.
class SecretSpec(SpecModel):
    type: SecretType = Field(default="opaque", description="opaque: stringData for env and envFrom; registry: "
                                                           "server, username and password for imagePullSecret.")
    stringData: dict[str, str] = Field(default_factory=dict, description="opaque: KEY -> value. Keys become "
                                                                         "variable names with envFrom.")
    server: str | None = Field(default=None, description="registry: the registry's host[:port], as image "
                                                         "references name it (docker.io for Docker Hub).")
    username: str | None = Field(default=None, description="registry: the user to log in as.")
    password: str | None = Field(default=None, description="registry: the password or token.")

    @model_validator(mode="before")
    @classmethod
    def _not_a_printed_secret(cls, data):
        if isinstance(data, dict) and "data" in data:
            raise ValueError("data: a Secret's values are never printed (`get secret -o yaml` shows their sizes), "
                             "so that output cannot be applied back; apply the Secret's source file (stringData, "
                             "or server, username and password)")
        return data

    @field_validator("stringData", mode="before")
    @classmethod
    def _values_as_text(cls, v):
        return scalars_as_text(v)

    @field_validator("username", "password", mode="before")
    @classmethod
    def _scalar_as_text(cls, v):
        return v if v is None else scalars_as_text({"": v})[""]

    @field_validator("stringData")
    @classmethod
    def _keys(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            secret_key(key)
            if key.startswith(RESERVED_ENV_PREFIX):
                raise ValueError(f"{key!r}: keys starting with '{RESERVED_ENV_PREFIX}' are reserved (envFrom would "
                                 "set brokerctl's own variables); use another key")
        return v

    @field_validator("server")
    @classmethod
    def _server(cls, v: str | None) -> str | None:
        if v is not None and (problem := registry_problem(v)):
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _fields_of_its_type(self) -> "SecretSpec":
        given = [f for f in ("server", "username", "password") if getattr(self, f) is not None]
        if self.type == "opaque" and given:
            raise ValueError(f"{', '.join(given)}: fields of a registry Secret; set type: registry, or put the "
                             "values in stringData")
        if self.type == "registry":
            if self.stringData:
                raise ValueError("stringData: a registry Secret holds server, username and password; use an "
                                 "opaque Secret (the default type) for other values")
            if missing := [f for f in ("server", "username", "password") if getattr(self, f) is None]:
                raise ValueError(f"a registry Secret needs server, username and password ({', '.join(missing)} "
                                 "missing)")
        size = sum(len(v.encode()) for v in self.values().values())
        if size > MAX_SECRET_BYTES:
            raise ValueError(f"the values come to {size:,} bytes; a Secret holds at most {MAX_SECRET_BYTES:,}")
        return self

    def values(self) -> dict[str, str]:
        """The values the store encrypts: stringData, or a registry's username and password."""
        if self.type == "registry":
            return {"username": self.username or "", "password": self.password or ""}
        return dict(self.stringData)

    def registry(self) -> str | None:
        """A registry Secret's server as image references name it (``image_registry``)."""
        return normal_registry(self.server) if self.server else None


class SealedValue(SpecModel):
    bytes: Int = Field(ge=0, description="The value's size in bytes (UTF-8).")
    digest: str = Field(description="A digest of the value keyed with the store's secrets key: tells a change.")


class SealedSecretSpec(SpecModel):
    type: SecretType = "opaque"
    server: str | None = None
    data: dict[str, SealedValue] = Field(default_factory=dict)
    # The encrypted values (a Fernet token). Kept out of every dump: the store writes it to a column of
    # its own, so specs, their copies (GitOps' last-synced spec) and output never hold it.
    sealed: str = Field(default="", exclude=True, repr=False)

    def keys(self) -> frozenset[str]:
        return frozenset(self.data)

    def registry(self) -> str | None:
        return normal_registry(self.server) if self.server else None


def normal_registry(server: str) -> str:
    """A registry server as ``image_registry`` names it: no scheme or path, Docker Hub's aliases as docker.io."""
    host = re.sub(r"^[a-z]+://", "", server.strip()).split("/", 1)[0]
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io", "registry.hub.docker.com") else host


__all__ = ["SECRET_KEY_RE", "MAX_SECRET_BYTES", "REGISTRY_KEYS", "SecretSpec", "SealedValue", "SealedSecretSpec",
           "image_registry", "normal_registry", "secret_key"]
