#!/bin/sh
# Entry point of the locally built PgBouncer image (`cargo xtask images build`): configured
# from the environment with edoburu/pgbouncer's names, so one compose file runs either image:
# DB_HOST, DB_PORT, DB_USER, DB_PASSWORD, POOL_MODE, LISTEN_PORT, AUTH_TYPE, MAX_CLIENT_CONN,
# DEFAULT_POOL_SIZE, ADMIN_USERS, IGNORE_STARTUP_PARAMETERS. Every database name is passed
# on to DB_HOST (`* =`). PgBouncer refuses to run as root: it runs as postgres, logging to stderr.
set -eu

if [ "${1#-}" != "$1" ]; then
    set -- pgbouncer /etc/pgbouncer/pgbouncer.ini "$@"
fi

if [ "$1" = pgbouncer ] && [ "$(id -u)" = 0 ]; then
    : "${DB_HOST:?set DB_HOST to the Postgres server PgBouncer pools}"
    : "${DB_USER:?set DB_USER}"
    : "${DB_PASSWORD:?set DB_PASSWORD}"
    mkdir -p /etc/pgbouncer /var/run/pgbouncer
    umask 077
    # userlist.txt: a `"` inside a value is written twice.
    printf '"%s" "%s"\n' "$(printf '%s' "$DB_USER" | sed 's/"/""/g')" \
        "$(printf '%s' "$DB_PASSWORD" | sed 's/"/""/g')" > /etc/pgbouncer/userlist.txt
    cat > /etc/pgbouncer/pgbouncer.ini <<INI
[databases]
* = host=$DB_HOST port=${DB_PORT:-5432}

[pgbouncer]
listen_addr = ${LISTEN_ADDR:-0.0.0.0}
listen_port = ${LISTEN_PORT:-5432}
unix_socket_dir =
auth_type = ${AUTH_TYPE:-md5}
auth_file = /etc/pgbouncer/userlist.txt
pool_mode = ${POOL_MODE:-session}
max_client_conn = ${MAX_CLIENT_CONN:-100}
default_pool_size = ${DEFAULT_POOL_SIZE:-20}
admin_users = ${ADMIN_USERS:-postgres}
ignore_startup_parameters = ${IGNORE_STARTUP_PARAMETERS:-extra_float_digits}
INI
    chown -R postgres:postgres /etc/pgbouncer /var/run/pgbouncer
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

exec "$@"
