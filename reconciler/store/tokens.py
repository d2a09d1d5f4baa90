"""API tokens: who may use the HTTP API, with which role, in which namespaces.

``TokenStore`` is mixed into ``Store`` (see the package): ``add_token`` and ``add_first_token`` (the
server's admin token, made only while the table is empty), ``tokens``, ``token``, ``revoke_token``
and ``touch_token`` (when a token was last used). The secret of a token never reaches the store:
``ops.tokens`` makes it, shows it once and hands over only its SHA-256. Called by ``ops.tokens``.
"""

from __future__ import annotations

import json

from ..errors import NotFound
from ..records import TokenRecord
from .db import dump, fetch_one, insert

_COLUMNS = "id, user_name, role, namespaces, hash, created_at, created_by, last_used_at, revoked_at"


class TokenStore:
    """Reads and writes of the ``tokens`` table (a mixin of ``Store``)."""

    def add_token(self, token: TokenRecord) -> None:
        with self.transaction(wake_controller=False) as db:
            insert(db, "tokens", _row(token))

    def add_first_token(self, token: TokenRecord) -> bool:
        """Record ``token`` only if the store has no token at all (revoked ones count); False otherwise.
        One transaction, so two servers starting at once on one store make one first token."""
        with self.transaction(wake_controller=False) as db:
            if fetch_one(db, "SELECT id FROM tokens LIMIT 1") is not None:
                return False
            insert(db, "tokens", _row(token))
            return True

    def tokens(self) -> list[TokenRecord]:
        """Every token, revoked ones included, oldest first."""
        return [_record(r) for r in self._rows(f"SELECT {_COLUMNS} FROM tokens ORDER BY created_at, id")]

    def token(self, token_id: str) -> TokenRecord | None:
        rows = self._rows(f"SELECT {_COLUMNS} FROM tokens WHERE id = ?", [token_id])
        return _record(rows[0]) if rows else None

    def revoke_token(self, token_id: str, now: float) -> bool:
        """Revoke a token at ``now``; False if it was revoked already. NotFound if there is none."""
        with self.transaction(wake_controller=False) as db:
            row = fetch_one(db, "SELECT revoked_at FROM tokens WHERE id = ?", [token_id])
            if row is None:
                raise NotFound._with_step(f"token '{token_id}' not found", "`brokerctl token list` lists them",
                                          "list", kind="Token", name=token_id)
            if row["revoked_at"] is not None:
                return False
            db.execute("UPDATE tokens SET revoked_at = ? WHERE id = ?", [now, token_id])
            return True

    def touch_token(self, token_id: str, now: float) -> None:
        """Record that the token was used at ``now`` (a write no controller acts on: it wakes none)."""
        with self.transaction(wake_controller=False) as db:
            db.execute("UPDATE tokens SET last_used_at = ? WHERE id = ?", [now, token_id])


def _row(t: TokenRecord) -> dict:
    return {"id": t.id, "user_name": t.user, "role": t.role, "namespaces": dump(list(t.namespaces)), "hash": t.hash,
            "created_at": t.created_at, "created_by": t.created_by, "last_used_at": t.last_used_at,
            "revoked_at": t.revoked_at}


def _record(r: dict) -> TokenRecord:
    return TokenRecord(r["id"], r["user_name"], r["role"], tuple(json.loads(r["namespaces"])), r["hash"],
                       r["created_at"], r["created_by"], r["last_used_at"], r["revoked_at"])
