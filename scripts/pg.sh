#!/usr/bin/env bash
# Private PostgreSQL 15 cluster for pgsched development and tests.
#
#   scripts/pg.sh start    initdb once, start if not running, create database `pgsched`
#   scripts/pg.sh stop     stop the cluster (fast shutdown)
#   scripts/pg.sh status   print folder, port and state; exit 0 when running, 3 when not
#   scripts/pg.sh dsn      print the libpq DSN (only the DSN, on stdout)
#
# Environment:
#   PGSCHED_DB     a libpq DSN: use that database; start/stop do nothing, dsn prints it
#   PGSCHED_PORT   TCP port (default 5433); the server listens on 127.0.0.1 only
#   PGSCHED_PGBIN  PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#
# Folder: <project>/.pg/ when the `postgres` user can traverse every parent of the
# project, otherwise /var/tmp/pgsched-<hash of the project path>/. Inside it:
#   data/             PGDATA
#   run/              unix socket
#   postgresql.log    server log
#
# initdb and postgres refuse to run as root: as root the server runs as the
# `postgres` system user; as any other user it runs as that user.
set -euo pipefail

PGBIN="${PGSCHED_PGBIN:-/usr/lib/postgresql/15/bin}"
PORT_DEFAULT=5433
DBNAME=pgsched
DBUSER=postgres
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

log() { echo "pg.sh: $*" >&2; }
die() { log "$*"; exit 1; }

if [ "$(id -u)" -eq 0 ]; then
    RUNAS=postgres
    # From /: the caller's folder may be one the server user cannot enter.
    as_pg() { (cd / && runuser -u "$RUNAS" -- "$@"); }
else
    RUNAS="$(id -un)"
    as_pg() { "$@"; }
fi

# Pick the folder (see header). `test -x` as the server user fails when any
# parent directory is not searchable by it (e.g. a checkout under a 0700 home).
base_dir() {
    if as_pg test -x "$ROOT" 2>/dev/null; then
        echo "$ROOT/.pg"
    else
        local h
        h="$(printf '%s' "$ROOT" | sha1sum | cut -c1-10)"
        echo "/var/tmp/pgsched-$h"
    fi
}

BASE="$(base_dir)"
PGDATA="$BASE/data"
RUNDIR="$BASE/run"
LOGFILE="$BASE/postgresql.log"

# Port of the running server (from postmaster.pid), else the configured one.
port() {
    local p=""
    if [ -r "$PGDATA/postmaster.pid" ] && is_running; then
        p="$(sed -n 4p "$PGDATA/postmaster.pid" 2>/dev/null || true)"
    fi
    echo "${p:-${PGSCHED_PORT:-$PORT_DEFAULT}}"
}

is_running() {
    [ -f "$PGDATA/PG_VERSION" ] && as_pg "$PGBIN/pg_ctl" status -D "$PGDATA" >/dev/null 2>&1
}

dsn() {
    if [ -n "${PGSCHED_DB:-}" ]; then
        echo "$PGSCHED_DB"
    else
        echo "host=127.0.0.1 port=$(port) user=$DBUSER dbname=$DBNAME"
    fi
}

psql_admin() {
    "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 \
        "host=127.0.0.1 port=$(port) user=$DBUSER dbname=postgres" "$@"
}

