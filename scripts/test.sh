#!/usr/bin/env bash
# The project's test command: `bash scripts/test.sh [pytest args...]`.
# Works on a fresh Debian 12 machine as root: installs what the suite needs
# (dockerd for the throwaway daemons, a static busybox for the test image,
# PostgreSQL for throwaway clusters, openssl for test certificates, a
# registry with htpasswd for pulls with credentials), makes .venv, installs
# the package with its test extras and runs pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then
    SUDO="sudo"
fi

# dockerd lives in /usr/sbin, which a non-login PATH may lack.
PATH="$PATH:/usr/sbin:/sbin"

packages=()
command -v dockerd >/dev/null || packages+=(docker.io)
[ -x /bin/busybox ] || packages+=(busybox-static)
command -v ip >/dev/null || packages+=(iproute2)
command -v ps >/dev/null || packages+=(procps)
# scripts/pgcluster.py runs the server binaries directly (initdb, pg_ctl), not the packaged service.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || packages+=(postgresql)
command -v openssl >/dev/null || packages+=(openssl)
command -v docker-registry >/dev/null || packages+=(docker-registry)
command -v htpasswd >/dev/null || packages+=(apache2-utils)
command -v python3 >/dev/null || packages+=(python3)
if [ ! -x .venv/bin/python ] && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    packages+=(python3-venv)
fi
if [ ${#packages[@]} -gt 0 ]; then
    echo "test.sh: installing ${packages[*]}" >&2
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# compat: the checkout on sys.path through a plain .pth line; setuptools' default editable finder
# costs every brokerctl process ~25 ms of imports (pathlib, urllib, importlib.util) at start-up.
.venv/bin/pip install -q -e '.[test]' --config-settings editable_mode=compat

# Scratch space in memory when there is room (4 GiB free on /dev/shm): the throwaway daemons' vfs layers
# and metadata, the stores' and PostgreSQL's fsyncs are the suite's slowest I/O (a container's
# create+start took 0.11 s there against 0.21 s on this machine's disk). A TMPDIR already set is kept.
# (Not where it is mounted noexec: the daemons run their containers' binaries from there.)
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ] \
        && ! grep -qs ' /dev/shm [^ ]* [^ ]*noexec' /proc/mounts \
        && [ "$(df --output=avail -k /dev/shm 2>/dev/null | tail -1)" -gt 4194304 ] 2>/dev/null; then
    export TMPDIR=/dev/shm
fi

rc=0
# The end-to-end tests run in parallel workers, each with its own daemons and addresses
# (tests/conftest.py), taking whole files in the order the conftest gives (the longest first);
# BROKER_TEST_WORKERS=0 runs everything in one process.
workers=(-n "${BROKER_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder)
[ "${BROKER_TEST_WORKERS:-2}" = 0 ] && workers=()
.venv/bin/python -m pytest "${workers[@]}" "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
    # An empty run must not pass for a green one.
    echo "test.sh: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
