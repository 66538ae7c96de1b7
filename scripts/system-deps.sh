#!/usr/bin/env bash
# Install the Debian packages the test suites need (database and broker servers, a browser) when they are
# missing. `make test` runs it first, so a fresh machine with only python3, pip, make and root's apt-get
# can run the whole suite. Each suite's fixtures start and stop their own servers on loopback.
set -euo pipefail

packages=()
# need <command name or absolute path> <Debian package>
need() {
    if [[ "$1" == /* ]]; then
        [[ -x "$1" ]] || packages+=("$2")
    else
        command -v "$1" >/dev/null 2>&1 || packages+=("$2")
    fi
}

# One line per Debian package a suite needs (keep sorted by package):
need /usr/bin/chromium chromium
# The SQL source's tests and benchmark start their own server (tests/postgres_server.py); Debian keeps
# its programs in /usr/lib/postgresql/<version>/bin, off the PATH.
need "$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1 || true)" postgresql
# make cluster-demo and its test (tests/cluster): the Celery broker.
need redis-server redis-server

if ((${#packages[@]} == 0)); then
    exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
    echo "The test suite needs these Debian packages: ${packages[*]}." >&2
    echo "Install them (sudo apt-get install ${packages[*]}) or run make test as root." >&2
    exit 1
fi
echo "Installing Debian packages for the test suite: ${packages[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
