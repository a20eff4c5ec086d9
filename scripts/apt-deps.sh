#!/usr/bin/env bash
# Install the Debian packages pgsched needs to build and test, only when one
# is missing. Runs `apt-get update` at most once, and only then.
#   make                  the Makefile
#   libpq-dev gcc         psycopg[c] builds against the system libpq
#   pkg-config libsystemd-dev   needed by a dependency of swh.scheduler (test extra)
#   postgresql-15         server binaries for the private dev cluster (scripts/pg.sh)
#   python3-venv          only when the chosen python3 lacks ensurepip
# Without root it only reports what is missing.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
pkgs=(make libpq-dev gcc pkg-config libsystemd-dev postgresql-15 postgresql-client-15)
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    pkgs+=(python3-venv)
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "apt-deps: not root, skipping apt; missing: ${missing[*]}" >&2
    exit 0
fi

echo "apt-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
