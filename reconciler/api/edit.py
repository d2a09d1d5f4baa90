"""`brokerctl edit` through a server: the text to open, and the saved text applied with the edit's rules.

Registered by ``app``; the verbs are ``ops.edit``'s, the local `edit`'s. ``GET /api/v1/edit/{kind}/{name}``
gives the document (the resource as `get -o yaml` shows it, under the edit header); ``POST`` with
``{"original", "edited", "filename"}`` applies what was saved: cancelled when unchanged or empty, 422
for a bad edit (the client reopens it with the error), 409 when the resource changed since
``original`` (its generation). Both need a role that may write the resource (an edit token of its
namespace, or admin: Nodes and Namespaces are cluster-wide), so a token that could not save is refused
before an editor opens.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from ..kinds import Kind
from ..ops import edit as editing
from ..ops.refs import namespace_name, parse_kind
from ..ops.tokens import WRITE, Identity, allow
from . import schemas
from .auth import Caller, Store
from .lists import Json
from .resources import ManifestNamespace

router = APIRouter(prefix="/api/v1")


def _editable(who: Identity, kind: str, name: str, namespace: str) -> tuple[Kind, str]:
    k, ns = parse_kind(kind), namespace_name(namespace)
    allow(who, WRITE, ns if k.namespaced else None, f"edit {k.value.lower()}/{name}")
    return k, ns


@router.get("/edit/{kind}/{name}", responses=schemas.responses(schemas.EditDocument))
def document(kind: str, name: str, who: Caller, store: Store, namespace: ManifestNamespace = "default") -> Json:
    """The text `brokerctl edit KIND/NAME` opens (a Secret's values are never shown: 422)."""
    k, ns = _editable(who, kind, name, namespace)
    return Json({"text": editing.document(store, k, name, ns)})


@router.post("/edit/{kind}/{name}", responses=schemas.responses(schemas.Edited),
             openapi_extra=schemas.body_of(schemas.EditRequest))
def apply_edit(kind: str, name: str, request: Annotated[dict, Body()], who: Caller, store: Store,
               namespace: ManifestNamespace = "default") -> Json:
    """Apply the text saved in `brokerctl edit`, as the local edit does."""
    k, ns = _editable(who, kind, name, namespace)
    body = schemas.request_body(schemas.EditRequest, request)
    done = editing.apply_edit(store, k, name, ns, body.original, body.edited, body.filename, by=who.user)
    return Json({"ref": done.ref, "outcome": done.outcome, "message": done.message})
