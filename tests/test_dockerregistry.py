"""scripts/dockerregistry.py: a private registry with basic auth, pushed to and pulled from by real daemons.

The session's daemons reach it over plain HTTP on 127.0.0.1 without any
flag (dockerd counts 127.0.0.0/8 as insecure registries).  The messages
pinned here are what a pull gets from the daemon: without credentials
"no basic auth credentials", with a wrong password "unauthorized:
authentication required".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import docker.errors
import dockerhosts
import dockerregistry
import pytest
from conftest import forget_images

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "dockerregistry.py"


def _pull(host: dockerhosts.DockerHost, ref: str, auth_config: dict | None):
    client = host.client(timeout=60)
    try:
        repository, tag = ref.rsplit(":", 1)
        return client.images.pull(repository, tag, auth_config=auth_config)
    finally:
        client.close()


def test_registry_api_needs_credentials(registry):
    status, body = registry.get("/v2/", auth=False)
    assert status == 401
    assert json.loads(body)["errors"][0]["code"] == "UNAUTHORIZED"
    assert registry.get("/v2/")[0] == 200


def test_push_with_credentials_lands_in_registry(registry, pushed, docker_hosts):
    assert pushed == f"{registry.address}/team/busybox:latest"
    assert registry.tags("team/busybox") == ["latest"]


def test_push_without_credentials_is_refused(registry, docker_hosts):
    client = docker_hosts[0].client(timeout=60)
    try:
        with pytest.raises(RuntimeError, match="push of .*/team/anonymous:latest failed:"
                                               " no basic auth credentials"):
            dockerregistry.push_image(client, registry, "busybox:latest", "team/anonymous",
                                      auth_config={})
    finally:
        client.close()
    assert registry.tags("team/anonymous") == []


def test_pull_with_credentials_gets_the_pushed_image(registry, pushed, docker_hosts):
    host = docker_hosts[1]
    forget_images(host, registry)
    image = _pull(host, pushed, registry.auth_config())
    source = docker_hosts[0].client()
    try:
        # Same config, same image id: what arrived is what was pushed.
        assert image.id == source.images.get("busybox:latest").id
    finally:
        source.close()
    client = host.client(timeout=60)
    try:
        assert client.containers.run(pushed, ["echo", "pulled"], remove=True) == b"pulled\n"
    finally:
        client.close()


def test_pull_without_credentials_is_refused(registry, pushed, docker_hosts):
    host = docker_hosts[2]
    forget_images(host, registry)
    with pytest.raises(docker.errors.APIError) as refused:
        _pull(host, pushed, None)
    assert refused.value.status_code == 500
    assert (f'Head "http://{registry.address}/v2/team/busybox/manifests/latest":'
            f" no basic auth credentials") in str(refused.value)
    client = host.client()
    try:
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(pushed)
    finally:
        client.close()


def test_pull_with_wrong_password_is_unauthorized(registry, pushed, docker_hosts):
    host = docker_hosts[2]
    forget_images(host, registry)
    with pytest.raises(docker.errors.APIError) as refused:
        _pull(host, pushed, registry.auth_config(password="wrong"))
    assert refused.value.status_code == 500
    assert "unauthorized: authentication required" in str(refused.value)


def test_remove_stops_process_and_deletes_dir(registry):
    other = dockerregistry.start_registry(users={"solo": "pw"})
    pid, dir, address = other.pid, other.dir, other.address
    assert other.get("/v2/")[0] == 200
    other.remove()
    assert not dockerregistry.pid_running(pid)
    assert not dockerregistry.listening(other.ip, other.port)
    assert not dir.exists()
    other.remove()


def test_cli_up_down(registry):
    dir = Path(f"/tmp/bkreg-cli{os.getpid()}")
    up = subprocess.run([sys.executable, str(SCRIPT), "up", "--dir", str(dir),
                         "--user", "ci", "--password", "s3cret"],
                        capture_output=True, text=True, timeout=60)
    try:
        assert up.returncode == 0, up.stderr
        state = dockerregistry.read_state(dir)
        assert up.stdout.strip() == state.address
        assert state.users == {"ci": "s3cret"}
        assert state.get("/v2/")[0] == 200
        assert state.get("/v2/", auth=False)[0] == 401
    finally:
        down = subprocess.run([sys.executable, str(SCRIPT), "down", "--dir", str(dir)],
                              capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    assert not dir.exists()
    assert not dockerregistry.pid_running(state.pid)
