#!/usr/bin/env bash
# `make run`: pgsched scheduling visits of real PyPI and npm listings.
#
#   make run                  the committed samples (data/*-sample.tsv.gz) in the
#                             embedded cluster (scripts/pg.sh), database `pgsched`
#   make run FULL=1           the full listings of ../shared/data/ when present
#   make run DAYS=10          more simulated days (default 5)
#   PGSCHED_DB=DSN make run   that database instead; nothing is started
#
# Steps: migrate (pgsched db migrate), then the scenario (pgsched demo, see
# pyshim/pgsched/demo.py). Running it again continues on the same origins.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
PGSCHED=.venv/bin/pgsched
[ -x "$PGSCHED" ] || { echo "run.sh: $PGSCHED is missing: run \`make venv\` first" >&2; exit 1; }

if [ -n "${PGSCHED_DB:-}" ]; then
    DSN="$PGSCHED_DB"
elif [ -n "${PGSCHED_DSN:-}" ]; then
    DSN="$PGSCHED_DSN"
else
    scripts/pg.sh start
    DSN="$(scripts/pg.sh dsn)"
fi
export PGSCHED_DB="$DSN"

LISTINGS="${PGSCHED_LISTINGS:-$ROOT/../shared/data}"
[ -d "$LISTINGS" ] && LISTINGS="$(cd "$LISTINGS" && pwd -P)"
PYPI=data/pypi-sample.tsv.gz
NPM=data/npm-sample.tsv.gz
if [ -n "${FULL:-}" ] && [ "${FULL}" != 0 ]; then
    if [ -f "$LISTINGS/pypi-projects.tsv.gz" ] && [ -f "$LISTINGS/npm-packages.tsv.gz" ]; then
        PYPI="$LISTINGS/pypi-projects.tsv.gz"
        NPM="$LISTINGS/npm-packages.tsv.gz"
    else
        echo "run.sh: FULL=$FULL but $LISTINGS has no pypi-projects.tsv.gz and" \
            "npm-packages.tsv.gz; using the samples" >&2
    fi
fi

echo "\$ pgsched db migrate"
"$PGSCHED" db migrate
exec "$PGSCHED" demo --pypi "$PYPI" --npm "$NPM" --days "${DAYS:-5}"
