"""The layering rules of docs/architecture.md, checked on the source (no tool needed)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "reconciler"
PURE = ["plan", "workloads", "scheduler", "actions", "records", "models", "kinds"]


def imported_modules(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(("." * node.level) + (node.module or ""))
    return names


def all_modules() -> list[str]:
    return sorted(p.stem for p in PACKAGE.glob("*.py"))


@pytest.mark.parametrize("module", all_modules())
def test_only_dockerhost_imports_docker_and_only_store_imports_sqlite(module):
    """The Docker SDK and sqlite-utils each stay behind one module."""
    names = imported_modules(module)
    if module != "dockerhost":
        assert not any(n == "docker" or n.startswith("docker.") for n in names), module
    if module != "store":
        assert not any(n.startswith(("sqlite_utils", "sqlite3")) for n in names), module


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_do_no_io(module):
    """Planner, scheduler and records import nothing that talks to the world or the clock."""
    names = imported_modules(module)
    forbidden = {"time", "random", "os", "subprocess", "socket", "requests", ".store", ".dockerhost",
                 ".act", ".controller", ".cli"}
    assert not names & forbidden, f"{module} imports {names & forbidden}"


@pytest.mark.parametrize("module", all_modules())
def test_every_module_has_a_docstring(module):
    """Each module opens by saying what it is and who calls it."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    assert ast.get_docstring(tree), f"reconciler/{module}.py has no module docstring"


def test_read_only_commands_do_not_load_pydantic(tmp_path):
    """`get`, `describe` and `status` need only the store, records and render: keeping pydantic
    (the manifest models) out of them saves ~80 ms of every such call."""
    import subprocess
    import sys

    code = (
        "import sys; sys.argv = ['brokerctl', '--db', sys.argv[1], 'get', 'nodes']\n"
        "from reconciler import cli\n"
        "try:\n    cli.main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'docker'))\n"
        "print(loaded)\nassert not loaded, loaded\n"
    )
    from reconciler.store import Store

    Store(tmp_path / "s.db").close()  # `get` opens a store, it does not create one
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.db")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
