"""The CLI as a client of `brokerctl server`, over real HTTP: `login` and contexts, where a command
goes (flags, environment, context), the messages of a wrong token, an unreachable server and an
untrusted certificate, and the commands themselves, whose output and exit codes are those of the
same commands run on the server's store (compared as text). On real daemons: a Job applied remotely
completes, `run` exits with the task's code, `get -w` streams.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ServerProcess, cli, editor, in_terminal, job_yaml, nodes_yaml, seen, service_yaml, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import tlscerts  # noqa: E402

from reconciler.store import Store  # noqa: E402

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def home(tmp_path) -> Path:
    """``$XDG_CONFIG_HOME`` of the client commands (where `login` writes config.yaml)."""
    return tmp_path / "config"


def client_env(home: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("BROKER_SERVER", "BROKER_TOKEN", "BROKER_DB", "BROKER_CA")}
    return {**env, "NO_COLOR": "1", "COLUMNS": "200", "XDG_CONFIG_HOME": str(home), **extra}


def brokerctl(home: Path, *args: str, input: str | None = None, timeout: float = 60, **env: str):
    """``brokerctl ARGS`` with no --db: where it goes is up to its flags, ``env`` and the config in ``home``."""
    return subprocess.run([sys.executable, "-m", "reconciler", *args], input=input, capture_output=True, text=True,
                          timeout=timeout, env=client_env(home, **env))


def remote(server: ServerProcess, home: Path, token: str, *args: str, **kw):
    return brokerctl(home, "--server", server.url, "--token", token, *args, **kw)


def same(local, far) -> None:
    """Two runs of one command, on the store and through the server: the same output and exit code (an
    AGE column may have ticked between the two)."""
    def aged(text: str) -> str:  # and the column's width with it (9s, then 10s)
        return re.sub(r"(?<=\s)\d+[smhd]\s+", "<age> ", text)

    assert (far.returncode, aged(far.stdout), far.stderr) == (local.returncode, aged(local.stdout), local.stderr)


@pytest.fixture
def state(tmp_path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def api(db, state):
    """A server without a controller (no daemons needed)."""
    with ServerProcess(db, state, "--no-controller") as server:
        yield server


def token(db: Path, *args: str) -> str:
    return cli(db, "token", "create", *args, check=True).stdout.strip()


# -- login, contexts, where a command goes --------------------------------------------------------


def test_login_checks_the_token_then_saves_a_private_context_and_several_can_be_switched(api, home, db):
    config = home / "brokerctl" / "config.yaml"
    wrong = brokerctl(home, "login", api.url, "--token", "bk_0000_" + "x" * 43)
    assert wrong.returncode == 1
    assert f"error: {api.url} refused the token: the token is not valid" in wrong.stderr
    assert "`brokerctl login URL --token T` with a valid one" in wrong.stderr
    assert not config.exists()  # nothing saved

    done = brokerctl(home, "login", api.url, "--token", api.admin, "--name", "prod")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"logged in to {api.url} as admin (role admin); context prod saved in {config}")
    assert stat.S_IMODE(config.stat().st_mode) == 0o600 and stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    viewer = token(db, "--user", "val", "--role", "view", "--namespace", "default")
    assert "as val (role view in default)" in brokerctl(home, "login", api.url, "--token", viewer, "--name",
                                                        "ro").stdout

    listed = brokerctl(home, "context", "list").stdout.splitlines()
    assert [line.split() for line in listed] == [["CURRENT", "NAME", "SERVER", "CA"], ["-", "prod", api.url, "-"],
                                                 ["*", "ro", api.url, "-"]]
    assert brokerctl(home, "context", "current").stdout.strip() == f"{api.url} (context ro)"
    assert brokerctl(home, "apply", "-f", "-", input=job_yaml("x")).returncode == 1  # a view token may not
    assert brokerctl(home, "context", "use", "prod").stdout.strip() == "switched to context prod"
    assert brokerctl(home, "apply", "-f", "-", input=job_yaml("x")).stdout == "job/x created\n"
    missing = brokerctl(home, "context", "use", "nope")
    assert missing.returncode == 2 and "no context 'nope'" in missing.stderr and "prod, ro" in missing.stderr
    assert brokerctl(home, "logout").stdout.strip() == f"context prod removed from {config}"
    assert "local store" in brokerctl(home, "context", "current").stdout
    assert "prod" not in config.read_text() and "ro:" in config.read_text()


def test_where_a_command_goes_db_then_server_then_env_then_context(api, home, db, tmp_path):
    other = tmp_path / "other.db"
    cli(other, "apply", "-f", "-", input=job_yaml("only-local"), check=True)
    cli(db, "apply", "-f", "-", input=job_yaml("only-served"), check=True)
    assert brokerctl(home, "login", api.url, "--token", api.admin).returncode == 0

    def goes(*args: str, **env: str) -> str:
        out = brokerctl(home, *args, "get", "jobs", "-o", "name", **env)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert goes() == "job/only-served"  # the current context
    assert goes("--db", str(other)) == "job/only-local"  # --db beats the context
    assert goes(BROKER_DB=str(other)) == "job/only-local"  # $BROKER_DB beats the context
    assert goes(BROKER_SERVER=api.url, BROKER_TOKEN=api.admin, BROKER_DB=str(other)) == "job/only-served"
    assert goes("--db", str(other), BROKER_SERVER=api.url, BROKER_TOKEN=api.admin) == "job/only-local"
    bad = brokerctl(home, "--server", api.url, "get", "jobs", BROKER_SERVER="http://127.0.0.1:9", BROKER_TOKEN="t")
    assert bad.returncode == 1 and "refused the token" in bad.stderr  # --server with $BROKER_TOKEN ("t")
    assert goes("--server", api.url, "--token", api.admin, BROKER_SERVER="http://127.0.0.1:9") == "job/only-served"
    no_token = brokerctl(home, "get", "jobs", BROKER_SERVER=api.url)
    assert no_token.returncode == 2 and "$BROKER_SERVER names a server but no token" in no_token.stderr
    refused = brokerctl(home, "--server", api.url, "--token", api.admin, "token", "list")
    assert refused.returncode == 2 and "works on the store itself" in refused.stderr


def test_an_unreachable_server_and_a_wrong_token_are_one_clear_line_and_exit_1(api, home):
    down = brokerctl(home, "--server", "http://127.0.0.1:9", "--token", "t", "get", "jobs")
    assert down.returncode == 1
    assert down.stderr.startswith("error: cannot reach the server http://127.0.0.1:9 (--server): Connection refused; "
                                  "check the URL and that `brokerctl server` runs there")
    # a remote apply is sent by the console script's front door (cli.entry): its failures read the same
    down_apply = brokerctl(home, "--server", "http://127.0.0.1:9", "--token", "t", "apply", "-f", "-",
                           input=job_yaml("x"))
    assert (down_apply.returncode, down_apply.stderr) == (1, down.stderr)
    wrong = remote(api, home, "bk_0000_" + "y" * 43, "get", "jobs")
    assert wrong.returncode == 1 and "refused the token" in wrong.stderr and len(wrong.stderr.splitlines()) == 1
    not_url = brokerctl(home, "--server", "broker:8080", "--token", "t", "get", "jobs")
    assert not_url.returncode == 2 and "is not a URL" in not_url.stderr


def test_a_view_token_applying_gets_a_clear_refusal_and_exit_1(api, home, db):
    viewer = token(db, "--user", "val", "--role", "view", "--namespace", "default")
    refused = remote(api, home, viewer, "apply", "-f", "-", input=job_yaml("x"))
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: user val (role view in default) may not apply job/x")
    assert cli(db, "get", "jobs", "-o", "name").stdout == ""


def test_a_bad_manifest_prints_the_same_errors_as_locally_and_exits_2(api, home, db, tmp_path):
    (tmp_path / "bad.yaml").write_text("apiVersion: broker/v1\nkind: Job\nmetadata: {name: x}\n"
                                       "spec: {template: {imagee: busybox}}\n---\nkind: Nope\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.yaml").write_text(job_yaml("a", completions="3"))
    args = ("apply", "-f", str(tmp_path / "bad.yaml"), "-f", str(tmp_path / "missing.yaml"), "-f", str(tmp_path / "dir"))
    local, far = cli(db, *args), remote(api, home, api.admin, *args)
    same(local, far)
    assert far.returncode == 2 and "spec.template.imagee: unknown field" in far.stderr
    assert "missing.yaml: no such file or directory" in far.stderr and "a.yaml: document 1 (Job/a)" in far.stderr
    assert cli(db, "get", "jobs", "-o", "name").stdout == ""  # nothing written


def test_listings_and_their_options_print_as_on_the_store(api, home, db):
    docs = "---\n".join(job_yaml(n, completions=c) for n, c in (("b", 2), ("a", 3), ("c", 1)))
    applied = remote(api, home, api.admin, "apply", "-f", "-", input=docs)
    assert applied.stdout == "job/b created\njob/a created\njob/c created\n", applied.stderr
    remote(api, home, api.admin, "apply", "-f", "-", input=service_yaml("web", "sleep 1", replicas=2)).check_returncode()
    for args in (["get", "jobs"], ["get", "jobs", "-o", "json"], ["get", "jobs", "-o", "yaml"],
                 ["get", "all", "-o", "name"], ["get", "jobs,svc", "-o", "wide"], ["get", "jobs", "--sort-by", ".spec.completions"],
                 ["get", "jobs", "--sort-by", "NAME", "--limit", "2"], ["get", "jobs", "--limit", "1"],
                 ["get", "jobs", "-A"], ["get", "job", "a", "-o", "yaml"], ["get", "nodes"], ["get", "ns", "-o", "wide"],
                 ["get", "events"], ["get", "jobs", "-l", "nope=1"], ["get", "job", "zz"], ["get", "tasks"],
                 ["get", "tasks", "--phase", "Pending", "--owner", "job/a"], ["describe", "job", "a"],
                 ["describe", "ns", "default"], ["describe", "service", "web"], ["diff", "-f", "-"],
                 ["rollout", "history", "service/web"], ["scale", "service", "web", "--replicas", "2"]):
        text = docs if args[0] == "diff" else None
        same(cli(db, *args, input=text), remote(api, home, api.admin, *args, input=text))
    far = remote(api, home, api.admin, "get", "jobs", "--limit", "1")
    assert far.stdout.splitlines()[1].startswith("a ") and "showing the first 1 of 3 jobs" in far.stderr
    assert remote(api, home, api.admin, "get", "job", "zz").returncode == 1
    deleted = remote(api, home, api.admin, "delete", "jobs", "--all")
    assert deleted.stdout == "job/a deleted\njob/b deleted\njob/c deleted\n", deleted.stderr


def test_edit_through_the_server_prints_and_applies_as_on_the_store(api, home, db, tmp_path):
    """The same round trip as the local edit, with the same output: the document opened, the saved change
    applied (recorded as the token's user), an unchanged or empty file cancelled, a bad edit reopened with
    its error and then fixed, one saved again unchanged given up; a Secret refused before an editor opens."""
    import itertools

    cli(db, "apply", "-f", "-", input=job_yaml("hello", completions=2), check=True)
    runs = itertools.count()

    def edit(where: str, body: str, target: str = "job/hello"):
        folder = tmp_path / f"{where}-{next(runs)}"
        folder.mkdir()
        env = editor(folder, body)
        shown = {k: v for k, v in env.items() if not k.startswith("_")}
        done = (cli(db, "edit", target, env=shown) if where == "local"
                else remote(api, home, api.admin, "edit", target, **shown))
        return done, (seen(env) if Path(env["_seen"]).exists() else [])

    far, opened = edit("far", "text = text.replace('completions: 2', 'completions: 3')")
    assert (far.returncode, far.stdout, far.stderr) == (0, "job/hello edited\n", "")
    assert opened[0].startswith("# Edit the object below") and "completions: 2" in opened[0]
    [job] = json.loads(cli(db, "get", "job", "hello", "-o", "json", check=True).stdout)
    assert job["spec"]["completions"] == 3 and job["metadata"]["updatedBy"] == "admin"
    local, _ = edit("local", "text = text.replace('completions: 3', 'completions: 4')")
    same(local, far)  # "job/hello edited" both
    for body, message in (("text = text + '# a comment\\n'", "Edit cancelled, no changes made.\n"),
                          ("text = ''", "Edit cancelled, saved file was empty.\n")):
        (local, _), (far, _) = edit("local", body), edit("far", body)
        same(local, far)
        assert far.stdout == message
    fix = ("if 'could not be applied' in text:\n"
           "    text = text.replace('completions: -1', 'completions: 9')\n"
           "else:\n"
           "    text = text.replace('completions: 4', 'completions: -1')")
    far, opened = edit("far", fix)
    assert (far.returncode, far.stdout) == (0, "job/hello edited\n"), far.stderr
    assert any(line.startswith("# ") and "spec.completions" in line
               for line in opened[1].split("completions: -1")[0].splitlines()), opened[1]
    give_up = "if 'could not be applied' not in text:\n    text = text.replace('name: hello', 'name: renamed')"
    (local, _), (far, reopened) = edit("local", give_up), edit("far", give_up)
    temporary = re.compile(r"/\S+/brokerctl-edit-job-hello-\w+\.yaml")  # each edit's own file
    assert (far.returncode, temporary.sub("FILE", far.stderr)) == (1, temporary.sub("FILE", local.stderr))
    assert len(reopened) == 2 and "is job/renamed, not job/hello" in far.stderr and "nothing was applied" in far.stderr
    cli(db, "apply", "-f", "-", check=True, input=json.dumps({
        "apiVersion": "broker/v1", "kind": "Secret", "metadata": {"name": "creds"}, "spec": {"stringData": {"k": "v"}}}))
    (local, _), (far, opened) = edit("local", "pass", "secret/creds"), edit("far", "pass", "secret/creds")
    same(local, far)
    assert far.returncode == 2 and "a Secret's values are never shown" in far.stderr and opened == []
    assert json.loads(cli(db, "get", "job", "hello", "-o", "json", check=True).stdout)[0]["spec"]["completions"] == 9


def test_edit_through_the_server_of_a_resource_changed_meanwhile_reopens_at_its_current_version(api, home, db,
                                                                                              tmp_path):
    from test_cli_kubectl import conflicting_edit

    cli(db, "apply", "-f", "-", input=job_yaml("hello", completions=2), check=True)
    other = tmp_path / "other.json"
    other.write_text(cli(db, "get", "job", "hello", "-o", "json", check=True).stdout.replace(
        '"completions": 2', '"completions": 9'))
    env = editor(tmp_path, conflicting_edit(db, other))
    done = remote(api, home, api.admin, "edit", "job/hello", EDITOR=env["EDITOR"], BROKER_EDITOR="")
    assert (done.returncode, done.stdout) == (0, "job/hello edited\n"), done.stderr
    first, second = seen(env)
    assert "# job/hello was changed while it was being edited (generation 1 then, 2 now)" in second
    assert "completions: 9" in second and "completions: 7" not in second
    assert json.loads(cli(db, "get", "job", "hello", "-o", "json", check=True).stdout)[0]["spec"]["completions"] == 8


def test_edit_with_a_view_token_is_refused_before_an_editor_opens(api, home, db, tmp_path):
    cli(db, "apply", "-f", "-", input=job_yaml("hello"), check=True)
    viewer = token(db, "--user", "val", "--role", "view", "--namespace", "default")
    env = editor(tmp_path, "text = text.replace('hello', 'x')")
    refused = remote(api, home, viewer, "edit", "job/hello", EDITOR=env["EDITOR"], BROKER_EDITOR="")
    assert refused.returncode == 1
    assert refused.stderr == ("error: user val (role view in default) may not edit job/hello in namespace default: "
                              "the view role only reads\n")
    assert not Path(env["_seen"]).exists()  # no editor was opened


def test_sync_through_the_server_prints_and_prunes_as_on_the_store(api, home, db, tmp_path):
    """`sync DIR` remotely against a sync of the same directory on a second store: the same lines and exit
    codes as the directory changes (created, an invalid file held back, pruned, a mass prune refused), the
    same `sync status` (the directory named by its absolute path on the client, its git commit); a view
    token is refused."""
    import shutil

    here = tmp_path / "here.db"  # the store a local sync of the same directory goes to
    Store(here).close()
    d = tmp_path / "repo" / "manifests"
    d.mkdir(parents=True)
    (d / "a.yaml").write_text(job_yaml("a"))
    (d / "b.yaml").write_text(job_yaml("b"))
    (d / "c.yaml").write_text(job_yaml("c"))
    (d / "bad.yaml").write_text("apiVersion: broker/v1\nkind: Job\nmetadata: {name: bad}\nspec: {nope: 1}\n")
    git = ["git", "-C", str(d.parent), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    if shutil.which("git"):
        subprocess.run([*git[:3], "init", "-q"], check=True)
        subprocess.run([*git, "add", "."], check=True)
        subprocess.run([*git, "commit", "-qm", "first manifests"], check=True)

    def both(*args: str):
        local, far = cli(here, *args), remote(api, home, api.admin, *args)
        same(local, far)
        return far

    first = both("sync", str(d))
    assert first.returncode == 1 and first.stdout.startswith("job/a created\njob/b created\njob/c created\ninvalid: bad.yaml:")
    assert both("sync", str(d)).stdout.startswith("invalid: bad.yaml:")  # nothing else to change
    (d / "b.yaml").unlink()
    (d / "bad.yaml").write_text(job_yaml("bad"))
    fixed = both("sync", str(d))
    assert (fixed.returncode, fixed.stdout) == (0, "job/bad created\njob/b pruned (deleted)\n")
    assert both("sync", str(d)).stdout == f"{d}: in sync, nothing to change\n"
    for name in ("a", "c", "bad"):
        (d / f"{name}.yaml").unlink()
    refused = both("sync", str(d))
    assert refused.returncode == 1 and "refused: sync of" in refused.stdout and "--allow-mass-prune" in refused.stdout

    def status(*args: str):
        local, far = cli(here, "sync", "status", *args), remote(api, home, api.admin, "sync", "status", *args)
        assert (far.returncode, far.stderr) == (local.returncode, local.stderr) == (0, "")
        unaged = [line for line in far.stdout.splitlines() if not line.startswith("last sync:")]
        assert unaged == [line for line in local.stdout.splitlines() if not line.startswith("last sync:")]
        assert "REFUSED: sync of" in far.stdout  # on the last sync: line
        return "\n".join(unaged) + "\n"

    shown = status(str(d))
    assert f"directory:  {d}\n" in shown
    assert ("commit:     " + ("" if shutil.which("git") else "- ")) in shown
    if shutil.which("git"):
        assert "first manifests" in shown
    assert status() == shown
    pruned = both("sync", str(d), "--allow-mass-prune")
    assert sorted(pruned.stdout.splitlines()) == ["job/a pruned (deleted)", "job/bad pruned (deleted)", "job/c pruned (deleted)"]
    viewer = token(db, "--user", "val", "--role", "view", "--namespace", "default")
    denied = remote(api, home, viewer, "sync", str(d))
    assert (denied.returncode, denied.stderr) == (1, "error: user val (role view in default) may not sync a directory: "
                                                     "only an admin token may (nodes, namespaces and tokens are "
                                                     "cluster-wide)\n")
    missing = remote(api, home, api.admin, "sync", str(tmp_path / "nope"))
    same(cli(here, "sync", str(tmp_path / "nope")), missing)
    assert missing.returncode == 2


def test_a_remote_command_imports_neither_pydantic_nor_docker_nor_the_store(api, home, tmp_path):
    script = (
        "import sys\n"
        "from reconciler.cli.app import app\n"
        "from reconciler.errors import NotFound\n"
        "for args in (['apply', '-f', sys.argv[1]], ['get', 'tasks'], ['get', 'jobs', '-o', 'yaml'], ['sync', sys.argv[4]],\n"
        "             ['sync', 'status']):\n"
        "    app(['--server', sys.argv[2], '--token', sys.argv[3], *args], standalone_mode=False)\n"
        "try:\n"
        "    app(['--server', sys.argv[2], '--token', sys.argv[3], 'exec', 'nope', '--', 'true'], standalone_mode=False)\n"
        "except NotFound as exc:\n"
        "    print('EXEC', exc)\n"
        "print('WS', 'websockets.sync.client' in sys.modules)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'docker', 'sqlite_utils', 'sqlite3',"
        " 'fastapi', 'httpx', 'psycopg') or m.startswith(('reconciler.store', 'reconciler.spec.models', "
        "'reconciler.docker', 'reconciler.api')))\n"
        "print('HEAVY', heavy)\n")
    (tmp_path / "j.yaml").write_text(job_yaml("light"))
    (tmp_path / "synced").mkdir()
    (tmp_path / "synced" / "s.yaml").write_text(job_yaml("synced"))
    ran = subprocess.run([sys.executable, "-c", script, str(tmp_path / "j.yaml"), api.url, api.admin,
                          str(tmp_path / "synced")],
                         capture_output=True, text=True, env=client_env(home), timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert "job/light created" in ran.stdout and "job/synced created" in ran.stdout
    assert "EXEC task 'nope' not found" in ran.stdout  # exec asked the server over its WebSocket
    assert "WS True" in ran.stdout
    assert ran.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_tls_with_the_ca_given_and_a_clear_message_without_it(db, state, home, tmp_path):
    ca = tlscerts.CertAuthority.create(tmp_path / "ca")
    pair = ca.server("server", ips=("127.0.0.1",))
    with ServerProcess(db, state, "--no-controller", "--tls-cert", str(pair.cert), "--tls-key", str(pair.key),
                       ca=ca.cert) as served:
        untrusted = brokerctl(home, "login", served.url, "--token", served.admin)
        assert untrusted.returncode == 1
        assert "its TLS certificate is not trusted" in untrusted.stderr and "--ca FILE" in untrusted.stderr
        done = brokerctl(home, "login", served.url, "--token", served.admin, "--ca", str(ca.cert))
        assert done.returncode == 0, done.stderr
        assert f"ca: {ca.cert}" in (home / "brokerctl" / "config.yaml").read_text()
        assert brokerctl(home, "apply", "-f", "-", input=job_yaml("secure")).stdout == "job/secure created\n"
        assert brokerctl(home, "get", "jobs", "-o", "name").stdout == "job/secure\n"
        plain = brokerctl(home, "--server", served.url.replace("https:", "http:"), "--token", served.admin, "get", "jobs")
        assert plain.returncode == 1 and "cannot reach the server" in plain.stderr
        untrusted_apply = brokerctl(home, "--server", served.url, "--token", served.admin, "apply", "-f", "-",
                                    input=job_yaml("insecure"))
        assert untrusted_apply.returncode == 1 and "its TLS certificate is not trusted" in untrusted_apply.stderr
        plain_apply = brokerctl(home, "--server", served.url.replace("https:", "http:"), "--token", served.admin,
                                "apply", "-f", "-", input=job_yaml("insecure"))
        assert (plain_apply.returncode, plain_apply.stderr) == (1, plain.stderr)
        assert brokerctl(home, "get", "jobs", "-o", "name").stdout == "job/secure\n"  # neither reached the store
        # exec's WebSocket: the same CA from the context, and the same message without it
        found = brokerctl(home, "exec", "nope", "--", "true")
        assert (found.returncode, found.stderr) == (1, "error: task 'nope' not found; `brokerctl get tasks` lists them\n")
        untrusted = brokerctl(home, "--server", served.url, "--token", served.admin, "exec", "nope", "--", "true")
        assert untrusted.returncode == 1 and "its TLS certificate is not trusted" in untrusted.stderr


# -- on real daemons ------------------------------------------------------------------------------


@pytest.fixture
def served(clean_hosts, db, state, home):
    """A server with its controller, the first daemon applied through it; the client logged in."""
    with ServerProcess(db, state, "--docker-timeout", "30", "--probe-timeout", "5", "--lost-after", "60") as server:
        assert brokerctl(home, "login", server.url, "--token", server.admin).returncode == 0
        assert brokerctl(home, "apply", "-f", "-", input=nodes_yaml(clean_hosts[:1])).returncode == 0
        assert brokerctl(home, "wait", f"node/{clean_hosts[0].name}", "--for", "condition=Ready",
                         "--timeout", "30").returncode == 0
        yield server


def test_a_job_applied_remotely_completes_and_reads_back_as_on_the_store(served, home, db):
    applied = brokerctl(home, "apply", "-f", "-", "--wait", "--timeout", "60",
                        input=job_yaml("hello", "echo hello; echo world"))
    assert applied.stdout == "job/hello created\njob/hello complete\n", applied.stderr
    waited = brokerctl(home, "wait", "job/hello", "--for", "condition=Complete")
    assert (waited.returncode, waited.stdout) == (0, "job/hello condition met: Complete\n")
    (task,) = json.loads(cli(db, "get", "tasks", "-o", "json", check=True).stdout)
    for args in (["get", "tasks"], ["get", "tasks", "-o", "wide"], ["get", "tasks", "-o", "json"], ["logs", task["id"]],
                 ["logs", "job/hello"], ["logs", "job/hello", "--tail", "1"], ["logs", task["id"], "--since", "1h"],
                 ["describe", "job", "hello"], ["get", "events"], ["get", "nodes", "-o", "json"],
                 ["wait", "job/hello", "--for", "condition=Failed", "--timeout", "1"]):
        same(cli(db, *args), brokerctl(home, *args))
    assert brokerctl(home, "logs", "job/hello").stdout == f"[{task['id']}] hello\n[{task['id']}] world\n"
    status = brokerctl(home, "status").stdout
    assert f"store:      {db} (id " in status and "controller: running" in status and "nodes:      1 (1 ready)" in status


def test_run_streams_the_output_and_exits_with_the_tasks_code(served, home):
    ran = brokerctl(home, "run", "once", "--image", "busybox", "--", "sh", "-c", "echo out; sleep 0.5; echo err >&2; "
                    "exit 3")
    assert ran.returncode == 3, ran.stderr
    assert ran.stdout == "out\nerr\n"
    again = brokerctl(home, "run", "once", "--image", "busybox", "--", "true")
    assert again.returncode == 2 and "Job 'once' already exists" in again.stderr
    never = brokerctl(home, "run", "nope", "--image", "no-such-image:1", "--", "true")
    assert never.returncode == 125, never.stderr


def test_get_w_streams_a_job_until_it_completes(served, home):
    """The job's row is printed when it appears and again as it changes (the API's watch reads every
    0.5 s, so a phase that lasts less may be passed over)."""
    watching = subprocess.Popen([sys.executable, "-m", "reconciler", "get", "jobs", "-w"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=client_env(home))
    try:
        time.sleep(1.5)
        assert brokerctl(home, "apply", "-f", "-", input=job_yaml("w", "sleep 1")).returncode == 0
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = watching.stdout.readline()
            lines.append(line)
            if " Complete " in line:
                break
        phases = [line.split()[1] for line in lines if line.startswith("w ")]
        assert lines[0].split()[:2] == ["NAME", "PHASE"], lines  # the (empty) table's header, then rows as they change
        assert len(phases) >= 2 and phases[0] in ("Pending", "Running") and phases[-1] == "Complete", lines
    finally:
        watching.send_signal(signal.SIGTERM)
        watching.wait(10)
    assert watching.returncode == 0


def test_follow_logs_remotely_prints_each_line_as_it_is_written(served, home, db):
    brokerctl(home, "apply", "-f", "-", input=job_yaml("talk", "echo one; sleep 5; echo two")).check_returncode()
    wait_for(lambda: "Running" in cli(db, "get", "jobs").stdout, 30, "the job to run")
    follower = subprocess.Popen([sys.executable, "-m", "reconciler", "logs", "-f", "job/talk"], stdout=subprocess.PIPE,
                                text=True, env=client_env(home))
    first = follower.stdout.readline()
    assert first.endswith("] one\n") and "Running" in cli(db, "get", "jobs").stdout
    assert follower.stdout.readline().endswith("] two\n")
    assert follower.wait(30) == 0


# -- exec over the server's WebSocket ----------------------------------------------------------------


@pytest.fixture
def sleeper(served, home, db) -> str:
    """A running task whose container sleeps; its id."""
    brokerctl(home, "apply", "-f", "-", input=job_yaml("sleeper", "sleep 300", terminationGracePeriodSeconds=0)
              ).check_returncode()

    def running():
        found = [t["id"] for t in json.loads(cli(db, "get", "tasks", "-o", "json", check=True).stdout)
                 if t["phase"] == "Running"]
        return found[0] if found else None

    return wait_for(running, 60, "the sleeper running")


def test_exec_through_the_server_prints_and_exits_as_on_the_store(sleeper, home, db):
    """stdout and stderr apart, the command's exit code; `-i` pipes stdin to the end (a large input too);
    a missing command, an unknown task and a task that is not running: the local messages and exits."""
    args = ["exec", sleeper, "--", "sh", "-c", "echo out; echo err >&2; exit 7"]
    local, far = cli(db, *args), brokerctl(home, *args)
    same(local, far)
    assert (far.returncode, far.stdout, far.stderr) == (7, "out\n", "err\n")
    piped = ["exec", "-i", sleeper, "--", "cat"]
    local, far = cli(db, *piped, input="hello\nworld\n"), brokerctl(home, *piped, input="hello\nworld\n")
    same(local, far)
    assert (far.returncode, far.stdout) == (0, "hello\nworld\n")
    big = "x" * 300_000
    counted = brokerctl(home, "exec", "-i", sleeper, "--", "wc", "-c", input=big)
    assert (counted.returncode, counted.stdout.strip()) == (0, "300000"), counted.stderr
    without = brokerctl(home, "exec", sleeper, "--", "sh", "-c", "cat; echo done", input="ignored\n")
    assert (without.returncode, without.stdout) == (0, "done\n")  # no -i: the command's stdin is empty
    for args in (["exec", sleeper], ["exec", "no-such-task", "--", "true"]):
        same(cli(db, *args), brokerctl(home, *args))
    brokerctl(home, "apply", "-f", "-", "--wait", "--timeout", "60", input=job_yaml("done", "true")).check_returncode()
    (finished,) = [t["id"] for t in json.loads(cli(db, "get", "tasks", "-o", "json", check=True).stdout)
                   if t["owner"] == "Job/done"]
    local, far = cli(db, "exec", finished, "--", "true"), brokerctl(home, "exec", finished, "--", "true")
    same(local, far)
    assert far.returncode == 1 and f"task {finished} is Succeeded, not Running" in far.stderr


def test_exec_needs_a_token_that_may_write_in_the_tasks_namespace_and_nothing_runs_otherwise(sleeper, served,
                                                                                            home, db):
    viewer = token(db, "--user", "val", "--role", "view", "--namespace", "default")
    other = token(db, "--user", "olga", "--role", "edit", "--namespace", "team-b")
    editor = token(db, "--user", "ed", "--role", "edit", "--namespace", "default")
    touch = ["exec", sleeper, "--", "touch", "/tmp/ran"]
    refused = remote(served, home, viewer, *touch)
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr == (f"error: user val (role view in default) may not exec in task {sleeper} in namespace "
                              "default: the view role only reads\n")
    hidden = remote(served, home, other, *touch)  # a namespace the token does not reach: not found there
    assert (hidden.returncode, hidden.stderr) == (1, f"error: task '{sleeper}' not found; `brokerctl get tasks` "
                                                     "lists them\n")
    wrong = remote(served, home, "bk_0000_" + "y" * 43, *touch)
    assert wrong.returncode == 1 and "refused the token: the token is not valid" in wrong.stderr
    assert cli(db, "exec", sleeper, "--", "test", "-e", "/tmp/ran").returncode == 1  # nothing ran
    assert remote(served, home, editor, *touch).returncode == 0
    assert cli(db, "exec", sleeper, "--", "test", "-e", "/tmp/ran").returncode == 0


def test_exec_it_through_the_server_gives_the_command_a_terminal(sleeper, home):
    """Run from a terminal (a pty), `exec -it` through the server: the command has a terminal, reads the
    keys typed (the local terminal in raw mode) and its exit code comes back."""
    code, printed = in_terminal(["exec", "-it", sleeper, "--", "sh", "-c",
                                 '[ -t 0 ] && echo has-tty; read x; echo "got-$x"; exit 4'],
                                client_env(home), b"has-tty", b"abc\r", b"got-abc")
    assert code == 4, printed
    assert b"has-tty" in printed and b"got-abc" in printed
