"""The remote CLI's HTTP client (``reconciler.client.http.Connection``) against a server of the standard
library that records what it is sent: answers that do not stream are asked for gzipped and read back
decompressed; a stream is not asked for gzip."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reconciler.client.http import Connection
from reconciler.errors import BrokerError

LIST = {"kind": "TaskList", "items": [{"id": f"t-{i}", "phase": "Succeeded"} for i in range(200)]}


class Recorder(BaseHTTPRequestHandler):
    """Answers ``LIST``, gzipped when the request accepts gzip (or a broken gzip body on /broken);
    every request's Accept-Encoding is kept in ``seen``."""

    seen: list[str | None] = []

    def do_GET(self):  # noqa: N802 (the standard library's name)
        accepted = self.headers.get("Accept-Encoding")
        Recorder.seen.append(accepted)
        body = json.dumps(LIST).encode()
        zipped = accepted is not None and "gzip" in accepted
        if self.path.startswith("/api/v1/broken"):
            body, zipped = b"\x1f\x8bnot gzip at all", True
        elif zipped:
            body = gzip.compress(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if zipped:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802: an apply's answer
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"results": [{"ref": "job/light", "outcome": "created", "kind": "Job",
                                        "namespace": "default", "name": "light"}], "warnings": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Recorder.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_call_asks_for_gzip_and_gets_the_json_decompressed(server):
    conn = Connection(server, "bk_x_y")
    try:
        assert conn.call("GET", "/api/v1/tasks") == LIST
        assert conn.call("GET", "/api/v1/tasks") == LIST  # on the kept connection too
    finally:
        conn.close()
    assert Recorder.seen == ["gzip", "gzip"]


def test_a_stream_is_not_asked_for_gzip(server):
    conn = Connection(server, "bk_x_y")
    assert list(conn.lines("GET", "/api/v1/tasks")) == [LIST]
    assert Recorder.seen == ["identity"]  # what http.client says when told nothing


def test_a_gzip_answer_that_does_not_decompress_is_one_clear_error(server):
    conn = Connection(server, "bk_x_y")
    try:
        with pytest.raises(BrokerError, match="sent a gzip answer that does not decompress"):
            conn.call("GET", "/api/v1/broken")
    finally:
        conn.close()


def _remote_apply(server: str, tmp_path, loaded: str, front: str = "app") -> list[str]:
    """Run `brokerctl --server URL apply -f` of one Job in a fresh interpreter (``front``: ``app.main``, the
    whole command line; ``entry.main``, the console script's): the lines it printed, then ``LOADED`` and
    the modules ``m`` it imported for which the expression ``loaded`` holds."""
    script = (
        "import sys\n"
        f"from reconciler.cli import {front}\n"
        "sys.argv = ['brokerctl', '--server', sys.argv[2], '--token', 'bk_x_y', 'apply', '-f', sys.argv[1]]\n"
        f"try:\n    {front}.main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        f"print('LOADED', sorted(m for m in sys.modules if {loaded}))\n")
    (tmp_path / "j.yaml").write_text("kind: Job\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    ran = subprocess.run([sys.executable, "-c", script, str(tmp_path / "j.yaml"), server], capture_output=True,
                         text=True, env={**env, "XDG_CONFIG_HOME": str(tmp_path)}, timeout=60)
    assert ran.returncode == 0, ran.stderr
    return ran.stdout.splitlines()


def test_a_remote_apply_loads_the_http_client_alone(server, tmp_path):
    """Start-up is most of a remote `apply`: it imports no views, records, listings or notes (nor
    ``dataclasses``, which building them needs), only what sends the files."""
    assert _remote_apply(server, tmp_path, "m in ('dataclasses', 'reconciler.records', 'reconciler.views', "
                                           "'reconciler.ops.listing', 'reconciler.ops.polling')") == [
        "job/light created", "LOADED []"]


def test_a_remote_apply_imports_no_other_commands_module(server, tmp_path):
    """The root group builds only the command invoked: a remote `apply` imports the module of `apply`
    (``resources``) and none of the other commands' (``tasks``, ``nodes``, ``rollout``, ``login``...)."""
    assert _remote_apply(server, tmp_path, "m.startswith('reconciler.cli.')") == [
        "job/light created",
        "LOADED ['reconciler.cli.app', 'reconciler.cli.common', 'reconciler.cli.entry', 'reconciler.cli.resources', "
        "'reconciler.cli.shell']"]


def test_the_console_script_sends_a_remote_apply_without_typer_or_http_client(server, tmp_path):
    """`brokerctl --server URL apply -f FILE` as the console script runs it: answered by ``cli.entry`` on a
    socket of its own (``client.oneshot``), without starting typer, click, ``http.client`` (and the
    ``email`` package it imports), ssl for a plain http URL, or PyYAML."""
    assert _remote_apply(server, tmp_path, "m.split('.')[0] in ('typer', 'click', 'email', 'ssl', 'yaml') or "
                                           "m in ('http.client', 'reconciler.client.http', 'reconciler.cli.app')",
                         front="entry") == ["job/light created", "LOADED []"]
    assert Recorder.seen == []  # the POST came, and no GET before it
