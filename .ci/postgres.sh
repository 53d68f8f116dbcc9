#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the database tests and print its URL (last line).
#
# On a fresh Debian machine (as root) it installs PostgreSQL if missing, initialises a cluster
# in a temporary directory owned by the postgres user (trust authentication, 127.0.0.1 only,
# port 55432) and starts it. Idempotent: when a server already answers on that port, it only
# prints the URL. Progress goes to stderr so that `$(bash .ci/postgres.sh | tail -n 1)` works.
set -euo pipefail

PORT="${VT_PG_PORT:-55432}"
HOST=127.0.0.1
URL="postgresql+psycopg://postgres@${HOST}:${PORT}/postgres"

log() { echo "postgres.sh: $*" >&2; }

pg_bin() {
  # The newest installed major version's bin directory.
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "PostgreSQL is not installed and this is not root; install the 'postgresql' package"
    exit 1
  fi
  log "installing PostgreSQL"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
BIN="$(pg_bin)"

if "$BIN/pg_isready" -q -h "$HOST" -p "$PORT"; then
  log "a server already answers on $HOST:$PORT"
  echo "$URL"
  exit 0
fi

# Run a command as the postgres user (initdb refuses to run as root).
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

DATA_ROOT="$(mktemp -d "${TMPDIR:-/tmp}/vt-postgres.XXXXXX")"
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$DATA_ROOT"
fi
chmod 700 "$DATA_ROOT"
log "initialising a cluster in $DATA_ROOT"
as_postgres "$BIN/initdb" -D "$DATA_ROOT/data" -U postgres --auth=trust --encoding=UTF8 --no-locale >/dev/null
as_postgres "$BIN/pg_ctl" -D "$DATA_ROOT/data" -l "$DATA_ROOT/server.log" -w -t 60 \
  -o "-c listen_addresses=$HOST -p $PORT -k $DATA_ROOT -c fsync=off -c full_page_writes=off" start >&2

for _ in $(seq 1 60); do
  if "$BIN/pg_isready" -q -h "$HOST" -p "$PORT"; then
    log "ready on $HOST:$PORT (stop it with: $BIN/pg_ctl -D $DATA_ROOT/data stop)"
    echo "$URL"
    exit 0
  fi
  sleep 1
done
log "the server did not become ready; its log:"
cat "$DATA_ROOT/server.log" >&2
exit 1
