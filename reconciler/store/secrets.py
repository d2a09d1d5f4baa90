"""Secrets: the only code that encrypts or decrypts a Secret's values, and the key it does it with.

``SecretStore`` is mixed into ``Store`` (see the package). ``seal`` turns the Secrets among manifest
models into sealed ones before they are written (``apply``, ``ops.sync``, ``ops.diff``): the spec
then holds, per key, the value's size and an HMAC of it under the store's key (so re-applying the
same values is ``unchanged`` and ``diff`` sees a change without a value), and the values go,
encrypted with ``cryptography``'s Fernet (AES-128-CBC with HMAC-SHA256), into the row's ``sealed``
column, never into a spec. ``secret_values`` decrypts one Secret for the runtime, just before a
container is started; ``secrets_problem`` tells the controller why it cannot (the key is missing
or another), so the planner keeps the tasks that need them Pending.

The key is a file, mode 0600, made on first use (the first Secret applied): ``--secrets-key FILE``
(``BROKER_SECRETS_KEY``), else ``<store file>.key`` beside a SQLite store, else
``$XDG_STATE_HOME/brokerctl/secrets.key`` for a PostgreSQL store (whose processes may run on several
machines: each needs a copy of the one key). The store records the key's id (an HMAC of a fixed
text under it) in ``meta`` when the key is made, so a process with a missing or different key gets
a ``StoreError`` naming the file and the id it needs instead of sealing with a second key.
``cryptography`` is imported only here and only when a Secret is used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NotFound, StoreError
from .db import fetch_one

KEY_ID = "secrets_key_id"  # meta: the id of the key this store's Secrets are sealed with
KEY_ENV = "BROKER_SECRETS_KEY"
DIGEST_HEX = 16  # of a value's HMAC kept in the spec: enough to tell a change


@dataclass(frozen=True)
class SecretValues:
    """One Secret decrypted: its type, a registry's server, and the values (not in the repr)."""

    type: str
    server: str | None
    values: dict[str, str] = field(repr=False)


class _Key:
    """A loaded key: the Fernet cipher, the HMAC key of value digests, and the key's id."""

    def __init__(self, text: bytes, path: Path):
        from cryptography.fernet import Fernet

        try:
            raw = base64.urlsafe_b64decode(text.strip())
            self.fernet = Fernet(text.strip())
        except ValueError:
            raise StoreError(f"secrets key {path} is not a brokerctl secrets key (44 characters of url-safe "
                             "base64); restore the key this store was used with, or point --secrets-key "
                             f"(or {KEY_ENV}) at it") from None
        self.path = path
        self.id = hmac.new(raw, b"brokerctl secrets key id", hashlib.sha256).hexdigest()[:16]
        self._digest_key = hmac.new(raw, b"brokerctl secret value digests", hashlib.sha256).digest()

    def digest(self, key: str, value: str) -> str:
        return hmac.new(self._digest_key, f"{key}\0{value}".encode(), hashlib.sha256).hexdigest()[:DIGEST_HEX]


