"""The console script's front door (``reconciler.cli.entry``): which command lines it sends itself (a
plain remote `apply`) and which it leaves to the full command line; and the one-request HTTP client it
sends with (``reconciler.client.oneshot``) against raw answers: sized, chunked, cut short, not HTTP."""

from __future__ import annotations

import socket
import threading

import pytest

from reconciler.cli.entry import RemoteApply, _applied, remote_apply
from reconciler.client.oneshot import Unanswered, request

SERVER = ["--server", "http://127.0.0.1:8080", "--token", "bk_a_b"]


@pytest.mark.parametrize("argv, files, namespace", [
    ([*SERVER, "apply", "-f", "a.yaml"], ["a.yaml"], "default"),
    ([*SERVER, "apply", "-f", "a.yaml", "--filename", "b/", "-f", "-"], ["a.yaml", "b/", "-"], "default"),
    ([*SERVER, "apply", "--filename=a.yaml", "-fb.yaml", "-n", "team-a"], ["a.yaml", "b.yaml"], "team-a"),
    ([*SERVER, "apply", "-n", "x", "-f", "a.yaml", "--namespace=team-b"], ["a.yaml"], "team-b"),  # the last wins
    (["apply", "-f", "a.yaml"], ["a.yaml"], "default"),  # the server from the environment or a context
])
def test_a_plain_remote_apply_is_read_as_click_reads_it(argv, files, namespace, monkeypatch):
    monkeypatch.delenv("BROKER_NAMESPACE", raising=False)
    wanted = remote_apply(argv)
    assert wanted is not None and (wanted.files, wanted.namespace) == (files, namespace)


def test_global_options_are_read_before_apply_and_the_last_of_each_wins():
    wanted = remote_apply(["--server", "http://a:1", "--server=http://b:2", "--token", "t", "--ca", "ca.pem",
                           "--context", "c", "apply", "-f", "x"])
    assert wanted == RemoteApply("http://b:2", "t", "ca.pem", "c", ["x"], "default")


def test_the_namespace_comes_from_the_environment_unless_given(monkeypatch):
    monkeypatch.setenv("BROKER_NAMESPACE", "team-c")
    assert remote_apply(["apply", "-f", "x"]).namespace == "team-c"
    assert remote_apply(["apply", "-f", "x", "-n", "team-d"]).namespace == "team-d"
    monkeypatch.setenv("BROKER_NAMESPACE", "")  # click ignores an empty variable
    assert remote_apply(["apply", "-f", "x"]).namespace == "default"


@pytest.mark.parametrize("argv", [
    [*SERVER, "get", "jobs"],
    [*SERVER, "apply", "-f", "a.yaml", "--wait"],
    [*SERVER, "apply", "-f", "a.yaml", "--timeout", "5"],
    [*SERVER, "apply", "--help"],
    [*SERVER, "apply"],  # no -f: click says it is missing
    [*SERVER, "apply", "-f"],
    [*SERVER, "apply", "-f", "--wait"],  # an option where a value goes
    [*SERVER, "apply", "a.yaml"],  # an argument
    [*SERVER, "apply", "-f", "a.yaml", "--", "b"],
    ["--db", "s.db", "apply", "-f", "a.yaml"],
    ["--version", "apply", "-f", "a.yaml"],
    ["--server", "apply", "-f", "a.yaml"],  # `apply` as the value of --server
    [*SERVER, "diff", "-f", "apply"],
    [*SERVER, "apply", "-x", "a.yaml"],
])
def test_anything_else_is_left_to_the_full_command_line(argv):
    assert remote_apply(argv) is None


# -- the one-request client -----------------------------------------------------------------------


@pytest.fixture
def answering():
    """A server that reads a request and writes ``answer[0]`` (bytes) back, then closes; the request
    it read is kept in ``got``."""
    answer: list[bytes] = [b""]
    got: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(body) < length:
                    body += conn.recv(65536)
                got.append(head + b"\r\n\r\n" + body)
                conn.sendall(answer[0])

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/prefix", answer, got
    listener.close()


def test_a_sized_answer_is_read_whole_and_the_request_carries_its_body(answering):
    url, answer, got = answering
    answer[0] = b'HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{"ok": true}'
    done = request(url, None, "POST", "/api/v1/apply?namespace=a", {"Authorization": "Bearer t"}, b'{"x": 1}')
    assert (done.status, done.headers["content-type"], done.body) == (201, "application/json", b'{"ok": true}')
    head, _, body = got[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /prefix/api/v1/apply?namespace=a HTTP/1.1"
    assert {"Connection: close", "Content-Length: 8", "Authorization: Bearer t"} <= set(lines)
    assert body == b'{"x": 1}'


def test_a_chunked_answer_is_put_back_together(answering):
    url, answer, _ = answering
    answer[0] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\n\r\n"
    assert request(url, None, "POST", "/", {}, b"").body == b"hello, world"


@pytest.mark.parametrize("answer, says", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "ended after 5 of its 100 bytes"),
    (b"HTTP/1.1 200 OK\r\nContent-Le", "ended inside its headers"),
    (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP answer"),
])
def test_an_answer_cut_short_or_not_http_is_unanswered_for_a_value_error(answering, answer, says):
    url, answered, _ = answering
    answered[0] = answer
    with pytest.raises(Unanswered, match=says) as failed:
        request(url, None, "POST", "/", {}, b"{}")
    assert isinstance(failed.value.reason, ValueError)


def test_a_connection_closed_without_an_answer_is_a_reset_worded_as_http_client_words_it(answering):
    url, answered, _ = answering
    answered[0] = b""
    with pytest.raises(Unanswered, match="^Remote end closed connection without response$") as failed:
        request(url, None, "POST", "/", {}, b"{}")
    assert isinstance(failed.value.reason, ConnectionResetError)


def test_a_refused_connection_is_the_sockets_error():
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with pytest.raises(Unanswered) as failed:
        request(f"http://127.0.0.1:{port}", None, "POST", "/", {}, b"")
    assert isinstance(failed.value.reason, ConnectionRefusedError)


@pytest.mark.parametrize("body", [b"<html>proxy</html>", b'{"results": [{"name": "x"}]}', b"[1, 2]"])
def test_an_answer_that_is_not_an_applys_is_one_clear_error_and_exit_1(answering, tmp_path, capsys, body):
    url, answered, _ = answering
    answered[0] = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    (tmp_path / "j.yaml").write_text("kind: Job\n")
    with pytest.raises(SystemExit) as exited:
        _applied(RemoteApply(url, "bk_a_b", None, None, [str(tmp_path / "j.yaml")], "default"))
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert f"answered 200 without a brokerctl error: {body.decode()!r}; is it a brokerctl server?" in err


def test_stdin_that_is_not_utf8_is_not_reported_as_an_unreachable_server(answering, tmp_path, monkeypatch):
    """Reading the files is not the request: its failure is not worded as the network's."""
    import io

    url, answered, _ = answering
    answered[0] = b"HTTP/1.1 200 OK\r\nContent-Length: 31\r\n\r\n{\"results\": [], \"warnings\": []}"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"kind: \xff\n"), encoding="utf-8"))
    with pytest.raises(UnicodeDecodeError):
        _applied(RemoteApply(url, "bk_a_b", None, None, ["-"], "default"))
