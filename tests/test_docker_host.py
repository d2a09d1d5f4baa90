"""reconciler.docker.host against a real daemon: how a task's log stream ends when its container cannot
give one (`brokerctl logs -f` and `run` read through ``Host.logs``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import docker.errors
import pytest

from helpers import wait_for

from reconciler.docker import host as dockerhost


@pytest.fixture
def h1(clean_hosts):
    host = clean_hosts[0]
    client = host.client()
    yield host, client
    client.close()


def rootfs(host, container_id: str) -> Path:
    """The container's writable layer on the daemon's disk (the test daemons use the vfs driver)."""
    data = host.dir / "data"
    mount_id = (data / "image" / "vfs" / "layerdb" / "mounts" / container_id / "mount-id").read_text().strip()
    return data / "vfs" / "dir" / mount_id


def closing_connect(closed: list):
    """``connect`` as it is, noting each real client it made when that client is closed."""
    real = dockerhost.connect

    def connect(*args, **kwargs):
        client = real(*args, **kwargs)
        close = client.close

        def noted_close():
            closed.append(client)
            close()

        client.close = noted_close
        return client

    return connect


def test_a_log_stream_on_a_container_being_removed_ends_quietly(h1, monkeypatch):
    """The controller may collect and remove a container while `run` or `logs -f` streams it: the
    stream ends after what the container printed (the stored output has the rest) instead of failing
    the command, and its client is closed."""
    host, client = h1
    c = client.containers.run("busybox:latest", ["sh", "-c", "echo partial; sleep 600"], detach=True)
    closed: list = []
    monkeypatch.setattr(dockerhost, "connect", closing_connect(closed))
    stream = dockerhost.Host("h1", host.address).logs(c.id, follow=True)

    assert next(stream) == b"partial\n"
    client.api.remove_container(c.id, force=True)
    assert list(stream) == []
    assert len(closed) == 1


def test_a_log_stream_asked_of_a_container_marked_for_removal_ends_quietly(h1, monkeypatch):
    """When the stream starts just as the controller removes the container, the daemon answers 409
    ("dead or marked for removal"): the stream ends at once, quietly, and its client is closed. A
    container whose removal failed half-way is in that state for as long as we like, so it stands in
    for one being removed."""
    host, client = h1
    c = client.containers.run("busybox:latest", ["sh", "-c", "touch /pinned; sleep 600"], detach=True)
    pinned = rootfs(host, c.id) / "pinned"
    wait_for(pinned.exists, 10, "the container to write /pinned")
    subprocess.run(["chattr", "+i", str(pinned)], check=True)  # the daemon cannot delete it: removal fails
    try:
        with pytest.raises(docker.errors.APIError):
            c.remove(force=True)
        with pytest.raises(docker.errors.APIError) as refused:
            client.api.logs(c.id, stream=True, follow=True)
        assert refused.value.status_code == 409 and "marked for removal" in str(refused.value)

        closed: list = []
        monkeypatch.setattr(dockerhost, "connect", closing_connect(closed))
        assert list(dockerhost.Host("h1", host.address).logs(c.id, follow=True)) == []
        assert len(closed) == 1
    finally:
        subprocess.run(["chattr", "-i", str(pinned)], check=True)
        client.api.remove_container(c.id, force=True)


def test_other_log_errors_still_raise(h1, monkeypatch):
    """Only 409 ends a stream quietly: a daemon that cannot read a container's log (log driver `none`:
    501) is an error the command reports; the client is closed all the same."""
    host, client = h1
    c = client.containers.run("busybox:latest", ["sleep", "600"], detach=True, log_config={"Type": "none"})
    try:
        closed: list = []
        monkeypatch.setattr(dockerhost, "connect", closing_connect(closed))
        with pytest.raises(docker.errors.APIError) as raised:
            list(dockerhost.Host("h1", host.address).logs(c.id, follow=True))
        assert raised.value.status_code == 501
        assert len(closed) == 1
    finally:
        client.api.remove_container(c.id, force=True)
