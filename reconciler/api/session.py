"""Routes about the caller and the store as a whole: who the token is (``whoami``, which `brokerctl
login` asks before it saves a context) and the store's status (`brokerctl status`).

Registered by ``app``.
"""

from __future__ import annotations

from fastapi import APIRouter

from ..ops import controller
from ..ops.tokens import READ, allow
from . import schemas
from .auth import Caller, Store
from .lists import Json

router = APIRouter(prefix="/api/v1")


@router.get("/whoami", responses=schemas.responses(schemas.Identity))
def whoami(who: Caller) -> Json:
    """The token's user, role and namespaces: any valid token may ask."""
    return Json({"user": who.user, "role": who.role, "namespaces": list(who.namespaces)})


@router.get("/status", responses=schemas.responses(schemas.StoreStatus))
def status(who: Caller, store: Store) -> Json:
    """The store, the leading controller (epoch, lease expiry) and the standbys, node and task counts (admin),
    as `brokerctl status`."""
    allow(who, READ, None, "read the store's status")
    st = controller.status(store)
    lease = st.controller
    return Json({"store": str(st.path), "storeId": st.store_id, "heartbeatAge": st.heartbeat_age,
                 "controller": None if lease is None else {
                     "pid": lease["pid"], "hostname": lease["hostname"], "heartbeat": lease["heartbeat"],
                     "startedAt": lease["started_at"], "stats": lease["stats"]},
                 "nodes": st.nodes, "ready": st.ready, "tasks": st.tasks, "epoch": st.epoch,
                 "expiresIn": st.expires_in,
                 "expired": None if st.expired is None else {"pid": st.expired["pid"],
                                                             "hostname": st.expired["hostname"]},
                 "standbys": [{"pid": c["pid"], "hostname": c["hostname"], "seen": c["seen"]} for c in st.standbys]})
