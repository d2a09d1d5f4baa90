"""The layering rules of docs/architecture.md, checked on the source: import-linter's contracts
(pyproject.toml) for the layers, and AST checks for what a contract cannot say (no I/O in pure
modules, no SQL outside the store)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "reconciler"
# Modules that decide without touching the world: they take time, randomness and hosts as arguments.
PURE = ("reconciler.engine", "reconciler.spec", "reconciler.records", "reconciler.kinds", "reconciler.errors",
        "reconciler.views")
IO_MODULES = {"time", "random", "os", "subprocess", "socket", "requests", "threading", "sqlite3", "sqlite_utils",
              "docker", "psycopg"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(module: str) -> set[str]:
    """Absolute names of everything ``module`` imports (function-level imports included)."""
    path = all_modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                prefix = ".".join(base)
                names.add(f"{prefix}.{node.module}" if node.module else prefix)
                if not node.module:  # `from . import x`: x is a module of that package
                    names |= {f"{prefix}.{a.name}" for a in node.names}
            else:
                names.add(node.module or "")
    return names


def _under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("module", sorted(all_modules()))
def test_only_the_docker_package_imports_docker_and_only_the_store_speaks_sql(module):
    """The Docker SDK stays behind reconciler.docker; sqlite and PostgreSQL drivers behind reconciler.store."""
    names = imported_modules(module)
    if not _under(module, "reconciler.docker"):
        assert not any(_under(n, "docker") for n in names), module
    if not _under(module, "reconciler.store"):
        assert not any(_under(n, "sqlite_utils", "sqlite3", "psycopg") for n in names), module


# SQL statements as the code writes them: upper-case keywords in a statement's shape. Prose ("select a
# node", "Update the spec") does not match; neither do docstrings, which the check skips.
SQL = re.compile(
    r"\bSELECT\b.+?\bFROM\s+\w|\bINSERT\s+(?:OR\s+[A-Z]+\s+)?INTO\s+\w|\bUPDATE\s+\w+\s+SET\b"
    r"|\bDELETE\s+FROM\s+\w|\b(?:CREATE|ALTER|DROP)\s+(?:TABLE|(?:UNIQUE\s+)?INDEX|VIEW|TRIGGER)\b"
    r"|^\s*PRAGMA\s+\w|\bPRAGMA\s+\w+\s*=|^\s*(?:BEGIN|COMMIT|ROLLBACK)\b",
    re.DOTALL,
)


def string_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of each string literal that is not a docstring; an f-string's holes read as ``{}``."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant) and isinstance(node.body[0].value.value, str)}
    inside_fstrings = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(p.value if isinstance(p, ast.Constant) else "{}" for p in node.values)
            found.append((node.lineno, text))
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
              and id(node) not in inside_fstrings):
            found.append((node.lineno, node.value))
    return found


def sql_in(source: str) -> list[str]:
    return [f"line {line}: {text.strip()[:80]}" for line, text in string_literals(source) if SQL.search(text)]


@pytest.mark.parametrize("module", sorted(m for m in all_modules() if not _under(m, "reconciler.store")))
def test_only_the_store_contains_sql(module):
    """SQL lives in reconciler.store only: the rule the import check above cannot see (a module can run SQL
    through a connection the store handed it)."""
    assert sql_in(all_modules()[module].read_text()) == [], module


@pytest.mark.parametrize("text, is_sql", [
    ('db.execute("SELECT phase, owner_kind, owner_name FROM tasks WHERE id = ?", [i])', True),
    ('db.execute(f"UPDATE tasks SET {sets} WHERE id = ?", values)', True),
    ('db.execute("INSERT OR REPLACE INTO lease (id) VALUES (1)")', True),
    ('q = ("DELETE FROM task_logs "\n     "WHERE task_id = ?")', True),
    ('x = "CREATE TABLE meta (key TEXT)"', True),
    ('x = "ALTER TABLE resources ADD COLUMN source TEXT"', True),
    ('x = "PRAGMA data_version"', True),
    ('x = f"PRAGMA busy_timeout = {ms}"', True),
    ('x = "BEGIN IMMEDIATE"', True),
    ('"""Polls PRAGMA data_version; SELECT * FROM tasks is what it reads."""', False),  # a module docstring
    ('def f():\n    """UPDATE tasks SET phase: explained."""', False),
    ('log.info("select a node from the free ones")', False),
    ('raise UsageError("Update the spec, then apply; delete from the directory to prune")', False),
    ('msg = f"{n} SELECTED, {m} created"', False),
    ('REASON = "DELETED"', False),
])
def test_the_sql_check_tells_statements_from_prose(text, is_sql):
    assert bool(sql_in(text)) is is_sql


@pytest.mark.parametrize("module", sorted(m for m in all_modules() if _under(m, *PURE)))
def test_pure_modules_do_no_io(module):
    """The engine, the manifest models and the vocabulary import nothing that talks to the world or the
    clock, and nothing of the layers that do (loading manifests reads the files it is given, no more)."""
    names = imported_modules(module) - ({"os"} if module in ("reconciler.spec.manifests", "reconciler.spec.sources")
                                        else set())  # the two that read the files a command names
    io = {n for n in names if _under(n, *IO_MODULES)}
    upward = {n for n in names if _under(n, "reconciler.store", "reconciler.docker", "reconciler.runtime",
                                         "reconciler.ops", "reconciler.cli")}
    assert not io | upward, f"{module} imports {sorted(io | upward)}"


@pytest.mark.parametrize("module", sorted(m for m in all_modules() if _under(m, "reconciler.cli")))
def test_the_cli_reaches_the_store_docker_and_the_engine_only_through_ops(module):
    """A command parses its arguments, calls a verb of ``ops`` and renders the result, so an HTTP API
    calling the same verbs does what the CLI does: the CLI imports the verbs and the vocabulary
    (kinds, errors, records, views), never the store, Docker, the runtime, the engine or the manifest
    models; only `server` imports the API (the server it starts)."""
    names = imported_modules(module)
    ours = {n for n in names if _under(n, "reconciler") and n != "reconciler"}
    allowed = ("reconciler.cli", "reconciler.client", "reconciler.ops", "reconciler.views", "reconciler.errors",
               "reconciler.kinds", "reconciler.records") + (("reconciler.api.server",) if module == "reconciler.cli.server" else ())
    beside = {n for n in ours if not _under(n, *allowed)}
    drivers = {n for n in names if _under(n, "docker", "sqlite_utils", "sqlite3", "psycopg", "pydantic")}
    assert not beside | drivers, f"{module} imports {sorted(beside | drivers)}"


@pytest.mark.parametrize("module", sorted(m for m in all_modules() if _under(m, "reconciler.api")))
def test_the_api_reaches_the_store_docker_and_the_engine_only_through_ops(module):
    """The HTTP API is a front end like the CLI: a handler calls the verb the CLI command calls, so
    nothing is written twice; it imports the verbs and the vocabulary, never the store, Docker, the
    runtime, the engine or the manifest models."""
    names = imported_modules(module) - {"reconciler.__version__"}
    ours = {n for n in names if _under(n, "reconciler") and n != "reconciler"}
    allowed = ("reconciler.api", "reconciler.ops", "reconciler.views", "reconciler.errors", "reconciler.kinds",
               "reconciler.records")
    beside = {n for n in ours if not _under(n, *allowed)}
    drivers = {n for n in names if _under(n, "docker", "sqlite_utils", "sqlite3", "psycopg", "reconciler.spec")}
    assert not beside | drivers, f"{module} imports {sorted(beside | drivers)}"


@pytest.mark.parametrize("module", sorted(all_modules()))
def test_every_module_has_a_docstring(module):
    """Each module opens by saying what it is and who calls it."""
    tree = ast.parse(all_modules()[module].read_text())
    assert ast.get_docstring(tree), f"{module} has no module docstring"


def test_read_only_commands_do_not_load_pydantic(tmp_path):
    """`get`, `describe` and `status` need only the store, records and views: keeping pydantic
    (the manifest models) out of them saves ~80 ms of every such call."""
    import subprocess
    import sys

    code = (
        "import sys; sys.argv = ['brokerctl', '--db', sys.argv[1], 'get', 'nodes']\n"
        "from reconciler.cli import app\n"
        "try:\n    app.main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'docker'))\n"
        "print(loaded)\nassert not loaded, loaded\n"
    )
    from reconciler.store import Store

    Store(tmp_path / "s.db").close()  # `get` opens a store, it does not create one
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.db")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_import_contracts_hold():
    """`lint-imports` (the contracts in pyproject.toml): layers import downward only; the engine never
    reaches the store or Docker; the CLI reaches them only through ops; only the docker package imports
    the SDK and only the store a database driver."""
    import subprocess
    import sys

    done = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_sqlite_commands_and_help_do_not_load_the_postgresql_driver(tmp_path):
    """psycopg is imported only for a PostgreSQL store: `--help` and every command on a SQLite store start
    without it."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom reconciler.cli import app\n"
        "for argv in (['brokerctl', '--help'], ['brokerctl', '--db', sys.argv[1], 'get', 'nodes']):\n"
        "    sys.argv = argv\n"
        "    try:\n        app.main()\n    except SystemExit as e:\n        assert not e.code, e.code\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'psycopg_binary'))\n"
        "assert not loaded, loaded\n"
    )
    from reconciler.store import Store

    Store(tmp_path / "s.db").close()
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.db")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_help_and_get_nodes_do_not_load_cryptography(tmp_path):
    """The cipher of Secrets is imported only when a Secret is sealed or read: `--help` and `get nodes` on a
    store that holds Secrets start without it."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom reconciler.cli import app\n"
        "for argv in (['brokerctl', '--help'], ['brokerctl', '--db', sys.argv[1], 'get', 'nodes'],\n"
        "             ['brokerctl', '--db', sys.argv[1], 'get', 'secrets']):\n"
        "    sys.argv = argv\n"
        "    try:\n        app.main()\n    except SystemExit as e:\n        assert not e.code, e.code\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'cryptography')\n"
        "assert not loaded, loaded\n"
    )
    from reconciler.spec.manifests import load_text
    from reconciler.store import Store

    store = Store(tmp_path / "s.db")
    store.apply([i.resource for i in load_text(
        "apiVersion: broker/v1\nkind: Secret\nmetadata: {name: db}\nspec: {stringData: {password: pw}}\n")])
    store.close()
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.db")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "db" in done.stdout  # `get secrets` listed it


def test_help_and_get_do_not_load_the_servers_libraries(tmp_path):
    """FastAPI, uvicorn and prometheus-client are for `brokerctl server` alone (imported when it runs):
    `--help` and `get nodes` start without them."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom reconciler.cli import app\n"
        "for argv in (['brokerctl', '--help'], ['brokerctl', '--db', sys.argv[1], 'get', 'nodes']):\n"
        "    sys.argv = argv\n"
        "    try:\n        app.main()\n    except SystemExit as e:\n        assert not e.code, e.code\n"
        "heavy = ('fastapi', 'starlette', 'uvicorn', 'prometheus_client', 'anyio', 'httpx')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith('reconciler.api'))\n"
        "assert not loaded, loaded\n"
    )
    from reconciler.store import Store

    Store(tmp_path / "s.db").close()
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.db")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "server" in done.stdout  # --help lists the command (imported lazily, not absent)
