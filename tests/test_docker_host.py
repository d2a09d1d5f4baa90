"""reconciler.docker.host against a real daemon: how a task's log stream ends when its container cannot
give one (`brokerctl logs -f` and `run` read through ``Host.logs``), and the image-user check of a start
where the task's namespace forbids root."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import docker.errors
import pytest

from helpers import probe_once, wait_for

from reconciler.docker import host as dockerhost
from reconciler.records import LABEL_MARK, LABEL_NAMESPACE, LABEL_STORE, ContainerSpec


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


# -- a namespace that forbids root -------------------------------------------------------------------


def image_running_as(client, user: str) -> str:
    """busybox with its default user set to ``user`` (``docker commit --change USER``), made on this daemon."""
    c = client.api.create_container("busybox:latest", ["true"])
    try:
        tag = f"runas-{uuid.uuid4().hex[:8]}"
        client.api.commit(c["Id"], repository="runas", tag=tag, conf={"User": user})
        return f"runas:{tag}"
    finally:
        client.api.remove_container(c["Id"], force=True)


def non_root_spec(image: str, user: str | None = None, non_root: bool = True) -> ContainerSpec:
    name = f"bk-test-{uuid.uuid4().hex[:8]}"
    return ContainerSpec(name=name, image=image, command=["sleep", "60"], env={}, user=user, non_root=non_root,
                         labels={LABEL_STORE: "test", LABEL_MARK: name, LABEL_NAMESPACE: "team-a"})


def test_where_root_is_forbidden_a_task_without_a_user_starts_only_if_its_image_runs_as_a_uid_other_than_0(h1):
    """busybox runs as root: refused (RunAsRoot, saying how to fix it) and its container removed; an image
    whose user is a name is refused too (only the image's /etc/passwd knows that uid); one running as
    uid 1234 starts. A user set on the task, or a namespace that allows root, skips the check."""
    host, client = h1
    numeric, named = image_running_as(client, "1234"), image_running_as(client, "nobody")
    target = dockerhost.Host("h1", host.address)
    try:
        for image, runs in (("busybox:latest", "as root"), (named, "as user 'nobody', a name that may be root,")):
            spec = non_root_spec(image)
            with pytest.raises(dockerhost.StartError) as refused:
                target.start(spec)
            assert (refused.value.reason, refused.value.message) == (
                "RunAsRoot", f"image {image} runs {runs} and namespace team-a forbids root; set template.user")
            assert client.api.containers(all=True, filters={"name": spec.name}) == []
        started = [target.start(non_root_spec(numeric)), target.start(non_root_spec("busybox:latest", user="1001")),
                   target.start(non_root_spec("busybox:latest", non_root=False))]
        assert [client.api.inspect_container(c)["Config"]["User"] for c in started] == ["1234", "1001", ""]
        assert all(client.api.inspect_container(c)["State"]["Running"] for c in started)
    finally:
        target.close()
        for c in client.api.containers(all=True, filters={"label": f"{LABEL_STORE}=test"}):
            client.api.remove_container(c["Id"], force=True)
        for image in (numeric, named):
            client.api.remove_image(image, force=True)


def test_a_container_created_before_a_crash_is_checked_before_it_is_adopted_and_started(h1):
    """A controller that died between create and start left the task's container (with its mark): the
    next start adopts it only after the same check, so it never runs as root either."""
    host, client = h1
    target = dockerhost.Host("h1", host.address)
    spec = non_root_spec("busybox:latest")
    try:
        target._create(spec)  # what the first controller did before it died
        with pytest.raises(dockerhost.StartError, match="^RunAsRoot: image busybox:latest runs as root"):
            target.start(spec)
        assert client.api.containers(all=True, filters={"name": spec.name}) == []
    finally:
        target.close()


def test_the_prober_pings_a_daemon_on_one_kept_connection_and_says_why_another_does_not_answer(h1):
    """The prober's ``/_ping`` (its selector loop, without the Docker SDK) keeps one connection to a
    daemon that answers, and names the failure of an address where nothing listens."""
    from types import SimpleNamespace

    from reconciler.docker.probe import Prober

    host, _ = h1
    prober = Prober(interval=0.1, timeout=5.0)
    try:
        prober.track({"h1": SimpleNamespace(address=host.address, tls=None)})
        wait_for(lambda: prober.state("h1").ok, 10, "the first probe")
        sock = prober._probes["h1"].sock
        first = prober.state("h1").last_ok
        wait_for(lambda: prober.state("h1").last_ok != first, 10, "a second probe")
        assert prober.state("h1").ok and prober._probes["h1"].sock is sock
    finally:
        prober.stop()
    assert probe_once(f"tcp://{host.ip}:1")[0] == "connection refused or unreachable"