class SecretStore:
    """Sealing and unsealing of Secrets (a mixin of ``Store``)."""

    secrets_key_file: Path | None = None  # --secrets-key; None: $BROKER_SECRETS_KEY, else the default
    _secrets_key: _Key | None = None  # once loaded and checked against the store's key id

    @property
    def secrets_key_path(self) -> Path:
        """Where this store's secrets key is looked for (see the module docstring)."""
        if self.secrets_key_file is not None:
            return Path(self.secrets_key_file)
        if os.environ.get(KEY_ENV):
            return Path(os.environ[KEY_ENV])
        if self.dialect == "sqlite":
            return Path(f"{self.location}.key")
        state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
        return Path(state) / "brokerctl" / "secrets.key"

    # -- sealing, for the writers --------------------------------------------------------------

    def seal(self, resources: list, create: bool = True) -> list:
        """``resources`` with each Secret whose values are in the clear replaced by its sealed form
        (``models.SealedSecret``); the others as they are. ``create``: make the key if this store has
        none yet (a writer); else a missing key is a ``StoreError``."""
        clear = [isinstance(r.spec, _secret_spec()) for r in resources]
        if not any(clear):
            return resources
        key = self._key(create)
        return [self._seal_one(r, key) if c else r for r, c in zip(resources, clear)]

    @staticmethod
    def _seal_one(res, key: _Key):
        from ..spec.models import SealedSecret

        values = res.spec.values()
        spec = {"type": res.spec.type, "server": res.spec.server,
                "data": {k: {"bytes": len(v.encode()), "digest": key.digest(k, v)} for k, v in values.items()},
                "sealed": key.fernet.encrypt(json.dumps(values, sort_keys=True).encode()).decode()}
        return SealedSecret.model_validate({"apiVersion": res.apiVersion, "kind": res.kind,
                                            "metadata": res.metadata.model_dump(), "spec": spec})

    @staticmethod
    def write_sealed(db, res) -> None:
        """Store a sealed Secret's encrypted values on its row (``resources.apply_one``, same transaction)."""
        db.execute("UPDATE resources SET sealed=? WHERE kind='Secret' AND namespace=? AND name=?",
                   [res.spec.sealed, res.namespace, res.metadata.name])

    # -- unsealing, for the runtime ------------------------------------------------------------

    def secret_values(self, namespace: str, name: str) -> SecretValues:
        """Secret ``namespace``/``name`` decrypted. ``NotFound`` if it is not there (or being deleted),
        ``StoreError`` if this process has not the store's key."""
        row = self._rows("SELECT spec, sealed FROM resources WHERE kind='Secret' AND namespace=? AND name=? "
                         "AND deleted_at IS NULL", [namespace, name])
        if not row:
            raise NotFound.resource("Secret", name, namespace)
        key = self._key(create=False)
        from cryptography.fernet import InvalidToken

        try:
            values = json.loads(key.fernet.decrypt((row[0]["sealed"] or "").encode()))
        except InvalidToken:
            raise StoreError(f"secret {namespace}/{name} cannot be decrypted with key {key.path} (id {key.id}), "
                             "although the store was sealed with that key: its stored form is damaged; apply the "
                             "Secret again") from None
        spec = json.loads(row[0]["spec"])
        return SecretValues(spec.get("type", "opaque"), spec.get("server"), values)

    def secrets_problem(self) -> str | None:
        """Why this process cannot decrypt the store's Secrets (None: it can, or the store never had one)."""
        if self._secrets_key is not None or self._recorded_key_id() is None:
            return None
        try:
            self._key(create=False)
        except StoreError as exc:
            return str(exc)
        return None

    # -- the key ---------------------------------------------------------------------------------

    def _recorded_key_id(self, db=None) -> str | None:
        sql, params = "SELECT value FROM meta WHERE key = ?", [KEY_ID]
        row = fetch_one(db, sql, params) if db is not None else next(iter(self._rows(sql, params)), None)
        return row["value"] if row else None

    def _key(self, create: bool) -> _Key:
        """The store's key, loaded (and cached) from ``secrets_key_path``; made there first if ``create``
        and the store has none yet. Its id must be the one the store recorded."""
        if self._secrets_key is not None:
            return self._secrets_key
        path = self.secrets_key_path
        recorded = self._recorded_key_id()
        if recorded is None and not create:
            # The store never had a Secret: nothing to decrypt, and what a dry run seals is not kept.
            from cryptography.fernet import Fernet

            return _Key(_read_private(path) if path.exists() else Fernet.generate_key(), path)
        if not path.exists():
            if recorded is not None:
                raise StoreError(f"secrets key {path} is missing; this store's Secrets are sealed with key id "
                                 f"{recorded}: restore that key file there, or point --secrets-key (or {KEY_ENV}) "
                                 "at it")
            _make_key_file(path)
        key = _Key(_read_private(path), path)
        if recorded is None:
            with self.transaction() as db:  # the first key wins; a process racing with another key loses
                if self._recorded_key_id(db) is None:
                    db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", [KEY_ID, key.id])
            recorded = self._recorded_key_id()
        if recorded != key.id:
            raise StoreError(f"secrets key {path} (id {key.id}) is not the key this store's Secrets are sealed "
                             f"with (id {recorded or 'none yet'}); point --secrets-key (or {KEY_ENV}) at that "
                             "key")
        self._secrets_key = key
        return key


def _secret_spec() -> type:
    from ..spec.secret import SecretSpec  # the writers that seal have the models loaded already

    return SecretSpec


def _make_key_file(path: Path) -> None:
    """A new Fernet key in ``path``, mode 0600 (missing directories 0700); kept if another process
    made one there first."""
    from cryptography.fernet import Fernet

    missing = [d for d in [path.parent, *path.parent.parents] if not d.exists()]
    try:
        for directory in reversed(missing):
            with suppress(FileExistsError):
                os.mkdir(directory, 0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise StoreError(f"cannot create secrets key {path}: {exc}; pass --secrets-key FILE (or set {KEY_ENV}) "
                         "to keep it elsewhere") from exc
    with os.fdopen(fd, "wb") as f:
        f.write(Fernet.generate_key() + b"\n")


def _read_private(path: Path) -> bytes:
    """The key file's text; refused when others than its owner may read it (as ssh refuses such a key)."""
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            raise StoreError(f"secrets key {path} is readable by others (mode {stat.S_IMODE(mode):04o}); "
                             f"`chmod 600 {path}`")
        return path.read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read secrets key {path}: {exc}") from exc
