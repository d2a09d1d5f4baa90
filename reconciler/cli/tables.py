"""Tables for people: rows of tasks and resources, printed with rich on a terminal and as plain
aligned text when piped. Called by the CLI commands."""

from __future__ import annotations

import sys
import time
from ..kinds import TaskPhase
from ..records import TaskRecord


def age(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "-"
    s = max(0, int((now or time.time()) - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def print_table(columns: list[str], rows: list[list], *, file=None) -> None:
    """A table for people. On a terminal rich fits it to the width (folding long cells); piped,
    each row is one line however long, so `grep`, `awk` and `sort` see whole rows."""
    out = file or sys.stdout
    cells = [["-" if v is None or v == "" else str(v) for v in row] for row in rows]
    if not out.isatty():
        _print_plain(columns, cells, out)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for c in columns:
        table.add_column(c, overflow="fold")
    for row in cells:
        table.add_row(*row)
    Console(file=out, soft_wrap=True).print(table)


def _print_plain(columns: list[str], rows: list[list[str]], out) -> None:
    """Columns padded to their widest cell and two spaces apart, as rich lays them out, never wrapped.

    A newline inside a cell would start a false row: it is shown as a space."""
    from rich.cells import cell_len  # display width: wide characters take two columns

    def width(text: str) -> int:
        return len(text) if text.isascii() else cell_len(text)

    rows = [[c.replace("\n", " ") if "\n" in c else c for c in row] for row in rows]
    widths = [max([width(c)] + [width(row[i]) for row in rows]) for i, c in enumerate(columns)]
    last = len(columns) - 1
    lines = ["  ".join(cell if i == last else cell + " " * (widths[i] - width(cell)) for i, cell in enumerate(row))
             for row in [columns, *rows]]
    out.write("\n".join(lines) + "\n")


def task_rows(tasks: list[TaskRecord], wide: bool, now: float) -> tuple[list[str], list[list]]:
    cols = ["ID", "OWNER", "PHASE", "NODE", "EXIT", "AGE", "REASON"]
    if wide:
        cols += ["ATTEMPT", "CONTAINER", "MESSAGE"]
    rows = []
    for t in tasks:
        row = [t.id, t.owner, t.phase._value_, t.node, t.exit_code, age(t.created_at, now), _reason(t)]
        if wide:
            row += [t.attempt, (t.container_id or "")[:12], t.message]
        rows.append(row)
    return cols, rows


def _reason(t: TaskRecord) -> str:
    if t.phase is TaskPhase.PENDING and t.message:
        return f"{t.reason}: {t.message}" if t.reason else t.message
    return t.reason

