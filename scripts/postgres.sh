#!/usr/bin/env bash
# Throwaway PostgreSQL server for OptML's tests and benchmarks.
#
#   scripts/postgres.sh install        install the PostgreSQL server (Debian package) and the
#                                      psycopg driver into the venv ($VENV, default .venv)
#   scripts/postgres.sh start [DIR]    start a server on 127.0.0.1 on a free port with its data
#                                      in DIR (default: a new temp dir); print its URL on stdout
#   scripts/postgres.sh stop DIR       stop the server started in DIR and delete DIR
#   scripts/postgres.sh restart DIR    restart the server started in DIR (same port and data;
#                                      every client connection is cut)
#
# Example (what CI does):
#   bash scripts/postgres.sh install
#   export OPTML_TEST_POSTGRES_URL=$(bash scripts/postgres.sh start /tmp/optml-pg)
#   .venv/bin/python -m pytest tests/storage
#   bash scripts/postgres.sh stop /tmp/optml-pg
# The tests also start a server by themselves (with this script) when the variable is unset.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
    # The newest installed major version; Debian keeps the server binaries off PATH.
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
        echo "$d"
    elif command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(command -v initdb)"
    fi
}

install_server() {
    if [[ -n "$(find_bindir)" ]]; then
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        log "PostgreSQL is not installed and installing it needs root: apt-get install postgresql"
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Update the package lists only when the package cannot be found without it.
    if ! apt-get install -y -q --no-install-recommends postgresql >&2; then
        apt-get update -q >&2
        apt-get install -y -q --no-install-recommends postgresql >&2
    fi
    [[ -n "$(find_bindir)" ]] || { log "postgresql installed but initdb/pg_ctl not found"; exit 1; }
}

install_driver() {
    local venv=${VENV:-.venv}
    if [[ -x "$venv/bin/python" ]]; then
        if ! "$venv/bin/python" -c "import psycopg" 2>/dev/null; then
            "$venv/bin/python" -m pip install -q 'psycopg[binary]>=3.1' >&2
        fi
    else
        log "no virtual environment at $venv; install the driver with: pip install 'psycopg[binary]'"
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Run a command as the user who owns the data dir: root may not run postgres.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    install_server
    local bindir dir port
    bindir=$(find_bindir)
    dir=${1:-$(mktemp -d /tmp/optml-pg.XXXXXX)}
    mkdir -p "$dir"
    if [[ -e "$dir/data/PG_VERSION" ]]; then
        log "$dir already holds a server; stop it first: $0 stop $dir"
        exit 1
    fi
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        chown postgres "$dir"
        chmod 700 "$dir"
    fi
    port=$(free_port)
    as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    # A test server: durability off for speed; sockets only in the data dir and on loopback.
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o \
        "-p $port -c listen_addresses=127.0.0.1 -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        >&2 || { cat "$dir/server.log" >&2; exit 1; }
    echo "$port" >"$dir/port"
    as_owner "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres optml
    log "started PostgreSQL in $dir; stop it with: $0 stop $dir"
    echo "postgresql://postgres@127.0.0.1:$port/optml"
}

stop() {
    local dir=${1:?usage: $0 stop DIR}
    local bindir
    bindir=$(find_bindir)
    if [[ -e "$dir/data/postmaster.pid" ]]; then
        as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    fi
    # Only delete what looks like a server dir started by this script.
    if [[ -e "$dir/data/PG_VERSION" ]]; then
        rm -rf "$dir"
    fi
}

restart() {
    local dir=${1:?usage: $0 restart DIR}
    local bindir
    bindir=$(find_bindir)
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m fast -w -t 60 restart >&2
}

cmd=${1:-start}
shift || true
case "$cmd" in
    install) install_server; install_driver ;;
    start) start "$@" ;;
    stop) stop "$@" ;;
    restart) restart "$@" ;;
    *) log "unknown command $cmd; use install, start [DIR], restart DIR or stop DIR"; exit 2 ;;
esac
