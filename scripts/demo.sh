#!/usr/bin/env bash
# The demo: `bash scripts/demo.sh` on a fresh Debian 12 machine as root.
#
# Installs what it needs (Docker engine, a static busybox for the demo image, a venv with
# brokerctl), makes Docker hosts available, starts the controller on the embedded SQLite store,
# keeps a copy of the sample manifests in manifests/ in sync (`controller --watch`), waits for the
# Job and the Service, edits the Service's file (3 replicas, a new command: a rolling update),
# shows `brokerctl get tasks` and the logs, then stops the controller and any daemons it started.
#
# Hosts: when the local daemon answers on /var/run/docker.sock and BROKER_DEMO_HOSTS is not
# "throwaway", it is the only node (a node manifest for it is generated); otherwise three
# throwaway daemons start on 127.0.0.11-13, matching manifests/nodes.yaml.
# Keep everything running afterwards with BROKER_DEMO_KEEP=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PATH="$PATH:/usr/sbin:/sbin"

packages=()
command -v dockerd >/dev/null || packages+=(docker.io)
[ -x /bin/busybox ] || packages+=(busybox-static)
python3 -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3-venv)
if [ ${#packages[@]} -gt 0 ]; then
    echo "demo: installing ${packages[*]}" >&2
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
# compat: the checkout on sys.path through a plain .pth line; setuptools' default editable finder
# costs every brokerctl process ~25 ms of imports (pathlib, urllib, importlib.util) at start-up.
.venv/bin/pip install -q -e . --config-settings editable_mode=compat

state=.demo
mkdir -p "$state"
export BROKER_DB="$PWD/$state/broker.db"
rm -f "$BROKER_DB" "$BROKER_DB"-*
brokerctl() { .venv/bin/brokerctl "$@"; }
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

hosts_dir=""
controller_pid=""
cleanup() {
    if [ -n "${BROKER_DEMO_KEEP:-}" ]; then
        echo "demo: left running (BROKER_DB=$BROKER_DB, controller pid ${controller_pid:-none})"
        return
    fi
    [ -n "$controller_pid" ] && kill -TERM "$controller_pid" 2>/dev/null && wait "$controller_pid" 2>/dev/null || true
    brokerctl delete -f manifests/job-hello.yaml -f manifests/service-ticker.yaml >/dev/null 2>&1 || true
    [ -n "$hosts_dir" ] && .venv/bin/python scripts/dockerhosts.py down --dir "$hosts_dir" || true
}
trap cleanup EXIT

# The controller keeps a copy of manifests/ in sync (GitOps); the demo edits that copy.
watched="$state/manifests"
rm -rf "$watched" && cp -r manifests "$watched"
if [ "${BROKER_DEMO_HOSTS:-}" != "throwaway" ] && command -v docker >/dev/null \
        && docker -H unix:///var/run/docker.sock info >/dev/null 2>&1; then
    echo "demo: using the local Docker daemon (unix:///var/run/docker.sock)"
    if ! docker -H unix:///var/run/docker.sock image inspect busybox >/dev/null 2>&1; then
        .venv/bin/python -c 'import sys; sys.path.insert(0, "scripts"); import dockerhosts, pathlib; \
print(dockerhosts.build_image_tar(pathlib.Path(".demo")))' >"$state/tar-path"
        docker -H unix:///var/run/docker.sock import -c 'CMD ["sh"]' -c 'ENV PATH=/bin' \
            "$(cat "$state/tar-path")" busybox:latest >/dev/null
    fi
    cat >"$watched/nodes.yaml" <<'EOF'
apiVersion: broker/v1
kind: Node
metadata: {name: local}
spec: {address: "unix:///var/run/docker.sock", slots: {default: 3}}
EOF
else
    echo "demo: starting three throwaway Docker daemons on 127.0.0.11-13"
    hosts_dir=/tmp/brokerctl-demo
    .venv/bin/python scripts/dockerhosts.py down --dir "$hosts_dir" >/dev/null 2>&1 || true
    .venv/bin/python scripts/dockerhosts.py up --count 3 --first-ip 11 --dir "$hosts_dir"
fi

say "brokerctl controller --watch $watched --sync-interval 5 &   (log: $state/controller.log)"
.venv/bin/brokerctl controller --watch "$watched" --sync-interval 5 >"$state/controller.log" 2>&1 &
controller_pid=$!
for _ in $(seq 50); do grep -q "controller started" "$state/controller.log" && break; sleep 0.1; done

say "brokerctl wait job/hello --for condition=Complete --timeout 120   (synced from $watched)"
for _ in $(seq 100); do brokerctl get jobs hello >/dev/null 2>&1 && break; sleep 0.1; done
brokerctl wait job/hello --for condition=Complete --timeout 120

say "brokerctl wait service/ticker --for condition=Ready --timeout 120"
brokerctl wait service/ticker --for condition=Ready --timeout 120
say "sed -i -e 's/tick from/tock from/' -e 's/replicas: 2/replicas: 3/' $watched/service-ticker.yaml; brokerctl diff -f $watched"
sed -i -e 's/tick from/tock from/' -e 's/replicas: 2/replicas: 3/' "$watched/service-ticker.yaml"
brokerctl diff -f "$watched" || true
say "brokerctl rollout status service/ticker --timeout 120   (the watcher applied the edit: a rolling update)"
brokerctl rollout status service/ticker --timeout 120
say "brokerctl rollout history service/ticker"
brokerctl rollout history service/ticker
say "brokerctl get services"
brokerctl get services
say "brokerctl sync status"
brokerctl sync status

say "brokerctl get nodes"
brokerctl get nodes
say "brokerctl get tasks"
brokerctl get tasks
say "brokerctl get jobs"
brokerctl get jobs
say "brokerctl logs job/hello"
brokerctl logs job/hello
say "brokerctl status"
brokerctl status
