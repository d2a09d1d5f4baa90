"""Users, tokens and roles: who may do what through the HTTP API, and who the local CLI is.

Called by the CLI's ``token`` commands (create, list, revoke), by ``brokerctl server`` (the first
admin token) and by the HTTP API (``authenticate`` each request's bearer token, ``allow`` each verb).
A token's text is ``bk_<id>_<secret>``: the id finds its row, and the secret (32 random bytes) is
checked against the SHA-256 the store keeps; a secret that random needs no slow hash, and the
comparison takes constant time. The text is shown once, by ``create``, and never stored.

Roles: ``admin`` may do everything (nodes, namespaces, tokens, every namespace's resources); ``edit``
reads, creates, changes and deletes Jobs and Services in the namespaces the token names; ``view`` only
reads them (logs included). The local CLI, working on the store file itself, acts as admin: the
file's permissions are the boundary. Writes record who made them (``metadata.createdBy``/``updatedBy``):
a token's user, or ``local:<OS user>`` for the local CLI (``local_user``).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import NamedTuple

from ..errors import BrokerError, UsageError
from ..kinds import Kind
from ..records import TokenRecord

ROLES = ("admin", "edit", "view")
PREFIX = "bk_"
TOUCH_EVERY = 60.0  # seconds: a token's last use is written at most this often
USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")  # no ':', so no token user reads as `local:NAME`


class Unauthenticated(BrokerError):
    """A request without a valid token (HTTP 401)."""


class Forbidden(BrokerError):
    """A valid token whose role does not allow the verb where it was asked (HTTP 403)."""


class Identity(NamedTuple):
    """Who is asking: a token's user with its role and namespaces, or the local CLI (admin)."""

    user: str
    role: str
    namespaces: tuple[str, ...] = ()
    token: str | None = None  # the token's id; None for the local CLI

    def reaches(self, namespace: str) -> bool:
        return self.role == "admin" or namespace in self.namespaces

    def __str__(self) -> str:
        where = f" in {', '.join(self.namespaces)}" if self.namespaces else ""
        return f"user {self.user} (role {self.role}{where})"


def local_user() -> str:
    """``local:<OS user>``: who the local CLI's writes are recorded as."""
    import getpass

    try:
        return f"local:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a container's arbitrary user)
        return f"local:{os.getuid()}"


def author(by: str | None) -> str:
    """Who a verb's writes are recorded as: ``by`` (a token's user, passed by the HTTP API), else the
    local CLI's ``local_user``."""
    return local_user() if by is None else by


def local_identity() -> Identity:
    return Identity(local_user(), "admin")


# -- making, listing and revoking tokens ----------------------------------------------------------


class Created(NamedTuple):
    record: TokenRecord
    text: str  # bk_<id>_<secret>: shown once, never stored
    warnings: list[str]


def create(store, user: str, role: str, namespaces: list[str], by: str | None = None,
           now: float | None = None) -> Created:
    """A new token for ``user`` with ``role`` (in ``namespaces`` for edit and view). Warns of a namespace
    that does not exist (yet): the token reaches it once it is applied."""
    record, text = _new_token(user, role, namespaces, by, now)
    store.add_token(record)
    existing = {r.name for r in store.resources(Kind.NAMESPACE)}
    missing = [ns for ns in record.namespaces if ns not in existing]
    warnings = [f"namespace {ns} does not exist yet; the token reaches it once it is applied" for ns in missing]
    return Created(record, text, warnings)


