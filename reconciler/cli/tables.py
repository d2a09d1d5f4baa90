"""Tables for people: the rows of tasks, resources, events, revisions and synced files, printed with
rich on a terminal and as plain aligned text when piped. Called by the CLI commands, which hand it
records and the objects of ``views``. A listing of every namespace (``namespaces=True``) has a
NAMESPACE column first; one of a single namespace looks as it did before namespaces."""

from __future__ import annotations

import sys
import time
from datetime import datetime

from ..kinds import TaskPhase
from ..records import TaskRecord
from ..views import size_text


def age(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "-"
    s = max(0, int((now or time.time()) - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def print_table(columns: list[str], rows: list[list], *, file=None, header: bool = True) -> None:
    """A table for people. On a terminal rich fits it to the width (folding long cells); piped,
    each row is one line however long, so `grep`, `awk` and `sort` see whole rows. Without
    ``header``: the rows alone (`get -w` printing a changed row under the first table)."""
    out = file or sys.stdout
    cells = [["-" if v is None or v == "" else str(v) for v in row] for row in rows]
    if not out.isatty():
        _print_plain(columns, cells, out, header)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", show_header=header)
    for c in columns:
        table.add_column(c, overflow="fold")
    for row in cells:
        table.add_row(*row)
    Console(file=out, soft_wrap=True).print(table)


def _print_plain(columns: list[str], rows: list[list[str]], out, header: bool = True) -> None:
    """Columns padded to their widest cell and two spaces apart, as rich lays them out, never wrapped.

    A newline inside a cell would start a false row: it is shown as a space."""
    from rich.cells import cell_len  # display width: wide characters take two columns

    def width(text: str) -> int:
        return len(text) if text.isascii() else cell_len(text)

    rows = [[c.replace("\n", " ") if "\n" in c else c for c in row] for row in rows]
    widths = [max([width(c)] + [width(row[i]) for row in rows]) for i, c in enumerate(columns)]
    last = len(columns) - 1
    lines = ["  ".join(cell if i == last else cell + " " * (widths[i] - width(cell)) for i, cell in enumerate(row))
             for row in ([columns] if header else []) + rows]
    out.write("\n".join(lines) + "\n")


def task_rows(tasks: list[TaskRecord], wide: bool, now: float,
              namespaces: bool = False) -> tuple[list[str], list[list]]:
    cols = ["ID", "OWNER", "PHASE", "NODE", "EXIT", "AGE", "REASON"]
    if wide:
        cols += ["ATTEMPT", "CONTAINER", "MESSAGE"]
    rows = []
    for t in tasks:
        row = [t.id, t.owner, t.phase._value_, t.node, t.exit_code, age(t.created_at, now), _reason(t)]
        if wide:
            row += [t.attempt, (t.container_id or "")[:12], t.message]
        rows.append([t.namespace, *row] if namespaces else row)
    return (["NAMESPACE", *cols] if namespaces else cols), rows


def _reason(t: TaskRecord) -> str:
    if t.phase is TaskPhase.PENDING and t.message:
        return f"{t.reason}: {t.message}" if t.reason else t.message
    return t.reason


def epoch(iso_text: str | None) -> float | None:
    """Seconds since the epoch of a ``views.iso`` time (for ``age``)."""
    return datetime.fromisoformat(iso_text.replace("Z", "+00:00")).timestamp() if iso_text else None


RESOURCE_COLUMNS = {
    "Node": (["NAME", "STATUS", "SLOTS (USED/TOTAL)", "DOCKER", "AGE"], ["ADDRESS", "MESSAGE"]),
    "Job": (["NAME", "PHASE", "COMPLETIONS", "ACTIVE", "FAILED", "AGE"], ["IMAGE", "MESSAGE"]),
    "Service": (["NAME", "DESIRED", "RUNNING", "READY", "UP-TO-DATE", "RESTARTS", "BACKOFF", "ROLLOUT", "AGE"],
                ["IMAGE", "TEMPLATE", "MESSAGE"]),
    "Namespace": (["NAME", "STATUS", "TASKS", "SHARE", "QUOTA", "BUDGET", "AGE"], ["NODE SELECTOR", "MOUNTS"]),
    "Secret": (["NAME", "TYPE", "DATA", "AGE"], ["KEYS", "SERVER"]),
}


def resource_rows(kind: str, objects: list[dict], wide: bool, now: float,
                  namespaces: bool = False) -> tuple[list[str], list[list]]:
    """Columns and rows of `get nodes|namespaces|jobs|services|secrets` from ``views.resource_object``s (a
    Namespace's from ``views.namespace_object``); ``wide`` adds the columns of `-o wide`;
    ``namespaces`` puts each one's namespace first."""
    row_of = {"Node": _node_row, "Job": _job_row, "Service": _service_row, "Namespace": _namespace_row,
              "Secret": _secret_row}[kind]
    columns, extra = RESOURCE_COLUMNS[kind]
    rows = []
    for o in objects:
        row, more = row_of(o, age(epoch(o["metadata"]["createdAt"]), now))
        row = row + (more if wide else [])
        rows.append([o["metadata"].get("namespace"), *row] if namespaces else row)
    columns = columns + (extra if wide else [])
    return (["NAMESPACE", *columns] if namespaces else columns), rows


def _node_row(o: dict, created: str) -> tuple[list, list]:
    st, spec, meta = o["status"], o["spec"], o["metadata"]
    slots = ", ".join(f"{k} {st['slotsUsed'].get(k, 0)}/{v}" for k, v in (st.get("slots") or {}).items())
    cond = (st.get("condition", "Unknown") + (",SchedulingDisabled" if spec.get("unschedulable") else "")
            + (",Draining" if st.get("draining") else ""))
    return [meta["name"], cond, slots or "-", st.get("dockerVersion"), created], [spec["address"], st.get("message")]


def _job_row(o: dict, created: str) -> tuple[list, list]:
    st, spec, meta = o["status"], o["spec"], o["metadata"]
    row = [meta["name"], "Terminating" if st.get("terminating") else st.get("phase", "Pending"),
           f"{st.get('succeeded', 0)}/{spec['completions']}", st.get("active", 0), st.get("failed", 0), created]
    return row, [spec["template"]["image"], st.get("message")]


def _service_row(o: dict, created: str) -> tuple[list, list]:
    st, spec, meta = o["status"], o["spec"], o["metadata"]
    backoff = st.get("restartBackoffSeconds") or 0
    rollout = st.get("rollout") or {}
    row = [meta["name"], spec["replicas"], st.get("running", 0), st.get("ready", 0), st.get("updated", 0),
           st.get("restarts", 0), f"{backoff:g}s" if backoff else "-",
           "Terminating" if st.get("terminating") else rollout.get("state", "Pending"), created]
    return row, [spec["template"]["image"], st.get("revision"), rollout.get("message")]


def _namespace_row(o: dict, created: str) -> tuple[list, list]:
    st, spec, meta = o["status"], o["spec"], o["metadata"]
    selector = ",".join(f"{k}={v}" for k, v in spec.get("nodeSelector", {}).items())
    mounts = ", ".join(f"{m['source']}:{m['target']}" + (":ro" if m.get("readOnly") else "")
                       for m in spec.get("mounts", []))
    row = [meta["name"], st["phase"], st["running"], f"{spec.get('share', 1):g}",
           quota_text(spec.get("quota"), st["used"]), budget_text(spec.get("budget"), st["used"]), created]
    return row, [selector, mounts]


def _secret_row(o: dict, created: str) -> tuple[list, list]:
    """A Secret: how many values it holds (DATA, as kubectl says it) and, wide, their keys and sizes."""
    spec = o["spec"]
    keys = ", ".join(f"{k} {v}" for k, v in spec["data"].items())
    return [o["metadata"]["name"], spec["type"], len(spec["data"]), created], [keys, spec.get("server")]


def budget_text(budget: dict | None, used: dict) -> str:
    """Cpu-hours consumed in the budget's window against the budget: ``12.5/500 cpu-hours in 30d`` ("-": none)."""
    if not budget:
        return "-"
    return f"{used.get('cpuHours', 0):g}/{budget['cpuHours']:g} cpu-hours in {budget['window']}"


def quota_text(quota: dict | None, used: dict) -> str:
    """Use against each cap of a namespace's quota: ``cpus 3/8, memory 1.5g/16g, tasks 5/40, gpu slots 1/2``
    ("-": no cap)."""
    if not quota:
        return "-"
    parts = []
    if quota.get("cpus") is not None:
        parts.append(f"cpus {used['cpus']:g}/{quota['cpus']:g}")
    if quota.get("memory") is not None:
        limit = quota["memory"]
        parts.append(f"memory {size_text(used['memory'])}/{limit if isinstance(limit, str) else size_text(limit)}")
    if quota.get("tasks") is not None:
        parts.append(f"tasks {used['tasks']}/{quota['tasks']}")
    for kind, limit in (quota.get("slots") or {}).items():
        parts.append(f"{kind} slots {used['slots'].get(kind, 0)}/{limit}")
    return ", ".join(parts) or "-"


def event_rows(events: list[dict], now: float | None = None, *, objects: bool = True,
               namespaces: bool = False) -> tuple[list[str], list[list]]:
    """`get events` (``objects``: with the OBJECT column; ``namespaces``: with NAMESPACE first) and
    `describe`'s events, from store rows."""
    columns = ["AGE", "OBJECT", "TYPE", "REASON", "MESSAGE"] if objects else ["AGE", "TYPE", "REASON", "MESSAGE"]
    rows = [([e.get("namespace")] if namespaces else []) + [age(e["ts"], now)]
            + ([f"{e['kind']}/{e['name']}"] if objects else [])
            + [e["type"], e["reason"], e["message"]] for e in events]
    return (["NAMESPACE", *columns] if namespaces else columns), rows


def revision_rows(objects: list[dict], now: float | None = None) -> tuple[list[str], list[list]]:
    """`rollout history`, from ``views.revision_object``s."""
    return (["REVISION", "TEMPLATE", "IMAGE", "AGE", "CAUSE", ""],
            [[o["revision"], o["template"], o["image"], age(epoch(o["createdAt"]), now), o["cause"],
              "current" if o["current"] else ""] for o in objects])


def sync_file_rows(files: dict[str, dict]) -> tuple[list[str], list[list]]:
    """`sync status`: each file of the directory, its state and what it defines (or why it is held)."""
    return (["FILE", "STATE", "RESOURCES / MESSAGE"],
            [[f, v["state"], v["message"] if v["state"] != "ok" else ", ".join(v["resources"])]
             for f, v in sorted(files.items())])