init_cluster() {
    [ -x "$PGBIN/initdb" ] || die "no PostgreSQL binaries in $PGBIN (apt-get install postgresql-15)"
    if [ ! -d "$BASE" ]; then
        mkdir -p "$BASE"
        chmod 0755 "$BASE"
    fi
    if [ "$(id -u)" -eq 0 ]; then
        chown "$RUNAS": "$BASE"
    fi
    as_pg mkdir -p "$RUNDIR"
    if [ ! -f "$PGDATA/PG_VERSION" ]; then
        log "initdb in $PGDATA"
        # Trust authentication: this private development cluster listens on
        # 127.0.0.1 only, and everyone on the machine may connect as the
        # `postgres` role without a password. Never use these settings for
        # anything reachable from another machine.
        as_pg "$PGBIN/initdb" -D "$PGDATA" -U "$DBUSER" --auth=trust \
            --encoding=UTF8 --locale=C.UTF-8 >"$BASE/initdb.log" 2>&1 \
            || { cat "$BASE/initdb.log" >&2; die "initdb failed"; }
        echo "include_if_exists = 'pgsched.conf'" | as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null
    fi
    # Rewritten on every start so setting changes here reach existing clusters.
    as_pg tee "$PGDATA/pgsched.conf" >/dev/null <<EOF
# Written by scripts/pg.sh on every start; edits here are lost.
listen_addresses = '127.0.0.1'
port = ${PGSCHED_PORT:-$PORT_DEFAULT}
unix_socket_directories = '$RUNDIR'
max_connections = 200
# Sized for a 2-core / 24 GB development machine shared by several people.
shared_buffers = 1GB
effective_cache_size = 8GB
work_mem = 16MB
maintenance_work_mem = 256MB
# A scheduler rewrites rows scattered over large indexes (a grab of 1000
# origins dirties ~2000 pages): fewer checkpoints and compressed full-page
# images cut the WAL each write costs.  Durability is unchanged.
max_wal_size = 4GB
checkpoint_timeout = 15min
wal_compression = lz4
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
log_min_duration_statement = 1000
log_lock_waits = on
EOF
}

start() {
    if [ -n "${PGSCHED_DB:-}" ]; then
        log "PGSCHED_DB is set: using it, starting nothing"
        return 0
    fi
    init_cluster
    if is_running; then
        log "already running: $BASE (port $(port))"
    else
        log "starting: $BASE (port ${PGSCHED_PORT:-$PORT_DEFAULT}), log in $LOGFILE"
        as_pg touch "$LOGFILE"
        # 9>&-: the server must not inherit the lock held by locked() below.
        if ! as_pg "$PGBIN/pg_ctl" start -D "$PGDATA" -l "$LOGFILE" -w -t 60 >/dev/null 9>&-; then
            tail -n 20 "$LOGFILE" >&2 || true
            die "server did not start (port in use? set PGSCHED_PORT)"
        fi
    fi
    local tries=0
    until "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$(port)" -U "$DBUSER"; do
        tries=$((tries + 1))
        [ "$tries" -lt 60 ] || die "server not accepting connections on port $(port)"
        sleep 0.5
    done
    if [ -z "$(psql_admin -tA -c "SELECT 1 FROM pg_database WHERE datname = '$DBNAME'")" ]; then
        # Two concurrent starts may race here; losing the race is fine.
        psql_admin -c "CREATE DATABASE $DBNAME" 2>/dev/null \
            || [ -n "$(psql_admin -tA -c "SELECT 1 FROM pg_database WHERE datname = '$DBNAME'")" ] \
            || die "could not create database $DBNAME"
        log "created database $DBNAME"
    fi
    log "ready: $(dsn)"
}

stop() {
    if [ -n "${PGSCHED_DB:-}" ]; then
        log "PGSCHED_DB is set: nothing to stop"
        return 0
    fi
    if is_running; then
        as_pg "$PGBIN/pg_ctl" stop -D "$PGDATA" -m fast -w -t 60 >/dev/null
        log "stopped: $BASE"
    else
        log "not running: $BASE"
    fi
}

status() {
    if [ -n "${PGSCHED_DB:-}" ]; then
        echo "database: PGSCHED_DB=$PGSCHED_DB (external; scripts/pg.sh manages nothing)"
        "$PGBIN/pg_isready" -d "$PGSCHED_DB"
        return
    fi
    echo "folder:  $BASE"
    echo "data:    $PGDATA"
    echo "log:     $LOGFILE"
    echo "port:    $(port) (127.0.0.1)"
    echo "dsn:     $(dsn)"
    if is_running; then
        echo "state:   running (pid $(sed -n 1p "$PGDATA/postmaster.pid"))"
    elif [ -f "$PGDATA/PG_VERSION" ]; then
        echo "state:   stopped"
        return 3
    else
        echo "state:   not initialised"
        return 3
    fi
}

# Serialise start/stop: several people may run `make test` at the same time.
locked() {
    mkdir -p "$BASE"
    exec 9>>"$BASE/lock"
    flock 9
    "$@"
}

case "${1:-}" in
    start) locked start ;;
    stop) locked stop ;;
    status) status ;;
    dsn) dsn ;;
    *)
        echo "usage: $0 start|stop|status|dsn" >&2
        exit 2
        ;;
esac