def default_admin_token_path() -> Path:
    """Where `brokerctl server` writes the first admin token: ``$XDG_STATE_HOME/brokerctl/admin.token``
    (``~/.local/state/brokerctl/admin.token``), beside the default store."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(state) / "brokerctl" / "admin.token"


def create_first_admin(store, path: Path, now: float | None = None) -> Path | None:
    """On a store without any token, make an admin token and write it to ``path`` (mode 0600, its
    directory 0700 if made); return ``path``, or None when the store has tokens already. The token
    is never printed."""
    record, text = _new_token("admin", "admin", [], "server", now)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)
    try:
        if not store.add_first_token(record):
            return None
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _new_token(user: str, role: str, namespaces: list[str], by: str | None, now: float | None
               ) -> tuple[TokenRecord, str]:
    import hashlib
    import secrets

    from .refs import namespace_name

    if not USER_RE.match(user):
        raise UsageError(f"--user {user!r}: a user name is 1 to 100 letters, digits and . _ @ + - (no spaces or ':'), "
                         "starting with a letter or digit")
    if role not in ROLES:
        raise UsageError(f"--role {role!r}: use admin, edit or view")
    if role == "admin" and namespaces:
        raise UsageError("--namespace does not apply to --role admin: an admin token reaches every namespace")
    if role != "admin" and not namespaces:
        raise UsageError(f"--role {role} needs the namespaces it reaches: --namespace NS (repeatable)")
    spaces = tuple(dict.fromkeys(namespace_name(ns) for ns in namespaces))
    token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    record = TokenRecord(token_id, user, role, spaces, hashlib.sha256(secret.encode()).hexdigest(),
                         time.time() if now is None else now, local_user() if by is None else by)
    return record, f"{PREFIX}{token_id}_{secret}"


def list_tokens(store) -> list[TokenRecord]:
    """Every token, revoked ones included, oldest first (never a secret)."""
    return store.tokens()


def revoke(store, token_id: str, now: float | None = None) -> bool:
    """Revoke a token at once (its requests get 401 from then on); False if it was revoked already."""
    return store.revoke_token(token_id, time.time() if now is None else now)


# -- checking a request ---------------------------------------------------------------------------


def authenticate(store, text: str | None, now: float | None = None) -> Identity:
    """The identity a bearer token stands for; ``Unauthenticated`` when it is missing, malformed,
    unknown, revoked or wrong (without saying which, beyond missing and malformed)."""
    import hashlib
    import hmac

    if not text:
        raise Unauthenticated("this API needs a token: send `Authorization: Bearer bk_...` "
                              "(`brokerctl token create` makes one)")
    token_id, sep, secret = text.removeprefix(PREFIX).partition("_")
    if not text.startswith(PREFIX) or not sep or not secret:
        raise Unauthenticated("the token is malformed: a brokerctl token reads bk_<id>_<secret>")
    record = store.token(token_id)
    digest = hashlib.sha256(secret.encode()).hexdigest()
    if record is None or record.revoked_at is not None or not hmac.compare_digest(digest, record.hash):
        raise Unauthenticated("the token is not valid: unknown, revoked or mistyped")
    now = time.time() if now is None else now
    if record.last_used_at is None or now - record.last_used_at >= TOUCH_EVERY:
        store.touch_token(record.id, now)
    return Identity(record.user, record.role, record.namespaces, record.id)


READ, WRITE = "read", "write"


def allow(who: Identity, access: str, namespace: str | None, what: str) -> None:
    """Raise ``Forbidden`` unless ``who`` may ``access`` (READ or WRITE) ``what`` in ``namespace`` (None:
    something cluster-scoped, which only an admin reaches). ``what`` says the verb and object for the
    message, e.g. ``delete job nightly``."""
    if may(who, access, namespace):
        return
    if namespace is None:
        raise Forbidden(f"{who} may not {what}: only an admin token may (nodes, namespaces and tokens are "
                        "cluster-wide)")
    if not who.reaches(namespace):
        raise Forbidden(f"{who} may not {what} in namespace {namespace}: the token reaches only "
                        f"{', '.join(who.namespaces)}")
    raise Forbidden(f"{who} may not {what} in namespace {namespace}: the view role only reads")


def may(who: Identity, access: str, namespace: str | None) -> bool:
    if who.role == "admin":
        return True
    if namespace is None or namespace not in who.namespaces:
        return False
    return access == READ or who.role == "edit"
